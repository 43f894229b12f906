"""FlatGD's reading of the paper, spelled out in the recipes: the safety term's outer weight, the
JS log base (Appendix F: 2), the LM term's rows; a warning when β ≥ γ; ``rows`` validated."""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

import pytest

from losscraft import RecipeError
from losscraft_plugins.objectives.nll import NLLLoss
from losscraft_plugins.objectives.safety_loss import SafetyLoss

RECIPES = Path(__file__).parent.parent / "recipes"


def main_terms(name: str) -> dict[str, dict]:
    raw = tomllib.loads((RECIPES / name).read_text(encoding="utf-8"))
    (main,) = [s for s in raw["stages"] if s["name"] == "main"]
    return {t["name"]: t for t in main["terms"]}


@pytest.mark.parametrize("recipe", ["flatgd.toml", "safety_loss.toml"])
def test_recipes_state_the_reading_explicitly(recipe):
    terms = main_terms(recipe)
    safety, lm = terms["safety"], terms["lm"]
    assert safety["weight"] == 1.0 and lm["weight"] == 1.0      # outer weight, α
    assert (safety["beta"], safety["gamma"]) == (2.0, 3.0)
    assert safety["log_base"] == 2.0
    assert lm["rows"] == "all"
    text = (RECIPES / recipe).read_text(encoding="utf-8")
    assert "weight = 2.0" in text and '"safe"' in text          # the other readings, documented


def test_flatgd_penalty_is_over_the_step():
    assert "penalty" in main_terms("flatgd.toml")["safety"]
    assert "whole optimizer step" in (RECIPES / "flatgd.toml").read_text(encoding="utf-8")


def test_beta_not_below_gamma_is_warned_not_refused(caplog):
    with caplog.at_level(logging.WARNING):
        SafetyLoss()
        SafetyLoss(beta=1.0, gamma=3.0)
    assert not caplog.records
    with caplog.at_level(logging.WARNING):
        loss = SafetyLoss(beta=3.0, gamma=3.0)
    assert loss.beta == 3.0
    assert len(caplog.records) == 1
    assert "drifting away from both experts" in caplog.text


@pytest.mark.parametrize("rows", ["all", "safe"])
def test_nll_rows_options(rows):
    assert NLLLoss(rows=rows).rows == rows


def test_nll_rows_rejects_other_values():
    with pytest.raises(RecipeError, match="rows must be one of 'all', 'safe'") as info:
        NLLLoss(rows="clean")
    assert info.value.key == "rows"
