#!/usr/bin/env bash
# Train several recipes side by side on one GPU within a fixed time (run on the device):
#   tools/device/train.sh MINUTES RECIPE.yaml[@LEADER]...
# Each recipe trains in its own process into .carry/runs/<recipe name> (--resume continues an earlier
# chunk) with --budget: its train.iters is fitted to its measured speed so that it ends, exported as
# <run>/<recipe name>.safetensors with its card, within MINUTES (subpixel.train.budget). RECIPE@LEADER
# trains for the iterations of run LEADER (an ablation). --time-limit is a backstop: a run that still
# overruns stops with a checkpoint. $OUT gets summary.txt and runs.tar: each run with its train.log, without
# TensorBoard logs and step checkpoints (an unexported run keeps checkpoints/best.pt, which
# subpixel.train.export_best turns into weights, and its newest step checkpoint, which --resume continues),
# plus runs/device/ (versions, nvidia-smi samples).
# Data: .carry/data (pack.sh).
set -uo pipefail
minutes=$1; shift
source "$(dirname "$0")/env.sh"
logs=.carry/runs/device; mkdir -p "$logs"
"${PYTHON:-python3}" -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')" \
  | tee "$logs/env.txt"
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv -l 15 > "$logs/gpu_util.csv" 2>/dev/null &
smi=$!
backstop=$("${PYTHON:-python3}" -c "print($minutes + 0.75)")
pids=() names=()
for spec in "$@"; do
  recipe=${spec%@*}
  name=$(basename "$recipe" .yaml)
  follow=()
  [ "$spec" != "$recipe" ] && follow=(--follow ".carry/runs/${spec##*@}")
  OMP_NUM_THREADS=${THREADS:-2} "${PYTHON:-python3}" -m subpixel train "$recipe" --out ".carry/runs/$name" --resume \
    --budget "$minutes" "${follow[@]}" --time-limit "$backstop" --device "${DEVICE:-cuda}" \
    --export ".carry/runs/$name/$name.safetensors" > "$logs/$name.log" 2>&1 &
  pids+=($!) names+=("$name")
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
kill "$smi" 2>/dev/null
for name in "${names[@]}"; do
  echo "== $name"; tr '\r' '\n' < "$logs/$name.log" | grep -aE "budget|val Y-PSNR|throughput|time limit|rror" | tail -n 5
  [ -n "$(ls ".carry/runs/$name"/*.safetensors 2>/dev/null)" ] && rm -f ".carry/runs/$name/checkpoints/best.pt"
done 2>&1 | tee "$out/summary.txt"
skip=()  # step checkpoints left out: all but an unexported run's newest (the next chunk resumes from it)
for run in .carry/runs/*/; do
  keep=""
  [ -z "$(ls "$run"*.safetensors 2>/dev/null)" ] && keep=$(ls "$run"checkpoints/iter_*.pt 2>/dev/null | sort | tail -n 1)
  for ckpt in "$run"checkpoints/iter_*.pt; do
    [ -e "$ckpt" ] && [ "$ckpt" != "$keep" ] && skip+=(--exclude="${ckpt#.carry/}")
  done
done
tar -C .carry --exclude='*/tb' "${skip[@]}" -cf "$out/runs.tar" runs
ls -la "$out"
exit $status
