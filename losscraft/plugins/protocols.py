"""Protocols of the non-loss components that plugins provide (models, data, scoring, RoTs).

Factories registered through the hooks in `losscraft.plugins.hookspecs` return objects that satisfy these
protocols. Construction must be cheap and must validate its arguments (raise `RecipeError` /
`DataError` / `ModelError` naming the parameter or file); heavy work happens in the methods.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from losscraft.types import Example

#: A dialog context: a single string or a list of turns (oldest first).
Context = str | Sequence[str]


@runtime_checkable
class DataSource(Protocol):
    """An iterable of `Example` (re-iterable: each ``iter()`` starts from the beginning)."""

    def __iter__(self) -> Iterator[Example]: ...


@dataclass
class LoadedModel:
    """A loaded causal LM with its tokenizer. ``source`` says where it came from (for logs)."""

    model: Any
    tokenizer: Any
    source: str = ""


@runtime_checkable
class ModelProvider(Protocol):
    """Loads a model and tokenizer. ``dtype`` is a ``torch.dtype`` or ``None`` (provider's)."""

    def load(self, *, device: str = "cpu", dtype: Any = None) -> LoadedModel: ...


@runtime_checkable
class Scorer(Protocol):
    """A safety classifier: P(unsafe) of each response given its context (batched).

    Optional extras that reports use when present (see `prosocial_method`):
    ``p_prosocial(contexts, responses) -> list[float]`` — P(the reply notices the problem and
    gently guides) — and ``probe_metrics() -> dict | None`` — the scorer's measured quality."""

    def p_unsafe(self, contexts: Sequence[Context], responses: Sequence[str]) -> list[float]: ...


def prosocial_method(scorer):
    """The scorer's ``p_prosocial(contexts, responses)`` method, or ``None`` without one."""
    method = getattr(scorer, "p_prosocial", None)
    return method if callable(method) else None


@runtime_checkable
class RotGenerator(Protocol):
    """Produces rules-of-thumb for dialog histories (one list of RoTs per history)."""

    def generate(self, histories: Sequence[Sequence[str]]) -> list[list[str]]: ...


@dataclass
class RankedCandidate:
    """A candidate reply with its per-criterion scores (raw and normalised) and combined score."""

    text: str
    score: float
    scores: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class Reranker(Protocol):
    """Orders candidate replies for one history, best first."""

    def rerank(self, history: Sequence[str], candidates: Sequence[str], *,
               rots: Sequence[str] | None = None) -> list[RankedCandidate]: ...
