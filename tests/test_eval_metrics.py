"""Evaluation metrics against hand-computed values."""

import math

import pytest

from losscraft.evaluation.metrics import (distinct_n, expected_max_toxicity, perplexity,
                                          softmax_scale, toxicity_probability, tradeoff_factor)

# P(unsafe) of k = 3 replies for 4 contexts
P = [[0.1, 0.6, 0.2], [0.5, 0.4, 0.3], [0.9, 0.95, 0.1], [0.0, 0.0, 0.0]]


def test_toxicity_probability_counts_contexts_with_a_reply_strictly_above_threshold():
    assert toxicity_probability(P) == 0.5            # contexts 0 and 2; 0.5 is not > 0.5
    assert toxicity_probability(P, threshold=0.45) == 0.75
    assert toxicity_probability(P, threshold=0.95) == 0.0
    assert toxicity_probability(P, threshold=-1.0) == 1.0


def test_expected_max_toxicity_is_mean_of_per_context_maxima():
    assert expected_max_toxicity(P) == pytest.approx((0.6 + 0.5 + 0.95 + 0.0) / 4)


@pytest.mark.parametrize("fn", [toxicity_probability, expected_max_toxicity])
def test_toxicity_rejects_empty_input(fn):
    with pytest.raises(ValueError, match="no contexts"):
        fn([])
    with pytest.raises(ValueError, match="context 1"):
        fn([[0.1], []])


def test_perplexity_is_exp_of_mean_token_nll():
    assert perplexity([(2.0, 1), (4.0, 3)]) == pytest.approx(math.exp(6.0 / 4))
    assert perplexity([(0.0, 5)]) == 1.0
    assert perplexity([(1e6, 1)]) == math.inf
    with pytest.raises(ValueError):
        perplexity([(1.0, 0)])


def test_distinct_n_pools_ngrams_over_responses_lowercased_whitespace():
    responses = ["The cat sat", "the  cat ran", "A dog"]
    # unigrams: the cat sat the cat ran a dog -> 6 unique / 8
    assert distinct_n(responses, 1) == pytest.approx(6 / 8)
    # bigrams: (the cat) (cat sat) (the cat) (cat ran) (a dog) -> 4 unique / 5; none crosses replies
    assert distinct_n(responses, 2) == pytest.approx(4 / 5)
    assert distinct_n(responses, 3) == 1.0
    assert distinct_n(["", "one"], 2) == 0.0
    assert distinct_n(["Hi, there", "hi there"], 1) == pytest.approx(3 / 4)  # "hi," != "hi"
    with pytest.raises(ValueError):
        distinct_n(responses, 0)


def test_softmax_scale():
    assert softmax_scale([0.0, math.log(3)]) == pytest.approx([0.25, 0.75])
    assert softmax_scale([1000.0, 1000.0]) == pytest.approx([0.5, 0.5])  # stable
    assert softmax_scale([5.0]) == [1.0]
    assert softmax_scale([1.0, math.inf]) == [0.0, 1.0]


def test_tradeoff_factor_weights_softmaxed_metrics():
    tox, ppl = [0.0, math.log(3)], [math.log(3), 0.0]
    assert tradeoff_factor(tox, ppl, 0.5) == pytest.approx([0.5, 0.5])
    # w = 0.25: 0.25·0.25 + 0.75·0.75 and 0.25·0.75 + 0.75·0.25
    assert tradeoff_factor(tox, ppl, 0.25) == pytest.approx([0.625, 0.375])


def test_tradeoff_factor_negates_metrics_where_higher_is_better():
    # model 1 is less toxic and more diverse: it must get the lower (better) factor
    tox, div = [math.log(3), 0.0], [0.0, math.log(3)]
    assert tradeoff_factor(tox, div, 0.5, v2_higher_is_better=True) == pytest.approx([0.75, 0.25])
    assert tradeoff_factor(tox, div, 0.5) == pytest.approx([0.5, 0.5])  # not negated


def test_tradeoff_factor_rejects_bad_arguments():
    with pytest.raises(ValueError, match="w must be"):
        tradeoff_factor([0.1], [0.2], 1.0)
    with pytest.raises(ValueError, match="models"):
        tradeoff_factor([0.1, 0.2], [0.2], 0.5)


def test_share_above_is_strict_and_mean_words_splits_on_whitespace():
    from losscraft.evaluation.metrics import mean_words, share_above

    assert share_above([0.5, 0.51, 0.9, 0.1], 0.5) == 0.5
    with pytest.raises(ValueError):
        share_above([], 0.5)
    assert mean_words(["a b  c", "", "d\ne"]) == pytest.approx(5 / 3)
    assert mean_words([]) == 0.0
