#!/usr/bin/env bash
# Prepare .carry/ (git-ignored) for training on a device machine that cannot see ../shared:
#   tools/device/pack.sh [RUNS_TAR]
# copies the training images (../shared/data/train, ~36 MiB) into .carry/data/train, the pypng wheel that
# `import subpixel` needs and the device lacks into .carry/whl (env.sh installs it there), and, when
# RUNS_TAR (a runs.tar brought back by tools/device/train.sh) is given, unpacks it into .carry/runs.
# Then call the device with carry [".carry"] and run tools/device/train.sh there.
set -euo pipefail
runs_tar=${1:+$(realpath "$1")}  # before the cd: a relative path is the caller's
cd "$(git rev-parse --show-toplevel)"
src=${SUBPIXEL_DATA:-../shared/data}
mkdir -p .carry/data
rm -rf .carry/data/train && cp -a "$src/train" .carry/data/train
rm -rf .carry/whl && python3 -m pip download -q --no-deps --only-binary=:all: -d .carry/whl pypng
if [ -n "$runs_tar" ]; then
  mkdir -p .carry/runs
  tar -C .carry -xf "$runs_tar"
fi
du -sh .carry
