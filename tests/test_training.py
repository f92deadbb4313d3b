"""Training on the real notMNIST sample, mini-batches, determinism and divergence."""

import math

import numpy as np
import pytest

import fastmlp
from fastmlp.errors import DivergenceError


def test_reaches_85_percent_validation_accuracy_within_30_epochs(notmnist, backend_name):
    (X, y), (Xv, yv) = notmnist.train, notmnist.valid
    net = fastmlp.MLP(784, 1000, 10, backend=backend_name, seed=0)
    history = net.fit(X, y, Xv, yv, epochs=30)
    assert max(history.valid_acc) >= 0.85, history.valid_acc
    assert history.train_loss[-1] < history.train_loss[0]
    assert [
        len(v) for v in (history.train_loss, history.train_acc, history.valid_loss, history.valid_acc, history.seconds)
    ] == [30] * 5
    loss, acc = net.evaluate(Xv, yv)
    assert loss == pytest.approx(history.valid_loss[-1], rel=1e-5) and acc == pytest.approx(history.valid_acc[-1])


def test_predict_and_predict_proba(notmnist, backend_name):
    (X, y), (Xt, yt) = notmnist.train, notmnist.test
    net = fastmlp.MLP(784, 100, 10, backend=backend_name, seed=0)
    net.fit(X, y, epochs=15)
    proba = net.predict_proba(Xt)
    assert proba.shape == (2000, 10) and isinstance(proba, np.ndarray)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    predicted = net.predict(Xt)
    assert predicted.dtype == np.int64 and np.array_equal(predicted, proba.argmax(axis=1))
    assert np.mean(predicted == yt) == pytest.approx(net.evaluate(Xt, yt)[1])


def test_images_stack_and_one_hot_labels_are_accepted(notmnist):
    (X, y) = notmnist.train
    by_labels = fastmlp.MLP(784, 20, 10, seed=1)
    by_labels.fit(X[:500], y[:500], epochs=3)
    by_one_hot = fastmlp.MLP(784, 20, 10, seed=1)
    by_one_hot.fit(X[:500].reshape(500, 28, 28), np.eye(10)[y[:500]], epochs=3)
    for name, value in by_labels.params.items():
        assert np.array_equal(by_one_hot.params[name], value)


def test_mini_batches_train_and_are_seeded(notmnist, backend_name):
    (X, y), (Xv, yv) = notmnist.train, notmnist.valid
    runs = []
    for _ in range(2):
        net = fastmlp.MLP(784, 100, 10, backend=backend_name, seed=0)
        history = net.fit(X, y, Xv, yv, epochs=3, lr=0.05, batch_size=500)
        runs.append((history, net.params))
    assert runs[0][0].valid_acc[-1] > 0.8
    for name in runs[0][1]:
        assert np.array_equal(runs[0][1][name], runs[1][1][name])
    other = fastmlp.MLP(784, 100, 10, backend=backend_name, seed=0)
    other.fit(X, y, epochs=3, lr=0.05, batch_size=500, shuffle_seed=123)
    assert not np.array_equal(other.params["W1"], runs[0][1]["W1"])


def test_same_seed_gives_bit_identical_weights_after_2_epochs(notmnist, backend_name, dtype):
    (X, y) = notmnist.train
    finals = []
    for _ in range(2):
        net = fastmlp.MLP(784, 300, 10, backend=backend_name, dtype=dtype, seed=9)
        net.fit(X, y, epochs=2)
        finals.append(net.params)
    for name in finals[0]:
        assert np.array_equal(finals[0][name], finals[1][name]), name


def test_divergence_names_epoch_lr_and_last_accepted_loss_and_keeps_finite_weights(notmnist, backend_name):
    (X, y), (Xv, yv) = notmnist.train, notmnist.valid
    net = fastmlp.MLP(784, 100, 10, backend=backend_name, seed=0)
    with pytest.raises(DivergenceError) as raised:
        net.fit(X[:1000], y[:1000], Xv, yv, epochs=50, lr=1e3)
    error = raised.value
    assert isinstance(error, FloatingPointError)
    assert f"epoch {error.epoch}" in str(error) and "lr=1000" in str(error)
    assert error.last_accepted_loss is not None and math.isfinite(error.last_accepted_loss)
    assert f"{error.last_accepted_loss:.6g}" in str(error)
    params = net.params
    assert all(np.isfinite(v).all() for v in params.values())
    loss, _ = net.evaluate(X[:1000], y[:1000])
    assert math.isfinite(loss)
    assert loss == pytest.approx(error.last_accepted_loss, rel=1e-4)
    assert len(error.history.train_loss) == error.epoch - 1


@pytest.mark.parametrize("batch_size", [None, 200], ids=["full-batch", "mini-batch"])
def test_a_divergence_error_keeps_the_initial_loss_in_its_history(notmnist, backend_name, batch_size):
    X, y = notmnist.train[0][:1000], notmnist.train[1][:1000]
    net = fastmlp.MLP(784, 100, 10, backend=backend_name, seed=0)
    initial_loss, _ = net.evaluate(X, y)
    with pytest.raises(DivergenceError) as raised:
        net.fit(X, y, epochs=20, lr=1e4, batch_size=batch_size)
    assert raised.value.history.initial_loss == pytest.approx(initial_loss, rel=1e-5)


def test_no_n_by_h_array_is_allocated_per_epoch_after_the_first(backend_name):
    import tracemalloc

    from fastmlp.benchmark import EpochRunner

    if backend_name == "cupy":
        pytest.skip("tracemalloc sees host memory only")
    runner = EpochRunner(backend_name, n=3000, n_valid=1000, hidden=500, dtype="float32")
    runner.epoch()
    runner.epoch()
    tracemalloc.start()
    try:
        for _ in range(3):
            runner.epoch()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    n_by_h = 3000 * 500 * 4
    assert peak < n_by_h / 4, f"{peak} bytes allocated at once during an epoch (N×H is {n_by_h})"
