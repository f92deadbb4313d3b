"""The torch backend's reduced precisions: bf16 on a CPU with native bf16 products, tf32 and bf16
on CUDA.

In the CPU job these run on ``torch`` (the CPU): bf16 against float32 after ten epochs, the bf16
copies made once per fit (X), per product (W1) and per epoch (d1), the refusal on a CPU without
native bf16, ``auto`` choosing torch for bf16, and the TF32 setting held only while a step runs.
What needs a CPU with native bf16 is skipped, with the reason, on one without; tf32 is skipped on
the CPU. The GPU job runs the same tests on ``torch:cuda`` (FASTMLP_BACKEND=torch:cuda).
"""

import numpy as np
import pytest

import fastmlp
from fastmlp.backends import get_backend, resolve_name, split_name
from fastmlp.errors import InvalidInputError

from .helpers import backend_params, require_usable, to_host

torch = pytest.importorskip("torch", reason="PyTorch is not installed here")


@pytest.fixture(params=backend_params(["torch"]))
def torch_choice(request):
    """``torch`` (the CPU), or ``torch:cuda`` in the GPU job."""
    require_usable(request.param)
    return request.param


def offered_or_skip(choice, precision):
    backend = get_backend(choice)
    if precision not in backend.precisions:
        why = backend.why_not_offered(precision) or f"{precision} is offered by torch:cuda (the GPU job runs this)"
        pytest.skip(f"{choice} does not offer {precision} here: {why}")


def relative(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_a_reduced_precision_stays_within_2e_2_of_float32_after_ten_epochs(torch_choice, notmnist, precision):
    offered_or_skip(torch_choice, precision)
    (X, y), (Xv, yv) = notmnist.train, notmnist.valid
    start = fastmlp.MLP(784, 256, 10, seed=6).params
    results = {}
    for setting in ("float32", precision):
        net = fastmlp.MLP.from_params(start, backend=torch_choice, precision=setting)
        results[setting] = net, net.fit(X[:2000], y[:2000], Xv[:500], yv[:500], epochs=10)
    (reference, reference_history), (reduced, history) = results["float32"], results[precision]
    assert reduced.precision == precision
    for name in start:
        assert relative(reduced.params[name], reference.params[name]) <= 2e-2, name
    np.testing.assert_allclose(history.train_loss, reference_history.train_loss, rtol=2e-2)
    np.testing.assert_allclose(history.valid_loss, reference_history.valid_loss, rtol=2e-2)
    np.testing.assert_allclose(history.valid_acc, reference_history.valid_acc, atol=2e-2)
    # master weights and velocities stay float32
    for store in (reduced._params, reduced._velocities):
        assert {str(v.dtype) for v in store.values()} == {"torch.float32"}


def test_bf16_steps_agree_with_float64_to_bf16s_precision(torch_choice):
    """The loop's hidden layer and its backward under bf16, against float64 NumPy: A1, dW2 and db1
    come back float32; d1 is the bf16 copy that dW1 = Xᵀ d1 reads."""
    offered_or_skip(torch_choice, "bf16")
    backend = get_backend(torch_choice)
    fastmlp.backends.configure(backend, dtype="float32", precision="bf16", cuda_graphs=None)
    rng = np.random.default_rng(3)
    X, W1, b1 = rng.random((300, 784)), rng.normal(0, 0.05, (784, 64)), rng.normal(0, 0.1, 64)
    d2, W2 = rng.normal(0, 1, (300, 10)) / 300, rng.normal(0, 0.3, (64, 10))
    A1 = backend.hidden_layer(*(backend.asarray(a, "float32") for a in (X, W1, b1)), workspace="train_hidden")
    dW2, _, d1, db1 = backend.hidden_backward(A1, backend.asarray(d2, "float32"), backend.asarray(W2, "float32"))
    assert (A1.dtype, dW2.dtype, db1.dtype, d1.dtype) == (torch.float32, torch.float32, torch.float32, torch.bfloat16)
    want_A1 = np.maximum(X @ W1 + b1, 0)
    assert relative(to_host(A1), want_A1) <= 1e-2
    want_d1 = (d2 @ W2.T) * (to_host(A1) > 0)  # the mask of the A1 computed: bf16 rounding flips S1 ≈ 0
    assert relative(to_host(d1.float()), want_d1) <= 1e-2
    assert relative(to_host(db1), want_d1.sum(axis=0)) <= 1e-2
    assert relative(to_host(dW2), to_host(A1).T @ d2) <= 1e-5  # a float32 product


def test_bf16_copies_x_once_per_fit_w1_at_each_product_and_d1_once_per_epoch(torch_choice, notmnist, monkeypatch):
    offered_or_skip(torch_choice, "bf16")
    (X, y), (Xv, yv) = notmnist.train, notmnist.valid
    copied = []
    copy = torch.Tensor.copy_

    def watched_copy(tensor, source, *args, **kwargs):
        if tensor.dtype == torch.bfloat16 and source.dtype == torch.float32:
            copied.append(tuple(tensor.shape))
        return copy(tensor, source, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "copy_", watched_copy)
    net = fastmlp.MLP(784, 32, 10, backend=torch_choice, precision="bf16", seed=0)
    for _ in range(2):  # a second fit makes its own copy of X again
        copied.clear()
        net.fit(X[:600], y[:600], Xv[:200], yv[:200], epochs=3)
        counts = {shape: copied.count(shape) for shape in copied}
        # X and X_valid once; W1 for the training and the validation product of each epoch, and
        # for the final weights' training metrics; d1 once per epoch
        assert counts == {(600, 784): 1, (200, 784): 1, (784, 32): 2 * 3 + 1, (600, 32): 3}


def test_bf16_on_a_cpu_without_native_bf16_is_refused_saying_why_and_what_works(torch_choice, monkeypatch):
    """The CPU is made to report neither AVX512_BF16 nor AMX (this machine's CPU may have them)."""
    if split_name(torch_choice)[1] not in (None, "cpu"):
        pytest.skip("a CPU refusal: the torch backend on the CPU only")
    for check in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, check, lambda: False)
    with pytest.raises(InvalidInputError) as raised:
        fastmlp.MLP(784, 8, 10, backend="torch", precision="bf16")
    message = str(raised.value)
    assert message.startswith("precision 'bf16' is not offered by the torch backend here (this CPU has no native bf16")
    assert "use precision float32" in message and message.endswith("it is offered by: cupy, torch, torch:cuda, jax:gpu")
    assert fastmlp.MLP(784, 8, 10, backend="torch").backend_facts["native_bf16"] == "no"


