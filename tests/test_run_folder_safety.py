"""The run folder's guarantees (issue 12): no code from checkpoints, no writes outside the run,
verified checkpoints with fallback, the non-finite guard, the run lock, resume with a changed
recipe."""

import json
import pickle
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from conftest import TINY_RECIPE, load_tiny_recipe, logged_steps, train_run
from losscraft.app.main import main
from losscraft.errors import (CheckpointError, LosscraftError, NonFiniteError, RecipeChangedError,
                              RecipeError, RunFolderError)
from losscraft.recipe import load_recipe
from losscraft.trainer.checkpoint import find_resume_checkpoint
from losscraft.trainer.run_folder import LOCK, MARKER
from losscraft.trainer.run_lock import RunLock

ROOT = Path(__file__).resolve().parents[1]


def _final(result):
    return load_file(str(result.final_model / "model.safetensors"))


class _Payload:
    """Unpickling this creates ``path`` — proof that code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


# ----------------------------------------------------------------------------- 1. no code
def test_checkpoint_pickle_payload_is_refused(tmp_path, registry):
    recipe = load_tiny_recipe(tmp_path, extra=["stages.main.checkpoint_every=1"])
    train_run(recipe, registry, stop_after=2)
    ckpt = tmp_path / "run" / "checkpoints" / "step-000002"
    assert not list(ckpt.glob("*.pt")), "checkpoints hold only safetensors and JSON"
    pwned = tmp_path / "pwned"
    # an attacker swaps the weights for a pickle and even fixes the manifest's checksum
    payload = pickle.dumps(_Payload(pwned))
    (ckpt / "trainable.safetensors").write_bytes(payload)
    (ckpt / "training_state.pt").write_bytes(payload)  # a legacy file: never read
    manifest = json.loads((ckpt / "manifest.json").read_text())
    import hashlib
    manifest["files"]["trainable.safetensors"]["sha256"] = hashlib.sha256(payload).hexdigest()
    (ckpt / "manifest.json").write_text(json.dumps(manifest))
    # the payload is read as safetensors (never unpickled): the checkpoint is rejected...
    previous = tmp_path / "run" / "checkpoints" / "step-000001" / "state.json"
    kept = previous.read_text()
    previous.write_text("{}")
    with pytest.raises(CheckpointError, match="no checkpoint passes.*cannot read") as info:
        train_run(recipe, registry, resume=True)
    assert "\n" not in str(info.value)
    assert not pwned.exists(), "the pickle payload ran"
    previous.write_text(kept)  # ... and the run falls back to the previous one
    result = train_run(recipe, registry, resume=True)
    events = [json.loads(l) for l in result.metrics.read_text().splitlines()
              if '"event"' in l]
    assert events[0]["used"] == "step-000001" and "cannot read" in events[0]["rejected"][0]
    assert not pwned.exists(), "the pickle payload ran"


def test_no_unsafe_torch_load_in_the_package():
    for path in (ROOT / "losscraft").rglob("*.py"):
        text = path.read_text()
        assert "weights_only=False" not in text, path
        for line in text.splitlines():
            if "torch.load(" in line:
                assert "weights_only=True" in line, f"{path}: {line.strip()}"


# ----------------------------------------------------------------------------- 2. confinement
@pytest.mark.parametrize("name", ["../../x", "/tmp/abs", "a/b", ".hidden", "..", ""])
def test_stage_name_path_escape_is_refused(tmp_path, registry, name):
    body = TINY_RECIPE.format(out=tmp_path / "run").replace('name = "main"', f'name = "{name}"')
    (tmp_path / "bad.toml").write_text(body)
    with pytest.raises(RecipeError, match="stages\\[0\\].name"):
        load_recipe(tmp_path / "bad.toml")
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "bad.toml")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "x").exists()


def test_expert_name_must_be_simple(tmp_path):
    body = TINY_RECIPE.format(out=tmp_path / "run") + '\n[experts."../evil"]\nplugin = "tiny"\n'
    (tmp_path / "bad.toml").write_text(body)
    with pytest.raises(RecipeError, match="experts"):
        load_recipe(tmp_path / "bad.toml")


def test_latest_pointing_outside_is_not_followed(tmp_path, registry):
    recipe = load_tiny_recipe(tmp_path, extra=["stages.main.checkpoint_every=1"])
    train_run(recipe, registry, stop_after=2)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (tmp_path / "run" / "checkpoints" / "latest").write_text("../../elsewhere")
    found = find_resume_checkpoint(tmp_path / "run" / "checkpoints")
    assert found[0].name == "step-000002" and "not a checkpoint" in found[2][0]


def test_overwrite_refuses_a_folder_without_the_marker(tmp_path, registry):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "precious.txt").write_text("keep me")
    recipe = load_tiny_recipe(tmp_path, extra=["stages.main.max_steps=1"])
    with pytest.raises(RunFolderError, match="marker"):
        train_run(recipe, registry, overwrite=True)
    assert (out / "precious.txt").read_text() == "keep me"


def test_overwrite_deletes_only_what_the_run_owns(tmp_path, registry):
    recipe = load_tiny_recipe(tmp_path, extra=["stages.main.max_steps=1"])
    train_run(recipe, registry)
    out = tmp_path / "run"
    assert (out / MARKER).is_file()
    (out / "notes.txt").write_text("mine")
    (out / "mine").mkdir()
    train_run(recipe, registry, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine" and (out / "mine").is_dir()
    assert logged_steps(out / "metrics.jsonl") == [1]


# ----------------------------------------------------------------------------- 3. verification
def test_flipped_byte_checkpoint_falls_back_to_previous(tmp_path, registry):
    straight = train_run(load_tiny_recipe(tmp_path, name="straight"), registry)
    recipe = load_tiny_recipe(tmp_path, extra=["stages.main.checkpoint_every=1"])
    train_run(recipe, registry, stop_after=3)
    weights = tmp_path / "run" / "checkpoints" / "step-000003" / "trainable.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x01  # one flipped bit in the tensor data
    weights.write_bytes(bytes(data))
    result = train_run(recipe, registry, resume=True)
    a, b = _final(straight), _final(result)
    assert all(torch.equal(a[k], b[k]) for k in a)
    records = [json.loads(l) for l in result.metrics.read_text().splitlines()]
    events = [r for r in records if r.get("event") == "checkpoint_fallback"]
    assert events and events[0]["used"] == "step-000002" and "SHA-256" in events[0]["rejected"][0]
    assert logged_steps(result.metrics) == [1, 2, 3, 4]


def test_edited_state_json_is_detected(tmp_path, registry):
    recipe = load_tiny_recipe(tmp_path, extra=["stages.main.checkpoint_every=1"])
    train_run(recipe, registry, stop_after=2)
    state = tmp_path / "run" / "checkpoints" / "step-000002" / "state.json"
    state.write_text(state.read_text().replace('"data_position": 4', '"data_position": 7'))
    folder, found, problems = find_resume_checkpoint(tmp_path / "run" / "checkpoints")
    assert folder.name == "step-000001" and "state.json" in problems[0]


def test_all_checkpoints_corrupt_is_one_clear_error(tmp_path, registry):
    recipe = load_tiny_recipe(tmp_path, extra=["stages.main.checkpoint_every=1"])
    train_run(recipe, registry, stop_after=1)
    (tmp_path / "run" / "checkpoints" / "step-000001" / "state.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="no checkpoint passes verification"):
        train_run(recipe, registry, resume=True)


# ----------------------------------------------------------------------------- 4. NaN guard
NAN_TERM = TINY_RECIPE.replace('plugin = "nll"', 'plugin = "nan_at_step"\n  step = 2')


def test_nan_guard_stops_before_the_optimizer_step(tmp_path, registry, monkeypatch):
    steps_taken = []
    original = torch.optim.AdamW.step

    def counting_step(self, *a, **k):
        steps_taken.append(1)
        return original(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", counting_step)
    recipe = load_tiny_recipe(tmp_path, body=NAN_TERM.format(out=tmp_path / "run"),
                     extra=["stages.main.checkpoint_every=1"])
    with pytest.raises(NonFiniteError, match="step 3, stage main, term nan_at_step is nan") as e:
        train_run(recipe, registry)
    assert "step-000002" in str(e.value)
    assert len(steps_taken) == 2, "the optimizer must not step on the NaN step"
    checkpoints = tmp_path / "run" / "checkpoints"
    assert (checkpoints / "latest").read_text() == "step-000002"
    for tensor in load_file(str(checkpoints / "step-000002" / "trainable.safetensors")).values():
        assert torch.isfinite(tensor).all()
    last = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 3 and last["stopped"] and "nan" in last["nonfinite"]


def test_nan_steps_can_be_skipped_up_to_a_limit(tmp_path, registry):
    body = NAN_TERM.format(out=tmp_path / "run").replace("seed = 3", 'seed = 3\non_nonfinite = "skip"\nmax_skipped_steps = 5')
    result = train_run(load_tiny_recipe(tmp_path, body=body), registry)
    records = [json.loads(l) for l in result.metrics.read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert [bool(r.get("skipped")) for r in records] == [False, False, True, True]
    for tensor in _final(result).values():
        assert torch.isfinite(tensor).all()
    body = body.replace("max_skipped_steps = 5", "max_skipped_steps = 1")
    with pytest.raises(NonFiniteError, match="max_skipped_steps"):
        train_run(load_tiny_recipe(tmp_path, name="limited", body=body.replace(str(tmp_path / "run"),
                                                              str(tmp_path / "limited"))),
               registry)


# ----------------------------------------------------------------------------- 5. lock
def test_lock_refuses_a_second_run_and_resume(tmp_path, registry):
    recipe = load_tiny_recipe(tmp_path, extra=["stages.main.checkpoint_every=1"])
    train_run(recipe, registry, stop_after=1)
    with RunLock(tmp_path / "run"):
        with pytest.raises(RunFolderError, match="in use by pid"):
            train_run(recipe, registry, resume=True)
        with pytest.raises(RunFolderError, match="in use"):
            train_run(recipe, registry, overwrite=True)
    train_run(recipe, registry, resume=True)  # released: fine


def test_stale_lock_of_a_dead_process_does_not_block(tmp_path, registry):
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK).write_text(json.dumps({"pid": 999999, "host": "gone", "since": "then"}))
    train_run(load_tiny_recipe(tmp_path, extra=["stages.main.max_steps=1"]), registry)


# ----------------------------------------------------------------------------- 6. recipe change
def test_changed_lr_resume_is_refused_with_a_diff(tmp_path, registry):
    recipe = load_tiny_recipe(tmp_path, extra=["stages.main.checkpoint_every=1"])
    train_run(recipe, registry, stop_after=2)
    recipe_json = (tmp_path / "run" / "recipe.json").read_text()
    changed = load_tiny_recipe(tmp_path, extra=["stages.main.checkpoint_every=1", "stages.main.lr=0.5"])
    with pytest.raises(RecipeChangedError, match=r"stages\.main\.lr: 0\.01 -> 0\.5"):
        train_run(changed, registry, resume=True)
    reseeded = load_tiny_recipe(tmp_path, extra=["stages.main.checkpoint_every=1", "run.seed=4"])
    with pytest.raises(RecipeChangedError, match=r"run\.seed: 3 -> 4"):
        train_run(reseeded, registry, resume=True)
    assert (tmp_path / "run" / "recipe.json").read_text() == recipe_json


def test_safe_change_on_resume_is_applied_and_recorded(tmp_path, registry):
    recipe = load_tiny_recipe(tmp_path, extra=["stages.main.checkpoint_every=1"])
    train_run(recipe, registry, stop_after=2)
    longer = load_tiny_recipe(tmp_path, extra=["stages.main.checkpoint_every=1", "stages.main.max_steps=6",
                                      "run.log_every=1"])
    result = train_run(longer, registry, resume=True)
    assert logged_steps(result.metrics) == [1, 2, 3, 4, 5, 6]
    history = [json.loads(l) for l in
               (tmp_path / "run" / "recipe_history.jsonl").read_text().splitlines()]
    assert [h["mode"] for h in history] == ["start", "resume"]
    assert history[1]["changes"]["stages.main.max_steps"] == [4, 6]


def test_metrics_with_a_torn_last_line_resumes(tmp_path, registry):
    recipe = load_tiny_recipe(tmp_path, extra=["stages.main.checkpoint_every=1"])
    train_run(recipe, registry, stop_after=2)
    metrics = tmp_path / "run" / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + '{"step": 3, "lo')
    result = train_run(recipe, registry, resume=True)
    assert logged_steps(result.metrics) == [1, 2, 3, 4]
    metrics.write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(LosscraftError, match="row 2"):
        train_run(recipe, registry, resume=True)
