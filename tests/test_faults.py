"""Bad input through the Python API: rows 1-13 of the fault list, one test per case, named after
its row (``test_rowN_...``). tests/README.md indexes every row of the list and the tests that cover it."""

import math
import warnings

import numpy as np
import pytest

import fastmlp
from fastmlp import network
from fastmlp.backends import get_backend
from fastmlp.errors import DivergenceError, FastMLPError, InvalidInputError, InvalidTypeError

from .helpers import to_host


@pytest.fixture
def net(backend_name):
    return fastmlp.MLP(784, 16, 10, backend=backend_name, seed=0)


def data(n=30, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 784)).astype(np.float32), rng.integers(0, 10, n)


CALLS = {
    "fit": lambda m, X, y: m.fit(X, y, epochs=1),
    "fit valid": lambda m, X, y: m.fit(*data(), X, y, epochs=1),
    "predict": lambda m, X, y: m.predict(X),
    "predict_proba": lambda m, X, y: m.predict_proba(X),
    "evaluate": lambda m, X, y: m.evaluate(X, y),
}


@pytest.fixture(params=list(CALLS), ids=list(CALLS))
def call(request):
    return CALLS[request.param]


def unchanged(net, before):
    return all(np.array_equal(net.params[k], v) for k, v in before.items())


def test_row1_nan_in_X_names_the_first_bad_row(net, call):
    X, y = data()
    X[7, 100] = np.nan
    X[12, 3] = np.nan
    before = net.params
    with pytest.raises(ValueError, match=r"contains NaN \(first in row 7, 2 bad rows\)"):
        call(net, X, y)
    assert unchanged(net, before)


def test_row2_infinity_in_X(net, call):
    X, y = data()
    X[4, 0] = -np.inf
    with pytest.raises(ValueError, match=r"contains infinity \(first in row 4"):
        call(net, X, y)


def test_row2_float64_beyond_float32_range(net):
    X, y = data()
    X = X.astype(np.float64)
    X[2, 2] = 1e300
    with pytest.raises(ValueError, match="infinity after conversion to float32"):
        net.fit(X, y, epochs=1)


@pytest.mark.parametrize("shape", [(784,), (2, 3, 28, 28)], ids=["1-D", "4-D"])
def test_row3_X_must_be_2d(net, call, shape):
    with pytest.raises(
        ValueError, match=r"must be 2-D .* got shape " + str(shape).replace("(", r"\(").replace(")", r"\)")
    ):
        call(net, np.zeros(shape, np.float32), np.zeros(2, np.int64))


def test_row3_a_stack_of_images_is_flattened(net):
    X, _y = data()
    assert np.array_equal(net.predict(X.reshape(30, 28, 28)), net.predict(X))


@pytest.mark.parametrize("shape", [(0, 784), (5, 0)], ids=["no samples", "no features"])
def test_row4_empty_input(net, shape):
    with pytest.raises(ValueError, match="at least one sample and one feature"):
        net.fit(np.zeros(shape, np.float32), np.zeros(shape[0], np.int64), epochs=1)


def test_row5_length_mismatch_names_both(net):
    X, y = data()
    with pytest.raises(ValueError, match="X has 30 samples but y has 29 labels"):
        net.fit(X, y[:29], epochs=1)


@pytest.mark.parametrize("bad", [-1, 10, 99])
def test_row6_labels_outside_0_to_9(net, bad):
    X, y = data()
    y[11] = bad
    before = net.params
    with pytest.raises(ValueError, match=rf"y\[11\] = {bad} is not a class label; labels must be in 0..9"):
        net.fit(X, y, epochs=1)
    assert unchanged(net, before)


@pytest.mark.parametrize(
    "labels, pattern",
    [
        (np.arange(30) % 10 * 1.0, "dtype float64"),
        (np.array([np.nan] * 30), "dtype float64"),
        (np.array(["a"] * 30), "dtype <U1"),
        (np.ones(30, bool), "dtype bool"),
    ],
    ids=["float", "nan", "string", "bool"],
)
def test_row7_labels_of_the_wrong_type(net, labels, pattern):
    X, _ = data()
    with pytest.raises(TypeError, match=pattern):
        net.fit(X, labels, epochs=1)


