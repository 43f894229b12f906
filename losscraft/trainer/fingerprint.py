"""The recipe a checkpoint was trained with, and what `--resume` may change.

`normalised_recipe` is the parsed recipe as plain JSON (defaults filled in, so writing a default
value explicitly is no change); `fingerprint` hashes it. `flatten` names every setting by a dotted
key (stages and terms by name), and `recipe_changes` compares a checkpoint's recipe with the
current one. Keys in `SAFE_TO_CHANGE` (patterns) may change on resume — they are applied and
recorded in ``recipe_history.jsonl``; any other difference refuses the resume, listing the keys.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
from pathlib import Path
from typing import Any

from losscraft.errors import RecipeChangedError
from losscraft.recipe.schema import Recipe
from losscraft.runtime.manifest import sha256

#: Settings that do not change what the steps already taken mean: logging, threads, reporting,
#: how long unfinished stages run, checkpoint frequency, which stage models are kept.
SAFE_TO_CHANGE = ("run.name", "run.log_every", "run.threads", "run.profile", "run.output_dir",
                  "run.sharding",  # checkpoints hold full weights and optimizer state
                  "run.on_nonfinite", "run.max_skipped_steps", "run.max_update_ratio", "report.*",
                  "stages.*.max_steps", "stages.*.epochs", "stages.*.checkpoint_every",
                  "stages.*.keep_model")
#: Of the safe keys, those that would change an already finished stage's result.
_STAGE_LENGTH = ("max_steps", "epochs")


#: Settings added after checkpoints were first written: a checkpoint's recipe without one of
#: them is no change when the current value is the default.
_ADDED_LATER = {"run.max_update_ratio": 10.0, "stages.*.terms.*.allow_negative_weight": False}
#: Where `normalised_recipe` records the content of the data files a stage reads.
DATA_FILES = "data_files"


def normalised_recipe(recipe: Recipe) -> dict[str, Any]:
    """``recipe`` as JSON-able data with defaults filled in (no file path, no raw mapping), and
    the SHA-256 of every data file its stages' data sources name (`data_files`): a file changed
    at the same path is a change of the recipe."""
    data = dataclasses.asdict(recipe)
    for key in ("path", "raw"):
        data.pop(key, None)
    data[DATA_FILES] = data_files(recipe)
    return json.loads(json.dumps(data, sort_keys=True, default=str))


def data_files(recipe: Recipe) -> dict[str, str]:
    """``{"stages.<name>.data[<i>].<param>": sha256}`` for every data-source parameter of every
    stage (replayed sources included) that names an existing file."""
    found = {}
    for stage in recipe.stages:
        specs = list(stage.data) + (list(stage.replay.data) if stage.replay else [])
        for spec in specs:
            for param, value in sorted(spec.params.items()):
                if not isinstance(value, str) or not value or "\0" in value:
                    continue
                try:
                    path = Path(value).expanduser()
                    if path.is_file():
                        found[f"{spec.key}.{param}"] = sha256(path)
                except OSError:
                    continue
    return found


def fingerprint(normalised: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(normalised, sort_keys=True).encode()).hexdigest()


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys → leaf values; list entries named by their ``name`` when they have one."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k == "key":
                continue  # where a table sat in the file, not a setting
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out or {prefix: {}}
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out = {}
        for i, v in enumerate(value):
            label = v.get("name") or str(i)
            out.update(flatten(v, f"{prefix}.{label}"))
        return out
    return {prefix: value}


def recipe_changes(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{key: (saved value, current value)}`` for every setting that differs."""
    a, b = flatten(saved), flatten(current)
    missing = object()
    return {k: (a.get(k, "<unset>"), b.get(k, "<unset>")) for k in sorted(set(a) | set(b))
            if a.get(k, missing) != b.get(k, missing)}


def is_safe(key: str) -> bool:
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in SAFE_TO_CHANGE)


def _added_later(key: str, old: Any, new: Any) -> bool:
    return old == "<unset>" and any(fnmatch.fnmatchcase(key, pattern) and new == default
                                    for pattern, default in _ADDED_LATER.items())


def check_resume_changes(saved: dict[str, Any] | None, current: dict[str, Any], *,
                         finished_stages: set[str]) -> dict[str, tuple[Any, Any]]:
    """The safe changes to apply on resume; raises `RecipeChangedError` listing every other
    change (and a length change of a stage that already finished). A data file whose content
    changed is such a change. ``saved=None`` (a checkpoint without its recipe) allows
    everything: the caller decides whether that is allowed (``--force-recipe``)."""
    if saved is None:
        return {}
    if DATA_FILES not in saved:  # written before data files were fingerprinted
        current = {k: v for k, v in current.items() if k != DATA_FILES}
    changes = {k: v for k, v in recipe_changes(saved, current).items()
               if not _added_later(k, *v)}
    refused = {}
    for key, change in changes.items():
        parts = key.split(".")
        finished_length = (parts[0] == "stages" and len(parts) == 3 and parts[2] in _STAGE_LENGTH
                           and parts[1] in finished_stages)
        if not is_safe(key) or finished_length:
            refused[key] = change
    if refused:
        data = {k: v for k, v in refused.items() if k.startswith(DATA_FILES + ".")}
        listed = "; ".join([f"{k}: {old!r} -> {new!r}" for k, (old, new) in refused.items()
                            if k not in data] +
                           [f"the data file of {k.removeprefix(DATA_FILES + '.')} changed "
                            f"(sha256 {str(old)[:12]} -> {str(new)[:12]})"
                            for k, (old, new) in data.items()])
        raise RecipeChangedError(
            f"--resume: the recipe differs from the checkpoint's in settings that affect "
            f"training ({listed}); resume with the original values or start a new run with "
            f"--set run.output_dir=... (changeable on resume: {', '.join(SAFE_TO_CHANGE)}, "
            "for stages not yet finished)")
    return changes
