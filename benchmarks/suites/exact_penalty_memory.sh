#!/usr/bin/env bash
# The exact penalty's peak memory per extra row on the embedded SmolLM2-135M (CPU): whole-batch
# reverse-over-reverse (default), one row at a time (exact_rows = 1), torch.func re-evaluation
# (the implementation before issue 9), at 2 and 4 rows per micro-batch.
set -euo pipefail
BENCH=${BENCH:-.venv/bin/losscraft bench}
OUT=${OUT:-benchmarks/results}
LOG=$OUT/exact_penalty_memory.log
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT"
for rows in 2 4; do
  echo "=== exact-penalty-rows$rows  $(date -u +%FT%TZ)  load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$LOG"
  echo "\$ $BENCH --full-step --model embedded --impl flatgd-exact --rows $rows --repeats 1 --warmup 1" | tee -a "$LOG"
  nice -n 5 $BENCH --full-step --model embedded --impl flatgd-exact --rows "$rows" \
      --repeats 1 --warmup 1 --no-progress --out "$OUT/exact-penalty-rows$rows" >> "$LOG" 2>&1
  echo "=== done  $(date -u +%FT%TZ)  load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$LOG"
done
