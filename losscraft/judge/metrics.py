"""Held-out metrics of a safety classifier, with "unsafe" as the positive class."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table


def binary_metrics(unsafe_true: Sequence[bool], p_unsafe: Sequence[float], *,
                   threshold: float = 0.5) -> dict:
    """Accuracy, and precision/recall/F1 of the unsafe class (predicted unsafe when
    ``p_unsafe > threshold``, as the evaluation counts a toxic response), the confusion counts,
    and the majority-class baseline: the accuracy of always predicting the class that is most
    frequent in these labels."""
    if len(unsafe_true) != len(p_unsafe) or not unsafe_true:
        raise ValueError(f"need equally many labels and scores, got {len(unsafe_true)} and "
                         f"{len(p_unsafe)}")
    pred = [p > threshold for p in p_unsafe]
    tp = sum(t and p for t, p in zip(unsafe_true, pred))
    fp = sum(p and not t for t, p in zip(unsafe_true, pred))
    fn = sum(t and not p for t, p in zip(unsafe_true, pred))
    n = len(unsafe_true)
    tn = n - tp - fp - fn
    n_unsafe = tp + fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / n_unsafe if n_unsafe else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    majority = "unsafe" if n_unsafe > n - n_unsafe else "safe"
    return {"accuracy": (tp + tn) / n, "f1": f1, "precision": precision, "recall": recall,
            "majority_baseline_accuracy": max(n_unsafe, n - n_unsafe) / n,
            "majority_class": majority, "n": n, "n_unsafe": n_unsafe, "n_safe": n - n_unsafe,
            "threshold": threshold, "confusion": {"tp": tp, "fp": fp, "tn": tn, "fn": fn}}


def metrics_table(metrics: dict, *, title: str = "held-out (unsafe = positive class)") -> Table:
    """A small rich table of `binary_metrics`."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("accuracy", "majority_baseline_accuracy", "f1", "precision", "recall"):
        table.add_row(key.replace("_", " "), f"{metrics[key]:.3f}")
    table.add_row("pairs (unsafe / safe)",
                  f"{metrics['n']} ({metrics['n_unsafe']} / {metrics['n_safe']})")
    c = metrics["confusion"]
    table.add_row("tp / fp / tn / fn", f"{c['tp']} / {c['fp']} / {c['tn']} / {c['fn']}")
    return table


def prosocial_metrics(prosocial_true: Sequence[bool | None], p_prosocial: Sequence[float], *,
                      threshold: float = 0.5) -> dict | None:
    """Accuracy of ``p_prosocial > threshold`` on the pairs whose prosociality is known (``None``
    labels are skipped), with the majority baseline; ``None`` when no pair is labelled."""
    known = [(t, p) for t, p in zip(prosocial_true, p_prosocial) if t is not None]
    if not known:
        return None
    correct = sum(t == (p > threshold) for t, p in known)
    n_pos = sum(t for t, _ in known)
    return {"accuracy": correct / len(known),
            "majority_baseline_accuracy": max(n_pos, len(known) - n_pos) / len(known),
            "n": len(known), "n_prosocial": n_pos, "threshold": threshold}
