"""A scikit-learn estimator around :class:`fastmlp.MLP`: pipelines, grid searches, cross-validation.

    >>> from sklearn.model_selection import GridSearchCV
    >>> from fastmlp.sklearn import MLPClassifier
    >>> search = GridSearchCV(MLPClassifier(epochs=50), {"hidden": [100, 1000], "lr": [0.05, 0.1]}, n_jobs=-1)
    >>> search.fit(X, y).best_params_

Needs scikit-learn (``pip install "fastmlp[sklearn]"``); ``import fastmlp`` never imports it.
The estimator is thin: scikit-learn's own input validation, a mapping of any labels to 0..K-1,
then the same :class:`~fastmlp.MLP` on any backend.

Parallel fits: joblib's process workers and Dask's workers limit BLAS to their share of the cores
through environment variables; :meth:`MLPClassifier.fit` applies the same limit to every thread
pool of the backend (Numba's included, which Dask's workers do not limit), so fits running side by
side do not fight over the cores.
"""

from __future__ import annotations

import numbers
import os
from typing import Any

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.model_selection import train_test_split
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as exc:  # pragma: no cover - exercised in an environment without scikit-learn
    raise ImportError(
        f'fastmlp.sklearn needs scikit-learn >= 1.6 ({exc}); install it with: pip install "fastmlp[sklearn]"'
    ) from exc

from .arguments import check_positive_int
from .backends import get_backend
from .errors import FastMLPError, InvalidInputError, InvalidTypeError
from .mlp import MLP
from .train import History

__all__ = ["MLPClassifier", "expected_failed_checks"]


class MLPClassifier(ClassifierMixin, BaseEstimator):
    """The fastmlp network as a scikit-learn classifier.

    Parameters (stored as given; checked by ``fit``):

    hidden : hidden units H (default 1000, the reference assignment's).
    epochs, lr, momentum : training settings (200, 0.1, 0.9, the reference assignment's).
    batch_size : None for full-batch gradient descent (the assignment's), an int for seeded mini-batches.
    validation_fraction : None, or a fraction in (0, 1) of the training rows held out (stratified,
        drawn from ``seed``); its per-epoch loss and accuracy land in ``history_``.
    backend : a backend name (``fastmlp.BACKEND_NAMES`` or ``"auto"``), or None for
        ``FASTMLP_BACKEND`` / the default.
    dtype : "float32" or "float64".
    seed : seeds the initial weights, the mini-batches and the validation split.
    n_threads : threads for BLAS, OpenMP and Numba during ``fit``; None keeps the BLAS thread count
        of the process (which joblib and Dask workers set to their share of the cores).

    Attributes after ``fit``: ``classes_`` (the sorted labels), ``n_features_in_``,
    ``feature_names_in_`` (for named columns), ``model_`` (the :class:`~fastmlp.MLP`) and
    ``history_`` (its :class:`~fastmlp.History`).
    """

    def __init__(
        self,
        hidden=1000,
        *,
        epochs=200,
        lr=0.1,
        momentum=0.9,
        batch_size=None,
        validation_fraction=None,
        backend=None,
        dtype="float32",
        seed=0,
        n_threads=None,
    ):
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.momentum = momentum
        self.batch_size = batch_size
        self.validation_fraction = validation_fraction
        self.backend = backend
        self.dtype = dtype
        self.seed = seed
        self.n_threads = n_threads

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        tags.input_tags.allow_nan = False
        return tags

    # --------------------------------------------------------- training
    def fit(self, X: Any, y: Any) -> MLPClassifier:
        """Train a new network on (X, y) for ``epochs`` epochs; returns self.

        y may hold any labels (numbers or strings), at least two distinct ones."""
        X, y = validate_data(self, X, y)
        self.classes_, labels = _encode_labels(y)
        X_train, labels_train, X_valid, labels_valid = self._split(X, labels)
        self.model_ = self._new_model(X.shape[1])
        self._train(X_train, labels_train, X_valid, labels_valid, epochs=self.epochs)
        self.history_ = self.model_.history_
        return self

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> MLPClassifier:
        """One more epoch on (X, y), continuing from the current weights and velocities; returns self.

        The first call creates the network: pass ``classes`` (every label the data will hold)
        unless this batch already holds them all. No validation split is made here."""
        first_call = not hasattr(self, "model_")
        X, y = validate_data(self, X, y, reset=first_call)
        if first_call:
            self.classes_ = _encode_labels(y if classes is None else np.asarray(classes))[0]
            self.model_ = self._new_model(X.shape[1])
            self.history_ = History()
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise InvalidInputError(
                f"classes={list(np.unique(classes))} differs from the classes of the first partial_fit "
                f"call, {list(self.classes_)}; call fit to start again with new classes"
            )
        labels = _labels_in(self.classes_, y)
        self._train(X, labels, None, None, epochs=1)
        _extend(self.history_, self.model_.history_)
        return self

    def _new_model(self, n_features):
        """The network, an argument MLP refuses named as this estimator's parameter (``hidden``)."""
        try:
            return MLP(
                n_features, self.hidden, len(self.classes_), backend=self.backend, dtype=self.dtype, seed=self.seed
            )
        except FastMLPError as exc:
            name = _PARAMETERS.get(exc.parameter or "")
            if name is None:
                raise
            raise type(exc)(exc.naming(name), parameter=name) from None

    def _split(self, X, labels):
        """(X_train, labels_train, X_valid, labels_valid): the held-out part is None without a split."""
        fraction = self.validation_fraction
        if fraction is None:
            return X, labels, None, None
        if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0 < float(fraction) < 1:
            raise InvalidInputError(f"validation_fraction must be None or a number in (0, 1), got {fraction!r}")
        X_train, X_valid, labels_train, labels_valid = train_test_split(
            X, labels, test_size=fraction, random_state=self.seed, stratify=labels
        )
        return X_train, labels_train, X_valid, labels_valid

    def _train(self, X, labels, X_valid, labels_valid, *, epochs):
        """model_.fit with every thread pool of the backend limited to :meth:`_thread_count`."""
        with get_backend(self.model_.backend).limit_threads(self._thread_count()):
            self.model_.fit(
                X,
                labels,
                X_valid,
                labels_valid,
                epochs=epochs,
                lr=self.lr,
                momentum=self.momentum,
                batch_size=self.batch_size,
            )

    def _thread_count(self):
        """``n_threads``, else the BLAS thread count this process already has (joblib and Dask workers
        set it to their share of the cores), else every core."""
        n_threads = check_positive_int(self.n_threads, "n_threads", allow_none=True)
        if n_threads is not None:
            return n_threads
        from threadpoolctl import threadpool_info

        blas_threads = [pool["num_threads"] for pool in threadpool_info() if pool.get("user_api") == "blas"]
        return min(blas_threads) if blas_threads else os.cpu_count() or 1

    # -------------------------------------------------------- inference
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (n_samples, n_classes), columns in the order of ``classes_``."""
        check_is_fitted(self)
        return self.model_.predict_proba(validate_data(self, X, reset=False))

    def predict(self, X: Any) -> np.ndarray:
        """The most probable label of each row (from ``classes_``)."""
        check_is_fitted(self)
        return self.classes_[self.model_.predict(validate_data(self, X, reset=False))]


def _encode_labels(y):
    """(sorted distinct labels, y as indices into them); scikit-learn's message for regression targets."""
    _check_targets(y)
    classes, labels = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise InvalidInputError(
            f"the classifier needs at least 2 classes in y, got 1 class ({classes[0].item()!r}); "
            "a network with one output has nothing to learn"
        )
    return classes, labels.reshape(-1).astype(np.int64)


