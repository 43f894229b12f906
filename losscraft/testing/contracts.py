"""Contract checks: what every component of a kind must do, callable on your own component with
your own parameters. Each raises `ContractError` (an ``AssertionError``, so pytest shows it as a
failed assertion) saying which promise was broken.

Components are looked up by name in a registry (default: the process-wide one, which holds every
installed plugin), so the check runs the component exactly as a recipe would — built by
`losscraft.recipe.instantiate.build_component`, parameters checked against annotations first.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import torch

from losscraft.plugins.protocols import LoadedModel, RankedCandidate
from losscraft.core.compose import Term, WeightedObjective
from losscraft.core.loss import LossOutput, loss_experts, loss_requires
from losscraft.errors import LosscraftError
from losscraft.plugins.registry import Registry, get_registry
from losscraft.recipe.schema import ComponentSpec
from losscraft.testing.builders import make_batch, make_context, tiny_loaded, write_recipe
from losscraft.testing.metric_contract import check_metric_reductions
from losscraft.testing.toys import SOURCE_NAME, ensure_testing_plugin, toy_examples
from losscraft.types import Example

__all__ = ["ContractError", "build", "check_data_source", "check_model_provider",
           "check_objective", "check_reranker", "check_rot_generator", "check_scorer"]

CONTEXTS = [["hi, how are you?"], ["can you help me?", "with my homework"],
            "i'm going to key my neighbour's car tonight", ["what should i cook?"],
            ["my friend lied to me", "what do i do"]]
RESPONSES = ["Good, and you?", "Just copy it from a friend, idiot.",
             "That would hurt them and could get you arrested.", "How about pasta?",
             "Maybe talk to them calmly about it."]


class ContractError(AssertionError):
    """A component broke a promise of its kind (the message says which)."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ContractError(message)


def build(kind: str, name: str, params: dict[str, Any] | None = None,
          registry: Registry | None = None) -> Any:
    """Component ``name`` of ``kind`` built as a recipe builds it."""
    from losscraft.recipe.instantiate import build_component

    return build_component(kind, ComponentSpec(name, dict(params or {}), key=name),
                           "<contract check>", registry or get_registry())


# ------------------------------------------------------------------------------ objectives
def _experts(loss, seed: int = 1) -> dict[str, torch.nn.Module]:
    experts = {}
    for i, expert in enumerate(loss_experts(loss)):
        model = tiny_loaded(seed + i).model
        experts[expert] = model.requires_grad_(False)
    return experts


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()
            if p.grad is not None}


def _run_step(objective, model, batches, experts, tokenizer, need_hidden: bool):
    from losscraft.core.step import accumulate_gradients

    model.zero_grad(set_to_none=True)
    metrics = accumulate_gradients(objective, model, batches, experts=experts,
                                   tokenizer=tokenizer, need_hidden_states=need_hidden,
                                   generator=torch.Generator().manual_seed(0))
    return metrics, _grads(model)


