#!/usr/bin/env bash
# Measure each recipe's training speed alone on the device, one after another (run on the device):
#   tools/device/pilot.sh SECONDS RECIPE.yaml...
# Each recipe trains for about SECONDS (stopping at a logging step) into a scratch folder, then its
# throughput.json (iterations/s, data-wait share) is summarised into $OUT/pilot.md and pilot.json.
# Use the figures to set each recipe's train.iters to the GPU minutes it is given. Data: .carry/data.
set -uo pipefail
seconds=$1; shift
source "$(dirname "$0")/env.sh"
scratch=$(mktemp -d)
minutes=$("${PYTHON:-python3}" -c "print($seconds / 60)")
for recipe in "$@"; do
  name=$(basename "$recipe" .yaml)
  "${PYTHON:-python3}" -m subpixel train "$recipe" --out "$scratch/$name" --time-limit "$minutes" --quiet \
    --device "${DEVICE:-cuda}" > "$out/pilot_$name.log" 2>&1 || echo "$name failed: see pilot_$name.log"
done
"${PYTHON:-python3}" - "$scratch" "$out" "$@" <<'PY'
import json, sys
from pathlib import Path
scratch, out, recipes = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
rows, lines = {}, ["| recipe | it/s | data wait | ms/step | steps measured |", "|---|---|---|---|---|"]
for recipe in recipes:
    name = Path(recipe).stem
    path = scratch / name / "throughput.json"
    if not path.is_file():
        lines.append(f"| {name} | failed | | | |")
        continue
    s = json.loads(path.read_text())["sessions"][-1]
    rows[name] = s
    lines.append(f"| {name} | {s['iters_per_s']:.1f} | {100 * s['data_wait_share']:.1f}% | "
                 f"{s['step_ms_per_iter']:.1f} | {s['iterations']} |")
(out / "pilot.json").write_text(json.dumps(rows, indent=2) + "\n")
(out / "pilot.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
rm -rf "$scratch"