def _check_targets(y):
    """scikit-learn's check of classification targets; labels that cannot be sorted (strings mixed with
    numbers) are a clear error rather than the TypeError of sorting them."""
    try:
        check_classification_targets(y)
    except TypeError:
        kinds = sorted({type(label).__name__ for label in np.asarray(y, dtype=object).ravel()})
        raise InvalidTypeError(
            f"y mixes labels of the types {', '.join(kinds)}, which cannot be sorted; use labels of one type "
            "(all strings or all numbers)"
        ) from None


def _labels_in(classes, y):
    """y as indices into ``classes``; a label that is not one of them is an error."""
    _check_targets(y)
    indices = np.searchsorted(classes, y).clip(0, len(classes) - 1)
    unknown = classes[indices] != y
    if unknown.any():
        raise InvalidInputError(
            f"y holds labels that were not in classes at the first partial_fit call: "
            f"{sorted(set(np.asarray(y)[unknown].tolist()))[:5]}; known classes are {list(classes)}"
        )
    return indices.astype(np.int64)


def _extend(history, more):
    """Append the epochs of ``more`` to ``history`` (both :class:`~fastmlp.History`)."""
    for name in ("train_loss", "train_acc", "valid_loss", "valid_acc", "seconds"):
        getattr(history, name).extend(getattr(more, name))


def expected_failed_checks(estimator: MLPClassifier) -> dict[str, str]:
    """The scikit-learn estimator checks this estimator does not meet, each with the reason.

    Pass it to ``parametrize_with_checks(..., expected_failed_checks=expected_failed_checks)``
    (since scikit-learn 1.6 expected failures are given there, not in the estimator's tags)."""
    return dict(_EXPECTED_FAILURES)


#: an argument of MLP -> this estimator's parameter that sets it
_PARAMETERS = {"n_hidden": "hidden"}

#: check name -> why MLPClassifier does not pass it
_EXPECTED_FAILURES: dict[str, str] = {}
