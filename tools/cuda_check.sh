#!/usr/bin/env bash
# Compile everything with the CUDA kernels (sm_90 only, as CI does) in build/cuda-check and load the
# resulting extension, so a missing *_cuda definition fails here instead of at import time in CI.
# Does not touch the editable install in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-$PWD/.venv/bin/python}
mkdir -p build
flock build/.cuda-check.lock bash -c "
  cmake -S . -B build/cuda-check -DFACECORE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DPython_EXECUTABLE=$py -DCMAKE_BUILD_TYPE=Release >/dev/null &&
  cmake --build build/cuda-check -j2 2>&1 | grep -E 'error|warning|Error' || true
  test \${PIPESTATUS[0]} -eq 0 || cmake --build build/cuda-check -j1"
so=$(ls build/cuda-check/_C*.so)
$py - "$so" <<'PY'
import importlib.util, sys
spec = importlib.util.spec_from_file_location("_C", sys.argv[1])
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
info = m.build_info()
assert info["cuda"], info
print("cuda-check: extension loads;", info)
PY
