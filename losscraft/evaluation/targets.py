"""Resolving `losscraft eval`'s TARGET to a model and loading it.

TARGET is one of:

- ``embedded`` — the SmolLM2-135M-Instruct model shipped with losscraft;
- a model folder (``save_pretrained`` layout with ``config.json``, or a peft LoRA adapter folder
  with ``adapter_config.json``, whose base model is loaded and the adapter merged);
- a run directory: the model folder inside it named ``final`` (also ``final_model``, ``model``),
  else the ``final_model`` its ``run.json`` names — relative to the run directory (an absolute
  path stored by an older run counts only where it lies inside the directory, so a copied run
  folder evaluates its own model), else the most recently written model folder up to three
  levels down;
- a Hugging Face hub id (needs network unless cached; `load_causal_lm` explains otherwise).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from losscraft.errors import ModelError

FINAL_NAMES = ("final", "final_model", "model")
MODEL_MARKERS = ("config.json", "adapter_config.json")


@dataclass
class ResolvedTarget:
    """Where TARGET's weights are: ``kind`` is ``embedded``, ``run``, ``folder`` or ``hub``;
    ``label`` names the model in reports; ``run_dir`` is set for run directories."""

    kind: str
    location: str
    label: str
    run_dir: Path | None = None


def _is_model_folder(path: Path) -> bool:
    return path.is_dir() and any((path / m).is_file() for m in MODEL_MARKERS)


def _named_in_run(run_dir: Path) -> Path | None:
    """The ``final_model`` of ``run_dir/run.json`` as a folder inside ``run_dir``, if any."""
    try:
        named = json.loads((run_dir / "run.json").read_text(encoding="utf-8")).get("final_model")
    except (OSError, ValueError, AttributeError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(named, str) or not named:
        return None
    path = Path(named) if Path(named).is_absolute() else run_dir / named
    root = run_dir.resolve()
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        return None  # a stored absolute path of another folder: not this run's model
    return path


def find_run_model(run_dir: Path) -> Path:
    """The final model folder of a training run directory (see the module docstring)."""
    for name in FINAL_NAMES:
        if _is_model_folder(run_dir / name):
            return run_dir / name
    named = _named_in_run(run_dir)
    if named is not None and _is_model_folder(named):
        return named
    found = [p for pattern in ("*", "*/*", "*/*/*") for p in run_dir.glob(pattern)
             if _is_model_folder(p)]
    if not found:
        raise ModelError(f"{run_dir} is neither a model folder (no {' or '.join(MODEL_MARKERS)}) "
                         f"nor a run directory holding one (looked for {', '.join(FINAL_NAMES)} "
                         "and any model folder up to three levels down)")
    finals = [p for p in found if "final" in p.name]
    return max(finals or found, key=lambda p: max(f.stat().st_mtime for f in p.iterdir()))


def resolve_target(target: str) -> ResolvedTarget:
    """Classify TARGET without loading anything (raises `ModelError` for unusable folders)."""
    if target == "embedded":
        return ResolvedTarget("embedded", target, "smollm2-135m-instruct")
    path = Path(target).expanduser()
    if path.is_dir():
        if _is_model_folder(path):
            return ResolvedTarget("folder", str(path), path.resolve().name)
        return ResolvedTarget("run", str(find_run_model(path)), path.resolve().name,
                              run_dir=path)
    if path.exists():
        raise ModelError(f"TARGET {target} is a file; pass a run directory, a model folder, "
                         "'embedded' or a hub id")
    from losscraft.models.loading import looks_like_local_path

    if looks_like_local_path(target):
        raise ModelError(f"TARGET {target} does not exist")
    return ResolvedTarget("hub", target, target)


def load_model(location: str, *, device: str = "cpu", dtype: Any = None, param: str = "TARGET"):
    """``(model, tokenizer)`` from ``embedded``, a model/adapter folder or a hub id."""
    from losscraft.models.loading import load_causal_lm

    if location == "embedded":
        from losscraft.models.embedded import embedded_model_dir

        location = str(embedded_model_dir())
    adapter = Path(location) / "adapter_config.json"
    if adapter.is_file() and not (Path(location) / "config.json").is_file():
        from losscraft.models.loading import check_model_folder

        check_model_folder(location, param=param, weights=False)
        if not (Path(location) / "adapter_model.safetensors").is_file():
            raise ModelError(f"{param}: adapter folder {location} has no "
                             "adapter_model.safetensors (losscraft never loads pickle weights)")
        return _load_adapter(Path(location), device=device, dtype=dtype, param=param)
    return load_causal_lm(location, device=device, dtype=dtype, param=param)


def _load_adapter(folder: Path, *, device: str, dtype: Any, param: str):
    from peft import PeftModel

    from losscraft.models.loading import load_causal_lm

    try:
        base = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8")).get(
            "base_model_name_or_path")
    except (OSError, ValueError, AttributeError, UnicodeDecodeError, RecursionError):
        raise ModelError(f"{param}: {folder}/adapter_config.json is not a JSON object") from None
    if not base:
        raise ModelError(f"{param}: {folder}/adapter_config.json names no base model "
                         "(base_model_name_or_path)")
    model, tokenizer = load_causal_lm(base, device=device, dtype=dtype, param=param)
    if (folder / "tokenizer_config.json").is_file():  # the run may have added tokens
        tokenizer = _adapter_tokenizer(folder)
    return PeftModel.from_pretrained(model, str(folder)).merge_and_unload(), tokenizer


def _adapter_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True,
                                                  trust_remote_code=False)
    except (OSError, ValueError) as e:
        from losscraft.models.loading import one_line

        raise ModelError(f"cannot load the tokenizer of {folder}: {one_line(e)}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer
