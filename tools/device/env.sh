# Sourced by the device scripts: $out (results, $OUT there), repository root as the working
# directory, ../shared/data pointing at .carry/data (pack.sh), and subpixel importable from src/.
out=${OUT:-/tmp/out}; mkdir -p "$out"
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd); cd "$root"
mkdir -p ../shared && { [ -e ../shared/data ] || ln -s "$root/.carry/data" ../shared/data; }
export PYTHONPATH=$root/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
