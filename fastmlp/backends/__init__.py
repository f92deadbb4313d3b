"""The backend registry: the only place that knows backend names.

Which backend runs is decided here, in this order:

1. the explicit ``backend=`` argument (or the CLI's ``--backend``);
2. the ``FASTMLP_BACKEND`` environment variable;
3. the default, ``numpy``.

Values are case-insensitive; an empty value counts as unset. ``auto`` picks the best usable
backend: ``cupy`` with a GPU, else ``numba`` if installed, else ``numpy``. An unknown name or a
backend that cannot run raises; there is no silent fallback. Backend modules are imported only
when chosen, so ``import fastmlp`` never imports Numba or CuPy.
"""

from __future__ import annotations

import importlib
import importlib.util
import os

from ..errors import BackendError, InvalidInputError
from .base import Backend

__all__ = ["Backend", "BACKEND_NAMES", "ENV_VAR", "DEFAULT", "resolve_name", "get_backend", "backend_status"]

#: name -> (module, class); the order is the order of ``fastmlp info``
_REGISTRY = {
    "numpy": ("fastmlp.backends.numpy_", "NumpyBackend"),
    "numba": ("fastmlp.backends.numba_", "NumbaBackend"),
    "cupy": ("fastmlp.backends.cupy_", "CupyBackend"),
}
BACKEND_NAMES = tuple(_REGISTRY)
ENV_VAR = "FASTMLP_BACKEND"
DEFAULT = "numpy"
_AUTO = "auto"
_AUTO_ORDER = ("cupy", "numba", "numpy")


def _normalise(value, source):
    if not isinstance(value, str):
        raise InvalidInputError(
            f"backend must be a string, got {value!r} from {source}; "
            f"choose one of {', '.join(BACKEND_NAMES + (_AUTO,))}"
        )
    name = value.strip().lower()
    if name and name not in _REGISTRY and name != _AUTO:
        raise InvalidInputError(
            f"unknown backend {value!r} from {source}; "
            f"choose one of {', '.join(BACKEND_NAMES + (_AUTO,))}"
        )
    return name


def resolve_name(name=None):
    """The backend name to use: argument > ``FASTMLP_BACKEND`` > ``'numpy'``; ``auto`` resolved."""
    chosen = _normalise(name, "the backend argument") if name is not None else ""
    if not chosen:
        chosen = _normalise(os.environ.get(ENV_VAR, ""), f"the environment variable {ENV_VAR}")
    if not chosen:
        chosen = DEFAULT
    if chosen == _AUTO:
        for candidate in _AUTO_ORDER:
            if backend_status(candidate)["usable"]:
                return candidate
    return chosen


def _load_class(name):
    module_name, class_name = _REGISTRY[name]
    return getattr(importlib.import_module(module_name), class_name)


def get_backend(name=None):
    """A new backend object for ``name`` (resolved as in :func:`resolve_name`).

    Raises InvalidInputError for an unknown name and BackendError when the backend cannot run
    here (its package missing, no usable device); the message says how to fix it.
    """
    if isinstance(name, Backend):
        return name
    return _load_class(resolve_name(name))()


def backend_status(name):
    """``{'name', 'installed', 'usable', 'reason'}`` for one backend, without raising."""
    cls = _load_class(name)
    installed = cls.package is None or importlib.util.find_spec(cls.package) is not None
    try:
        cls()
    except BackendError as exc:
        return {"name": name, "installed": installed, "usable": False, "reason": str(exc)}
    return {"name": name, "installed": installed, "usable": True, "reason": ""}
