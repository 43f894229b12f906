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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from rich.console import Console
from transformers import set_seed

from losscraft.errors import LosscraftError, RecipeError
from losscraft.judge.data import load_pairs, split_pairs
from losscraft.judge.encoder import encoder_source, label_names, load_encoder_classifier
from losscraft.judge.fit import (PROSOCIAL, allowed_labels, class_weights, fit, labels,
                                 partial_label_loss, predict_probs, total_steps)
from losscraft.judge.metrics import binary_metrics, metrics_table, prosocial_metrics
from losscraft.judge.probe import load_probe, probe_examples, probe_metrics, probe_table
from losscraft.judge.surface import fit_surface_floor
from losscraft.plugins.registry import Registry, get_registry
from losscraft.recipe.schema import ClassifierRecipe, ClassifierSpec
from losscraft.runtime.device import resolve_device
from losscraft.trainer.progress import training_progress
from losscraft.types import Example


@dataclass
class ClassifierResult:
    """Where a classifier run wrote its model and metrics, and the metrics themselves."""

    output_dir: Path
    final_model: Path
    metrics_path: Path
    metrics: dict


#: where a LoRA-trained classifier's adapter (small, shippable) is saved beside ``final/``
ADAPTER_FOLDER = "adapter"
#: What a run writes into its output folder (and all that --overwrite removes).
OUTPUTS = ("final", ADAPTER_FOLDER, "metrics.json", "heldout_predictions.jsonl", "recipe.json")


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


def probe_judge(predict: Callable[[list[Example]], torch.Tensor], spec: ClassifierSpec) -> dict:
    """Metrics of a trained classifier on the shipped judge probe set (`losscraft.judge.probe`);
    ``predict`` maps examples to ``(N, num_labels)`` probabilities."""
    pairs = load_probe()
    probs = predict(probe_examples(pairs))
    return probe_metrics(pairs, probs[:, spec.unsafe_index].tolist(),
                         probs[:, PROSOCIAL].tolist() if spec.prosocial_head else None)


def measure_probe(model, tokenizer, spec: ClassifierSpec, batch_size: int,
                  device: str = "cpu") -> dict:
    """`probe_judge` of a loaded sequence classifier."""
    return probe_judge(lambda exs: predict_probs(model, tokenizer, exs, spec,
                                                 batch_size=batch_size, device=device), spec)


def _fit(spec: ClassifierSpec, train_spec, train: list[Example], *, steps: int, seed: int,
         device: str, weights, on_step):
    """Train the recipe's architecture; returns ``(predict, save, losses)`` where
    ``predict(examples)`` gives label probabilities and ``save(folder)`` writes the model."""
    if spec.architecture == "embedding_pair":
        from losscraft.judge.embedding_pair import fit_pair_head

        sample_weights = weights[labels(train, spec.unsafe_index)] if weights is not None else None
        model, losses = fit_pair_head(
            train, label_names(spec), encoder=spec.encoder, context_turns=spec.context_turns,
            allowed=allowed_labels(train, spec), sample_weights=sample_weights,
            epochs=train_spec.epochs, batch_size=train_spec.batch_size, lr=train_spec.lr,
            weight_decay=train_spec.weight_decay, seed=seed, on_step=on_step,
            total_steps=steps, loss_fn=partial_label_loss)
        return (lambda exs: model.probs([e.history for e in exs], [e.response for e in exs]),
                model.save, losses)
    tokenizer, model = load_encoder_classifier(spec)
    if spec.lora_r:
        from losscraft.judge.adapter import add_lora

        model = add_lora(model, spec)
    model.to(device)
    if spec.freeze_encoder:
        model.base_model.requires_grad_(False)
    losses = fit(model, tokenizer, train, spec, train_spec, steps=steps, seed=seed,
                 device=device, loss_weights=weights, on_step=on_step)

    def save(folder: Path) -> None:
        if spec.lora_r:
            from losscraft.judge.adapter import save_adapter

            save_adapter(model, folder.parent / ADAPTER_FOLDER)
            model.merge_and_unload().save_pretrained(folder)
        else:
            model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    return (lambda exs: predict_probs(model, tokenizer, exs, spec,
                                      batch_size=train_spec.eval_batch_size, device=device),
            save, losses)


def _encoding(spec: ClassifierSpec) -> dict:
    """How pairs were encoded; the ``safety_judge`` scorer reads it back from metrics.json."""
    return {"pair_input": spec.pair_input, "max_length": spec.max_length,
            "turn_separator": spec.turn_separator or None}


def _scorer_params(recipe: ClassifierRecipe, final: Path) -> dict:
    """The ``[scorer]`` table that loads the result: ``safety_judge`` for a three-label judge
    (it reads the encoding from metrics.json), else ``hf_classifier`` with the encoding."""
    c = recipe.classifier
    if c.prosocial_head:
        return {"plugin": "safety_judge", "path": str(final)}
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
    steps = total_steps(train_spec, len(train))
    with training_progress(console, disable=not show_progress) as progress:
        task = progress.add_task("classifier", total=steps, loss="-", tps="-")

        def on_step(step: int, loss: float, tps: float) -> None:
            progress.update(task, completed=step, loss=f"{loss:.4f}", tps=f"{tps:.0f}")

        predict, save, losses = _fit(spec, train_spec, train, steps=steps, seed=run.seed,
                                     device=device, weights=weights, on_step=on_step)
    label_probs = predict(held_out)
    probs = label_probs[:, spec.unsafe_index].tolist()
    p_prosocial = label_probs[:, PROSOCIAL].tolist() if spec.prosocial_head else None
    final = out / "final"
    save(final)
    held = binary_metrics([not ex.is_safe for ex in held_out], probs)
    with open(out / "heldout_predictions.jsonl", "w", encoding="utf-8") as f:
        for i, (ex, p) in enumerate(zip(held_out, probs)):
            row = {"id": ex.id, "source": ex.source, "history": ex.history,
                   "response": ex.response, "is_safe": ex.is_safe, "p_unsafe": p}
            if p_prosocial is not None:
                row.update(is_prosocial=ex.is_prosocial, p_prosocial=p_prosocial[i])
            f.write(json.dumps(row) + "\n")
    probe = probe_judge(predict, spec)
    metrics = {
        "heldout": held, "heldout_by_source": _by_source(held_out, probs),
        "heldout_prosocial": (prosocial_metrics([ex.is_prosocial for ex in held_out], p_prosocial)
                              if p_prosocial is not None else None),
        "probe": probe,
        "surface_floor": json.loads(fit_surface_floor(train).to_json())
        if spec.prosocial_head else None,
        "train": {"n": len(train), "n_unsafe": sum(not ex.is_safe for ex in train),
                  "by_source": dict(Counter(ex.source for ex in train)), "steps": steps,
                  "loss_first": losses[0], "loss_last10": sum(losses[-10:]) / len(losses[-10:]),
                  "class_weights": weights.tolist() if weights is not None else None},
        "settings": {"encoder": spec.encoder, "encoder_source": encoder_source(spec),
                     "classifier": asdict(spec), "train": asdict(train_spec),
                     "split": asdict(recipe.split) if recipe.split else "eval_data",
                     "seed": run.seed, "device": device},
        "scorer": _scorer_params(recipe, final), "encoding": _encoding(spec),
        "wall_seconds": round(time.perf_counter() - began, 1)}
    metrics_path = out / "metrics.json"
    metrics_path.write_text(json.dumps(metrics, indent=2))
    console.print(metrics_table(held))
    console.print(probe_table(probe))
    return ClassifierResult(out, final, metrics_path, metrics)
