"""Each step a backend replaces against the generic version (fastmlp.network's equations, xp).

The generic :class:`~fastmlp.backends.base.Backend` runs with the fast backend's own namespace, so
the two differ only in the step under test. Every step a backend replaces has its test here
(:data:`PARITY`, checked by the last test). Edge cases: rows of equal logits, logits of ±1e4 in
float32, ties in argmax, NaN.
"""

import inspect

import numpy as np
import pytest

import fastmlp
from fastmlp.backends import BACKEND_NAMES, KERNEL_BACKENDS, _load_class, get_backend, split_name
from fastmlp.backends.base import STEPS, Backend

from .helpers import TOLERANCE, backend_params, require_usable, to_host


def replaced_steps(cls):
    """The steps of an epoch that a backend class replaces with its own version."""
    return [step for step in STEPS if getattr(cls, step) is not getattr(Backend, step)]


#: the backends that replace at least one step (jax runs the generic ones)
REPLACING = [name for name in BACKEND_NAMES if replaced_steps(_load_class(name))]


@pytest.fixture(params=backend_params(REPLACING))
def pair(request):
    """(a backend that replaces steps, the generic backend on its namespace)"""
    require_usable(request.param)
    fast = get_backend(request.param)
    return fast, Backend(fast.xp)


def close(a, b, dtype):
    rtol, atol = TOLERANCE[dtype]
    np.testing.assert_allclose(to_host(a), to_host(b), rtol=rtol, atol=atol)


def logits_cases(dtype):
    rng = np.random.default_rng(0)
    cases = {
        "random": rng.normal(0, 3, (257, 10)),
        "equal rows": np.full((5, 10), 2.5),
        "ties in argmax": np.array([[1.0, 3.0, 3.0, 0.0], [7.0, 7.0, 7.0, 7.0], [0.0, -1.0, 0.0, -1.0]]),
        "huge": rng.choice([-1e4, 1e4, 0.0], size=(64, 10)),
    }
    return {name: value.astype(dtype) for name, value in cases.items()}


def test_bias_relu(pair, dtype):
    fast, generic = pair
    rng = np.random.default_rng(1)
    S = rng.normal(0, 1, (301, 47)).astype(dtype)
    S[0, :3] = 0.0
    b = rng.normal(0, 1, 47).astype(dtype)
    expected = generic.bias_relu(generic.asarray(S), generic.asarray(b))
    close(fast.bias_relu(fast.asarray(S), fast.asarray(b)), expected, dtype)


def test_bias_relu_keeps_nan(pair):
    fast, _ = pair
    out = to_host(
        fast.bias_relu(fast.asarray(np.array([[np.nan, -1.0, 1.0]], "float32")), fast.asarray(np.zeros(3, "float32")))
    )
    assert np.isnan(out[0, 0]) and out[0, 1:].tolist() == [0.0, 1.0]


@pytest.mark.parametrize("case", ["random", "equal rows", "ties in argmax", "huge"])
def test_softmax_xent_grad(pair, dtype, case):
    fast, generic = pair
    S = logits_cases(dtype)[case]
    labels = np.arange(len(S)) % S.shape[1]
    loss, acc, d2 = fast.softmax_xent_grad(fast.asarray(S), fast.asarray(labels))
    ref_loss, ref_acc, ref_d2 = generic.softmax_xent_grad(generic.asarray(S), generic.asarray(labels))
    close(loss, ref_loss, dtype)
    assert float(to_host(acc)) == float(to_host(ref_acc))
    close(d2, ref_d2, dtype)
    assert np.isfinite(to_host(loss)) and np.isfinite(to_host(d2)).all()


@pytest.mark.parametrize("case", ["random", "equal rows", "ties in argmax", "huge"])
def test_logits_loss_acc(pair, dtype, case):
    fast, generic = pair
    S = logits_cases(dtype)[case]
    labels = (np.arange(len(S)) * 7) % S.shape[1]
    loss, acc = fast.logits_loss_acc(fast.asarray(S), fast.asarray(labels))
    ref_loss, ref_acc = generic.logits_loss_acc(generic.asarray(S), generic.asarray(labels))
    close(loss, ref_loss, dtype)
    assert float(to_host(acc)) == float(to_host(ref_acc))


