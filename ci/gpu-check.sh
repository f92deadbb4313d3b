#!/usr/bin/env bash
# The GPU job on a lent machine whose image has no network (../shared/docs/gpu.md, "Using the lent
# machine"), one part per call so that each returns well inside the 600 s a command may run:
#   bash ci/gpu-check.sh prepare        here, with the network: wheels and the notMNIST sample
#                                       into .gpu-carry/
#   bash ci/gpu-check.sh run PART ...   on the card, carrying .gpu-carry (run tool: carry
#                                       [".gpu-carry"]); PART is suite, torch, jax or bench
#                                       (ci/gpu-job.sh says what each runs). Installs the wheels
#                                       into a venv over the image's Python (once per machine), then
#                                       runs the parts under one time limit (CALL_LIMIT, 480 s):
#                                       a part still running then is interrupted and says so.
#   bash ci/gpu-check.sh dry-run        the whole sequence rehearsed without a GPU (the CPU job
#                                       runs it): every part with GPU_DRY_RUN=1, then a check that
#                                       every file landed under $OUT and nowhere else
# Every file goes under $OUT (default gpu-results/; the run tool brings $OUT back): each part's
# output as <part>.log and the files ci/gpu-job.sh writes. The "GPU report:" lines of the tests
# (what only a card can tell) are repeated at the end of the output.
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=${GPU_CARRY:-.gpu-carry}
PARTS="suite torch jax bench"

usage() {
  echo "usage: bash ci/gpu-check.sh prepare | run PART... (PART: ${PARTS// /, }) | dry-run" >&2
  exit 2
}

prepare() {
  rm -rf "$CARRY" && mkdir -p "$CARRY/wheels" "$CARRY/notmnist"
  local py=${PYTHON:-python3} version
  # wheels the image lacks; nvmath-python and ml_dtypes are built per Python version, so they come
  # for each of PYVERS (the image's Python picks its own; others are skipped when installing).
  # nvmath's CUDA libraries (cuda-bindings, cuda-core, cuda-pathfinder) are on the image.
  "$py" -m pip download --quiet --no-deps -d "$CARRY/wheels" array-api-compat array-api-strict pooch platformdirs mpmath
  for version in ${PYVERS:-3.10 3.11 3.12 3.13}; do
    "$py" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$version" \
      --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d "$CARRY/wheels" ml_dtypes nvmath-python
  done
  "$py" -m pip wheel --quiet --no-deps -w "$CARRY/wheels" .
  cp ../shared/data/notmnist/* "$CARRY/notmnist/"
  ls -la "$CARRY/wheels"
}

gpu_venv() {   # sets VENV: a venv over the image's Python (CuPy, NumPy, pytest ... there), the carried wheels in it
  VENV=.venv-gpu
  local stamp=$VENV/.carried wheel
  if [ -f "$stamp" ] && [ -z "$(find "$CARRY/wheels" -name '*.whl' -newer "$stamp")" ]; then
    return   # a warm machine: installed by an earlier call
  fi
  rm -rf "$VENV"
  if ! python3 -m venv --system-site-packages "$VENV" 2>/dev/null; then
    VENV=$(python3 -c 'import sys; print(sys.prefix)') stamp=
  fi
  local py="$VENV/bin/python"; [ -x "$py" ] || py="$VENV/bin/python3"
  for wheel in "$CARRY"/wheels/*.whl; do   # one by one: a wheel the image already has may be skipped
    [ -e "$wheel" ] || continue
    "$py" -m pip install --quiet --no-index --no-deps "$wheel" || echo "not installed: $wheel"
  done
  [ -z "$stamp" ] || touch "$stamp"
}

run() {
  [ $# -gt 0 ] || usage
  local part failed=0 left limit=${CALL_LIMIT:-480}
  for part in "$@"; do [[ " $PARTS " == *" $part "* ]] || usage; done
  [ -n "$(ls "$CARRY"/notmnist/*images* 2>/dev/null)" ] || {
    echo "no notMNIST sample in $CARRY/notmnist: run bash ci/gpu-check.sh prepare first, and carry $CARRY" >&2
    exit 2
  }
  export OUT=${OUT:-gpu-results} FASTMLP_DATA
  mkdir -p "$OUT"
  FASTMLP_DATA=$(cd "$CARRY/notmnist" && pwd)
  if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; fi
  [ -n "${VENV:-}" ] || gpu_venv
  export VENV PYTEST_ARGS=${PYTEST_ARGS--s}   # -s: the tests' "GPU report:" lines reach the log
  for part in "$@"; do
    left=$((limit - SECONDS))
    if [ "$left" -lt 30 ]; then
      echo "== part $part not started: this call's $limit s are spent; run it in a call of its own" | tee "$OUT/$part.log"
      failed=1
      continue
    fi
    # SIGINT: pytest stops and prints what it has; a benchmark stops with the rows it timed
    timeout --signal=INT --kill-after=20 "$left" bash ci/gpu-job.sh "$part" 2>&1 | tee "$OUT/$part.log" || {
      echo "== part $part failed or ran out of time (exit $?)"
      failed=1
    }
  done
  echo "== GPU report (what only a card can tell):"
  grep -h "GPU report:\|products without their epilogue" "$OUT"/*.log | sort -u || echo "(none in this call)"
  return $failed
}

dry_run() {   # without a GPU: a carry holding only the sample, this machine's test venv, tiny sizes
  local expected found stray
  scratch=$(mktemp -d)   # global: the trap runs after this function returns
  trap 'rm -rf "$scratch"' EXIT
  mkdir -p "$scratch/carry/notmnist" "$scratch/carry/wheels"
  cp "${FASTMLP_DATA:-fastmlp/data/notmnist}"/*.gz "$scratch/carry/notmnist/"
  touch "$scratch/started"
  GPU_CARRY="$scratch/carry" OUT="$scratch/out" GPU_DRY_RUN=1 VENV=${VENV:-.venv} PYTEST_ARGS= CALL_LIMIT=300 \
    bash ci/gpu-check.sh run $PARTS
  expected="bench-gpu-60000.json bench-gpu-libraries.json bench-gpu.json bench.log info.txt jax.log pytest-cupy.xml suite.log torch.log"
  found=$(cd "$scratch/out" && ls | sort | xargs)
  [ "$found" = "$expected" ] || { echo "dry run: expected under \$OUT: $expected; found: $found" >&2; exit 1; }
  # caches are no output: Python's bytecode, the venv's, and Hypothesis's (written while collecting)
  stray=$(find . -newer "$scratch/started" -type f -not -path './.git/*' -not -path '*/__pycache__/*' \
    -not -path './.venv*' -not -path './.hypothesis/*')
  [ -z "$stray" ] || { echo "dry run: files written outside \$OUT: $stray" >&2; exit 1; }
  echo "== dry run: every part ran; under \$OUT: $found; nothing written elsewhere"
}

case "${1:-}" in
  prepare) prepare ;;
  run) shift; run "$@" ;;
  dry-run) dry_run ;;
  *) usage ;;
esac
