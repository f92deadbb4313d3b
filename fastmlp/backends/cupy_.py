"""The CuPy backend: arrays on a CUDA GPU, cuBLASLt products with fused epilogues, fused CUDA
kernels for the rest, and each epoch replayed as one CUDA graph.

Data go to the device once per ``fit``; parameters, velocities and metrics stay there. The
overrides have the signatures of the generic steps in :mod:`.base` (the same seams the Numba
backend overrides). Selecting this backend fails early, before any training, with a distinct
message when CuPy is missing, when no usable CUDA device or driver is found, when kernels cannot
be compiled, or when nvmath-python is missing.

The products of the training loop go through nvmath-python's stateful ``Matmul`` (NVIDIA's Python
API to cuBLASLt; see the README section "Precision and CUDA graphs (GPU)"), planned once per operand set and executed in place into the
backend's buffers (``options={"inplace": True}``, ``beta=0``). A row-major N×M result R = P Q is
cuBLASLt's column-major Rᵀ = Qᵀ Pᵀ, whose epilogue bias runs along the rows of Rᵀ, i.e. along
R's columns: so relu(X W1 + b1) is one RELU_AUX_BIAS product that also writes the ReLU mask, and
d1 = (d2 W2ᵀ) ⊙ [S1 > 0] with db1 = Σ_n d1 is one DRELU_BGRAD product reading that mask.
Products of arrays that are not the loop's buffers (inference) use CuPy's ``matmul``.
"""

from __future__ import annotations

import numpy as np

