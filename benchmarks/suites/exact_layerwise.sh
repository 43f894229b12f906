#!/usr/bin/env bash
# The exact gradient-norm penalty's modes against a Safety_loss step on the embedded
# SmolLM2-135M (CPU), rows at the recipes' limits (192 + 48 tokens), 1, 2 and 3 rows per
# micro-batch: time (2 round-robin repeats) and peak memory, whose slope over rows is the
# "memory per extra row" of issue 9. Run alone on the machine.
SUITE=exact_layerwise
source "$(dirname "$0")/lib.sh"
for rows in 1 2 3; do
  run "exact-layerwise-rows$rows" --full-step --model embedded --row-length recipe \
      --impl flatgd-exact --rows "$rows" --repeats 2 --warmup 1
done
