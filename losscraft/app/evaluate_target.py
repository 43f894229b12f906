"""`evaluate_target`: what `losscraft eval` does — resolve TARGET and the test contexts, build the
scorer / reference model / reranker through the plugin registry, run `evaluate`, write the
reports."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from losscraft.runtime.device import resolve_device
from losscraft.errors import DataError
from losscraft.recipe.schema import DEFAULT_SCORER
from losscraft.evaluation.contexts import read_contexts_jsonl, source_contexts
from losscraft.app.reports.eval_report import write_outputs
from losscraft.evaluation.result import EvalResult
from losscraft.evaluation.run_eval import evaluate
from losscraft.evaluation.targets import load_model, resolve_target


def slug(text: str) -> str:
    """``text`` as a safe file name."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_") or "eval"


def load_contexts(*, contexts_file: Path | None = None, source: str | None = None,
                  source_params: dict[str, Any] | None = None,
                  max_contexts: int | None = None) -> tuple[list[list[str]], str]:
    """``(contexts, dataset label)`` from exactly one of a JSONL file or a data source."""
    if (contexts_file is None) == (source is None):
        raise DataError("give exactly one of a contexts file (--contexts) or a data source "
                        "(--source)")
    if contexts_file is not None:
        contexts = read_contexts_jsonl(Path(contexts_file))[:max_contexts]
        return contexts, Path(contexts_file).stem
    params = dict(source_params or {})
    contexts = source_contexts(source, params, limit=max_contexts)
    split = params.get("split")
    return contexts, f"{source}:{split}" if split else source


def evaluate_target(target: str, *, contexts_file: Path | None = None, source: str | None = None,
                    source_params: dict[str, Any] | None = None, max_contexts: int | None = None,
                    scorer: str = DEFAULT_SCORER, scorer_params: dict[str, Any] | None = None,
                    reference: str | None = "embedded", rerank: bool = False,
                    reranker: str = "prosocial_reranker", reranker_params: dict[str, Any] | None = None,
                    rerank_candidates: int = 8,
                    device: str = "auto", label: str | None = None, dataset: str | None = None,
                    out_dir: Path | None = None, progress: bool = True,
                    **options: Any) -> tuple[EvalResult, dict[str, Path]]:
    """Evaluate TARGET (see `losscraft.evaluation.targets`) and write ``eval.json``,
    ``report.md`` and ``report.html``.

    ``reference``: ``embedded``, a model folder or hub id, or ``None`` / ``"none"`` to skip
    perplexity. ``options`` go to `evaluate` (k, threshold, seed, temperature, top_p, top_k,
    max_new_tokens, batch_size, max_context_tokens, system). The default output folder is
    ``<run dir>/eval/<dataset>`` for a run directory, else ``eval/<model>/<dataset>``.
    Returns the result and the written paths.
    """
    from losscraft.plugins.registry import get_registry

    contexts, dataset_label = load_contexts(contexts_file=contexts_file, source=source,
                                            source_params=source_params,
                                            max_contexts=max_contexts)
    dataset_label = dataset or dataset_label
    resolved = resolve_target(target)
    registry = get_registry()
    scorer_obj = registry.create("scorer", scorer, scorer_params or {})
    reranker_obj = registry.create("reranker", reranker, reranker_params or {}) if rerank else None
    device = resolve_device(device)
    model, tokenizer = load_model(resolved.location, device=device)
    ref = None
    if reference and reference != "none":
        ref = load_model(reference, device=device, param="--reference")
    label = label or resolved.label
    result = evaluate(
        model, tokenizer, contexts, scorer=scorer_obj, reference=ref, reranker=reranker_obj,
        rerank_candidates=rerank_candidates, progress=progress, model_label=label,
        dataset_label=dataset_label, target=target,
        settings_extra={"scorer": scorer, "scorer_params": scorer_params or {},
                        "reference": None if ref is None else reference,
                        "reranker": reranker if rerank else None,
                        "reranker_params": (reranker_params or {}) if rerank else None,
                        "model_location": resolved.location, "device": device,
                        "contexts": str(contexts_file) if contexts_file else None,
                        "source": source, "source_params": source_params or {}},
        **options)
    if out_dir is None:
        base = resolved.run_dir / "eval" if resolved.run_dir else Path("eval") / slug(label)
        out_dir = base / slug(dataset_label)
    return result, write_outputs(result, Path(out_dir))