def test_auto_with_bf16_picks_a_backend_that_offers_it(monkeypatch):
    """cupy where it runs, else torch on a CPU with native bf16; float32 keeps its own choice."""
    require_usable("torch")
    monkeypatch.delenv("FASTMLP_BACKEND", raising=False)
    for_float32 = resolve_name("auto")
    expected = "cupy" if for_float32 == "cupy" else "torch"
    if "bf16" not in get_backend(expected).precisions:
        pytest.skip(f"{expected} does not offer bf16 here: {get_backend(expected).why_not_offered('bf16')}")
    assert resolve_name("auto", precision="bf16") == expected
    net = fastmlp.MLP(784, 8, 10, backend="auto", precision="bf16")
    assert (net.backend, net.precision) == (expected, "bf16")
    assert for_float32 != "torch"  # cupy, numba or numpy


def test_tf32_is_set_only_while_a_step_runs(torch_choice):
    """The setting that makes a step's products TF32 on CUDA (checked on any device: it is
    PyTorch's global flag, set around the step and restored, also when the step fails)."""
    backend = get_backend(torch_choice)
    backend.precision = "tf32"  # as configure sets it on torch:cuda
    matmul = torch.backends.cuda.matmul
    before = matmul.fp32_precision
    step = backend.compile_step(lambda: matmul.fp32_precision)
    assert step() == "tf32" and matmul.fp32_precision == before

    def failing():
        raise RuntimeError("a failing step")

    with pytest.raises(RuntimeError, match="a failing step"):
        backend.compile_step(failing)()
    assert matmul.fp32_precision == before
    backend.precision = "float32"
    assert backend.compile_step(lambda: matmul.fp32_precision)() == before
