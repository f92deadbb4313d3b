"""fastmlp.sklearn.MLPClassifier: scikit-learn's estimator checks, labels, splits, partial_fit,
parallel fits (joblib's process workers and a real two-process Dask cluster) and their thread limits."""

import importlib.util
import inspect
import pickle
import subprocess
import sys

import numpy as np
import pytest

import fastmlp
from fastmlp.backends import get_backend

from .helpers import TOLERANCE

HAVE_SKLEARN = importlib.util.find_spec("sklearn") is not None
HAVE_DASK = importlib.util.find_spec("distributed") is not None
needs_sklearn = pytest.mark.skipif(
    not HAVE_SKLEARN, reason='scikit-learn is not installed (pip install "fastmlp[sklearn]")'
)
needs_dask = pytest.mark.skipif(
    not (HAVE_SKLEARN and HAVE_DASK), reason='dask.distributed is not installed (pip install "fastmlp[dask]")'
)

#: small settings for the checks and the searches; the library's defaults are the seed's
SMALL = {"hidden": 16, "epochs": 20}
LETTERS = np.array(list("ABCDEFGHIJ"))

if HAVE_SKLEARN:
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV, KFold, cross_validate
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.utils.estimator_checks import parametrize_with_checks

    from fastmlp.sklearn import MLPClassifier, expected_failed_checks

    CHECKED = [
        MLPClassifier(**SMALL),
        MLPClassifier(**SMALL, dtype="float64", batch_size=7, validation_fraction=0.25, seed=3),
    ]

    # without scikit-learn these checks are not collected; every needs_sklearn test below says why
    @parametrize_with_checks(CHECKED, expected_failed_checks=expected_failed_checks)
    def test_scikit_learn_estimator_checks(estimator, check):
        check(estimator)


def test_importing_the_module_without_scikit_learn_says_how_to_install_it():
    code = "import sys; sys.modules['sklearn'] = None\nimport fastmlp.sklearn"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "ImportError: fastmlp.sklearn needs scikit-learn" in result.stderr
    assert 'pip install "fastmlp[sklearn]"' in result.stderr


def test_import_fastmlp_imports_neither_scikit_learn_nor_dask():
    code = (
        "import sys, fastmlp; fastmlp.MLP(4, 3, 2)\n"
        "print(sorted(m for m in ('sklearn', 'dask', 'distributed', 'joblib') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def sample(notmnist):
    """1500 training rows of the real sample, their labels as letters, and 500 held-out rows."""
    (X, y), (Xv, yv) = notmnist.train, notmnist.valid
    return X[:1500], y[:1500], Xv[:500], yv[:500]


@needs_sklearn
def test_the_defaults_are_the_seeds_settings():
    params = MLPClassifier().get_params()
    assert params == {
        "hidden": 1000,
        "epochs": 200,
        "lr": 0.1,
        "momentum": 0.9,
        "batch_size": None,
        "validation_fraction": None,
        "backend": None,
        "dtype": "float32",
        "seed": 0,
        "n_threads": None,
    }
    assert clone(MLPClassifier(hidden=7, lr=0.5)).get_params()["hidden"] == 7
    # the estimator restates MLP's and MLP.fit's defaults (scikit-learn reads each setting from __init__'s
    # signature); they must stay the same
    model, fit = inspect.signature(fastmlp.MLP).parameters, inspect.signature(fastmlp.MLP.fit).parameters
    assert {name: params[name] for name in ("epochs", "lr", "momentum", "batch_size")} == {
        name: fit[name].default for name in ("epochs", "lr", "momentum", "batch_size")
    }
    assert (params["hidden"], params["dtype"], params["seed"]) == tuple(
        model[name].default for name in ("n_hidden", "dtype", "seed")
    )


@needs_sklearn
def test_letter_labels_train_the_same_network_as_integer_labels(sample, backend_name):
    X, y, Xv, _ = sample
    estimator = MLPClassifier(hidden=32, epochs=15, backend=backend_name, seed=4).fit(X, LETTERS[y])
    network = fastmlp.MLP(784, 32, 10, backend=backend_name, seed=4)
    network.fit(X, y, epochs=15, lr=0.1, momentum=0.9)
    assert list(estimator.classes_) == list("ABCDEFGHIJ")
    assert estimator.n_features_in_ == 784
    assert estimator.model_.backend == backend_name
    rtol, atol = TOLERANCE["float32"]
    np.testing.assert_allclose(estimator.predict_proba(Xv), network.predict_proba(Xv), rtol=rtol, atol=atol)
    assert (estimator.predict(Xv) == LETTERS[network.predict(Xv)]).mean() > 0.99


@needs_sklearn
def test_labels_in_any_order_map_back_through_classes(sample):
    X, y, Xv, yv = sample
    names = np.array([f"letter {9 - k}" for k in range(10)])  # sorted order reverses the integer order
    estimator = MLPClassifier(hidden=64, epochs=60).fit(X, names[y])
    assert list(estimator.classes_) == sorted(names)
    predicted = estimator.predict(Xv)
    assert predicted.dtype.kind == "U"
    assert (predicted == names[yv]).mean() > 0.8
    probabilities = estimator.predict_proba(Xv)
    assert (estimator.classes_[probabilities.argmax(axis=1)] == predicted).all()
    assert estimator.score(Xv, names[yv]) == pytest.approx((predicted == names[yv]).mean())


@needs_sklearn
def test_three_integer_classes_and_any_number_of_features():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 5))
    y = np.repeat([-5, 7, 100], 30)
    X[:, 0] += np.repeat([-3.0, 0.0, 3.0], 30)  # the first feature separates the classes
    estimator = MLPClassifier(hidden=8, epochs=100, lr=0.05).fit(X, y)
    assert list(estimator.classes_) == [-5, 7, 100]
    assert estimator.n_features_in_ == 5
    assert estimator.predict_proba(X).shape == (90, 3)
    assert estimator.score(X, y) > 0.9


