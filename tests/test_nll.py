import math

import torch

from losscraft import StepContext
from losscraft.data.collate import DialogCollator
from losscraft.functional import token_nll
from losscraft.models import tiny_model, tiny_tokenizer
from losscraft.types import Example
from losscraft_plugins.objectives.nll import NLLLoss


def test_token_nll_hand_computed():
    # two positions, vocab 3; only the first is masked in
    logits = torch.tensor([[[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]]])
    targets = torch.tensor([[1, 0]])
    mask = torch.tensor([[1.0, 0.0]])
    assert math.isclose(token_nll(logits, targets, mask).item(), math.log(3), rel_tol=1e-6)
    # both positions: mean of ln3 and -log(e^2/(e^2+2))
    both = (math.log(3) + -math.log(math.e**2 / (math.e**2 + 2))) / 2
    assert math.isclose(token_nll(logits, targets).item(), both, rel_tol=1e-6)
    # explicit normaliser divides the masked sum
    assert math.isclose(token_nll(logits, targets, mask, normalizer=4).item(), math.log(3) / 4,
                        rel_tol=1e-6)


def test_ignore_index_and_empty_mask():
    logits = torch.randn(1, 3, 5)
    assert token_nll(logits, torch.tensor([[-100, -100, -100]])).item() == 0.0


def _examples():
    return [Example(history=["hello there", "how are you?"], response="fine, thanks a lot"),
            Example(history=["what's up"], response="not much"),
            Example(history=["tell me a joke"], response="why did the chicken cross the road?"),
            Example(history=["bye"], response="see you")]


def test_gradient_accumulation_matches_one_batch():
    tok = tiny_tokenizer()
    collate = DialogCollator(tok, max_context_tokens=64, max_response_tokens=32)
    loss = NLLLoss()

    def grads(batches):
        model = tiny_model(len(tok), seed=1)
        for b in batches:
            loss(StepContext(model, b, step_batches=batches)).value.backward()
        return [p.grad.clone() for p in model.parameters()]

    exs = _examples()
    full = grads([collate(exs)])
    split = grads([collate(exs[:1]), collate(exs[1:])])  # uneven token counts on purpose
    for a, b in zip(full, split):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_rows_filter_uses_labels():
    tok = tiny_tokenizer()
    exs = _examples()
    exs[0].is_safe, exs[1].is_safe = True, False
    batch = DialogCollator(tok)(exs[:2])
    model = tiny_model(len(tok))
    safe = NLLLoss(rows="safe")(StepContext(model, batch))
    assert safe.metrics["tokens"] == float(batch.response_mask[0].sum())
