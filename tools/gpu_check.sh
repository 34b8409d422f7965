#!/usr/bin/env bash
# GPU check (issue 17): on a bare H200 machine without network, from the repository root:
#   1. record nvidia-smi (-q), python / torch / triton / nvcc versions        -> $OUT/env.txt
#   2. build facecore with CUDA for sm_90a (pip, no build isolation)          -> $OUT/build.log
#   3. every GPU test: the CUDA / Triton / gpu rows of tests/ (CuPy DLPack included)
#                                                                             -> $OUT/tests.xml, tests.log
#   4. the GPU benchmark rows, short measuring times                          -> $OUT/bench.json, bench.log
#   5. one line `gpu_check: N passed, N failed, N skipped` (also $OUT/summary.txt); exit 1 on failure.
# Every stage runs under `timeout` within one overall budget (GPU_CHECK_TOTAL_S, 470 s), so the script
# never hangs and ends inside an 8-minute device call. $OUT gets at most 7 files (the device tool
# returns 8).
#
#   tools/gpu_check.sh prepare     here, before the device call: packs the ICT-FaceKit meshes from
#                                  ../shared/data (which does not travel) into build/gpu_check/ (8 MB)
#   device run: command "tools/gpu_check.sh", carry ["build/gpu_check"], timeout_s 540
#   GPU_CHECK_REHEARSE=1 OUT=/tmp/gc tools/gpu_check.sh
#                                  rehearsal on a CPU machine: no nvidia-smi, no install (uses the
#                                  existing .venv), CMake configure + one CUDA object for sm_90a, the
#                                  same pytest selections (mostly skipped) and one tiny CPU benchmark
# Knobs: PYTHON; GPU_CHECK_TOTAL_S; GPU_CHECK_{BUILD,TESTS,BENCH}_S, stage budgets (200, 150, 240 s, each
# cut to what the total leaves); GPU_CHECK_TEST_TIMEOUT, per test (120 s, pytest-timeout when installed);
# GPU_CHECK_WORKERS, pytest-xdist workers for the tests (4: Triton compiles are CPU-bound);
# GPU_CHECK_AUTOTUNE=1 autotunes the Triton attention kernel in the benchmarks (default: one pinned tile
# configuration, FACECORE_TRITON_AUTOTUNE=0, so that its compiles fit the budget; the tests always pin it).
# A warm machine keeps build/gpu-check and Triton's cache: a rerun there skips most compiling.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PACK=build/gpu_check/ict-facekit.tar.xz

if [[ "${1:-}" == prepare ]]; then
  src=${FACECORE_SHARED_DATA:-$ROOT/../shared/data}/ict-facekit
  [[ -f $src/FaceXModel/generic_neutral_mesh.obj ]] || { echo "gpu_check prepare: no ICT-FaceKit at $src"; exit 1; }
  mkdir -p build/gpu_check
  # identity OBJs left out (no GPU row reads them); xz finds the 57 meshes' shared faces: 130 MB -> 8 MB
  (cd "$src/.." && find ict-facekit -maxdepth 1 -type f -print && find ict-facekit/FaceXModel -type f \
    ! -name 'identity[0-9]*' -print) | sort | tar -C "$src/.." -cf - -T - | xz -3 -T1 >"$PACK.tmp" &&
    mv "$PACK.tmp" "$PACK" && echo "gpu_check prepare: wrote $PACK ($(du -h "$PACK" | cut -f1)); carry build/gpu_check"
  exit
fi

REHEARSE=${GPU_CHECK_REHEARSE:-0}
if [[ $REHEARSE == 1 ]]; then
  PY=${PYTHON:-$([[ -x .venv/bin/python ]] && echo "$ROOT/.venv/bin/python" || echo python3)}
else
  PY=${PYTHON:-python3}
fi
OUT=${OUT:?set OUT to the folder for the results (the device tool sets it)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d /tmp/gpu_check.XXXXXX)
TOTAL=${GPU_CHECK_TOTAL_S:-470}
export PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INDEX=1
if ! command -v nvcc >/dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then export PATH=/usr/local/cuda/bin:$PATH; fi
unset TRITON_INTERPRET  # the GPU runs the real Triton kernels (tests/conftest.py sets it without CUDA)
FAILED_STAGES=()  # stages that broke beyond failing tests (build, timeout, nothing collected, ...)
BUILD_OK=1

