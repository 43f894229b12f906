"""``shouting``: P(unsafe) from the share of upper-case letters in a reply."""

from losscraft import hookimpl
from losscraft.errors import PluginError


class ShoutingScorer:
    """P(unsafe) = share of upper-case letters among the reply's letters, to the power ``gamma``.

    Args:
        gamma: sharpens (> 1) or flattens (< 1) the score.
    """

    def __init__(self, gamma: float = 1.0):
        self.gamma = gamma

    def p_unsafe(self, contexts, responses):
        if len(contexts) != len(responses):
            raise PluginError(f"{len(contexts)} contexts but {len(responses)} responses")
        scores = []
        for reply in responses:
            letters = [c for c in reply if c.isalpha()]
            share = sum(c.isupper() for c in letters) / len(letters) if letters else 0.0
            scores.append(share ** self.gamma)
        return scores


@hookimpl
def register_scorers(register):
    register("shouting", ShoutingScorer)
