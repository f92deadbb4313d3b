"""The NumPy backend: the generic steps, with the large element-wise passes done in place.

Products go to NumPy's BLAS and write into reused buffers; bias + ReLU, the ReLU mask and the
momentum update work in place, so an epoch allocates no N×H array after the first.
"""

from __future__ import annotations

import numpy as np

from .base import InPlaceBackend

__all__ = ["NumpyBackend"]


class NumpyBackend(InPlaceBackend):
    """NumPy on the CPU (the default backend; needs nothing beyond NumPy)."""

    name = "numpy"

    def __init__(self):
        import array_api_compat.numpy as xp

        super().__init__(xp, np)

    def describe(self):
        from .. import _sysinfo

        blas = _sysinfo.blas_info()
        return {**super().describe(), "products": f"NumPy's BLAS, {blas['blas']}", **blas}

    # ---------------------------------------------------------- transfers
    def asarray(self, host_array, dtype=None, *, copy=True):
        return np.array(host_array, dtype=dtype, copy=True if copy else None, order="C")

    def quiet_overflow(self):
        return np.errstate(over="ignore", invalid="ignore", divide="ignore")

    # --------------------------------------------------------- fused steps
    def bias_relu(self, S, b):
        np.add(S, b, out=S)
        np.maximum(S, 0, out=S)  # NaN stays NaN
        return S

    def relu_backward_into(self, A1, dA1):
        mask = np.greater(A1, 0, out=A1)  # N×H, 1.0 where S1 > 0, else 0.0
        return np.multiply(mask, dA1, out=A1)  # N×H, d1 over A1

    def momentum_update(self, param, velocity, grad, lr, momentum):
        velocity *= momentum
        velocity += np.multiply(grad, lr, out=grad)  # the gradient is consumed here
        param -= velocity
        return param, velocity
