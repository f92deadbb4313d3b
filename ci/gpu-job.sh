#!/usr/bin/env bash
# The GPU job: the whole suite on the cupy backend with the GPU required (a missing GPU fails the
# run instead of skipping), then on torch:cuda and jax:gpu where the image has PyTorch or JAX with
# CUDA, then the epoch benchmark with the GPU backends beside numpy.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv-gpu}
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv --system-site-packages "$VENV"   # reuse a preinstalled CuPy where there is one
  "$VENV/bin/python" -m pip install --quiet -e ".[test,bench]" || "$VENV/bin/python" -m pip install --quiet --no-deps -e .
  "$VENV/bin/python" -c "import cupy" 2>/dev/null || "$VENV/bin/python" -m pip install --quiet -e ".[cupy]"
fi
export FASTMLP_BACKEND=cupy FASTMLP_REQUIRE_GPU=1
"$VENV/bin/python" -m pytest -rs ${PYTEST_ARGS:-}
BENCH=numpy,cupy
for choice in torch:cuda jax:gpu; do
  if FASTMLP_BACKEND= "$VENV/bin/python" -c "import fastmlp; fastmlp.get_backend('$choice')" 2>/dev/null; then
    echo "== the suite on $choice"
    FASTMLP_BACKEND=$choice "$VENV/bin/python" -m pytest -rs ${PYTEST_ARGS:-}
    BENCH=$BENCH,$choice
  else
    echo "== $choice not usable in this image (PyTorch / JAX with CUDA missing): not run"
  fi
done
unset FASTMLP_BACKEND
"$VENV/bin/fastmlp" bench --backends $BENCH --dtype float32 --hidden 1000 --epochs ${BENCH_EPOCHS:-10} \
  --json "${BENCH_JSON:-bench-gpu.json}"
