"""The array-library backends, torch and jax: devices, float64, and the device contract.

The device contract is the one ``test_device_contract.py`` checks on a simulated accelerator,
here on the real libraries (on the CPU in CI, on a GPU in the GPU job): the data go to the
device once per ``fit``, the metrics come back once per epoch, and no step converts a device
array on the host. For torch every conversion of a tensor to a Python number or to NumPy fails
the test while a step runs; for jax the step runs compiled (``jax.jit``), where it sees only
tracers, and a tracer cannot be converted on the host at all.
"""

import contextlib
import importlib.util
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastmlp
from fastmlp.backends import get_backend, resolve_name, split_name
from fastmlp.benchmark import EpochRunner
from fastmlp.errors import BackendError, InvalidInputError

from .helpers import backend_params, require_usable

LIBRARY_BACKENDS = ("torch", "jax")


@pytest.fixture(params=backend_params(LIBRARY_BACKENDS))
def library_backend(request):
    require_usable(request.param)
    return request.param


def run_python(code):
    env = {**os.environ, "FASTMLP_BACKEND": ""}
    env.pop("JAX_ENABLE_X64", None)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=120
    )


# ------------------------------------------------------------------ names
def test_a_device_after_a_colon_is_part_of_the_name():
    assert resolve_name(" Torch:CUDA ") == "torch:cuda"
    assert resolve_name("jax:cpu") == "jax:cpu"


