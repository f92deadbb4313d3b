"""The CuPy backend: arrays on a CUDA GPU, cuBLAS for the products, fused CUDA kernels for the rest.

Data go to the device once per ``fit``; parameters, velocities and metrics stay there. The
overrides have the signatures of the generic steps in :mod:`.base` (the same seams the Numba
backend overrides). Selecting this backend fails early, before any training, with a distinct
message when CuPy is missing, when no usable CUDA device or driver is found, or when kernels
cannot be compiled.
"""

from __future__ import annotations

import numpy as np

from ..errors import BackendError, DeviceMemoryError
from ._cupy_kernels import ELEMENTWISE, ROW_SOFTMAX_SOURCE
from .base import InPlaceBackend

__all__ = ["CupyBackend"]

class CupyBackend(InPlaceBackend):
    """CuPy on the current CUDA device."""

    name = "cupy"
    package = "cupy"

    def __init__(self):
        cupy = self._import_package("cupy", 'pip install "fastmlp[cupy]" (CUDA 12)')
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # noqa: BLE001 - CUDARuntimeError and driver-loading errors alike
            raise BackendError(
                f"CuPy is installed but no usable CUDA device or driver was found ({exc}); "
                "use --backend numpy or numba on this machine"
            ) from None
        if count < 1:
            raise BackendError("CuPy is installed but sees no CUDA device; use --backend numpy or numba")
        try:
            self._compile_kernels(cupy)
        except Exception as exc:  # noqa: BLE001 - CompileException, missing NVRTC, ...
            raise BackendError(
                f"CuPy cannot compile its kernels on this machine ({type(exc).__name__}: {exc}); "
                'install NVRTC from a CUDA 12 toolkit (or with pip install "cupy-cuda12x[ctk]", CuPy 14+), '
                "or use --backend numpy or numba"
            ) from None
        import array_api_compat.cupy as xp

        super().__init__(xp, cupy)
        self._cupy = cupy

    def _compile_kernels(self, cupy):
        kernels = {name: cupy.ElementwiseKernel(*spec, f"fastmlp_{name}") for name, spec in ELEMENTWISE.items()}
        self._bias_relu = kernels["bias_relu"]
        self._mask_grad = kernels["relu_backward"]
        self._momentum = kernels["momentum"]
        module = cupy.RawModule(
            code=ROW_SOFTMAX_SOURCE, options=("-std=c++14",),
            name_expressions=["row_softmax_xent<float>", "row_softmax_xent<double>"])
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
        return {**super().describe(), "cupy_version": cupy.__version__,
                "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
                "gpu_memory_total_gib": round(total / 2**30, 1), "gpu_memory_free_gib": round(free / 2**30, 1)}

    # ------------------------------------------------------------ transfers
    def asarray(self, host_array, dtype=None, *, copy=True):  # always a copy: host -> device
        return self._cupy.asarray(np.asarray(host_array, dtype=dtype, order="C"))

    def to_numpy(self, array):
        return self._cupy.asnumpy(array)

    def synchronize(self, *pending):
        self._cupy.cuda.get_current_stream().synchronize()

    def release(self):
        super().release()
        self._cupy.get_default_memory_pool().free_all_blocks()

    def out_of_memory(self, exc):
        self.release()
        return DeviceMemoryError(
            f"the GPU ran out of memory: {exc}; try a smaller --hidden or --batch-size "
            "(mini-batches need less device memory than the full batch)")

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
            ((N + threads - 1) // threads,), (threads,),
            (S, labels, np.int32(N), np.int32(K), np.int32(d2 is not None),
             d2 if d2 is not None else self._buffer("no_grad", (1,), S.dtype), row_loss, row_hit))
        return (row_loss.sum() / N).astype(S.dtype), (row_hit.sum() / N).astype(S.dtype)

    def softmax_xent_grad(self, S, labels):
        d2 = self._buffer("d2", S.shape, S.dtype)
        loss, acc = self._row_metrics(S, labels, d2)
        return loss, acc, d2

    def logits_loss_acc(self, S, labels):
        return self._row_metrics(S, labels, None)

    def relu_backward_into(self, A1, dA1):
        self._mask_grad(A1, dA1)                                               # dA1 <- dA1 ⊙ [A1 > 0]
        return dA1

    def momentum_update(self, param, velocity, grad, lr, momentum):
        scalar = param.dtype.type
        self._momentum(grad, scalar(lr), scalar(momentum), param, velocity)
        return param, velocity
