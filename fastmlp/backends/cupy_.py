"""The CuPy backend: arrays on a CUDA GPU, cuBLASLt products with fused epilogues, fused CUDA
kernels for the rest, and each epoch replayed as one CUDA graph.

Data go to the device once per ``fit``; parameters, velocities and metrics stay there. The
overrides have the signatures of the generic steps in :mod:`.base` (the same seams the Numba
backend overrides). Selecting this backend fails early, before any training, with a distinct
message when CuPy is missing, when no usable CUDA device or driver is found, when kernels cannot
be compiled, or when nvmath-python is missing.

The products of the training loop go through nvmath-python's stateful ``Matmul`` (NVIDIA's Python
API to cuBLASLt; see docs/backends.md, "The cupy backend"), planned once per operand
set, eagerly (planning waits for the device, which a CUDA graph being recorded cannot do), and
executed in place into the backend's buffers (``options={"inplace": True}``, ``beta=0``). A
row-major N×M result R = P Q is cuBLASLt's column-major Rᵀ = Qᵀ Pᵀ, whose epilogue bias runs along
the rows of Rᵀ, i.e. along R's columns: so A1 = relu(X W1 + b1) is one RELU_AUX_BIAS product that
also writes the ReLU mask [S1 > 0], and d1 = (d2 W2ᵀ) ⊙ [S1 > 0] with db1 = Σₙ d1 is one
DRELU_BGRAD product reading that mask. Products of arrays that are not the loop's buffers
(inference) use CuPy's ``matmul``. Where cuBLASLt refuses an epilogue, the product runs without it
followed by a CUDA kernel, and :attr:`CupyBackend.unfused` says why.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np

from ..errors import BackendError, DeviceMemoryError
from ._cuda_graphs import GraphCounts, GraphReplayer, graphs_enabled
from ._cupy_kernels import ELEMENTWISE, ROW_SOFTMAX_SOURCE
from .base import InPlaceBackend

__all__ = ["CupyBackend"]

_INSTALL = 'pip install "fastmlp[cupy]" (CUDA 12) or "fastmlp[cupy13]" (CUDA 13)'


class CupyBackend(InPlaceBackend):
    """CuPy on the current CUDA device."""

    name = "cupy"
    package = "cupy"
    precisions = ("float32", "tf32", "bf16")
    replays_cuda_graphs = True
    timer = "CUDA events on the device"

    def __init__(self):
        cupy = self._import_package("cupy", _INSTALL)
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:
            raise BackendError(
                f"CuPy is installed but no usable CUDA device or driver was found ({exc}); "
                "use --backend numpy or numba on this machine"
            ) from None
        if count < 1:
            raise BackendError("CuPy is installed but sees no CUDA device; use --backend numpy or numba")
        try:
            self._compile_kernels(cupy)
        except Exception as exc:
            raise BackendError(
                f"CuPy cannot compile its kernels on this machine ({type(exc).__name__}: {exc}); "
                'install NVRTC from a CUDA 12 toolkit (or with pip install "cupy-cuda12x[ctk]", CuPy 14+), '
                "or use --backend numpy or numba"
            ) from None
        self._nvmath = self._import_package("nvmath", _INSTALL)  # only once a device is there
        import array_api_compat.cupy as xp

        super().__init__(xp, cupy)
        self._cupy = cupy
        self._stream = cupy.cuda.Stream(non_blocking=True)  # where compiled steps run and are captured
        self._plans = {}  # operand layout -> planned nvmath Matmul
        self._constants = {}  # address -> array promised unchanged until release (hold_constant)
        self._bf16_copies = {}  # address -> BF16 copy of a constant array
        # address of an N×H activation that hidden_layer wrote into a workspace buffer (the
        # training loop's) -> (that buffer, its ReLU mask from RELU_AUX_BIAS or None if unfused)
        self._activations = {}
        self.unfused = {}  # product -> why it runs without its epilogue (planning refused)
        self.graphs = GraphCounts()  # what the replayers made by compile_step did

    def _compile_kernels(self, cupy):
        kernels = {name: cupy.ElementwiseKernel(*spec, f"fastmlp_{name}") for name, spec in ELEMENTWISE.items()}
        self._bias_relu = kernels["bias_relu"]
        self._mask_grad = kernels["relu_backward"]
        self._momentum = kernels["momentum"]
        self._add_bias = kernels["add_bias"]
        module = cupy.RawModule(
            code=ROW_SOFTMAX_SOURCE,
            options=("-std=c++14",),
            name_expressions=["row_softmax_xent<float>", "row_softmax_xent<double>"],
        )
        self._row_softmax = {
            np.dtype(np.float32): module.get_function("row_softmax_xent<float>"),
            np.dtype(np.float64): module.get_function("row_softmax_xent<double>"),
        }
        probe = cupy.zeros((2, 3), dtype=cupy.float32)  # compiles and runs one kernel now
        self._bias_relu(cupy.ones(3, dtype=cupy.float32), probe)
        cupy.cuda.get_current_stream().synchronize()

    # ---------------------------------------------------------------- facts
    @property
    def device(self):
        props = self._cupy.cuda.runtime.getDeviceProperties(self._cupy.cuda.Device().id)
        return f"GPU {props['name'].decode()} (CUDA device {self._cupy.cuda.Device().id})"

    def describe(self):
        cupy = self._cupy
        free, total = cupy.cuda.runtime.memGetInfo()
        facts = {
            **super().describe(),
            "cupy_version": cupy.__version__,
            "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
            "cuda_driver": cupy.cuda.runtime.driverGetVersion(),
            "nvmath_version": self._nvmath.__version__,
            "products": "cuBLASLt, called by nvmath-python",
            "cuda_graphs": self._graphs_fact(),
            "unfused": "; ".join(f"{k}: {v}" for k, v in self.unfused.items()) or "none",
            "gpu_memory_total_gib": round(total / 2**30, 1),
            "gpu_memory_free_gib": round(free / 2**30, 1),
        }
        return facts

    def _graphs_fact(self):
        if not graphs_enabled(self.cuda_graphs):
            return "off"
        fallbacks = self.graphs.fallbacks
        return "on" if not fallbacks else f"on, but {len(fallbacks)} step(s) eager: {fallbacks[0]}"

    # ------------------------------------------------------------ transfers
    def asarray(self, host_array, dtype=None, *, copy=True):  # always a copy: host -> device
        return self._cupy.asarray(np.asarray(host_array, dtype=dtype, order="C"))

    def to_numpy(self, array):
        if array.size > 64:
            return self._cupy.asnumpy(array)
        import cupyx

        # a small vector (the epoch's metrics): one copy into pinned host memory, one wait
        key = ("pinned", array.shape, array.dtype.str)
        pinned = self._buffers.get(key)
        if pinned is None:
            pinned = self._buffers[key] = cupyx.empty_pinned(array.shape, array.dtype)
        self._cupy.asnumpy(self._cupy.ascontiguousarray(array), out=pinned)
        return pinned.copy()

    def synchronize(self, *pending):
        self._cupy.cuda.get_current_stream().synchronize()

    def take_rows(self, array, row_indices):
        """``array[row_indices]`` into a buffer per shape, so a replayed step sees the same buffers."""
        out = self._buffer(("rows", array.ndim), (len(row_indices), *array.shape[1:]), array.dtype)
        return self._cupy.take(array, row_indices, axis=0, out=out)

    def hold_constant(self, *arrays):
        for array in arrays:
            if array is not None:
                self._constants[array.data.ptr] = array

    def release(self):
        """Drop the fit's buffers, copies and cuBLASLt plans, and give the default pool's free
        blocks back to CUDA. A failure here while another error is on its way up (a fit that
        failed, Ctrl-C) is reported as a warning, so that the user sees the first error."""
        in_flight = sys.exc_info()[1]
        try:
            self._release_device_memory()
        except Exception as failure:
            if in_flight is None:
                raise
            warnings.warn(
                f"releasing the GPU's memory after {type(in_flight).__name__} failed too "
                f"({type(failure).__name__}: {failure})",
                stacklevel=2,
            )

    def _release_device_memory(self):
        plans = list(self._plans.values())
        super().release()
        for store in (self._plans, self._constants, self._bf16_copies, self._activations):
            store.clear()
        # A plan's last completion event may have been recorded while a CUDA graph was captured;
        # free() would make an ordinary stream wait on it, an error in CUDA. Wait for the whole
        # device instead, then drop the event, so that free() waits for nothing.
        self._cupy.cuda.Device().synchronize()
        for plan in plans:
            plan.last_compute_event = None
            plan.free()
        self._cupy.get_default_memory_pool().free_all_blocks()

    def out_of_memory(self, exc):
        """A DeviceMemoryError for CuPy's out-of-memory error; any other MemoryError is the
        host's (the generic answer: HostMemoryError)."""
        if not isinstance(exc, self._cupy.cuda.memory.OutOfMemoryError):
            return super().out_of_memory(exc)
        self.release()
        return DeviceMemoryError(
            f"the GPU ran out of memory: {exc}; try a smaller --hidden or --batch-size "
            "(mini-batches need less device memory than the full batch)"
        )

    def time_device_work(self, work):
        """Seconds between two CUDA events around ``work()`` on the device (the host's own delays
        before the first launch are not counted)."""
        cupy = self._cupy
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        work()
        stop.record()
        stop.synchronize()
        return cupy.cuda.get_elapsed_time(start, stop) / 1e3

    def compile_step(self, step, *, donate=()):
        """The step as a :class:`~._cuda_graphs.GraphReplayer` (eager once, then captured once and
        replayed), or the step itself when replay is off (``cuda_graphs=False`` or
        FASTMLP_CUDA_GRAPHS=0). The replayed step updates its arguments in place, so ``donate``
        needs nothing more."""
        if not graphs_enabled(self.cuda_graphs):
            return step
        return GraphReplayer(step, self._cupy, self._stream, counts=self.graphs)

    # -------------------------------------------------------- products
    def _compute_type(self, dtype):
        if self.precision == "tf32" and np.dtype(dtype) == np.float32:
            return self._nvmath.linalg.advanced.MatmulComputeType.COMPUTE_32F_FAST_TF32
        return None  # nvmath's choice for the operands' types: FP32 for float32 and BF16, FP64 for float64

    def _planned(self, a, b, c, epilog=None, epilog_inputs=None):
        """The nvmath Matmul computing c = a @ b (+ epilogue) in place, planned once per layout."""

        def layout(x):
            return (x.data.ptr, x.shape, x.strides, x.dtype.str)

        inputs = tuple(sorted((k, layout(v)) for k, v in (epilog_inputs or {}).items()))
        key = (layout(a), layout(b), layout(c), epilog, inputs, self.precision)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._new_plan(a, b, c, epilog, epilog_inputs)
        return plan

    def _new_plan(self, a, b, c, epilog, epilog_inputs):
        stream = self._cupy.cuda.get_current_stream()
        if stream.is_capturing():  # planning waits for the device: never inside a CUDA graph
            raise RuntimeError(
                f"a cuBLASLt plan for {a.shape} @ {b.shape} (epilogue {getattr(epilog, 'name', None)}) would be made "
                "while a CUDA graph is recorded; plans are made in the step's eager first call"
            )
        options = {"inplace": True}
        compute = self._compute_type(a.dtype)
        if compute is not None:
            options["compute_type"] = compute
        plan = self._nvmath.linalg.advanced.Matmul(a, b, c=c, beta=0.0, options=options, stream=stream)
        plan.plan(epilog=epilog, epilog_inputs=epilog_inputs, stream=stream)
        return plan

    def _product(self, P, Q, out, epilog=None, epilog_inputs=None):
        """out (N×M, C-contiguous) = P Q (+ epilogue), computed as the column-major outᵀ = Qᵀ Pᵀ.

        Returns the plan's auxiliary outputs (a dict; empty without an epilogue that has any)."""
        plan = self._planned(Q.T, P.T, out.T, epilog, epilog_inputs)
        result = plan.execute(stream=self._cupy.cuda.get_current_stream())
        return result[1] if isinstance(result, tuple) else {}

    def _low_precision(self, array, role):
        """``array`` as the large products read it: itself, or its BF16 copy under precision bf16
        (made once for a constant array, else written into a buffer per ``role``)."""
        if self.precision != "bf16":
            return array
        transposed = not array.flags.c_contiguous
        base = array.T if transposed else array  # C-contiguous
        import ml_dtypes

        constant = base.data.ptr in self._constants
        copy = self._bf16_copies.get(base.data.ptr) if constant else None
        if copy is None:
            copy = self._buffer(("bf16", base.data.ptr if constant else role), base.shape, ml_dtypes.bfloat16)
            self._cupy.copyto(copy, base, casting="unsafe")  # round to nearest even
            if constant:
                self._bf16_copies[base.data.ptr] = copy
        return copy.T if transposed else copy

    def matmul(self, A, B, *, workspace=None):
        """A @ B; with a ``workspace`` (the large products: dW1 = Xᵀ d1, and S1 = X W1 when the
        hidden layer runs unfused) one nvmath product into that buffer, reading BF16 copies of
        the operands under precision bf16."""
        if workspace is None:
            return A @ B
        out = self._buffer(workspace, (A.shape[0], B.shape[1]), np.result_type(A.dtype, B.dtype))
        self._product(self._low_precision(A, workspace + ":A"), self._low_precision(B, workspace + ":B"), out)
        return out

    def _fused(self, name, fused, plain):
        """``fused()``, the product ``name`` with its cuBLASLt epilogue, unless cuBLASLt refused it
        before; if it refuses now, the reason goes to :attr:`unfused` and ``plain()`` computes the
        same without the epilogue, from then on. A failure while a CUDA graph is being recorded is
        no refusal: it is raised, and the replayer runs the step eagerly."""
        if name not in self.unfused:
            try:
                return fused()
            except Exception as exc:
                if self._cupy.cuda.get_current_stream().is_capturing():
                    raise
                self.unfused[name] = f"{type(exc).__name__}: {exc}"
        return plain()

    def _activation(self, A):
        """(A, its ReLU mask or None) when A is an activation hidden_layer wrote into a workspace
        buffer (the training loop's), else None."""
        entry = self._activations.get(A.data.ptr)
        return entry if entry is not None and entry[0] is A else None

    def hidden_layer(self, X, W1, b1, *, workspace=None):
        """Replaces the generic forward's S1 = X W1 + b1, A1 = relu(S1) (a product, then
        bias_relu) with one RELU_AUX_BIAS product, which also writes the mask [S1 > 0] that
        hidden_backward reads."""
        if workspace is None:
            return super().hidden_layer(X, W1, b1)
        out = self._buffer(workspace, (X.shape[0], W1.shape[1]), X.dtype)  # N×H
        X_low, W1_low = self._low_precision(X, workspace + ":X"), self._low_precision(W1, "W1")

        def fused():
            epilog = self._nvmath.linalg.advanced.MatmulEpilog.RELU_AUX_BIAS
            aux = self._product(X_low, W1_low, out, epilog, {"bias": b1})["relu_aux"]
            mask = self._mask_buffer(workspace, aux.shape)
            self._cupy.copyto(mask, aux)  # one fixed buffer, which the backward plan reads
            return mask

        def plain():
            self._product(X_low, W1_low, out)  # N×H: S1 = X W1
            self.bias_relu(out, b1)  # A1 = relu(S1 + b1)

        self._activations[out.data.ptr] = (out, self._fused("hidden_layer", fused, plain))
        return out

    def _mask_buffer(self, workspace, shape):
        """The fixed buffer for the ReLU mask of ``workspace``'s activation, one per shape, made
        column-major as RELU_AUX_BIAS writes it and DRELU_BGRAD reads it. Explicitly so: a
        (k, 1) mask (one row per batch) is both C- and F-contiguous, CuPy's ``empty_like`` would
        lay it out in C order, and the backward plan, which holds the mask's address and
        layout, would be made again at every call."""
        key = ("relu_mask", workspace, shape)
        mask = self._buffers.get(key)
        if mask is None:
            mask = self._buffers[key] = self._cupy.empty(shape, dtype=self._cupy.uint8, order="F")
        return mask

    def affine(self, A, W, b):
        """Replaces the generic forward's S2 = A1 W2 + b2 with one BIAS product into a buffer,
        when A is the training loop's activation."""
        if self._activation(A) is None:
            return super().affine(A, W, b)
        out = self._buffer(("logits", A.shape[0]), (A.shape[0], W.shape[1]), A.dtype)  # N×K

        def fused():
            self._product(A, W, out, self._nvmath.linalg.advanced.MatmulEpilog.BIAS, {"bias": b})

        def plain():
            self._product(A, W, out)  # N×K: A1 W2
            self._add_bias(b, out)  # + b2

        self._fused("affine", fused, plain)
        return out

    def hidden_backward(self, A1, d2, W2):
        """Replaces the generic backward's dW2 = A1ᵀ d2, db2 = Σₙ d2, d1 = (d2 W2ᵀ) ⊙ [S1 > 0],
        db1 = Σₙ d1: the products into buffers, d1 and db1 from one DRELU_BGRAD product that
        reads the mask hidden_layer wrote (when A1 is the training loop's activation)."""
        activation = self._activation(A1)
        if activation is None:
            return super().hidden_backward(A1, d2, W2)
        mask = activation[1]  # None: the hidden layer ran unfused
        N, H = A1.shape
        dW2 = self._buffer("dW2", (H, d2.shape[1]), A1.dtype)
        self._product(A1.T, d2, dW2)  # H×K: dW2 = A1ᵀ d2
        db2 = d2.sum(axis=0)  # K: db2 = Σₙ d2
        d1 = self._buffer("d1", (N, H), A1.dtype)  # N×H

        def fused():  # d1 = (d2 W2ᵀ) ⊙ [S1 > 0] in place; returns db1 = Σₙ d1 (H)
            epilog = self._nvmath.linalg.advanced.MatmulEpilog.DRELU_BGRAD
            return self._product(d2, W2.T, d1, epilog, {"relu_aux": mask})["drelu_bgrad"].reshape(H)

        def plain():
            self._product(d2, W2.T, d1)  # N×H: d2 W2ᵀ
            d1_masked = self.relu_backward(A1, d1)  # ⊙ [S1 > 0]: A1 > 0 exactly where S1 > 0
            return d1_masked.sum(axis=0)  # H: db1 = Σₙ d1

        return dW2, db2, d1, plain() if mask is None else self._fused("hidden_backward", fused, plain)

    # --------------------------------------------------------- fused steps
    def bias_relu(self, S, b):
        """A1 = relu(S1 + b1) in one element-wise kernel, in place on S."""
        self._bias_relu(b, S)
        return S

    def _row_metrics(self, S, labels, d2):
        cupy = self._cupy
        N, K = S.shape
        S = cupy.ascontiguousarray(S)
        labels = cupy.ascontiguousarray(labels, dtype=cupy.int64)
        row_loss = self._buffer("row_loss", (N,), np.float64)
        row_hit = self._buffer("row_hit", (N,), np.float64)
        threads = 128
        self._row_softmax[np.dtype(S.dtype)](
            ((N + threads - 1) // threads,),
            (threads,),
            (
                S,
                labels,
                np.int32(N),
                np.int32(K),
                np.int32(d2 is not None),
                d2 if d2 is not None else self._buffer("no_grad", (1,), S.dtype),
                row_loss,
                row_hit,
            ),
        )
        return (row_loss.sum() / N).astype(S.dtype), (row_hit.sum() / N).astype(S.dtype)

    def softmax_xent_grad(self, S, labels):
        """Replaces the generic loss = meanₙ −log softmax(S2)ₙ[yₙ], accuracy = meanₙ [argmax S2ₙ = yₙ]
        and d2 = (softmax(S2) − Y) / N with one kernel (a thread per row) and two sums."""
        d2 = self._buffer("d2", S.shape, S.dtype)
        loss, acc = self._row_metrics(S, labels, d2)
        return loss, acc, d2

    def logits_loss_acc(self, S, labels):
        """The loss and accuracy of softmax_xent_grad, without d2."""
        return self._row_metrics(S, labels, None)

    def relu_backward(self, A1, dA1):
        """d1 = dA1 ⊙ [A1 > 0] (A1 > 0 exactly where S1 > 0) in one element-wise kernel, in place on dA1."""
        self._mask_grad(A1, dA1)
        return dA1

    def momentum_update(self, param, velocity, grad, lr, momentum):
        """Replaces the generic v ← γ·v + α·g, θ ← θ − v with one element-wise kernel, in place."""
        scalar = param.dtype.type
        self._momentum(grad, scalar(lr), scalar(momentum), param, velocity)
        return param, velocity
