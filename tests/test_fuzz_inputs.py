"""Property tests (hypothesis): any value for a recipe setting, and any JSON data row, gives either
a clear `LosscraftError` or something usable — never another exception."""

import copy
import json
import tomllib

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import TINY_RECIPE
from losscraft.data.collate import DialogCollator
from losscraft.errors import LosscraftError, RecipeErrors
from losscraft.models.tiny import tiny_tokenizer
from losscraft.recipe import parse_recipe, validate_recipe
from losscraft.trainer.prepare.stage_data import check_example

KEYS = ["run.seed", "run.device", "run.precision", "run.threads", "run.log_every",
        "run.on_nonfinite", "run.max_skipped_steps", "run.max_update_ratio",
        "stages.0.terms.0.allow_negative_weight", "stages.0.lr", "stages.0.weight_decay",
        "stages.0.schedule", "stages.0.warmup_steps", "stages.0.warmup_ratio",
        "stages.0.max_grad_norm", "stages.0.checkpoint_every", "stages.0.max_negatives",
        "stages.0.max_steps", "stages.0.epochs", "stages.0.batch_size", "stages.0.grad_accum",
        "stages.0.name", "stages.0.init", "stages.0.max_text_chars", "stages.0.terms.0.weight",
        "stages.0.data.0.count", "stages.0.data.0.limit", "lora.r", "lora.dropout"]
#: the numeric extremes that crashed or slipped through before (issue 22)
EXTREMES = st.sampled_from([1e38, 1e10, -1, -1.0, 100_000_000, 100_000, 2**63, -2**63, 5e-324,
                            1e308, -0.0, 0])
VALUES = st.one_of(EXTREMES, st.none(), st.booleans(), st.integers(-10**12, 10**12),
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
        recipe = parse_recipe(raw, "fuzz.toml")
        validate_recipe(recipe, registry)
    except RecipeErrors as exc:  # several problems: one line each
        assert len(exc.errors) > 1 and all("\n" not in str(e) and str(e) for e in exc.errors)
    except LosscraftError as exc:
        assert "\n" not in str(exc) and str(exc)
    else:
        _accepted_can_train(recipe)


def _accepted_can_train(recipe):
    """What validate accepts must be trainable as meant: nothing that crashes the process or
    the optimizer, nothing that silently trains nothing or backwards."""
    import os

    assert 0 <= recipe.run.threads <= (os.cpu_count() or 1)
    assert recipe.run.max_update_ratio >= 0
    for stage in recipe.stages:
        assert 0 <= stage.lr <= 10 and stage.epochs >= 0
        assert all(d.limit >= 0 for d in stage.data)
        assert all(t.weight >= 0 or t.allow_negative_weight for t in stage.terms)


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


# ----------------------------------------------------------------------------- run folders
@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """A tiny run stopped after two checkpointed steps (copied for each example)."""
    import toy_plugin
    from losscraft.plugins.registry import get_registry
    from losscraft.recipe import load_recipe
    from losscraft.trainer import Trainer

    reg = get_registry(reload=True)
    reg.add_plugin(toy_plugin, "toy_plugin")
    base = tmp_path_factory.mktemp("stopped")
    (base / "r.toml").write_text(TINY_RECIPE.format(out=base / "run"))
    recipe = load_recipe(base / "r.toml", ["stages.main.checkpoint_every=1"])
    Trainer(recipe, registry=reg, show_progress=False, stop_after=2).run()
    get_registry(reload=True)
    return base / "run"


def _copy_run(stopped_run, tmp_path_factory):
    import shutil

    work = tmp_path_factory.mktemp("example")
    shutil.copytree(stopped_run, work / "run", symlinks=True)
    (work / "r.toml").write_text(TINY_RECIPE.format(out=work / "run"))
    return work


def _resume(work, registry):
    from losscraft.recipe import load_recipe
    from losscraft.trainer import Trainer

    recipe = load_recipe(work / "r.toml", ["stages.main.checkpoint_every=1"])
    return Trainer(recipe, registry=registry, show_progress=False).run(resume=True)


#: entries of a run folder an attacker may replace by a symbolic link
LINKABLE = [".losscraft-lock", ".losscraft-run", "metrics.jsonl", "recipe.json",
            "recipe_history.jsonl", "run.json", "summary.json", "final", "final.tmp", "final.old",
            "stages", "checkpoints/latest", "checkpoints/latest.tmp",
            "checkpoints/step-000002/state.json", "checkpoints/step-000002/manifest.json",
            "checkpoints/step-000003", "checkpoints/step-000003.tmp",
            "checkpoints/step-000002.old", "checkpoints/stage-00-main-end"]


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(links=st.lists(st.sampled_from(LINKABLE), min_size=1, max_size=3, unique=True),
       to_folder=st.booleans())
def test_any_symlink_in_a_run_folder_is_refused_and_never_written_through(
        stopped_run, tmp_path_factory, registry, links, to_folder):
    import shutil

    from losscraft.errors import RunFolderError

    work = _copy_run(stopped_run, tmp_path_factory)
    target = work / "outside"
    if to_folder:
        target.mkdir()
    else:
        target.write_text("keep me")
    for name in links:
        link = work / "run" / name
        if link.is_dir() and not link.is_symlink():
            shutil.rmtree(link)
        elif link.exists() or link.is_symlink():
            link.unlink()
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)
    with pytest.raises(RunFolderError, match="symbolic link") as info:
        _resume(work, registry)
    assert "\n" not in str(info.value)
    assert (not to_folder and target.read_text() == "keep me") or \
        (to_folder and not any(target.iterdir())), f"written through {links}"


