"""Peak RSS of one FlatGD step on the embedded SmolLM2-135M: experts as full models vs as LoRA
adapters on the policy's base (`losscraft.models.adapters`).

Each variant runs in a fresh process (peak RSS is per process):

    OMP_NUM_THREADS=2 python scripts/measure_expert_memory.py            # both, prints a table
    python scripts/measure_expert_memory.py --variant adapters --json    # one, as JSON

The step: a LoRA policy (r = 16 on every linear layer, as in FlatGD's Table 1 here), NLL +
safety loss + finite-difference gradient-norm penalty on one micro-batch of ``--rows`` BAD rows
(default 2, recipes/flatgd.toml's micro-batch) of up to 192 + 48 tokens. The
experts' adapters are random (same shapes as trained ones: memory does not depend on values).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _rss_now_mb() -> float:
    """Resident memory now (Linux ``/proc``), e.g. once every weight has been touched."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _lora(model):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=TARGETS,
                                            task_type="CAUSAL_LM"))


def prepare(folder: Path) -> None:
    """Two expert adapters in ``folder/clean`` and ``folder/toxic`` (its own process, so the
    measured one never held the models they were made from)."""
    import torch

    from losscraft.models.adapters import AdapterSnapshot
    from losscraft_plugins.models.smollm2_embedded import SmolLM2Embedded

    for name in ("clean", "toxic"):
        expert = _lora(SmolLM2Embedded().load().model)
        with torch.no_grad():
            for n, p in expert.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 1e-3)
        AdapterSnapshot(expert).save(folder / name)


def measure(variant: str, rows: int, adapters: Path | None) -> dict:
    import torch

    from losscraft import Term, WeightedObjective
    from losscraft.core import accumulate_gradients
    from losscraft.core.penalty import GradientNormPenalty
    from losscraft.data.collate import DialogCollator
    from losscraft.models.adapters import attach_adapter_experts
    from losscraft.models.loading import freeze
    from losscraft_plugins.data.bot_adversarial_dialogue import BotAdversarialDialogueSource
    from losscraft_plugins.models.smollm2_embedded import SmolLM2Embedded
    from losscraft_plugins.objectives.nll import NLLLoss
    from losscraft_plugins.objectives.safety_loss import SafetyLoss

    provider = SmolLM2Embedded()
    started = time.perf_counter()
    loaded = provider.load()
    policy = _lora(loaded.model)
    if variant == "adapters":
        experts = attach_adapter_experts(policy, {n: adapters / n for n in ("clean", "toxic")})
    else:
        experts = {name: freeze(provider.load().model) for name in ("clean", "toxic")}
    examples = list(BotAdversarialDialogueSource(split="train"))[:rows]
    batch = DialogCollator(loaded.tokenizer, max_context_tokens=192,
                           max_response_tokens=48)(examples)
    with torch.no_grad():  # touch every weight once (safetensors maps them lazily)
        tiny = {k: v[:1, :8] for k, v in batch.model_inputs().items()}
        for model in (policy, *experts.values()):
            model(**tiny, use_cache=False)
    resident_mb = _rss_now_mb()
    policy.train()
    objective = WeightedObjective([
        Term("lm", NLLLoss()), Term("safety", SafetyLoss(beta=2.0, gamma=3.0, log_base=2.0)),
        Term("safety_grad_penalty", GradientNormPenalty(SafetyLoss(beta=2.0, gamma=3.0,
                                                                   log_base=2.0),
                                                        method="finite_difference"), 0.01)])
    step_started = time.perf_counter()
    metrics = accumulate_gradients(objective, policy, [batch], experts=experts)
    return {"variant": variant, "rows": rows, "tokens": int(batch.lengths.sum()),
            "peak_rss_mb": round(_peak_rss_mb()), "models_resident_mb": round(resident_mb),
            "step_seconds": round(time.perf_counter() - step_started, 1),
            "setup_seconds": round(step_started - started, 1),
            "loss": round(float(metrics["loss"]), 4), "torch": torch.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=["full", "adapters"])
    parser.add_argument("--rows", type=int, default=2,
                        help="rows of the micro-batch (recipes/flatgd.toml: 2)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--adapters", type=Path, help="expert adapter folders (--variant adapters)")
    parser.add_argument("--prepare", type=Path, help="write two expert adapters here and stop")
    args = parser.parse_args()
    if args.prepare:
        prepare(args.prepare)
        return
    if args.variant:
        if args.variant == "adapters" and args.adapters is None:
            parser.error("--variant adapters needs --adapters DIR (made by --prepare DIR)")
        result = measure(args.variant, args.rows, args.adapters)
        print(json.dumps(result) if args.json else result)
        return
    folder = Path(tempfile.mkdtemp())
    subprocess.run([sys.executable, __file__, "--prepare", str(folder)], check=True)
    results = []
    for variant in ("full", "adapters"):
        done = subprocess.run([sys.executable, __file__, "--variant", variant, "--rows",
                               str(args.rows), "--adapters", str(folder), "--json"],
                              capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"FlatGD step, {results[0]['rows']} rows ({results[0]['tokens']} tokens), "
          f"torch {results[0]['torch']}")
    print("| experts | RSS with models loaded | peak RSS of the step | step |")
    print("|---|---|---|---|")
    for r in results:
        print(f"| {r['variant']} | {r['models_resident_mb']} MB | {r['peak_rss_mb']} MB | "
              f"{r['step_seconds']} s |")
    saved = results[0]["peak_rss_mb"] - results[1]["peak_rss_mb"]
    print(f"saved: {saved} MB ({saved / results[0]['peak_rss_mb']:.0%} of the peak)")


if __name__ == "__main__":
    main()
