#!/usr/bin/env bash
# The exact penalty's peak memory per extra row on the embedded SmolLM2-135M (CPU): whole-batch
# reverse-over-reverse (default), one row at a time (exact_rows = 1), torch.func re-evaluation
# (the implementation before issue 9), at 2 and 4 rows per micro-batch.
SUITE=exact_penalty_memory
source "$(dirname "$0")/lib.sh"
for rows in 2 4; do
  run "exact-penalty-rows$rows" --full-step --model embedded --impl flatgd-exact \
      --rows "$rows" --repeats 1 --warmup 1
done