say() { echo "[gpu_check $(printf '%3d' $SECONDS)s] $*"; }
# budget DEFAULT: seconds a stage may take, capped by what is left of the total (15 s kept for the end)
budget() { local left=$((TOTAL - SECONDS - 15)); echo $(($1 < left ? $1 : left)); }
has() { "$PY" -c "import $1" 2>/dev/null; }
stage_failed() { FAILED_STAGES+=("$1"); say "FAILED: $1"; }
# pytest's exit status: 0 passed, 1 some tests failed (counted from the JUnit XML); else the stage broke
check_rc() { ((rc == 0 || rc == 1)) || stage_failed "$1 (pytest exit $rc: 124 = out of time, 5 = nothing selected)"; }

# ---- 1. environment -------------------------------------------------------------------------
{
  echo "# gpu_check $(date -u +%FT%TZ) rehearse=$REHEARSE commit=$(git rev-parse --short HEAD 2>/dev/null)"
  uname -a; echo "cpus: $(nproc)"
  echo; echo "# nvidia-smi"; nvidia-smi 2>&1 || echo "(nvidia-smi failed or absent)"
  echo; echo "# nvcc"; nvcc --version 2>&1 || echo "(nvcc absent)"
  echo; echo "# cmake / ninja"; cmake --version 2>&1 | head -1; ninja --version 2>&1
  echo; echo "# python packages"
  "$PY" - <<'PY' 2>&1
import importlib, sys
print("python", sys.version.split()[0], sys.executable)
for name in ("torch", "triton", "numpy", "cupy", "nanobind", "scikit_build_core", "pytest", "xdist",
             "pytest_timeout", "pytest_benchmark", "hypothesis"):
    try:
        m = importlib.import_module(name)
        v = getattr(m, "__version__", None)
        if v is None:
            from importlib.metadata import version
            v = version({"xdist": "pytest-xdist", "pytest_timeout": "pytest-timeout"}.get(name, name))
        print(f"{name} {v}")
    except Exception as e:  # noqa: BLE001
        print(f"{name} MISSING ({type(e).__name__})")
import torch
print("torch.version.cuda", torch.version.cuda, "| cuda available", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"device {p.name} sm_{p.major}{p.minor} {p.multi_processor_count} SMs {p.total_memory / 2**30:.0f} GiB")
PY
} >"$OUT/env.txt" 2>&1
grep -E "^(python|torch|triton|cupy|device|torch.version)" "$OUT/env.txt" | sed 's/^/  /'
if [[ $REHEARSE != 1 ]]; then
  nvidia-smi -L >/dev/null 2>&1 || { say "nvidia-smi sees no GPU: not a GPU machine (GPU_CHECK_REHEARSE=1 rehearses on a CPU)"; exit 2; }
  "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" ||
    { say "torch.cuda.is_available() is False with a GPU present: see $OUT/env.txt"; exit 2; }
  { echo; echo "# nvidia-smi -q"; nvidia-smi -q 2>&1; } >>"$OUT/env.txt"
fi

# ---- 2. build -------------------------------------------------------------------------------
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
PIP_BUILD=(-m pip install --no-build-isolation --no-deps --no-index -v .
  -Ccmake.define.FACECORE_CUDA=ON -Ccmake.define.CMAKE_CUDA_ARCHITECTURES=90a -Cbuild-dir=build/gpu-check)
