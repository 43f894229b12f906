# Shared by the CPU suites: `SUITE=name; source "$(dirname "$0")/lib.sh"`, then one `run` per
# benchmark. Every command is logged with the load average beside it in $OUT/$SUITE.log (the
# bench's own output goes there too; raw JSON / CSV in $OUT/<name>/).
#   BENCH  the bench command (default .venv/bin/losscraft bench)
#   OUT    where results and the log go (default benchmarks/results)
#   OMP_NUM_THREADS  threads per bench (default 1: the figures in RESULTS.md are one-thread)
#   KEEP_GOING=1     log a failing bench and go on (default: stop the suite)
set -euo pipefail
BENCH=${BENCH:-.venv/bin/losscraft bench}
OUT=${OUT:-benchmarks/results}
LOG=$OUT/${SUITE:?set SUITE before sourcing lib.sh}.log
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT"

_load() { cut -d' ' -f1-3 /proc/loadavg; }

# run NAME [VAR=VALUE ...] ARGS...: one bench into $OUT/NAME; leading VAR=VALUE words are set in
# its environment (e.g. LOSSCRAFT_KEEP_FREED_MEMORY=1).
run() {
  local name=$1; shift
  local env=()
  while [[ $# -gt 0 && $1 == [A-Z_]*=* ]]; do env+=("$1"); shift; done
  echo "=== $name  $(date -u +%FT%TZ)  load: $(_load)" | tee -a "$LOG"
  echo "\$ ${env[*]:+${env[*]} }$BENCH $*" | tee -a "$LOG"
  local rc=0
  env "${env[@]}" nice -n 5 $BENCH "$@" --no-progress --out "$OUT/$name" >> "$LOG" 2>&1 || rc=$?
  echo "=== done $name (exit $rc)  $(date -u +%FT%TZ)  load: $(_load)" | tee -a "$LOG"
  [[ $rc -eq 0 || ${KEEP_GOING:-0} == 1 ]] || return "$rc"
}
