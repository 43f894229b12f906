"""Evaluation as in FlatGD §4.1: toxicity of k sampled replies per context, perplexity under a
reference model, Div-1/Div-2, and toxicity trade-off factors across compared models.

- `metrics` — the pure metric functions; `bootstrap` and `paired_tests` — their uncertainty.
- `evaluate` (run_eval) — one model on a list of contexts -> `EvalResult`; also what the
  before/after summary of ``losscraft run`` (`losscraft.app.summary`) measures with.
- `targets`, `contexts` — resolving a model folder or run and the test contexts.

What ``losscraft eval`` and ``losscraft compare`` add on top (writing reports, tables, plots)
lives in the application wing: `losscraft.app.evaluate_target`, `losscraft.app.reports`.
"""

from losscraft.evaluation.metrics import (distinct_n, expected_max_toxicity, mean_words,
                                          perplexity, share_above, softmax_scale,
                                          toxicity_probability, tradeoff_factor)
from losscraft.evaluation.result import EvalResult
from losscraft.evaluation.run_eval import evaluate

__all__ = [
    "EvalResult", "distinct_n", "evaluate", "expected_max_toxicity", "mean_words", "perplexity",
    "share_above", "softmax_scale", "toxicity_probability", "tradeoff_factor",
]
