#!/usr/bin/env bash
# One device call that checks the GPU paths and records the GPU figures (run on the device, carry
# [".carry", ".whl"]; .carry/data/train/T91 is enough):
#   tools/device/check.sh SMOKE_MINUTES RECIPE.yaml[@LEADER]...
# 1. the recipes train side by side for SMOKE_MINUTES on T91 alone (tools/device/train.sh): the GPU
#    training path end to end (budget, validation, export) and each recipe's it/s while all share the GPU;
# 2. benchmarks/video_pipeline.py: `subpixel video` end to end, 1920x1080 x2 ESPCN, fp16 (PyAV from .whl);
# 3. subpixel bench on CUDA: ESPCN, Sprint, bicubic and RLFN at 960x540 x4, fp16, eager / compiled / CUDA graphs.
# $OUT: runs.tar and summary.txt (1), video_pipeline_*.{json,md} (2), bench_cuda_*.{json,md} (3).
# Optional, first: PROBE="recipes/frvsr-norec_x4.yaml --set batch=8,32 --set amp=off,bf16" times each variant alone
# for 10 s on T91 (tools/device/probe.py; $OUT/probe_<recipe>.json) before the smoke runs share the GPU.
set -uo pipefail
smoke=$1; shift
"${PYTHON:-python3}" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/*.whl && export PYTHONPATH=/tmp/site
source "$(dirname "$0")/env.sh"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv
mkdir -p /tmp/smoke
t91_copy() {  # the recipe with T91 as its only training folder, as /tmp/smoke/NAME
  "${PYTHON:-python3}" - "$1" /tmp/smoke <<'PY'
import sys
from pathlib import Path
import yaml
recipe, folder = Path(sys.argv[1]), Path(sys.argv[2])
raw = yaml.safe_load(recipe.read_text())
t91 = "../shared/data/train/T91"
if raw.get("model") == "frvsr":
    raw["data"] = [t91]
else:
    raw["data"]["train"] = [t91]
(folder / recipe.name).write_text(yaml.safe_dump(raw, sort_keys=False))
PY
}
specs=()
for spec in "$@"; do
  recipe=${spec%@*}
  t91_copy "$recipe"
  specs+=("/tmp/smoke/$(basename "$recipe")${spec#"$recipe"}")
done
if [ -n "${PROBE:-}" ]; then
  echo "== 0. probe: $PROBE"
  read -r -a probe <<< "$PROBE"  # a recipe and its --set options
  t91_copy "${probe[0]}"
  "${PYTHON:-python3}" "$(dirname "$0")/probe.py" "/tmp/smoke/$(basename "${probe[0]}")" "${probe[@]:1}" \
    --seconds 10 --device cuda --out "$out"
fi
echo "== 1. smoke training: ${specs[*]}"
"$(dirname "$0")/train.sh" "$smoke" "${specs[@]}"
echo "== 2. video pipeline"
"${PYTHON:-python3}" benchmarks/video_pipeline.py --device cuda --precision fp16 --batch 8 --preset veryfast --out "$out"
echo "== 3. bench"
"${PYTHON:-python3}" -m subpixel bench --device cuda --models espcn,sprint --peers bicubic,rlfn \
  --engines torch,torch-compile,torch-cudagraph --jobs 960x540x4 --out "$out"
ls -la "$out"
