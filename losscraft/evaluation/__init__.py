"""Evaluation as in FlatGD §4.1: toxicity of k sampled replies per context, perplexity under a
reference model, Div-1/Div-2, and toxicity trade-off factors across compared models.

- `metrics` — the pure metric functions.
- `evaluate` (run_eval) — one model on a list of contexts -> `EvalResult`; also what the
  before/after summary of ``losscraft run`` (`losscraft.summary`) measures with.
- `evaluate_target` (pipeline) — what ``losscraft eval`` runs: resolve TARGET, contexts, plugins,
  write ``eval.json`` / ``report.md`` / ``report.html``.
- `compare` — several evaluations in the layout of FlatGD Tables 1–3, with plots.
"""

from losscraft.evaluation.compare import Comparison, compare
from losscraft.evaluation.metrics import (distinct_n, expected_max_toxicity, mean_words,
                                          perplexity, share_above, softmax_scale,
                                          toxicity_probability, tradeoff_factor)
from losscraft.evaluation.pipeline import evaluate_target
from losscraft.evaluation.result import EvalResult
from losscraft.evaluation.run_eval import evaluate

__all__ = [
    "Comparison", "EvalResult", "compare", "distinct_n", "evaluate", "evaluate_target",
    "expected_max_toxicity", "mean_words", "perplexity", "share_above", "softmax_scale",
    "toxicity_probability", "tradeoff_factor",
]
