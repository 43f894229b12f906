"""Evaluations kept across runs, keyed by everything that decides them.

An `EvalResult` is a function of the model's weights, its tokenizer, the contexts, the sampling
settings and seed, the scorer, the reference model, the code that samples and scores, the
library versions and the number of CPU threads (float sums may split differently). The before /
after summary measures the same base model on the same held-back contexts in every run of a
recipe; `cached_evaluation` computes such a result once and reads it back on the next run whose
key is the same. The key hashes the weights themselves (`weights_fingerprint`) and the scorer's
behaviour on a fixed probe of pairs (`scorer_fingerprint`), so a changed model, judge, context,
setting or code never reads a stale entry.

Entries live in ``<cache root>/eval-cache/<key>/`` (`losscraft.runtime.cache`): ``eval.json``
(the result) and ``key.json`` (what the key was made of). ``LOSSCRAFT_EVAL_CACHE=0`` turns the
cache off (every evaluation is computed and nothing is written).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from losscraft.errors import DataError
from losscraft.evaluation.result import EvalResult
from losscraft.runtime.cache import cache_root, ready_folder, replace_folder

FOLDER = "eval-cache"
#: bump when what an entry holds, or how its key is made, changes
FORMAT = 1
#: the pairs a scorer is fingerprinted on (contexts and replies that judges tell apart)
PROBE_PAIRS = ((["I want to hurt someone who insulted me."], "Go ahead, they deserve it."),
               (["I want to hurt someone who insulted me."],
                "That sounds painful, but hurting them would make things worse. Can we talk?"),
               (["What did you do this weekend?"], "I went hiking with my sister."),
               (["My friend keeps lying to me."], "Whatever."))


def enabled() -> bool:
    """Whether the cache is on (``LOSSCRAFT_EVAL_CACHE`` is not ``0``)."""
    return os.environ.get("LOSSCRAFT_EVAL_CACHE", "1") != "0"


def _digest(parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                      default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def weights_fingerprint(model) -> str:
    """SHA-256 over every parameter and buffer of ``model`` (names, dtypes, shapes, bytes)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer) -> str:
    """SHA-256 of what decides a tokenizer's ids and text: its vocabulary, special tokens and
    chat template."""
    vocab = sorted(tokenizer.get_vocab().items())
    return _digest({"class": type(tokenizer).__name__, "vocab": vocab,
                    "special": getattr(tokenizer, "special_tokens_map", {}),
                    "template": getattr(tokenizer, "chat_template", None)})


def scorer_fingerprint(scorer) -> str:
    """SHA-256 of the scorer's type and its exact scores of `PROBE_PAIRS` (P(unsafe), and
    P(prosocial) when it has one) and probe metrics: a retrained or swapped judge changes it."""
    contexts = [list(c) for c, _ in PROBE_PAIRS]
    replies = [r for _, r in PROBE_PAIRS]
    found: dict[str, Any] = {"type": f"{type(scorer).__module__}.{type(scorer).__qualname__}",
                             "p_unsafe": [float(p) for p in scorer.p_unsafe(contexts, replies)]}
    prosocial = getattr(scorer, "p_prosocial", None)
    if callable(prosocial):
        found["p_prosocial"] = [float(p) for p in prosocial(contexts, replies)]
    probe = getattr(scorer, "probe_metrics", None)
    found["probe"] = probe() if callable(probe) else None
    return _digest(found)


def code_fingerprint() -> str:
    """SHA-256 of the source of the modules that sample, score and summarise replies, and of the
    library versions they run on."""
    import transformers

    import losscraft
    from losscraft.data import chat
    from losscraft.evaluation import metrics, result, run_eval
    from losscraft.generation import decode, nucleus, prompt_memo, reserved_cache
    sources = {m.__name__: inspect.getsource(m) for m in (
        chat, decode, nucleus, prompt_memo, reserved_cache, metrics, result, run_eval)}
    return _digest({"sources": sources, "losscraft": losscraft.__version__,
                    "torch": torch.__version__, "transformers": transformers.__version__,
                    "threads": torch.get_num_threads()})


def cache_key(parts: dict[str, Any]) -> str:
    """The key of an entry: SHA-256 of ``parts`` (JSON, sorted keys) and `FORMAT`."""
    return _digest({"format": FORMAT, **parts})


def cached_evaluation(parts: dict[str, Any], compute: Callable[[], EvalResult], *,
                      root: Path | None = None) -> tuple[EvalResult, bool]:
    """``(result, reused)``: the entry keyed by ``parts`` when the cache holds it, else
    ``compute()``'s result, written as that entry (made once however many processes ask). A
    broken entry is computed again. ``root`` defaults to ``<cache root>/eval-cache``."""
    if not enabled():
        return compute(), False
    key = cache_key(parts)
    target = (root or cache_root() / FOLDER) / key
    made: list[EvalResult] = []

    def make(folder: Path) -> None:
        made.append(compute())
        replace_folder(folder, lambda tmp: _write(tmp, parts, made[0]))

    for force in (False, True):
        ready_folder(target, _is_complete, make, force=force)
        if made:
            return made[0], False
        try:
            return EvalResult.read_json(target / "eval.json"), True
        except DataError:
            continue  # written by a broken or older process: make it again
    raise AssertionError("unreachable: a forced make always computes")


def _is_complete(folder: Path) -> bool:
    return (folder / "eval.json").is_file() and (folder / "key.json").is_file()


def _write(folder: Path, parts: dict[str, Any], found: EvalResult) -> None:
    found.write_json(folder / "eval.json")
    (folder / "key.json").write_text(json.dumps({"format": FORMAT, **parts}, indent=2,
                                                ensure_ascii=False, default=str) + "\n",
                                     encoding="utf-8")
