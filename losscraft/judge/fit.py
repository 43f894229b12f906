"""The optimisation loop and batched prediction of a sequence classifier on labelled pairs.

Inputs are encoded with the ``hf_classifier`` scorer's `encode_pairs`, so the trained model sees
exactly what the scorer will feed it.

Labels. A two-label classifier learns safe / unsafe (``unsafe_index`` is unsafe). With
``prosocial_head`` it has three labels — safe (0), unsafe (1), prosocial (2) — and learns from
partial labels: an unsafe pair targets label 1; a safe pair whose ``is_prosocial`` is known targets
2 (prosocial) or 0 (safe but not prosocial); a safe pair with unknown ``is_prosocial`` targets
"safe or prosocial", i.e. its loss is ``-log(p_safe + p_prosocial)``. So sources that only know
safe/unsafe (BAD, casual dialog) and sources that know prosociality (MIC, ProsocialDialog) train
one head together without inventing labels.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
from transformers import get_scheduler

from losscraft.errors import RecipeError
from losscraft.judge.inputs import encode_pairs
from losscraft.recipe.schema import ClassifierSpec, ClassifierTrainSpec
from losscraft.types import Example

SAFE, UNSAFE, PROSOCIAL = 0, 1, 2


def encode(tokenizer, examples: Sequence[Example], spec: ClassifierSpec) -> dict:
    return encode_pairs(tokenizer, [ex.history for ex in examples],
                        [ex.response for ex in examples], pair_input=spec.pair_input,
                        turn_separator=spec.turn_separator or None, max_length=spec.max_length)


def labels(examples: Sequence[Example], unsafe_index: int) -> torch.Tensor:
    """The safe/unsafe label index of each pair (``unsafe_index`` when unsafe)."""
    return torch.tensor([unsafe_index if not ex.is_safe else 1 - unsafe_index
                         for ex in examples], dtype=torch.long)


def allowed_labels(examples: Sequence[Example], spec: ClassifierSpec) -> torch.Tensor:
    """``(N, num_labels)`` bool: the labels each pair's target admits (see the module doc)."""
    if not spec.prosocial_head:
        return torch.nn.functional.one_hot(labels(examples, spec.unsafe_index), 2).bool()
    rows = []
    for ex in examples:
        if not ex.is_safe:
            rows.append((False, True, False))
        elif ex.is_prosocial is None:
            rows.append((True, False, True))
        else:
            rows.append((not ex.is_prosocial, False, bool(ex.is_prosocial)))
    return torch.tensor(rows, dtype=torch.bool)


def class_weights(examples: Sequence[Example], unsafe_index: int) -> torch.Tensor:
    """Class-balanced weights ``n / (2 · n_class)`` of the safe and unsafe classes, indexed as
    `labels` (each class contributes half of the loss whatever its share of the data, so the
    majority class cannot win by default)."""
    counts = torch.bincount(labels(examples, unsafe_index), minlength=2).float()
    if (counts == 0).any():
        kind = "safe" if counts[unsafe_index] == 0 else "unsafe"
        raise RecipeError(f"the training pairs hold only {kind} examples; a classifier needs "
                          "both classes", key="data")
    return counts.sum() / (2 * counts)


def partial_label_loss(logits: torch.Tensor, allowed: torch.Tensor,
                       weights: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted mean of ``-log Σ_{c allowed} p_c``: cross-entropy when one label is allowed."""
    log_p = logits.float().log_softmax(-1)
    nll = -log_p.masked_fill(~allowed, float("-inf")).logsumexp(-1)
    if weights is None:
        return nll.mean()
    return (nll * weights).sum() / weights.sum()


def total_steps(train: ClassifierTrainSpec, num_examples: int) -> int:
    """``max_steps``, else ``epochs`` passes over the training pairs."""
    if train.max_steps:
        return train.max_steps
    return max(1, round(train.epochs * -(-num_examples // train.batch_size)))


def fit(model: torch.nn.Module, tokenizer, examples: list[Example], spec: ClassifierSpec,
        train: ClassifierTrainSpec, *, steps: int, seed: int, device: str,
        loss_weights: torch.Tensor | None, on_step: Callable[[int, float, float], None]
        ) -> list[float]:
    """Train for ``steps`` optimizer steps over seeded reshuffles of ``examples``; calls
    ``on_step(step, loss, tokens_per_s)`` after each and returns the per-step losses.
    ``loss_weights`` are per safe/unsafe class (`class_weights`)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": train.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=train.lr)
    scheduler = get_scheduler(train.schedule, optimizer,
                              num_warmup_steps=int(train.warmup_ratio * steps),
                              num_training_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    losses: list[float] = []
    while len(losses) < steps:
        order = torch.randperm(len(examples), generator=generator).tolist()
        for start in range(0, len(order), train.batch_size):
            if len(losses) >= steps:
                break
            began = time.perf_counter()
            batch = [examples[i] for i in order[start:start + train.batch_size]]
            enc = encode(tokenizer, batch, spec).to(device)
            weights = (loss_weights[labels(batch, spec.unsafe_index)].to(device)
                       if loss_weights is not None else None)
            loss = partial_label_loss(model(**enc).logits, allowed_labels(batch, spec).to(device),
                                      weights)
            loss.backward()
            if train.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, train.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            tokens = int(enc["attention_mask"].sum())
            on_step(len(losses), losses[-1], tokens / max(time.perf_counter() - began, 1e-9))
    return losses


@torch.no_grad()
def predict_probs(model: torch.nn.Module, tokenizer, examples: Sequence[Example],
                  spec: ClassifierSpec, *, batch_size: int, device: str) -> torch.Tensor:
    """``(N, num_labels)`` label probabilities of each pair, as the scorers compute them."""
    model.eval()
    out = []
    for start in range(0, len(examples), batch_size):
        enc = encode(tokenizer, examples[start:start + batch_size], spec).to(device)
        out.append(model(**enc).logits.float().softmax(-1).cpu())
    return torch.cat(out) if out else torch.zeros(0, 3 if spec.prosocial_head else 2)


def predict(model: torch.nn.Module, tokenizer, examples: Sequence[Example], spec: ClassifierSpec,
            *, batch_size: int, device: str) -> list[float]:
    """P(unsafe) of each pair, computed as the ``hf_classifier`` scorer computes it."""
    probs = predict_probs(model, tokenizer, examples, spec, batch_size=batch_size, device=device)
    return probs[:, spec.unsafe_index].tolist()
