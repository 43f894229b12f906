#!/usr/bin/env bash
# Full optimizer steps on the embedded SmolLM2-135M (CPU): FlatGD's penalty costs against a
# Safety_loss step, time shares, and the exact penalty's peak memory per extra row (2 vs 4 rows).
SUITE=full_step_embedded
source "$(dirname "$0")/lib.sh"
for rows in 2 4; do
  run "full-step-embedded-rows$rows" --full-step --model embedded --impl safety_loss \
      --impl flatgd --rows "$rows" --repeats 2 --warmup 1
done