def test_ties_count_the_first_maximum(pair):
    fast, _ = pair
    S = np.array([[2.0, 2.0, 0.0], [2.0, 2.0, 0.0]], "float32")
    _, acc = fast.logits_loss_acc(fast.asarray(S), fast.asarray(np.array([0, 1])))
    assert float(to_host(acc)) == 0.5


def test_nan_logits_give_nan_loss(pair):
    fast, _ = pair
    S = np.array([[0.0, np.nan, 1.0]], "float64")
    loss, _, _ = fast.softmax_xent_grad(fast.asarray(S), fast.asarray(np.array([0])))
    assert np.isnan(float(to_host(loss)))


@pytest.mark.parametrize("shape", [(6000, 1000), (37, 5), (1, 3)], ids=["6000x1000", "37x5", "1x3"])
def test_hidden_backward(pair, dtype, shape):
    fast, generic = pair
    N, H = shape
    K = 10
    rng = np.random.default_rng(2)
    A1 = np.maximum(rng.normal(0, 1, (N, H)), 0).astype(dtype)
    d2 = (rng.normal(0, 1, (N, K)) / N).astype(dtype)
    W2 = rng.normal(0, 0.1, (H, K)).astype(dtype)
    got = fast.hidden_backward(fast.asarray(A1), fast.asarray(d2), fast.asarray(W2))
    want = generic.hidden_backward(generic.asarray(A1), generic.asarray(d2), generic.asarray(W2))
    for name, a, b in zip(("dW2", "db2", "d1", "db1"), got, want, strict=True):
        rtol, atol = TOLERANCE[dtype]
        np.testing.assert_allclose(to_host(a), to_host(b), rtol=rtol, atol=atol * 10, err_msg=name)


@pytest.mark.parametrize(
    "shape", [(6000, 784, 1000), (37, 20, 5), (1, 3, 3)], ids=["6000x784x1000", "37x20x5", "1x3x3"]
)
def test_hidden_layer_and_its_backward(pair, dtype, shape):
    """relu(X W1 + b1) through the training loop's buffers, then the backward pass that reads it
    (on cupy: the RELU_AUX_BIAS product, then DRELU_BGRAD reading its mask)."""
    fast, generic = pair
    N, D, H = shape
    rng = np.random.default_rng(3)
    X = rng.random((N, D)).astype(dtype)
    W1, b1 = rng.normal(0, 0.1, (D, H)).astype(dtype), rng.normal(0, 0.1, H).astype(dtype)
    d2, W2 = (rng.normal(0, 1, (N, 10)) / N).astype(dtype), rng.normal(0, 0.1, (H, 10)).astype(dtype)
    A1 = fast.hidden_layer(fast.asarray(X), fast.asarray(W1), fast.asarray(b1), workspace="train_hidden")
    want_A1 = generic.hidden_layer(generic.asarray(X), generic.asarray(W1), generic.asarray(b1))
    close(A1, want_A1, dtype)
    got = fast.hidden_backward(A1, fast.asarray(d2), fast.asarray(W2))
    want = generic.hidden_backward(want_A1, generic.asarray(d2), generic.asarray(W2))
    for name, a, b in zip(("dW2", "db2", "d1", "db1"), got, want, strict=True):
        rtol, atol = TOLERANCE[dtype]
        np.testing.assert_allclose(to_host(a), to_host(b), rtol=rtol, atol=atol * 10, err_msg=name)


@pytest.mark.parametrize("workspace", [None, "train_hidden"])
def test_matmul(pair, dtype, workspace):
    fast, generic = pair
    rng = np.random.default_rng(4)
    A, B = rng.normal(0, 1, (301, 47)).astype(dtype), rng.normal(0, 1, (47, 29)).astype(dtype)
    expected = generic.matmul(generic.asarray(A), generic.asarray(B))
    close(fast.matmul(fast.asarray(A), fast.asarray(B), workspace=workspace), expected, dtype)


