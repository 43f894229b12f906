"""Tests of losscraft.generation: sampling replies and scoring them under a tiny Llama."""

from __future__ import annotations

import torch

from losscraft.components import RankedCandidate
from losscraft.data.chat import context_ids, end_of_turn_id, response_ids
from losscraft.generation import _prefill, generate_responses, response_nll, sample_and_rerank
from losscraft.models.tiny import tiny_model, tiny_tokenizer
from losscraft.sampling import NucleusFilter

HISTORIES = [["hello there"], ["how are you?", "fine, and you?", "tell me a story"]]


def _lm():
    tok = tiny_tokenizer()
    return tiny_model(len(tok), seed=3), tok


def _scripted(model, tok, script: dict[str, str], default: str):
    """Make ``model`` deterministic: the next token depends only on the last input token."""
    ids = {tok.convert_tokens_to_ids(a): tok.convert_tokens_to_ids(b) for a, b in script.items()}
    fallback = tok.convert_tokens_to_ids(default)
    model.forward_calls = 0

    def hook(module, args, kwargs, output):
        module.forward_calls += 1
        last = kwargs["input_ids"][:, -1].tolist()
        logits = torch.full_like(output.logits[:, -1], -1e4)
        for row, token in enumerate(last):
            logits[row, ids.get(token, fallback)] = 0.0
        output.logits[:, -1] = logits
        return output

    model.register_forward_hook(hook, with_kwargs=True)
    return model


def test_generation_is_deterministic_for_a_seed_and_leaves_global_rng_alone():
    model, tok = _lm()
    state = torch.get_rng_state()
    a = generate_responses(model, tok, HISTORIES, num_samples=3, max_new_tokens=8, seed=1)
    b = generate_responses(model, tok, HISTORIES, num_samples=3, max_new_tokens=8, seed=1)
    c = generate_responses(model, tok, HISTORIES, num_samples=3, max_new_tokens=8, seed=2)
    assert torch.equal(state, torch.get_rng_state())
    assert a == b and a != c
    assert [len(s) for s in a] == [3, 3] and all(isinstance(t, str) for s in a for t in s)


def test_generation_stops_at_end_of_turn_and_restores_train_mode():
    model, tok = _lm()
    eot = tok.convert_ids_to_tokens(end_of_turn_id(tok))
    # after the generation prompt's newline: "h", "i", end of turn, then "x" forever
    _scripted(model, tok, {"Ċ": "h", "h": "i", "i": eot}, default="x")
    model.train()
    done = []
    out = generate_responses(model, tok, HISTORIES, num_samples=2, max_new_tokens=12,
                             batch_size=2, progress=done.append)
    assert out == [["hi", "hi"], ["hi", "hi"]]
    # two calls, each one prompt encoding (shared by the 2 samples) and 3 decoding steps
    assert model.forward_calls == 2 * (1 + 3)
    assert model.training
    assert done == [1, 2]  # batch_size counts sequences: one history (x2 samples) per call


def test_sampling_from_a_shared_prompt_cache_matches_encoding_each_sample_anew():
    model, tok = _lm()
    model.eval()
    got = generate_responses(model, tok, HISTORIES, num_samples=3, max_new_tokens=8, seed=5,
                             temperature=0.8, top_p=0.9, batch_size=6)
    # the same draws through plain generate: every sample encodes its own copy of the prompt
    prompts = [context_ids(tok, h) for h in HISTORIES]
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = (torch.arange(width) >= width - torch.tensor([len(p) for p in prompts])[:, None])
    stops = [end_of_turn_id(tok), tok.eos_token_id]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        out = model.generate(input_ids=ids, attention_mask=mask.long(), max_new_tokens=8,
                             num_return_sequences=3, do_sample=True, temperature=1.0, top_p=1.0,
                             top_k=0, logits_processor=[NucleusFilter(0.8, 0.9)],
                             eos_token_id=stops, pad_token_id=0)
    rows = out[:, width:].tolist()
    texts = [tok.decode(r[:next((i for i, t in enumerate(r) if t in stops), len(r))],
                        skip_special_tokens=True).strip() for r in rows]
    assert got == [texts[0:3], texts[3:6]]


def test_the_shared_prompt_cache_gives_the_logits_of_encoding_each_copy():
    model, tok = _lm()
    model.eval()
    prompts = [context_ids(tok, h) for h in HISTORIES]
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    positions = (mask.cumsum(dim=1) - 1).clamp_min(0).repeat_interleave(2, dim=0)
    with torch.no_grad():
        cache = _prefill(model, ids, mask, copies=2)
        last = model(input_ids=ids[:, -1:].repeat_interleave(2, dim=0),
                     attention_mask=mask.repeat_interleave(2, dim=0),
                     position_ids=positions[:, -1:], **cache).logits[:, -1]
        full = model(input_ids=ids.repeat_interleave(2, dim=0), position_ids=positions,
                     attention_mask=mask.repeat_interleave(2, dim=0)).logits[:, -1]
    assert set(cache) == {"cache"} or set(cache) == {"past_key_values"}
    assert torch.allclose(last, full, atol=1e-5)
    assert not torch.allclose(last[0], last[2], atol=1e-3)  # the two prompts stay apart


def test_greedy_batched_generation_matches_one_at_a_time():
    model, tok = _lm()
    batched = generate_responses(model, tok, HISTORIES, do_sample=False, max_new_tokens=6,
                                 num_samples=2)
    alone = [generate_responses(model, tok, [h], do_sample=False, max_new_tokens=6)[0]
             for h in HISTORIES]
    assert [s[0] for s in batched] == [s[0] for s in alone]
    assert all(s[0] == s[1] for s in batched)


def test_response_nll_equals_direct_per_response_computation():
    model, tok = _lm()
    histories = HISTORIES + [["a"]]
    responses = ["I am fine.", "Once upon a time there was a very long story", ""]
    got = response_nll(model, tok, histories, responses, batch_size=2)
    model.eval()
    for (nll, n), h, r in zip(got, histories, responses):
        ctx, resp = context_ids(tok, h), response_ids(tok, r)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ctx + resp])).logits[0]
        logp = logits[len(ctx) - 1:-1].log_softmax(-1)
        direct = -logp[torch.arange(len(resp)), torch.tensor(resp)].sum().item()
        assert n == len(resp)
        assert abs(nll - direct) < 1e-3 * max(1.0, abs(direct))


def test_sample_and_rerank_binds_the_policy_and_orders_distinct_samples():
    model, tok = _lm()

    class LongestFirst:
        is_bound = False

        def bind(self, m, t):
            self.bound = (m, t)
            self.is_bound = True

        def rerank(self, history, candidates, *, rots=None):
            ranked = [RankedCandidate(c, float(len(c))) for c in candidates]
            return sorted(ranked, key=lambda c: -c.score)

    reranker = LongestFirst()
    ranked = sample_and_rerank(model, tok, ["hello"], reranker, k=6, max_new_tokens=6, seed=0)
    assert reranker.bound == (model, tok)
    texts = [c.text for c in ranked]
    assert len(texts) == len(set(texts)) >= 2
    assert [c.score for c in ranked] == sorted((c.score for c in ranked), reverse=True)
