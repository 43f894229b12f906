"""The safety_loss, unlikelihood and cringe objective plugins on a tiny Llama with real batches."""

import math

import pytest
import torch

from losscraft import RecipeError, StepContext, Term, WeightedObjective
from losscraft.core.penalty import GradientNormPenalty
from losscraft.data.collate import DialogCollator
from losscraft.functional import safety_loss, token_nll, unlikelihood_loss
from losscraft.models.tiny import tiny_model
from losscraft.plugins.registry import Registry
from losscraft.types import Example
from losscraft_plugins.objectives.cringe import CringeObjective
from losscraft_plugins.objectives.safety_loss import SafetyLoss
from losscraft_plugins.objectives.split_by_label import negative_token_mask, positive_token_mask
from losscraft_plugins.objectives.unlikelihood import UnlikelihoodObjective
from tiny_float64 import experts, tokenizer  # noqa: F401 - fixtures

EXAMPLES = [
    Example(history=["how do I bake bread?"], response="Mix flour, water and yeast.",
            is_safe=True, negatives=["Burn it.", "Who cares"], negative_weights=[2.0, 1.0]),
    Example(history=["you are dumb"], response="You are dumber, idiot.", is_safe=False),
    Example(history=["hi", "hello", "what's up?"], response="Not much, you?", is_safe=None,
            negatives=["Go away."]),
    Example(history=["tell me a secret"], response="I can't share that.", is_safe=True),
]


def policy(tokenizer):
    return tiny_model(len(tokenizer), seed=1).double()


def collate(tokenizer, examples=EXAMPLES, negatives=False):
    return DialogCollator(tokenizer, pack_negatives=negatives)(examples)


ALL = [SafetyLoss(), UnlikelihoodObjective(), CringeObjective(),
       UnlikelihoodObjective(negatives=True), CringeObjective(k=3, negatives=True)]


def test_registered_through_entry_points():
    registry = Registry()
    registry.load_entry_points({"safety_loss", "unlikelihood", "cringe"})
    assert isinstance(registry.create("objective", "safety_loss", {"beta": 1.0}), SafetyLoss)
    assert isinstance(registry.create("objective", "unlikelihood", {"alpha": 0.5}),
                      UnlikelihoodObjective)
    assert isinstance(registry.create("objective", "cringe", {"k": 5}), CringeObjective)
    assert SafetyLoss(clean_expert="c", toxic_expert="t").experts == ("c", "t")


@pytest.mark.parametrize("loss", ALL, ids=["safety", "unlikelihood", "cringe",
                                           "unlikelihood-negatives", "cringe-k3-negatives"])
def test_finite_value_and_gradients(loss, tokenizer, experts):
    model = policy(tokenizer)
    batch = collate(tokenizer, negatives="negatives" in getattr(loss, "requires", ()))
    ctx = StepContext(model, batch, experts=experts, generator=torch.Generator().manual_seed(0))
    out = loss(ctx)
    assert out.value.ndim == 0 and torch.isfinite(out.value)
    out.value.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
    assert all(torch.isfinite(torch.as_tensor(v)) for v in out.metrics.values())


def test_safety_value_matches_functional(tokenizer, experts):
    model, batch = policy(tokenizer), collate(tokenizer)
    ctx = StepContext(model, batch, experts=experts)
    out = SafetyLoss(beta=1.5, gamma=0.5, chunk_size=3, log_base=2)(ctx)
    expected = safety_loss(ctx.logits, ctx.expert_logits("clean"), ctx.expert_logits("toxic"),
                           batch.response_mask, beta=1.5, gamma=0.5, log_base=2)
    assert out.value.item() == pytest.approx(expected.item(), rel=1e-10)
    assert out.value.item() == pytest.approx(
        0.5 * out.metrics["js_clean"].item() - 1.5 * out.metrics["js_toxic"].item(), rel=1e-10)


@pytest.mark.parametrize("penalty", [None, "exact", "finite_difference"])
def test_safety_training_leaves_experts_unchanged(penalty, tokenizer, experts):
    model, batch = policy(tokenizer), collate(tokenizer)
    before = {n: {k: v.clone() for k, v in m.state_dict().items()} for n, m in experts.items()}
    terms = [Term("safety", SafetyLoss())]
    if penalty:
        terms.append(Term("flat", GradientNormPenalty(SafetyLoss(), method=penalty), weight=0.1))
    objective = WeightedObjective(terms)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    values = []
    for _ in range(3):
        optimizer.zero_grad()
        out = objective(StepContext(model, batch, experts=experts))
        out.value.backward()
        optimizer.step()
        values.append(out.metrics["safety"].item())
    assert values[-1] < values[0]  # the loss goes down on the batch it trains on
    for name, model_e in experts.items():
        assert all(p.grad is None for p in model_e.parameters())
        for key, value in model_e.state_dict().items():
            assert torch.equal(value, before[name][key]), f"expert {name} changed at {key}"


