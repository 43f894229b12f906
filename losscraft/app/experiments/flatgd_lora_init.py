"""What LoRA's initialisation does to FlatGD's penalty: the measurement behind the
``init_b_std`` choice in recipes/flatgd.toml, on a small float64 configuration.

``python -m losscraft.app.experiments.flatgd_lora_init [--stds 0,1e-3,1e-2] [--lambda 0.01]``

A tiny float64 Llama (hidden 32, 2 layers) with LoRA r = 16 on every linear layer (alpha 32),
two tiny frozen experts, random dialog-like batches; the Table 1 objective ``L_LM + L_S`` with
and without ``λ·‖∇L_S‖²`` (central finite difference), one AdamW step at lr 3e-4 (Table 1's) from
the same start. For each standard deviation of ``B``'s initialisation it prints:

- ``share``: ``‖∇(λ‖g‖²)‖ / ‖∇(rest)‖`` over all adapter weights, and over the ``A`` matrices;
- ``A moved``: ``A`` entries the first step changes, FlatGD / Safety_loss;
- ``ΔA gap``: ``‖ΔA_FlatGD − ΔA_Safety_loss‖ / ‖ΔA_Safety_loss‖`` after 1 and after 5 steps —
  how much the penalty changes the update; in proportion it should be about the share, not 1;
- ``init change``: ``‖logits(init) − logits(base)‖ / ‖logits(base)‖``, what ``B ≠ 0`` costs.
"""

from __future__ import annotations

import argparse
import math

import torch


def _batch(vocab: int, rows: int, length: int, seed: int):
    from losscraft.types import Batch

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (rows, length), generator=g)
    targets = torch.roll(ids, -1, 1)
    targets[:, -1] = -100
    response = torch.zeros(rows, length)
    response[:, length // 2:-1] = 1
    return Batch(input_ids=ids, attention_mask=torch.ones(rows, length, dtype=torch.long),
                 position_ids=torch.arange(length).expand(rows, length).clone(), targets=targets,
                 segment_ids=response.long(), response_mask=response,
                 is_safe=torch.ones(rows), negative_mask=torch.zeros(rows, 0, dtype=torch.bool),
                 negative_weights=torch.zeros(rows, 0))


def _policy(vocab: int, std: float):
    from peft import LoraConfig, get_peft_model

    from losscraft.models.adapters import init_lora_b
    from losscraft.models.tiny import tiny_model

    base = tiny_model(vocab, seed=1).double()
    config = LoraConfig(r=16, lora_alpha=32, target_modules=[
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    torch.manual_seed(0)  # A's kaiming init, then B's
    model = get_peft_model(base, config)
    if std:
        init_lora_b(model, std)
    return model


def _objective(lam: float):
    from losscraft.core.compose import Term, WeightedObjective
    from losscraft.core.penalty import GradientNormPenalty
    from losscraft.plugins.registry import get_registry

    reg = get_registry()
    safety = reg.create("objective", "safety_loss", {"log_base": 2.0})
    terms = [Term("lm", reg.create("objective", "nll", {})), Term("safety", safety)]
    if lam:
        terms.append(Term("safety_grad_penalty", GradientNormPenalty(
            safety, method="finite_difference", difference="central", eps=1e-4), lam))
    return WeightedObjective(terms)


def _train(std: float, lam: float, steps: int, vocab: int, experts, batches):
    """(adapter weights before and after each step, the first step's metrics and gradients)."""
    from losscraft.core import accumulate_gradients

    model = _policy(vocab, std)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    opt = torch.optim.AdamW(params.values(), lr=3e-4, weight_decay=0.0)
    objective = _objective(lam)
    history = [{n: p.detach().clone() for n, p in params.items()}]
    first: tuple = ()
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        metrics = accumulate_gradients(objective, model, [batches[step % len(batches)]],
                                       experts=experts)
        if step == 0:
            first = (metrics, {n: p.grad.detach().clone() for n, p in params.items()})
        opt.step()
        history.append({n: p.detach().clone() for n, p in params.items()})
    return history, first


def _norm(tensors) -> float:
    return math.sqrt(sum(float(t.double().square().sum()) for t in tensors))


def measure(stds: list[float], lam: float = 0.01, vocab: int = 23) -> list[dict[str, float]]:
    """One row per B standard deviation (see the module doc)."""
    from losscraft.core.context import StepContext
    from losscraft.models.tiny import tiny_model

    experts = {}
    for name, seed in (("clean", 11), ("toxic", 12)):
        experts[name] = tiny_model(vocab, seed=seed).double().requires_grad_(False)
    batches = [_batch(vocab, 4, 12, seed) for seed in range(5)]
    base = tiny_model(vocab, seed=1).double()
    base_logits = StepContext(base, batches[0]).logits.detach()
    rows = []
    for std in stds:
        init_logits = StepContext(_policy(vocab, std), batches[0]).logits.detach()
        flat, (metrics, with_penalty) = _train(std, lam, 5, vocab, experts, batches)
        safe, (_, without) = _train(std, 0.0, 5, vocab, experts, batches)
        a_names = [n for n in with_penalty if ".lora_A." in n]
        # one backward sums the terms: the penalty's part is the difference of the two
        pen_a = _norm(with_penalty[n] - without[n] for n in a_names)
        rest_a = _norm(without[n] for n in a_names)

        def gap(step: int) -> float:
            moved = _norm(safe[step][n] - safe[0][n] for n in a_names)
            diff = _norm(flat[step][n] - safe[step][n] for n in a_names)
            return diff / moved if moved > 0 else math.inf

        rows.append({
            "init_b_std": std, "lambda": lam,
            "share": metrics["safety_grad_penalty/share"],
            "share_A": pen_a / rest_a if rest_a > 0 else math.inf,
            "A_entries": sum(flat[0][n].numel() for n in a_names),
            "A_moved_flatgd": sum(int((flat[1][n] != flat[0][n]).sum()) for n in a_names),
            "A_moved_safety": sum(int((safe[1][n] != safe[0][n]).sum()) for n in a_names),
            "gap_A_step1": gap(1), "gap_A_step5": gap(5),
            "init_change": float((init_logits - base_logits).norm() / base_logits.norm())})
    return rows


def markdown(rows: list[dict[str, float]]) -> str:
    lines = ["| B init std | share (all) | share (A) | A moved, FlatGD / Safety_loss (of N) | "
             "ΔA gap, step 1 | step 5 | init change |", "|---" * 7 + "|"]
    for r in rows:
        lines.append(f"| {r['init_b_std']:g} | {r['share']:.2e} | {r['share_A']:.2e} | "
                     f"{r['A_moved_flatgd']} / {r['A_moved_safety']} (of {r['A_entries']}) | "
                     f"{r['gap_A_step1']:.2e} | {r['gap_A_step5']:.2e} | "
                     f"{r['init_change']:.2e} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stds", default="0,1e-4,1e-3,1e-2")
    parser.add_argument("--lambda", dest="lam", type=float, default=0.01)
    args = parser.parse_args(argv)
    stds = [float(v) for v in args.stds.split(",") if v.strip()]
    print(markdown(measure(stds, args.lam)), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
