"""CuPy-only checks (marker ``gpu``): device residency and out-of-memory handling.

Skipped with the reason where the cupy backend cannot run; with FASTMLP_REQUIRE_GPU=1 (the GPU
job) a missing GPU fails instead.
"""

import numpy as np
import pytest

import fastmlp
from fastmlp.errors import DeviceMemoryError

from .helpers import backend_params, require_usable

pytestmark = pytest.mark.gpu


@pytest.fixture(params=backend_params(["cupy"]))
def cupy_backend(request):
    """The cupy module, where the cupy backend can run (else skipped, or failed under FASTMLP_REQUIRE_GPU=1)."""
    require_usable(request.param)
    import cupy

    return cupy


def test_parameters_and_velocities_stay_on_the_device(cupy_backend, notmnist):
    net = fastmlp.MLP(784, 100, 10, backend="cupy")
    net.fit(*notmnist.train, epochs=2)
    for store in (net._params, net._velocities):
        assert all(isinstance(v, cupy_backend.ndarray) for v in store.values())
    assert all(isinstance(v, np.ndarray) for v in net.params.values())


def test_out_of_memory_names_the_bytes_and_a_hint(cupy_backend):
    free, _ = cupy_backend.cuda.runtime.memGetInfo()
    hidden = 50_000
    n = int(free // (hidden * 4)) + 1000  # the N×H activation alone is larger than the free memory
    X = np.zeros((n, 784), np.uint8)
    y = np.zeros(n, np.int64)
    net = fastmlp.MLP(784, hidden, 10, backend="cupy")
    with pytest.raises(DeviceMemoryError, match=r"out of memory.*bytes.*--hidden or --batch-size") as raised:
        net.fit(X, y, epochs=1)
    assert isinstance(raised.value, MemoryError)
    del raised, net, X
    # the device is usable again: the failed fit's buffers were released
    small = fastmlp.MLP(784, 100, 10, backend="cupy")
    history = small.fit(np.zeros((64, 784), np.float32), np.arange(64) % 10, epochs=2)
    assert len(history.train_loss) == 2
