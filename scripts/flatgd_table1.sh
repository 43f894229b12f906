#!/usr/bin/env bash
# Reproduce the layout of FlatGD's Table 1 on the embedded setup: train (or reuse) clean,
# Unlikelihood, CRINGE, Safety_loss and FlatGD on the same data and seed, evaluate each on the same
# held-back BAD and ProsocialDialog contexts (k samples each), and print the comparison.
#
#   scripts/flatgd_table1.sh                 # defaults below (about half an hour on a 2-core CPU)
#   STEPS=0 scripts/flatgd_table1.sh         # the recipes' own schedule (2 epochs; much longer)
#   REUSE=1 scripts/flatgd_table1.sh         # skip training where runs/<name>/final exists
set -euo pipefail
cd "$(dirname "$0")/.."
LC=${LOSSCRAFT:-.venv/bin/losscraft}
OUT=${OUT:-runs/table1}
STEPS=${STEPS:-6}            # optimizer steps of each policy stage (0: the recipe's epochs)
EXPERT_STEPS=${EXPERT_STEPS:-8}
CONTEXTS=${CONTEXTS:-24}     # test contexts per dataset
K=${K:-5}
REUSE=${REUSE:-0}
SCORER=${SCORER:-profanity_check}   # or hf_classifier with --scorer-param path=...
SCORER_ARGS=${SCORER_ARGS:-}

overrides=()
[ "$STEPS" != 0 ] && overrides+=(--set stages.main.max_steps="$STEPS")
models=(clean unlikelihood cringe safety_loss flatgd)
for name in "${models[@]}"; do
  run="$OUT/$name"
  if [ "$REUSE" = 1 ] && [ -d "$run/final" ]; then echo "reusing $run"; continue; fi
  # every model sees the same 16 examples per optimizer step (FlatGD's exact penalty needs
  # micro-batches of 2 to stay within CPU memory; the data order does not depend on the split)
  if [ "$name" = flatgd ]; then extra=(--set stages.main.batch_size=2 --set stages.main.grad_accum=8)
  else extra=(--set stages.main.batch_size=8 --set stages.main.grad_accum=2); fi
  if [ "$name" = flatgd ] || [ "$name" = safety_loss ]; then
    [ "$STEPS" != 0 ] && extra+=(--set stages.clean_expert.max_steps="$EXPERT_STEPS"
                                 --set stages.toxic_expert.max_steps="$EXPERT_STEPS")
  fi
  "$LC" run "recipes/$name.toml" --overwrite --no-progress --set run.output_dir="$run" \
    "${overrides[@]}" "${extra[@]}"
done
evals=()
for name in "${models[@]}"; do
  for data in "bot_adversarial_dialogue:BAD" "prosocial_dialog:ProsocialDialog"; do
    source=${data%%:*}; label=${data##*:}
    "$LC" eval "$OUT/$name" --source "$source" --source-param split=test --dataset "$label" \
      --label "$name" --max-contexts "$CONTEXTS" --k "$K" --max-new-tokens 32 \
      --scorer "$SCORER" $SCORER_ARGS --out "$OUT/$name/eval/$label" --no-progress
    evals+=("$OUT/$name/eval/$label")
  done
done
"$LC" compare "${evals[@]}" --out "$OUT/comparison"
