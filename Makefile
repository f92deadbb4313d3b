# Each target sets itself up: a virtual environment in .venv with fastmlp and its extras.
PYTHON ?= python3
VENV ?= .venv
EXTRAS ?= numba,torch,jax,test,bench,sklearn,dask,onnx,serve,lint,docs,release
# installed before the extras: the CPU-only PyTorch build (an unpinned torch on Linux is the CUDA
# build, several GB); elsewhere e.g. TORCH="torch --index-url https://download.pytorch.org/whl/cpu"
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
# FASTMLP_DATA if set, else the notMNIST sample beside this checkout when there is one, else (unset) the copy shipped in the package
SAMPLE := $(abspath ../shared/data/notmnist)
export FASTMLP_DATA ?= $(if $(wildcard $(SAMPLE)),$(SAMPLE),)

.PHONY: train test lint docs docs-serve dist bench bench-pytest info clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(if $(findstring torch,$(EXTRAS)),$(BIN)/python -m pip install --quiet $(TORCH))
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

## train on the notMNIST sample with the reference assignment's settings (200 epochs, H=1000, lr 0.1, momentum 0.9)
train: $(BIN)/.installed
	$(BIN)/fastmlp train $(ARGS)

## run the test suite (CPU only; parametrised over every usable backend)
test: $(BIN)/.installed
	$(BIN)/python -m pytest $(ARGS)

## ruff (lint and format) and mypy, with the settings in pyproject.toml (also: pre-commit install)
lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## the documentation site into site/ (broken links and unresolved API names fail it); docs-serve: at http://127.0.0.1:8000/
## (NO_MKDOCS_2_WARNING quiets Material's notice about its end of life, printed at every build)
docs: $(BIN)/.installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict $(ARGS)

docs-serve: $(BIN)/.installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve $(ARGS)

## the wheel and the source distribution into dist/, checked by twine
dist: $(BIN)/.installed
	rm -rf dist
	$(BIN)/python -m build --no-isolation --outdir dist .
	$(BIN)/twine check --strict dist/*

## compare backends side by side, with PyTorch's and JAX's own loops (fastmlp bench --peers)
bench: $(BIN)/.installed
	$(BIN)/fastmlp bench --backends all --peers --json bench-results.json --plot bench-results.png $(ARGS)

## the pytest-benchmark suite
bench-pytest: $(BIN)/.installed
	$(BIN)/python -m pytest bench/ --benchmark-only $(ARGS)

info: $(BIN)/.installed
	$(BIN)/fastmlp info

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis .benchmarks site dist build
