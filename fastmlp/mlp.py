"""The user-facing model: :class:`MLP`."""

from __future__ import annotations

import numpy as np

from . import model, train, weights
from .backends import get_backend
from .errors import InvalidInputError
from .optim import INITIAL_VELOCITY
from .validation import check_dtype, check_features, check_hyperparameters, check_labels, check_positive_int

__all__ = ["MLP"]


class MLP:
    """784 -> H (ReLU) -> 10 (softmax) network trained by full-batch gradient descent with momentum.

    Parameters are Xavier-initialised on the host with ``numpy.random.default_rng(seed)``, so every
    backend starts from identical weights. ``backend`` is a name (``numpy``, ``numba``, ``cupy``,
    ``torch``, ``jax``, with a device for the last two such as ``torch:cuda``; or ``auto``) or None
    for ``FASTMLP_BACKEND`` / the default.
    """

    def __init__(self, n_in=784, n_hidden=1000, n_out=10, *, backend=None, dtype="float32", seed=0):
        n_in = check_positive_int(n_in, "n_in")
        n_hidden = check_positive_int(n_hidden, "n_hidden")
        n_out = check_positive_int(n_out, "n_out")
        if n_out < 2:
            raise InvalidInputError(f"n_out must be at least 2 classes, got {n_out}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise InvalidInputError(f"seed must be an integer >= 0, got {seed!r}")
        dtype = check_dtype(dtype)
        self._setup(model.init_params(n_in, n_hidden, n_out, seed=int(seed), dtype=dtype), backend, dtype)
        self.seed = int(seed)

    def _setup(self, host_params, backend, dtype):
        self._backend = get_backend(backend)
        self.dtype = dtype
        self.n_in, self.n_hidden = host_params["W1"].shape
        self.n_out = host_params["W2"].shape[1]
        self._params = {k: self._backend.asarray(v, dtype) for k, v in host_params.items()}
        self._velocities = None  # created by the first fit, kept across fits
        self.history_ = None
        self.seed = None

    @classmethod
    def from_params(cls, params, *, backend=None, dtype=None):
        """A model with the given parameters: {"W1": (D, H), "b1": (H,), "W2": (H, K), "b2": (K,)}."""
        if not hasattr(params, "keys"):
            raise InvalidInputError(f"params must be a mapping of {', '.join(model.PARAM_NAMES)}, got {type(params).__name__}")
        host = {k: np.asarray(v) for k, v in params.items()}
        problems = []
        missing = [k for k in model.PARAM_NAMES if k not in host]
        extra = sorted(set(host) - set(model.PARAM_NAMES))
        if missing:
            problems.append(f"missing {', '.join(missing)}")
        if extra:
            problems.append(f"unexpected {', '.join(extra)}")
        if not problems:
            if host["W1"].ndim != 2 or host["W2"].ndim != 2:
                problems.append(f"W1 and W2 must be 2-D, got shapes {host['W1'].shape} and {host['W2'].shape}")
            else:
                expected = model.param_shapes(host["W1"].shape[0], host["W1"].shape[1], host["W2"].shape[1])
                problems += [f"{k} has shape {host[k].shape}, expected {expected[k]}"
                             for k in model.PARAM_NAMES if host[k].shape != expected[k]]
            for k in model.PARAM_NAMES:
                if not np.issubdtype(host[k].dtype, np.floating):
                    problems.append(f"{k} has dtype {host[k].dtype}, expected float32 or float64")
                elif not np.isfinite(host[k]).all():
                    problems.append(f"{k} contains NaN or infinity")
        if problems:
            raise InvalidInputError("invalid parameters: " + "; ".join(problems))
        dtype = check_dtype(dtype if dtype is not None else host["W1"].dtype)
        self = cls.__new__(cls)
        self._setup(host, backend, dtype)
        return self

    # ------------------------------------------------------------ facts
    @property
    def backend(self):
        """Name of the backend the model runs on."""
        return self._backend.name

    @property
    def backend_facts(self):
        """Facts about the backend: name, device, BLAS and thread counts, versions."""
        return self._backend.describe()

    @property
    def params(self):
        """Host NumPy copies of the parameters, {"W1", "b1", "W2", "b2"}."""
        return {k: self._backend.to_numpy(v) for k, v in self._params.items()}

    def __repr__(self):
        return (f"MLP({self.n_in}, {self.n_hidden}, {self.n_out}, backend={self.backend!r}, "
                f"dtype={self.dtype!r})")

    # --------------------------------------------------------- training
    def fit(self, X, y, X_valid=None, y_valid=None, *, epochs=200, lr=0.1, momentum=0.9,
            batch_size=None, progress=False, shuffle_seed=None):
        """Train; returns a :class:`~fastmlp.train.History` (also kept as ``history_``).

        ``y`` holds integer labels or a one-hot matrix. ``batch_size=None`` is full-batch
        gradient descent (the seed); an int gives shuffled mini-batches drawn on the host from
        ``shuffle_seed`` (default: the model's seed). Velocities start at 1e-5 and persist
        across ``fit`` calls. On divergence, :class:`~fastmlp.errors.DivergenceError` is raised
        and the model keeps the last weights whose training loss was finite.
        """
        epochs, lr, momentum, batch_size = check_hyperparameters(
            epochs=epochs, lr=lr, momentum=momentum, batch_size=batch_size)
        X_host = check_features(X, self.dtype, n_features=self.n_in)
        labels_host = check_labels(y, self.n_out, n_samples=len(X_host))
        if (X_valid is None) != (y_valid is None):
            raise InvalidInputError("pass both X_valid and y_valid, or neither")
        if X_valid is not None:  # every check on the host, before any copy to the device
            X_valid = check_features(X_valid, self.dtype, n_features=self.n_in, name="X_valid")
            y_valid = check_labels(y_valid, self.n_out, n_samples=len(X_valid), name="y_valid")
        backend = self._backend
        try:
            history = self._fit_on_device(X_host, labels_host, X_valid, y_valid, epochs=epochs, lr=lr,
                                          momentum=momentum, batch_size=batch_size, progress=progress,
                                          shuffle_seed=shuffle_seed)
        except MemoryError as exc:
            error = backend.out_of_memory(exc)
            if error is exc:
                raise
            raise error from None
        self.history_ = history
        return history

    def _fit_on_device(self, X_host, labels_host, X_valid, labels_valid, *, epochs, lr, momentum, batch_size,
                       progress, shuffle_seed):
        """fit's work after the checks: copy to the device once, then run the epochs."""
        backend = self._backend
        Xv_dev = lv_dev = None
        # training never writes into X or the labels: a host backend may use the checked arrays as they are
        if X_valid is not None:
            Xv_dev, lv_dev = backend.asarray(X_valid, copy=False), backend.asarray(labels_valid, copy=False)
        X_dev, labels_dev = backend.asarray(X_host, copy=False), backend.asarray(labels_host, copy=False)
        if self._velocities is None:
            self._velocities = {k: backend.full(v.shape, INITIAL_VELOCITY, v.dtype) for k, v in self._params.items()}
        state = train.TrainingState(backend, self._params, self._velocities)
        seed = self.seed if shuffle_seed is None else shuffle_seed
        rng = np.random.default_rng(seed if seed is not None else 0)
        try:
            with backend.quiet_overflow():  # divergence is reported by run_epochs itself
                return train.run_epochs(
                    state, X_dev, labels_dev, Xv_dev, lv_dev, epochs=epochs, lr=lr, momentum=momentum,
                    batch_size=batch_size, rng=rng, progress=progress)
        finally:
            self._params, self._velocities = state.params, state.velocities

    # -------------------------------------------------------- inference
    def _logits(self, X):
        X_dev = self._backend.asarray(check_features(X, self.dtype, n_features=self.n_in))
        S2, _ = model.forward(self._backend, self._params, X_dev)
        return S2

    def predict_proba(self, X):
        """Class probabilities, host array (N, K)."""
        from . import ops

        return self._backend.to_numpy(ops.softmax(self._logits(X)))

    def predict(self, X):
        """Predicted class per row (the first of equal maxima), host int64 array (N,)."""
        return self._backend.to_numpy(self._backend.xp.argmax(self._logits(X), axis=1)).astype(np.int64)

    def evaluate(self, X, y):
        """(average cross-entropy, accuracy) on (X, y), as Python floats."""
        X_host = check_features(X, self.dtype, n_features=self.n_in)
        labels = self._backend.asarray(check_labels(y, self.n_out, n_samples=len(X_host)))
        S2, _ = model.forward(self._backend, self._params, self._backend.asarray(X_host))
        loss, acc = self._backend.logits_loss_acc(S2, labels)
        return float(self._backend.to_numpy(loss)), float(self._backend.to_numpy(acc))

    # ------------------------------------------------------ persistence
    def save(self, path):
        """Write the parameters to ``path`` (npz without pickle), atomically."""
        from . import __version__

        weights.save_weights(path, self.params, extra_metadata={"fastmlp_version": __version__})

    @classmethod
    def load(cls, path, *, backend=None):
        """A model with the parameters saved at ``path`` (see :meth:`save`)."""
        params, metadata = weights.load_weights(path)
        return cls.from_params(params, backend=backend, dtype=metadata["dtype"])
