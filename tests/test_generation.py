"""Tests of losscraft.generation.decode: sampling replies and scoring them under a tiny Llama."""

from __future__ import annotations

import pytest
import torch

from losscraft.plugins.protocols import RankedCandidate
from losscraft.data.chat import context_ids, end_of_turn_id, response_ids
from losscraft.generation.decode import (ReservedCache, _cache_argument, _decode,
                                         _whole_sequence_nll, generate_responses, response_nll,
                                         sample_and_rerank)
from losscraft.models.tiny import tiny_model, tiny_tokenizer
from losscraft.generation.nucleus import NucleusFilter

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
    # two calls, each one prompt encoding (shared by the 2 samples, it gives "h") and 2 decoding
    # steps ("i", then the end of turn)
    assert model.forward_calls == 2 * (1 + 2)
    assert model.training
    assert done == [1, 2]  # batch_size counts sequences: one history (x2 samples) per call


def test_sampling_from_a_shared_prompt_cache_matches_encoding_each_sample_anew():
    model, tok = _lm()
    model.eval()
    prompts = [context_ids(tok, h) for h in HISTORIES]
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    stops = [end_of_turn_id(tok), tok.eos_token_id]
    sampler = NucleusFilter(0.8, 0.9)

    def draw(input_ids, attention, copies):
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(5)
            return _decode(model, _cache_argument(model), input_ids, attention, copies,
                           max_new_tokens=8, stops=stops, pad_id=0, pick=sampler.sample)

    shared = draw(ids, mask, copies=3)  # each prompt encoded once, its cache repeated
    anew = draw(ids.repeat_interleave(3, dim=0), mask.repeat_interleave(3, dim=0), copies=1)
    assert torch.equal(shared, anew)
    assert len({tuple(r) for r in shared.tolist()}) > 1  # the copies are separate draws


def test_the_reserved_cache_gives_the_logits_of_encoding_the_whole_sequence():
    model, tok = _lm()
    model.eval()
    prompts = [context_ids(tok, h) for h in HISTORIES]
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    positions = (mask.cumsum(dim=1) - 1).clamp_min(0)
    name = _cache_argument(model)
    cache = ReservedCache(model.config, reserve=2)  # a third step outgrows the reserve
    with torch.no_grad():
        model(input_ids=ids[:, :-3], attention_mask=mask[:, :-3], position_ids=positions[:, :-3],
              use_cache=True, **{name: cache})
        cache.batch_repeat_interleave(2)
        step = [model(input_ids=ids[:, t:t + 1].repeat_interleave(2, dim=0),
                      attention_mask=mask[:, :t + 1].repeat_interleave(2, dim=0),
                      position_ids=positions[:, t:t + 1].repeat_interleave(2, dim=0),
                      use_cache=True, **{name: cache}).logits[:, -1]
                for t in range(width - 3, width)]
        full = model(input_ids=ids.repeat_interleave(2, dim=0),
                     attention_mask=mask.repeat_interleave(2, dim=0),
                     position_ids=positions.repeat_interleave(2, dim=0)).logits
    for i, t in enumerate(range(width - 3, width)):
        assert torch.allclose(step[i], full[:, t], atol=1e-5)
    assert cache.get_seq_length() == width
    assert not torch.allclose(step[-1][0], step[-1][2], atol=1e-3)  # the two prompts stay apart


@pytest.mark.parametrize("lora", [False, True])
def test_greedy_decoding_matches_hugging_face_generate(lora):
    model, tok = _lm()
    if lora:  # a peft wrapper takes the cache through to the model it wraps
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"],
                                                 init_lora_weights=False, task_type="CAUSAL_LM"))
        assert _cache_argument(model) is not None
    got = generate_responses(model, tok, HISTORIES, do_sample=False, max_new_tokens=10)
    stops = [end_of_turn_id(tok), tok.eos_token_id]
    model.eval()
    for history, replies in zip(HISTORIES, got):
        ids = torch.tensor([context_ids(tok, history)])
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                 max_new_tokens=10, do_sample=False, eos_token_id=stops,
                                 pad_token_id=0)[0, ids.shape[1]:].tolist()
        cut = next((i for i, t in enumerate(out) if t in stops), len(out))
        assert replies[0] == tok.decode(out[:cut], skip_special_tokens=True).strip()


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


