#!/usr/bin/env bash
# Issue 20: fused heads against the peers on CPU (V = 49,152, H = 576, fp32, OMP 1 thread),
# policy vs one and vs two experts, alternating runs; peak RSS in a fresh process per point.
# Every command is logged with the load average beside it in ../results/peers.log.
# Needs the peers: pip install -e '.[peers]'  (about 60-90 min on a loaded 2-core machine)
SUITE=peers
KEEP_GOING=${KEEP_GOING:-1}  # a missing peer skips its rows, not the suite
source "$(dirname "$0")/lib.sh"
# 1. fused JS vs Liger's torch.compile'd chunked-loss LigerFusedLinearJSDLoss (time, alternating)
#    and Liger's memory alone; fused JS vs naive.
run peers-js-fused-vs-liger --compare js:fused js:liger --peers --input hidden --experts 1,2 \
    --vocab 49152 --tokens 256,512,1024 --repeats 3 --warmup 1
run peers-js-liger-memory --impl js:liger --peers --input hidden --experts 1,2 --vocab 49152 \
    --tokens 256,512,1024 --repeats 1 --warmup 0 --no-check
run peers-js-fused-vs-naive --compare js:fused js:naive --input hidden --experts 1,2 \
    --vocab 49152 --tokens 256,512 --repeats 3 --warmup 1
# 2. fused cross-entropy vs naive.
run peers-nll-fused-vs-naive --compare nll:fused nll:naive --input hidden --vocab 49152 \
    --tokens 256,1024 --repeats 3 --warmup 1
run peers-nll-fused-vs-naive-2 --compare nll:fused nll:naive --input hidden --vocab 49152 \
    --tokens 1024,4096 --repeats 2 --warmup 1
# 3. every peer once on the same shapes (TRL on logits and hidden, PML on 256 x 576 pairs).
run peers-grid --impl js --impl npair --peers --experts 1 --input hidden,logits --vocab 49152 \
    --tokens 512 --repeats 2 --warmup 1
# 4. what the recipes' fused switch does to a whole step (embedded SmolLM2-135M, 2 rows).
run peers-full-step-fused --full-step --model embedded --impl safety_loss --rows 2 --repeats 2 \
    --warmup 1
run peers-full-step-flatgd --full-step --model embedded --impl flatgd-exact --rows 2 \
    --repeats 2 --warmup 1
