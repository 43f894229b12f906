"""Negative mining for contrastive stages (spec §1.4, pair construction).

Mined negatives are model samples flagged by a scorer: replies sampled from the stage's starting
model whose P(unsafe) exceeds ``mining.threshold``. (Borrowed negatives — replies to casual
contexts used against contexts that need caution — are a data-source option, e.g.
``prosocial_dialog``'s ``casual_negatives``, since the source sees the whole dataset.)

Each negative is weighted by the severity of the example's ``safety_label`` (``MINED_WEIGHTS``), which
the n-pair objective uses when ``use_negative_weights`` is on. Mined negatives are cached per stage
in a JSONL file (one row per example, in order, with its id) under a key of everything that
decides them — the mining settings, the scorer, the sampling seed, the context budget and the
example ids — so a resumed run does not sample again and a changed recipe does.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from losscraft.plugins.protocols import Scorer
from losscraft.trainer.prepare.stage_cache import (cache_key, read_cached_rows, read_rows,
                                                   write_cached_rows)
from losscraft.errors import RecipeError
from losscraft.recipe.schema import ComponentSpec, MiningSpec, Recipe, StageSpec
from losscraft.types import SEVERITY, Example

#: weight of a flagged sample by its context's safety label: 1 + severity, so a sample the scorer
#: flags outweighs a borrowed reply (weighted by severity alone), even in a casual context
MINED_WEIGHTS = {label: 1.0 + severity for label, severity in SEVERITY.items()}


def _settings_key(spec: MiningSpec, scorer: ComponentSpec, seed: int, max_context_tokens: int,
                  examples: list[Example]) -> str:
    return cache_key([dataclasses.asdict(spec), scorer.plugin, scorer.params, seed,
                      max_context_tokens, [e.id for e in examples]])


def mine_negatives(examples: list[Example], model, tokenizer, recipe: Recipe, stage: StageSpec,
                   scorer: Scorer | None, cache: Path, *, console: Console | None = None,
                   show_progress: bool = True) -> list[Example]:
    """Copies of ``examples`` with their flagged samples appended as negatives. ``scorer`` is
    the stage's mining scorer, built by `losscraft.recipe.instantiate` (``mining.scorer`` or the
    recipe's ``[scorer]``); the recipe's specs of it key the cache."""
    from losscraft.generation.decode import generate_responses

    spec = stage.mining
    assert spec is not None
    scorer_spec = (ComponentSpec(spec.scorer, {}, f"{stage.key}.mining.scorer")
                   if spec.scorer else recipe.scorer)
    if scorer_spec is None or scorer is None:
        raise RecipeError("negative mining needs a scorer: set mining.scorer or add [scorer]",
                          file=recipe.path, key=f"{stage.key}.mining")
    key = _settings_key(spec, scorer_spec, recipe.run.seed, stage.max_context_tokens, examples)
    rows = read_cached_rows(cache, key, len(examples))
    if rows is None:
        chosen = examples if not spec.max_examples else examples[: spec.max_examples]
        with Progress(console=console, disable=not show_progress, transient=True) as progress:
            task = progress.add_task(f"{stage.name}: mining negatives", total=len(chosen))
            samples = generate_responses(
                model, tokenizer, [e.history for e in chosen], num_samples=spec.num_samples,
                max_new_tokens=spec.max_new_tokens, temperature=spec.temperature,
                top_p=spec.top_p, seed=recipe.run.seed, max_context_tokens=stage.max_context_tokens,
                progress=lambda n: progress.update(task, completed=n))
        # rows by position, not by id: two sources may use the same id
        flat = [(i, s) for i, ss in enumerate(samples) for s in ss if s.strip()]
        scores = (scorer.p_unsafe([chosen[i].history for i, _ in flat], [s for _, s in flat])
                  if flat else [])
        rows = [{"id": e.id, "flagged": []} for e in examples]
        for (i, sample), p in zip(flat, scores):
            if p > spec.threshold:
                rows[i]["flagged"].append({"text": sample, "p_unsafe": float(p)})
        write_cached_rows(cache, key, rows)
    result = []
    for ex, row in zip(examples, rows):
        negatives = [f["text"] for f in row["flagged"]]
        weight = MINED_WEIGHTS.get(ex.safety_label or "", 1.0)
        # align the given weights with the given negatives (1.0 where missing) before appending
        given = list(ex.negative_weights or [])[: len(ex.negatives)]
        given += [1.0] * (len(ex.negatives) - len(given))
        result.append(dataclasses.replace(
            ex, negatives=list(ex.negatives) + negatives,
            negative_weights=given + [weight] * len(negatives)))
    return result


#: the cache file of one stage's mined negatives, under ``<run>/stages/<stage>/``
CACHE_NAME = "mined_negatives.jsonl"


def mined_counts(run_dir: str | Path, stages: list[str] | None = None) -> dict[str, dict[str, int]]:
    """How many negatives each stage of the run in ``run_dir`` mined, read from the stage caches
    (``<run_dir>/stages/<stage>/mined_negatives.jsonl``, as the trainer writes them).

    Per stage: ``examples`` (rows in the cache: the stage's examples), ``contexts_with_negatives``
    (examples that got at least one flagged sample) and ``negatives`` (flagged samples in all).
    ``stages`` gives the order and the stages to report (a stage without a cache is left out);
    ``None``: every stage folder holding a cache, by name.
    """
    root = Path(run_dir) / "stages"
    names = stages if stages is not None else sorted(
        p.parent.name for p in root.glob(f"*/{CACHE_NAME}"))
    counts: dict[str, dict[str, int]] = {}
    for name in names:
        rows = read_rows(root / name / CACHE_NAME)
        if rows is None:
            continue
        flagged = [len(row.get("flagged", [])) for row in rows]
        counts[name] = {"examples": len(rows),
                        "contexts_with_negatives": sum(n > 0 for n in flagged),
                        "negatives": sum(flagged)}
    return counts
