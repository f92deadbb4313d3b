"""The user-facing model: :class:`MLP`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from os import PathLike
from typing import Any

import numpy as np
import numpy.typing as npt

from . import network, ops, train, weights
from .arguments import (
    check_classes,
    check_dtype,
    check_features,
    check_hyperparameters,
    check_labels,
    check_layout,
    check_params,
)
from .backends import configure, get_backend
from .errors import InvalidInputError
from .memory import ensure_fits, host_memory_errors

__all__ = ["MLP"]

#: a backend's name (``"numpy"``, ``"torch:cuda"``, ``"auto"``, ...), a backend object, or None
BackendChoice = Any


class MLP:
    """784 -> H (ReLU) -> 10 (softmax) network trained by full-batch gradient descent with momentum.

    Parameters are Xavier-initialised on the host with ``numpy.random.default_rng(seed)``, so every
    backend starts from identical weights. ``backend`` is a registered backend's name (see
    ``fastmlp info`` and :mod:`fastmlp.backends`; the array-library backends take a device, e.g.
    ``<name>:cuda``), ``auto``, or None for the environment's choice;
    ``dtype`` is float32 (also for None) or float64. A model that cannot fit in the host's memory
    raises :class:`~fastmlp.errors.HostMemoryError` before anything is allocated. ``classes`` names
    the outputs (saved with the weights); None means the notMNIST letters A-J when ``n_out`` is 10,
    else "0" ... "K-1". ``precision``: how the products compute: "float32" (the dtype's own
    precision, the default), "tf32" (TF32 tensor cores) or "bf16" (BF16 copies of the operands,
    FP32 accumulation); the latter two need dtype float32 and a backend that offers them.
    ``cuda_graphs``: None replays each epoch as a CUDA graph where the backend can (unless
    ``FASTMLP_CUDA_GRAPHS=0``), False never, True requires a backend that can.
    """

    def __init__(
        self,
        n_in: int = 784,
        n_hidden: int = 1000,
        n_out: int = 10,
        *,
        backend: BackendChoice = None,
        dtype: Any = "float32",
        seed: int = 0,
        classes: Sequence[str] | None = None,
        precision: str = "float32",
        cuda_graphs: bool | None = None,
    ) -> None:
        n_in, n_hidden, n_out = check_layout(n_in, n_hidden, n_out)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise InvalidInputError.about("seed", f"must be an integer >= 0, got {seed!r}")
        dtype = check_dtype("float32" if dtype is None else dtype)
        classes = check_classes(classes, n_out)
        doing = f"creating MLP({n_in}, {n_hidden}, {n_out})"
        n_params = sum(math.prod(s) for s in network.param_shapes(n_in, n_hidden, n_out).values())
        ensure_fits((8 + np.dtype(dtype).itemsize) * n_params, doing)  # the float64 draw and its cast, at once
        with host_memory_errors(doing):  # drawn in float64 on the host, then cast
            host_params = network.init_params(n_in, n_hidden, n_out, seed=int(seed), dtype=dtype)
            self._setup(host_params, backend, dtype, classes, precision, cuda_graphs)
        self.seed: int | None = int(seed)
        self.training_: list[dict[str, Any]] | None = []  # no fit yet

    def _setup(self, host_params, backend, dtype, classes, precision="float32", cuda_graphs=None):
        self._backend = get_backend(backend, precision=precision)
        self.dtype = dtype
        self.precision, self.cuda_graphs = configure(
            self._backend, dtype=dtype, precision=precision, cuda_graphs=cuda_graphs
        )
        self.n_in, self.n_hidden = host_params["W1"].shape
        self.n_out = host_params["W2"].shape[1]
        self.classes = classes  # the name of each output, e.g. ("A", ..., "J")
        self._params = {k: self._backend.asarray(v, dtype) for k, v in host_params.items()}
        self._velocities = None  # created by the first fit, kept across fits
        self.history_ = None
        self.seed = None
        #: the settings and final accuracies of each completed fit (see ``_fit_record``); None: not known
        self.training_ = None

    @classmethod
    def from_params(
        cls,
        params: Mapping[str, Any],
        *,
        backend: BackendChoice = None,
        dtype: Any = None,
        classes: Sequence[str] | None = None,
        precision: str = "float32",
        cuda_graphs: bool | None = None,
    ) -> MLP:
        """A model with the given parameters: {"W1": (D, H), "b1": (H,), "W2": (H, K), "b2": (K,)},
        K >= 2 like the constructor's ``n_out``; ``dtype=None`` keeps W1's dtype; ``classes``: the K
        class names (None: as in :class:`MLP`); ``precision`` and ``cuda_graphs`` as in :class:`MLP`."""
        host = check_params(params)
        dtype = check_dtype(dtype if dtype is not None else host["W1"].dtype)
        classes = check_classes(classes, host["W2"].shape[1])
        self = cls.__new__(cls)
        with host_memory_errors("copying the parameters to the backend"):
            self._setup(host, backend, dtype, classes, precision, cuda_graphs)
        return self

    # ------------------------------------------------------------ facts
    @property
    def backend(self) -> str:
        """Name of the backend the model runs on."""
        return self._backend.name

    @property
    def backend_facts(self) -> dict[str, Any]:
        """Facts about the backend: name, device, BLAS and thread counts, versions."""
        return self._backend.describe()

    @property
    def params(self) -> dict[str, np.ndarray]:
        """Host NumPy copies of the parameters, {"W1", "b1", "W2", "b2"}."""
        return {k: self._backend.to_numpy(v) for k, v in self._params.items()}

    def __repr__(self) -> str:
        precision = f", precision={self.precision!r}" if self.precision != "float32" else ""
        return (
            f"MLP({self.n_in}, {self.n_hidden}, {self.n_out}, backend={self.backend!r}, "
            f"dtype={self.dtype!r}{precision})"
        )

    # ---------------------------------------------------------- pickling
    def __getstate__(self):
        """For pickle (joblib, Dask, multiprocessing): host copies of the arrays and the backend's name.

        The weights-file format (:meth:`save`) stays the way to store a model; pickles are for
        moving one between processes you trust."""
        state = dict(self.__dict__)
        backend = state.pop("_backend")
        state["_backend_name"] = backend.name
        state["_params"] = {k: backend.to_numpy(v) for k, v in self._params.items()}
        if self._velocities is not None:
            state["_velocities"] = {k: backend.to_numpy(v) for k, v in self._velocities.items()}
        return state

    def __setstate__(self, state):
        state = dict(state)
        backend = get_backend(state.pop("_backend_name"))
        backend.configure(precision=state.get("precision"), cuda_graphs=state.get("cuda_graphs"))
        state["_params"] = {k: backend.asarray(v) for k, v in state["_params"].items()}
        if state.get("_velocities") is not None:
            state["_velocities"] = {k: backend.asarray(v) for k, v in state["_velocities"].items()}
        self.__dict__.update(state, _backend=backend)

    # --------------------------------------------------------- training
    def fit(
        self,
        X: npt.ArrayLike,
        y: npt.ArrayLike,
        X_valid: npt.ArrayLike | None = None,
        y_valid: npt.ArrayLike | None = None,
        *,
        epochs: int = 200,
        lr: float = 0.1,
        momentum: float = 0.9,
        batch_size: int | None = None,
        progress: bool = False,
        shuffle_seed: int | None = None,
    ) -> train.History:
        """Train; returns a :class:`~fastmlp.train.History` (also kept as ``history_``).

        ``y`` holds integer labels or a one-hot matrix. ``batch_size=None`` is full-batch
        gradient descent (the assignment's); an int gives shuffled mini-batches drawn on the host from
        ``shuffle_seed`` (default: the model's seed). Velocities start at 1e-5 and persist
        across ``fit`` calls. On divergence, :class:`~fastmlp.errors.DivergenceError` is raised
        and the model keeps the last weights whose training loss was finite.
        """
        epochs, lr, momentum, batch_size = check_hyperparameters(
            epochs=epochs, lr=lr, momentum=momentum, batch_size=batch_size
        )
        data = self._checked(X, y, X_valid, y_valid)  # every check on the host, before any copy to the device
        seed = self.seed if shuffle_seed is None else shuffle_seed
        settings: dict[str, Any] = {"epochs": epochs, "lr": lr, "momentum": momentum, "batch_size": batch_size}
        settings.update(rng=np.random.default_rng(seed if seed is not None else 0), progress=progress)
        try:
            self.history_ = self._fit_on_device(data, settings)
        except MemoryError as exc:
            error = self._backend.out_of_memory(exc)
            if error is exc:
                raise
            raise error from None
        if self.training_ is not None:
            self.training_.append(self._fit_record(self.history_, lr=lr, momentum=momentum, batch_size=batch_size))
        return self.history_

    def _fit_record(self, history, *, lr, momentum, batch_size):
        """One entry of ``training_``: what a completed fit ran with and its final accuracies, as plain
        JSON values (``valid_accuracy`` only when it had a validation set)."""
        settings = {"epochs": history.epochs, "lr": lr, "momentum": momentum, "batch_size": batch_size}
        record = settings | {
            "seed": self.seed,
            "backend": self.backend,
            "dtype": self.dtype,
            "precision": self.precision,
        }
        accuracies = {"train_accuracy": history.train_acc, "valid_accuracy": history.valid_acc}
        return record | {name: values[-1] for name, values in accuracies.items() if values}

    def _checked(self, X, y, X_valid, y_valid):
        """(X, labels, X_valid, labels_valid): fit's data as checked host arrays (the validation
        pair None when not given)."""
        X = check_features(X, self.dtype, n_features=self.n_in)
        labels = check_labels(y, self.n_out, n_samples=len(X))
        if (X_valid is None) != (y_valid is None):
            raise InvalidInputError("pass both X_valid and y_valid, or neither")
        if X_valid is None:
            return X, labels, None, None
        X_valid = check_features(X_valid, self.dtype, n_features=self.n_in, name="X_valid")
        return X, labels, X_valid, check_labels(y_valid, self.n_out, n_samples=len(X_valid), name="y_valid")

    def _fit_on_device(self, data, settings):
        """fit's work after the checks: copy the data to the device once, then run the epochs."""
        backend = self._backend
        # training never writes into X or the labels: a host backend may use the checked arrays as they are
        X, labels, X_valid, labels_valid = (None if a is None else backend.asarray(a, copy=False) for a in data)
        backend.hold_constant(X, X_valid)  # unchanged until run_epochs releases the backend
        if self._velocities is None:
            self._velocities = network.init_velocities(backend, self._params)
        state = train.TrainingState(backend, self._params, self._velocities)
        try:
            with backend.quiet_overflow():  # divergence is reported by run_epochs itself
                return train.run_epochs(state, X, labels, X_valid, labels_valid, **settings)
        finally:
            self._params, self._velocities = state.params, state.velocities

    # -------------------------------------------------------- inference
    def _logits(self, X):
        X_dev = self._backend.asarray(check_features(X, self.dtype, n_features=self.n_in))
        S2, _ = network.forward(self._backend, self._params, X_dev)
        return S2

    def predict_proba(self, X: npt.ArrayLike) -> np.ndarray:
        """Class probabilities, host array (N, K)."""
        return self._backend.to_numpy(ops.softmax(self._logits(X)))

    def predict(self, X: npt.ArrayLike) -> np.ndarray:
        """Predicted class per row (the first of equal maxima), host int64 array (N,)."""
        return self._backend.to_numpy(self._backend.xp.argmax(self._logits(X), axis=1)).astype(np.int64)

    def predict_images(self, paths: Sequence[str | PathLike[str]], *, ink: str = "auto", top: int = 3) -> list[Any]:
        """Classify image files (PNG, JPEG, ...), idx images files or .npz files.

        Returns one :class:`~fastmlp.images.Prediction` per image (``.letter``, ``.probability``,
        ``.ranked``: the ``top`` classes, most likely first). Image files are converted as the
        data were made (see :mod:`fastmlp.images`); ``ink`` is "auto", "light" or "dark"."""
        from .images import predict_files

        return predict_files(self, paths, ink=ink, top=top)

    def evaluate(self, X: npt.ArrayLike, y: npt.ArrayLike) -> tuple[float, float]:
        """(average cross-entropy, accuracy) on (X, y), as Python floats."""
        backend = self._backend
        X_host = check_features(X, self.dtype, n_features=self.n_in)
        labels = backend.asarray(check_labels(y, self.n_out, n_samples=len(X_host)))
        loss, acc = network.loss_and_accuracy(backend, self._params, backend.asarray(X_host), labels)
        return float(backend.to_numpy(loss)), float(backend.to_numpy(acc))

    # ------------------------------------------------------ persistence
    def save(self, path: str | PathLike[str]) -> None:
        """Write the parameters to ``path`` (npz without pickle), atomically, with the class names
        and the settings of each fit (``training_``, when known)."""
        from . import __version__

        metadata = {"fastmlp_version": __version__, "classes": list(self.classes), "precision": self.precision}
        if self.training_ is not None:
            metadata["training"] = self.training_
        weights.save_weights(path, self.params, extra_metadata=metadata)

    @classmethod
    def load(
        cls,
        path: str | PathLike[str],
        *,
        backend: BackendChoice = None,
        precision: str = "float32",
        cuda_graphs: bool | None = None,
    ) -> MLP:
        """A model with the parameters and class names saved at ``path`` (see :meth:`save`).

        A file written before class names were saved gets the default names (see :class:`MLP`).
        The file records the precision it was trained with (``weights.load_weights`` returns it in
        the metadata); the loaded model computes in ``precision``."""
        params, metadata = weights.load_weights(path)  # checked there by the same rule as from_params
        model = cls.from_params(
            params,
            backend=backend,
            dtype=metadata["dtype"],
            classes=metadata.get("classes"),
            precision=precision,
            cuda_graphs=cuda_graphs,
        )
        model.training_ = metadata.get("training")
        return model

    # ----------------------------------------------------------- export
    def to_onnx(self, path: str | PathLike[str], *, overwrite: bool = False) -> Any:
        """Write the network to ``path`` (``.onnx``) as an ONNX model; returns the path.

        Input ``images``: (N, 784) in the model's dtype, scaled as the data are (grey level / 255,
        the letter light on dark); outputs ``probabilities`` (N, K) and ``label`` (N,), the class
        names as strings; class names, fastmlp version and training settings in its
        ``metadata_props``. Needs the onnx package; see :mod:`fastmlp.export`."""
        from .export import to_onnx

        return to_onnx(self, path, overwrite=overwrite)

    def to_torch(self) -> Any:
        """A PyTorch ``Sequential(Linear, ReLU, Linear)`` with exactly these weights, on the CPU; it
        ends in the logits (no softmax layer: PyTorch's losses take logits). See :mod:`fastmlp.export`."""
        from .export import to_torch

        return to_torch(self)

    @classmethod
    def from_torch(
        cls,
        module: Any,
        *,
        backend: BackendChoice = None,
        classes: Sequence[str] | None = None,
        precision: str = "float32",
        cuda_graphs: bool | None = None,
    ) -> MLP:
        """The model of a PyTorch ``Sequential(Linear, ReLU, Linear)`` (float32 or float64, any
        device), as :meth:`to_torch` returns; ``classes`` None reads the module's ``classes``.
        The other arguments are :meth:`from_params`'s."""
        from .export import torch_params

        params, module_classes = torch_params(module)
        classes = module_classes if classes is None else classes
        return cls.from_params(params, backend=backend, classes=classes, precision=precision, cuda_graphs=cuda_graphs)
