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
from typing import Any

from losscraft.errors import RecipeChangedError
from losscraft.recipe.schema import Recipe

#: Settings that do not change what the steps already taken mean: logging, threads, reporting,
#: how long unfinished stages run, checkpoint frequency, which stage models are kept.
SAFE_TO_CHANGE = ("run.name", "run.log_every", "run.threads", "run.profile", "run.output_dir",
                  "run.sharding",  # checkpoints hold full weights and optimizer state
                  "run.on_nonfinite", "run.max_skipped_steps", "report.*",
                  "stages.*.max_steps", "stages.*.epochs", "stages.*.checkpoint_every",
                  "stages.*.keep_model")
#: Of the safe keys, those that would change an already finished stage's result.
_STAGE_LENGTH = ("max_steps", "epochs")


def normalised_recipe(recipe: Recipe) -> dict[str, Any]:
    """``recipe`` as JSON-able data with defaults filled in (no file path, no raw mapping)."""
    data = dataclasses.asdict(recipe)
    for key in ("path", "raw"):
        data.pop(key, None)
    return json.loads(json.dumps(data, sort_keys=True, default=str))


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


def check_resume_changes(saved: dict[str, Any] | None, current: dict[str, Any], *,
                         finished_stages: set[str]) -> dict[str, tuple[Any, Any]]:
    """The safe changes to apply on resume; raises `RecipeChangedError` listing every other
    change (and a length change of a stage that already finished). ``saved=None`` (a checkpoint
    from before recipes were stored) allows everything."""
    if saved is None:
        return {}
    changes = recipe_changes(saved, current)
    refused = {}
    for key, change in changes.items():
        parts = key.split(".")
        finished_length = (parts[0] == "stages" and len(parts) == 3 and parts[2] in _STAGE_LENGTH
                           and parts[1] in finished_stages)
        if not is_safe(key) or finished_length:
            refused[key] = change
    if refused:
        listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in refused.items())
        raise RecipeChangedError(
            f"--resume: the recipe differs from the checkpoint's in settings that affect "
            f"training ({listed}); resume with the original values or start a new run with "
            f"--set run.output_dir=... (changeable on resume: {', '.join(SAFE_TO_CHANGE)}, "
            "for stages not yet finished)")
    return changes
