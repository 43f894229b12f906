"""`EvalResult`: every number of one evaluation, its settings and the samples behind it, and its
``eval.json`` form (read back by `losscraft compare`)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from losscraft.errors import DataError
from losscraft.runtime.safe_files import write_file

SCHEMA = "losscraft.eval/1"
EVAL_FILE = "eval.json"
#: metrics every eval.json must hold (what `losscraft compare` reads)
REQUIRED_METRICS = ("toxicity_probability", "expected_max_toxicity", "perplexity", "div1", "div2")


def contexts_hash(contexts: list[list[str]]) -> str:
    """SHA-256 of the test contexts (turn lists, in order): equal hashes mean the same test set."""
    blob = json.dumps(contexts, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass
class SampledResponse:
    """One sampled reply with its scores. ``nll``/``n_tokens``: summed NLL and token count under
    the reference model (``None`` without one). ``rerank``: the reranker's scores of the chosen
    candidate, when reranking picked it among ``rerank_candidates`` samples. ``p_prosocial``: the
    scorer's P(prosocial), when the scorer has a ``p_prosocial`` method (else ``None``)."""

    text: str
    p_unsafe: float
    nll: float | None = None
    n_tokens: int | None = None
    rerank: dict[str, float] | None = None
    p_prosocial: float | None = None


@dataclass
class ContextSamples:
    """The k responses sampled for one test context (turns oldest first)."""

    context: list[str]
    responses: list[SampledResponse]

    @property
    def max_p_unsafe(self) -> float:
        return max(r.p_unsafe for r in self.responses)


@dataclass
class EvalResult:
    """One model evaluated on one test set.

    Attributes:
        model: label of the model (a row of the comparison tables).
        dataset: label of the test set (a column of Table 1).
        target: what was evaluated (run directory, model folder or model id) as given.
        contexts_sha256: `contexts_hash` of the test contexts.
        metrics: ``toxicity_probability``, ``expected_max_toxicity``, ``toxic_response_rate``,
            ``mean_p_unsafe``, ``perplexity`` (``None`` without a reference model), ``div1``,
            ``div2``, ``mean_words``, ``num_contexts``, ``num_responses``; and, only when the
            scorer has a ``p_prosocial`` method, ``prosocial_response_rate`` (share of replies
            with P(prosocial) > ``settings["prosocial_threshold"]``) and ``mean_p_prosocial``.
        settings: every setting that produced the numbers (k, threshold, sampling, seed, scorer,
            reference, reranking, batch size, context limit, ...).
        samples: per context, its k responses with their P(unsafe) (and P(prosocial)).
        info: provenance (versions, timings) and, when the scorer has a ``probe_metrics()``
            method that returned a dict, ``judge_probe``: the scorer's accuracy on its probe set.
            Not needed to compute the numbers, but needed to trust them.
    """

    model: str
    dataset: str
    target: str
    contexts_sha256: str
    metrics: dict[str, Any]
    settings: dict[str, Any]
    samples: list[ContextSamples] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **asdict(self)}

    def write_json(self, path: Path) -> Path:
        """Write this result to ``path`` as JSON (atomically, never through a symlink)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        write_file(path, json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, file: str | None = None) -> "EvalResult":
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise DataError(f"not a losscraft evaluation (expected \"schema\": \"{SCHEMA}\")",
                            file=file, field="schema")
        missing = [k for k in REQUIRED_METRICS if k not in (data.get("metrics") or {})]
        if missing:
            raise DataError("missing metric", file=file, field=f"metrics.{missing[0]}")
        try:
            samples = [ContextSamples(list(s["context"]),
                                      [SampledResponse(**r) for r in s["responses"]])
                       for s in data.get("samples", [])]
            return cls(model=str(data["model"]), dataset=str(data["dataset"]),
                       target=str(data["target"]), contexts_sha256=str(data["contexts_sha256"]),
                       metrics=dict(data["metrics"]), settings=dict(data["settings"]),
                       samples=samples, info=dict(data.get("info", {})))
        except KeyError as e:
            raise DataError("missing key", file=file, field=str(e.args[0])) from None
        except (TypeError, ValueError) as e:
            raise DataError(f"malformed evaluation: {e}", file=file) from None

    @classmethod
    def read_json(cls, path: Path) -> "EvalResult":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as e:
            raise DataError(f"cannot read: {e.strerror or e}", file=str(path)) from None
        except json.JSONDecodeError as e:
            raise DataError(f"invalid JSON at line {e.lineno}: {e.msg}", file=str(path)) from None
        return cls.from_dict(data, file=str(path))