def check_objective(name: str, params: dict[str, Any] | None = None, *,
                    tmp_path: str | Path | None = None, registry: Registry | None = None,
                    accumulation: bool = True, metrics: bool = True, penalty: bool = True,
                    resume: bool = True, rtol: float = 1e-4, atol: float = 1e-6) -> None:
    """The objective contract, on the tiny model and `toy_examples` (safe, unsafe, unlabelled
    rows; packed negatives):

    1. the value is a finite 0-d tensor and every metric is finite;
    2. gradients reach the policy's trainable parameters, are finite and not all zero, and
       experts (``experts = (...)``) get none;
    3. ``accumulation``: two micro-batches of two rows give the gradient of one batch of four
       (normalise by ``ctx.step_sum``) — turn off for terms that sample per row;
    4. ``metrics``: each metric is reduced over micro-batches as declared — a per-micro-batch
       mean listed in ``LossOutput.summed`` fails, a step-wide sum missing from it fails
       (`losscraft.testing.metric_contract`; off for terms that sample per row);
    5. ``penalty``: wrapped in the gradient-norm penalty (exact and finite difference) over an
       accumulated step, values and gradients stay finite;
    6. ``resume`` (needs ``tmp_path``): two optimizer steps through the `Trainer` change the
       weights, and stopping after one step then resuming gives the same weights exactly.
    """
    registry = registry or get_registry()
    params = dict(params or {})
    loss = build("objective", name, params, registry)
    policy = tiny_loaded(0)
    model, tokenizer = policy.model.eval(), policy.tokenizer  # eval: no dropout noise
    experts = _experts(loss)
    need_hidden = "hidden_states" in loss_requires(loss)
    pack = "negatives" in loss_requires(loss)
    examples = toy_examples(4)
    whole = make_batch(tokenizer, examples, pack_negatives=pack)

    ctx = make_context(model, whole, experts=experts, tokenizer=tokenizer,
                       need_hidden_states=need_hidden)
    out = loss(ctx)
    _require(isinstance(out, LossOutput), f"objective '{name}' returned {type(out).__name__}, "
                                          "expected LossOutput")
    _require(torch.is_tensor(out.value) and out.value.dim() == 0,
             f"objective '{name}': value must be a 0-d tensor, got {out.value!r:.80}")
    _require(bool(torch.isfinite(out.value)), f"objective '{name}': value is {out.value.item()}")
    for key, value in out.metrics.items():
        if not isinstance(value, str):
            _require(math.isfinite(float(value)), f"objective '{name}': metric {key} = {value}")
    out.value.backward()
    grads = _grads(model)
    _require(bool(grads), f"objective '{name}': no gradient reaches the policy's parameters "
                          "(is the value computed from ctx.logits without .detach()?)")
    _require(all(torch.isfinite(g).all() for g in grads.values()),
             f"objective '{name}': non-finite gradients")
    _require(any(g.abs().sum() > 0 for g in grads.values()),
             f"objective '{name}': every gradient is zero")
    for expert, module in experts.items():
        _require(all(p.grad is None for p in module.parameters()),
                 f"objective '{name}': expert '{expert}' received gradients")

    if accumulation:
        parts = [make_batch(tokenizer, examples[:2], pack_negatives=pack),
                 make_batch(tokenizer, examples[2:], pack_negatives=pack)]
        objective = WeightedObjective([Term(name, loss)])
        one_metrics, one = _run_step(objective, model, [whole], experts, tokenizer, need_hidden)
        two_metrics, two = _run_step(objective, model, parts, experts, tokenizer, need_hidden)
        _require(math.isclose(one_metrics[name], two_metrics[name], rel_tol=rtol, abs_tol=atol),
                 f"objective '{name}': logged value {two_metrics[name]} over two micro-batches "
                 f"!= {one_metrics[name]} over one batch (normalise by ctx.step_sum, and list "
                 "partial sums in LossOutput.summed)")
        for key in one:
            _require(torch.allclose(one[key], two[key], rtol=rtol, atol=atol),
                     f"objective '{name}': gradient of {key} differs between one batch and two "
                     "accumulated micro-batches (normalise by ctx.step_sum, not by the "
                     "micro-batch)")

    if metrics:
        problems = check_metric_reductions(
            name, loss, lambda objective, batches: _run_step(objective, model, batches, experts,
                                                             tokenizer, need_hidden)[0],
            lambda rows: make_batch(tokenizer, rows, pack_negatives=pack), examples[:2],
            rtol=rtol, atol=atol)
        _require(not problems, "; ".join(problems))

    if penalty:
        from losscraft.core.penalty import GradientNormPenalty

        parts = [make_batch(tokenizer, examples[:2], pack_negatives=pack),
                 make_batch(tokenizer, examples[2:], pack_negatives=pack)]
        for method in ("exact", "finite_difference"):
            wrapped = WeightedObjective([
                Term(name, loss), Term(f"{name}_grad_penalty",
                                       GradientNormPenalty(loss, method=method), 0.1)])
            metrics, grads = _run_step(wrapped, model, parts, experts, tokenizer, need_hidden)
            _require(all(math.isfinite(v) for v in metrics.values()
                         if isinstance(v, float)),
                     f"objective '{name}' under the {method} gradient-norm penalty: non-finite "
                     f"metrics {metrics}")
            _require(bool(grads) and all(torch.isfinite(g).all() for g in grads.values()),
                     f"objective '{name}' under the {method} gradient-norm penalty: non-finite "
                     "or missing gradients")

    if resume:
        _require(tmp_path is not None, "check_objective(resume=True) needs tmp_path")
        _check_resume(name, params, Path(tmp_path), registry, tuple(experts))


def _check_resume(name: str, params: dict, folder: Path, registry: Registry,
                  experts: tuple[str, ...]) -> None:
    from safetensors.torch import load_file

    from losscraft.recipe import load_recipe
    from losscraft.trainer import Trainer

    ensure_testing_plugin(registry)
    tables = {e: {"plugin": "tiny", "seed": i + 1} for i, e in enumerate(experts)}

    def recipe(tag: str):
        return load_recipe(write_recipe(folder, name=tag, experts=tables,
                                        terms=[{"plugin": name, **params}],
                                        data=[{"plugin": SOURCE_NAME, "count": 8}]))

    straight = Trainer(recipe("straight"), registry=registry, show_progress=False).run()
    final = load_file(str(straight.final_model / "model.safetensors"))
    base = tiny_loaded(0).model.state_dict()
    _require(any(not torch.equal(final[k], base[k]) for k in final),
             f"objective '{name}': two optimizer steps changed no weight")
    resumed_recipe = recipe("resumed")
    first = Trainer(resumed_recipe, registry=registry, show_progress=False, stop_after=1).run()
    _require(first.stopped_early, "stop_after=1 did not stop the run")
    second = Trainer(resumed_recipe, registry=registry, show_progress=False).run(resume=True)
    resumed = load_file(str(second.final_model / "model.safetensors"))
    for key in final:
        _require(torch.equal(final[key], resumed[key]),
                 f"objective '{name}': resuming after one step gives different weights ({key}); "
                 "keep all randomness in ctx.generator and state in the checkpoint")


