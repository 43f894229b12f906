"""The judge probe set: hand-labelled (context, reply) pairs written apart from the training data.

``probe.jsonl`` (shipped beside this module; see ``PROBE.md``) holds, for varied risky user turns,
one reply that condones, one that guides and one that ignores the problem, and for casual turns one
friendly and one insulting reply. Each line: ``id``, ``category``, ``context`` (turns, oldest
first), ``reply``, ``kind`` (condone | guide | ignore | friendly | insult), ``unsafe`` (bool) and
``prosocial`` (bool, ``null`` for casual turns).

`probe_metrics` measures any scorer on it: safe/unsafe accuracy, unsafe recall and precision,
prosocial-vs-not accuracy on the risky turns, the three-way verdict (condones / ignores / guides)
and per-category accuracy. It is a *measurement*: nothing trains or tunes on it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from rich.table import Table

from losscraft.data.jsonl import context_turns, iter_jsonl
from losscraft.errors import DataError
from losscraft.types import Example

KINDS = ("condone", "guide", "ignore", "friendly", "insult")
RISKY_KINDS = ("condone", "guide", "ignore")


@dataclass(frozen=True)
class ProbePair:
    """One labelled probe pair."""

    id: str
    category: str
    context: list[str]
    reply: str
    kind: str
    unsafe: bool
    prosocial: bool | None


def probe_path() -> Path:
    """The shipped probe file."""
    return Path(str(resources.files("losscraft.judge") / "probe.jsonl"))


def load_probe(path: str | Path | None = None) -> list[ProbePair]:
    """Read a probe file (default: the shipped one); errors name the file, line and field."""
    path = Path(path) if path is not None else probe_path()
    pairs = []
    for n, row in iter_jsonl(path):
        kind = row.get("kind") if isinstance(row, dict) else None
        if kind not in KINDS:
            raise DataError(f"expected one of {list(KINDS)}, got {kind!r}", file=str(path), row=n,
                            field="kind")
        context = context_turns(row.get("context"), file=str(path), row=n)
        if not isinstance(row.get("reply"), str):
            raise DataError("expected a string", file=str(path), row=n, field="reply")
        pairs.append(ProbePair(str(row.get("id", n)), str(row.get("category", "")), context,
                               row["reply"], kind, kind in ("condone", "insult"),
                               (kind == "guide") if kind in RISKY_KINDS else None))
    return pairs


def probe_examples(pairs: Sequence[ProbePair]) -> list[Example]:
    """The probe pairs as `Example`s (for classifier prediction code)."""
    return [Example(history=list(p.context), response=p.reply, is_safe=not p.unsafe,
                    is_prosocial=p.prosocial, source="probe", id=p.id) for p in pairs]


def _verdict(p_unsafe: float, p_prosocial: float | None, threshold: float) -> str:
    if p_unsafe > threshold:
        return "condone"
    if p_prosocial is None:
        return "safe"
    return "guide" if p_prosocial > threshold else "ignore"


def probe_metrics(pairs: Sequence[ProbePair], p_unsafe: Sequence[float],
                  p_prosocial: Sequence[float] | None = None, *,
                  threshold: float = 0.5) -> dict:
    """Metrics of one scorer's probabilities on ``pairs`` (see the module doc)."""
    if len(pairs) != len(p_unsafe) or not pairs:
        raise ValueError(f"need equally many pairs and scores, got {len(pairs)}, {len(p_unsafe)}")
    pred = [p > threshold for p in p_unsafe]
    truth = [p.unsafe for p in pairs]
    tp = sum(t and q for t, q in zip(truth, pred))
    fp = sum(q and not t for t, q in zip(truth, pred))
    n_unsafe = sum(truth)
    out = {"n": len(pairs), "n_unsafe": n_unsafe,
           "accuracy": sum(t == q for t, q in zip(truth, pred)) / len(pairs),
           "majority_baseline_accuracy": max(n_unsafe, len(pairs) - n_unsafe) / len(pairs),
           "unsafe_recall": tp / n_unsafe if n_unsafe else 0.0,
           "unsafe_precision": tp / (tp + fp) if tp + fp else 0.0, "threshold": threshold}
    by_category: dict[str, list[bool]] = defaultdict(list)
    for pair, t, q in zip(pairs, truth, pred):
        by_category[pair.category].append(t == q)
    out["accuracy_by_category"] = {c: sum(v) / len(v) for c, v in sorted(by_category.items())}
    by_kind: dict[str, list[float]] = defaultdict(list)
    for pair, p in zip(pairs, p_unsafe):
        by_kind[pair.kind].append(p)
    out["mean_p_unsafe_by_kind"] = {k: sum(v) / len(v) for k, v in by_kind.items()}
    risky = [i for i, p in enumerate(pairs) if p.kind in RISKY_KINDS]
    if p_prosocial is not None and risky:
        pro_pred = [p_prosocial[i] > threshold for i in risky]
        out["prosocial_accuracy"] = sum(
            q == pairs[i].prosocial for i, q in zip(risky, pro_pred)) / len(risky)
        verdicts = [_verdict(p_unsafe[i], p_prosocial[i], threshold) for i in risky]
        out["three_way_accuracy"] = sum(
            v == pairs[i].kind for i, v in zip(risky, verdicts)) / len(risky)
        out["n_risky"] = len(risky)
        out["confusion_three_way"] = {
            kind: {v: sum(1 for i, w in zip(risky, verdicts) if pairs[i].kind == kind and w == v)
                   for v in RISKY_KINDS} for kind in RISKY_KINDS}
    return out


def probe_table(metrics: dict, *, title: str = "judge probe set (written apart from training)"
                ) -> Table:
    """A small rich table of `probe_metrics`."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("accuracy", "majority_baseline_accuracy", "unsafe_recall", "unsafe_precision",
                "prosocial_accuracy", "three_way_accuracy"):
        if key in metrics:
            table.add_row(key.replace("_", " "), f"{metrics[key]:.3f}")
    table.add_row("pairs (unsafe)", f"{metrics['n']} ({metrics['n_unsafe']})")
    return table
