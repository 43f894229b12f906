"""Issue 22: the run folder's last holes — no write through a symlink, every model folder verified
wherever it is loaded, no pickle and no remote code, consistent edits of a checkpoint (manifest
re-hashed) caught, a run killed before its first checkpoint restartable, a lock that survives the
deletion of its file, and the NaN stop that tells a broken term from a diverging run."""

import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from conftest import (TINY_RECIPE, TINY_STAGE, load_tiny_recipe, logged_steps, tiny_toml,
                      train_run)
from losscraft.app.main import main
from losscraft.errors import (CheckpointError, LosscraftError, ModelError, NonFiniteError,
                              RecipeChangedError, RunFolderError)
from losscraft.runtime.manifest import MANIFEST
from losscraft.trainer.checkpoint import write_manifest
from losscraft.trainer import Trainer
from losscraft.trainer.run_folder import LOCK, MARKER
from losscraft.trainer.run_lock import RunLock

ROOT = Path(__file__).resolve().parents[1]


def _final(folder):
    return load_file(str(Path(folder) / "model.safetensors"))


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _rehash(folder):
    """What a buggy tool (or a careless hand) does after editing: re-hash the manifest."""
    manifest = json.loads((folder / MANIFEST).read_text())
    extra = {k: v for k, v in manifest.items() if k not in ("format", "files")}
    (folder / MANIFEST).unlink()
    write_manifest(folder, extra)


def _cli(*args, input=None):
    result = CliRunner().invoke(main, [str(a) for a in args], input=input)
    lines = [l for l in result.output.splitlines() if l.strip()]
    return result, lines


def _one_line_error(result, lines):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert len([l for l in lines if l.startswith("error")]) == 1, result.output
    return [l for l in lines if l.startswith("error")][0]


def _cli_recipe(tmp_path, *extra):
    path = tmp_path / "run.toml"
    path.write_text(TINY_RECIPE.format(out=tmp_path / "run"))
    return path


def _stopped_run(tmp_path, registry, steps=2, extra=()):
    recipe = load_tiny_recipe(tmp_path, ["stages.main.checkpoint_every=1", *extra])
    train_run(recipe, registry, stop_after=steps)
    return recipe, tmp_path / "run"


# ----------------------------------------------------------------------------- 1. symlinks
def _outside(tmp_path, kind):
    if kind == "dir":
        target = tmp_path / "elsewhere"
        target.mkdir()
        return target, lambda: sorted(p.name for p in target.iterdir()) == []
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    return target, lambda: target.read_text() == "keep me"


@pytest.mark.parametrize("name,kind", [
    (LOCK, "file"), ("metrics.jsonl", "file"), ("run.json", "file"),
    ("recipe_history.jsonl", "file"), ("checkpoints/latest.tmp", "file"),
    ("checkpoints/step-000004.tmp", "dir"), ("checkpoints/step-000002.old", "dir"),
    ("final.old", "dir"), ("checkpoints/latest", "file")])
def test_symlink_in_the_run_folder_is_a_one_line_error_on_resume(tmp_path, registry, name,
                                                                   kind):
    _stopped_run(tmp_path, registry)
    target, untouched = _outside(tmp_path, kind)
    link = tmp_path / "run" / name
    if link.is_file():
        link.unlink()
    link.symlink_to(target)
    result, lines = _cli("run", _cli_recipe(tmp_path), "--resume", "--no-progress",
                         "--no-report")
    line = _one_line_error(result, lines)
    assert name.split("/")[-1] in line and "symbolic link" in line
    assert untouched(), f"{target} was written through the link {link}"


@pytest.mark.parametrize("name", ["recipe.json", "metrics.jsonl", "recipe_history.jsonl",
                                  MARKER])
def test_symlink_in_a_fresh_output_folder_is_refused(tmp_path, registry, name):
    out = tmp_path / "run"
    out.mkdir()
    target, untouched = _outside(tmp_path, "file")
    (out / name).symlink_to(target)
    with pytest.raises(RunFolderError, match="symbolic link") as info:
        train_run(load_tiny_recipe(tmp_path, ["stages.main.max_steps=1"]), registry)
    assert "\n" not in str(info.value) and name in str(info.value)
    assert untouched()


