"""Helpers the tests share (fixtures live in conftest.py; these are plain functions and constants).

Import them with ``from .helpers import ...``.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import signal
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from fastmlp.backends import BACKEND_NAMES, GPU_CHOICES, backend_status, split_name

REQUIRE_GPU = os.environ.get("FASTMLP_REQUIRE_GPU") == "1"
#: FASTMLP_BACKEND restricts the backend-parametrised tests to that backend (the GPU job sets cupy)
ONLY_BACKEND = (os.environ.get("FASTMLP_BACKEND") or "").strip().lower()
#: backends that need a GPU: marked ``gpu``, and required under FASTMLP_REQUIRE_GPU=1
GPU_BACKENDS = GPU_CHOICES

#: the repository's root folder (bench/ and docs/ beside tests/)
ROOT = Path(__file__).resolve().parents[1]

#: tolerance of a backend against float64 NumPy, per dtype: (rtol, atol)
TOLERANCE = {"float32": (1e-4, 1e-5), "float64": (1e-9, 1e-12)}


def require_usable(name):
    """Skip the calling test, with the reason, unless backend ``name`` can run here.

    Under FASTMLP_REQUIRE_GPU=1 a GPU backend that cannot run fails the test instead."""
    status = backend_status(name)
    if status["usable"]:
        return
    if name in GPU_BACKENDS and REQUIRE_GPU:
        pytest.fail(f"FASTMLP_REQUIRE_GPU=1 but the {name} backend cannot run: {status['reason']}")
    pytest.skip(f"{name} backend not usable here: {status['reason']}")


def backend_params(names=BACKEND_NAMES):
    """pytest params over backends, each with a readable id and an honest skip reason.

    FASTMLP_BACKEND=name:device (e.g. torch:cuda) runs that backend's tests on that device."""
    params = []
    for name in names:
        if ONLY_BACKEND and split_name(ONLY_BACKEND)[0] == name:
            name = ONLY_BACKEND
        marks = [pytest.mark.gpu] if name in GPU_BACKENDS else []
        if ONLY_BACKEND and ONLY_BACKEND not in ("auto",) and name != ONLY_BACKEND:
            marks.append(pytest.mark.skip(reason=f"FASTMLP_BACKEND={ONLY_BACKEND} restricts the run to that backend"))
        params.append(pytest.param(name, id=name, marks=marks))
    return params


def to_host(array):
    """Any backend array -> NumPy (CuPy arrays and GPU tensors refuse implicit conversion)."""
    if hasattr(array, "detach"):  # a PyTorch tensor, on any device
        return array.detach().cpu().numpy()
    return array.get() if hasattr(array, "get") and not isinstance(array, np.ndarray) else np.asarray(array)


def write_idx(path, array, *, magic=None, dtype_byte=0x08, compress=None):
    """Write ``array`` as an MNIST idx file (gzip-compressed for a .gz name unless ``compress`` says)."""
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, dtype_byte, array.ndim) if magic is None else struct.pack(">I", magic)
    header += b"".join(struct.pack(">I", n) for n in array.shape)
    data = header + array.tobytes()
    if compress if compress is not None else str(path).endswith(".gz"):
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


#: runs a command as its own child and writes that child's peak resident memory (ru_maxrss) to a
#: file: measured from a small process, since Linux counts in a process's peak the memory of the
#: process it was forked from (the test runner) up to its exec
_MEASURE = """
import os, resource, sys
report, limit, command = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
pid = os.fork()
if pid == 0:
    if limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.execvp(command[0], command)
_, status, usage = os.wait4(pid, 0)
with open(report, "w") as handle:
    handle.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(args, *, env=None, limit_address_space=None, timeout=300):
    """Run the command ``args`` -> (CompletedProcess with text stdout and stderr, the peak resident
    memory of that command in bytes).

    ``limit_address_space``: bytes of address space (``ulimit -v``) the command gets."""
    with tempfile.TemporaryDirectory() as folder:
        report = os.path.join(folder, "maxrss")
        measured = [sys.executable, "-c", _MEASURE, report, str(limit_address_space or 0), *args]
        result = subprocess.run(measured, capture_output=True, text=True, env=env, timeout=timeout)
        with open(report) as handle:
            peak = int(handle.read())
    return result, peak * (1 if sys.platform == "darwin" else 1024)


def default_signals():
    """For ``preexec_fn``: SIGINT and SIGTERM at their defaults in the child (a background job, as
    CI may run the suite, starts its children with SIGINT ignored, and Python then raises no
    KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def bench_module(name):
    """The script ``name`` of the bench folder (``name`` + ".py"), imported as a module: bench is no package."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
