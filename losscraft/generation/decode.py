"""Sampling replies from a causal LM and scoring replies under it.

Both functions build prompts with `losscraft.data.chat.context_ids` and replies with
`losscraft.data.chat.response_ids`, so they see exactly what training sees. They run under
``torch.no_grad`` with the model temporarily in eval mode (its previous mode is restored).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from transformers import DynamicCache, LogitsProcessorList

from losscraft.plugins.protocols import RankedCandidate
from losscraft.data.chat import context_ids, end_of_turn_id, response_ids
from losscraft.generation.nucleus import NucleusFilter
from losscraft.generation.prompt_memo import PromptMemo
from losscraft.generation.reserved_cache import ReservedCache


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
                       progress: Callable[[int], None] | None = None,
                       memo: PromptMemo | None = None) -> list[list[str]]:
    """Sample ``num_samples`` replies for each history (oldest turn first).

    Prompts are sorted by length (so a batch pads little), left-padded and generated
    ``batch_size`` sequences (prompts × samples) at a time; each prompt is encoded once and its
    key/value cache shared by its samples. Temperature, ``top_k`` and ``top_p`` are applied by
    `losscraft.generation.nucleus.NucleusFilter` (the tokens Hugging Face's warpers keep,
    without sorting the vocabulary), which also draws each token from its kept candidates. A
    model that takes a key/value cache is decoded by `_decode` (a cache reserved for the whole
    reply, no per-step concatenation); any other model goes through ``model.generate`` with the
    same filter. Generation stops at the chat template's end-of-turn token (or eos); only the
    new tokens are decoded, with special tokens skipped. Each batch is seeded with ``seed`` plus
    its index inside a forked RNG, so the output is a function of the arguments alone and the
    global RNG is left untouched; ``batch_size`` is one of them when sampling (a row's draws
    depend on its batch and its place in it), not when decoding greedily. ``top_k=0`` disables
    top-k filtering; ``do_sample=False`` decodes greedily (all samples are then identical).
    ``progress(n_done)`` is called with the number of histories done. ``memo``: a `PromptMemo`
    of ``model`` that reuses (and keeps) encoded prompt batches.

    Returns one list of ``num_samples`` strings per history, in the order of ``histories``.
    """
    if num_samples < 1 or max_new_tokens < 1:
        raise ValueError(f"num_samples and max_new_tokens must be >= 1, got {num_samples}, "
                         f"{max_new_tokens}")
    stops = _stop_ids(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    prompts = [context_ids(tokenizer, h, system=system, max_tokens=max_context_tokens)
               for h in histories]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    n_return = num_samples if do_sample else 1
    per_call = max(1, batch_size // n_return)
    sampler = NucleusFilter(temperature, top_p, top_k) if do_sample else None
    device = _device(model)
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    cache_name = _cache_argument(model)
    memo = memo if memo is not None and memo.serves(model) else None
    results: list[list[str]] = [[] for _ in prompts]
    done = 0
    with _eval_mode(model):
        for index, start in enumerate(range(0, len(order), per_call)):
            chunk = order[start:start + per_call]
            input_ids, attention = _left_pad([prompts[i] for i in chunk], pad_id, device)
            with torch.random.fork_rng(devices=fork_devices):
                torch.manual_seed(seed + index)
                if cache_name is not None:
                    rows = _decode(model, cache_name, input_ids, attention, n_return,
                                   max_new_tokens=max_new_tokens, stops=stops, pad_id=pad_id,
                                   pick=sampler.sample if sampler else _greedy,
                                   memo=memo and (memo, [prompts[i] for i in chunk]))
                else:
                    rows = _hf_generate(model, input_ids, attention, n_return,
                                        max_new_tokens=max_new_tokens, stops=stops,
                                        pad_id=pad_id, sampler=sampler)
            texts = [_decode_until_stop(tokenizer, row, stops) for row in rows.tolist()]
            for j, i in enumerate(chunk):
                group = texts[j * n_return:(j + 1) * n_return]
                results[i] = group * num_samples if n_return == 1 else group
            done += len(chunk)
            if progress is not None:
                progress(done)
    return results


def _greedy(logits: torch.Tensor) -> torch.Tensor:
    return logits.argmax(dim=-1)


def _left_pad(rows: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``rows`` left-padded with ``pad_id`` to the longest, and their attention mask."""
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad_id] * (width - len(r)) + r for r in rows], device=device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
    return ids, mask


