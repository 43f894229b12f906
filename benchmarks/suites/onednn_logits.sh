#!/usr/bin/env bash
# Issue 20, item 1 after the fused heads' forward logits moved to oneDNN
# (losscraft/functional/onednn_linear.py): fused JSD and fused cross-entropy against naive on CPU
# (V = 49,152, H = 576, fp32, OMP 1 thread), alternating runs, peak RSS of a fresh process per
# point; the matmul floor (benchmarks/matmul_floor.py); Liger at 256-1,024 tokens. Naive forms
# every logits tensor as a model's lm_head does (F.linear, MKL). About 45 minutes on 2 cores.
SUITE=onednn_logits
source "$(dirname "$0")/lib.sh"
run onednn-js-fused-vs-naive --compare js:fused js:naive --input hidden --experts 1,2 \
    --vocab 49152 --tokens 256,512,1024,2048 --repeats 3 --warmup 1
run onednn-js-fused-vs-naive-4k --compare js:fused js:naive --input hidden --experts 1 \
    --vocab 49152 --tokens 4096 --repeats 2 --warmup 1
run onednn-nll-fused-vs-naive --compare nll:fused nll:naive --input hidden --vocab 49152 \
    --tokens 256,1024,4096,8192 --repeats 2 --warmup 1
echo "=== matmul floor  $(date -u +%FT%TZ)  load: $(_load)" | tee -a "$LOG"
nice -n 5 .venv/bin/python benchmarks/matmul_floor.py --tokens 256,512,1024 --experts 1,2 \
    --repeats 3 | tee "$OUT/onednn_matmul_floor.txt" >> "$LOG"
echo "=== done matmul floor  $(date -u +%FT%TZ)  load: $(_load)" | tee -a "$LOG"
# Liger's compiled chunked JSD at 256-1,024 tokens (needs the peers: pip install -e '.[peers]').
run onednn-js-fused-vs-liger --compare js:fused js:liger --peers --input hidden --experts 1,2 \
    --vocab 49152 --tokens 256,512,1024 --repeats 3 --warmup 1