def test_symlinked_checkpoints_folder_is_refused(tmp_path, registry):
    _, out = _stopped_run(tmp_path, registry)
    target = tmp_path / "elsewhere"
    shutil.move(str(out / "checkpoints"), target)
    (out / "checkpoints").symlink_to(target)
    before = sorted(p.name for p in target.iterdir())
    with pytest.raises(RunFolderError, match="checkpoints.*symbolic link"):
        train_run(load_tiny_recipe(tmp_path, ["stages.main.checkpoint_every=1"]), registry, resume=True)
    assert sorted(p.name for p in target.iterdir()) == before


def test_output_dir_naming_a_file_is_a_one_line_error(tmp_path, registry):
    (tmp_path / "run").write_text("not a folder")
    for extra in ([], ["--resume"], ["--overwrite"]):
        result, lines = _cli("run", _cli_recipe(tmp_path), "--no-progress", *extra)
        line = _one_line_error(result, lines)
        assert "is a file" in line and str(tmp_path / "run") in line
    assert (tmp_path / "run").read_text() == "not a folder"


# ----------------------------------------------------------------------------- 2. model folders
TWO_STAGES = tiny_toml("{out}", stages=[{**TINY_STAGE, "name": "a"}, {**TINY_STAGE, "name": "b"}])


def test_stage_model_without_manifest_is_refused_on_resume(tmp_path, registry):
    recipe = load_tiny_recipe(tmp_path, ["stages.b.checkpoint_every=1"],
                     body=TWO_STAGES.format(out=tmp_path / "run"))
    train_run(recipe, registry, stop_after=6)  # stage a done, two steps into b
    model = tmp_path / "run" / "stages" / "a" / "model"
    (model / MANIFEST).unlink()
    weights = bytearray((model / "model.safetensors").read_bytes())
    weights[-3] ^= 0x01
    (model / "model.safetensors").write_bytes(bytes(weights))
    with pytest.raises(ModelError, match="no manifest.json") as info:
        train_run(recipe, registry, resume=True)
    assert "\n" not in str(info.value) and "stages/a/model" in str(info.value)


@pytest.fixture
def finished_run(tmp_path, registry):
    recipe = load_tiny_recipe(tmp_path)
    result = train_run(recipe, registry)
    return tmp_path / "run", result


def _flip(path):
    data = bytearray(path.read_bytes())
    data[-7] ^= 0x10
    path.write_bytes(bytes(data))


def test_generate_and_eval_refuse_a_final_with_a_flipped_byte(tmp_path, finished_run):
    out, _ = finished_run
    _flip(out / "final" / "model.safetensors")
    for target in (out, out / "final"):
        result, lines = _cli("generate", target, "-c", "hello")
        line = _one_line_error(result, lines)
        assert "SHA-256 does not match" in line and "reply" not in result.output
    contexts = tmp_path / "contexts.jsonl"
    contexts.write_text('{"context": "hello"}\n')
    result, lines = _cli("eval", out, "--contexts", contexts, "--scorer", "profanity_check",
                         "--reference", "none", "--k", "1", "--no-progress")
    assert "SHA-256 does not match" in _one_line_error(result, lines)


def _plain_copy(final, where):
    """A model folder outside any run (no manifest): what a user downloads or copies."""
    shutil.copytree(final, where)
    (where / MANIFEST).unlink()
    return where


def test_auto_map_never_prompts_and_never_runs_the_folders_code(tmp_path, finished_run):
    out, _ = finished_run
    folder = _plain_copy(out / "final", tmp_path / "custom")
    pwned = tmp_path / "pwned"
    (folder / "evil.py").write_text(textwrap.dedent(f"""
        from pathlib import Path
        Path({str(pwned)!r}).touch()
        from transformers import PreTrainedTokenizerFast, LlamaForCausalLM
        class EvilTokenizer(PreTrainedTokenizerFast):
            pass
        class EvilModel(LlamaForCausalLM):
            pass
        """))
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["auto_map"] = {"AutoTokenizer": ["evil.EvilTokenizer", "evil.EvilTokenizer"]}
    config["tokenizer_class"] = "EvilTokenizer"  # no class of transformers' own to fall back on
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    model_config = json.loads((folder / "config.json").read_text())
    model_config["auto_map"] = {"AutoModelForCausalLM": "evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(model_config))
    result, lines = _cli("generate", folder, "-c", "hello", "--max-new-tokens", "2",
                         input="y\ny\ny\n")
    assert "[y/N]" not in result.output, "transformers asked whether to run the folder's code"
    assert "never runs" in _one_line_error(result, lines)
    assert not pwned.exists(), "the model folder's own code ran"


def test_pickle_only_weights_are_refused_everywhere(tmp_path, finished_run, registry):
    out, _ = finished_run
    folder = _plain_copy(out / "final", tmp_path / "pickled")
    pwned = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (pwned,))

    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(Payload()))
    result, lines = _cli("generate", folder, "-c", "hello")
    assert "pickle" in _one_line_error(result, lines)
    from losscraft.models.loading import load_causal_lm
    with pytest.raises(ModelError, match="only pickle weights"):
        load_causal_lm(folder)  # the `hf` model/expert provider's loader
    # an expert loaded with plugin = "hf" from that folder
    body = TINY_RECIPE.format(out=tmp_path / "exp") + (
        f'\n[experts.clean]\nplugin = "hf"\npath = "{folder}"\n')
    recipe = load_tiny_recipe(tmp_path, body=body, name="exp")
    with pytest.raises(ModelError, match="only pickle weights"):
        train_run(recipe, registry)
    assert not pwned.exists()