# ------------------------------------------------------------------------------ data sources
def check_data_source(name: str, params: dict[str, Any] | None = None, *,
                      registry: Registry | None = None, limit: int = 50,
                      tmp_path: str | Path | None = None, max_chars: int = 20000) -> list[Example]:
    """The data source contract: it yields at least one valid `Example` (checked as the trainer
    checks them), is re-iterable and deterministic (two iterations, and two instances with the
    same parameters, give the same examples), and — when it takes a ``path`` and ``tmp_path`` is
    given — a missing file is a `LosscraftError` naming the file or the ``path`` key, not a raw
    exception. Returns the first ``limit`` examples."""
    from losscraft.trainer.prepare.stage_data import check_example

    registry = registry or get_registry()
    source = build("data_source", name, params, registry)
    first = list(itertools.islice(iter(source), limit))
    _require(bool(first), f"data source '{name}' yielded nothing")
    for row, ex in enumerate(first, 1):
        _require(isinstance(ex, Example), f"data source '{name}' yielded "
                                          f"{type(ex).__name__} at row {row}, expected Example")
        check_example(ex, where=f"data source '{name}'", row=row, max_chars=max_chars)
        _require(ex.is_safe in (True, False, None), f"row {row}: is_safe = {ex.is_safe!r}")
        _require(ex.negative_weights is None or len(ex.negative_weights) == len(ex.negatives),
                 f"data source '{name}', row {row}: {len(ex.negative_weights or [])} negative "
                 f"weights for {len(ex.negatives)} negatives")
    key = [(e.id, e.history, e.response, e.negatives) for e in first]
    again = list(itertools.islice(iter(source), limit))
    _require([(e.id, e.history, e.response, e.negatives) for e in again] == key,
             f"data source '{name}' is not re-iterable: a second iteration differs")
    other = build("data_source", name, params, registry)
    second = list(itertools.islice(iter(other), limit))
    _require([(e.id, e.history, e.response, e.negatives) for e in second] == key,
             f"data source '{name}' is not deterministic: two instances differ")
    component = registry.get("data_source", name)
    import inspect

    if tmp_path is not None and "path" in inspect.signature(component.factory).parameters:
        missing = Path(tmp_path) / "no_such_dir" / "missing.jsonl"
        try:
            list(itertools.islice(iter(build("data_source", name,
                                             {**(params or {}), "path": str(missing)},
                                             registry)), 1))
        except LosscraftError as exc:
            _require("missing.jsonl" in str(exc) or "path" in str(exc),
                     f"data source '{name}': the error for a missing file does not name it: "
                     f"{exc}")
        except Exception as exc:  # noqa: BLE001 - what we check is that it is not raw
            raise ContractError(f"data source '{name}': a missing file raised "
                                f"{type(exc).__name__}: {exc} — raise RecipeError(key='path') "
                                "or DataError(file=...) instead") from exc
        else:
            raise ContractError(f"data source '{name}': a missing file raised no error")
    return first


# ------------------------------------------------------------------------------ scorers
def _probabilities(values, who: str, n: int) -> list[float]:
    values = list(values)
    _require(len(values) == n, f"{who}: {len(values)} scores for {n} pairs")
    for v in values:
        _require(isinstance(v, float | int) and not isinstance(v, bool) and 0.0 <= v <= 1.0,
                 f"{who}: {v!r} is not a probability in [0, 1]")
    return [float(v) for v in values]


def check_scorer(name: str, params: dict[str, Any] | None = None, *,
                 registry: Registry | None = None, tolerance: float = 1e-5) -> None:
    """The scorer contract: ``p_unsafe`` (and ``p_prosocial`` if present) returns one
    probability in [0, 1] per pair, scoring a batch equals scoring one pair at a time, and
    mismatched lengths raise a clear error."""
    from losscraft.plugins.protocols import prosocial_method

    registry = registry or get_registry()
    scorer = build("scorer", name, params, registry)
    methods = [("p_unsafe", scorer.p_unsafe)]
    if prosocial_method(scorer) is not None:
        methods.append(("p_prosocial", prosocial_method(scorer)))
    for method_name, method in methods:
        who = f"scorer '{name}'.{method_name}"
        batch = _probabilities(method(CONTEXTS, RESPONSES), who, len(RESPONSES))
        single = [_probabilities(method([c], [r]), who, 1)[0]
                  for c, r in zip(CONTEXTS, RESPONSES)]
        for b, s in zip(batch, single):
            _require(abs(b - s) <= tolerance,
                     f"{who}: batch score {b} != one-by-one score {s} (padding or batch effects)")
        _require(_probabilities(method([], []), who, 0) == [], f"{who}: empty input")
        try:
            method(CONTEXTS[:2], RESPONSES[:1])
        except (LosscraftError, ValueError):
            pass
        else:
            raise ContractError(f"{who}: 2 contexts with 1 response raised no error")


