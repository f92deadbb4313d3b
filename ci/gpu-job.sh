#!/usr/bin/env bash
# The GPU job, in parts that each fit well inside the 600 s a command may run on a lent machine:
#   suite   the whole suite on cupy with the GPU required (a missing GPU fails instead of skipping)
#   torch   the suite on torch:cuda, where the image's PyTorch has CUDA (else it says so)
#   jax     the suite on jax:gpu, where the image's JAX has CUDA (else it says so)
#   bench   fastmlp info, then the epoch benchmark: cupy beside numpy in the three precisions at
#           H=1000 and H=4096, the other GPU backends (torch:cuda, jax:gpu) beside it in the three
#           precisions at H=1000, and cupy alone at N=60000, H=4096; each table says which products
#           ran without their epilogue
# bash ci/gpu-job.sh [PART ...] runs the parts named, in order (none: all four). Every file it
# writes goes under $OUT (default gpu-results/): pytest-<backend>.xml, info.txt, bench-gpu.json,
# bench-gpu-libraries.json, bench-gpu-60000.json.
# GPU_DRY_RUN=1 rehearses the parts on a machine without a GPU (see ci/gpu-check.sh dry-run):
# pytest only collects the suite, and the benchmarks run a tiny size with numpy standing in.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv-gpu}
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
if [ ! -x "$VENV/bin/python" ] && [ ! -x "$VENV/bin/python3" ]; then
  "$PYTHON" -m venv --system-site-packages "$VENV"   # reuse a preinstalled CuPy where there is one
  "$VENV/bin/python" -m pip install --quiet -e ".[test,bench]" || "$VENV/bin/python" -m pip install --quiet --no-deps -e .
  "$VENV/bin/python" -c "import cupy" 2>/dev/null || "$VENV/bin/python" -m pip install --quiet -e ".[cupy]"
fi
PY="$VENV/bin/python"
[ -x "$PY" ] || PY="$VENV/bin/python3"   # an image's own Python may only be called python3

if [ "${GPU_DRY_RUN:-0}" = 1 ]; then
  COLLECT=(--collect-only -q); REQUIRE_GPU=0; EPOCHS=1; N=64; VALID=32; N_LARGE=96; HIDDEN=16,32; H_LARGE=16
  STAND_IN=numpy,; PRECISIONS=float32   # numpy offers float32 only: bench refuses a precision nobody times
else
  COLLECT=(); REQUIRE_GPU=1; EPOCHS=${BENCH_EPOCHS:-10}; N=6000; VALID=2000; N_LARGE=60000; HIDDEN=1000,4096
  H_LARGE=4096; STAND_IN=; PRECISIONS=float32,tf32,bf16
fi

usable() {   # those of the backend choices "$@" that can run in this image, comma-separated
  FASTMLP_BACKEND= "$PY" -c 'import sys; from fastmlp.backends import backend_status as status
print(",".join(c for c in sys.argv[1:] if status(c)["usable"]))' "$@"
}

suite_on() {   # the whole suite with FASTMLP_BACKEND=$1, the GPU required
  echo "== the suite on $1"
  # shellcheck disable=SC2086  # PYTEST_ARGS: several words on purpose
  FASTMLP_BACKEND=$1 FASTMLP_REQUIRE_GPU=$REQUIRE_GPU "$PY" -m pytest -rs -p no:cacheprovider "${COLLECT[@]}" \
    --junitxml="$OUT/pytest-${1/:/-}.xml" ${PYTEST_ARGS:-}
}

library_suite() {   # torch:cuda or jax:gpu, where the image has it
  if [ -n "$(usable "$1")" ]; then
    suite_on "$1"
  else
    echo "== $1 not usable in this image (PyTorch / JAX with CUDA missing): not run"
  fi
}

bench() {
  "$PY" -m fastmlp info | tee "$OUT/info.txt"
  "$PY" -m fastmlp bench --backends numpy,cupy --precision "$PRECISIONS" --hidden "$HIDDEN" --n "$N" \
    --valid "$VALID" --epochs "$EPOCHS" --json "$OUT/bench-gpu.json"
  local others
  others=$(usable torch:cuda jax:gpu)
  "$PY" -m fastmlp bench --backends "numpy,${others:+$others,}cupy" --precision "$PRECISIONS" \
    --hidden "${HIDDEN%%,*}" --n "$N" --valid "$VALID" --epochs "$EPOCHS" --json "$OUT/bench-gpu-libraries.json"
  "$PY" -m fastmlp bench --backends "${STAND_IN}cupy" --precision "$PRECISIONS" --hidden "$H_LARGE" \
    --n "$N_LARGE" --valid "$VALID" --epochs "$EPOCHS" --json "$OUT/bench-gpu-60000.json"
}

[ $# -gt 0 ] || set -- suite torch jax bench
for part in "$@"; do
  start=$SECONDS
  case $part in
    suite) suite_on cupy ;;
    torch) library_suite torch:cuda ;;
    jax) library_suite jax:gpu ;;
    bench) bench ;;
    *) echo "unknown part '$part'; the parts are: suite torch jax bench" >&2; exit 2 ;;
  esac
  echo "== part $part took $((SECONDS - start)) s"
done
