"""Checks of the arguments that several entry points share (:class:`~fastmlp.MLP`, the
scikit-learn estimator, the command line, weights files): the arrays X and y, the training settings,
dtype and precision, parameter dicts and their shapes, class names. They run on the host, before
anything is copied to a device.

A check that only one function needs stays beside that function (the random seed in ``mlp.py``, ``ink`` in
``images.py``, ``validation_fraction`` in ``sklearn.py``), and a file's contents are checked by its
reader (``datasets.py``, ``weights.py``, ``images.py``).

Each check raises an error of :mod:`fastmlp.errors` whose message names the bad value and the fix.
The caller's arrays are never modified (read-only arrays are fine): what needs converting is
converted on a copy.
"""

from __future__ import annotations

import collections
import math
import numbers
from typing import TYPE_CHECKING

import numpy as np

from .classes import CLASSES
from .errors import InvalidInputError, InvalidTypeError
from .network import PARAM_NAMES, param_shapes

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

__all__ = [
    "DTYPES",
    "PRECISIONS",
    "check_dtype",
    "check_precision_name",
    "check_precision",
    "check_cuda_graphs",
    "check_features",
    "as_images",
    "check_labels",
    "check_hyperparameters",
    "check_positive_int",
    "check_layout",
    "layout_problems",
    "check_params",
    "check_classes",
    "classes_problem",
    "describe_classes",
]

DTYPES = ("float32", "float64")
#: the longest class name a model may have, in characters
MAX_CLASS_NAME = 40
#: how the matrix products compute: "float32" in the dtype's own precision (the assignment's semantics),
#: "tf32" on TF32 tensor cores, "bf16" from BF16 copies of the operands with FP32 accumulation
PRECISIONS = ("float32", "tf32", "bf16")


