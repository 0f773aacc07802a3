#!/usr/bin/env bash
# One-shot GPU check for a lent GPU machine (H100/H200): about 6 minutes of command time in total.
#   1. benchmarks/gpu_check.py: the GPU target settings (600x400, batch 32, bf16; both IACA variants vs their
#      bare backbones; IACALoss fwd+bwd vs backbone fwd+bwd), bf16/fp16 vs fp32 scores on generated images,
#      CPU vs GPU scores, folder CLI vs model-only throughput  -> gpu_check.json
#   2. benchmarks/precision.py --device cuda: bf16/fp16 autocast vs fp32 for the metric and IACALoss on the
#      golden images and real low-light photos (folders from $GPU_DATA: golden/, LIME/, DICM/; default
#      ../shared/golden and ../shared/data/lowlight)  -> precision_cuda.json
#   3. benchmarks/speed.py --device cuda, a reduced sweep (batch 1 and 32, fp32/bf16, channels_last, all
#      resolutions; no loss/folder, already in 1.) for the throughput-vs-resolution plot -> speed_cuda.json
# Results go to the folder given as $1, else $OUT (set by the device tool), else docs/results.
# Needs a CUDA build of torch and this package importable by $PYTHON (default: python).
# Usage: [GPU_DATA=folder] bash benchmarks/gpu_check.sh [OUT_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-docs/results}}"
PY="${PYTHON:-python}"
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the checkout, even where the package is not installed
"$PY" -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available()); sys.exit(0 if torch.cuda.is_available() else 3)" \
  || { echo "no CUDA device visible to torch: nothing measured" | tee "$OUT_DIR/gpu_check.log"; exit 3; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null | tee "$OUT_DIR/nvidia_smi.txt"

status=0
timeout 200 "$PY" benchmarks/gpu_check.py --out-dir "$OUT_DIR" --time-limit 150 2>&1 | tee "$OUT_DIR/gpu_check.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
if [ -n "${GPU_DATA:-}" ]; then
  PREC_ARGS=(--golden "$GPU_DATA/golden" --photos "$GPU_DATA/LIME" "$GPU_DATA/DICM")
else
  PREC_ARGS=()
fi
timeout 120 "$PY" benchmarks/precision.py --device cuda "${PREC_ARGS[@]}" --limit 5 --max-pixels 4000000 \
  --out "$OUT_DIR/precision_cuda.json" 2>&1 | tee "$OUT_DIR/precision_cuda.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
timeout 100 "$PY" benchmarks/speed.py --device cuda --out "$OUT_DIR/speed_cuda.json" \
  --resolutions 256x256,600x400,1920x1080,3840x2160 --batches 1,32 --dtypes fp32,bf16 --formats channels_last \
  --reps 15 --min-reps 5 --warmup 3 --setting-budget 2 --no-loss --no-folder --no-rss-4k --time-limit 75 \
  2>&1 | tee "$OUT_DIR/speed_cuda.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
ls -l "$OUT_DIR"
exit $status