@needs_sklearn
def test_one_class_is_a_clear_value_error():
    with pytest.raises(ValueError, match=r"at least 2 classes in y, got 1 class \('a'\)"):
        MLPClassifier(**SMALL).fit(np.ones((4, 3)), ["a"] * 4)


@needs_sklearn
def test_a_bad_hidden_is_named_hidden():
    with pytest.raises(ValueError, match=r"^hidden must be an integer >= 1, got -1$"):
        MLPClassifier(**{**SMALL, "hidden": -1}).fit(np.ones((4, 3)), ["a", "b"] * 2)


@needs_sklearn
def test_labels_mixing_strings_and_numbers_are_a_clear_type_error():
    y = np.array(["A", 1.0, 2.5, "B"], dtype=object)
    message = r"y mixes labels of the types float, str, which cannot be sorted; use labels of one type"
    with pytest.raises(TypeError, match=message):
        MLPClassifier(**SMALL).fit(np.ones((4, 3)), y)
    estimator = MLPClassifier(**SMALL).partial_fit(np.ones((4, 3)), [0, 1, 0, 1])
    with pytest.raises(TypeError, match=message):
        estimator.partial_fit(np.ones((4, 3)), y)


@needs_sklearn
def test_the_validation_split_lands_in_history(sample):
    X, y, _, _ = sample
    estimator = MLPClassifier(hidden=16, epochs=5, validation_fraction=0.2).fit(X, y)
    history = estimator.history_
    assert len(history.train_loss) == len(history.valid_acc) == 5
    assert all(0 <= acc <= 1 for acc in history.valid_acc)
    # accuracies are counts over 1200 training and 300 held-out rows
    assert all(abs(acc * 1200 - round(acc * 1200)) < 1e-2 for acc in history.train_acc)
    assert all(abs(acc * 300 - round(acc * 300)) < 1e-2 for acc in history.valid_acc)
    assert estimator.history_ is estimator.model_.history_
    with pytest.raises(ValueError, match=r"validation_fraction must be None or a number in \(0, 1\), got 1.5"):
        MLPClassifier(validation_fraction=1.5).fit(X, y)


@needs_sklearn
def test_partial_fit_continues_from_the_weights_and_velocities(sample):
    X, y, Xv, _ = sample
    stepwise = MLPClassifier(hidden=16, seed=2)
    for _ in range(3):
        stepwise.partial_fit(X, LETTERS[y], classes=LETTERS)
    at_once = MLPClassifier(hidden=16, epochs=3, seed=2).fit(X, LETTERS[y])
    rtol, atol = TOLERANCE["float32"]
    np.testing.assert_allclose(stepwise.predict_proba(Xv), at_once.predict_proba(Xv), rtol=rtol, atol=atol)
    assert len(stepwise.history_.train_loss) == 3
    assert stepwise.history_.train_loss == pytest.approx(at_once.history_.train_loss, rel=rtol)
    with pytest.raises(ValueError, match=r"labels that were not in classes .*\['K'\]"):
        stepwise.partial_fit(X[:5], ["A", "B", "K", "A", "B"])


