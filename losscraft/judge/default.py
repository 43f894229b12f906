"""The default safety judge, trained once into the cache and reused.

`default_judge_dir` returns a folder holding ``final/`` (the classifier, loadable by the
``safety_judge`` and ``hf_classifier`` scorers) and ``metrics.json`` (held-out and probe
metrics). On first use it trains ``judge.toml`` (beside this module) from the shipped samples —
about two minutes on a 2-core CPU — into
``$LOSSCRAFT_CACHE_DIR/safety_judge/<key>``, where the key hashes everything that decides the
result: the recipe, the training data files, the probe set and the training code. Training writes
to a temporary folder renamed into place under a file lock, so concurrent processes train at most
once and never see half a judge. Like the embedded model's conversion, no manual step is needed.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from filelock import FileLock
from rich.console import Console

from losscraft.models.embedded import cache_root

FOLDER_NAME = "safety_judge"
#: the scorer every command and report uses unless told otherwise
DEFAULT_SCORER = "safety_judge"
#: bump when the judge's folder layout changes
FORMAT = "1"


def judge_recipe_path() -> Path:
    """The recipe of the default judge (shipped in the package)."""
    return Path(str(resources.files("losscraft.judge") / "judge.toml"))


def _key_files() -> list[Path]:
    import losscraft.classifier as classifier_pkg
    from losscraft.judge.probe import probe_path

    samples = Path(str(resources.files("losscraft_plugins.data.samples")))
    code = Path(classifier_pkg.__file__).parent
    return ([judge_recipe_path(), probe_path(), samples / "mic_sample.csv",
             samples / "prosocial_dialog_sample.jsonl"]
            + sorted((samples / "bot_adversarial_dialogue").rglob("*.txt"))
            + [code / name for name in ("fit.py", "inputs.py", "train.py", "embedding_pair.py")])


def judge_key() -> str:
    """A short hash of everything that decides the default judge (see the module doc)."""
    digest = hashlib.sha256(FORMAT.encode())
    for path in _key_files():
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _is_complete(folder: Path) -> bool:
    final = folder / "final"
    return (folder / "metrics.json").is_file() and any(
        (final / name).is_file() for name in ("config.json", "pair_head.json"))


def _train(target: Path, console: Console, show_progress: bool) -> None:
    from losscraft.classifier.parse import load_classifier_recipe
    from losscraft.classifier.train import train_classifier

    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        recipe = load_classifier_recipe(judge_recipe_path(), [f"run.output_dir={tmp}"])
        train_classifier(recipe, console=console, show_progress=show_progress, overwrite=True)
        tmp.chmod(0o755)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def default_judge_dir(*, console: Console | None = None, show_progress: bool = True,
                      retrain: bool = False) -> Path:
    """The default judge's folder, training it first when the cache has none for this key."""
    target = cache_root() / FOLDER_NAME / judge_key()
    if _is_complete(target) and not retrain:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f"{target.name}.lock")):
        if retrain or not _is_complete(target):
            console = console or Console(stderr=True)
            console.print(f"[bold]safety judge[/]: training the default judge once into {target} "
                          "(about two minutes on a CPU; reused afterwards)")
            _train(target, console, show_progress)
    return target