STATE_FIELDS = {"stage_index": st.integers(-1, 3), "stage_step": st.integers(-1, 6),
                "global_step": st.integers(-1, 6), "data_position": st.integers(-1, 12),
                "stage_done": st.booleans(), "skipped_steps": st.integers(-1, 3),
                "world_size": st.integers(0, 3), "stage_name": st.sampled_from(["main", "x"])}
ODD = st.one_of(st.none(), st.text(max_size=3), st.floats(), st.lists(st.integers(), max_size=2),
                st.just(2**70))


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@example(edits={"stage_step": 1, "data_position": 2}, folder="step-000002")  # counters disagree
@example(edits={"stage_done": True}, folder="step-000002")
@example(edits={"global_step": 2, "stage_step": 2, "data_position": 4}, folder="step-000001")
@given(edits=st.dictionaries(st.sampled_from(sorted(STATE_FIELDS)),
                             st.one_of(*STATE_FIELDS.values(), ODD), min_size=1, max_size=3),
       folder=st.sampled_from(["step-000002", "step-000001"]))
def test_any_consistent_state_edit_falls_back_or_is_a_clear_error(
        stopped_run, tmp_path_factory, registry, edits, folder):
    """A ``state.json`` edited and its manifest re-hashed (a buggy tool): the resume falls back
    to a good checkpoint (and ends with every step logged once) or stops with a one-line
    error — never a traceback, never steps counted twice."""
    from losscraft.trainer.checkpoint import write_manifest

    work = _copy_run(stopped_run, tmp_path_factory)
    checkpoint = work / "run" / "checkpoints" / folder
    state = json.loads((checkpoint / "state.json").read_text())
    state.update(edits)
    (checkpoint / "state.json").write_text(json.dumps(state))
    manifest = json.loads((checkpoint / "manifest.json").read_text())
    (checkpoint / "manifest.json").unlink()
    write_manifest(checkpoint, {"recipe_fingerprint": manifest.get("recipe_fingerprint")})
    try:
        result = _resume(work, registry)
    except LosscraftError as exc:
        assert "\n" not in str(exc)
        return
    steps = [r["step"] for r in map(json.loads, result.metrics.read_text().splitlines())
             if "event" not in r]
    assert steps == [1, 2, 3, 4]
