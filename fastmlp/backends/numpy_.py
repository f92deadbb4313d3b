"""The NumPy backend: the generic steps, with the large element-wise passes done in place.

Products go to NumPy's BLAS and write into reused buffers; bias + ReLU, the ReLU mask and the
momentum update work in place, so an epoch allocates no N×H array after the first.
"""

from __future__ import annotations

import numpy as np

from .base import Backend

__all__ = ["NumpyBackend"]


class NumpyBackend(Backend):
    """NumPy on the CPU (the default backend; needs nothing beyond NumPy)."""

    name = "numpy"

    def __init__(self):
        import array_api_compat.numpy as xp

        super().__init__(xp)

    def describe(self):
        from .. import _sysinfo

        return {**super().describe(), **_sysinfo.blas_info()}

    # ---------------------------------------------------------- transfers
    def asarray(self, host_array, dtype=None, *, copy=True):
        return np.array(host_array, dtype=dtype, copy=True if copy else None, order="C")

    def copy(self, array, into=None):
        if into is not None and into.shape == array.shape and into.dtype == array.dtype:
            np.copyto(into, array)
            return into
        return np.array(array, copy=True)

    def take_rows(self, array, row_indices):
        return array[row_indices]

    def quiet_overflow(self):
        return np.errstate(over="ignore", invalid="ignore", divide="ignore")

    # --------------------------------------------------------- fused steps
    def matmul(self, A, B, *, workspace=None):
        if workspace is None:
            return A @ B
        out = self._buffer(workspace, (A.shape[0], B.shape[1]), np.result_type(A, B))
        return np.matmul(A, B, out=out)

    def bias_relu(self, S, b):
        np.add(S, b, out=S)
        np.maximum(S, 0, out=S)  # NaN stays NaN
        return S

    def hidden_backward(self, A1, d2, W2):
        N, H = A1.shape
        dW2 = A1.T @ d2                                                     # H×K
        db2 = d2.sum(axis=0)                                                # K
        dA1 = np.matmul(d2, W2.T, out=self._buffer("dA1", (N, H), A1.dtype))  # N×H
        mask = np.greater(A1, 0, out=A1)                                    # N×H, 1.0 where S1 > 0, else 0.0
        d1 = np.multiply(mask, dA1, out=A1)                                 # N×H, over A1
        db1 = d1.sum(axis=0)                                                # H
        return dW2, db2, d1, db1

    def momentum_update(self, param, velocity, grad, lr, momentum):
        velocity *= momentum
        velocity += np.multiply(grad, lr, out=grad)  # the gradient is consumed here
        param -= velocity
        return param, velocity
