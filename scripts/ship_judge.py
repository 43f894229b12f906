"""Ship a trained judge's adapter in the package: ``python scripts/ship_judge.py NAME RUN_DIR``.

``RUN_DIR`` is the output of ``losscraft run losscraft/judge/<recipe>`` for the judge ``NAME``
(``default`` -> judge.toml, ``second`` -> judge_second.toml). Copies ``RUN_DIR/adapter`` to
``losscraft/judge/weights/NAME/adapter`` and writes ``shipped.json`` beside it: the judge key
(hash of the recipe, the corpus files and the training code; the cache reuses the adapter only
while it matches), the adapter's SHA-256 and the run's metrics. Refuses when the run's recipe is
not the judge's recipe as it is now.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

from losscraft.recipe.parse import load_classifier_recipe
from losscraft.judge.default import SHIPPED_RECORD, judge_key, judge_recipe_path, shipped_dir


def main(name: str, run_dir: str) -> None:
    run = Path(run_dir)
    adapter = run / "adapter"
    if not (adapter / "adapter_model.safetensors").is_file():
        sys.exit(f"{adapter} holds no adapter (train with classifier.lora_r > 0)")
    ran = json.loads((run / "recipe.json").read_text())
    want = load_classifier_recipe(judge_recipe_path(name)).raw
    strip = lambda raw: {k: v for k, v in raw.items() if k != "run"}  # noqa: E731
    if strip(ran) != strip(want):
        sys.exit(f"{run} was not trained from {judge_recipe_path(name)} as it is now")
    target = shipped_dir(name)
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(adapter, target / "adapter", ignore=shutil.ignore_patterns("README.md"))
    metrics = json.loads((run / "metrics.json").read_text())
    record = {"name": name, "key": judge_key(name),
              "adapter_sha256": hashlib.sha256(
                  (target / "adapter" / "adapter_model.safetensors").read_bytes()).hexdigest(),
              "recipe": str(judge_recipe_path(name).name), "metrics": metrics}
    (target / SHIPPED_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    size = sum(f.stat().st_size for f in (target / "adapter").iterdir())
    print(f"shipped {name}: {target} ({size / 2**20:.1f} MiB), key {record['key']}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
