#!/usr/bin/env bash
# Full optimizer steps on the embedded SmolLM2-135M (CPU): FlatGD's penalty costs against a
# Safety_loss step, time shares, and the exact penalty's peak memory per extra row (2 vs 4 rows).
set -euo pipefail
BENCH=${BENCH:-.venv/bin/losscraft bench}
OUT=${OUT:-benchmarks/results}
LOG=$OUT/full_step_embedded.log
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT"
for rows in 2 4; do
  echo "=== full-step-embedded-rows$rows  $(date -u +%FT%TZ)  load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$LOG"
  echo "\$ $BENCH --full-step --model embedded --impl safety_loss --impl flatgd --rows $rows --repeats 2 --warmup 1" | tee -a "$LOG"
  nice -n 5 $BENCH --full-step --model embedded --impl safety_loss --impl flatgd --rows "$rows" \
      --repeats 2 --warmup 1 --no-progress --out "$OUT/full-step-embedded-rows$rows" >> "$LOG" 2>&1
  echo "=== done  $(date -u +%FT%TZ)  load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$LOG"
done
