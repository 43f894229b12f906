#!/usr/bin/env bash
# The exact gradient-norm penalty's modes against a Safety_loss step on the embedded
# SmolLM2-135M (CPU), rows at the recipes' limits (192 + 48 tokens), 1, 2 and 3 rows per
# micro-batch: time (2 round-robin repeats) and peak memory, whose slope over rows is the
# "memory per extra row" of issue 9. Run alone on the machine.
set -euo pipefail
BENCH=${BENCH:-.venv/bin/losscraft bench}
OUT=${OUT:-benchmarks/results}
LOG=$OUT/exact_layerwise.log
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT"
for rows in 1 2 3; do
  name="exact-layerwise-rows$rows"
  args=(--full-step --model embedded --row-length recipe --impl flatgd-exact --rows "$rows"
        --repeats 2 --warmup 1)
  echo "=== $name  $(date -u +%FT%TZ)  load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$LOG"
  echo "\$ $BENCH ${args[*]}" | tee -a "$LOG"
  $BENCH "${args[@]}" --no-progress --out "$OUT/$name" >> "$LOG" 2>&1
  echo "=== done  $(date -u +%FT%TZ)  load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$LOG"
done