def check_dtype(dtype: DTypeLike) -> str:
    """'float32' or 'float64' (a NumPy dtype or its name) -> its name (None is refused: NumPy
    would read it as float64)."""
    try:
        name = np.dtype(dtype).name if dtype is not None else ""
    except TypeError:
        name = ""
    if name not in DTYPES:
        raise InvalidInputError.about("dtype", f"must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return name


def check_precision_name(precision):
    """``precision`` is one of :data:`PRECISIONS`; returns it."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise InvalidInputError.about("precision", f"must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def check_precision(precision, dtype, *, backend_name, offered, offered_by=(), why_not=None):
    """``precision`` checked against the dtype and what the backend ``offered``; returns it.

    ``offered_by``: the backends (``name`` or ``name:device``) that offer it, for the message;
    ``why_not``: why this backend, on this machine, does not offer a precision it offers elsewhere."""
    check_precision_name(precision)
    where = f" (offered by: {', '.join(offered_by)})" if offered_by else ""
    if precision != PRECISIONS[0] and dtype != "float32":
        raise InvalidInputError.about(
            "precision",
            f"{precision!r} needs dtype float32 (the products of dtype {dtype} run in {dtype}); "
            f"use dtype float32 with precision {precision!r}{where}, or precision {PRECISIONS[0]!r}",
        )
    if precision not in offered:
        here = f" here ({why_not})" if why_not else ""
        raise InvalidInputError.about(
            "precision",
            f"{precision!r} is not offered by the {backend_name} backend{here}, which offers {', '.join(offered)}"
            + (f"; it is offered by: {', '.join(offered_by)}" if offered_by else ""),
        )
    return precision


def check_cuda_graphs(cuda_graphs, *, backend_name, replays, offered_by=()):
    """``cuda_graphs``: None (replay where the backend can), True (required) or False (never)."""
    if cuda_graphs is not None and not isinstance(cuda_graphs, bool):
        raise InvalidInputError(
            f"cuda_graphs must be None, True or False, got {cuda_graphs!r}", parameter="cuda_graphs"
        )
    if cuda_graphs and not replays:
        where = f" (offered by: {', '.join(offered_by)})" if offered_by else ""
        raise InvalidInputError(
            f"cuda_graphs=True needs a backend that replays CUDA graphs{where}; the {backend_name} backend runs "
            "each step as a plain call: leave cuda_graphs at None",
            parameter="cuda_graphs",
        )
    return cuda_graphs


def _as_host_array(value, name):
    if hasattr(value, "__cuda_array_interface__") and hasattr(value, "get"):
        value = value.get()  # a CuPy array given by the caller
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise InvalidTypeError(f"{name} must be an array of numbers, got {type(value).__name__}: {exc}") from None


def check_features(X, dtype, *, n_features=None, name="X"):
    """X as a C-contiguous (N, D) array of ``dtype`` (X itself when it already is one; never written).

    A stack of images (N, 28, 28) is flattened to (N, 784); 1-D or 4-D input is an error.
    """
    X = _as_matrix(_as_host_array(X, name), name)
    if n_features is not None and X.shape[1] != n_features:
        raise InvalidInputError(
            f"{name} has {X.shape[1]} features{as_images(X.shape[1])}, the model expects {n_features}"
            f"{as_images(n_features)}"
        )
    if np.issubdtype(X.dtype, np.floating):
        _check_finite_rows(X, name)
    # only a narrowing float conversion (float64 -> float32) can overflow; integers always fit
    narrowing = np.issubdtype(X.dtype, np.floating) and X.dtype.itemsize > np.dtype(dtype).itemsize
    with np.errstate(over="ignore"):  # reported just below, with the row
        # converted on a copy; an array already of this dtype and layout is used as it is
        # (fastmlp never writes into X)
        X = np.array(X, dtype=dtype, order="C", copy=None)
    if narrowing and not np.isfinite(X).all():  # float64 values beyond float32's range
        first = int(np.argmax(~np.isfinite(X).all(axis=1)))
        raise InvalidInputError(f"{name} contains infinity after conversion to {dtype} (first in row {first})")
    return X


def as_images(n_features):
    """`` (28 x 28 images)`` for 784 features: how many pixels a side, when ``n_features`` is a square."""
    side = math.isqrt(n_features)
    return f" ({side} x {side} images)" if side * side == n_features and side > 1 else ""


def _as_matrix(X, name):
    """A real-valued (N, D) view of X; a stack of images (N, 28, 28) is flattened to (N, 784)."""
    if (
        X.dtype == object
        or np.issubdtype(X.dtype, np.complexfloating)
        or not (np.issubdtype(X.dtype, np.number) or X.dtype == np.bool_)
    ):
        raise InvalidTypeError(f"{name} has dtype {X.dtype}; it must hold real numbers (uint8, integer or float)")
    if X.ndim == 3:
        X = X.reshape(X.shape[0], -1)
    if X.ndim != 2:
        raise InvalidInputError(f"{name} must be 2-D (samples, features) or a 3-D stack of images, got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise InvalidInputError(f"{name} has shape {X.shape}: it needs at least one sample and one feature")
    return X


def _check_finite_rows(X, name):
    finite = np.isfinite(X)
    if not finite.all():
        bad_rows = ~finite.all(axis=1)
        first = int(np.argmax(bad_rows))
        kind = "NaN" if np.isnan(X[first]).any() else "infinity"
        raise InvalidInputError(
            f"{name} contains {kind} (first in row {first}, {int(bad_rows.sum())} bad rows); remove or impute those values"
        )


def check_labels(y, n_classes, *, n_samples=None, name="y", classes=None):
    """Integer labels (N,) in 0..K-1, or a one-hot matrix (N, K) -> new int64 labels (N,).

    ``classes``: the model's class names, for the message about a label that is not one of them."""
    y = _as_host_array(y, name)
    if y.ndim == 2:
        return _one_hot_to_labels(y, n_classes, n_samples, name)
    if y.ndim != 1:
        raise InvalidInputError(f"{name} must be 1-D labels or a 2-D one-hot matrix, got shape {y.shape}")
    if n_samples is not None and len(y) != n_samples:
        raise InvalidInputError(f"X has {n_samples} samples but {name} has {len(y)} labels; they must match")
    if y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.integer):
        raise InvalidTypeError(
            f"{name} has dtype {y.dtype}; labels must be integers 0..{n_classes - 1} "
            "(convert with y.astype(int) if they are whole numbers)"
        )
    bad = (y < 0) | (y >= n_classes)
    if bad.any():
        index = int(np.argmax(bad))
        where = (
            f"the model knows {n_classes} classes, {describe_classes(classes)} (labels 0..{n_classes - 1})"
            if classes
            else f"labels must be in 0..{n_classes - 1}"
        )
        raise InvalidInputError(f"{name}[{index}] = {y[index]} is not a class label; {where}")
    return np.array(y, dtype=np.int64, copy=True)


