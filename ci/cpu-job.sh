#!/usr/bin/env bash
# The CPU job: the whole test suite (numpy, numba, torch and jax backends, the documentation's
# examples), the documentation site built strictly, the GPU job's scripts rehearsed without a GPU,
# then the cupy backend's selection checks with CuPy installed on a machine without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
echo "== lint: ruff and mypy (make lint)"
make lint PYTHON="$PYTHON"

echo "== test suite (README: make test)"
make test PYTHON="$PYTHON"

echo "== the documentation site, strictly: no broken link, no unresolved API name (make docs)"
make docs PYTHON="$PYTHON"

echo "== the GPU job's parts rehearsed without a GPU (bash ci/gpu-check.sh dry-run)"
VENV=.venv bash ci/gpu-check.sh dry-run

echo "== CuPy installed, no GPU: selecting cupy must fail early with the no-device error"
rm -rf .venv-cupy-cpu
"$PYTHON" -m venv .venv-cupy-cpu
.venv-cupy-cpu/bin/python -m pip install --quiet --upgrade pip
.venv-cupy-cpu/bin/python -m pip install --quiet -e ".[test,cupy]"
.venv-cupy-cpu/bin/python -m pytest -p no:cacheprovider tests/test_backends.py -rs
rm -rf .venv-cupy-cpu
