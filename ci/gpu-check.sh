#!/usr/bin/env bash
# Run the GPU job on a lent machine whose image has no network (docs: ../shared/docs/gpu.md,
# "Using the lent machine"). Prepare here, on the machine with the network:
#   bash ci/gpu-check.sh prepare     # wheels into .gpu-carry/, the notMNIST sample beside them
# then run on the device, carrying .gpu-carry (run tool: carry [".gpu-carry"]):
#   bash ci/gpu-check.sh run         # installs the wheels into the image's Python, runs ci/gpu-job.sh
# Results: the pytest summary, `fastmlp info`, two bench tables; JSON files under $OUT when set.
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=.gpu-carry
case "${1:-}" in
  prepare)
    rm -rf "$CARRY" && mkdir -p "$CARRY/wheels" "$CARRY/notmnist"
    PY=${PYTHON:-python3}
    # wheels the image lacks; nvmath-python and ml_dtypes are built per Python version, so they come
    # for each of PYVERS (the image's Python picks its own; others are skipped when installing).
    # nvmath's CUDA libraries (cuda-bindings, cuda-core, cuda-pathfinder) are on the image.
    "$PY" -m pip download --quiet --no-deps -d "$CARRY/wheels" array-api-compat array-api-strict pooch platformdirs mpmath
    for version in ${PYVERS:-3.10 3.11 3.12 3.13}; do
      "$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$version" \
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d "$CARRY/wheels" ml_dtypes nvmath-python
    done
    "$PY" -m pip wheel --quiet --no-deps -w "$CARRY/wheels" .
    cp ../shared/data/notmnist/* "$CARRY/notmnist/"
    ls -la "$CARRY/wheels" ;;
  run)
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
    # a venv over the image's Python (CuPy, NumPy, pytest ... already there), else that Python itself
    rm -rf .venv-gpu
    if python3 -m venv --system-site-packages .venv-gpu 2>/dev/null; then
      VENV=.venv-gpu
    else
      VENV=$(python3 -c 'import sys; print(sys.prefix)')
    fi
    PY="$VENV/bin/python"; [ -x "$PY" ] || PY="$VENV/bin/python3"
    for wheel in "$CARRY"/wheels/*.whl; do   # one by one: a wheel the image already has may be skipped
      "$PY" -m pip install --quiet --no-index --no-deps "$wheel" || echo "not installed: $wheel"
    done
    export FASTMLP_DATA="$PWD/$CARRY/notmnist"
    BENCH_JSON="${OUT:-.}/bench-gpu.json" BENCH_JSON_LARGE="${OUT:-.}/bench-gpu-60000.json" \
      PYTEST_ARGS="-p no:cacheprovider -s" VENV="$VENV" bash ci/gpu-job.sh ;;
  *)
    echo "usage: bash ci/gpu-check.sh prepare|run" >&2; exit 2 ;;
esac
