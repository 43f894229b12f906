#!/usr/bin/env bash
# The issue-9 memory/time targets on CPU: V = 49,152 (SmolLM2), fp32, policy vs two experts.
# Every command is recorded with the load average beside it in ../results/cpu_targets.log.
# Usage: benchmarks/suites/cpu_targets.sh  (from the repository root; about 30-60 min on 2 cores)
SUITE=cpu_targets
source "$(dirname "$0")/lib.sh"
# 1. fused (hidden states + lm_head weights → loss) vs naive, alternating, where naive fits.
run fused-vs-naive --compare safety_loss:fused safety_loss:naive --input hidden \
    --vocab 49152 --tokens 512,1024,2048 --repeats 3 --warmup 1
# 2. chunked (logits → loss) vs naive, alternating, where naive fits.
run chunked-vs-naive --compare safety_loss:plugin safety_loss:naive --input logits \
    --vocab 49152 --tokens 512,1024,2048 --repeats 3 --warmup 1
# 3. fused and chunked alone up to 8,192 tokens (naive needs ~20 GB there: see RESULTS.md).
run fused-large --impl safety_loss:fused --input hidden --vocab 49152 --tokens 4096,8192 \
    --repeats 2 --warmup 1
# chunked at 8,192 tokens measures memory in-process: its inputs are 4.8 GB, and a subprocess
# holding a second copy (with the parent's) was OOM-killed on the shared 23 GB machine.
run chunked-large --impl safety_loss:plugin --input logits --vocab 49152 --tokens 8192 --memory inprocess \
    --repeats 1 --warmup 1
