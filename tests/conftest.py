"""Shared fixtures: the real notMNIST sample, and the backends usable on this machine."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from fastmlp.backends import BACKEND_NAMES, backend_status

REPO = Path(__file__).resolve().parent.parent
SHARED_SAMPLE = REPO.parent / "shared" / "data" / "notmnist"

if not os.environ.get("FASTMLP_DATA") and SHARED_SAMPLE.is_dir():
    os.environ["FASTMLP_DATA"] = str(SHARED_SAMPLE)
# never download in tests
os.environ["FASTMLP_OFFLINE"] = "1"

REQUIRE_GPU = os.environ.get("FASTMLP_REQUIRE_GPU") == "1"
#: FASTMLP_BACKEND restricts the backend-parametrised tests to that backend (the GPU job sets cupy)
ONLY_BACKEND = (os.environ.get("FASTMLP_BACKEND") or "").strip().lower()

#: tolerance of a backend against float64 NumPy, per dtype: (rtol, atol)
TOLERANCE = {"float32": (1e-4, 1e-5), "float64": (1e-9, 1e-12)}


def usable_status(name):
    status = backend_status(name)
    if not status["usable"] and name == "cupy" and REQUIRE_GPU:
        pytest.fail(f"FASTMLP_REQUIRE_GPU=1 but the cupy backend cannot run: {status['reason']}")
    return status


def backend_params(names=BACKEND_NAMES):
    """pytest params over backends, each with a readable id and an honest skip reason."""
    params = []
    for name in names:
        marks = [pytest.mark.gpu] if name == "cupy" else []
        if ONLY_BACKEND and ONLY_BACKEND not in ("auto",) and name != ONLY_BACKEND:
            marks.append(pytest.mark.skip(reason=f"FASTMLP_BACKEND={ONLY_BACKEND} restricts the run to that backend"))
        params.append(pytest.param(name, id=name, marks=marks))
    return params


@pytest.fixture(params=backend_params())
def backend_name(request):
    """Name of each backend in turn; skipped (with the reason) where it cannot run here."""
    status = usable_status(request.param)
    if not status["usable"]:
        pytest.skip(f"{request.param} backend not usable here: {status['reason']}")
    return request.param


@pytest.fixture(params=backend_params([n for n in BACKEND_NAMES if n != "numpy"]))
def fast_backend_name(request):
    """Each backend that overrides the generic steps with kernels (not numpy)."""
    status = usable_status(request.param)
    if not status["usable"]:
        pytest.skip(f"{request.param} backend not usable here: {status['reason']}")
    return request.param


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture(scope="session")
def notmnist():
    """The real 10,000-image notMNIST sample, split 6000 / 2000 / 2000 (float32)."""
    from fastmlp.datasets import load_notmnist

    if not os.environ.get("FASTMLP_DATA"):
        pytest.fail("the notMNIST sample is needed: set FASTMLP_DATA to ../shared/data/notmnist")
    return load_notmnist()


@pytest.fixture(scope="session")
def notmnist64():
    from fastmlp.datasets import load_notmnist

    return load_notmnist(dtype="float64")


def to_host(array):
    """Any backend array -> NumPy (CuPy arrays refuse implicit conversion)."""
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
