"""Loading causal LMs and tokenizers through the `transformers` Auto classes.

`load_causal_lm` accepts a local folder or a hub id. Local folders never touch the network. A hub
id is read from the local Hugging Face cache when possible; if it is not cached and the hub is
offline (``HF_HUB_OFFLINE=1``) or unreachable (checked with one 3-second request, no retries) it
fails at once with `OfflineError`, saying to pass a local folder instead.

Nothing loaded can run code: weights only from safetensors (``use_safetensors=True``; a folder
holding only pickle weights — ``pytorch_model.bin`` — is refused before anything reads it), no
model or tokenizer code from the folder (``trust_remote_code=False``, so an ``auto_map`` never
prompts and never runs), and a local folder with a ``manifest.json`` — every model folder a run
writes, which inside a run folder must have one — is verified against it (`check_model_folder`).

Tokenizers are returned ready for batched generation: ``padding_side="left"`` (so every prompt ends
at the last position) and, when the tokenizer has no pad token, the eos token as pad token (padding
is always masked out by attention masks and loss masks, so the choice of id does not matter).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from losscraft.errors import CheckpointError, ModelError, OfflineError, RecipeError
from losscraft.runtime.manifest import MANIFEST, in_run_folder, verify_manifest
from losscraft.runtime.hub_access import hub_offline, hub_reachable, looks_like_local_path

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
          "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


def parse_dtype(value: Any, *, param: str = "dtype") -> torch.dtype | str | None:
    """``None``, a ``torch.dtype``, ``"auto"`` (the checkpoint's dtype) or one of ``float32``,
    ``bfloat16``, ``float16`` (also ``fp32``/``bf16``/``fp16``) -> what `from_pretrained` takes."""
    if value is None or isinstance(value, torch.dtype) or value == "auto":
        return value
    if isinstance(value, str) and value.lower() in DTYPES:
        return DTYPES[value.lower()]
    raise ModelError(f"parameter '{param}': {_DTYPE_HELP.format(value)}")


_DTYPE_HELP = "unknown dtype {!r}; expected one of float32, bfloat16, float16, auto"


def check_dtype_param(value: Any, *, key: str = "dtype") -> None:
    """For factories: raise `RecipeError` naming ``key`` unless `parse_dtype` accepts ``value``."""
    try:
        parse_dtype(value)
    except ModelError:
        raise RecipeError(_DTYPE_HELP.format(value), key=key) from None


def offline_error(name: str, param: str, why: str) -> OfflineError:
    return OfflineError(
        f"parameter '{param}': {name!r} is a hub id, but {why} and it is not in the local "
        f"Hugging Face cache. Download it where there is network (hf download "
        f"{name} --local-dir SOME_FOLDER), then set '{param}' to that local folder.")


#: Weight files that unpickle (can run code when read); never loaded.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
#: The code-free ways a folder may hold weights.
SAFE_WEIGHTS = ("*.safetensors",)


def one_line(exc: BaseException) -> str:
    """The first non-empty line of ``exc``'s message (library errors span several lines)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def check_model_folder(folder: str | os.PathLike, *, param: str = "path",
                       require_manifest: bool | None = None, weights: bool = True) -> None:
    """Before loading local model folder ``folder``: verify it against its ``manifest.json``
    (required when ``require_manifest``; by default when the folder lies in a losscraft run
    folder, whose model folders always carry one) and, when ``weights``, refuse a folder whose
    weights exist only as pickle files. Raises a one-line `ModelError` naming ``param``."""
    folder = Path(folder)
    if require_manifest is None:
        require_manifest = in_run_folder(folder)
    if require_manifest or os.path.lexists(folder / MANIFEST):
        try:
            verify_manifest(folder)
        except CheckpointError as exc:
            raise ModelError(f"parameter '{param}': model folder {folder} fails verification "
                             f"against its manifest: {exc}") from None
    if not weights:
        return
    safe = [p for pattern in SAFE_WEIGHTS for p in folder.glob(pattern)]
    pickled = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if not safe and pickled:
        raise ModelError(f"parameter '{param}': model folder {folder} holds only pickle weights "
                         f"({', '.join(pickled[:3])}), which losscraft never loads (unpickling "
                         "can run code); convert them to safetensors (model.save_pretrained("
                         "..., safe_serialization=True)) where you trust them")


