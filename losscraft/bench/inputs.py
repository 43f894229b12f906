"""Synthetic inputs of a benchmark point and the `StepContext` that serves them to objectives.

Every objective is benchmarked through its ordinary ``__call__(ctx)``: `SyntheticContext` is a
`StepContext` whose policy outputs are given tensors instead of a model's forward — the logits
(``input = "logits"``) or the last hidden states and output weight (``input = "hidden"``, where
``ctx.logits`` is formed on first access, inside the timed region, as a model's ``lm_head``
would) — and whose experts are given the same way. So a third-party objective registered through
the plugin registry is benchmarked without extra code, as long as it reads the context's public
API (``logits``, ``head``, ``hidden_states``, ``expert_logits``, ``expert_head``, ``batch``,
``step_sum``, ``generator``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from losscraft.bench.grid import Point
from losscraft.core.context import StepContext
from losscraft.errors import ModelError
from losscraft.functional.linear_head import LinearHead
from losscraft.types import Batch

#: Negatives packed per row for objectives that require them.
NUM_NEGATIVES = 2


def _randn(shape, gen, dtype, device, scale=1.0):
    # Generate in float32 on the CPU generator, then move/cast: same numbers on every device.
    return (torch.randn(shape, generator=gen) * scale).to(device=device, dtype=dtype)


def synthetic_batch(point: Point, *, negatives: bool, seed: int = 0) -> Batch:
    """A `Batch` of ``point.rows`` rows × ``point.length`` positions, every position scored.

    Without negatives every position is a positive-response token. With negatives each row is
    split into the positive and `NUM_NEGATIVES` negative segments of equal length (no context).
    Row labels alternate safe / unsafe.
    """
    gen = torch.Generator().manual_seed(seed)
    B, T, V = point.rows, point.length, point.vocab
    ids = torch.randint(0, V, (B, T), generator=gen)
    targets = torch.randint(0, V, (B, T), generator=gen)
    if negatives:
        seg_len = max(1, T // (NUM_NEGATIVES + 1))
        segment_ids = (torch.arange(T) // seg_len).clamp_max(NUM_NEGATIVES) + 1
        segment_ids = segment_ids.expand(B, T).clone()
        positions = (torch.arange(T) % seg_len).expand(B, T).clone()
    else:
        segment_ids = torch.ones(B, T, dtype=torch.long)
        positions = torch.arange(T).expand(B, T).clone()
    n = NUM_NEGATIVES if negatives else 0
    batch = Batch(
        input_ids=ids, attention_mask=torch.ones(B, T, dtype=torch.long), position_ids=positions,
        targets=targets, segment_ids=segment_ids,
        response_mask=(segment_ids == 1).float(),
        is_safe=torch.tensor([float((b + 1) % 2) for b in range(B)]),
        negative_mask=torch.ones(B, n, dtype=torch.bool),
        negative_weights=torch.ones(B, n), lengths=torch.full((B,), T))
    return batch.to(point.device)


@dataclass
class BenchInputs:
    """The tensors of one point: the policy's (leaves that receive gradients) and the experts'."""

    point: Point
    batch: Batch
    logits: torch.Tensor | None = None          # (B, T, V) policy logits, requires grad
    head: LinearHead | None = None              # policy hidden (B, T, H) + weight (V, H)
    expert_logits: dict[str, torch.Tensor] = field(default_factory=dict)
    expert_heads: dict[str, LinearHead] = field(default_factory=dict)

    @property
    def leaves(self) -> list[torch.Tensor]:
        """The tensors whose gradients a backward produces (and correctness compares)."""
        if self.logits is not None:
            return [self.logits]
        return [self.head.hidden, self.head.weight]

    def nbytes(self) -> int:
        """Bytes held by the inputs (what peak memory is measured above)."""
        tensors = [*self.leaves, *self.expert_logits.values()]
        for h in self.expert_heads.values():
            tensors += [h.hidden, h.weight]
        return sum(t.numel() * t.element_size() for t in tensors)

    def zero_grad(self) -> None:
        for t in self.leaves:
            t.grad = None

    def subset(self, tokens: int, dtype: torch.dtype) -> "BenchInputs":
        """The first ``tokens`` positions of row 0, cast to ``dtype`` (fresh leaves): the same
        computation on a smaller problem, for correctness checks against a float64 reference."""
        T = min(tokens, self.point.length)
        p = Point(tokens=T, vocab=self.point.vocab, hidden=self.point.hidden,
                  dtype=self.point.dtype, device=self.point.device, experts=self.point.experts,
                  input=self.point.input)
        b = self.batch
        batch = Batch(
            input_ids=b.input_ids[:1, :T], attention_mask=b.attention_mask[:1, :T],
            position_ids=b.position_ids[:1, :T], targets=b.targets[:1, :T],
            segment_ids=b.segment_ids[:1, :T], response_mask=b.response_mask[:1, :T],
            is_safe=b.is_safe[:1], negative_mask=b.negative_mask[:1],
            negative_weights=b.negative_weights[:1], lengths=torch.full((1,), T))

        def cut(t, leaf):
            out = t[:1, :T].detach().to(dtype)
            return out.requires_grad_(True) if leaf else out

        out = BenchInputs(p, batch)
        if self.logits is not None:
            out.logits = cut(self.logits, True)
        else:
            out.head = LinearHead(cut(self.head.hidden, True),
                                  self.head.weight.detach().to(dtype).requires_grad_(True))
        out.expert_logits = {k: cut(v, False) for k, v in self.expert_logits.items()}
        out.expert_heads = {k: LinearHead(cut(h.hidden, False), h.weight.to(dtype))
                            for k, h in self.expert_heads.items()}
        return out


def make_inputs(point: Point, *, expert_names, negatives: bool, seed: int = 0) -> BenchInputs:
    """Random inputs for ``point``: logits with the spread of a trained LM's (σ = 2), or hidden
    states (σ = 1) and weights scaled by ``1/√H`` so that the logits have σ ≈ 1."""
    gen = torch.Generator().manual_seed(seed + 1)
    B, T, V, H = point.rows, point.length, point.vocab, point.hidden
    dtype, device = point.torch_dtype, point.device
    inputs = BenchInputs(point, synthetic_batch(point, negatives=negatives, seed=seed))
    if point.input == "logits":
        inputs.logits = _randn((B, T, V), gen, dtype, device, 2.0).requires_grad_(True)
        for name in expert_names:
            inputs.expert_logits[name] = _randn((B, T, V), gen, dtype, device, 2.0)
    else:
        scale = H ** -0.5
        inputs.head = LinearHead(_randn((B, T, H), gen, dtype, device).requires_grad_(True),
                                 _randn((V, H), gen, dtype, device, scale).requires_grad_(True))
        for name in expert_names:
            inputs.expert_heads[name] = LinearHead(_randn((B, T, H), gen, dtype, device),
                                                   _randn((V, H), gen, dtype, device, scale))
    return inputs


class SyntheticContext(StepContext):
    """A `StepContext` over given tensors instead of model forwards (see the module docstring)."""

    def __init__(self, inputs: BenchInputs, *, seed: int = 0):
        super().__init__(nn.Module(), inputs.batch,
                         generator=torch.Generator(device=inputs.batch.input_ids.device)
                         .manual_seed(seed))
        self.inputs = inputs

    def _forward(self, *, skip_logits: bool = False):  # pragma: no cover - never a model here
        raise ModelError("a synthetic benchmark context has no model forward")

    @property
    def logits(self) -> torch.Tensor:
        if self.inputs.logits is not None:
            return self.inputs.logits
        if "logits" not in self._cache:  # as the model's lm_head would, inside the timing
            self._cache["logits"] = _lm_head_logits(self.inputs.head)
        return self._cache["logits"]

    @property
    def head(self) -> LinearHead:
        if self.inputs.head is None:
            raise ModelError("this point gives logits; the fused path needs --input hidden")
        return self.inputs.head

    @property
    def hidden_states(self) -> torch.Tensor:
        if self.inputs.head is None:
            raise ModelError("this point gives logits; hidden states need --input hidden")
        return self.inputs.head.hidden

    def _check_expert(self, name: str) -> None:
        if name not in self.inputs.expert_logits and name not in self.inputs.expert_heads:
            raise ModelError(f"expert '{name}' is not part of this benchmark point")

    def expert_logits(self, name: str) -> torch.Tensor:
        self._check_expert(name)
        if name in self.inputs.expert_logits:
            return self.inputs.expert_logits[name]
        key = f"expert_logits:{name}"
        if key not in self._shared:  # as the expert model's lm_head would
            with torch.no_grad():
                self._shared[key] = _lm_head_logits(self.inputs.expert_heads[name])
        return self._shared[key]

    def expert_head(self, name: str) -> LinearHead:
        self._check_expert(name)
        if name not in self.inputs.expert_heads:
            raise ModelError("this point gives expert logits; expert heads need --input hidden")
        return self.inputs.expert_heads[name]

    def trainable_params(self) -> dict[str, torch.Tensor]:
        return {}


def _lm_head_logits(head: LinearHead) -> torch.Tensor:
    """A model's logits as its ``lm_head`` (an ``nn.Linear``) forms them: plain ``F.linear``, not
    the fused heads' oneDNN path (`losscraft.functional.onednn_linear`), so the unfused
    implementations are timed as a model would run them."""
    return F.linear(head.hidden, head.weight, head.bias)
