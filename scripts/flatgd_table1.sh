#!/usr/bin/env bash
# FlatGD's Table 1 on the embedded setup: train clean, Unlikelihood, CRINGE, Safety_loss and
# FlatGD on the same shipped data (BAD + BBF + ProsocialDialog train splits) and seed, sample k
# replies for each of the same held-back risky contexts (BAD and ProsocialDialog test splits),
# score them with the judge (safety_judge) and again with profanity_check, and compare: every
# cell with its 95% percentile bootstrap interval over the contexts, paired differences between
# models, and the paper's numbers and orderings beside ours. FlatGD reads the clean and toxic
# experts Safety_loss trained with the same seed (the same stages: bit-identical experts), and
# Safety_loss's toxic expert is deleted once FlatGD has trained; --separate-experts trains them
# twice.
#
#   scripts/flatgd_table1.sh                     # --scale default (about an hour on 2 CPU cores)
#   scripts/flatgd_table1.sh --scale smoke       # tiny random model: checks the plumbing in seconds
#   scripts/flatgd_table1.sh --scale paper       # the recipes' full schedules (many CPU hours)
#   scripts/flatgd_table1.sh --dry-run           # print the commands only
#   make flatgd-table1 SCALE=smoke
#   make flatgd-table1 LAMBDAS="0 0.01 1 100"   # the λ study (FlatGD at each λ)
#
# Scales (losscraft/app/experiments/flatgd_table1.py, SCALES, holds the exact values):
#   smoke    tiny model, LoRA, 2 policy steps / 1 expert step, 6 contexts per test set, k = 2,
#            profanity_check (then profanity_check on context + reply as the second scorer)
#   default  SmolLM2-135M-Instruct, LoRA r = 16 on every linear layer for all five models (same
#            trainable parameters, lr and examples for each), 32 policy steps of 8 examples
#            (lr 3e-4), experts 16 steps of 8 (lr 1e-3), batches grouped by length,
#            FlatGD's penalty by finite differences,
#            40 BAD + 40 ProsocialDialog risky contexts, k = 5, 32 new tokens, no perplexity
#            (REFERENCE=embedded adds perplexity: about +1 min per evaluation)
#   paper    recipes as written: full fine-tuning, effective batch 64, 2 epochs, exact penalty,
#            every risky test context (91 BAD, 70 ProsocialDialog), perplexity under the base model
#
# Environment overrides (each also a flag: see --help):
#   SCALE, OUT (output folder), MODELS (comma-separated subset, e.g. clean,flatgd), STEPS and
#   EXPERT_STEPS (0: the recipe's epochs), SEEDS and GENERATION_SEEDS (comma-separated training
#   and sampling seeds, default 0: several train OUT/seed-S/MODEL, sample each model once per
#   generation seed, and pool the table over runs), CONTEXTS (per test set; 0: all), K, SCORER,
#   SECOND_SCORER (none: skip), REFERENCE (embedded, none, a folder), JOBS (evaluations side by
#   side, default 2 on 2+ cores, each with its share of the threads; output in OUT/logs/),
#   LAMBDAS="0 0.01 1 100" (the λ study instead of the five models: FlatGD at each λ, toxicity
#   with intervals, perplexity and the penalty's share per λ, OUT/comparison/lambda_study.{md,png};
#   default OUT runs/flatgd-lambdas), REUSE=1 (keep the trained
#   models and evaluations that exist), DRY_RUN=1, PY (the Python of the venv).
# Outputs: OUT/comparison/comparison.md (the table), table1_vs_paper.md, table1_ci.csv,
# table1_paired.csv (the first run), with several runs table1_seeds.{md,csv} and
# table1_seeds_paired.csv (pooled: permutation test per ordering); OUT/timings.json; the
# script ends with the total wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
args=(table1 --scale "${SCALE:-default}")
[ -n "${OUT:-}" ] && args+=(--out "$OUT")
[ -n "${MODELS:-}" ] && args+=(--models "$MODELS")
[ -n "${STEPS:-}" ] && args+=(--steps "$STEPS")
[ -n "${EXPERT_STEPS:-}" ] && args+=(--expert-steps "$EXPERT_STEPS")
[ -n "${SEEDS:-}" ] && args+=(--seeds "$SEEDS")
[ -n "${GENERATION_SEEDS:-}" ] && args+=(--generation-seeds "$GENERATION_SEEDS")
[ -n "${CONTEXTS:-}" ] && args+=(--contexts "$CONTEXTS")
[ -n "${K:-}" ] && args+=(--k "$K")
[ -n "${SCORER:-}" ] && args+=(--scorer "$SCORER")
[ -n "${SECOND_SCORER:-}" ] && args+=(--second-scorer "$SECOND_SCORER")
[ -n "${REFERENCE:-}" ] && args+=(--reference "$REFERENCE")
[ -n "${JOBS:-}" ] && args+=(--jobs "$JOBS")
[ -n "${LAMBDAS:-}" ] && args+=(--lambdas "$LAMBDAS")
[ "${REUSE:-0}" = 1 ] && args+=(--reuse)
[ "${DRY_RUN:-0}" = 1 ] && args+=(--dry-run)
exec "$PY" -m losscraft.app.experiments.flatgd_table1 "${args[@]}" "$@"
