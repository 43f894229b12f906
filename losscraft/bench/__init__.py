"""``losscraft bench``: loss-head microbenchmarks (time, tokens/s, peak memory, correctness) over
a grid of shapes for every objective in the plugin registry, and full optimizer-step costs.

Modules: `grid` (points), `inputs` (synthetic batches and the `SyntheticContext` objectives run
on), `impls` (what is benchmarked: registry objectives and their naive / plugin / fused
variants), `reference` (naive heads, the bench-only ``js`` head, Liger-Kernel), `measure`
(timing, peak memory, correctness), `memory` (the per-point CPU memory subprocess), `runner`
(grids and ``--compare``), `report` (table, JSON, CSV), `fullstep` (``--full-step``: its
configurations and model in `step_setup`, one timed step in `step_timing`), `cli`.
"""
