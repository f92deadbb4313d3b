"""Shared fixtures: the real notMNIST sample, and the backends usable on this machine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fastmlp.backends import BACKEND_NAMES, DEFAULT

from .helpers import backend_params, require_usable

REPO = Path(__file__).resolve().parent.parent
SHARED_SAMPLE = REPO.parent / "shared" / "data" / "notmnist"

if not os.environ.get("FASTMLP_DATA") and SHARED_SAMPLE.is_dir():
    os.environ["FASTMLP_DATA"] = str(SHARED_SAMPLE)
# never download in tests
os.environ["FASTMLP_OFFLINE"] = "1"


@pytest.fixture(params=backend_params())
def backend_name(request):
    """Name of each backend in turn; skipped (with the reason) where it cannot run here."""
    require_usable(request.param)
    return request.param


@pytest.fixture(params=backend_params([n for n in BACKEND_NAMES if n != DEFAULT]))
def fast_backend_name(request):
    """Each backend that overrides the generic steps with kernels (not the default)."""
    require_usable(request.param)
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


@pytest.fixture(scope="session")
def trained_model(notmnist):
    """A small network trained on the sample's training split (H=100, 100 epochs; ~90% test accuracy),
    on the backend FASTMLP_BACKEND chooses (the default where it is unset)."""
    from fastmlp import MLP

    model = MLP(784, 100, 10, seed=0)
    model.fit(*notmnist.train, epochs=100)
    return model


@pytest.fixture(scope="session")
def trained_model_file(trained_model, tmp_path_factory):
    """The trained model saved as a weights file."""
    path = tmp_path_factory.mktemp("model") / "model.npz"
    trained_model.save(path)
    return path
