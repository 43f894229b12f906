"""The optimisation loop and batched prediction of a sequence classifier on labelled pairs.

Inputs are encoded with the ``hf_classifier`` scorer's `encode_pairs`, so the trained model sees
exactly what the scorer will feed it. Label of a pair: ``unsafe_index`` when unsafe, the other
index when safe.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
from transformers import get_scheduler

from losscraft.classifier.schema import ClassifierSpec, ClassifierTrainSpec
from losscraft.errors import RecipeError
from losscraft.types import Example
from losscraft.classifier.inputs import encode_pairs


def encode(tokenizer, examples: Sequence[Example], spec: ClassifierSpec) -> dict:
    return encode_pairs(tokenizer, [ex.history for ex in examples],
                        [ex.response for ex in examples], pair_input=spec.pair_input,
                        turn_separator=spec.turn_separator or None, max_length=spec.max_length)


def labels(examples: Sequence[Example], unsafe_index: int) -> torch.Tensor:
    return torch.tensor([unsafe_index if not ex.is_safe else 1 - unsafe_index
                         for ex in examples], dtype=torch.long)


def class_weights(examples: Sequence[Example], unsafe_index: int) -> torch.Tensor:
    """Class-balanced cross-entropy weights ``n / (2 · n_class)`` (each class contributes half
    of the loss whatever its share of the data, so the majority class cannot win by default)."""
    counts = torch.bincount(labels(examples, unsafe_index), minlength=2).float()
    if (counts == 0).any():
        kind = "safe" if counts[unsafe_index] == 0 else "unsafe"
        raise RecipeError(f"the training pairs hold only {kind} examples; a classifier needs "
                          "both classes", key="data")
    return counts.sum() / (2 * counts)


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
    ``on_step(step, loss, tokens_per_s)`` after each and returns the per-step losses."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": train.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=train.lr)
    scheduler = get_scheduler(train.schedule, optimizer,
                              num_warmup_steps=int(train.warmup_ratio * steps),
                              num_training_steps=steps)
    weight = loss_weights.to(device) if loss_weights is not None else None
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight)
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
            logits = model(**enc).logits.float()
            loss = loss_fn(logits, labels(batch, spec.unsafe_index).to(device))
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
def predict(model: torch.nn.Module, tokenizer, examples: Sequence[Example], spec: ClassifierSpec,
            *, batch_size: int, device: str) -> list[float]:
    """P(unsafe) of each pair, computed as the ``hf_classifier`` scorer computes it."""
    model.eval()
    out: list[float] = []
    for start in range(0, len(examples), batch_size):
        enc = encode(tokenizer, examples[start:start + batch_size], spec).to(device)
        probs = model(**enc).logits.float().softmax(-1)[:, spec.unsafe_index]
        out.extend(probs.cpu().tolist())
    return out