def _encode_prompts(model, cache_name: str, cache, input_ids: torch.Tensor,
                    attention: torch.Tensor, memo: tuple[PromptMemo, list] | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode left-padded prompts into ``cache``: ``(logits of each row's last position, float;
    the position ids)`` — a model that takes ``logits_to_keep`` projects that position only.
    ``memo``: ``(PromptMemo, the prompts' token lists)``, restored from or kept in the memo."""
    found = memo[0].restore(memo[1], cache) if memo else None
    if found is not None:
        return found
    positions = (attention.cumsum(dim=1) - 1).clamp_min(0)  # left padding, as generate does
    keep = {"logits_to_keep": 1} if _forward_takes(model, "logits_to_keep") else {}
    logits = model(input_ids=input_ids, attention_mask=attention, position_ids=positions,
                   use_cache=True, **{cache_name: cache}, **keep).logits[:, -1].float()
    if memo:
        memo[0].keep(memo[1], cache, logits, positions)
    return logits, positions


def _decode(model, cache_name: str, input_ids: torch.Tensor, attention: torch.Tensor,
            copies: int, *, max_new_tokens: int, stops: list[int], pad_id: int,
            pick: Callable[[torch.Tensor], torch.Tensor],
            memo: tuple[PromptMemo, list] | None = None) -> torch.Tensor:
    """The new tokens (``(rows × copies, ≤ max_new_tokens)``, ``pad_id`` after a row stops) of
    ``copies`` replies to each left-padded prompt row: the prompts are encoded once (logits of
    the last position only), their cache repeated per copy, then each step ``pick(logits)``
    draws one token per row, until every row has produced a stop token or ``max_new_tokens``."""
    cache = ReservedCache(model.config, reserve=max_new_tokens)
    logits, positions = _encode_prompts(model, cache_name, cache, input_ids, attention, memo)
    if copies > 1:
        cache.batch_repeat_interleave(copies)
        logits = logits.repeat_interleave(copies, dim=0)
        attention = attention.repeat_interleave(copies, dim=0)
        positions = positions.repeat_interleave(copies, dim=0)
    position = positions[:, -1:] + 1
    stop = torch.tensor(stops, device=input_ids.device)
    finished = torch.zeros(logits.shape[0], dtype=torch.bool, device=input_ids.device)
    new: list[torch.Tensor] = []
    for step in range(max_new_tokens):
        token = pick(logits).masked_fill(finished, pad_id)
        new.append(token)
        finished |= torch.isin(token, stop)
        if step + 1 == max_new_tokens or bool(finished.all()):
            break
        attention = torch.cat([attention, attention.new_ones(attention.shape[0], 1)], dim=1)
        logits = model(input_ids=token[:, None], attention_mask=attention, position_ids=position,
                       use_cache=True, **{cache_name: cache}).logits[:, -1].float()
        position = position + 1
    return torch.stack(new, dim=1)


def _hf_generate(model, input_ids: torch.Tensor, attention: torch.Tensor, copies: int, *,
                 max_new_tokens: int, stops: list[int], pad_id: int,
                 sampler: NucleusFilter | None) -> torch.Tensor:
    """What `_decode` gives, through ``model.generate`` (a model without a cache argument)."""
    sampling = dict(do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                    logits_processor=LogitsProcessorList([sampler])) \
        if sampler is not None else dict(do_sample=False, temperature=None, top_p=None,
                                         top_k=None)
    out = model.generate(input_ids=input_ids.repeat_interleave(copies, dim=0),
                         attention_mask=attention.repeat_interleave(copies, dim=0),
                         max_new_tokens=max_new_tokens, eos_token_id=stops, pad_token_id=pad_id,
                         **sampling)
    return out[:, input_ids.shape[1]:]


def _cache_argument(model) -> str | None:
    """The keyword a model's forward takes its key/value cache by (``cache`` from transformers 5,
    ``past_key_values`` before), or None for a model without a dynamic cache."""
    if not getattr(model, "_supports_default_dynamic_cache", lambda: True)():
        return None
    return next((n for n in ("cache", "past_key_values") if _forward_takes(model, n)), None)


def _forward_takes(model, name: str) -> bool:
    """Whether the model's forward has a parameter ``name`` (a peft wrapper passes its keyword
    arguments on to the model it wraps, so that model's forward is the one asked)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return name in inspect.signature(type(inner).forward).parameters


def _decode_until_stop(tokenizer, ids: list[int], stops: list[int]) -> str:
    cut = next((i for i, t in enumerate(ids) if t in stops), len(ids))
    return tokenizer.decode(ids[:cut], skip_special_tokens=True).strip()


def response_nll(model, tokenizer, histories: Sequence[Sequence[str]],
                 responses: Sequence[str], *, batch_size: int = 8,
                 max_context_tokens: int | None = None, system: str | None = None,
                 memo: PromptMemo | None = None) -> list[tuple[float, int]]:
    """``(Σ NLL, n_tokens)`` of each response given its history.

    The response tokens are those of `response_ids` (the end-of-turn marker included), so
    perplexity over a set is ``exp(Σ nll / Σ n)`` and per-reply fluency is ``-nll / n``.
    Replies to the same history share one encoding of it: the histories are encoded once
    (left-padded, logits of the last position only), their key/value cache is copied to each of
    their replies, and the replies (right-padded) are read on top — k samples of a context, or a
    reranker's candidates, cost one context and k replies instead of k whole sequences. At most
    ``batch_size`` replies go through one forward pass, shortest contexts first. A model without
    a cache argument reads each whole sequence (`_whole_sequence_nll`). ``memo``: a
    `PromptMemo` of ``model`` that reuses (and keeps) encoded context batches.
    """
    if len(histories) != len(responses):
        raise ValueError(f"{len(histories)} histories but {len(responses)} responses")
    contexts = [context_ids(tokenizer, h, system=system, max_tokens=max_context_tokens)
                for h in histories]
    replies = [response_ids(tokenizer, r) for r in responses]
    cache_name = _cache_argument(model)
    memo = memo if memo is not None and memo.serves(model) else None
    out: list[tuple[float, int]] = [(0.0, 0)] * len(replies)
    with _eval_mode(model):
        if cache_name is None:
            return _whole_sequence_nll(model, contexts, replies, batch_size, out)
        for batch in _reply_batches(contexts, replies, batch_size):
            for i, found in zip((i for _, group in batch for i in group),
                                _shared_context_nll(model, cache_name, contexts, replies, batch,
                                                    memo)):
                out[i] = found
    return out


def _reply_batches(contexts: list[list[int]], replies: list[list[int]], size: int
                   ) -> list[list[tuple[int, list[int]]]]:
    """Batches of ``(context index, its reply indices)``, at most ``size`` replies a batch (a
    context with more replies is split), contexts ordered by length."""
    groups: dict[tuple[int, ...], tuple[int, list[int]]] = {}
    for i, context in enumerate(contexts):
        groups.setdefault(tuple(context), (i, []))[1].append(i)
    units = [(first, members[s:s + size]) for first, members in groups.values()
             for s in range(0, len(members), size)]
    units.sort(key=lambda u: len(contexts[u[0]]))
    batches: list[list[tuple[int, list[int]]]] = []
    rows = 0
    for unit in units:
        if not batches or rows + len(unit[1]) > size:
            batches.append([])
            rows = 0
        batches[-1].append(unit)
        rows += len(unit[1])
    return batches


def _shared_context_nll(model, cache_name: str, contexts: list[list[int]],
                        replies: list[list[int]], batch: list[tuple[int, list[int]]],
                        memo: PromptMemo | None = None) -> list[tuple[float, int]]:
    """``(Σ NLL, n)`` of every reply of ``batch`` (in its order), each context encoded once."""
    device = _device(model)
    prompts = [contexts[first] for first, _ in batch]
    ids, mask = _left_pad(prompts, 0, device)
    cache = DynamicCache(config=model.config)
    first, positions = _encode_prompts(model, cache_name, cache, ids, mask,  # predicts token 0
                                       memo and (memo, prompts))
    owner = torch.tensor([c for c, (_, group) in enumerate(batch) for _ in group], device=device)
    cache.batch_select_indices(owner)
    rows = [replies[i] for _, group in batch for i in group]
    tail = max(len(r) for r in rows)
    targets = torch.full((len(rows), tail), -100, dtype=torch.long)
    for row, reply in enumerate(rows):
        targets[row, :len(reply)] = torch.tensor(reply)
    targets = targets.to(device)
    reading = targets.clamp_min(0)
    attention = torch.cat([mask[owner], (targets >= 0).long()], dim=1)
    start = positions[owner, -1:] + 1
    logits = model(input_ids=reading, attention_mask=attention,
                   position_ids=start + torch.arange(tail, device=device),
                   use_cache=True, **{cache_name: cache}).logits[:, :-1].float()
    # token 0 is predicted by the context's last position, token t + 1 by reply position t
    nll = torch.cat([F.cross_entropy(first[owner], reading[:, 0], reduction="none")[:, None],
                     F.cross_entropy(logits.transpose(1, 2), reading[:, 1:], reduction="none")],
                    dim=1)
    valid = targets >= 0
    sums = (nll * valid).sum(dim=1).tolist()
    counts = valid.sum(dim=1).tolist()
    return [(float(s), int(n)) for s, n in zip(sums, counts)]


def _whole_sequence_nll(model, contexts: list[list[int]], replies: list[list[int]],
                        batch_size: int, out: list[tuple[float, int]]) -> list[tuple[float, int]]:
    """`response_nll` reading each (context, reply) sequence whole, left-padded, shortest
    first; a model that takes ``logits_to_keep`` computes logits of the replies' positions only."""
    device = _device(model)
    keeps_logits = _forward_takes(model, "logits_to_keep")
    order = sorted(range(len(replies)), key=lambda i: len(contexts[i]) + len(replies[i]))
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        seqs = [contexts[i] + replies[i] for i in idx]
        width = max(len(s) for s in seqs)
        tail = max(len(replies[i]) for i in idx)  # every reply ends at the last position
        input_ids = torch.zeros(len(idx), width, dtype=torch.long)
        attention = torch.zeros(len(idx), width, dtype=torch.long)
        targets = torch.full((len(idx), tail), -100, dtype=torch.long)
        for row, (i, seq) in enumerate(zip(idx, seqs)):
            input_ids[row, width - len(seq):] = torch.tensor(seq)
            attention[row, width - len(seq):] = 1
            targets[row, tail - len(replies[i]):] = torch.tensor(replies[i])
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
