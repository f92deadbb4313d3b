"""Seconds per epoch (N=6000 train, 2000 valid) and of its three large products alone.

Each test times ``EpochRunner.epoch`` — the training loop's own full-batch epoch, validation
metrics and the device-to-host copy included, the device synchronised inside the timed call — with
the data already on the device and warm-up rounds first (JIT compile, GPU context). The
``products`` tests time X @ W1, Xᵀ @ d1 and X_valid @ W1 alone, into the same buffers: the floor.
Benchmarks are grouped by configuration, so each table reads across backends.
"""

import functools

import pytest

from fastmlp import _sysinfo
from fastmlp.backends import BACKEND_NAMES, backend_status
from fastmlp.benchmark import EpochRunner, epoch_flops

N, N_VALID = 6000, 2000
HIDDEN = (100, 1000, 4000)
DTYPES = ("float32", "float64")


@functools.cache
def status(name):
    return backend_status(name)


@functools.lru_cache(maxsize=2)
def runner(name, dtype, hidden):
    """One EpochRunner per configuration (kept while its tests run)."""
    return EpochRunner(name, n=N, n_valid=N_VALID, hidden=hidden, dtype=dtype)


def configurations():
    for dtype in DTYPES:
        for hidden in HIDDEN:
            for name in BACKEND_NAMES:
                yield pytest.param(name, dtype, hidden, id=f"{dtype}-H{hidden}-{name}")


def record(benchmark, name, dtype, hidden, what):
    backend = runner(name, dtype, hidden).backend
    benchmark.group = f"{what} {dtype} N={N} H={hidden}"
    benchmark.extra_info.update(backend.describe())
    benchmark.extra_info.update(_sysinfo.machine_info())
    benchmark.extra_info.update(dtype=dtype, n=N, n_valid=N_VALID, hidden=hidden, flops=epoch_flops(N, N_VALID, hidden))


def time_step(benchmark, name, dtype, hidden, what):
    """Time ``EpochRunner.<what>`` ('epoch' or 'products') for one configuration."""
    if not status(name)["usable"]:
        pytest.skip(f"{name}: {status(name)['reason']}")
    run = runner(name, dtype, hidden)
    record(benchmark, name, dtype, hidden, what)
    rounds = 3 if hidden >= 4000 else 7
    benchmark.pedantic(getattr(run, what), rounds=rounds, warmup_rounds=2, iterations=1)


@pytest.mark.parametrize("name, dtype, hidden", configurations())
def test_epoch(benchmark, name, dtype, hidden):
    time_step(benchmark, name, dtype, hidden, "epoch")
    benchmark.extra_info["samples_per_s"] = N / benchmark.stats.stats.median


@pytest.mark.parametrize("name, dtype, hidden", configurations())
def test_products(benchmark, name, dtype, hidden):
    time_step(benchmark, name, dtype, hidden, "products")