def load_causal_lm(name_or_path: str | os.PathLike, *, device: str = "cpu", dtype: Any = None,
                   revision: str | None = None, attn_implementation: str | None = None,
                   param: str = "path", require_manifest: bool | None = None):
    """Load ``(model, tokenizer)`` for a decoder-only LM from a local folder or a hub id.

    ``dtype``: see `parse_dtype`; ``None`` means float32 (safe for CPU training). ``param`` is the
    recipe parameter named in error messages. A local folder is checked first
    (`check_model_folder`; ``require_manifest`` as there). Raises `ModelError` (missing folder,
    unsupported or encoder–decoder architecture, unreadable files, a manifest that does not
    match, pickle weights only, a folder that asks to run its own code) or `OfflineError` (hub
    id without network).
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    name = str(name_or_path)
    torch_dtype = parse_dtype(dtype, param="dtype")
    local = looks_like_local_path(name)
    if local:
        name = str(Path(name).expanduser())
        if not Path(name).is_dir():
            raise ModelError(f"parameter '{param}': model folder {name} does not exist")
        check_model_folder(name, param=param, require_manifest=require_manifest)
    cached_only = local or hub_offline()
    if not cached_only and not hub_reachable():
        cached_only = True
    common = {"revision": revision, "local_files_only": cached_only, "trust_remote_code": False}
    try:
        config = AutoConfig.from_pretrained(name, **common)
    except OSError as e:
        if not local and cached_only:
            why = "the hub is offline (HF_HUB_OFFLINE)" if hub_offline() else \
                "the hub is unreachable"
            raise offline_error(name, param, why) from e
        raise ModelError(f"parameter '{param}': cannot read a model config from {name!r}: "
                         f"{one_line(e)}") from None
    except ValueError as e:
        raise ModelError(f"parameter '{param}': {name!r}: {_code_refused(e)}") from None
    if getattr(config, "is_encoder_decoder", False):
        raise ModelError(f"parameter '{param}': {name!r} is an encoder–decoder model "
                         f"({config.model_type}); encoder–decoder models are not supported yet, "
                         "use a decoder-only causal LM (e.g. Llama, SmolLM2, GPT-2, Qwen)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, **common)
        model = AutoModelForCausalLM.from_pretrained(
            name, config=config, dtype=torch.float32 if torch_dtype is None else torch_dtype,
            attn_implementation=attn_implementation, use_safetensors=True, **common)
    except (OSError, ValueError) as e:
        raise ModelError(f"parameter '{param}': cannot load a causal LM from {name!r}: "
                         f"{_code_refused(e)}") from None
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return model.to(device), tokenizer


def _code_refused(exc: BaseException) -> str:
    """``exc`` in one line; a refusal to run a folder's own code said plainly."""
    text = str(exc)
    if "trust_remote_code" in text or "custom code" in text:
        return ("the folder asks to run its own Python code (an auto_map in its config or "
                "tokenizer_config.json), which losscraft never runs")
    return one_line(exc)


def freeze(model):
    """Put ``model`` in eval mode with every parameter frozen (for experts); returns it."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def check_same_vocab(policy_tokenizer, expert_tokenizer, expert_name: str) -> None:
    """Raise `ModelError` naming ``expert_name`` unless both tokenizers map the same tokens to the
    same ids (expert logits are compared with the policy's position by position, id by id)."""
    if policy_tokenizer is expert_tokenizer:
        return
    p_vocab, e_vocab = policy_tokenizer.get_vocab(), expert_tokenizer.get_vocab()
    if len(p_vocab) != len(e_vocab):
        raise ModelError(f"expert '{expert_name}': its vocabulary has {len(e_vocab)} tokens, the "
                         f"policy's {len(p_vocab)}; experts must share the policy's tokenizer")
    if p_vocab != e_vocab:
        diff = sorted(t for t in p_vocab if e_vocab.get(t) != p_vocab[t])[:3]
        raise ModelError(f"expert '{expert_name}': its tokenizer maps tokens to different ids "
                         f"than the policy's (e.g. {diff}); experts must share the policy's "
                         "tokenizer")


def check_model_path(path: str, param: str) -> None:
    """Construction-time check of a ``path`` parameter: a local folder must exist; a hub id
    (``name`` or ``org/name``) is checked when loading."""
    if not path or not str(path).strip():
        raise RecipeError(f"'{param}' must be a local model folder or a hub id", key=param)
    if looks_like_local_path(path) and not Path(path).expanduser().is_dir():
        raise RecipeError(f"model folder {path} does not exist", key=param)


def pretrained_source(path: str, param: str) -> tuple[str, bool]:
    """``(name_or_folder, local_files_only)`` for ``from_pretrained``. Hub ids are read from the
    local cache only when the hub is offline or unreachable; `load_with_hub_check` turns the
    resulting miss into an `OfflineError` naming ``param``."""
    if looks_like_local_path(path):
        return str(Path(path).expanduser()), True
    return str(path), hub_offline() or not hub_reachable()


def load_with_hub_check(loader, path: str, param: str, what: str):
    """Call ``loader(name, local_files_only)``; a hub id missing from the cache while offline
    raises `OfflineError` (pass a local folder), any other failure `ModelError`."""
    name, cached_only = pretrained_source(path, param)
    try:
        return loader(name, cached_only)
    except (OSError, ValueError) as e:
        if cached_only and not looks_like_local_path(path):
            why = "the hub is offline (HF_HUB_OFFLINE)" if hub_offline() else \
                "the hub is unreachable"
            raise offline_error(name, param, why) from e
        raise ModelError(f"parameter '{param}': cannot load {what} from {name!r}: {e}") from e
