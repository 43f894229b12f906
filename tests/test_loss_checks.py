"""What a loss term returns is checked before autograd sees it: a clear error naming the stage,
the step and the term (never a raw autograd message), and nothing reaches the optimizer."""

from __future__ import annotations

import pytest
import torch

from losscraft.core.checks import nonfinite, term_problem
from losscraft.core.loss import LossOutput
from losscraft.errors import LossValueError
from losscraft.recipe import load_recipe
from losscraft.trainer import Trainer

TERMS = """
  [[stages.terms]]
  plugin = "nll"

  [[stages.terms]]
  plugin = "bad_return"
  name = "broken"
  mode = "{mode}"
"""


@pytest.mark.parametrize("mode,expected", [
    ("vector", "non-scalar value of shape (2,)"),
    ("detached", "not connected to the graph"),
    ("number", "expected a 0-d tensor"),
    ("tensor", "expected LossOutput"),
])
def test_bad_term_return_names_stage_step_and_term(tmp_path, tiny_recipe, registry, monkeypatch,
                                                   mode, expected):
    stepped = []
    monkeypatch.setattr(torch.optim.AdamW, "step", lambda self, *a, **k: stepped.append(1))
    path = tiny_recipe()
    text = path.read_text().replace('  [[stages.terms]]\n  plugin = "nll"\n',
                                    TERMS.format(mode=mode))
    path.write_text(text)
    recipe = load_recipe(path)
    with pytest.raises(LossValueError) as err:
        Trainer(recipe, registry=registry, show_progress=False).run()
    message = str(err.value)
    assert message.startswith("stage main, step 1, term 'broken': "), message
    assert expected in message
    assert "grad can be implicitly created" not in message
    assert not stepped


def test_term_problem_accepts_a_constant_zero_and_connected_scalars():
    w = torch.ones(3, requires_grad=True)
    assert term_problem(LossOutput(w.sum()), grad_expected=True) is None
    assert term_problem(LossOutput(torch.zeros(())), grad_expected=True) is None
    assert term_problem(LossOutput(torch.tensor(2.0)), grad_expected=False) is None
    assert "not connected" in term_problem(LossOutput(torch.tensor(2.0)), grad_expected=True)
    assert "integer" in term_problem(LossOutput(torch.tensor(2)), grad_expected=False) or \
        "torch.int64" in term_problem(LossOutput(torch.tensor(2)), grad_expected=False)


def test_nonfinite_is_the_shared_check():
    from losscraft.trainer.finite import first_nonfinite

    assert nonfinite(float("nan")) == "nan" and nonfinite(float("-inf")) == "inf"
    assert nonfinite(1.0) is None
    assert first_nonfinite([{"loss": float("nan"), "t": float("nan")}], 1.0) == "term t is nan"
    assert first_nonfinite([{"loss": 1.0}], float("inf")) == "gradient norm is inf"