def _one_hot_to_labels(Y, n_classes, n_samples, name):
    if Y.shape[1] != n_classes:
        raise InvalidInputError(f"one-hot {name} has {Y.shape[1]} columns, the model has {n_classes} classes")
    if n_samples is not None and len(Y) != n_samples:
        raise InvalidInputError(f"X has {n_samples} samples but {name} has {len(Y)} rows; they must match")
    if Y.dtype == object or not (np.issubdtype(Y.dtype, np.number) or Y.dtype == np.bool_):
        raise InvalidTypeError(f"one-hot {name} has dtype {Y.dtype}; it must hold 0s and 1s")
    valid_rows = ((Y == 0) | (Y == 1)).all(axis=1) & (Y.sum(axis=1) == 1)
    if not valid_rows.all():
        row = int(np.argmax(~valid_rows))
        raise InvalidInputError(
            f"{name} row {row} is not one-hot: {Y[row].tolist()}; each row needs a single 1 and zeros elsewhere"
        )
    return np.argmax(Y, axis=1).astype(np.int64)


def check_positive_int(value, name, *, allow_none=False):
    """An int >= 1 (or None when allowed)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InvalidInputError.about(name, f"must be an integer >= 1, got {value!r}")
    return int(value)


def check_hyperparameters(*, epochs, lr, momentum, batch_size):
    """Validate the training settings; returns them as (int, float, float, int | None)."""
    epochs = check_positive_int(epochs, "epochs")
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not math.isfinite(lr) or lr <= 0:
        raise InvalidInputError.about("lr", f"(the learning rate) must be a finite number > 0, got {lr!r}")
    if (
        isinstance(momentum, bool)
        or not isinstance(momentum, numbers.Real)
        or not math.isfinite(momentum)
        or not 0 <= float(momentum) < 1
    ):
        raise InvalidInputError.about("momentum", f"must be in [0, 1), got {momentum!r}")
    batch_size = check_positive_int(batch_size, "batch_size", allow_none=True)
    return epochs, float(lr), float(momentum), batch_size


# ------------------------------------------------------------- parameters
def layout_problems(shapes, *, describe="{name} has shape"):
    """Every problem with the parameter shapes ``{name: tuple}``, measured against
    :func:`fastmlp.network.param_shapes`: missing or unexpected names, weights that are not 2-D,
    shapes that do not fit together, fewer than two classes. ``describe`` words each shape."""
    missing = [k for k in PARAM_NAMES if k not in shapes]
    extra = sorted(set(shapes) - set(PARAM_NAMES))
    problems = [f"missing {', '.join(missing)}"] * bool(missing) + [f"unexpected {', '.join(extra)}"] * bool(extra)
    if missing:
        return problems
    if len(shapes["W1"]) != 2 or len(shapes["W2"]) != 2:
        return [*problems, f"W1 and W2 must be 2-D, got shapes {tuple(shapes['W1'])} and {tuple(shapes['W2'])}"]
    expected = param_shapes(shapes["W1"][0], shapes["W1"][1], shapes["W2"][1])
    problems += [
        f"{describe.format(name=k)} {tuple(shapes[k])}, expected {expected[k]}"
        for k in PARAM_NAMES
        if tuple(shapes[k]) != expected[k]
    ]
    if shapes["W2"][1] < 2:
        problems.append(f"n_out must be at least 2 classes, got {shapes['W2'][1]} (the columns of W2)")
    return problems


def check_layout(n_in, n_hidden, n_out):
    """The network's sizes as ints, checked by the same rule as every parameter dict."""
    sizes = [check_positive_int(n, name) for n, name in ((n_in, "n_in"), (n_hidden, "n_hidden"), (n_out, "n_out"))]
    problems = layout_problems(param_shapes(*sizes))
    if problems:
        raise InvalidInputError("; ".join(problems), parameter="n_out")
    return sizes


