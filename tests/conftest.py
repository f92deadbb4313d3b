"""Shared fixtures: the real notMNIST sample, and the backends usable on this machine.

The sample comes from ``FASTMLP_DATA`` when it is set (``make`` and ``.ci/run`` point it at
``../shared/data/notmnist`` when that exists), else from the copy shipped inside the package, so
the suite runs anywhere. Tests about reading the sample through ``FASTMLP_DATA`` use
:func:`external_sample`: skipped, with the reason, where it is not set, and failed under
``CI=true``. No path outside the checkout is hard-wired.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fastmlp.backends import BACKEND_NAMES, DEFAULT
from fastmlp.datasets import EMBEDDED_SAMPLE, SAMPLE_FILES

from .helpers import backend_params, require_usable

IN_CI = os.environ.get("CI", "").strip().lower() == "true"
# never download in tests
os.environ["FASTMLP_OFFLINE"] = "1"


def _external_sample():
    """The folder FASTMLP_DATA names, if it holds the sample's two files (else None)."""
    value = os.environ.get("FASTMLP_DATA")
    if value and all((Path(value) / name).is_file() for name in SAMPLE_FILES):
        return Path(value)
    return None


@pytest.fixture(scope="session")
def external_sample():
    """The sample folder named by FASTMLP_DATA; skipped where it is absent (failed under CI=true)."""
    folder = _external_sample()
    if folder is None:
        why = (
            f"FASTMLP_DATA={os.environ.get('FASTMLP_DATA')!r} does not hold the sample's files"
            if os.environ.get("FASTMLP_DATA")
            else "FASTMLP_DATA is not set"
        )
        if IN_CI:
            pytest.fail(f"CI=true needs the notMNIST sample through FASTMLP_DATA: {why}")
        pytest.skip(
            f"{why}; set it to a folder holding the notMNIST sample (make test does when ../shared/data/notmnist exists)"
        )
    return folder


@pytest.fixture(scope="session")
def sample_folder():
    """A folder holding the real sample's two files: FASTMLP_DATA's, else the shipped copy."""
    return _external_sample() or EMBEDDED_SAMPLE


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
def notmnist(sample_folder):
    """The real 10,000-image notMNIST sample, split 6000 / 2000 / 2000 (float32)."""
    from fastmlp.datasets import load_notmnist

    return load_notmnist(sample_folder)


@pytest.fixture(scope="session")
def notmnist64(sample_folder):
    from fastmlp.datasets import load_notmnist

    return load_notmnist(sample_folder, dtype="float64")


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