@needs_sklearn
def test_a_pipeline_and_a_pickle_keep_the_predictions(sample, tmp_path):
    X, y, Xv, _ = sample
    pipeline = make_pipeline(StandardScaler(), MLPClassifier(hidden=16, epochs=10, lr=0.01)).fit(X, y)
    path = tmp_path / "pipeline.pkl"
    path.write_bytes(pickle.dumps(pipeline))
    again = pickle.loads(path.read_bytes())
    np.testing.assert_array_equal(again.predict_proba(Xv), pipeline.predict_proba(Xv))


@needs_sklearn
def test_fitted_estimators_come_back_from_joblib_process_workers(sample):
    X, y, Xv, _ = sample
    result = cross_validate(MLPClassifier(**SMALL), X, y, cv=KFold(2), n_jobs=2, return_estimator=True)
    local = MLPClassifier(**SMALL).fit(X[750:], y[750:])  # the first fold tests on X[:750], trains on the rest
    rtol, atol = TOLERANCE["float32"]
    np.testing.assert_allclose(result["estimator"][0].predict_proba(Xv), local.predict_proba(Xv), rtol=rtol, atol=atol)


def test_limit_threads_limits_blas_and_the_backends_pool_then_restores_them(backend_name):
    from threadpoolctl import threadpool_info

    def blas_threads():
        return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]

    backend = get_backend(backend_name)
    before = blas_threads()
    numba = sys.modules.get("numba")
    numba_before = numba.get_num_threads() if numba else None
    with backend.limit_threads(1):
        assert blas_threads() and set(blas_threads()) == {1}
        if numba is not None:
            assert numba.get_num_threads() == (1 if backend_name == "numba" else numba_before)
    assert blas_threads() == before
    if numba is not None:
        assert numba.get_num_threads() == numba_before


@needs_sklearn
def test_a_joblib_worker_fits_with_its_share_of_the_cores():
    from joblib import Parallel, cpu_count, delayed

    share = max(cpu_count() // 2, 1)  # what joblib's process workers get: the cores it may use, shared
    counts = Parallel(n_jobs=2)(delayed(MLPClassifier()._thread_count)() for _ in range(2))
    assert counts == [share, share]
    assert MLPClassifier(n_threads=3)._thread_count() == 3
    with pytest.raises(ValueError, match="n_threads must be an integer >= 1, got 0"):
        MLPClassifier(**SMALL, n_threads=0).fit(np.eye(4), [0, 1, 0, 1])


# ------------------------------------------------------------------ a real Dask cluster
@pytest.fixture(scope="module")
def dask_client():
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        worker_dashboard_address=None,
    )
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()


GRID = {"hidden": [16, 64], "lr": [0.02, 0.1]}


def _search(X, y):
    return GridSearchCV(MLPClassifier(epochs=30), GRID, cv=3, n_jobs=-1).fit(X, y)


@needs_dask
def test_a_grid_search_on_a_dask_cluster_equals_the_local_one(sample, dask_client):
    import joblib

    X, y, _, _ = sample
    local = _search(X, LETTERS[y])
    with joblib.parallel_backend("dask"):
        distributed = _search(X, LETTERS[y])
    assert len(dask_client.scheduler_info()["workers"]) == 2
    assert distributed.best_params_ == local.best_params_
    for key in ("mean_test_score", "split0_test_score", "split1_test_score", "split2_test_score"):
        np.testing.assert_array_equal(distributed.cv_results_[key], local.cv_results_[key])
    assert local.best_score_ > 0.7
    assert local.cv_results_["params"][int(np.argmax(local.cv_results_["mean_test_score"]))] == local.best_params_


@needs_dask
def test_a_dask_worker_limits_every_thread_pool_to_one(dask_client):
    counts = dask_client.run(MLPClassifier()._thread_count)
    assert len(counts) == 2 and set(counts.values()) == {1}
