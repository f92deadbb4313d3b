"""The network's math: finite-difference gradients, the seed oracle, and array-api-strict portability."""

import array_api_strict
import numpy as np
import pytest

import fastmlp
from fastmlp import network
from fastmlp.backends import get_backend
from fastmlp.backends.base import Backend

from . import seed_oracle as oracle
from .helpers import TOLERANCE, to_host
from .seed_oracle import train as seed_train


def small_problem(seed=1, n=7, d=6, h=5, k=4, dtype="float64"):
    rng = np.random.default_rng(seed)
    params = network.init_params(d, h, k, seed=seed, dtype=dtype)
    params["b1"] = rng.normal(0, 0.1, h).astype(dtype)  # non-zero biases exercise their gradients
    params["b2"] = rng.normal(0, 0.1, k).astype(dtype)
    X = rng.normal(0, 1, (n, d)).astype(dtype)
    labels = rng.integers(0, k, n)
    return params, X, labels


def loss_of(backend, params, X, labels):
    device = {k: backend.asarray(v) for k, v in params.items()}
    loss, _ = network.loss_and_accuracy(backend, device, backend.asarray(X), backend.asarray(labels))
    return float(to_host(loss))


def test_gradients_match_central_differences(backend_name):
    backend = get_backend(backend_name)
    params, X, labels = small_problem()
    device = {k: backend.asarray(v) for k, v in params.items()}
    _, _, grads = network.loss_and_grads(backend, device, backend.asarray(X), backend.asarray(labels))
    eps = 1e-6
    for name in network.PARAM_NAMES:
        analytic = to_host(grads[name])
        numeric = np.zeros_like(params[name])
        for index in np.ndindex(params[name].shape):
            plus = {k: v.copy() for k, v in params.items()}
            minus = {k: v.copy() for k, v in params.items()}
            plus[name][index] += eps
            minus[name][index] -= eps
            numeric[index] = (loss_of(backend, plus, X, labels) - loss_of(backend, minus, X, labels)) / (2 * eps)
        relative = np.linalg.norm(analytic - numeric) / max(np.linalg.norm(analytic) + np.linalg.norm(numeric), 1e-30)
        assert relative < 1e-6, f"{name}: relative error {relative:.2e}"


def test_gradients_are_exactly_the_math_on_a_tiny_case():
    # X = [[1, 2]], W1 = I, b1 = [0, -3]: S1 = [1, -1], A1 = [1, 0]; W2 = [[1, 0], [0, 1]], b2 = 0:
    # S2 = [1, 0], P = [e/(e+1), 1/(e+1)], label 1 -> d2 = P - [0, 1]
    backend = get_backend("numpy")
    e = np.e
    params = {"W1": np.eye(2), "b1": np.array([0.0, -3.0]), "W2": np.eye(2), "b2": np.zeros(2)}
    X = np.array([[1.0, 2.0]])
    _, _, grads = network.loss_and_grads(backend, {k: v.copy() for k, v in params.items()}, X, np.array([1]))
    d2 = np.array([e / (e + 1), 1 / (e + 1) - 1])
    np.testing.assert_allclose(grads["b2"], d2, rtol=1e-15)
    np.testing.assert_allclose(grads["W2"], [[d2[0], d2[1]], [0.0, 0.0]], rtol=1e-15)  # A1ᵀ d2
    np.testing.assert_allclose(grads["b1"], [d2[0], 0.0], rtol=1e-15)  # (d2 W2ᵀ) ⊙ [S1 > 0]
    np.testing.assert_allclose(grads["W1"], [[d2[0], 0.0], [2 * d2[0], 0.0]], rtol=1e-15)


