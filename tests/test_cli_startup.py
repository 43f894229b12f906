"""A command line that answers at once: ``losscraft --help`` and ``--version`` import neither torch
nor transformers, and ``losscraft plugins`` (which imports the built-in plugins, torch code) no
transformers. Checked in fresh interpreters through ``sys.modules``, not by timing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "datasets", "sentence_transformers", "peft", "accelerate")

PROBE = """
import json, sys
from losscraft.app.main import main
try:
    main({args!r})
except SystemExit:
    pass
print(json.dumps({{"heavy": [m for m in {heavy!r} if m in sys.modules],
                   "modules": len(sys.modules)}}), file=sys.stderr)
"""


def _imported(*args: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("LOSSCRAFT_LOAD_PLUGINS", None)
    done = subprocess.run([sys.executable, "-c", PROBE.format(args=list(args), heavy=HEAVY)],
                          capture_output=True, text=True, env=env, timeout=300)
    return json.loads(done.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["new-plugin", "--help"],
                                  ["install", "--help"], ["validate", "--help"]])
def test_help_and_version_import_neither_torch_nor_transformers(args):
    result = _imported(*args)
    assert result["heavy"] == [], result


def test_plugins_listing_imports_no_transformers():
    result = _imported("plugins", "--json")
    assert "transformers" not in result["heavy"], result
