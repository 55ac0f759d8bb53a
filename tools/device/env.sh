# Sourced by the device scripts: $out (results, $OUT there), repository root as the working
# directory, ../shared/data pointing at .carry/data (pack.sh), runs/ at .carry/runs (so a stage-2 recipe's
# init: runs/<stage 1>/<stage 1>.safetensors finds train.sh's export), and subpixel importable from src/.
out=${OUT:-/tmp/out}; mkdir -p "$out"
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd); cd "$root"
mkdir -p ../shared && { [ -e ../shared/data ] || ln -s "$root/.carry/data" ../shared/data; }
mkdir -p .carry/runs && { [ -e runs ] || ln -s .carry/runs runs; }
export PYTHONPATH=$root/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
