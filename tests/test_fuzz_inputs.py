"""Property tests (hypothesis): any value for a recipe setting, and any JSON data row, gives either
a clear `LosscraftError` or something usable — never another exception."""

import copy
import json
import tomllib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import TINY_RECIPE
from losscraft.data.collate import DialogCollator
from losscraft.errors import LosscraftError
from losscraft.models.tiny import tiny_tokenizer
from losscraft.recipe import parse_recipe, validate_recipe
from losscraft.trainer.prepare.stage_data import check_example

KEYS = ["run.seed", "run.device", "run.precision", "run.threads", "run.log_every",
        "run.on_nonfinite", "run.max_skipped_steps", "stages.0.lr", "stages.0.weight_decay",
        "stages.0.schedule", "stages.0.warmup_steps", "stages.0.warmup_ratio",
        "stages.0.max_grad_norm", "stages.0.checkpoint_every", "stages.0.max_negatives",
        "stages.0.max_steps", "stages.0.epochs", "stages.0.batch_size", "stages.0.grad_accum",
        "stages.0.name", "stages.0.init", "stages.0.max_text_chars", "stages.0.terms.0.weight",
        "stages.0.data.0.count", "stages.0.data.0.limit", "lora.r", "lora.dropout"]
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                   st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                   st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3),
                                                                        st.integers(), max_size=2))


def _assign(raw, key, value):
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    node[parts[-1]] = value


@pytest.fixture(scope="module")
def base_raw(tmp_path_factory):
    return tomllib.loads(TINY_RECIPE.format(out=tmp_path_factory.mktemp("fuzz") / "run"))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(assignments=st.lists(st.tuples(st.sampled_from(KEYS), VALUES), min_size=1, max_size=3))
def test_any_recipe_value_is_valid_or_a_clear_error(base_raw, registry, assignments):
    raw = copy.deepcopy(base_raw)
    for key, value in assignments:
        if value is None:
            continue  # TOML has no null
        _assign(raw, key, value)
    try:
        validate_recipe(parse_recipe(raw, "fuzz.toml"), registry)
    except LosscraftError as exc:
        assert "\n" not in str(exc) and str(exc)


TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40) | \
    st.sampled_from(["<|im_end|>", "<|im_start|>assistant", "   ", "", "<|endoftext|>x"])
FIELD = st.one_of(TEXT, st.integers(), st.floats(), st.none(), st.lists(TEXT, max_size=3),
                  st.lists(st.integers(), max_size=2))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(rows=st.lists(st.fixed_dictionaries({"history": FIELD, "response": FIELD},
                                           optional={"negatives": FIELD, "is_safe": FIELD}),
                     min_size=1, max_size=3))
def test_any_data_row_is_an_example_or_a_clear_error(tmp_path_factory, rows):
    from losscraft_plugins.data.local_files import LocalFilesSource

    path = tmp_path_factory.mktemp("rows") / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tokenizer = tiny_tokenizer()
    try:
        examples = list(LocalFilesSource(path=str(path)))
        for i, ex in enumerate(examples, 1):
            check_example(ex, where="d.jsonl", row=i, max_chars=1000)
    except LosscraftError as exc:
        assert "\n" not in str(exc)
        return
    batch = DialogCollator(tokenizer, max_context_tokens=32, max_response_tokens=8,
                           pack_negatives=True)(examples)
    assert batch.input_ids.shape[0] == len(examples)
