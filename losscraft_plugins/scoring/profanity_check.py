"""Scorer ``profanity_check``: P(unsafe) from the `alt-profanity-check` package.

A linear SVM over bag-of-words features, trained on toxic/offensive comments: fast, offline, and a
reasonable detector of profanity and insults (it does not understand harmful *advice*).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

from losscraft.plugins.protocols import Context
from losscraft.errors import PluginError
from losscraft.plugins.hookspecs import hookimpl
from losscraft.data.chat import context_text
from losscraft_plugins.scoring.common import check_same_length


class ProfanityScorer:
    """P(unsafe) = the profanity probability of each response, in one batched call.

    Args:
        include_context: score the context and the response together (joined by newlines)
            instead of the response alone.
    """

    def __init__(self, include_context: bool = False):
        if importlib.util.find_spec("profanity_check") is None:
            raise PluginError("scorer 'profanity_check' needs the alt-profanity-check package: "
                              "pip install alt-profanity-check")
        self.include_context = bool(include_context)

    def p_unsafe(self, contexts: Sequence[Context], responses: Sequence[str]) -> list[float]:
        """Probabilities in [0, 1], one per response."""
        check_same_length(contexts, responses, "scorer 'profanity_check'")
        if not responses:
            return []
        from profanity_check import predict_prob

        texts = [f"{context_text(c)}\n{r}" if self.include_context else r
                 for c, r in zip(contexts, responses)]
        return [float(p) for p in predict_prob(texts)]


@hookimpl
def register_scorers(register):
    register("profanity_check", ProfanityScorer)