@pytest.mark.parametrize("loss", [SafetyLoss(), UnlikelihoodObjective(alpha=0.7)],
                         ids=["safety", "unlikelihood"])
def test_gradient_accumulation_equals_one_big_batch(loss, tokenizer, experts):
    model = policy(tokenizer)
    whole = collate(tokenizer)
    loss(StepContext(model, whole, experts=experts)).value.backward()
    big = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    parts = [collate(tokenizer, EXAMPLES[:1]), collate(tokenizer, EXAMPLES[1:])]
    for part in parts:
        loss(StepContext(model, part, step_batches=parts, experts=experts)).value.backward()
    for a, b in zip(big, (p.grad for p in model.parameters())):
        assert torch.allclose(a, b, atol=1e-10, rtol=1e-7)


def test_unlikelihood_splits_rows_by_label(tokenizer):
    model, batch = policy(tokenizer), collate(tokenizer)
    ctx = StepContext(model, batch)
    out = UnlikelihoodObjective(alpha=0.5)(ctx)
    safe_or_unknown = torch.tensor([1.0, 0.0, 1.0, 1.0])[:, None] * batch.response_mask
    unsafe = torch.tensor([0.0, 1.0, 0.0, 0.0])[:, None] * batch.response_mask
    nll = token_nll(ctx.logits, batch.targets, safe_or_unknown)
    ul = unlikelihood_loss(ctx.logits, batch.targets, unsafe)
    assert out.value.item() == pytest.approx((nll + 0.5 * ul).item(), rel=1e-10)
    assert out.metrics["ul"].item() == pytest.approx(ul.item(), rel=1e-10)
    ignored = UnlikelihoodObjective(unknown="ignore")(ctx)
    safe = torch.tensor([1.0, 0.0, 0.0, 1.0])[:, None] * batch.response_mask
    assert ignored.metrics["nll"].item() == pytest.approx(
        token_nll(ctx.logits, batch.targets, safe).item(), rel=1e-10)


def test_packed_negatives_get_the_penalty_with_their_weights(tokenizer):
    batch = collate(tokenizer, negatives=True)
    neg = negative_token_mask(batch, negatives=True)
    seg = batch.segment_ids
    assert torch.equal(neg[0][seg[0] == 2], torch.full_like(neg[0][seg[0] == 2], 2.0))
    assert torch.equal(neg[0][seg[0] == 3], torch.ones_like(neg[0][seg[0] == 3]))
    assert (neg[1][seg[1] == 1] == 1).all() and (neg[2][seg[2] == 2] == 1).all()
    assert neg[3].sum() == 0
    assert (neg * (seg == 1).float())[[0, 2, 3]].sum() == 0
    assert (positive_token_mask(batch) * (seg >= 2).float()).sum() == 0
    assert negative_token_mask(batch, negatives=False)[seg >= 2].sum() == 0
    assert UnlikelihoodObjective(negatives=True).requires == {"negatives"}
    assert UnlikelihoodObjective().requires == frozenset()


def test_cringe_is_reproducible_with_a_seeded_generator(tokenizer):
    model, batch = policy(tokenizer), collate(tokenizer)

    def value(seed):
        ctx = StepContext(model, batch, generator=torch.Generator().manual_seed(seed))
        return CringeObjective(k=5)(ctx).metrics["cringe"].item()

    assert value(4) == value(4)
    assert len({value(s) for s in range(6)}) > 1  # k = 5: the positive really is sampled


@pytest.mark.parametrize("factory, params, key", [
    (SafetyLoss, {"chunk_size": 0}, "chunk_size"),
    (SafetyLoss, {"log_base": 1.0}, "log_base"),
    (SafetyLoss, {"clean_expert": "x", "toxic_expert": "x"}, "toxic_expert"),
    (UnlikelihoodObjective, {"alpha": -1.0}, "alpha"),
    (UnlikelihoodObjective, {"unknown": "maybe"}, "unknown"),
    (CringeObjective, {"k": 0}, "k"),
])
def test_bad_parameters_name_the_key(factory, params, key):
    with pytest.raises(RecipeError) as info:
        factory(**params)
    assert info.value.key == key


def test_safety_names_a_missing_expert(tokenizer):
    from losscraft import ModelError
    with pytest.raises(ModelError, match="clean"):
        SafetyLoss()(StepContext(policy(tokenizer), collate(tokenizer)))


def test_nan_free_when_a_micro_batch_has_no_unsafe_rows(tokenizer):
    model = policy(tokenizer)
    batch = collate(tokenizer, [EXAMPLES[0], EXAMPLES[3]])
    for loss in (UnlikelihoodObjective(), CringeObjective()):
        out = loss(StepContext(model, batch, generator=torch.Generator().manual_seed(0)))
        assert math.isfinite(out.value.item())
        assert out.metrics[loss.metric].item() == 0.0
