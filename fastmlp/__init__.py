"""fastmlp: the classic two-layer notMNIST network, written once against an array namespace.

    >>> import fastmlp
    >>> data = fastmlp.datasets.load_notmnist()           # FASTMLP_DATA, else the shipped sample
    >>> model = fastmlp.MLP(784, 1000, 10)                 # on the backend the environment chooses
    >>> history = model.fit(*data.train, *data.valid, epochs=200)

The names below load on first use (PEP 562), so ``import fastmlp`` is quick, and the command line
can configure NumPy's BLAS threads before NumPy loads. Numba and CuPy load only when their backend
is chosen.
"""

import importlib

__version__ = "0.1.0"

#: public name -> module that defines it
_EXPORTS = {
    "MLP": "fastmlp.mlp",
    "History": "fastmlp.train",
    "get_backend": "fastmlp.backends",
    "BACKEND_NAMES": "fastmlp.backends",
    "FastMLPError": "fastmlp.errors",
    "InvalidInputError": "fastmlp.errors",
    "InvalidTypeError": "fastmlp.errors",
    "MissingFileError": "fastmlp.errors",
    "StorageError": "fastmlp.errors",
    "BackendError": "fastmlp.errors",
    "DeviceMemoryError": "fastmlp.errors",
    "HostMemoryError": "fastmlp.errors",
    "DivergenceError": "fastmlp.errors",
}
_SUBMODULES = (
    "datasets",
    "backends",
    "errors",
    "ops",
    "network",
    "train",
    "weights",
    "files",
    "plotting",
    "benchmark",
    "memory",
    "evaluation",
    "images",
    "export",
)

__all__ = [*_EXPORTS, "datasets", "__version__"]


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"fastmlp.{name}")
    else:
        raise AttributeError(f"module 'fastmlp' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
