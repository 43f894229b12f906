"""The shipped safety judges, made ready in the cache on first use and reused.

Two judges ship, each a recipe beside this module and a small LoRA adapter trained from it:

- ``default`` (``judge.toml``): the judge every command and report uses, trained on the primary
  pool of the judge corpus;
- ``second`` (``judge_second.toml``): the same architecture trained on a disjoint writer pool, so
  a claim can be checked by a scorer that shares no training row with the first.

`judge_dir` returns a folder holding ``final/`` (the classifier with its adapter merged, loadable
by the ``safety_judge`` and ``hf_classifier`` scorers) and ``metrics.json`` (held-out and probe
metrics, the surface floor fitted on its training data). The folder lives in
``$LOSSCRAFT_CACHE_DIR/safety_judge/<name>-<key>``, where the key hashes everything that decides
the weights: the recipe, the corpus files it reads and the training code. On first use the
shipped adapter (``weights/<name>/``) is merged into the embedded MiniLM when it was trained from
this very key (seconds); otherwise — the recipe, data or code changed — the judge is trained
again from the recipe (minutes; ``losscraft judge --retrain`` forces it). Either way the probe
metrics are measured afresh on the probe as it is now. Work happens in a temporary folder renamed
into place under a file lock, so concurrent processes do it once and never see half a judge
(`losscraft.runtime.cache`).
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

from rich.console import Console

from losscraft.errors import LosscraftError
from losscraft.runtime.cache import cache_root, ready_folder, replace_folder

FOLDER_NAME = "safety_judge"
#: judge name -> its recipe beside this module
RECIPES = {"default": "judge.toml", "second": "judge_second.toml"}
#: bump when the judge's folder layout changes
FORMAT = "2"
#: the shipped adapter of a judge, and what it records
SHIPPED = "weights"
SHIPPED_RECORD = "shipped.json"


def judge_recipe_path(name: str = "default") -> Path:
    """The recipe of a shipped judge (``default`` or ``second``)."""
    if name not in RECIPES:
        raise LosscraftError(f"unknown judge {name!r}; expected one of {sorted(RECIPES)}")
    return Path(str(resources.files("losscraft.judge") / RECIPES[name]))


def shipped_dir(name: str = "default") -> Path:
    """Where the package keeps a judge's trained adapter and its record."""
    return Path(str(resources.files("losscraft.judge"))) / SHIPPED / name


def _key_files(name: str) -> list[Path]:
    from losscraft.recipe.parse import load_classifier_recipe

    recipe = load_classifier_recipe(judge_recipe_path(name))
    samples = Path(str(resources.files("losscraft_plugins.data.samples")))
    pools = sorted({str(spec.params.get("pool", "primary")) for spec in recipe.data})
    data = [f for pool in pools for f in sorted((samples / "judge" / pool).rglob("*"))
            if f.is_file() and f.name != "pairs.jsonl"]
    code = Path(__file__).parent  # the judge package: its model and training code
    return ([judge_recipe_path(name)] + data
            + [code / f for f in ("adapter.py", "encoder.py", "fit.py", "inputs.py", "train.py")])


def judge_key(name: str = "default") -> str:
    """A short hash of everything that decides a judge's weights (see the module doc)."""
    digest = hashlib.sha256(FORMAT.encode())
    for path in _key_files(name):
        digest.update(path.name.encode())
        digest.update(path.read_bytes().replace(b"\r\n", b"\n"))
    return digest.hexdigest()[:12]


def _is_complete(folder: Path) -> bool:
    final = folder / "final"
    return (folder / "metrics.json").is_file() and any(
        (final / name).is_file() for name in ("config.json", "pair_head.json"))


def shipped_record(name: str = "default") -> dict | None:
    """What the shipped adapter of ``name`` records (its key, metrics, sizes), if it ships one."""
    path = shipped_dir(name) / SHIPPED_RECORD
    return json.loads(path.read_text()) if path.is_file() else None


def _train(name: str, target: Path, console: Console, show_progress: bool) -> None:
    from losscraft.judge.train import train_classifier
    from losscraft.recipe.parse import load_classifier_recipe

    recipe = load_classifier_recipe(judge_recipe_path(name), [f"run.output_dir={target}"])
    train_classifier(recipe, console=console, show_progress=show_progress, overwrite=True)


def _materialise(name: str, target: Path) -> None:
    """``final/`` and ``metrics.json`` from the shipped adapter, probe metrics measured now."""
    from losscraft.judge.adapter import merged_classifier
    from losscraft.judge.train import measure_probe
    from losscraft.recipe.parse import load_classifier_recipe

    recipe = load_classifier_recipe(judge_recipe_path(name))
    tokenizer, model = merged_classifier(recipe.classifier, shipped_dir(name) / "adapter")
    model.save_pretrained(target / "final")
    tokenizer.save_pretrained(target / "final")
    metrics = dict(shipped_record(name)["metrics"])
    metrics["probe"] = measure_probe(model, tokenizer, recipe.classifier,
                                     recipe.train.eval_batch_size)
    metrics["source"] = f"shipped adapter {shipped_dir(name) / 'adapter'}"
    (target / "metrics.json").write_text(json.dumps(metrics, indent=2))


def _make_judge(name: str, key: str, folder: Path, *, target: Path, retrain: bool,
                console: Console | None, show_progress: bool) -> None:
    """Write judge ``name`` into ``folder`` (which becomes ``target``): merged from the shipped
    adapter when that was trained from this very ``key``, trained from the recipe otherwise."""
    console = console or Console(stderr=True)
    record = shipped_record(name)
    if not retrain and record is not None and record.get("key") == key:
        _materialise(name, folder)
        console.print(f"[bold]safety judge[/] ({name}): merged the shipped adapter into {target}")
    else:
        why = "as asked" if retrain else \
            "its recipe, data or code differ from the shipped adapter's"
        console.print(f"[bold]safety judge[/] ({name}): training it into {target} "
                      f"({why}; about 15 minutes on a 2-core CPU, reused afterwards)")
        _train(name, folder, console, show_progress)


def judge_dir(name: str = "default", *, console: Console | None = None,
              show_progress: bool = True, retrain: bool = False) -> Path:
    """A shipped judge's folder, made ready first when the cache has none for its key."""
    key = judge_key(name)

    def make(target: Path) -> None:
        replace_folder(target, lambda folder: _make_judge(
            name, key, folder, target=target, retrain=retrain, console=console,
            show_progress=show_progress))

    return ready_folder(cache_root() / FOLDER_NAME / f"{name}-{key}", _is_complete, make,
                        force=retrain)


def default_judge_dir(*, console: Console | None = None, show_progress: bool = True,
                      retrain: bool = False) -> Path:
    """The default judge's folder (`judge_dir` of ``"default"``)."""
    return judge_dir("default", console=console, show_progress=show_progress, retrain=retrain)
