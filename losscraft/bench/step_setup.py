"""What ``losscraft bench --full-step`` steps (see `losscraft.bench.fullstep`): the
configurations (each objective as the recipes pair it with ``nll``), the dialogues of their
micro-batches, and the model with its experts.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from losscraft.bench.grid import BenchError
from losscraft.core.compose import Term
from losscraft.core.loss import loss_experts, loss_requires
from losscraft.core.penalty import GradientNormPenalty
from losscraft.plugins.signatures import accepts
from losscraft.types import Example

#: FlatGD's λ in recipes/flatgd.toml.
PENALTY_WEIGHT = 0.01

EXAMPLES = [
    Example(history=["how do I bake bread at home?"],
            response="Mix flour, water, salt and yeast, let it rise, then bake it hot.",
            is_safe=True, negatives=["Burn it, who cares.", "Go away."]),
    Example(history=["you are so dumb", "what did you say?"],
            response="I'm sorry you feel that way; can I help with something?",
            is_safe=True, negatives=["You are dumber, idiot."]),
    Example(history=["tell me a secret about your neighbour"],
            response="I'd rather not share private things about other people.",
            is_safe=True, negatives=["Sure, here is their address."]),
    Example(history=["hi", "hello", "what's up?"], response="Not much, you?", is_safe=None,
            negatives=["Nothing you'd understand."]),
]


#: ``--row-length``: how long each micro-batch row is.
ROW_LENGTHS = ("short", "recipe")
#: The recipes' row limits (``max_context_tokens``, ``max_response_tokens``).
RECIPE_CONTEXT_TOKENS, RECIPE_RESPONSE_TOKENS = 192, 48


def bench_examples(rows: int, row_length: str = "short") -> list[Example]:
    """``rows`` dialogues cycling through `EXAMPLES`: as they are (``"short"``, ≈ 60 positions
    and ≈ 15 response tokens per row), or padded out with more turn text so that every row fills
    the recipes' limits after truncation (``"recipe"``: 192 context + 48 response tokens, the
    rows the FlatGD recipes train on)."""
    if row_length not in ROW_LENGTHS:
        raise BenchError(f"--row-length must be one of {', '.join(ROW_LENGTHS)}, "
                         f"got {row_length!r}")
    out = []
    for i in range(rows):
        ex = EXAMPLES[i % len(EXAMPLES)]
        if row_length == "recipe":
            ex = Example(history=[*ex.history[:-1], ex.history[-1] + " " + " ".join(
                             ["Could you tell me a little more about it, step by step?"] * 30)],
                         response=ex.response + " " + " ".join(
                             ["Here is one more thing worth knowing about it."] * 8),
                         is_safe=ex.is_safe, negatives=ex.negatives)
        out.append(ex)
    return out


@dataclass
class Config:
    """One step's objective: its terms, whether the batch packs negatives."""

    name: str
    terms: list[Term]
    penalty: str | None = None
    base: str = "nll"  # the configuration it is also compared with (FlatGD: Safety_loss)

    @property
    def negatives(self) -> bool:
        return any("negatives" in loss_requires(t.loss) for t in self.terms)

    @property
    def hidden_states(self) -> bool:
        return any("hidden_states" in loss_requires(t.loss) for t in self.terms)

    @property
    def experts(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(e for t in self.terms for e in loss_experts(t.loss)))


