"""CuPy-only checks (marker ``gpu``): what only a card can show.

Device residency, out-of-memory, the fused products against NumPy, graph replay against eager
calls, the reduced precisions. Lines starting with "GPU report:" (printed; the GPU job runs
pytest with -s and collects them) answer what no CPU test can: which products cuBLASLt refused to
fuse in each dtype and precision, and the rule of its ReLU mask at exactly 0. The backend's own
code is tested on the CPU with a test double of CuPy, nvmath and CUDA (``test_cupy_backend.py``).

Skipped with the reason where the cupy backend cannot run; with FASTMLP_REQUIRE_GPU=1 (the GPU
job) a missing GPU fails instead.
"""

import numpy as np
import pytest

import fastmlp
from fastmlp.errors import DeviceMemoryError

from .helpers import backend_params, require_usable, to_host

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


def test_the_fused_relu_masks_rule_at_exactly_zero_is_reported(cupy_backend):
    """cuBLASLt does not document whether its ReLU mask counts S1 = 0 as active; the project's rule
    is [S1 > 0]. With b1 = 0, the all-zero rows of X give S1 = 0 exactly: this prints which rule
    the fused backward followed there, and fails only if it is neither."""
    backend = fastmlp.get_backend("cupy")
    rng = np.random.default_rng(7)
    X = rng.random((64, 784)).astype(np.float32)
    X[::2] = 0  # even rows: S1 = X W1 + b1 = 0 exactly
    W1, W2 = rng.normal(0, 0.05, (784, 32)).astype(np.float32), rng.normal(0, 0.3, (32, 10)).astype(np.float32)
    d2 = rng.normal(0, 1, (64, 10)).astype(np.float32)
    A1 = backend.hidden_layer(*map(backend.asarray, (X, W1, np.zeros(32, np.float32))), workspace="probe")
    d1 = to_host(backend.hidden_backward(A1, backend.asarray(d2), backend.asarray(W2))[2])
    unfused = dict(backend.unfused)
    backend.release()
    if unfused:
        pytest.skip(f"cuBLASLt refused the epilogues, so the CUDA kernels applied [S1 > 0]: {unfused}")
    upstream = d2 @ W2.T  # N×H
    if not d1[::2].any():
        rule = "[S1 > 0], the project's rule (0 counts as inactive)"
    elif np.allclose(d1[::2], upstream[::2], rtol=1e-5, atol=1e-6):
        rule = "[S1 >= 0] (0 counts as active), unlike the project's [S1 > 0]"
    else:
        rule = None
    print(f"GPU report: the fused ReLU mask at S1 = 0 follows {rule}")
    assert rule is not None, f"d1 at S1 = 0 is neither 0 nor d2 W2ᵀ: {d1[0, :4]} vs {upstream[0, :4]}"
    np.testing.assert_allclose(d1[1::2], (upstream * (X @ W1 > 0))[1::2], rtol=1e-4, atol=1e-5)


# ------------------------------------------ fused products, graph replay, precisions (GPU job)
def _fit(notmnist, start, *, epochs=10, dtype="float32", backend="cupy", rows=2000, **settings):
    (X, y), (Xv, yv) = notmnist.train, notmnist.valid
    net = fastmlp.MLP.from_params(start, backend=backend, dtype=dtype, **settings)
    history = net.fit(X[:rows], y[:rows], Xv[:500], yv[:500], epochs=epochs)
    return net, history


