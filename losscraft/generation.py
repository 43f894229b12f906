"""Sampling replies from a causal LM and scoring replies under it.

Both functions build prompts with `losscraft.data.chat.context_ids` and replies with
`losscraft.data.chat.response_ids`, so they see exactly what training sees. They run under
``torch.no_grad`` with the model temporarily in eval mode (its previous mode is restored).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from transformers import DynamicCache, LogitsProcessorList

from losscraft.components import RankedCandidate
from losscraft.data.chat import context_ids, end_of_turn_id, response_ids
from losscraft.sampling import NucleusFilter


@contextmanager
def _eval_mode(model):
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _stop_ids(tokenizer) -> list[int]:
    ids = [end_of_turn_id(tokenizer), tokenizer.eos_token_id]
    return list(dict.fromkeys(i for i in ids if i is not None))


def generate_responses(model, tokenizer, histories: Sequence[Sequence[str]], *,
                       num_samples: int = 1, max_new_tokens: int = 48, temperature: float = 1.0,
                       top_p: float = 0.95, top_k: int = 0, do_sample: bool = True,
                       batch_size: int = 32, seed: int = 0, system: str | None = None,
                       max_context_tokens: int | None = None,
                       progress: Callable[[int], None] | None = None) -> list[list[str]]:
    """Sample ``num_samples`` replies for each history (oldest turn first).

    Prompts are left-padded and generated ``batch_size`` sequences (prompts × samples) at a time;
    each prompt is encoded once and its key/value cache shared by its samples. Temperature,
    ``top_k`` and ``top_p`` are applied by `losscraft.sampling.NucleusFilter` (the tokens Hugging
    Face's warpers keep, without sorting the vocabulary).
    Generation stops at the chat template's end-of-turn token (or eos); only the new tokens are
    decoded, with special tokens skipped. Each batch is seeded with ``seed`` plus its index inside
    a forked RNG, so the output is a function of the arguments alone and the global RNG is left
    untouched. ``top_k=0`` disables top-k filtering; ``do_sample=False`` decodes greedily (all
    samples are then identical). ``progress(n_done)`` is called with the number of histories done.

    Returns one list of ``num_samples`` strings per history.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    stops = _stop_ids(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    prompts = [context_ids(tokenizer, h, system=system, max_tokens=max_context_tokens)
               for h in histories]
    n_return = num_samples if do_sample else 1
    per_call = max(1, batch_size // n_return)
    # the filter does temperature / top-k / top-p; generate's own warpers stay off
    sampling = dict(do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                    logits_processor=LogitsProcessorList(
                        [NucleusFilter(temperature, top_p, top_k)])) \
        if do_sample else dict(do_sample=False, temperature=None, top_p=None, top_k=None)
    device = _device(model)
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    results: list[list[str]] = []
    with _eval_mode(model):
        for index, start in enumerate(range(0, len(prompts), per_call)):
            chunk = prompts[start:start + per_call]
            width = max(len(p) for p in chunk)
            input_ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in chunk],
                                     device=device)
            attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk],
                                     device=device)
            cache = _prefill(model, input_ids, attention, n_return)
            input_ids = input_ids.repeat_interleave(n_return, dim=0)
            attention = attention.repeat_interleave(n_return, dim=0)
            with torch.random.fork_rng(devices=fork_devices):
                torch.manual_seed(seed + index)
                out = model.generate(input_ids=input_ids, attention_mask=attention,
                                     max_new_tokens=max_new_tokens, eos_token_id=stops,
                                     pad_token_id=pad_id, **cache, **sampling)
            texts = [_decode_until_stop(tokenizer, row[width:].tolist(), stops) for row in out]
            for i in range(len(chunk)):
                group = texts[i * n_return:(i + 1) * n_return]
                results.append(group * num_samples if n_return == 1 else group)
            if progress is not None:
                progress(len(results))
    return results


def _prefill(model, input_ids: torch.Tensor, attention: torch.Tensor,
             copies: int) -> dict[str, Any]:
    """The key/value cache of every prompt but its last token, computed once per prompt and
    repeated ``copies`` times, as ``generate`` keyword arguments (empty when the model cannot
    take a prepared cache). ``generate`` would otherwise encode each prompt once per sample."""
    name = _cache_argument(model)
    if copies == 1 or name is None or input_ids.shape[1] < 2:
        return {}
    cache = DynamicCache(config=model.config)
    positions = (attention.cumsum(dim=1) - 1).clamp_min(0)  # left padding, as generate does
    model(input_ids=input_ids[:, :-1], attention_mask=attention[:, :-1],
          position_ids=positions[:, :-1], use_cache=True, **{name: cache})
    cache.batch_repeat_interleave(copies)
    return {name: cache}


