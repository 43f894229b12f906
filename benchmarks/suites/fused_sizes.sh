#!/usr/bin/env bash
# Issue 20, item 1 at every size: fused heads against naive and Liger's compiled chunked JSD on
# CPU (V = 49,152, H = 576, fp32, OMP 1 thread), T = 256 … 8,192, policy vs one and vs two
# experts; alternating runs (A, B, B, A …), peak RSS of a fresh process per point.
# Needs the peers for the Liger rows: pip install -e '.[peers]'. About an hour on 2 cores.
SUITE=fused_sizes
KEEP_GOING=${KEEP_GOING:-1}
source "$(dirname "$0")/lib.sh"
run sizes-js-fused-vs-naive --compare js:fused js:naive --input hidden --experts 1,2 \
    --vocab 49152 --tokens 256,512,1024,2048 --repeats 3 --warmup 1
run sizes-js-fused-vs-liger --compare js:fused js:liger --peers --input hidden --experts 1,2 \
    --vocab 49152 --tokens 2048,4096,8192 --repeats 2 --warmup 1
run sizes-nll-fused-vs-naive --compare nll:fused nll:naive --input hidden --vocab 49152 \
    --tokens 256,1024,4096,8192 --repeats 2 --warmup 1
run sizes-js-fused-vs-naive-large --compare js:fused js:naive --input hidden --experts 1,2 \
    --vocab 49152 --tokens 4096,8192 --repeats 2 --warmup 1
