"""Collation: `Example`s → a packed `Batch` through the tokenizer's chat template.

Row layout (see `losscraft.types.Batch`): the context minus its last token is shared; then every
response segment (the positive, then each negative) is ``[last context token] + response``. The
repeated last context token gets the same position id as in the context, so each segment's first
response token is predicted from exactly the state a one-by-one encoding would give. With
negatives, a block mask lets each segment see the shared context and itself only, so scoring N+1
replies costs one forward over ``context + Σ replies`` tokens instead of N+1 context encodings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from losscraft.recipe.schema import ROT_PLACEMENTS
from losscraft.data.chat import context_ids, response_ids
from losscraft.types import Batch, Example

#: Where rules-of-thumb go in the prompt when a stage augments examples with them.


def with_rots_in_prompt(history: Sequence[str], rots: Sequence[str], placement: str,
                        system: str | None) -> tuple[list[str], str | None]:
    """History and system prompt with ``rots`` inserted according to ``placement``."""
    if placement not in ROT_PLACEMENTS:
        raise ValueError(f"rot placement must be one of {ROT_PLACEMENTS}, got {placement!r}")
    history = list(history)
    if placement == "none" or not rots:
        return history, system
    text = "Rules of thumb: " + " ".join(r.strip() for r in rots)
    if placement == "system":
        return history, f"{system}\n{text}" if system else text
    last = history[-1] if history else ""
    joined = f"{text}\n{last}" if placement == "before_last_turn" else f"{last}\n({text})"
    return history[:-1] + [joined], system


@dataclass
class DialogCollator:
    """Builds `Batch`es from `Example`s.

    Args:
        tokenizer: a Hugging Face tokenizer with a chat template.
        max_context_tokens: context budget; oldest turns are dropped first, then oldest tokens.
        max_response_tokens: per-response budget (the end-of-turn token is kept).
        pack_negatives: pack each example's negatives into its row (for contrastive terms).
        max_negatives: at most this many negatives per example (the first ones are kept).
        system: an optional system prompt.
        rot_placement: where an example's RoTs go in the prompt (`ROT_PLACEMENTS`).
    """

    tokenizer: object
    max_context_tokens: int = 256
    max_response_tokens: int = 64
    pack_negatives: bool = False
    max_negatives: int = 4
    system: str | None = None
    rot_placement: str = "none"

    def _segments(self, example: Example) -> tuple[list[int], list[list[int]], list[float]]:
        history, system = with_rots_in_prompt(example.history, example.rots, self.rot_placement,
                                              self.system)
        ctx = context_ids(self.tokenizer, history, system=system,
                          max_tokens=self.max_context_tokens)
        replies = [example.response]
        weights: list[float] = []
        if self.pack_negatives:
            negs = list(example.negatives[: self.max_negatives])
            replies += negs
            given = example.negative_weights or []
            weights = [float(given[i]) if i < len(given) else 1.0 for i in range(len(negs))]
        segs = [response_ids(self.tokenizer, r, max_tokens=self.max_response_tokens)
                for r in replies]
        return ctx, segs, weights

    @staticmethod
    def _row_tokens(ctx: list[int], segs: list[list[int]]) -> int:
        # the context's last token starts each reply segment, so it is counted once per reply
        return len(ctx) - 1 + sum(len(r) + 1 for r in segs)

    def row_length(self, example: Example) -> int:
        """Tokens of ``example``'s row in a batch (context, then each packed reply)."""
        ctx, segs, _ = self._segments(example)
        return self._row_tokens(ctx, segs)

    def __call__(self, examples: Sequence[Example]) -> Batch:
        encoded = [self._segments(e) for e in examples]
        n_neg = max((len(s) - 1 for _, s, _ in encoded), default=0)
        length = max(self._row_tokens(c, s) for c, s, _ in encoded)
        B = len(examples)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.full((B, length), pad_id, dtype=torch.long)
        position_ids = torch.zeros((B, length), dtype=torch.long)
        targets = torch.full((B, length), -100, dtype=torch.long)
        segment_ids = torch.zeros((B, length), dtype=torch.long)
        block = torch.zeros((B, length, length), dtype=torch.bool) if n_neg else None
        padding = torch.zeros((B, length), dtype=torch.long)
        negative_mask = torch.zeros((B, n_neg), dtype=torch.bool)
        negative_weights = torch.ones((B, n_neg))
        lengths = torch.zeros(B, dtype=torch.long)
        for b, (ctx, segs, weights) in enumerate(encoded):
            shared = len(ctx) - 1
            input_ids[b, :shared] = torch.tensor(ctx[:-1], dtype=torch.long)
            position_ids[b, :shared] = torch.arange(shared)
            if block is not None:
                block[b, :shared, :shared] = torch.ones(shared, shared).tril().bool()
            start = shared
            for k, seg in enumerate(segs):
                tokens = [ctx[-1]] + seg
                end = start + len(tokens)
                input_ids[b, start:end] = torch.tensor(tokens, dtype=torch.long)
                position_ids[b, start:end] = torch.arange(shared, shared + len(tokens))
                targets[b, start:end - 1] = torch.tensor(seg, dtype=torch.long)
                segment_ids[b, start:end - 1] = k + 1
                if block is not None:
                    block[b, start:end, :shared] = True
                    block[b, start:end, start:end] = torch.ones(len(tokens), len(tokens)).tril().bool()
                start = end
            padding[b, :start] = 1
            lengths[b] = start
            position_ids[b, start:] = torch.arange(length - start) + (start and position_ids[b, start - 1] + 1)
            if block is not None:  # padding rows attend to themselves to keep softmax finite
                idx = torch.arange(start, length)
                block[b, idx, idx] = True
            negative_mask[b, : len(segs) - 1] = True
            if weights:
                negative_weights[b, : len(weights)] = torch.tensor(weights)
        is_safe = torch.tensor([math.nan if e.is_safe is None else float(e.is_safe)
                                for e in examples])
        return Batch(
            input_ids=input_ids,
            attention_mask=block.unsqueeze(1) if block is not None else padding,
            position_ids=position_ids,
            targets=targets,
            segment_ids=segment_ids,
            response_mask=(segment_ids == 1).float(),
            is_safe=is_safe,
            negative_mask=negative_mask,
            negative_weights=negative_weights,
            examples=list(examples),
            lengths=lengths,
        )
