"""How fast the command line answers: median wall time of ``losscraft --version``, ``--help``,
``plugins`` and ``validate`` in fresh interpreters, with the number of modules each imports and
whether torch / transformers are among them, beside ``python -c pass`` and ``import torch``.

    python benchmarks/cli_startup.py [--reps 5] [--old DIR]

``--old DIR``: also time another copy of the ``losscraft`` and ``losscraft_plugins`` packages
(e.g. ``git archive HEAD losscraft losscraft_plugins | tar -x -C DIR``), alternating with this
one, so that a loaded machine slows both alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE = ("import sys\nfrom losscraft.app.main import main\ntry:\n    main({args!r})\n"
         "except SystemExit:\n    pass\nprint(len(sys.modules), 'torch' in sys.modules, "
         "'transformers' in sys.modules, file=sys.stderr)")
CASES = {"--version": ["--version"], "--help": ["--help"], "plugins": ["plugins"],
         "validate": ["validate", str(ROOT / "recipes" / "flatgd.toml")]}
BASELINES = {"python -c pass": "pass", "import torch": "import torch"}


def _run(code: str, pythonpath: str | None = None) -> tuple[float, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd="/")
    lines = done.stderr.strip().splitlines()
    return time.perf_counter() - start, lines[-1] if lines else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--old", help="folder holding an older losscraft to compare with")
    args = parser.parse_args()
    trees = [("new", None)] + ([("old", args.old)] if args.old else [])
    times: dict[str, list[float]] = {}
    info: dict[str, str] = {}
    for _ in range(args.reps):
        for name, code in BASELINES.items():
            times.setdefault(name, []).append(_run(code)[0])
        for name, argv in CASES.items():
            for tag, path in trees:
                seconds, modules = _run(PROBE.format(args=argv), path)
                times.setdefault(f"{name} ({tag})", []).append(seconds)
                info[f"{name} ({tag})"] = modules
    print(f"{'what':26s} {'median s':>9s}  modules torch transformers")
    for key, values in times.items():
        print(f"{key:26s} {statistics.median(values):9.2f}  {info.get(key, '')}")


if __name__ == "__main__":
    main()