def test_stage_model_with_pickle_weights_is_refused_on_resume(tmp_path, registry):
    recipe = load_tiny_recipe(tmp_path, ["stages.b.checkpoint_every=1"],
                     body=TWO_STAGES.format(out=tmp_path / "run"))
    train_run(recipe, registry, stop_after=6)
    model = tmp_path / "run" / "stages" / "a" / "model"
    (model / "model.safetensors").unlink()
    torch.save({}, model / "pytorch_model.bin")
    _rehash(model)
    with pytest.raises(ModelError, match="only pickle weights"):
        train_run(recipe, registry, resume=True)


def test_eval_of_a_copied_run_folder_uses_its_own_model(tmp_path, finished_run):
    out, _ = finished_run
    assert json.loads((out / "run.json").read_text())["final_model"] == str(out / "final")
    copy = tmp_path / "copied"
    shutil.copytree(out, copy)  # its run.json names the original's final/ by absolute path
    from losscraft.evaluation.targets import resolve_target
    location = Path(resolve_target(str(copy)).location)
    assert location.resolve() == (copy / "final").resolve()
    shutil.rmtree(out)  # the original gone: the copy still evaluates its own model
    _flip(copy / "final" / "model.safetensors")
    result, lines = _cli("generate", copy, "-c", "hello")
    assert str(copy / "final") in _one_line_error(result, lines)


# ----------------------------------------------------------------------------- 3. consistent edits
def _ckpt(tmp_path, name):
    return tmp_path / "run" / "checkpoints" / name


def _resume_is_refused(recipe, registry, folder, match):
    """After an edit of checkpoint ``folder`` (manifest re-hashed over it), a resume stops with
    a one-line `CheckpointError` matching ``match``."""
    _rehash(folder)
    with pytest.raises(CheckpointError, match=match) as info:
        train_run(recipe, registry, resume=True)
    assert "\n" not in str(info.value)


def _edit_state(folder, **changes):
    state = json.loads((folder / "state.json").read_text())
    state.update(changes)
    (folder / "state.json").write_text(json.dumps(state))
    _rehash(folder)


def _fallback(result):
    return [json.loads(l) for l in result.metrics.read_text().splitlines()
            if '"checkpoint_fallback"' in l]


def test_step_counters_that_disagree_fall_back(tmp_path, registry):
    straight = train_run(load_tiny_recipe(tmp_path, name="straight"), registry)
    recipe, _ = _stopped_run(tmp_path, registry)
    _edit_state(_ckpt(tmp_path, "step-000002"), stage_step=1, data_position=2)
    result = train_run(recipe, registry, resume=True)
    assert logged_steps(result.metrics) == [1, 2, 3, 4]
    event = _fallback(result)[0]
    assert event["used"] == "step-000001" and "disagree" in event["rejected"][0]
    assert _same(_final(straight.final_model), _final(result.final_model))