t=$(budget "${GPU_CHECK_BUILD_S:-200}")
if [[ $REHEARSE == 1 ]]; then
  # same pip command as a dry run (checks the config settings), then the CMake configure with CUDA ON
  # for sm_90a and one CUDA object, in a separate build dir; the existing install is what gets tested
  say "build (rehearsal): pip --dry-run, cmake configure + one CUDA object for 90a"
  cu=$(ls -Sr kernels/cuda/*.cu | head -1)  # the smallest kernel file, recompiled every time
  rm -f "build/gpu-check-rehearse/CMakeFiles/facecore_core.dir/$cu.o"
  {
    timeout "$t" "$PY" "${PIP_BUILD[@]}" --dry-run &&
    timeout "$t" cmake -S . -B build/gpu-check-rehearse -G Ninja -DFACECORE_CUDA=ON \
      -DCMAKE_CUDA_ARCHITECTURES=90a -DPython_EXECUTABLE="$PY" &&
    timeout "$t" cmake --build build/gpu-check-rehearse --target \
      "CMakeFiles/facecore_core.dir/$cu.o" -v
  } >"$OUT/build.log" 2>&1 || stage_failed "build rehearsal (see build.log)"
  grep -qE "generate-code=arch=compute_90a,code=\[compute_90a,sm_90a\]" "$OUT/build.log" ||
    stage_failed "build rehearsal: no sm_90a code generation in build.log"
else
  say "build: pip install (CUDA ON, sm_90a, $CMAKE_BUILD_PARALLEL_LEVEL jobs, <= ${t}s) -> build.log"
  if ! timeout -k 10 "$t" "$PY" "${PIP_BUILD[@]}" >"$OUT/build.log" 2>&1; then
    tail -n 30 "$OUT/build.log"
    stage_failed "build (pip install failed or ran past ${t}s; see build.log)"
    BUILD_OK=0
  fi
fi
if ((BUILD_OK)); then
  info=$(cd /tmp && "$PY" -c "import facecore, json; print(facecore.__file__, json.dumps(facecore.build_info()))" 2>&1)
  say "facecore: $info"
  echo "# facecore.build_info(): $info" >>"$OUT/env.txt"
  if [[ $REHEARSE != 1 ]] && ! grep -q '"cuda": true' <<<"$info"; then
    stage_failed "build: facecore.build_info() reports no CUDA kernels"
    BUILD_OK=0
  fi
fi
((BUILD_OK)) || say "stopping: nothing to test without a CUDA build"

# ---- ICT-FaceKit meshes carried as build/gpu_check (tools/gpu_check.sh prepare) ------------------
if [[ -f $PACK ]]; then
  "$PY" -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter='data')" \
    "$PACK" "$WORK/data" && export FACECORE_SHARED_DATA=$WORK/data && say "ICT-FaceKit unpacked from $PACK"
elif [[ $REHEARSE != 1 ]]; then
  say "no $PACK: the ICT rows skip (run 'tools/gpu_check.sh prepare' here and carry build/gpu_check)"
fi

# pytest FILE_STEM ARGS...: one pytest run under its time budget (SIGINT first, so that pytest still
# writes its JUnit XML), log to $WORK/STEM.log; returns pytest's status (0 all passed, 5 none collected)
run_pytest() {
  local stem=$1 t=$2; shift 2
  local opts=(-p no:cacheprovider -q -rfE --junitxml="$WORK/$stem.xml")
  if has pytest_timeout; then opts+=(--timeout="${GPU_CHECK_TEST_TIMEOUT:-120}"); fi
  say "pytest $stem (<= ${t}s): $*"
  timeout -s INT -k 20 "$t" "$PY" -m pytest "${opts[@]}" "$@" >"$WORK/$stem.log" 2>&1
  local rc=$?
  ((rc == 124 || rc == 137)) && echo "gpu_check: pytest stopped at its ${t}s budget" >>"$WORK/$stem.log"
  tail -n 12 "$WORK/$stem.log" | sed 's/^/    /'
  return $rc
}

# ---- 3. GPU tests -------------------------------------------------------------------------------
# The CUDA rows are the backend params with id "cuda", the Triton rows "triton" (on a GPU they run on
# it), GPU-only tests carry "gpu"/"cuda" in their names or the gpu marker; plus the two CPU tests whose
# bodies check more when CUDA is present. FACECORE_TRITON_AUTOTUNE=0: one tile config per kernel.
GPU_K='cuda or triton or gpu or build_info_keys or (test_attention and test_bad_inputs)'
export FACECORE_TRITON_AUTOTUNE=0
if ((BUILD_OK)); then
  t=$(budget "${GPU_CHECK_TESTS_S:-150}")
  xd=()
  if [[ $REHEARSE != 1 ]] && has xdist && ((${GPU_CHECK_WORKERS:-4} > 1)); then
    xd=(-n "${GPU_CHECK_WORKERS:-4}")  # Triton compiles are CPU-bound: compile in parallel
  fi
  run_pytest tests "$t" tests -k "$GPU_K" "${xd[@]}"
  rc=$?
  cp "$WORK/tests.log" "$OUT/tests.log"; cp "$WORK/tests.xml" "$OUT/tests.xml" 2>/dev/null
  check_rc "tests"
fi

# ---- 4. GPU benchmarks ----------------------------------------------------------------------------
# Issue-17 rows, most important first (a row set that runs out of budget cuts only what follows):
BENCH_SETS=(
  "llp benchmarks/test_linear_logprobs.py -k gpu"
  "blend benchmarks/test_blendshape.py -k gpu_and_1024"
  "attn benchmarks/test_attention.py -k gpu_and_4096-64"
  "raster benchmarks/test_rasterize.py -k gpu"
)
BENCH_OPTS=(--benchmark-only --benchmark-min-time=0.0002 --benchmark-max-time=0.25 --benchmark-warmup=on
  --benchmark-warmup-iterations=3 --benchmark-min-rounds=5 --benchmark-sort=name)
: >"$OUT/bench.log"
if ((!BUILD_OK)); then
  :
elif ! has pytest_benchmark; then
  say "pytest-benchmark is not installed: benchmarks skipped" | tee -a "$OUT/bench.log"
else
  bench_end=$((SECONDS + $(budget "${GPU_CHECK_BENCH_S:-240}")))
  [[ $REHEARSE == 1 ]] &&
    BENCH_SETS+=("tiny benchmarks/test_linear_logprobs.py::test_linear_logprobs[facecore-forward-small]")
  for set in "${BENCH_SETS[@]}"; do
    read -r stem path k kexpr <<<"$set"
    args=("$path")
    [[ -n ${k:-} ]] && args+=("$k" "${kexpr//_and_/ and }")
    left=$((bench_end - SECONDS))
    if ((left < 10)); then
      say "benchmarks $stem: skipped, no time left" | tee -a "$OUT/bench.log"
      stage_failed "benchmarks $stem: no time left"
      continue
    fi
    [[ ${GPU_CHECK_AUTOTUNE:-0} == 1 ]] && export FACECORE_TRITON_AUTOTUNE=1
    run_pytest "bench-$stem" "$left" "${args[@]}" "${BENCH_OPTS[@]}" --benchmark-json="$WORK/bench-$stem.json"
    rc=$?
    { echo "===== $stem: ${args[*]} (exit $rc)"; cat "$WORK/bench-$stem.log"; } >>"$OUT/bench.log"
    check_rc "benchmarks $stem"
  done
  # one JSON for all sets: the first file's machine/commit info, every set's benchmarks
  "$PY" - "$OUT/bench.json" "$WORK"/bench-*.json <<'PY' || stage_failed "merging benchmark JSON"
import json, sys
merged = None
for path in sys.argv[2:]:
    try:
        d = json.load(open(path))
    except (OSError, ValueError):
        continue
    if merged is None:
        merged = d
    else:
        merged["benchmarks"] += d["benchmarks"]
json.dump(merged or {"benchmarks": []}, open(sys.argv[1], "w"), indent=1)
print(f"  {len((merged or {'benchmarks': []})['benchmarks'])} benchmark rows -> {sys.argv[1]}")
PY
fi

# ---- 5. summary -----------------------------------------------------------------------------------
"$PY" - "$OUT/summary.txt" "$SECONDS" "${#FAILED_STAGES[@]}" "$WORK"/*.xml <<'PY'
import sys
import xml.etree.ElementTree as ET

out, wall, stage_failures, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
total = {"passed": 0, "failed": 0, "skipped": 0}
lines = []
for path in files:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        lines.append(f"{path}: unreadable ({e})")
        continue
    n = {"passed": 0, "failed": 0, "skipped": 0}
    for suite in root.iter("testsuite"):
        t, f, e, s = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
        n["passed"] += t - f - e - s
        n["failed"] += f + e
        n["skipped"] += s
    for k in n:
        total[k] += n[k]
    name = path.rsplit("/", 1)[-1].removesuffix(".xml")
    lines.append(f"{name}: {n['passed']} passed, {n['failed']} failed, {n['skipped']} skipped")
failed = total["failed"] + stage_failures
line = f"gpu_check: {total['passed']} passed, {failed} failed, {total['skipped']} skipped"
with open(out, "w") as fh:
    fh.write("\n".join(lines + [f"stage failures: {stage_failures}", f"wall: {wall} s", line]) + "\n")
print("\n".join("  " + x for x in lines))
print(line)
sys.exit(1 if failed else 0)
PY
rc=$?
for s in "${FAILED_STAGES[@]}"; do echo "  failed stage: $s" | tee -a "$OUT/summary.txt"; done
say "done in ${SECONDS}s; results in $OUT: $(cd "$OUT" && echo *)"
rm -rf "$WORK"
exit $rc
