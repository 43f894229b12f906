"""Deterministic in-memory data for tests: a data source plugin (``testing_dialogs``) whose
examples cover every case a loss must handle — safe, unsafe and unlabelled rows, negatives with
weights, RoTs — registered by `ensure_testing_plugin`."""

from __future__ import annotations

from losscraft.plugins.hookspecs import hookimpl
from losscraft.types import Example

#: the name under which `TestingDialogs` is registered
SOURCE_NAME = "testing_dialogs"
PLUGIN_NAME = "losscraft_testing"

_TURNS = ["hi, how are you?", "can you help me with my homework?", "i want to skip school",
          "my friend lied to me", "what should i cook tonight?", "i'm going to key his car"]
_REPLIES = ["Good, thanks for asking!", "Sure, what subject is it?",
            "School matters; maybe talk to someone about why.",
            "That hurts. Could you talk to them calmly?", "How about a simple pasta?",
            "That would hurt him and get you in trouble; maybe cool off first."]
_NEGATIVES = ["whatever, loser.", "go away.", "just copy it from a friend."]


def toy_examples(count: int = 8, *, negatives: bool = True) -> list[Example]:
    """``count`` short dialogs: safe, unsafe (every third) and unlabelled (every fourth) rows,
    two weighted negatives each (``negatives``) and one RoT on every other row."""
    examples = []
    for i in range(count):
        j = i % len(_TURNS)
        safe = None if i % 4 == 3 else i % 3 != 0
        examples.append(Example(
            history=[_TURNS[(j + 1) % len(_TURNS)], _TURNS[j]], response=_REPLIES[j],
            is_safe=safe, rots=["It's good to be kind."] if i % 2 else [],
            negatives=[_NEGATIVES[i % 3], _NEGATIVES[(i + 1) % 3]] if negatives else [],
            negative_weights=[1.0, 1.5] if negatives else None, id=f"testing-{i}"))
    return examples


class TestingDialogs:
    """Deterministic short dialogs covering safe, unsafe and unlabelled rows (for tests).

    Args:
        count: number of examples.
        negatives: attach two weighted negative replies to each example.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, count: int = 8, negatives: bool = True):
        if count < 1:
            raise ValueError("count must be positive")
        self.count, self.negatives = count, negatives

    def __iter__(self):
        return iter(toy_examples(self.count, negatives=self.negatives))


class _TestingPlugin:
    @hookimpl
    def register_data_sources(self, register):
        register(SOURCE_NAME, TestingDialogs)


def ensure_testing_plugin(registry) -> None:
    """Register `TestingDialogs` as ``testing_dialogs`` in ``registry`` unless it is there."""
    if PLUGIN_NAME not in registry.plugins:
        registry.add_plugin(_TestingPlugin(), PLUGIN_NAME)