def test_stage_done_in_a_step_checkpoint_falls_back(tmp_path, registry):
    recipe, _ = _stopped_run(tmp_path, registry)
    _edit_state(_ckpt(tmp_path, "step-000002"), stage_done=True)
    result = train_run(recipe, registry, resume=True)
    assert "stage_done" in _fallback(result)[0]["rejected"][0]
    assert logged_steps(result.metrics) == [1, 2, 3, 4]


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_weights_in_another_dtype_are_refused(tmp_path, registry, dtype):
    recipe, _ = _stopped_run(tmp_path, registry)
    folder = _ckpt(tmp_path, "step-000002")
    weights = load_file(str(folder / "trainable.safetensors"))
    save_file({k: v.to(dtype) for k, v in weights.items()}, str(folder / "trainable.safetensors"))
    _resume_is_refused(recipe, registry, folder, str(dtype).removeprefix("torch."))


def test_optimizer_state_in_another_dtype_or_shape_is_refused(tmp_path, registry):
    recipe, _ = _stopped_run(tmp_path, registry)
    folder = _ckpt(tmp_path, "step-000002")
    original = load_file(str(folder / "training_state.safetensors"))
    changes = ((lambda t: t.double(), "float64"),
               (lambda t: t[..., :1].contiguous(), "optimizer"))
    for change, match in changes:
        tensors = {k: (change(v) if v.is_floating_point() and v.dim() >= 1 else v)
                   for k, v in original.items()}
        save_file(tensors, str(folder / "training_state.safetensors"))
        _resume_is_refused(recipe, registry, folder, match)


def test_weights_of_the_wrong_shape_are_refused(tmp_path, registry):
    recipe, _ = _stopped_run(tmp_path, registry)
    folder = _ckpt(tmp_path, "step-000002")
    weights = load_file(str(folder / "trainable.safetensors"))
    name = next(k for k, v in weights.items() if v.dim() == 2)
    weights[name] = weights[name][:, :3].contiguous()
    save_file(weights, str(folder / "trainable.safetensors"))
    _resume_is_refused(recipe, registry, folder, name)


@pytest.mark.parametrize("file", ["state.json", "manifest.json", "recipe.json"])
def test_a_deeply_nested_json_falls_back(tmp_path, registry, file):
    recipe, _ = _stopped_run(tmp_path, registry)
    folder = _ckpt(tmp_path, "step-000002")
    (folder / file).write_text("[" * 200_000 + "]" * 200_000)
    if file != MANIFEST:
        _rehash(folder)
    result = train_run(recipe, registry, resume=True)
    assert _fallback(result)[0]["used"] == "step-000001"


def test_a_deeply_nested_training_state_is_one_line(tmp_path, registry):
    recipe, _ = _stopped_run(tmp_path, registry)
    folder = _ckpt(tmp_path, "step-000002")
    (folder / "training_state.json").write_text("[" * 200_000 + "]" * 200_000)
    _resume_is_refused(recipe, registry, folder, "cannot read")


@pytest.mark.parametrize("where", ["checkpoint", "run folder"])
def test_missing_recipe_json_needs_force_recipe(tmp_path, registry, where):
    recipe, out = _stopped_run(tmp_path, registry)
    if where == "checkpoint":
        for folder in (out / "checkpoints").glob("step-*"):
            (folder / "recipe.json").unlink()
            manifest = json.loads((folder / MANIFEST).read_text())
            manifest.pop("recipe_fingerprint")
            (folder / MANIFEST).write_text(json.dumps(manifest))
            _rehash(folder)
    else:
        (out / "recipe.json").unlink()
    path = _cli_recipe(tmp_path)
    changed = ["--set", "stages.main.checkpoint_every=1", "--set", "stages.main.lr=0.5",
               "--set", "run.seed=9"]
    result, lines = _cli("run", path, "--resume", "--no-progress", "--no-report", *changed)
    line = _one_line_error(result, lines)
    assert "recipe.json missing" in line and "--force-recipe" in line
    result, lines = _cli("run", path, "--resume", "--no-progress", "--no-report",
                         "--force-recipe", *changed)
    assert result.exit_code == 0, result.output
    history = [json.loads(l) for l in (out / "recipe_history.jsonl").read_text().splitlines()]
    assert "recipe (forced, unchecked)" in history[-1]["changes"]


def test_a_changed_data_file_is_noticed_on_resume(tmp_path, registry):
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"history": [f"q{i}"], "response": f"a{i}."}) + "\n"
                            for i in range(8)))
    body = tiny_toml(tmp_path / "run", stage={
        "data": [{"plugin": "local_files", "path": data}], "checkpoint_every": 1})
    recipe = load_tiny_recipe(tmp_path, body=body)
    train_run(recipe, registry, stop_after=2)
    data.write_text(data.read_text().replace("a3.", "a3, changed."))  # same path, new content
    with pytest.raises(RecipeChangedError, match=r"data file of stages\.main\.data\[0\]\.path "
                                                 r"changed") as info:
        train_run(recipe, registry, resume=True)
    assert "\n" not in str(info.value)