def test_row7_one_hot_rows_that_are_not_one_hot(net):
    X, y = data()
    Y = np.eye(10)[y]
    Y[5] = 0.0
    with pytest.raises(ValueError, match=r"y row 5 is not one-hot"):
        net.fit(X, Y, epochs=1)
    Y = np.eye(10)[y]
    Y[8, 0] = 0.5
    with pytest.raises(ValueError, match=r"y row 8 is not one-hot"):
        net.fit(X, Y, epochs=1)


def test_row8_wrong_number_of_features(net):
    with pytest.raises(ValueError, match="X has 783 features, the model expects 784"):
        net.predict(np.zeros((3, 783), np.float32))


@pytest.mark.parametrize("X", [np.zeros((3, 784), complex), np.full((3, 784), None, object)], ids=["complex", "object"])
def test_row9_object_and_complex_are_type_errors(net, X):
    with pytest.raises(TypeError, match=f"dtype {X.dtype}"):
        net.predict(X)


@pytest.mark.parametrize("dtype", [np.uint8, np.float64, np.int32])
def test_row9_other_numbers_are_converted_on_a_copy(net, dtype):
    X, y = data()
    Xd = (X * 255).astype(dtype)
    copy = Xd.copy()
    net.fit(Xd, y, epochs=1)
    assert np.array_equal(Xd, copy) and Xd.dtype == dtype


def test_row10_read_only_inputs_are_accepted_and_never_modified(net):
    X, y = data()
    Xv, yv = data(seed=1)
    arrays = [X, y, Xv, yv]
    copies = [a.copy() for a in arrays]
    for a in arrays:
        a.setflags(write=False)
    net.fit(X, y, Xv, yv, epochs=2)
    net.predict(X)
    net.evaluate(Xv, yv)
    assert all(np.array_equal(a, c) for a, c in zip(arrays, copies, strict=True))


def test_row10_from_params_does_not_alias_the_callers_arrays(backend_name):
    params = network.init_params(784, 8, 10, seed=0, dtype="float32")
    copies = {k: v.copy() for k, v in params.items()}
    for v in params.values():
        v.setflags(write=False)
    net = fastmlp.MLP.from_params(params, backend=backend_name)
    net.fit(*data(), epochs=2)
    assert all(np.array_equal(params[k], copies[k]) for k in params)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"lr": 0}, r"lr \(the learning rate\) must be a finite number > 0, got 0"),
        ({"lr": -1.0}, r"got -1.0"),
        ({"lr": float("nan")}, r"got nan"),
        ({"momentum": 1.0}, r"momentum must be in \[0, 1\), got 1.0"),
        ({"momentum": -0.1}, r"momentum must be in \[0, 1\), got -0.1"),
        ({"epochs": 0}, r"epochs must be an integer >= 1, got 0"),
        ({"epochs": 2.5}, r"epochs must be an integer >= 1, got 2.5"),
        ({"batch_size": 0}, r"batch_size must be an integer >= 1, got 0"),
    ],
    ids=["lr 0", "lr negative", "lr nan", "momentum 1", "momentum negative", "epochs 0", "epochs float", "batch 0"],
)
def test_row11_bad_hyperparameters_name_the_parameter_and_value(net, kwargs, pattern):
    X, y = data()
    with pytest.raises(ValueError, match=pattern):
        net.fit(X, y, **kwargs)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"n_hidden": 0}, "n_hidden must be an integer >= 1, got 0"),
        ({"n_out": 1}, "n_out must be at least 2"),
        ({"dtype": "int8"}, "dtype must be one of float32, float64, got 'int8'"),
        ({"seed": -1}, "seed must be an integer >= 0, got -1"),
    ],
)
def test_row11_bad_model_settings(kwargs, pattern):
    settings = {"n_in": 784, "n_hidden": 8, "n_out": 10, **kwargs}
    with pytest.raises(ValueError, match=pattern):
        fastmlp.MLP(settings.pop("n_in"), settings.pop("n_hidden"), settings.pop("n_out"), **settings)


