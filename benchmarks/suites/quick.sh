#!/usr/bin/env bash
# CI-sized: every registered objective, every variant, tiny shapes (seconds).
set -euo pipefail
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} ${BENCH:-.venv/bin/losscraft bench} --quick --no-progress \
    --out "${OUT:-benchmarks/results}/quick"