from ..errors import BackendError, DeviceMemoryError
from ._cuda_graphs import GraphReplayer, graphs_enabled
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
        self._relu_masks = {}  # address of an A1 buffer -> its ReLU mask from RELU_AUX_BIAS
        self.unfused = {}  # product -> why it runs without its epilogue (planning refused)
        self.replayers = []  # the GraphReplayers made by compile_step (for tests and facts)

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
            "cuda_graphs": "on" if graphs_enabled(self.cuda_graphs) else "off",
            "gpu_memory_total_gib": round(total / 2**30, 1),
            "gpu_memory_free_gib": round(free / 2**30, 1),
        }
        if self.unfused:
            facts["unfused"] = "; ".join(f"{k}: {v}" for k, v in self.unfused.items())
        return facts

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
        super().release()
        self._constants.clear()
        self._bf16_copies.clear()
        self._relu_masks.clear()
        for plan in self._plans.values():
            plan.free()
        self._plans.clear()
        self._cupy.get_default_memory_pool().free_all_blocks()

    def out_of_memory(self, exc):
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
        replayer = GraphReplayer(step, self._cupy, self._stream)
        self.replayers = [r for r in self.replayers[-7:]] + [replayer]  # the latest few
        return replayer

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
            advanced = self._nvmath.linalg.advanced
            options = {"inplace": True}
            compute = self._compute_type(a.dtype)
            if compute is not None:
                options["compute_type"] = compute
            stream = self._cupy.cuda.get_current_stream()
            plan = advanced.Matmul(a, b, c=c, beta=0.0, options=options, stream=stream)
            plan.plan(epilog=epilog, epilog_inputs=epilog_inputs, stream=stream)
            self._plans[key] = plan
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
        if workspace is None:
            return A @ B
        out = self._buffer(workspace, (A.shape[0], B.shape[1]), np.result_type(A.dtype, B.dtype))
        self._product(self._low_precision(A, workspace + ":A"), self._low_precision(B, workspace + ":B"), out)
        return out

    def hidden_layer(self, X, W1, b1, *, workspace=None):
        """relu(X W1 + b1) in one RELU_AUX_BIAS product; the ReLU mask is kept for hidden_backward."""
        if workspace is None or "hidden_layer" in self.unfused:
            return super().hidden_layer(X, W1, b1, workspace=workspace)
        out = self._buffer(workspace, (X.shape[0], W1.shape[1]), X.dtype)  # N×H
        epilog = self._nvmath.linalg.advanced.MatmulEpilog.RELU_AUX_BIAS
        try:
            aux = self._product(
                self._low_precision(X, workspace + ":X"), self._low_precision(W1, "W1"), out, epilog, {"bias": b1}
            )
        except Exception as exc:
            self.unfused["hidden_layer"] = f"{type(exc).__name__}: {exc}"
            return super().hidden_layer(X, W1, b1, workspace=workspace)
        mask = self._mask_buffer(workspace, aux["relu_aux"])
        self._cupy.copyto(mask, aux["relu_aux"])  # one fixed buffer, which the backward plan reads
        self._relu_masks[out.data.ptr] = mask
        return out

    def _mask_buffer(self, workspace, like):
        """A reused buffer for the ReLU mask of ``workspace``, laid out like ``like``: the mask is
        column-major (stride 1 along H), as DRELU_BGRAD requires of its input."""
        key = ("relu_mask", workspace)
        mask = self._buffers.get(key)
        if mask is None or mask.shape != like.shape or mask.strides != like.strides:
            mask = self._buffers[key] = self._cupy.empty_like(like)
        return mask

    def affine(self, A, W, b):
        """A W + b for the output layer: one BIAS product when A is one of the loop's buffers."""
        if not any(A is buffer for buffer in self._buffers.values()):
            return super().affine(A, W, b)
        out = self._buffer(("logits", A.shape[0]), (A.shape[0], W.shape[1]), A.dtype)  # N×K
        if "affine" not in self.unfused:
            try:
                self._product(A, W, out, self._nvmath.linalg.advanced.MatmulEpilog.BIAS, {"bias": b})
                return out
            except Exception as exc:
                self.unfused["affine"] = f"{type(exc).__name__}: {exc}"
        self._product(A, W, out)
        self._add_bias(b, out)
        return out

    def hidden_backward(self, A1, d2, W2):
        """dW2 = A1ᵀ d2, db2 = Σ d2, and d1 with db1 from one DRELU_BGRAD product."""
        if not any(A1 is buffer for buffer in self._buffers.values()):  # not the loop's activation
            return super().hidden_backward(A1, d2, W2)
        mask = self._relu_masks.get(A1.data.ptr)  # None: A1 was not made by the fused product
        N, H = A1.shape
        dW2 = self._buffer("dW2", (H, d2.shape[1]), A1.dtype)
        self._product(A1.T, d2, dW2)  # H×K: A1ᵀ d2
        db2 = d2.sum(axis=0)  # K
        d1 = self._buffer("d1", (N, H), A1.dtype)  # N×H
        if mask is not None and "hidden_backward" not in self.unfused:
            epilog = self._nvmath.linalg.advanced.MatmulEpilog.DRELU_BGRAD
            try:
                aux = self._product(d2, W2.T, d1, epilog, {"relu_aux": mask})  # (d2 W2ᵀ) ⊙ [S1 > 0]
                return dW2, db2, d1, aux["drelu_bgrad"].reshape(H)  # db1: H
            except Exception as exc:
                self.unfused["hidden_backward"] = f"{type(exc).__name__}: {exc}"
        self._product(d2, W2.T, d1)  # N×H: d2 W2ᵀ
        d1 = self.relu_backward(A1, d1)  # ⊙ [S1 > 0]
        return dW2, db2, d1, d1.sum(axis=0)

    # --------------------------------------------------------- fused steps
    def bias_relu(self, S, b):
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
        d2 = self._buffer("d2", S.shape, S.dtype)
        loss, acc = self._row_metrics(S, labels, d2)
        return loss, acc, d2

    def logits_loss_acc(self, S, labels):
        return self._row_metrics(S, labels, None)

    def relu_backward(self, A1, dA1):
        self._mask_grad(A1, dA1)  # dA1 <- dA1 ⊙ [A1 > 0]
        return dA1

    def momentum_update(self, param, velocity, grad, lr, momentum):
        scalar = param.dtype.type
        self._momentum(grad, scalar(lr), scalar(momentum), param, velocity)
        return param, velocity
