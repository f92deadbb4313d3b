#!/usr/bin/env bash
# The GPU job: the whole suite on the cupy backend with the GPU required (a missing GPU fails the
# run instead of skipping), then on torch:cuda and jax:gpu where the image has PyTorch or JAX with
# CUDA, then the epoch benchmark: cupy beside numpy in the three precisions (float32, tf32, bf16) at
# H=1000 and H=4096, the other GPU backends at float32, and the N=60000, H=4096 row.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv-gpu}
if [ ! -x "$VENV/bin/python" ] && [ ! -x "$VENV/bin/python3" ]; then
  "$PYTHON" -m venv --system-site-packages "$VENV"   # reuse a preinstalled CuPy where there is one
  "$VENV/bin/python" -m pip install --quiet -e ".[test,bench]" || "$VENV/bin/python" -m pip install --quiet --no-deps -e .
  "$VENV/bin/python" -c "import cupy" 2>/dev/null || "$VENV/bin/python" -m pip install --quiet -e ".[cupy]"
fi
PY="$VENV/bin/python"
[ -x "$PY" ] || PY="$VENV/bin/python3"   # an image's own Python may only be called python3
export FASTMLP_BACKEND=cupy FASTMLP_REQUIRE_GPU=1
"$PY" -m pytest -rs ${PYTEST_ARGS:-}
OTHERS=numpy
for choice in torch:cuda jax:gpu; do
  if FASTMLP_BACKEND= "$PY" -c "import fastmlp; fastmlp.get_backend('$choice')" 2>/dev/null; then
    echo "== the suite on $choice"
    FASTMLP_BACKEND=$choice "$PY" -m pytest -rs ${PYTEST_ARGS:-}
    OTHERS=$OTHERS,$choice
  else
    echo "== $choice not usable in this image (PyTorch / JAX with CUDA missing): not run"
  fi
done
unset FASTMLP_BACKEND
"$PY" -m fastmlp info
"$PY" -m fastmlp bench --backends numpy,cupy --precision float32,tf32,bf16 --hidden 1000,4096 --n 6000 \
  --epochs ${BENCH_EPOCHS:-10} --json "${BENCH_JSON:-bench-gpu.json}"
"$PY" -m fastmlp bench --backends "$OTHERS,cupy" --dtype float32 --hidden 1000 --epochs ${BENCH_EPOCHS:-10} \
  --json "${BENCH_JSON_LIBRARIES:-bench-gpu-libraries.json}"
"$PY" -m fastmlp bench --backends cupy --precision float32,tf32,bf16 --hidden 4096 --n 60000 \
  --epochs ${BENCH_EPOCHS:-10} --json "${BENCH_JSON_LARGE:-bench-gpu-60000.json}"
