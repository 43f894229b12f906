"""`train_classifier`: load pairs, split, train, measure on the held-out pairs, save.

Writes to ``run.output_dir``: ``final/`` (model + tokenizer via ``save_pretrained``: load it with
the ``hf_classifier`` scorer, ``path = "<output_dir>/final"``), ``metrics.json`` (held-out
accuracy, unsafe-class F1/precision/recall, the majority-class baseline, counts, settings),
``heldout_predictions.jsonl`` (one line per held-out pair with its P(unsafe)) and ``recipe.json``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from rich.console import Console
from transformers import set_seed

from losscraft.classifier.data import load_pairs, split_pairs
from losscraft.classifier.encoder import encoder_source, load_encoder_classifier
from losscraft.classifier.fit import class_weights, fit, predict, total_steps
from losscraft.classifier.metrics import binary_metrics, metrics_table
from losscraft.classifier.schema import ClassifierRecipe
from losscraft.errors import LosscraftError, RecipeError
from losscraft.plugins import Registry, get_registry
from losscraft.device import resolve_device
from losscraft.trainer.progress import training_progress
from losscraft.types import Example


@dataclass
class ClassifierResult:
    """Where a classifier run wrote its model and metrics, and the metrics themselves."""

    output_dir: Path
    final_model: Path
    metrics_path: Path
    metrics: dict


#: What a run writes into its output folder (and all that --overwrite removes).
OUTPUTS = ("final", "metrics.json", "heldout_predictions.jsonl", "recipe.json")


def _prepare_output(out: Path, overwrite: bool) -> None:
    if (out / "final").exists() or (out / "metrics.json").exists():
        if not overwrite:
            raise LosscraftError(f"output folder {out} already holds a classifier; pass "
                                 "--overwrite to replace it, or --set run.output_dir=... for a "
                                 "new one")
        for name in OUTPUTS:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def _datasets(recipe: ClassifierRecipe, registry: Registry) -> tuple[list[Example], list[Example]]:
    pairs = load_pairs(recipe.data, recipe.path, registry, "data")
    if recipe.eval_data:
        return pairs, load_pairs(recipe.eval_data, recipe.path, registry, "eval_data")
    train, held_out = split_pairs(pairs, recipe.split, recipe.run.seed)
    if not held_out or not train:
        raise RecipeError(f"holding out {recipe.split.fraction:.0%} by {recipe.split.by} leaves "
                          f"{len(train)} training and {len(held_out)} held-out pairs; change the "
                          "fraction or use split.by = \"example\"", file=recipe.path,
                          key="split.fraction")
    return train, held_out


def _by_source(examples: list[Example], probs: list[float]) -> dict:
    out = {}
    for source in sorted({ex.source for ex in examples}):
        idx = [i for i, ex in enumerate(examples) if ex.source == source]
        m = binary_metrics([not examples[i].is_safe for i in idx], [probs[i] for i in idx])
        out[source] = {k: m[k] for k in ("accuracy", "majority_baseline_accuracy", "f1", "n",
                                         "n_unsafe")}
    return out


def _scorer_params(recipe: ClassifierRecipe, final: Path) -> dict:
    c = recipe.classifier
    params = {"plugin": "hf_classifier", "path": str(final), "unsafe_index": c.unsafe_index,
              "pair_input": c.pair_input, "max_length": c.max_length}
    return {**params, "turn_separator": c.turn_separator} if c.turn_separator else params


def train_classifier(recipe: ClassifierRecipe, *, registry: Registry | None = None,
                     console: Console | None = None, show_progress: bool = True,
                     overwrite: bool = False) -> ClassifierResult:
    """Train the recipe's classifier and report held-out metrics (see the module doc)."""
    from transformers.utils import logging as hf_logging

    began = time.perf_counter()
    hf_logging.disable_progress_bar()
    console = console or Console(stderr=True)
    run, spec, train_spec = recipe.run, recipe.classifier, recipe.train
    out = Path(run.output_dir)
    device = resolve_device(run.device)
    _prepare_output(out, overwrite)
    (out / "recipe.json").write_text(json.dumps(recipe.raw, indent=2, default=str))
    if run.threads:
        torch.set_num_threads(run.threads)
    set_seed(run.seed)
    train, held_out = _datasets(recipe, registry or get_registry())
    weights = class_weights(train, spec.unsafe_index) if train_spec.class_balanced else None
    tokenizer, model = load_encoder_classifier(spec)
    model.to(device)
    if spec.freeze_encoder:
        model.base_model.requires_grad_(False)
    steps = total_steps(train_spec, len(train))
    with training_progress(console, disable=not show_progress) as progress:
        task = progress.add_task("classifier", total=steps, loss="-", tps="-")
        losses = fit(model, tokenizer, train, spec, train_spec, steps=steps, seed=run.seed,
                     device=device, loss_weights=weights,
                     on_step=lambda s, loss, tps: progress.update(
                         task, completed=s, loss=f"{loss:.4f}", tps=f"{tps:.0f}"))
    probs = predict(model, tokenizer, held_out, spec, batch_size=train_spec.eval_batch_size,
                    device=device)
    final = out / "final"
    model.save_pretrained(final)
    tokenizer.save_pretrained(final)
    held = binary_metrics([not ex.is_safe for ex in held_out], probs)
    with open(out / "heldout_predictions.jsonl", "w", encoding="utf-8") as f:
        for ex, p in zip(held_out, probs):
            f.write(json.dumps({"id": ex.id, "source": ex.source, "history": ex.history,
                                "response": ex.response, "is_safe": ex.is_safe,
                                "p_unsafe": p}) + "\n")
    metrics = {
        "heldout": held, "heldout_by_source": _by_source(held_out, probs),
        "train": {"n": len(train), "n_unsafe": sum(not ex.is_safe for ex in train),
                  "by_source": dict(Counter(ex.source for ex in train)), "steps": steps,
                  "loss_first": losses[0], "loss_last10": sum(losses[-10:]) / len(losses[-10:]),
                  "class_weights": weights.tolist() if weights is not None else None},
        "settings": {"encoder": spec.encoder, "encoder_source": encoder_source(spec),
                     "classifier": asdict(spec), "train": asdict(train_spec),
                     "split": asdict(recipe.split) if recipe.split else "eval_data",
                     "seed": run.seed, "device": device},
        "scorer": _scorer_params(recipe, final),
        "wall_seconds": round(time.perf_counter() - began, 1)}
    metrics_path = out / "metrics.json"
    metrics_path.write_text(json.dumps(metrics, indent=2))
    console.print(metrics_table(held))
    return ClassifierResult(out, final, metrics_path, metrics)