def configurations(registry, patterns=None) -> list[Config]:
    """The baseline and every objective's step (see the module docstring); ``patterns`` keep the
    configurations whose name starts with one of them (the baseline always stays)."""
    nll = registry.get("objective", "nll").factory
    configs = [Config("nll", [Term("lm", nll())])]
    for name in registry.names("objective"):
        if name == "nll":
            if accepts(nll, "fused"):
                configs.append(Config("nll:fused", [Term("lm", nll(fused=True))]))
            continue
        factory = registry.get("objective", name).factory
        try:
            factory()
        except Exception:  # noqa: BLE001 - objectives without defaults are not benchmarked
            continue
        configs.append(Config(name, [Term("lm", nll()), Term(name, factory())]))
        fused_ok = accepts(factory, "fused") and accepts(nll, "fused")
        if fused_ok:
            configs.append(Config(f"{name}:fused", [Term("lm", nll(fused=True)),
                                                    Term(name, factory(fused=True))]))
        if name == "safety_loss":
            for method in ("finite_difference", "exact"):
                for fused in ((False, True) if fused_ok else (False,)):
                    kw = {"fused": True} if fused else {}
                    safety = factory(**kw)  # one instance in both terms, as recipes build it
                    terms = [Term("lm", nll(**kw)), Term(name, safety),
                             Term("penalty", GradientNormPenalty(safety, method=method,
                                                                 share_every=0),
                                  PENALTY_WEIGHT)]
                    short = "fd" if method == "finite_difference" else method
                    configs.append(Config(f"flatgd-{short}" + (":fused" if fused else ""),
                                          terms, penalty=method,
                                          base=f"{name}:fused" if fused else name))
            # The finite difference's central scheme (two shifted passes, error O(ρ²); recipes'
            # default) beside the forward one above (``flatgd-fd``: one pass, error O(ρ)).
            safety = factory()
            central = GradientNormPenalty(safety, method="finite_difference",
                                          difference="central", eps=1e-4, share_every=0)
            configs.append(Config("flatgd-fd-central", [Term("lm", nll()), Term(name, safety),
                                                        Term("penalty", central, PENALTY_WEIGHT)],
                                  penalty="finite_difference", base=name))
            # The exact penalty's other ways to the same H·g, for comparison, and the default
            # one measuring its share of the step (``share_every = 1``: on the exact route one
            # more backward through the forward graph; every other config skips the share).
            for mode, label, every in (("autograd", "autograd", 0),
                                       ("torch.func", "torchfunc", 0),
                                       ("layerwise", "share", 1)):
                safety = factory()
                other = GradientNormPenalty(safety, method="exact", exact_mode=mode,
                                            share_every=every)
                configs.append(Config(f"flatgd-exact-{label}",
                                      [Term("lm", nll()), Term(name, safety),
                                       Term("penalty", other, PENALTY_WEIGHT)],
                                      penalty="exact", base=name))
    if patterns:
        chosen = {c.name for c in configs if any(c.name.startswith(p) for p in patterns)}
        chosen |= {c.base for c in configs if c.name in chosen}  # what they are compared with
        keep = [c for c in configs if c.name == "nll" or c.name in chosen]
        if len(keep) == 1:
            raise BenchError(f"no full-step configuration matches {', '.join(patterns)} "
                             f"(known: {', '.join(c.name for c in configs)})")
        configs = keep
    return configs


def load_model(name: str, device: str):
    """``(policy, tokenizer, experts)`` for ``tiny`` or ``embedded`` (SmolLM2-135M, eager
    attention so that the exact penalty runs as is); experts are frozen copies."""
    if name == "tiny":
        from losscraft.models.tiny import tiny_model, tiny_tokenizer
        tokenizer = tiny_tokenizer()
        model = tiny_model(len(tokenizer), hidden_size=64, layers=2, seed=1)
        experts = {n: tiny_model(len(tokenizer), hidden_size=64, layers=2, seed=s)
                   for n, s in (("clean", 2), ("toxic", 3))}
    elif name == "embedded":
        from losscraft.models.embedded import embedded_model_dir
        from losscraft.models.loading import load_causal_lm
        model, tokenizer = load_causal_lm(embedded_model_dir(), attn_implementation="eager")
        experts = {n: copy.deepcopy(model) for n in ("clean", "toxic")}
    else:
        raise BenchError(f"--model must be tiny or embedded, got {name!r}")
    model.to(device).train()
    for expert in experts.values():
        expert.to(device).eval().requires_grad_(False)
    return model, tokenizer, experts
