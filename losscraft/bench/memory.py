"""``python -m losscraft.bench.memory SPEC``: one CPU peak-memory measurement in a fresh process.

SPEC is JSON: ``{"point": {...Point fields}, "impl": "objective:variant", "seed": 0,
"plugins": [["name", "importable.module"], ...], "discover": {"params": ..., "peers": ...}}``
(the arguments of `losscraft.bench.impls.discover`; plugins registered from code in the parent,
e.g. a test's, are registered again here). Prints ``{"peak_bytes": N, "input_bytes": M}``.
See `losscraft.bench.measure` for how the peak is taken.
"""

from __future__ import annotations

import importlib
import json
import sys


def main(argv: list[str]) -> int:
    from losscraft.bench.grid import Point
    from losscraft.bench.impls import discover, select
    from losscraft.bench.inputs import make_inputs
    from losscraft.bench.measure import cpu_peak_bytes, one_step
    from losscraft.plugins.registry import get_registry

    spec = json.loads(argv[0])
    registry = get_registry()
    for name, module in spec.get("plugins", []):
        if name not in registry.plugins:
            registry.add_plugin(importlib.import_module(module), name)
    point = Point(**spec["point"])
    (impl,) = select(discover(registry, **spec.get("discover", {})), (spec["impl"],))
    run = impl.runner(point)
    names = impl.expert_names(point)
    # Warm the code paths up on a tiny shape of the same kind, then build the real inputs.
    tiny = Point(**{**spec["point"], "tokens": 4, "vocab": min(point.vocab, 64),
                    "hidden": min(point.hidden, 16)})
    one_step(run, make_inputs(tiny, expert_names=names, negatives=impl.negatives))
    inputs = make_inputs(point, expert_names=names, negatives=impl.negatives,
                         seed=spec.get("seed", 0))
    if impl.warm_full:  # compiled on first use at this shape: the compiler is not the head
        one_step(run, inputs)
    peak = cpu_peak_bytes(run, inputs)
    print(json.dumps({"peak_bytes": peak, "input_bytes": inputs.nbytes()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