def test_affine(pair, dtype):
    fast, generic = pair
    rng = np.random.default_rng(5)
    A, W, b = (rng.normal(0, 1, shape).astype(dtype) for shape in ((301, 47), (47, 10), (10,)))
    expected = generic.affine(generic.asarray(A), generic.asarray(W), generic.asarray(b))
    close(fast.affine(fast.asarray(A), fast.asarray(W), fast.asarray(b)), expected, dtype)


def test_relu_backward(pair, dtype):
    fast, generic = pair
    rng = np.random.default_rng(6)
    A1 = np.maximum(rng.normal(0, 1, (301, 47)), 0).astype(dtype)  # exact zeros where S1 <= 0
    dA1 = rng.normal(0, 1, (301, 47)).astype(dtype)
    expected = generic.relu_backward(generic.asarray(A1), generic.asarray(dA1))
    close(fast.relu_backward(fast.asarray(A1), fast.asarray(dA1)), expected, dtype)


def test_momentum_update(pair, dtype):
    fast, generic = pair
    rng = np.random.default_rng(3)
    theta, v, g = (rng.normal(0, 1, (784, 33)).astype(dtype) for _ in range(3))
    new_theta, new_v = fast.momentum_update(fast.asarray(theta), fast.asarray(v), fast.asarray(g), 0.1, 0.9)
    ref_theta, ref_v = generic.momentum_update(generic.asarray(theta), generic.asarray(v), generic.asarray(g), 0.1, 0.9)
    close(new_theta, ref_theta, dtype)
    close(new_v, ref_v, dtype)


def test_ten_epochs_match_numpy(fast_backend_name, dtype, notmnist):
    """Parity: 1e-9 (float64) and 1e-4 relative (float32) in every parameter and history value."""
    (X, y), (Xv, yv) = notmnist.train, notmnist.valid
    results = {}
    for name in ("numpy", fast_backend_name):
        net = fastmlp.MLP(784, 200, 10, backend=name, dtype=dtype, seed=4)
        results[name] = (net.fit(X, y, Xv, yv, epochs=10), net.params)
    (h_ref, p_ref), (h_fast, p_fast) = results["numpy"], results[fast_backend_name]
    rtol = TOLERANCE[dtype][0]
    for key in p_ref:
        atol = 1e-9 if dtype == "float64" else 1e-6
        if dtype == "float32" and split_name(fast_backend_name)[0] not in KERNEL_BACKENDS:
            # an array library with a BLAS of its own sums in another order, and a hidden unit whose
            # ReLU flips on one sample moves its small weights by ~1e-6: relative to the parameter's scale
            atol = rtol * float(np.max(np.abs(p_ref[key])))
        np.testing.assert_allclose(p_fast[key], p_ref[key], rtol=rtol, atol=atol, err_msg=key)
    atol = 1e-9 if dtype == "float64" else 1e-6
    for key in ("train_loss", "train_acc", "valid_loss", "valid_acc"):
        np.testing.assert_allclose(getattr(h_fast, key), getattr(h_ref, key), rtol=rtol, atol=atol, err_msg=key)


#: the test above that compares each step with the generic version, on every backend that replaces a step
PARITY = {
    "matmul": test_matmul,
    "bias_relu": test_bias_relu,
    "hidden_layer": test_hidden_layer_and_its_backward,
    "affine": test_affine,
    "softmax_xent_grad": test_softmax_xent_grad,
    "logits_loss_acc": test_logits_loss_acc,
    "hidden_backward": test_hidden_backward,
    "relu_backward": test_relu_backward,
    "momentum_update": test_momentum_update,
}


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_every_step_a_backend_replaces_has_its_parity_test(name):
    """Checked on the class, so it holds for cupy on a machine without a GPU too."""
    cls = _load_class(name)
    for step in replaced_steps(cls):
        assert step in PARITY, f"{cls.__name__}.{step} replaces a step that no test compares with the generic one"
        assert "pair" in inspect.signature(PARITY[step]).parameters  # so it runs on every backend in REPLACING