@pytest.mark.parametrize(
    "name, expected",
    [
        ("torch:tpu", r"unknown device 'tpu' in backend 'torch:tpu' .*torch:cpu, torch:cuda, torch:mps or torch"),
        ("jax:cuda", r"unknown device 'cuda' in backend 'jax:cuda' .*jax:cpu, jax:gpu or jax"),
        ("numpy:gpu", r"unknown device 'gpu' .*the numpy backend takes no device; use numpy"),
        ("tensorflow:gpu", r"unknown backend 'tensorflow:gpu' .*choose one of numpy, numba, cupy, torch, jax, auto"),
    ],
)
def test_an_unknown_device_lists_the_valid_ones(name, expected):
    with pytest.raises(InvalidInputError, match=expected):
        resolve_name(name)


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="PyTorch is not installed here")
def test_torch_cuda_without_a_gpu_says_so_before_training():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: torch:cuda runs here")
    with pytest.raises(
        BackendError, match=r"the torch:cuda backend needs a CUDA GPU: .*use --backend torch \(the CPU\)"
    ):
        fastmlp.MLP(784, 8, 10, backend="torch:cuda")


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="PyTorch is not installed here")
def test_torch_mps_without_an_apple_gpu_says_so_before_training():
    import torch

    if torch.backends.mps.is_available():
        pytest.skip("this machine has an Apple GPU: torch:mps runs here")
    with pytest.raises(BackendError, match=r"the torch:mps backend needs an Apple GPU: "):
        fastmlp.MLP(784, 8, 10, backend="torch:mps")


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="PyTorch is not installed here")
def test_float64_on_the_apple_gpu_is_an_error_not_float32():
    """Checked without an Apple GPU: the backend refuses on the host, before any tensor is made
    on the device (the backend object is a CPU one told that its device is MPS)."""
    import torch

    backend = get_backend("torch")
    backend._device = torch.device("mps")
    with pytest.raises(BackendError, match=r"the Apple GPU \(MPS\) cannot compute in float64; use --dtype float32"):
        backend.asarray(np.ones(3), "float64")
    with pytest.raises(BackendError, match="cannot compute in float64"):
        backend.full((3,), 1e-5, torch.float64)


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed here")
def test_jax_gpu_without_a_gpu_says_so_before_training():
    import jax

    try:
        jax.devices("gpu")
    except RuntimeError:
        pass
    else:
        pytest.skip("JAX has a GPU here: jax:gpu runs")
    with pytest.raises(BackendError, match=r"JAX .* is installed but has no gpu device .*use --backend jax:cpu"):
        fastmlp.MLP(784, 8, 10, backend="jax:gpu")


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed here")
def test_jax_float64_turns_on_jax_float64_switch_and_float32_leaves_it_off():
    result = run_python("""
        import jax, numpy as np, fastmlp
        single = fastmlp.MLP(784, 8, 10, backend="jax", dtype="float32")
        print(jax.config.jax_enable_x64, single._params["W1"].dtype, single.backend_facts["jax_enable_x64"])
        double = fastmlp.MLP(784, 8, 10, backend="jax", dtype="float64")
        print(jax.config.jax_enable_x64, double._params["W1"].dtype, double.params["W1"].dtype)
        X = np.random.default_rng(0).random((50, 784))
        history = double.fit(X, np.arange(50) % 10, epochs=2)
        single.fit(X, np.arange(50) % 10, epochs=2)  # the switch now on: Python floats must not promote
        print(double._params["W1"].dtype, single._params["W1"].dtype, single._velocities["W1"].dtype,
              type(history.train_loss[-1]).__name__)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:3] == [
        "False float32 False",
        "True float64 float64",
        "float64 float32 float32 float",
    ]


# -------------------------------------------------------- device contract
class Watched:
    """A real backend whose transfers are counted and whose compiled steps run under a guard."""

    def __init__(self, name, monkeypatch):
        self.backend = backend = get_backend(name)
        self.monkeypatch = monkeypatch
        self.uploads = self.downloads = self.step_calls = self.traced_calls = 0
        asarray, to_numpy, compile_step = backend.asarray, backend.to_numpy, backend.compile_step

        def counted_asarray(*args, **kwargs):
            self.uploads += 1
            return asarray(*args, **kwargs)

        def counted_to_numpy(array):
            self.downloads += 1
            return to_numpy(array)

        def guarded_compile_step(step, *, donate=()):
            compiled = compile_step(step, donate=donate)

            def guarded(*args):
                self.step_calls += 1
                with self.no_host_conversion():
                    return compiled(*args)

            return guarded

        def counted_loss_step(*args):  # run by each epoch step: once per trace under jax.jit
            self.traced_calls += 1
            return loss_step(*args)

        loss_step = backend.softmax_xent_grad
        backend.softmax_xent_grad = counted_loss_step
        backend.asarray, backend.to_numpy, backend.compile_step = (
            counted_asarray,
            counted_to_numpy,
            guarded_compile_step,
        )

    @contextlib.contextmanager
    def no_host_conversion(self):
        """While active, turning a torch tensor into a Python number or NumPy fails the test."""
        if not self.backend.xp.__name__.endswith("torch"):
            yield  # jax: the compiled step sees tracers, which refuse conversion by themselves
            return
        import torch

        def refuse(tensor, *args, **kwargs):
            raise AssertionError(f"a step converted a tensor of shape {tuple(tensor.shape)} on the host")

        with self.monkeypatch.context() as patch:
            for method in ("__float__", "__int__", "__bool__", "__index__", "item", "tolist", "numpy"):
                patch.setattr(torch.Tensor, method, refuse)
            yield


def test_the_guard_catches_a_host_conversion_in_a_torch_step(monkeypatch):
    """The guard is only worth something if it fails a step that does convert."""
    require_usable("torch")
    watched = Watched("torch", monkeypatch)
    step = watched.backend.compile_step(lambda x: float(x.sum()))
    with pytest.raises(AssertionError, match="converted a tensor of shape"):
        step(watched.backend.asarray(np.ones(3)))


def test_a_jax_step_sees_only_tracers_so_it_cannot_convert_on_the_host(monkeypatch):
    require_usable("jax")
    import jax

    watched = Watched("jax", monkeypatch)
    step = watched.backend.compile_step(lambda x: float(x.sum()))
    with pytest.raises(jax.errors.ConcretizationTypeError):
        step(watched.backend.asarray(np.ones(3)))


def test_full_batch_fit_copies_the_data_once_and_the_metrics_once_per_epoch(library_backend, notmnist, monkeypatch):
    (X, y), (Xv, yv) = notmnist.train, notmnist.valid
    watched = Watched(library_backend, monkeypatch)
    net = fastmlp.MLP(784, 32, 10, backend=watched.backend, seed=0)
    watched.uploads = watched.downloads = 0
    history = net.fit(X[:600], y[:600], Xv[:200], yv[:200], epochs=5)
    assert watched.uploads == 4  # X, labels, X_valid, labels_valid
    assert watched.downloads == 5 + 1  # one per epoch, and the final weights' training metrics
    assert watched.step_calls == 5 + 1  # five epochs, one metrics step
    assert history.epochs == 5
    if split_name(library_backend)[0] == "jax":  # compiled: the epoch step traced once, then replayed
        assert watched.traced_calls == 1
        net.fit(X[:600], y[:600], Xv[:200], yv[:200], epochs=3)
        assert watched.traced_calls == 1  # the second fit compiles nothing
    else:
        assert watched.traced_calls == 5


def test_mini_batch_fit_copies_only_each_batchs_row_indices(library_backend, notmnist, monkeypatch):
    X, y = notmnist.train
    watched = Watched(library_backend, monkeypatch)
    net = fastmlp.MLP(784, 32, 10, backend=watched.backend, seed=0)
    watched.uploads = watched.downloads = 0
    net.fit(X[:600], y[:600], epochs=3, batch_size=200)
    assert watched.uploads == 2 + 3 * 3  # X and labels, then one index array per batch
    assert watched.downloads == 1 + 3  # the initial loss, then one per epoch


def test_the_epoch_benchmark_copies_only_the_metrics(library_backend, monkeypatch):
    watched = Watched(library_backend, monkeypatch)
    runner = EpochRunner(watched.backend, n=300, n_valid=100, hidden=16)
    watched.uploads = watched.downloads = 0
    assert runner.epoch() > 0 and runner.products() > 0
    assert (watched.uploads, watched.downloads) == (0, 1)


def test_the_snapshot_survives_donation(library_backend, notmnist):
    """jax donates the old parameters to the step: the loop's snapshot must be a real copy, so
    that a divergence can restore it (checked on every library backend)."""
    from fastmlp import train

    (X, y) = notmnist.train
    backend = get_backend(library_backend)
    net = fastmlp.MLP(784, 16, 10, backend=backend, seed=1)
    before = net.params
    state = train.TrainingState(
        backend, dict(net._params), {k: backend.full(v.shape, 1e-5, v.dtype) for k, v in net._params.items()}
    )
    X_dev, y_dev = backend.asarray(X[:200]), backend.asarray(y[:200])
    old_W1 = state.params["W1"]
    train.full_batch_epoch(state, X_dev, y_dev, lr=0.1, momentum=0.9)
    assert not np.array_equal(backend.to_numpy(state.params["W1"]), before["W1"])
    if split_name(library_backend)[0] == "jax":
        assert old_W1.is_deleted()  # donated: its buffer now holds the new parameters
    state.restore()  # nothing accepted yet: back to the weights the epoch started from
    for name, value in before.items():
        np.testing.assert_array_equal(backend.to_numpy(state.params[name]), value, err_msg=name)


# -------------------------------------------------------- jax's precisions
needs_jax = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed here")


def jax_cpu_in(precision):
    """A jax:cpu backend set to ``precision`` as jax:gpu would be (the CPU does not offer tf32/bf16:
    this reaches the GPU's code path on the CPU, to check what it asks of XLA)."""
    backend = get_backend("jax:cpu")
    backend.precision = precision
    return backend


def product_dots(backend, notmnist):
    """(the loop's large products, the small ones) of a traced training step (H = 64, K = 10): each
    as (operand dtypes, precision, result dtype). Large: X W1 and d2 W2ᵀ (N x H), Xᵀ d1 (D x H);
    small: A1 W2 (N x K), A1ᵀ d2 (H x K)."""
    import jax

    from fastmlp import network

    params = {k: backend.asarray(v) for k, v in network.init_params(784, 64, 10, seed=0).items()}
    X, labels = backend.asarray(notmnist.train[0][:300]), backend.asarray(notmnist.train[1][:300])
    step = backend.compile_step(lambda p: network.loss_and_grads(backend, p, X, labels, workspace="train_hidden"))
    dots = [eqn for eqn in _equations(jax.make_jaxpr(step)(params).jaxpr) if eqn.primitive.name == "dot_general"]
    found = {"large": [], "small": []}
    for eqn in dots:
        dtypes = tuple(str(v.aval.dtype) for v in eqn.invars)
        size = "large" if eqn.outvars[0].aval.shape[-1] == 64 else "small"
        found[size].append((dtypes, _precision(eqn.params["precision"]), str(eqn.outvars[0].aval.dtype)))
    return found["large"], found["small"]


def _precision(value):
    """A dot's precision as one word: HIGHEST, TF32_TF32_F32, None, ... (a pair of equal ones as one)."""
    names = {str(part).removeprefix("Precision.") for part in (value if isinstance(value, tuple) else (value,))}
    return names.pop() if len(names) == 1 else str(value)


def _equations(jaxpr):
    for eqn in jaxpr.eqns:
        yield eqn
        for sub in eqn.params.values():
            inner = getattr(sub, "jaxpr", None)
            if inner is not None:
                yield from _equations(getattr(inner, "jaxpr", inner))


@needs_jax
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_jax_on_the_cpu_refuses_a_reduced_precision_naming_jax_gpu(precision):
    with pytest.raises(InvalidInputError, match=rf"'{precision}' is not offered by the jax:cpu backend.* jax:gpu"):
        fastmlp.MLP(784, 8, 10, backend="jax:cpu", precision=precision)


@needs_jax
@pytest.mark.parametrize(
    ("precision", "large", "small"),
    [
        ("float32", (("float32", "float32"), "HIGHEST", "float32"), "HIGHEST"),
        ("tf32", (("float32", "float32"), "TF32_TF32_F32", "float32"), "HIGHEST"),
        ("bf16", (("bfloat16", "bfloat16"), "HIGHEST", "float32"), "HIGHEST"),
    ],
)
def test_jax_asks_xla_for_each_precisions_products(notmnist, precision, large, small):
    """The loop's three large products (X W1, d2 W2ᵀ, Xᵀ d1) in the precision, the small ones
    (A1 W2, A1ᵀ d2) in float32 — which a GPU would otherwise round to TF32."""
    large_dots, small_dots = product_dots(jax_cpu_in(precision), notmnist)
    assert large_dots == [large] * 3
    assert small_dots == [(("float32", "float32"), small, "float32")] * 2


@needs_jax
def test_jax_bf16_stays_within_2e_2_of_float32_after_ten_epochs(notmnist):
    """The bf16 path's numbers (bf16 operands, FP32 accumulation, float32 results) — runnable on the
    CPU's XLA, where the backend itself does not offer it."""
    single = fastmlp.MLP(784, 64, 10, backend="jax:cpu", seed=1)
    reduced = fastmlp.MLP(784, 64, 10, backend="jax:cpu", seed=1)
    reduced._backend.precision = "bf16"
    histories = [model.fit(*notmnist.train, *notmnist.valid, epochs=10) for model in (single, reduced)]
    assert histories[1].train_loss[-1] == pytest.approx(histories[0].train_loss[-1], rel=2e-2)
    assert histories[1].train_loss[-1] != histories[0].train_loss[-1]  # bf16 really ran
    for name, value in single.params.items():
        scale = np.max(np.abs(value))
        np.testing.assert_allclose(reduced.params[name], value, atol=2e-2 * scale, rtol=0, err_msg=name)
