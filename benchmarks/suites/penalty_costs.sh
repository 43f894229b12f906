#!/usr/bin/env bash
# FlatGD's penalty costs against a Safety_loss step on the embedded SmolLM2-135M (CPU), run
# alone on the machine:
#  1. short rows (2 × ≈ 60 positions), round-robin, with the default allocator setting and with
#     LOSSCRAFT_KEEP_FREED_MEMORY=0 (glibc's own) — the finite-difference target;
#  2. rows at the recipes' limits (192 + 48 tokens), 1, 2 and 3 per micro-batch — the exact
#     penalty's peak memory per extra row (slope) for every exact implementation.
SUITE=penalty_costs
source "$(dirname "$0")/lib.sh"
run fd-short-rows2 "LOSSCRAFT_KEEP_FREED_MEMORY=1" --full-step --model embedded \
    --impl safety_loss --impl flatgd-fd --rows 2 --repeats 5 --warmup 1
run fd-short-rows2-glibc "LOSSCRAFT_KEEP_FREED_MEMORY=0" --full-step --model embedded \
    --impl safety_loss --impl flatgd-fd --rows 2 --repeats 5 --warmup 1
for rows in 1 2 3; do
  run "exact-recipe-rows$rows" "LOSSCRAFT_KEEP_FREED_MEMORY=1" --full-step --model embedded \
      --row-length recipe --impl flatgd-exact --rows "$rows" --repeats 1 --warmup 1
done