def test_row12_huge_weights_give_finite_loss_and_gradients_without_warnings(notmnist, backend_name, dtype):
    X, y = notmnist.train[0][:500].astype(dtype), notmnist.train[1][:500]
    params = {
        k: v * (1e3 if k.startswith("W") else 1)
        for k, v in network.init_params(784, 64, 10, seed=0, dtype=dtype).items()
    }
    backend = get_backend(backend_name)
    device = {k: backend.asarray(v) for k, v in params.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, _, grads = network.loss_and_grads(backend, device, backend.asarray(X), backend.asarray(y))
    assert math.isfinite(float(to_host(loss))) and float(to_host(loss)) > 100
    assert all(np.isfinite(to_host(g)).all() for g in grads.values())


def test_row12_logits_of_1e4_in_float32_through_a_model(backend_name):
    # W2 picks ±1e4 logits from a single active hidden unit
    params = {
        "W1": np.zeros((4, 2), np.float32),
        "b1": np.array([1.0, 0.0], np.float32),
        "W2": np.array([[1e4, -1e4, 0.0], [0.0, 0.0, 0.0]], np.float32),
        "b2": np.zeros(3, np.float32),
    }
    net = fastmlp.MLP.from_params(params, backend=backend_name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, acc = net.evaluate(np.zeros((2, 4), np.float32), np.array([1, 0]))
        proba = net.predict_proba(np.zeros((1, 4), np.float32))
    assert loss == pytest.approx((2e4 + 0.0) / 2) and acc == 0.5
    assert proba.tolist() == [[1.0, 0.0, 0.0]]


def test_row13_non_finite_initial_loss(backend_name):
    params = network.init_params(784, 8, 10, seed=0, dtype="float32")
    params["W2"][:] = 3e38
    params["b1"][:] = 1e38
    net = fastmlp.MLP.from_params(params, backend=backend_name)
    before = net.params
    with pytest.raises(DivergenceError, match="the initial weights give a training loss of nan"):
        net.fit(*data(), epochs=3)
    assert unchanged(net, before)


def test_row13_mini_batch_divergence(notmnist, backend_name):
    (X, y) = notmnist.train
    net = fastmlp.MLP(784, 50, 10, backend=backend_name, seed=0)
    net.fit(X[:600], y[:600], epochs=1, batch_size=100, lr=0.01)
    good = net.params
    with pytest.raises(DivergenceError, match="training diverged at epoch 1") as raised:
        net.fit(X[:600], y[:600], epochs=5, batch_size=100, lr=1e3)
    assert unchanged(net, good)
    assert raised.value.history.epochs == 0


def test_from_params_lists_every_problem():
    params = network.init_params(784, 8, 10, seed=0, dtype="float32")
    params["b1"] = np.zeros(9, np.float32)
    params["b2"] = np.array([np.nan] * 10, np.float32)
    with pytest.raises(InvalidInputError) as error:
        fastmlp.MLP.from_params(params)
    assert "b1 has shape (9,), expected (8,)" in str(error.value) and "b2 contains NaN" in str(error.value)
    with pytest.raises(InvalidInputError, match="missing W2; unexpected W3"):
        fastmlp.MLP.from_params({"W1": params["W1"], "b1": params["b1"], "W3": 1, "b2": params["b2"]})


def test_every_error_is_a_fastmlp_error():
    for cls in (
        InvalidInputError,
        InvalidTypeError,
        DivergenceError,
        fastmlp.BackendError,
        fastmlp.StorageError,
        fastmlp.MissingFileError,
        fastmlp.DeviceMemoryError,
    ):
        assert issubclass(cls, FastMLPError)