def test_the_math_runs_on_array_api_strict_arrays():
    """Portability proof: the generic steps use nothing beyond the Array API standard, and on
    array-api-strict arrays give the loss, accuracy, gradients and momentum update of the seed's
    equations written in plain float64 NumPy (tests/seed_oracle.py)."""
    params, X, labels = small_problem()
    strict = Backend(array_api_strict)
    device = {k: array_api_strict.asarray(v) for k, v in params.items()}
    loss, acc, grads = network.loss_and_grads(
        strict, device, array_api_strict.asarray(X), array_api_strict.asarray(labels)
    )
    velocities = {k: array_api_strict.full(v.shape, 1e-5, dtype=array_api_strict.float64) for k, v in device.items()}
    new_params, new_velocities = network.update(strict, device, velocities, grads, 0.1, 0.9)

    W1, b1, W2, b2 = (params[k] for k in network.PARAM_NAMES)
    Y = np.eye(W2.shape[1])[labels]
    S1, A1, P = oracle.forward(X, W1, b1, W2, b2)
    d2 = oracle.grad_ce(Y, P)
    d1 = (d2 @ W2.T) * (S1 > 0)
    expected_grads = {"W1": X.T @ d1, "b1": d1.sum(axis=0), "W2": A1.T @ d2, "b2": d2.sum(axis=0)}
    assert float(loss) == pytest.approx(oracle.average_ce(Y, P), rel=1e-12)
    assert float(acc) == np.mean(P.argmax(axis=1) == labels)
    for name, g in expected_grads.items():
        np.testing.assert_allclose(np.from_dlpack(grads[name]), g, rtol=1e-12, atol=1e-15, err_msg=name)
        v = 0.9 * 1e-5 + 0.1 * g  # v ← γ v + α g
        np.testing.assert_allclose(np.from_dlpack(new_velocities[name]), v, rtol=1e-12, atol=1e-15, err_msg=name)
        np.testing.assert_allclose(np.from_dlpack(new_params[name]), params[name] - v, rtol=1e-12, atol=1e-15)


def test_fit_reproduces_the_seed_loop_to_1e_10_in_float64(notmnist64, backend_name):
    (X, y), (Xv, yv) = notmnist64.train, notmnist64.valid
    X, y, Xv, yv = X[:3000], y[:3000], Xv[:1000], yv[:1000]
    net = fastmlp.MLP(784, 100, 10, backend=backend_name, dtype="float64", seed=3)
    start = net.params
    history = net.fit(X, y, Xv, yv, epochs=10, lr=0.1, momentum=0.9)
    (W1, b1, W2, b2), expected = seed_train(X, y, Xv, yv, start["W1"], start["b1"], start["W2"], start["b2"], epochs=10)
    tolerance = 1e-10 if backend_name == "numpy" else TOLERANCE["float64"][0]
    final = net.params
    for name, reference in zip(network.PARAM_NAMES, (W1, b1, W2, b2), strict=True):
        np.testing.assert_allclose(final[name], reference, rtol=0, atol=tolerance, err_msg=name)
    for key in ("train_loss", "train_acc", "valid_loss", "valid_acc"):
        np.testing.assert_allclose(getattr(history, key), expected[key], rtol=0, atol=tolerance, err_msg=key)


def test_two_fits_continue_like_one_because_velocities_persist(backend_name, notmnist):
    X, y = notmnist.train
    once = fastmlp.MLP(784, 50, 10, backend=backend_name, dtype="float64", seed=5)
    once.fit(X[:1000], y[:1000], epochs=6)
    twice = fastmlp.MLP(784, 50, 10, backend=backend_name, dtype="float64", seed=5)
    first = twice.fit(X[:1000], y[:1000], epochs=3)
    twice.fit(X[:1000], y[:1000], epochs=3)
    for name in network.PARAM_NAMES:
        np.testing.assert_allclose(twice.params[name], once.params[name], rtol=1e-12, atol=1e-14)
    assert len(first.train_loss) == 3


def test_initial_weights_follow_the_seed_xavier_variant():
    params = network.init_params(784, 1000, 10, seed=0, dtype="float64")
    assert params["W1"].std() == pytest.approx(np.sqrt(2 / (784 + 10)), rel=0.01)
    assert params["W2"].std() == pytest.approx(np.sqrt(2 / (1000 + 1)), rel=0.05)
    assert abs(params["W1"].mean()) < 1e-3
    assert not params["b1"].any() and not params["b2"].any()
    assert {k: v.shape for k, v in params.items()} == {"W1": (784, 1000), "b1": (1000,), "W2": (1000, 10), "b2": (10,)}


def test_initial_weights_are_bit_identical_across_backends(backend_name, dtype):
    """Every backend starts from the seed's draw, bit for bit: float64 normals from
    ``numpy.random.default_rng(seed)``, W1 then W2, cast to the dtype (drawn here, independently)."""
    rng = np.random.default_rng(11)
    W1 = rng.normal(0.0, np.sqrt(2 / (784 + 10)), size=(784, 64)).astype(dtype)
    W2 = rng.normal(0.0, np.sqrt(2 / (64 + 1)), size=(64, 10)).astype(dtype)
    expected = {"W1": W1, "b1": np.zeros(64, dtype), "W2": W2, "b2": np.zeros(10, dtype)}
    params = fastmlp.MLP(784, 64, 10, backend=backend_name, dtype=dtype, seed=11).params
    for name in network.PARAM_NAMES:
        assert params[name].dtype == np.dtype(dtype)
        assert np.array_equal(params[name], expected[name]), name