def test_response_nll_reads_a_shared_context_once_per_batch_and_matches_whole_sequences():
    model, tok = _lm()
    histories = [HISTORIES[1]] * 5 + [HISTORIES[0]] * 2 + [["a"]]
    responses = ["I am fine.", "no", "Once upon a time there was a story", "", "yes!",
                 "hello to you", "hi", "b c d"]
    calls = []
    model.register_forward_hook(lambda m, a, k, o: calls.append(k["input_ids"].shape),
                                with_kwargs=True)
    got = response_nll(model, tok, histories, responses, batch_size=3)
    # batches of <= 3 replies: ["a"] with the 2 replies to HISTORIES[0], then the 5 replies to
    # HISTORIES[1] as 3 + 2; each batch is one pass over its contexts and one over its replies
    assert [shape[0] for shape in calls] == [2, 3, 1, 3, 1, 2]
    model.eval()
    contexts = [context_ids(tok, h) for h in histories]
    replies = [response_ids(tok, r) for r in responses]
    with torch.no_grad():
        whole = _whole_sequence_nll(model, contexts, replies, 8, [(0.0, 0)] * len(replies))
    for (nll, n), (nll_whole, n_whole) in zip(got, whole):
        assert n == n_whole
        assert abs(nll - nll_whole) < 1e-4 * max(1.0, abs(nll_whole))


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


# ------------------------------------------------------------------ the prompt memo (exactness)
PROMPTS = [["hello there"], ["how are you?", "fine, and you?", "tell me a story"],
           ["what is your name?"], ["it is raining", "take an umbrella"], ["bye"]]


@pytest.mark.parametrize("do_sample", [True, False])
def test_a_prompt_memo_changes_no_output_and_encodes_each_batch_once(do_sample):
    from losscraft.generation.prompt_memo import PromptMemo

    model, tok = _lm()
    options = dict(num_samples=2, max_new_tokens=6, batch_size=4, seed=3, do_sample=do_sample,
                   temperature=0.8)
    plain = generate_responses(model, tok, PROMPTS, **options)
    memo = PromptMemo(model)
    calls = []
    model.register_forward_hook(lambda m, args, kwargs, out: calls.append(
        kwargs["input_ids"].shape), with_kwargs=True)
    assert generate_responses(model, tok, PROMPTS, memo=memo, **options) == plain
    encodings = sum(shape[1] > 1 for shape in calls)
    assert memo.misses == encodings == (3 if do_sample else 2)  # 2 (or 4) prompts a batch
    calls.clear()
    assert generate_responses(model, tok, PROMPTS, memo=memo, **options) == plain
    assert memo.hits == encodings and not any(shape[1] > 1 for shape in calls)

    # the replies' NLL under the same model reads the same batches of contexts: bit for bit
    # what encoding them again gives, with no context encoded again
    contexts = [h for h, group in zip(PROMPTS, plain) for _ in group]
    replies = [r for group in plain for r in group]
    expected = response_nll(model, tok, contexts, replies, batch_size=4)
    hits = memo.hits
    assert response_nll(model, tok, contexts, replies, batch_size=4, memo=memo) == expected
    if do_sample:  # the same two contexts a batch as sampling's batches
        assert memo.hits == hits + 3


def test_a_prompt_memo_serves_only_its_own_model():
    from losscraft.generation.prompt_memo import PromptMemo

    model, tok = _lm()
    other = tiny_model(len(tok), seed=4)
    memo = PromptMemo(model)
    generate_responses(model, tok, PROMPTS, max_new_tokens=4, batch_size=8, seed=1, memo=memo)
    kept = memo.misses
    assert generate_responses(other, tok, PROMPTS, max_new_tokens=4, batch_size=8, seed=1,
                              memo=memo) == \
        generate_responses(other, tok, PROMPTS, max_new_tokens=4, batch_size=8, seed=1)
    assert memo.hits == 0 and memo.misses == kept
