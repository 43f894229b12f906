"""The before/after summary's casual block on the embedded models, three ways, with timings:

1. as before: the base and the final model each evaluated (k replies, both scored, perplexity
   under the base model), every prompt encoded by every call;
2. with a `PromptMemo` of the base model: the base model encodes the contexts once for its
   replies, their perplexity and the final model's replies' perplexity;
3. the next run: the base model's evaluation read from the evaluation cache.

Checks that all three give the same replies, scores and perplexities (bit for bit) and prints
the CPU seconds of each (run it with one thread: CPU time is steadier than wall time on a
loaded machine). The "final" model is the base model with its weights nudged (a stand-in for
a trained model: another model, the same shapes).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/summary_generation.py --contexts 16
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contexts", type=int, default=16)
    parser.add_argument("--block", default="casual", choices=["casual", "risky"])
    args = parser.parse_args()
    os.environ["LOSSCRAFT_EVAL_CACHE"] = "1"

    from losscraft.app.summary import held_back_contexts, measure
    from losscraft.app.summary_cache import BaseMeasurements
    from losscraft.generation.prompt_memo import PromptMemo
    from losscraft.plugins.protocols import LoadedModel
    from losscraft.recipe.instantiate import build_recipe
    from losscraft.recipe.parse import load_recipe

    recipe = load_recipe("recipes/prosocial_dual_stage.toml")
    built = build_recipe(recipe)
    spec, scorer = recipe.report, built.report.scorer
    contexts = held_back_contexts(built.report.contexts[args.block][1], args.contexts)
    base = built.model.load(device=torch.device("cpu"))
    final = built.model.load(device=torch.device("cpu"))
    with torch.no_grad():
        for p in final.model.parameters():
            p.mul_(1.001)
    models = {"base": base, "final": LoadedModel(final.model, final.tokenizer, "nudged")}
    reference = (base.model, base.tokenizer) if args.block == "casual" else None
    scorer.p_unsafe([contexts[0]], ["warm up"])
    print(f"{len(contexts)} {args.block} contexts x k={spec.num_samples}, "
          f"{torch.get_num_threads()} thread(s), load {os.getloadavg()[0]:.1f}", flush=True)

    def run(memo=None, cache=None):  # CPU seconds: with one thread, steadier under load
        start = time.process_time()
        found = measure(args.block, contexts, models, scorer, spec, 0, reference=reference,
                        progress=False, settings_extra={}, memo=memo, cache=cache)
        return found, time.process_time() - start

    before, t_before = run()
    memo = PromptMemo(base.model)
    shared, t_memo = run(memo=memo)
    with tempfile.TemporaryDirectory() as root:
        cache = BaseMeasurements(base, scorer, "cpu", root=Path(root))
        start = time.process_time()
        cache.identity()
        t_identity = time.process_time() - start
        first, t_first = run(memo=PromptMemo(base.model), cache=cache)
        cache = BaseMeasurements(base, scorer, "cpu", root=Path(root))
        again, t_again = run(memo=PromptMemo(base.model), cache=cache)
        assert cache.reused == [args.block], cache.reused
        entries = len(os.listdir(root))
    for label in ("base", "final"):
        for found in (shared, first, again):
            assert found[label].samples == before[label].samples, label
            assert found[label].metrics == before[label].metrics, label
    print(f"as before (no memo, no cache):          {t_before:7.1f} CPU s")
    print(f"prompt memo of the base model:          {t_memo:7.1f} CPU s  "
          f"(x{t_memo / t_before:.2f}; {memo.hits} batches reused, {memo.misses} encoded)")
    print(f"first run, memo + filling the cache:    {t_first:7.1f} CPU s  "
          f"(fingerprints {t_identity:.1f} s, {entries} entry)")
    print(f"next run, base read from the cache:     {t_again:7.1f} CPU s  "
          f"(x{t_again / t_before:.2f})")
    print("replies, scores and perplexities: identical in all four")


if __name__ == "__main__":
    main()
