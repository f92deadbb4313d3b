"""The backend registry: the only place that knows backend names.

Which backend runs is decided here, in this order:

1. the explicit ``backend=`` argument (or the CLI's ``--backend``);
2. the ``FASTMLP_BACKEND`` environment variable;
3. the default, ``numpy``.

Values are case-insensitive; an empty value counts as unset. A backend of an array library that
runs on several devices takes one after a colon (``torch:cuda``, ``jax:gpu``); without it, the
library's usual choice (``torch``: the CPU; ``jax``: the device JAX picks). ``auto`` picks the best
usable backend that offers the precision asked for: ``cupy`` with a GPU, else ``numba`` if installed,
else ``numpy``; for ``bf16`` without a GPU, ``torch`` on a CPU with native bf16 products. An unknown name
or device, or a backend that cannot run, raises; there is no silent fallback. Backend modules are
imported only when chosen, so ``import fastmlp`` never imports Numba, CuPy, PyTorch or JAX, and
importing this module does not import NumPy either (the command line sets thread options before
NumPy loads).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

from ..errors import BackendError, InvalidInputError

__all__ = [
    "Backend",
    "BACKEND_NAMES",
    "ENV_VAR",
    "DEFAULT",
    "BASELINE",
    "resolve_name",
    "get_backend",
    "backend_status",
    "describe_choice",
    "prepare_threads",
    "backends_offering",
    "configure",
    "DEVICES",
    "BACKEND_CHOICES",
    "KERNEL_BACKENDS",
    "GPU_CHOICES",
    "ALL_CHOICES",
    "split_name",
]

#: name -> (module, class); the order is the order of ``fastmlp info``
_REGISTRY = {
    "numpy": ("fastmlp.backends.numpy_", "NumpyBackend"),
    "numba": ("fastmlp.backends.numba_", "NumbaBackend"),
    "cupy": ("fastmlp.backends.cupy_", "CupyBackend"),
    "torch": ("fastmlp.backends.torch_", "TorchBackend"),
    "jax": ("fastmlp.backends.jax_", "JaxBackend"),
}
BACKEND_NAMES = tuple(_REGISTRY)
#: the devices a backend accepts after a colon (``torch:cuda``); ``torch`` alone is ``torch:cpu``,
#: ``jax`` alone runs on JAX's default device (its GPU where it has one)
DEVICES = {"torch": ("cpu", "cuda", "mps"), "jax": ("cpu", "gpu")}
#: every name ``--backend`` accepts besides ``auto``, in the order of ``fastmlp info``
BACKEND_CHOICES = tuple(
    choice for name in BACKEND_NAMES for choice in (name, *(f"{name}:{device}" for device in DEVICES.get(name, ())))
)
#: what ``fastmlp bench --backends all`` tries: every backend on its default device, and torch on
#: its accelerators (jax's default device is already the accelerator where JAX has one)
ALL_CHOICES = (*BACKEND_NAMES, "torch:cuda", "torch:mps")
#: the choices that need a CUDA GPU (the GPU job requires them)
GPU_CHOICES = ("cupy", "torch:cuda", "jax:gpu")
#: backends whose fused steps are kernels of their own (the others run the generic steps)
KERNEL_BACKENDS = ("numba", "cupy")
ENV_VAR = "FASTMLP_BACKEND"
DEFAULT = "numpy"
#: the backend the benchmark compares the others with
BASELINE = DEFAULT
_AUTO = "auto"
_ALL = "all"
#: what ``auto`` tries, in order: the first usable one that offers the precision asked for (torch
#: is the only CPU backend with bf16 products; in float32 numba or numpy comes first)
_AUTO_ORDER = ("cupy", "numba", "numpy", "torch")
#: backends whose work runs on thread pools of their own between NumPy's BLAS calls (Numba's,
#: PyTorch's and XLA's): spinning OpenBLAS workers would take their cores
_THREADED_KERNELS = ("numba", "torch", "jax")


def __getattr__(name):  # the Backend class loads NumPy: import it on first use only
    if name == "Backend":
        from .base import Backend

        return Backend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _normalise(value, source):
    choices = ", ".join((*BACKEND_NAMES, _AUTO))
    if not isinstance(value, str):
        raise InvalidInputError(f"backend must be a string, got {value!r} from {source}; choose one of {choices}")
    name = value.strip().lower()
    base, colon, device = name.partition(":")
    if name and base not in _REGISTRY and name != _AUTO:
        raise InvalidInputError(f"unknown backend {value!r} from {source}; choose one of {choices}")
    if colon and device not in DEVICES.get(base, ()):
        devices = DEVICES.get(base)
        fix = (
            f"choose one of {', '.join(f'{base}:{d}' for d in devices)} or {base}"
            if devices
            else f"the {base} backend takes no device; use {base}"
        )
        raise InvalidInputError(f"unknown device {device!r} in backend {value!r} from {source}; {fix}")
    return name


def split_name(name):
    """``'torch:cuda'`` -> ``('torch', 'cuda')``; ``'numpy'`` -> ``('numpy', None)``."""
    base, _, device = name.partition(":")
    return base, device or None


def resolve_name(name=None, *, precision=None):
    """The backend name to use: argument > ``FASTMLP_BACKEND`` > ``'numpy'``; ``auto`` resolved
    for ``precision`` (None: float32)."""
    chosen = _normalise(name, "the backend argument") if name is not None else ""
    if not chosen:
        chosen = _normalise(os.environ.get(ENV_VAR, ""), f"the environment variable {ENV_VAR}")
    if not chosen:
        chosen = DEFAULT
    return _auto(precision or "float32") if chosen == _AUTO else chosen


def _auto(precision):
    """The first backend of _AUTO_ORDER that can run here and offers ``precision`` here; else the
    first usable one that offers it on some machine (its refusal then says why not here), else numpy."""
    usable = []
    for candidate in _AUTO_ORDER:
        try:
            offered = _construct(candidate).precisions
        except BackendError:  # cannot run here
            continue
        if precision in offered:
            return candidate
        usable.append(candidate)
    return next((name for name in usable if _load_class(name).offered_on(precision)), DEFAULT)


def _load_class(name):
    module_name, class_name = _REGISTRY[split_name(name)[0]]
    return getattr(importlib.import_module(module_name), class_name)


def _construct(name):
    """A backend object for a resolved name, with its device when the name gives one."""
    cls = _load_class(name)
    device = split_name(name)[1]
    return cls(device=device) if device else cls()


def get_backend(name=None, *, precision=None):
    """A new backend object for ``name`` (resolved as in :func:`resolve_name`, ``auto`` for
    ``precision``).

    Raises InvalidInputError for an unknown name and BackendError when the backend cannot run
    here (its package missing, no usable device); the message says how to fix it.
    """
    from .base import Backend

    if isinstance(name, Backend):
        return name
    return _construct(resolve_name(name, precision=precision))


def backends_offering(*, precision=None, cuda_graphs=False):
    """The backend choices (a name, or ``name:device`` where only some devices do) that offer
    ``precision`` (and CUDA-graph replay when ``cuda_graphs``) on some machine, whether or not they
    can run here; for error messages."""
    choices: list[str] = []
    for name in BACKEND_NAMES:
        cls = _load_class(name)
        if not cuda_graphs or cls.replays_cuda_graphs:
            choices += cls.offered_on(precision) if precision is not None else (name,)
    return tuple(choices)


def configure(backend, *, dtype, precision, cuda_graphs):
    """Check ``precision`` and ``cuda_graphs`` against ``backend`` and ``dtype``, then set them on it.

    Raises InvalidInputError naming what would work."""
    from ..arguments import check_cuda_graphs, check_precision

    precision = check_precision(
        precision,
        dtype,
        backend_name=backend.name,
        offered=backend.precisions,
        offered_by=backends_offering(precision=precision),
        why_not=backend.why_not_offered(precision),
    )
    cuda_graphs = check_cuda_graphs(
        cuda_graphs,
        backend_name=backend.name,
        replays=backend.replays_cuda_graphs,
        offered_by=backends_offering(cuda_graphs=True),
    )
    backend.configure(precision=precision, cuda_graphs=cuda_graphs)
    return precision, cuda_graphs


def backend_status(name):
    """``{'name', 'installed', 'usable', 'reason'}`` for one backend (``name:device`` too), without raising."""
    cls = _load_class(name)
    installed = cls.package is None or importlib.util.find_spec(cls.package) is not None
    try:
        _construct(name)
    except BackendError as exc:
        return {"name": name, "installed": installed, "usable": False, "reason": str(exc)}
    return {"name": name, "installed": installed, "usable": True, "reason": ""}


def describe_choice():
    """How the environment chooses the backend now, e.g. ``"numba (from FASTMLP_BACKEND='numba')"``,
    and, when the chosen backend cannot run here, ``"; it cannot run here: <why>"``.

    Never raises: an invalid ``FASTMLP_BACKEND`` is described with what is wrong."""
    value = os.environ.get(ENV_VAR, "")
    if not value.strip():
        return f"{DEFAULT} ({ENV_VAR} unset)"
    try:
        name = resolve_name()
    except InvalidInputError as exc:
        return f"invalid: {exc}"
    status = backend_status(name)
    unusable = "" if status["usable"] else f"; it cannot run here: {status['reason']}"
    return f"{name} (from {ENV_VAR}={value!r}){unusable}"


def prepare_threads(requested):
    """Let OpenBLAS workers sleep soon after each product when kernels with threads of their own
    may run between products. Call before NumPy loads; a value the user set is kept.

    OpenBLAS keeps its workers spinning for a while after each call; a kernel's threads then find
    the cores taken and can run ten times slower. ``OPENBLAS_THREAD_TIMEOUT`` (read once, when
    NumPy loads) shortens that. ``requested``: backend names as given (None: the environment's or
    the default; ``auto`` and ``all`` may pick any backend).
    """
    if "numpy" in sys.modules:
        return
    names = [(name or os.environ.get(ENV_VAR) or DEFAULT).strip().lower() for name in requested]
    if any(split_name(name)[0] in (*_THREADED_KERNELS, _AUTO, _ALL) for name in names):
        os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # 2**4 cycles of spinning, then sleep