def test_nan_in_the_optimizer_state_falls_back(tmp_path, registry):
    straight = train_run(load_tiny_recipe(tmp_path, name="straight"), registry)
    recipe, _ = _stopped_run(tmp_path, registry)
    folder = _ckpt(tmp_path, "step-000002")
    tensors = load_file(str(folder / "training_state.safetensors"))
    key = next(k for k, v in tensors.items() if v.is_floating_point() and v.dim() >= 1)
    tensors[key] = tensors[key].clone()
    tensors[key].view(-1)[0] = float("nan")
    save_file(tensors, str(folder / "training_state.safetensors"))
    _rehash(folder)
    result = train_run(recipe, registry, resume=True)
    assert "optimizer state tensor" in _fallback(result)[0]["rejected"][0]
    assert _same(_final(straight.final_model), _final(result.final_model))


def test_an_exploding_update_stops_before_the_weights_explode(tmp_path, registry, monkeypatch):
    steps = []
    original = torch.optim.AdamW.step
    monkeypatch.setattr(torch.optim.AdamW, "step",
                        lambda self, *a, **k: (steps.append(1), original(self, *a, **k))[1])
    recipe = load_tiny_recipe(tmp_path, ["stages.main.lr=5", "stages.main.checkpoint_every=1"])
    with pytest.raises(NonFiniteError, match=r"step 2, stage main, the update would change the "
                                             r"weights by [\d.]+ times their norm \(more than "
                                             r"run.max_update_ratio = 10\)") as info:
        train_run(recipe, registry)
    assert "lower lr" in str(info.value) and "step-000001" in str(info.value)
    assert len(steps) == 1, "no optimizer step after the guard fired"
    for tensor in load_file(str(_ckpt(tmp_path, "step-000001") /
                                "trainable.safetensors")).values():
        assert tensor.abs().max() < 10
    # the bound is configurable (0 turns it off)
    relaxed = load_tiny_recipe(tmp_path, ["stages.main.lr=5", "run.max_update_ratio=0"], name="relaxed",
                      body=TINY_RECIPE.format(out=tmp_path / "relaxed"))
    train_run(relaxed, registry)
    tight = load_tiny_recipe(tmp_path, ["run.max_update_ratio=0.001"], name="tight",
                    body=TINY_RECIPE.format(out=tmp_path / "tight"))
    with pytest.raises(NonFiniteError, match="max_update_ratio = 0.001"):
        train_run(tight, registry)


def test_emptied_metrics_warns_on_resume(tmp_path, registry, capsys):
    recipe, out = _stopped_run(tmp_path, registry)
    (out / "metrics.jsonl").write_text("")
    from rich.console import Console
    console = Console(file=sys.stderr, width=300)
    result = Trainer(recipe, registry=registry, show_progress=False, console=console).run(
        resume=True)
    assert "missing: 1–2" in capsys.readouterr().err
    rows = [json.loads(l) for l in result.metrics.read_text().splitlines()]
    assert rows[0]["event"] == "metrics_missing" and logged_steps(result.metrics) == [3, 4]


# ----------------------------------------------------------------------------- 4. killed early
def _killed_before_first_checkpoint(tmp_path, registry):
    """A run folder as a kill during the first steps leaves it: marker, recipe, log rows, a
    half-written first checkpoint, no ``latest``."""
    recipe, out = _stopped_run(tmp_path, registry, steps=1)
    latest = (out / "checkpoints" / "latest")
    latest.unlink()
    shutil.move(str(out / "checkpoints" / "step-000001"),
                str(out / "checkpoints" / "step-000001.tmp"))
    (out / "checkpoints" / "step-000001.tmp" / MANIFEST).unlink()
    return recipe, out


