# Sourced by the device scripts: $out (results, $OUT there), repository root as the working
# directory, ../shared/data pointing at .carry/data (pack.sh), runs/ at .carry/runs (so a stage-2 recipe's
# init: runs/<stage 1>/<stage 1>.safetensors finds train.sh's export), and subpixel importable from src/.
out=${OUT:-/tmp/out}; mkdir -p "$out"
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd); cd "$root" || exit 1
mkdir -p ../shared && { [ -e ../shared/data ] || ln -s "$root/.carry/data" ../shared/data; }
mkdir -p .carry/runs && { [ -e runs ] || ln -s .carry/runs runs; }
export PYTHONPATH=$root/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
if ls .carry/whl/*.whl >/dev/null 2>&1; then  # pypng (pack.sh): pure Python, absent from the device's image
  "${PYTHON:-python3}" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/carry-site .carry/whl/*.whl && export PYTHONPATH=$PYTHONPATH:/tmp/carry-site
fi