def check_params(params):
    """A parameter mapping {"W1": (D, H), "b1": (H,), "W2": (H, K), "b2": (K,)} -> host arrays.

    Raises InvalidInputError listing every problem: names, shapes, dtypes, NaN or infinity."""
    if not hasattr(params, "keys"):
        raise InvalidInputError(f"params must be a mapping of W1, b1, W2, b2, got {type(params).__name__}")
    host = {k: np.asarray(v) for k, v in params.items()}
    problems = layout_problems({k: v.shape for k, v in host.items()})
    problems += [p for name, array in host.items() for p in array_problems(name, array)]
    if problems:
        raise InvalidInputError("invalid parameters: " + "; ".join(problems))
    return host


def array_problems(name, array):
    """A parameter array's problems: not floating point, or NaN / infinity inside."""
    if not np.issubdtype(array.dtype, np.floating):
        return [f"{name} has dtype {array.dtype}, expected float32 or float64"]
    if not _all_finite(array):
        return [f"{name} contains NaN or infinity"]
    return []


def _all_finite(array):
    """Whether every element is finite, without an array-sized temporary: a NaN propagates to the
    minimum and the maximum, and an infinity is one of them."""
    return array.size == 0 or bool(np.isfinite(array.min()) and np.isfinite(array.max()))


# ---------------------------------------------------------- class names
def _default_classes(n_classes):
    """The notMNIST letters A-J for 10 classes, else "0", "1", ... "K-1"."""
    return CLASSES if n_classes == len(CLASSES) else tuple(str(k) for k in range(n_classes))


def _is_class_name(name):
    """A name fit to print: a string of 1 to MAX_CLASS_NAME printable characters, not all spaces."""
    return isinstance(name, str) and 0 < len(name) <= MAX_CLASS_NAME and name.isprintable() and bool(name.strip())


def _brief(value):
    """``value`` in a message: its repr (control characters escaped), cut to 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def classes_problem(classes, n_classes):
    """What is wrong with ``classes`` as the names of ``n_classes`` classes (None: nothing)."""
    if isinstance(classes, str) or not isinstance(classes, (list, tuple)):
        return f"classes must be a list of {n_classes} names, got {_brief(classes)}"
    if len(classes) != n_classes:
        return f"classes has {len(classes)} names, the model has {n_classes} classes"
    bad = [name for name in classes if not _is_class_name(name)]
    if bad:
        return (
            f"classes must be strings of 1 to {MAX_CLASS_NAME} printable characters (no newlines, tabs or "
            f"other control characters), got {_brief(bad[0])}"
        )
    repeated = [name for name, count in collections.Counter(classes).items() if count > 1]
    if repeated:
        return f"classes must be distinct, got {_brief(repeated[0])} twice"
    return None


def describe_classes(classes):
    """The class names for a message: "A, B, C, D, E" (the first 20, then how many more)."""
    shown = ", ".join(classes[:20])
    return shown + (f" and {len(classes) - 20} more" if len(classes) > 20 else "")


def check_classes(classes, n_classes):
    """The names of ``n_classes`` classes as a tuple of distinct non-empty strings.

    None gives the default: the notMNIST letters A-J for 10 classes, else "0", "1", ... "K-1".
    """
    if classes is None:
        return _default_classes(n_classes)
    problem = classes_problem(classes, n_classes)
    if problem:
        raise InvalidInputError(problem, parameter="classes")
    return tuple(classes)