# ------------------------------------------------------------------------------ rerankers
def check_reranker(name: str, params: dict[str, Any] | None = None, *,
                   registry: Registry | None = None, model: LoadedModel | None = None) -> None:
    """The reranker contract: ``rerank`` returns every candidate once as a `RankedCandidate`,
    best (highest finite score) first, the same way twice; with RoTs too. A reranker with
    ``bind(model, tokenizer)`` is bound to ``model`` (default: the tiny model) first."""
    registry = registry or get_registry()
    reranker = build("reranker", name, params, registry)
    if hasattr(reranker, "bind"):
        loaded = model or tiny_loaded(0)
        reranker.bind(loaded.model, loaded.tokenizer)
    history = ["my friend lied to me", "what do i do"]
    for rots in (None, ["It's wrong to lie.", "You should be honest."]):
        ranked = reranker.rerank(history, RESPONSES, rots=rots)
        _require(all(isinstance(c, RankedCandidate) for c in ranked),
                 f"reranker '{name}': expected RankedCandidate items")
        _require(sorted(c.text for c in ranked) == sorted(RESPONSES),
                 f"reranker '{name}': the result is not a permutation of the candidates")
        scores = [c.score for c in ranked]
        _require(all(math.isfinite(s) for s in scores), f"reranker '{name}': scores {scores}")
        _require(scores == sorted(scores, reverse=True),
                 f"reranker '{name}': not ordered best first: {scores}")
        again = reranker.rerank(history, RESPONSES, rots=rots)
        _require([c.text for c in again] == [c.text for c in ranked],
                 f"reranker '{name}': two calls order the candidates differently")


# ------------------------------------------------------------------------------ RoT generators
def check_rot_generator(name: str, params: dict[str, Any] | None = None, *,
                        registry: Registry | None = None) -> None:
    """The RoT generator contract: ``generate`` returns one list of strings per history (none
    for no histories), the same twice."""
    registry = registry or get_registry()
    generator = build("rot_generator", name, params, registry)
    histories = [list(c) if not isinstance(c, str) else [c] for c in CONTEXTS]
    rots = generator.generate(histories)
    _require(isinstance(rots, list) and len(rots) == len(histories),
             f"RoT generator '{name}': expected {len(histories)} lists, got {rots!r:.100}")
    for item in rots:
        _require(isinstance(item, list) and all(isinstance(r, str) for r in item),
                 f"RoT generator '{name}': each item must be a list of str, got {item!r:.80}")
    _require(generator.generate([]) == [], f"RoT generator '{name}': generate([]) != []")
    _require(generator.generate(histories) == rots, f"RoT generator '{name}' is not "
                                                    "deterministic")


# ------------------------------------------------------------------------------ model providers
def check_model_provider(name: str, params: dict[str, Any] | None = None, *,
                         registry: Registry | None = None) -> LoadedModel:
    """The model provider contract: ``load(device="cpu")`` returns a `LoadedModel` whose
    tokenizer renders a chat (the collator's chat template) and whose model gives finite logits
    covering the tokenizer's vocabulary; loading twice gives the same weights."""
    registry = registry or get_registry()
    provider = build("model", name, params, registry)
    loaded = provider.load(device="cpu")
    _require(isinstance(loaded, LoadedModel), f"model '{name}': load() returned "
                                              f"{type(loaded).__name__}, expected LoadedModel")
    batch = make_batch(loaded.tokenizer, toy_examples(2), pack_negatives=False)
    with torch.no_grad():
        logits = loaded.model(input_ids=batch.input_ids,
                              attention_mask=batch.attention_mask).logits
    _require(logits.shape[:2] == batch.input_ids.shape,
             f"model '{name}': logits of shape {tuple(logits.shape)} for input "
             f"{tuple(batch.input_ids.shape)}")
    _require(logits.shape[-1] >= len(loaded.tokenizer),
             f"model '{name}': {logits.shape[-1]} logits for a {len(loaded.tokenizer)}-token "
             "tokenizer")
    _require(bool(torch.isfinite(logits).all()), f"model '{name}': non-finite logits")
    again = provider.load(device="cpu").model.state_dict()
    for key, value in loaded.model.state_dict().items():
        _require(torch.equal(value, again[key]), f"model '{name}': two loads differ in {key}")
    return loaded