def test_the_fused_path_matches_numpy_after_ten_epochs(cupy_backend, notmnist, notmnist64, dtype):
    from .helpers import TOLERANCE

    data = notmnist64 if dtype == "float64" else notmnist
    start = fastmlp.MLP(784, 64, 10, dtype=dtype, seed=3).params
    on_gpu, gpu_history = _fit(data, start, dtype=dtype)
    on_cpu, cpu_history = _fit(data, start, dtype=dtype, backend="numpy")
    facts = on_gpu.backend_facts
    print(f"GPU report: {dtype}: products without their epilogue: {facts['unfused']}")
    if dtype == "float32":
        assert facts["unfused"] == "none"  # every product ran with its epilogue
    assert facts["nvmath_version"] and facts["cuda_runtime"]
    graphs = on_gpu._backend.graphs
    assert graphs.fallbacks == [] and graphs.captured == 2
    assert graphs.replays >= 6  # epochs 5..10 replayed a captured graph
    rtol, atol = TOLERANCE[dtype]
    for name in start:
        np.testing.assert_allclose(on_gpu.params[name], on_cpu.params[name], rtol=rtol, atol=atol, err_msg=name)
    np.testing.assert_allclose(gpu_history.valid_loss, cpu_history.valid_loss, rtol=rtol, atol=atol)


@pytest.mark.parametrize("batch_size", [None, 384], ids=["full-batch", "mini-batch-ragged"])
def test_graph_replay_gives_the_eager_weights_bit_for_bit(cupy_backend, notmnist, batch_size):
    (X, y), (Xv, yv) = notmnist.train, notmnist.valid
    start = fastmlp.MLP(784, 128, 10, seed=4).params
    results = []
    for cuda_graphs in (False, None):
        net = fastmlp.MLP.from_params(start, backend="cupy", cuda_graphs=cuda_graphs)
        history = net.fit(X[:2000], y[:2000], Xv[:500], yv[:500], epochs=8, batch_size=batch_size)
        results.append((net.params, history))
    (eager, eager_history), (replayed, replayed_history) = results
    for name in start:
        np.testing.assert_array_equal(replayed[name], eager[name], err_msg=name)
    assert replayed_history.train_loss == eager_history.train_loss
    assert replayed_history.valid_acc == eager_history.valid_acc


def test_fastmlp_cuda_graphs_0_turns_replay_off(cupy_backend, notmnist, monkeypatch):
    monkeypatch.setenv("FASTMLP_CUDA_GRAPHS", "0")
    net = fastmlp.MLP(784, 32, 10, backend="cupy")
    net.fit(*notmnist.train, epochs=4)
    assert net._backend.graphs.captured == 0 and net.backend_facts["cuda_graphs"] == "off"


def _relative(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_reduced_precisions_stay_within_2e_2_of_float32_after_ten_epochs(cupy_backend, notmnist, precision):
    start = fastmlp.MLP(784, 256, 10, seed=6).params
    reference, reference_history = _fit(notmnist, start)
    reduced, history = _fit(notmnist, start, precision=precision)
    print(f"GPU report: {precision}: products without their epilogue: {reduced.backend_facts['unfused']}")
    assert reduced.precision == precision
    for name in start:
        assert _relative(reduced.params[name], reference.params[name]) <= 2e-2, name
    np.testing.assert_allclose(history.train_loss, reference_history.train_loss, rtol=2e-2)
    np.testing.assert_allclose(history.valid_loss, reference_history.valid_loss, rtol=2e-2)
    assert all(p.dtype == np.float32 for p in reduced.params.values())  # master weights stay float32


def test_two_hundred_seed_epochs_in_tf32_and_bf16_reach_float32s_accuracy(cupy_backend, notmnist, tmp_path):
    """The seed's run (H=1000, lr 0.1, momentum 0.9, 200 epochs) in each precision; the README
    quotes the accuracies this prints."""
    accuracy = {}
    for precision in ("float32", "tf32", "bf16"):
        net = fastmlp.MLP(784, 1000, 10, backend="cupy", seed=0, precision=precision)
        history = net.fit(*notmnist.train, *notmnist.valid, epochs=200, lr=0.1, momentum=0.9)
        accuracy[precision] = history.valid_acc[-1]
        if precision == "bf16":
            net.save(tmp_path / "bf16.npz")
    print("valid accuracy after 200 epochs:", accuracy)
    assert abs(accuracy["tf32"] - accuracy["float32"]) <= 0.005
    assert abs(accuracy["bf16"] - accuracy["float32"]) <= 0.005
    from fastmlp.weights import load_weights

    assert load_weights(tmp_path / "bf16.npz")[1]["precision"] == "bf16"
