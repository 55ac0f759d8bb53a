#!/usr/bin/env bash
# Train several recipes side by side on one GPU for a fixed time, resumably (run on the device):
#   tools/device/train.sh MINUTES RECIPE.yaml...
# Each recipe trains in its own process into .carry/runs/<recipe name> with --resume and
# --time-limit MINUTES, so a run stops with a checkpoint and the next call continues it; a run
# that reaches its iterations exports <run>/<recipe name>.safetensors with its model card.
# Logs, nvidia-smi samples and runs.tar (every run folder) go to $OUT; unpack runs.tar locally
# with tools/device/pack.sh runs.tar before the next call. Data: .carry/data (pack.sh).
set -uo pipefail
minutes=$1; shift
source "$(dirname "$0")/env.sh"
"${PYTHON:-python3}" -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')" \
  | tee "$out/env.txt"
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv -l 30 > "$out/gpu_util.csv" 2>/dev/null &
smi=$!
pids=()
for recipe in "$@"; do
  name=$(basename "$recipe" .yaml)
  "${PYTHON:-python3}" -m subpixel train "$recipe" --out ".carry/runs/$name" --resume --time-limit "$minutes" \
    --device "${DEVICE:-cuda}" --export ".carry/runs/$name/$name.safetensors" > "$out/$name.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
kill "$smi" 2>/dev/null
for recipe in "$@"; do
  name=$(basename "$recipe" .yaml)
  echo "== $name"; tr '\r' '\n' < "$out/$name.log" | grep -aE "val Y-PSNR|throughput|time limit|rror" | tail -n 4
done
tar -C .carry -cf "$out/runs.tar" runs
exit $status
