"""The backend contract and its generic implementation, written with ``xp`` alone.

A backend is a small object: a ``name``, the array namespace ``xp``, host<->device transfers,
``synchronize``, the ``compile_step`` seam and the *steps* of an epoch. The generic steps below are
the equations of :mod:`fastmlp.network` and the primitives of :mod:`fastmlp.ops`; a fast backend
overrides a step with the same signature (a NumPy version working in place, a Numba kernel, a CuPy
kernel), says in its docstring which lines of :mod:`fastmlp.network` it replaces, and a parity test
in ``tests/test_kernels.py`` compares it with the generic version.

Contract of every step: it may overwrite the arrays it is documented to overwrite (marked
"in place" below) and returns its results; callers always use the returned arrays.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import time

import numpy as np

from .. import network, ops
from ..errors import BackendError

__all__ = ["Backend", "InPlaceBackend", "STEPS"]

#: the steps of an epoch: what a backend may replace with a fused version (tests/test_kernels.py
#: compares every replacement with the generic step)
STEPS = (
    "matmul",
    "bias_relu",
    "hidden_layer",
    "affine",
    "softmax_xent_grad",
    "logits_loss_acc",
    "hidden_backward",
    "relu_backward",
    "momentum_update",
)


def _dtype_key(dtype):
    """One key per dtype, however it is spelled (``np.float32``, ``'float32'``, a library's own dtype)."""
    try:
        return np.dtype(dtype)
    except TypeError:  # e.g. torch.float32
        return dtype


class Backend:
    """Generic backend: every step written with the namespace ``xp``.

    Subclasses set ``name`` and ``xp`` (an Array-API namespace) and override what differs.
    """

    name = "generic"
    #: the package this backend imports beyond NumPy (None: nothing beyond NumPy)
    package: str | None = None
    #: the precisions of the matrix products this backend honours (see fastmlp.arguments.PRECISIONS)
    precisions: tuple[str, ...] = ("float32",)
    #: whether :meth:`compile_step` can capture a step once and replay it as a CUDA graph
    replays_cuda_graphs = False
    #: how :meth:`time_device_work` measures
    timer = "wall clock, device synchronised"

    def __init__(self, xp):
        self.xp = xp
        self._buffers = {}
        self._compiled = {}
        self.precision = self.precisions[0]
        self.cuda_graphs = None

    def configure(self, *, precision=None, cuda_graphs=None):
        """The model's settings, already checked against :attr:`precisions` and
        :attr:`replays_cuda_graphs`: the products' precision, and whether compiled steps may
        be replayed as CUDA graphs (None: where the backend can; False: never)."""
        self.precision = precision or self.precisions[0]
        self.cuda_graphs = cuda_graphs

    @classmethod
    def offered_on(cls, precision):
        """The choices of this backend that offer ``precision`` on some machine: its name, or
        ``name:device`` for a backend whose devices differ (for error messages)."""
        return (cls.name,) if precision in cls.precisions else ()

    def why_not_offered(self, precision):
        """Why this backend, on this machine, does not offer ``precision`` although it does
        elsewhere (None: nothing to add to "not offered")."""
        return None

    def hold_constant(self, *arrays):
        """Promise that ``arrays`` (the data of a ``fit``) are not written until :meth:`release`;
        a backend may then keep derived copies of them (e.g. BF16 copies). Here: nothing."""

    @classmethod
    def _import_package(cls, package, install):
        """Import this backend's optional package, or raise BackendError saying how to install it."""
        try:
            return importlib.import_module(package)
        except ImportError as exc:
            raise BackendError(
                f"the {cls.name!r} backend needs the package {package!r}, which cannot be imported ({exc}); "
                f"install it with: {install}"
            ) from None

    def __repr__(self):
        return f"<fastmlp backend {self.name!r} on {self.device}>"

    # ---------------------------------------------------------------- facts
    @property
    def device(self):
        """A short description of where the arrays live, e.g. ``'CPU'``."""
        return "CPU"

    def describe(self):
        """Facts about this backend for ``fastmlp info`` and benchmark records."""
        return {"backend": self.name, "device": self.device}

    # ------------------------------------------------------------ transfers
    def asarray(self, host_array, dtype=None, *, copy=True):
        """Host NumPy array -> an array of this backend.

        Always a new array unless ``copy=False``, which lets a host backend use an array the
        caller owns and will not touch again."""
        return self.xp.asarray(np.array(host_array, dtype=dtype, copy=True if copy else None))

    def to_numpy(self, array):
        """Backend array -> a new host NumPy array (always a copy)."""
        return np.array(array, copy=True)

    def synchronize(self, *pending):
        """Wait until all queued work has finished (a no-op on the CPU).

        ``pending``: arrays (or dicts of them) the caller waits for; a library without a global
        queue (JAX) waits for these."""

    def copy(self, array, into=None):
        """A copy of ``array``; a backend that works in place may write it into ``into``."""
        return self.xp.asarray(array, copy=True)

    def full(self, shape, value, dtype):
        """A new array of ``shape`` filled with ``value``."""
        return self.xp.full(shape, value, dtype=dtype)

    def take_rows(self, array, row_indices):
        """``array[row_indices]`` for an integer index array of this backend."""
        return self.xp.take(array, row_indices, axis=0)

    def empty(self, shape, dtype):
        """A new array of ``shape`` on this backend's device, its values not yet set."""
        return self.xp.empty(shape, dtype=dtype)

    def _buffer(self, name, shape, dtype):
        """A reusable array for intermediate results, per (name, shape of a row, dtype): the first
        rows of the smallest buffer of that kind with enough rows, or a new one when none has.

        The training loop's passes over the training and the validation set share the workspace
        ``"hidden"`` that way (the validation pass comes after the update, when the training pass's
        N×H activations are spent). A new buffer is always larger than the ones before it, so a
        request is answered by the same memory every time: the addresses a CUDA graph or a
        cuBLASLt plan recorded stay valid."""
        rows, *row_shape = shape
        kind = ("rows of", name, tuple(row_shape), _dtype_key(dtype))
        sizes = self._buffers.setdefault(kind, [])  # ascending numbers of rows
        buffer = next((b for b in sizes if b.shape[0] >= rows), None)
        if buffer is None:
            buffer = self.empty(shape, dtype)
            sizes.append(buffer)
        return buffer[:rows]  # the first rows of a C-contiguous array: C-contiguous

    def quiet_overflow(self):
        """A context in which overflow and invalid operations raise no warning.

        The training loop uses it: a diverging run overflows, and the loop reports that itself
        with one clear :class:`~fastmlp.errors.DivergenceError`."""
        return contextlib.nullcontext()

    def limit_threads(self, n_threads):
        """A context in which the host's thread pools (BLAS, OpenMP) use at most ``n_threads``.

        Parallel fits (joblib, Dask) call it so that each worker keeps to its share of the cores;
        a backend with a thread pool of its own limits that one too."""
        from threadpoolctl import threadpool_limits

        return threadpool_limits(limits=n_threads)

    def release(self):
        """Drop the reusable buffers, and the compiled steps, which may refer to them (called
        when a fit ends)."""
        self._buffers.clear()
        self._compiled.clear()

    def out_of_memory(self, exc):
        """The error to raise when the backend's device ran out of memory during ``exc``
        (here the host's memory: :class:`~fastmlp.errors.HostMemoryError`)."""
        from ..errors import FastMLPError, HostMemoryError

        self.release()
        return exc if isinstance(exc, FastMLPError) else HostMemoryError.from_exception(exc, "training")

    def time_device_work(self, work):
        """Seconds that ``work()`` keeps this backend busy (here: the wall clock between two
        synchronisations). ``work`` returns the arrays it produced, which a library without a
        global queue (JAX) waits for."""
        self.synchronize()
        start = time.perf_counter()
        pending = work()
        self.synchronize(*(pending or ()))
        return time.perf_counter() - start

    def compile_step(self, step, *, donate=()):
        """The seam for replayable epochs: ``step`` (a function of device arrays, and dicts of
        them, that returns device arrays and never synchronises with the host) made into
        something this backend can run fast again and again. Here: ``step`` itself, a plain
        call. A backend may trace it (``jax.jit``) or capture it once and replay it (a CUDA
        graph); the result must be a callable with the same signature and results.

        ``donate`` names the arguments the step replaces (the caller passes them in and uses
        only the step's results afterwards): a backend may reuse their memory for the results."""
        return step

    def compiled(self, step, *, donate=(), **static):
        """``step(backend, ...)`` with this backend and ``static`` bound, through
        :meth:`compile_step`: compiled once per step and settings, and kept until :meth:`release`."""
        key = (step, tuple(donate), tuple(sorted(static.items())))
        if key not in self._compiled:
            self._compiled[key] = self.compile_step(functools.partial(step, self, **static), donate=tuple(donate))
        return self._compiled[key]

    # --------------------------------------------------------- steps
    def matmul(self, A, B, *, workspace=None):
        """A @ B. ``workspace`` names a reusable output buffer; backends that can write into
        one reuse it across calls, so the result is only valid until the next call with the
        same name."""
        return A @ B

    def bias_relu(self, S, b):
        """relu(S + b), the element-wise half of network.hidden_layer; in place on S where the
        backend can.  (N, H), (H,) -> (N, H)"""
        return ops.relu(S + b)

    def hidden_layer(self, X, W1, b1, *, workspace=None):
        """A1 = relu(X W1 + b1): :func:`fastmlp.network.hidden_layer`.  (N, D), (D, H), (H,) -> (N, H)"""
        return network.hidden_layer(self, X, W1, b1, workspace=workspace)

    def affine(self, A, W, b):
        """S2 = A1 W2 + b2 for the small output layer.  (N, H), (H, K), (K,) -> (N, K)"""
        return ops.affine(A, W, b)

    def softmax_xent_grad(self, S, labels):
        """From logits S (N, K) and integer labels (N,): (loss, accuracy, d2 = (P - Y) / N).

        loss and accuracy are 0-d arrays of this backend (no host synchronisation)."""
        return ops.softmax_xent_grad(S, labels)

    def logits_loss_acc(self, S, labels):
        """From logits S (N, K): (loss, accuracy), without materialising probabilities."""
        return ops.logits_loss_acc(S, labels)

    def hidden_backward(self, A1, d2, W2):
        """dW2, db2, d1, db1: :func:`fastmlp.network.hidden_backward`, the lines of the backward
        pass that read A1 (d1 may be written over A1)."""
        return network.hidden_backward(self, A1, d2, W2)

    def relu_backward(self, A1, dA1):
        """d1 = dA1 ⊙ [A1 > 0], the last factor of network.hidden_backward's d1 (A1 > 0 exactly
        where S1 > 0); written over A1 or dA1 where the backend can.  (N, H), (N, H) -> (N, H)"""
        return dA1 * ops.relu_mask(A1)

    def momentum_update(self, param, velocity, grad, lr, momentum):
        """v <- momentum·v + lr·g; θ <- θ - v: :func:`fastmlp.network.momentum_step`. Returns
        (θ, v), in place where the backend can."""
        return network.momentum_step(param, velocity, grad, lr, momentum)


class InPlaceBackend(Backend):
    """Parent of the backends whose arrays are written in place into reused buffers.

    ``lib`` is the array library itself (NumPy, CuPy, PyTorch), which offers ``out=`` products; a
    subclass states only its library, its transfers and its element-wise steps :meth:`bias_relu`,
    :meth:`relu_backward` and :meth:`momentum_update` (and :meth:`copy` where the library has no
    ``copyto``). The products of :mod:`fastmlp.network` that name a workspace (X W1, d2 W2ᵀ, Xᵀ d1)
    then write into buffers allocated once.
    """

    def __init__(self, xp, lib):
        super().__init__(xp)
        self.lib = lib

    def copy(self, array, into=None):
        if into is not None and into.shape == array.shape and into.dtype == array.dtype:
            self.lib.copyto(into, array)
            return into
        return array.copy()

    def take_rows(self, array, row_indices):
        return array[row_indices]

    def matmul(self, A, B, *, workspace=None):
        """A @ B of network.py, into the buffer ``workspace`` names (allocated once)."""
        if workspace is None:
            return A @ B
        out = self._buffer(workspace, (A.shape[0], B.shape[1]), self.xp.result_type(A.dtype, B.dtype))
        return self.lib.matmul(A, B, out=out)
