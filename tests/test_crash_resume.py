"""Kill a real ``losscraft run`` process at random points after its first checkpoint (mid-step,
mid-checkpoint, mid-rename), resume until it finishes, and compare with an uninterrupted run bit
for bit — weights and metrics rows."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import torch
from safetensors.torch import load_file

from losscraft.recipe import load_recipe
from losscraft.testing.builders import recipe_toml
from losscraft.trainer import Trainer


def _write(tmp_path, name):
    data = tmp_path / "data.jsonl"
    if not data.exists():
        data.write_text("".join(json.dumps({"history": [f"turn {i}", f"question {i}?"],
                                            "response": f"answer number {i}."}) + "\n"
                                for i in range(12)))
    path = tmp_path / f"{name}.toml"
    path.write_text(recipe_toml(
        run={"seed": 5, "threads": 1, "output_dir": tmp_path / name},
        stages=[{"name": "main", "max_steps": 10, "batch_size": 2, "lr": 1e-2,
                 "checkpoint_every": 1, "max_context_tokens": 32, "max_response_tokens": 12,
                 "data": [{"plugin": "local_files", "path": data}],
                 "terms": [{"plugin": "nll"}]}]))
    return path


def _launch(path, resume):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    args = [sys.executable, "-m", "losscraft", "run", str(path), "--no-progress",
            "--no-report"] + (["--resume"] if resume else [])
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_random_kills_resume_bit_identically(tmp_path):
    straight = Trainer(load_recipe(_write(tmp_path, "straight")), show_progress=False).run()
    path = _write(tmp_path, "killed")
    latest = tmp_path / "killed" / "checkpoints" / "latest"
    rng = random.Random(12)
    resume, kills = False, 0
    for attempt in range(6):
        proc = _launch(path, resume)
        if kills < 2:
            deadline = time.time() + 120
            while not latest.exists() and proc.poll() is None and time.time() < deadline:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.6))  # anywhere in the steps and checkpoints after it
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
        output = proc.communicate(timeout=300)[0].decode()
        resume = True
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, output
    assert proc.returncode == 0, output
    assert kills >= 1, "no kill landed: the run finished before it"
    a = load_file(str(straight.final_model / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "final" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = [json.loads(l) for l in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "event" not in r] == list(range(1, 11))
    straight_rows = [json.loads(l) for l in straight.metrics.read_text().splitlines()]
    assert [r["loss"] for r in rows] == [r["loss"] for r in straight_rows]


def test_kill_during_the_first_checkpoint_restarts_bit_identically(tmp_path):
    """Killed while writing its first checkpoint (or before it): the folder holds no checkpoint,
    so a plain ``losscraft run`` starts it again — no --overwrite needed — and it ends as an
    uninterrupted run does. Kills after the first checkpoint resume with --resume."""
    straight = Trainer(load_recipe(_write(tmp_path, "straight")), show_progress=False).run()
    path = _write(tmp_path, "killed")
    checkpoints = tmp_path / "killed" / "checkpoints"
    first, latest = checkpoints / "step-000001.tmp", checkpoints / "latest"
    for attempt in range(4):  # until a kill lands before `latest` is written
        shutil.rmtree(tmp_path / "killed", ignore_errors=True)
        proc = _launch(path, resume=False)
        deadline = time.time() + 120
        while not first.exists() and proc.poll() is None and time.time() < deadline:
            pass  # busy-wait: the first checkpoint is written within milliseconds
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        output = proc.communicate(timeout=300)[0].decode()
        assert proc.returncode in (0, -signal.SIGKILL), output
        if proc.returncode == -signal.SIGKILL and not latest.exists():
            break
    assert not latest.exists(), "no kill landed before the first checkpoint was complete"
    assert (tmp_path / "killed" / ".losscraft-run").is_file()
    resumed = _launch(path, resume=True)  # nothing to resume: the message says what to do
    output = resumed.communicate(timeout=300)[0].decode()
    assert resumed.returncode == 1 and "plain `losscraft run`" in output, output
    proc = _launch(path, resume=False)  # a plain run starts it again
    output = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode == 0, output
    a = load_file(str(straight.final_model / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "final" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = [json.loads(l) for l in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "event" not in r] == list(range(1, 11))
