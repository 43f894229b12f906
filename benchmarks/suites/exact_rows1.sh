#!/usr/bin/env bash
# The exact penalty's double backward one row at a time (exact_rows = 1), after the fix that drops
# each row's forward graph before the next: peak memory at 2 and 4 rows (embedded, CPU).
set -euo pipefail
BENCH=${BENCH:-.venv/bin/losscraft bench}
OUT=${OUT:-benchmarks/results}
LOG=$OUT/exact_rows1.log
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT"
for rows in 2 4; do
  echo "=== exact-rows1-rows$rows  $(date -u +%FT%TZ)  load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$LOG"
  echo "\$ $BENCH --full-step --model embedded --impl flatgd-exact-rows1 --impl flatgd-exact:fused --rows $rows --repeats 1 --warmup 1" | tee -a "$LOG"
  nice -n 5 $BENCH --full-step --model embedded --impl flatgd-exact-rows1 --impl flatgd-exact:fused \
      --rows "$rows" --repeats 1 --warmup 1 --no-progress --out "$OUT/exact-rows1-rows$rows" >> "$LOG" 2>&1
  echo "=== done  $(date -u +%FT%TZ)  load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$LOG"
done
