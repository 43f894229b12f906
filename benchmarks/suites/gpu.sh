#!/usr/bin/env bash
# The GPU figures still to be taken (RESULTS.md, "GPU"): one prepared script for a lent card.
# Needs a CUDA build of torch; liger-kernel is optional (its JSD rows appear when it imports).
set -euo pipefail
BENCH=${BENCH:-losscraft bench}
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
# Every objective and variant, fp32 and bf16, logits and hidden inputs.
$BENCH --device cuda --impl safety_loss --impl nll --impl js --vocab 49152 \
    --tokens 512,1024,2048,4096,8192 --dtype fp32,bf16 --repeats 10 --warmup 3 --no-progress \
    --out "$OUT/grid"
# Fused vs naive and vs Liger's JSD / fused linear JSD on the same shapes (alternating).
for b in safety_loss:naive safety_loss:liger_fused; do
  $BENCH --device cuda --compare safety_loss:fused "$b" --input hidden --vocab 49152 \
      --tokens 1024,4096,8192 --dtype fp32,bf16 --repeats 10 --warmup 3 --no-progress \
      --out "$OUT/fused-vs-${b#*:}" || true
done
$BENCH --device cuda --compare safety_loss:plugin safety_loss:liger --input logits \
    --vocab 49152 --tokens 1024,4096,8192 --dtype fp32,bf16 --repeats 10 --warmup 3 \
    --no-progress --out "$OUT/chunked-vs-liger" || true
# Peers (issue 20; pip install -e '.[peers]'): Liger's chunked-loss JSD (compiled, eager), its
# CUDA kernels (safety_loss:liger*), TRL's generalized_jsd_loss, PML's NPairsLoss; ratios printed.
$BENCH --device cuda --impl js --impl npair --impl safety_loss --peers --experts 1,2 \
    --input hidden,logits --vocab 49152 --tokens 1024,4096,8192 --dtype fp32,bf16 --repeats 10 \
    --warmup 3 --no-progress --out "$OUT/peers" || true
$BENCH --device cuda --compare js:fused js:liger --peers --input hidden --experts 1,2 \
    --vocab 49152 --tokens 1024,4096,8192 --dtype fp32,bf16 --repeats 10 --warmup 3 \
    --no-progress --out "$OUT/fused-vs-liger-chunked" || true
# Full steps on the embedded model (penalty costs).
$BENCH --device cuda --full-step --model embedded --repeats 5 --warmup 1 --no-progress \
    --out "$OUT/full-step-embedded"
# The exact penalty's memory per extra row at the recipes' row length (CUDA allocator peaks).
for rows in 1 2 4; do
  $BENCH --device cuda --full-step --model embedded --row-length recipe --impl flatgd-exact \
      --rows "$rows" --repeats 3 --warmup 1 --no-progress --out "$OUT/exact-recipe-rows$rows" || true
done
