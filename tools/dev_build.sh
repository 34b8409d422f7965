#!/usr/bin/env bash
# Editable developer build into .venv, serialised with a lock so parallel shells don't collide.
#   tools/dev_build.sh            CPU-only (fast)
#   FACECORE_CUDA=AUTO tools/dev_build.sh   also compile the CUDA kernels (CMAKE_CUDA_ARCHITECTURES=90)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p build
: "${FACECORE_CUDA:=OFF}"
exec flock build/.dev.lock .venv/bin/pip install --no-build-isolation --no-deps -e . \
  -Ccmake.define.FACECORE_CUDA="$FACECORE_CUDA" -Ccmake.define.CMAKE_CUDA_ARCHITECTURES=90 \
  -Cbuild-dir=build/dev-cuda-"$FACECORE_CUDA" -q