def test_run_killed_before_its_first_checkpoint_restarts_with_a_plain_run(tmp_path, registry):
    straight = train_run(load_tiny_recipe(tmp_path, name="straight"), registry)
    recipe, out = _killed_before_first_checkpoint(tmp_path, registry)
    (out / "notes.txt").write_text("mine")
    result, lines = _cli("run", _cli_recipe(tmp_path), "--resume", "--no-progress",
                         "--set", "stages.main.checkpoint_every=1")
    line = _one_line_error(result, lines)
    assert "holds no checkpoint" in line and "plain `losscraft run`" in line and \
        "--overwrite" in line
    result = train_run(recipe, registry)
    assert _same(_final(straight.final_model), _final(result.final_model))
    assert logged_steps(result.metrics) == [1, 2, 3, 4]
    assert (out / "notes.txt").read_text() == "mine"


def test_a_folder_with_a_checkpoint_still_refuses_a_plain_run(tmp_path, registry):
    recipe, _ = _stopped_run(tmp_path, registry, steps=1)
    with pytest.raises(LosscraftError, match="already holds a run.*--overwrite"):
        train_run(recipe, registry)


# ----------------------------------------------------------------------------- 5. lock
HOLD = """
import sys, time
from losscraft.trainer.run_lock import RunLock
with RunLock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_lock_survives_deletion_of_its_file(tmp_path, registry):
    recipe, out = _stopped_run(tmp_path, registry, steps=1)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == b"locked"
        (out / LOCK).unlink()  # a user (or a cleanup script) removes the lock file
        with pytest.raises(RunFolderError, match="in use by another process"):
            RunLock(out).acquire()
        with pytest.raises(RunFolderError, match="in use"):
            train_run(recipe, registry, resume=True)
        with pytest.raises(RunFolderError, match="in use"):
            train_run(recipe, registry, overwrite=True)
    finally:
        holder.kill()
        holder.wait()
    train_run(recipe, registry, resume=True)  # the holder is gone: the lock went with it


def test_a_replaced_run_folder_stops_the_run_that_held_it(tmp_path):
    out = tmp_path / "run"
    lock = RunLock(out).acquire()
    try:
        lock.verify()
        out.rename(tmp_path / "moved")
        out.mkdir()  # a newcomer's folder at the same path
        newcomer = RunLock(out).acquire()  # not blocked: it is another folder...
        with pytest.raises(RunFolderError, match="deleted, moved or replaced"):
            lock.verify()  # ...and the first run stops before writing into it
        newcomer.release()
    finally:
        lock.release()


# ----------------------------------------------------------------------------- 6. NaN message
NAN_TERM = TINY_RECIPE.replace('plugin = "nll"', 'plugin = "nan_at_step"\n  step = 2')


def test_nan_from_a_term_with_finite_weights_names_the_term_as_the_bug(tmp_path, registry):
    recipe = load_tiny_recipe(tmp_path, body=NAN_TERM.format(out=tmp_path / "run"))
    with pytest.raises(NonFiniteError) as info:
        train_run(recipe, registry)
    message = str(info.value)
    assert message.startswith("step 3, stage main, term nan_at_step is nan")
    assert "bug in term nan_at_step" in message and "lower lr" not in message


def test_divergence_keeps_the_learning_rate_advice():
    from types import SimpleNamespace
    from losscraft.trainer.finite import term_bug

    finite = [torch.ones(3)]
    assert term_bug([{"loss": float("nan"), "t": float("nan")}], finite) == "t"
    assert term_bug([{"loss": float("nan"), "t": float("nan")}], [torch.full((3,), 1e6)]) is None
    assert term_bug([{"loss": 1.0, "t": 1.0}, {"loss": float("nan"), "t": float("nan")}],
                    finite) is None  # only a later micro-batch: the step diverged
    assert term_bug([{"loss": 1.0, "t": float("nan")}], finite) is None
    assert term_bug([{"loss": float("nan"), "t": float("nan")}], None) is None
    from losscraft.trainer.finite import stop_or_skip

    class Log:
        def write(self, record):
            self.record = record

    run = SimpleNamespace(on_nonfinite="stop", max_skipped_steps=0)
    state = SimpleNamespace(global_step=4, stage_step=4, skipped_steps=0)
    objective = SimpleNamespace(calls=[{"loss": float("inf"), "t": float("inf")}],
                                summed=lambda: {})
    with pytest.raises(NonFiniteError, match="lower lr, enable clipping"):
        stop_or_skip("term t is inf", stage=SimpleNamespace(name="s"), state=state,
                     metrics=Log(), objective=objective, lr=1.0, grad_norm=1.0, run=run,
                     checkpoints=Path("/nonexistent"), console=None,
                     params=[torch.full((2,), 1e9)])
