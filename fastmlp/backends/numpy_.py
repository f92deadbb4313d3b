"""The NumPy backend: the generic steps, with the large element-wise passes done in place.

Products go to NumPy's BLAS and write into reused buffers (:class:`.base.InPlaceBackend`); bias +
ReLU, the ReLU mask and the momentum update work in place, so an epoch allocates no N×H array after
the first. The equations stay those of :mod:`fastmlp.network`: each step below names its lines.
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

    # --------------------------------------------------------- steps in place
    def bias_relu(self, S, b):
        """network.hidden_layer's A1 = relu(X W1 + b1) after the product, in place over X W1."""
        np.add(S, b, out=S)  # (N, H)  S1 = X W1 + b1
        np.maximum(S, 0, out=S)  # (N, H)  A1 = relu(S1); NaN stays NaN
        return S

    def relu_backward(self, A1, dA1):
        """network.hidden_backward's d1 = (d2 W2ᵀ) ⊙ [S1 > 0], in place over A1 (dA1 = d2 W2ᵀ)."""
        mask = np.greater(A1, 0, out=A1)  # (N, H)  1.0 where S1 > 0, else 0.0
        return np.multiply(mask, dA1, out=A1)  # (N, H)  d1, over A1

    def momentum_update(self, param, velocity, grad, lr, momentum):
        """network.momentum_step, in place: v ← γ v + α g, θ ← θ − v; consumes the gradient."""
        velocity *= momentum  # shape of θ  γ v
        velocity += np.multiply(grad, lr, out=grad)  # shape of θ  v ← γ v + α g (α g over g)
        param -= velocity  # shape of θ  θ ← θ − v
        return param, velocity
