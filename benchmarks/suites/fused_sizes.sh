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
# Liger's peak memory at the large sizes (the first comparison's memory subprocesses lacked
# --peers: fixed), and the one-expert 8,192-token point again, alone.
run sizes-js-liger-memory --impl js:liger --peers --input hidden --experts 1,2 --vocab 49152 \
    --tokens 2048,4096,8192 --repeats 1 --warmup 0 --no-check
run sizes-js-fused-vs-liger-8k --compare js:fused js:liger --peers --input hidden --experts 1 \
    --vocab 49152 --tokens 8192 --repeats 3 --warmup 1
# naive at 4,096 tokens, one expert: beyond that naive does not fit in this machine's 23 GiB
# (4,096 with two experts and 8,192 with either were killed by the OOM killer).
run sizes-js-fused-vs-naive-4k --compare js:fused js:naive --input hidden --experts 1 \
    --vocab 49152 --tokens 4096 --repeats 2 --warmup 1
