"""Plain data types shared by every layer: one dialog `Example` and one collated `Batch`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # Example needs no torch: plugins and the CLI import this module cheaply
    import torch

#: ProsocialDialog's safety labels, from least to most severe.
SAFETY_LABELS = (
    "__casual__",
    "__possibly_needs_caution__",
    "__probably_needs_caution__",
    "__needs_caution__",
    "__needs_intervention__",
)

#: Severity of each safety label in [0, 1] (0.25 per level): the default weight of a negative
#: reply for a context with that label.
SEVERITY = {label: level / 4 for level, label in enumerate(SAFETY_LABELS)}


@dataclass
class Example:
    """One dialog training/evaluation example.

    Attributes:
        history: earlier turns, oldest first; the last one is the turn being answered.
        response: the target reply (the positive, for contrastive objectives).
        is_safe: ``True`` safe / ``False`` unsafe / ``None`` unknown — the label of ``response``.
        is_prosocial: whether ``response`` notices a problem in the context and gently guides
            (``True``), or is not prosocial — condones, ignores, changes the subject
            (``False``); ``None`` when unknown or not meaningful (e.g. a casual context).
        safety_label: a ProsocialDialog-style severity label of the *context*, if known.
        rots: rules-of-thumb attached to the context.
        negatives: inappropriate alternative replies for the same context.
        negative_weights: optional per-negative weights (same length as ``negatives``).
        source: name of the data source that produced it.
        id: a stable identifier (used for caching mined negatives, reports).
        meta: anything else a source wants to keep (not used by the core).
    """

    history: list[str]
    response: str
    is_safe: bool | None = None
    is_prosocial: bool | None = None
    safety_label: str | None = None
    rots: list[str] = field(default_factory=list)
    negatives: list[str] = field(default_factory=list)
    negative_weights: list[float] | None = None
    source: str = ""
    id: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Batch:
    """A collated batch. Row ``b`` holds one context followed by its response segments.

    Sequence layout per row: ``[context tokens][positive response][negative 1]...[negative N][pad]``.
    Without negatives there is only the positive segment. Tensors are aligned so that
    ``logits[:, t]`` predicts ``targets[:, t]`` (targets are already shifted by one).

    Attributes:
        input_ids: ``(B, T)`` token ids.
        attention_mask: ``(B, T)`` padding mask, or ``(B, 1, T, T)`` boolean block mask when
            negatives are packed (each response segment sees the context and itself only).
        position_ids: ``(B, T)``; response segments restart right after the context.
        targets: ``(B, T)`` next-token ids (``-100`` where nothing is predicted).
        segment_ids: ``(B, T)`` which segment ``targets[:, t]`` belongs to: ``0`` context/padding,
            ``1`` the positive response, ``k + 1`` negative ``k`` (1-based).
        response_mask: ``(B, T)`` float, 1 on positive-response targets (``segment_ids == 1``).
        is_safe: ``(B,)`` float: 1 safe, 0 unsafe, NaN unknown (label of the positive segment).
        negative_mask: ``(B, N)`` bool, which negative slots are real (``N`` may be 0).
        negative_weights: ``(B, N)`` float weights of negatives (1 where unweighted).
        examples: the source examples, for losses that need text (rots, ids).
        lengths: ``(B,)`` real (non-padding) tokens per row.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    targets: torch.Tensor
    segment_ids: torch.Tensor
    response_mask: torch.Tensor
    is_safe: torch.Tensor
    negative_mask: torch.Tensor
    negative_weights: torch.Tensor
    examples: list[Example] = field(default_factory=list)
    lengths: torch.Tensor | None = None

    @property
    def num_negatives(self) -> int:
        return int(self.negative_mask.shape[1])

    @property
    def num_response_tokens(self) -> int:
        """Positive-response tokens in this batch (the NLL normaliser before accumulation)."""
        return int(self.response_mask.sum().item())

    def to(self, device: torch.device | str) -> "Batch":
        import torch

        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v)
                 for k, v in self.__dict__.items()}
        return Batch(**moved)

    def model_inputs(self, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
        """Keyword arguments for a Hugging Face causal LM forward. A packed block mask is passed
        as an additive ``(B, 1, T, T)`` mask in ``dtype`` (the attention compute dtype, default
        float32), which both eager and SDPA attention accept as-is."""
        import torch

        dtype = torch.float32 if dtype is None else dtype
        mask = self.attention_mask
        if mask.dim() == 4:
            additive = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
            mask = additive.masked_fill(~mask.bool(), torch.finfo(dtype).min)
        return {"input_ids": self.input_ids, "attention_mask": mask,
                "position_ids": self.position_ids}
