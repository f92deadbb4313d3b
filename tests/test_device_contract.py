"""The device contract, checked on the CPU with a simulated accelerator.

``SimulatedDevice`` is the generic backend with its arrays on array-api-strict's second device.
Like a GPU, that device refuses implicit conversion to NumPy and refuses to combine its arrays
with arrays made on the host; the backend counts the copies between host and device. The cupy
backend runs the same training loop, so these tests check on any machine what the GPU job checks
with a GPU: the data are copied to the device once per ``fit``, parameters and velocities stay
there, the loop copies to the host once per epoch, and no step converts a device array on the
host (``float``, ``bool``, ``int`` of a device array would wait for a GPU in the middle of a step).
"""

import array_api_strict
import numpy as np
import pytest
from array_api_strict._array_object import Array

import fastmlp
from fastmlp import evaluation, network
from fastmlp.backends import Backend
from fastmlp.errors import DivergenceError

from .helpers import TOLERANCE

ACCELERATOR = array_api_strict.Device("device1")
HOST = array_api_strict.Device("CPU_DEVICE")


class SimulatedDevice(Backend):
    """The generic steps on array-api-strict arrays that live on a device other than the host."""

    name = "simulated-device"

    def __init__(self):
        super().__init__(array_api_strict)
        self.uploads = 0  # host -> device copies
        self.downloads = 0  # device -> host copies

    @property
    def device(self):
        return "array-api-strict device1"

    def asarray(self, host_array, dtype=None, *, copy=True):
        self.uploads += 1
        return array_api_strict.asarray(np.array(host_array, dtype=dtype, copy=True), device=ACCELERATOR)

    def to_numpy(self, array):
        self.downloads += 1
        return np.asarray(array.to_device(HOST))

    def full(self, shape, value, dtype):
        return array_api_strict.full(shape, value, dtype=dtype, device=ACCELERATOR)


def on_the_device(arrays):
    return all(isinstance(a, Array) and a.device == ACCELERATOR for a in arrays)


@pytest.fixture
def no_host_conversion(monkeypatch):
    """While active, converting a device array to a Python scalar or truth value fails the test."""

    def refuse(self, *args):
        raise AssertionError(f"a step converted a device array of shape {self.shape} on the host")

    for method in ("__float__", "__int__", "__bool__", "__index__", "__complex__"):
        monkeypatch.setattr(Array, method, refuse)


def test_the_device_refuses_what_a_gpu_refuses():
    """The simulation is only worth something if the device is strict; check that it is."""
    on_device = SimulatedDevice().asarray(np.ones(3))
    with pytest.raises(RuntimeError, match="convert"):
        np.asarray(on_device)
    with pytest.raises(ValueError, match="different devices"):
        on_device + array_api_strict.ones(3)


def test_full_batch_fit_copies_the_data_once_and_the_metrics_once_per_epoch(notmnist, no_host_conversion):
    (X, y), (Xv, yv) = notmnist.train, notmnist.valid
    device = SimulatedDevice()
    net = fastmlp.MLP(784, 32, 10, backend=device, seed=0)
    device.uploads = device.downloads = 0
    history = net.fit(X[:600], y[:600], Xv[:200], yv[:200], epochs=5)
    assert device.uploads == 4  # X, labels, X_valid, labels_valid
    assert device.downloads == 5 + 1  # one per epoch, and the final weights' training metrics
    assert history.epochs == 5 and len(history.valid_acc) == 5
    assert on_the_device(net._params.values()) and on_the_device(net._velocities.values())


def test_mini_batch_fit_copies_only_each_batchs_row_indices(notmnist, no_host_conversion):
    X, y = notmnist.train
    device = SimulatedDevice()
    net = fastmlp.MLP(784, 32, 10, backend=device, seed=0)
    device.uploads = device.downloads = 0
    net.fit(X[:600], y[:600], epochs=3, batch_size=200)
    assert device.uploads == 2 + 3 * 3  # X and labels, then one index array per batch (3 per epoch)
    assert device.downloads == 1 + 3  # the initial loss, then one per epoch
    assert on_the_device(net._params.values()) and on_the_device(net._velocities.values())


def test_ten_epochs_on_the_device_match_numpy(notmnist64, dtype):
    (X, y), (Xv, yv) = notmnist64.train, notmnist64.valid
    X, y, Xv, yv = X[:1000], y[:1000], Xv[:300], yv[:300]
    start = fastmlp.MLP(784, 64, 10, dtype=dtype, seed=5).params
    on_device = fastmlp.MLP.from_params(start, backend=SimulatedDevice(), dtype=dtype)
    on_host = fastmlp.MLP.from_params(start, backend="numpy", dtype=dtype)
    device_history = on_device.fit(X, y, Xv, yv, epochs=10)
    host_history = on_host.fit(X, y, Xv, yv, epochs=10)
    rtol, atol = TOLERANCE[dtype]
    for name in network.PARAM_NAMES:
        np.testing.assert_allclose(on_device.params[name], on_host.params[name], rtol=rtol, atol=atol, err_msg=name)
    for key in ("train_loss", "train_acc", "valid_loss", "valid_acc"):
        np.testing.assert_allclose(
            getattr(device_history, key), getattr(host_history, key), rtol=rtol, atol=atol, err_msg=key
        )


