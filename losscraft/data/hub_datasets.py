"""Loading a `datasets.Dataset` split from a local folder/file or a Hugging Face hub id.

`load_hf_dataset` is what data sources call when a recipe names a dataset rather than one local
data file. Local paths never touch the network. A hub id is loaded normally when the hub answers;
when the hub is offline (``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE``) or unreachable (one probe
with a short timeout, no retries) the local Hugging Face cache is tried, and if the dataset is not
there it fails at once with `OfflineError` saying to point the same parameter at local files.
"""

from __future__ import annotations

import os
from pathlib import Path

from losscraft.errors import DataError, OfflineError, RecipeError
from losscraft.runtime.hub_access import hub_offline, hub_reachable, looks_like_local_path

#: File extensions -> the `datasets` packaged builder that reads them.
BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def _load_local(path: Path, split: str, config: str | None, param: str):
    import datasets

    if path.is_dir() and (path / "dataset_dict.json").exists():  # DatasetDict.save_to_disk
        loaded = datasets.load_from_disk(str(path))
        if split not in loaded:
            raise RecipeError(f"split {split!r} is not in {path} (it has {sorted(loaded)})",
                              key="split")
        return loaded[split]
    if path.is_dir() and (path / "state.json").exists():  # Dataset.save_to_disk: one split
        return datasets.load_from_disk(str(path))
    if path.is_file():
        builder = BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise RecipeError(f"cannot read {path}: expected one of {sorted(BUILDERS)}", key=param)
        return datasets.load_dataset(builder, data_files={split: str(path)}, split=split)
    return datasets.load_dataset(str(path), config, split=split)


def _from_cache(name: str, split: str, config: str | None, param: str, why: str):
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = snapshot_download(name, repo_type="dataset", local_files_only=True)
    except (LocalEntryNotFoundError, OSError, ValueError) as e:
        raise OfflineError(
            f"parameter '{param}': {name!r} is a hub dataset id, but {why} and it is not in the "
            f"local Hugging Face cache. Download it where there is network (hf download {name} "
            f"--repo-type dataset --local-dir SOME_FOLDER, or "
            f"datasets.load_dataset(...).save_to_disk(SOME_FOLDER)), then set '{param}' to that "
            "local folder or to one of its JSONL/CSV/Parquet files.") from e
    return _load_local(Path(folder), split, config, param)


def load_hf_dataset(name_or_path: str | os.PathLike, *, split: str, config: str | None = None,
                    param: str = "dataset"):
    """Load one split of a dataset as a `datasets.Dataset`.

    Args:
        name_or_path: a hub id (``"allenai/prosocial-dialog"``), a local folder (raw data files,
            a hub snapshot, or the output of ``save_to_disk``) or one local ``.jsonl``/``.json``/
            ``.csv``/``.parquet`` file (taken whole as ``split``).
        split: the split to return (``"train"``, ``"validation"``, ...).
        config: the dataset configuration name, if it has several.
        param: the recipe parameter that holds ``name_or_path``, named in error messages.

    Raises:
        RecipeError: a local path that does not exist (key ``param``) or an unknown split
            (key ``"split"``).
        OfflineError: a hub id while the hub is offline or unreachable and the dataset is not in
            the local cache; the message says to set ``param`` to a local folder or file.
        DataError: the files exist but `datasets` cannot parse them.
    """
    import datasets

    name = str(name_or_path)
    path = Path(name).expanduser()
    try:
        if path.exists():
            return _load_local(path, split, config, param)
        if looks_like_local_path(name) or path.suffix.lower() in BUILDERS:
            raise RecipeError(f"{path} does not exist", key=param)
        if hub_offline():
            return _from_cache(name, split, config, param, "the hub is offline (HF_HUB_OFFLINE)")
        if not hub_reachable():
            return _from_cache(name, split, config, param, "the hub is unreachable")
        try:
            return datasets.load_dataset(name, config, split=split)
        except ConnectionError as e:
            return _from_cache(name, split, config, param, f"the hub failed ({e})")
    except (RecipeError, OfflineError):
        raise
    except datasets.exceptions.DatasetNotFoundError as e:
        raise RecipeError(f"dataset {name!r} not found: {e}", key=param) from e
    except ValueError as e:
        if "split" in str(e).lower():
            raise RecipeError(f"{name!r}: {e}", key="split") from e
        raise DataError(f"cannot load dataset: {e}", file=name) from e
    except (OSError, datasets.exceptions.DatasetGenerationError) as e:
        raise DataError(f"cannot load dataset: {e}", file=name) from e
