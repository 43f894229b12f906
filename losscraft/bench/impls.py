"""What `losscraft bench` can run: every objective in the plugin registry, in its variants.

For each registered objective (built-in or third-party, found through
`losscraft.plugins.registry.get_registry`) built with its default parameters:

- ``NAME:plugin`` — the objective as registered (for ``safety_loss`` this is the chunked JS);
- ``NAME:fused`` — when its factory takes ``fused``: built with ``fused=True`` (``--input hidden``);
- ``NAME:naive`` — when `losscraft.bench.reference.NAIVE` has a textbook reference for it;
- ``safety_loss:liger`` / ``safety_loss:liger_fused`` — Liger-Kernel's JSD, only where
  ``liger_kernel`` imports and the point is on CUDA.

Plus the bench-only ``js:naive`` / ``js:chunked`` / ``js:fused`` (policy vs ``--experts`` K
experts). An objective that cannot be built with default parameters, or cannot run on a
synthetic context, shows up as a row with its error instead of stopping the grid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from losscraft.bench import peers as peers_mod
from losscraft.bench import reference
from losscraft.bench.grid import BenchError, Point
from losscraft.bench.inputs import BenchInputs, SyntheticContext
from losscraft.core.loss import loss_experts, loss_requires
from losscraft.errors import did_you_mean
from losscraft.plugins.params import check_params
from losscraft.plugins.signatures import accepts


@dataclass
class Impl:
    """One benchmarkable implementation.

    Attributes:
        name: ``objective:variant``.
        objective: registry name (or ``"js"``).
        variant: ``naive``, ``plugin``, ``fused``, ``chunked``, ``liger``, ``liger_fused``.
        build: returns the loss callable (``ctx → LossOutput``) for a point.
        inputs: input kinds it accepts.
        devices: device types it runs on.
        negatives: its batches pack negatives.
        plugin: the plugin that registered the objective (``""`` for bench-only heads).
        error: why it cannot run at all (e.g. no default parameters).
    """

    name: str
    objective: str
    variant: str
    build: Callable[[Point], Callable]
    inputs: tuple[str, ...] = ("logits", "hidden")
    devices: tuple[str, ...] = ("cpu", "cuda")
    negatives: bool = False
    plugin: str = ""
    error: str | None = None
    reference: str | None = None  # the impl whose float64 result is the correctness reference
    warm_full: bool = False  # compiles on first use: warm up at the point's shape before memory

    def unavailable(self, point: Point) -> str | None:
        """Why this implementation does not run at ``point`` (``None``: it does)."""
        if self.error:
            return self.error
        if point.input not in self.inputs:
            return f"needs --input {'/'.join(self.inputs)}"
        if torch.device(point.device).type not in self.devices:
            return f"runs on {'/'.join(self.devices)} only"
        return None

    def expert_names(self, point: Point) -> tuple[str, ...]:
        return tuple(loss_experts(self.build(point)))

    def runner(self, point: Point) -> Callable[[BenchInputs], torch.Tensor]:
        """``inputs → loss value`` (a fresh context per call, like one training micro-batch)."""
        loss = self.build(point)

        def run(inputs: BenchInputs) -> torch.Tensor:
            return loss(SyntheticContext(inputs)).value

        return run


def _js_names(point: Point) -> tuple[str, ...]:
    return tuple(f"expert{k}" for k in range(point.experts))


def _param_error(name: str, exc: Exception) -> str:
    return f"cannot build with --param {name}.*: {exc}"


def _build_factory(comp, params: dict) -> Callable:
    """The factory bound to ``params`` (checked against its annotations)."""
    if params:
        check_params(comp.factory, params)
    return lambda **extra: comp.factory(**params, **extra)


def check_param_names(registry, params: dict[str, dict]) -> None:
    """Raise `BenchError` for a ``--param`` naming no registered objective."""
    known = registry.names("objective")
    for name in params:
        if name not in known:
            raise BenchError(f"--param {name}.…: no objective {name!r}"
                             f"{did_you_mean(name, known)}")


def discover(registry, params: dict[str, dict] | None = None, *, peers: bool = False
             ) -> list[Impl]:
    """Every implementation the registry's objectives (and the bench-only heads) provide;
    ``params[objective]`` are keyword arguments for its factory (``--param``), ``peers`` adds
    the installed peer libraries (`losscraft.bench.peers`)."""
    params = params or {}
    check_param_names(registry, params)
    impls: list[Impl] = []
    for name in registry.names("objective"):
        comp = registry.get("objective", name)
        given = params.get(name, {})
        try:
            factory = _build_factory(comp, given)
            sample = factory()
        except Exception as exc:  # noqa: BLE001 - reported in the table, the grid goes on
            why = (_param_error(name, exc) if given
                   else f"cannot build with default parameters: {exc} (give --param "
                        f"{name}.KEY=VALUE)")
            impls.append(Impl(f"{name}:plugin", name, "plugin", lambda p: None, plugin=comp.plugin,
                              error=why))
            continue
        negatives = "negatives" in loss_requires(sample)
        kinds = ("hidden",) if "hidden_states" in loss_requires(sample) else ("logits", "hidden")
        has_naive = name in reference.NAIVE
        # without a textbook reference, an objective is checked against itself in float64
        ref = f"{name}:naive" if has_naive else f"{name}:plugin"
        impls.append(Impl(f"{name}:plugin", name, "plugin", lambda p, f=factory: f(),
                          inputs=kinds, negatives=negatives, plugin=comp.plugin, reference=ref))
        if accepts(comp.factory, "fused") and "fused" not in given:
            impls.append(Impl(f"{name}:fused", name, "fused",
                              lambda p, f=factory: f(fused=True), inputs=("hidden",),
                              negatives=negatives, plugin=comp.plugin, reference=ref,
                              warm_full=True))
        if has_naive:
            try:
                reference.NAIVE[name](sample)
            except ValueError as exc:
                impls.append(Impl(f"{name}:naive", name, "naive", lambda p: None,
                                  plugin=comp.plugin, error=str(exc)))
            else:
                impls.append(Impl(f"{name}:naive", name, "naive",
                                  lambda p, f=factory, n=name: reference.NAIVE[n](f()),
                                  inputs=kinds, negatives=negatives, plugin=comp.plugin,
                                  reference=ref))
        if name == "safety_loss" and reference.liger_available():
            for variant, fused in (("liger", False), ("liger_fused", True)):
                impls.append(Impl(
                    f"{name}:{variant}", name, variant,
                    lambda p, f=factory, fu=fused: reference.LigerSafetyLoss(f(), fused=fu),
                    inputs=("hidden",) if fused else ("logits", "hidden"), devices=("cuda",),
                    plugin=comp.plugin, reference=ref))
    for variant in ("naive", "chunked", "fused"):
        impls.append(Impl(f"js:{variant}", "js", variant,
                          lambda p, v=variant: reference.JSHead(v, _js_names(p)),
                          inputs=("hidden",) if variant == "fused" else ("logits", "hidden"),
                          reference="js:naive", warm_full=variant == "fused"))
    return impls + (peer_impls() if peers else [])


def peer_impls() -> list[Impl]:
    """The installed peers of `losscraft.bench.peers`, and the n-pair head they are compared
    with (``npair:losscraft``)."""
    out = []
    if peers_mod.installed("liger"):
        for variant, compiled in (("liger", True), ("liger_eager", False)):
            out.append(Impl(f"js:{variant}", "js", variant,
                            lambda p, c=compiled: peers_mod.LigerChunkedJS(_js_names(p),
                                                                           compiled=c),
                            inputs=("hidden",), reference="js:naive", plugin="liger-kernel",
                            warm_full=compiled))
    if peers_mod.installed("trl"):
        out.append(Impl("js:trl", "js", "trl", lambda p: peers_mod.TrlJS(_js_names(p)),
                        reference="js:naive", plugin="trl"))
    out.append(Impl("npair:losscraft", "npair", "losscraft",
                    lambda p: peers_mod.NPairHead("losscraft"), inputs=("hidden",),
                    reference="npair:losscraft"))
    if peers_mod.installed("pml"):
        out.append(Impl("npair:pml", "npair", "pml", lambda p: peers_mod.NPairHead("pml"),
                        inputs=("hidden",), reference="npair:losscraft",
                        plugin="pytorch-metric-learning"))
    return out


def select(impls: list[Impl], patterns: tuple[str, ...] | None) -> list[Impl]:
    """The implementations named by ``patterns``: ``objective`` (all its variants),
    ``objective:variant``, or ``:variant`` (that variant of every objective). Unknown names
    raise `BenchError` with the known ones."""
    if not patterns:
        return list(impls)
    chosen: list[Impl] = []
    for pat in patterns:
        if pat.startswith(":"):
            hits = [i for i in impls if i.variant == pat[1:]]
        elif ":" in pat:
            hits = [i for i in impls if i.name == pat]
        else:
            hits = [i for i in impls if i.objective == pat]
        if not hits:
            known = sorted({i.name for i in impls} | {i.objective for i in impls})
            raise BenchError(f"no benchmark implementation matches {pat!r}"
                             f"{did_you_mean(pat, known)} (known: {', '.join(known)})")
        chosen += [h for h in hits if h not in chosen]
    return chosen