def test_divergence_on_the_device_restores_the_last_good_weights_there(notmnist):
    X, y = notmnist.train
    device = SimulatedDevice()
    net = fastmlp.MLP(784, 50, 10, backend=device, seed=0)
    net.fit(X[:600], y[:600], epochs=1, batch_size=100, lr=0.01)
    good = net.params
    with pytest.raises(DivergenceError, match="training diverged at epoch 1"):
        net.fit(X[:600], y[:600], epochs=5, batch_size=100, lr=1e3)
    assert on_the_device(net._params.values()) and on_the_device(net._velocities.values())
    for name, value in net.params.items():
        np.testing.assert_array_equal(value, good[name], err_msg=name)


def test_inference_and_weights_files_give_host_arrays(notmnist, tmp_path):
    (X, y), (Xv, yv) = notmnist.train, notmnist.valid
    net = fastmlp.MLP(784, 32, 10, backend=SimulatedDevice(), seed=0)
    net.fit(X[:600], y[:600], epochs=3)
    reference = fastmlp.MLP.from_params(net.params, backend="numpy")
    predicted = net.predict(Xv[:100])
    probabilities = net.predict_proba(Xv[:100])
    assert isinstance(predicted, np.ndarray) and predicted.dtype == np.int64
    assert isinstance(probabilities, np.ndarray) and probabilities.shape == (100, 10)
    np.testing.assert_array_equal(predicted, reference.predict(Xv[:100]))
    np.testing.assert_allclose(probabilities, reference.predict_proba(Xv[:100]), rtol=1e-5, atol=1e-7)
    loss, accuracy = net.evaluate(Xv[:100], yv[:100])
    assert (loss, accuracy) == pytest.approx(reference.evaluate(Xv[:100], yv[:100]), rel=1e-5)
    net.save(tmp_path / "weights.npz")
    loaded = fastmlp.MLP.load(tmp_path / "weights.npz", backend=SimulatedDevice())
    assert on_the_device(loaded._params.values())
    for name, value in loaded.params.items():
        np.testing.assert_array_equal(value, net.params[name], err_msg=name)


def test_the_epoch_benchmark_runs_on_the_device():
    from fastmlp.benchmark import EpochRunner

    device = SimulatedDevice()
    runner = EpochRunner(device, n=300, n_valid=100, hidden=16)
    device.uploads = device.downloads = 0
    assert runner.epoch() > 0 and runner.products() > 0
    assert (device.uploads, device.downloads) == (0, 1)  # the data are already there; one copy of the metrics
    assert on_the_device(runner.state.params.values()) and on_the_device(runner.state.velocities.values())


class RecordingBackend:
    """Wraps a CPU backend's ``compile_step``: records each compiled step's argument signatures
    (arrays by address), the precondition of replaying a step as a CUDA graph."""

    def __init__(self, backend):
        self.backend = backend
        self.calls = {}
        plain = backend.compile_step

        def compile_step(step, *, donate=()):
            from fastmlp.backends._cuda_graphs import signature

            calls = self.calls.setdefault(step.func.__name__, [])
            compiled = plain(step, donate=donate)
            assert compiled is step  # a CPU backend runs the step as a plain call

            def recorded(*args):
                calls.append(signature(args, lambda v: v.ctypes.data if isinstance(v, np.ndarray) else None))
                return compiled(*args)

            return recorded

        backend.compile_step = compile_step


def test_full_batch_epochs_repeat_the_step_arguments_every_other_epoch(notmnist):
    """A backend that works in place sees the very same buffers in epoch e and e - 2 (the loop
    alternates two snapshots), so a captured epoch can be replayed; the snapshot is taken inside
    the step, so no device work of a steady epoch is left outside it."""
    (X, y), (Xv, yv) = notmnist.train, notmnist.valid
    net = fastmlp.MLP(784, 32, 10, backend="numpy", seed=0)
    recorder = RecordingBackend(net._backend)
    net.fit(X[:600], y[:600], Xv[:200], yv[:200], epochs=6)
    epochs = recorder.calls["epoch_step"]
    assert len(epochs) == 6
    assert len(set(epochs[1:])) == 2  # from epoch 2 on: two signatures, alternating
    assert [epochs[e] == epochs[e - 2] for e in range(3, 6)] == [True] * 3
    assert epochs[2] != epochs[3]


def test_the_epoch_step_with_its_snapshot_converts_nothing_on_the_host(notmnist, no_host_conversion):
    from fastmlp import train

    (X, y), (Xv, yv) = notmnist.train, notmnist.valid
    device = SimulatedDevice()
    state = train.TrainingState(
        device,
        *(
            {k: device.asarray(v) for k, v in p.items()}
            for p in (
                network.init_params(784, 16, 10),
                {k: np.full(v.shape, 1e-5, np.float32) for k, v in network.init_params(784, 16, 10).items()},
            )
        ),
    )
    data = [device.asarray(a) for a in (X[:300], y[:300], Xv[:100], yv[:100])]
    device.uploads = device.downloads = 0
    host = train.full_batch_epoch(state, *data, lr=0.1, momentum=0.9)
    assert (device.uploads, device.downloads) == (0, 1)
    params, velocities = state.snapshots.pending  # the copy the step made (not yet accepted)
    assert len(host) == 4 and on_the_device(params.values()) and on_the_device(velocities.values())


def test_the_evaluation_report_copies_the_data_to_the_device_once_and_back_once(notmnist, no_host_conversion):
    """One forward pass over the test set: X goes to the device once, the probabilities come back once."""
    X, y = notmnist.test
    device = SimulatedDevice()
    net = fastmlp.MLP(784, 32, 10, backend=device, seed=0)
    device.uploads = device.downloads = 0
    report = evaluation.report(net, X[:500], y[:500])
    assert (device.uploads, device.downloads) == (1, 1)
    assert report.n == 500 and report.probabilities.shape == (500, 10)