def _cache_argument(model) -> str | None:
    """The keyword a model's forward takes its key/value cache by (``cache`` from transformers 5,
    ``past_key_values`` before), or None for a model without a dynamic cache."""
    if not getattr(model, "_supports_default_dynamic_cache", lambda: True)():
        return None
    return next((n for n in ("cache", "past_key_values") if _forward_takes(model, n)), None)


def _forward_takes(model, name: str) -> bool:
    """Whether the model's forward has a parameter ``name``."""
    return name in inspect.signature(type(model).forward).parameters


def _decode_until_stop(tokenizer, ids: list[int], stops: list[int]) -> str:
    cut = next((i for i, t in enumerate(ids) if t in stops), len(ids))
    return tokenizer.decode(ids[:cut], skip_special_tokens=True).strip()


def response_nll(model, tokenizer, histories: Sequence[Sequence[str]],
                 responses: Sequence[str], *, batch_size: int = 8,
                 max_context_tokens: int | None = None,
                 system: str | None = None) -> list[tuple[float, int]]:
    """``(Σ NLL, n_tokens)`` of each response given its history.

    The response tokens are those of `response_ids` (the end-of-turn marker included), so
    perplexity over a set is ``exp(Σ nll / Σ n)`` and per-reply fluency is ``-nll / n``.
    Sequences are left-padded with an attention mask and batched shortest first; a model that
    takes ``logits_to_keep`` computes logits for the replies' positions only (the vocabulary
    projection of every context position was a fifth of the compute and most of the memory).
    """
    if len(histories) != len(responses):
        raise ValueError(f"{len(histories)} histories but {len(responses)} responses")
    pairs = [(context_ids(tokenizer, h, system=system, max_tokens=max_context_tokens),
              response_ids(tokenizer, r)) for h, r in zip(histories, responses)]
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
    device = _device(model)
    keeps_logits = _forward_takes(model, "logits_to_keep")
    out: list[tuple[float, int]] = [(0.0, 0)] * len(pairs)
    with _eval_mode(model):
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            seqs = [pairs[i][0] + pairs[i][1] for i in idx]
            width = max(len(s) for s in seqs)
            tail = max(len(pairs[i][1]) for i in idx)  # every reply ends at the last position
            input_ids = torch.zeros(len(idx), width, dtype=torch.long)
            attention = torch.zeros(len(idx), width, dtype=torch.long)
            targets = torch.full((len(idx), tail), -100, dtype=torch.long)
            for row, (i, seq) in enumerate(zip(idx, seqs)):
                resp = pairs[i][1]
                input_ids[row, width - len(seq):] = torch.tensor(seq)
                attention[row, width - len(seq):] = 1
                targets[row, tail - len(resp):] = torch.tensor(resp)
            positions = (attention.cumsum(dim=1) - 1).clamp_min(0)
            extra = {"logits_to_keep": tail + 1} if keeps_logits else {}
            logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                           position_ids=positions.to(device), **extra).logits
            # logits at position t predict token t + 1: the last `tail` tokens
            logits = logits[:, -(tail + 1):-1].float()
            targets = targets.to(device)
            nll = F.cross_entropy(logits.transpose(1, 2), targets.clamp_min(0), reduction="none")
            valid = targets >= 0
            sums = (nll * valid).sum(dim=1).tolist()
            counts = valid.sum(dim=1).tolist()
            for row, i in enumerate(idx):
                out[i] = (float(sums[row]), int(counts[row]))
    return out


def sample_and_rerank(model, tokenizer, history: Sequence[str], reranker, *, k: int = 8,
                      rots: Sequence[str] | None = None, **gen_kwargs) -> list[RankedCandidate]:
    """Sample ``k`` replies for ``history`` and order the distinct ones with ``reranker``
    (best first). A reranker with an unbound ``bind(model, tokenizer)`` is bound to ``model``,
    which then serves as its reference LM. ``gen_kwargs`` go to `generate_responses`."""
    if hasattr(reranker, "bind") and not getattr(reranker, "is_bound", True):
        reranker.bind(model, tokenizer)
    samples = generate_responses(model, tokenizer, [history], num_samples=k, **gen_kwargs)[0]
    candidates = list(dict.fromkeys(samples))
    return reranker.rerank(history, candidates, rots=rots)
