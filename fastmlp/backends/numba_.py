"""The Numba backend: NumPy arrays, BLAS for the products, jitted kernels for the rest.

Each override below has the signature of the generic step in :mod:`.base` and names the lines of
:mod:`fastmlp.network` it replaces; the element-wise and row-wise work runs in the kernels of
:mod:`._numba_kernels`, fused so that an epoch reads the N×H activation twice after X @ W1 (bias +
ReLU, then the whole backward pass) instead of a dozen times.

Threads: kernels follow ``NUMBA_NUM_THREADS``; BLAS and Numba never run at the same time, but each
side's idle threads can still take the cores from the other: OpenBLAS workers spin for a while
after each product, and so do OpenMP threads after each parallel kernel. Two settings let them
sleep instead, each read once when its library starts: ``OPENBLAS_THREAD_TIMEOUT`` before NumPy
loads (the ``fastmlp`` command sets it), and ``OMP_WAIT_POLICY=passive`` before the first parallel
kernel (this backend sets it, unless you did). Measured inside a real epoch, a product that
follows a kernel otherwise runs up to 30% slower.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

from .numpy_ import NumpyBackend

__all__ = ["NumbaBackend"]


class NumbaBackend(NumpyBackend):
    """NumPy arrays with fused Numba kernels for the element-wise steps; the products stay
    with NumPy's BLAS."""

    name = "numba"
    package = "numba"

    def __init__(self):
        numba = self._import_package("numba", 'pip install "fastmlp[numba]"')
        # read by Numba's OpenMP threading layer when it starts (at the first parallel kernel)
        os.environ.setdefault("OMP_WAIT_POLICY", "passive")
        from . import _numba_kernels

        super().__init__()
        self._numba = numba
        self._kernels = _numba_kernels

    def describe(self):
        numba = self._numba
        try:
            layer = numba.threading_layer()
        except ValueError:  # chosen when the first parallel kernel runs: run a tiny one
            self._kernels.bias_relu(np.zeros((1, 1)), np.zeros(1))
            layer = numba.threading_layer()
        return {
            **super().describe(),
            "numba_version": numba.__version__,
            "numba_threading_layer": layer,
            "numba_threads": numba.get_num_threads(),
        }

    @contextlib.contextmanager
    def limit_threads(self, n_threads):
        """BLAS and OpenMP as in the generic backend, and Numba's own threads, at most ``n_threads``.

        Numba cannot go above ``NUMBA_NUM_THREADS`` (which joblib's workers set); the previous
        count is restored on exit."""
        numba = self._numba
        previous = numba.get_num_threads()
        with super().limit_threads(n_threads):
            numba.set_num_threads(max(1, min(int(n_threads), numba.config.NUMBA_NUM_THREADS)))
            try:
                yield
            finally:
                numba.set_num_threads(previous)

    # --------------------------------------------------------- fused steps
    def bias_relu(self, S, b):
        """network.hidden_layer's A1 = relu(X W1 + b1) after the product: one pass in place."""
        self._kernels.bias_relu(S, b)  # (N, H)  A1 over X W1
        return S

    def softmax_xent_grad(self, S, labels):
        """The loss, the accuracy and network.loss_and_grads' d2 = (P − Y)/N in one pass over the
        logits (ops.softmax_xent_grad), with no probabilities kept."""
        d2 = self._buffer("d2", S.shape, S.dtype)  # (N, K)
        loss, acc = self._kernels.softmax_xent(S, labels, d2, True)  # L, acc; d2 written
        return np.asarray(loss, S.dtype), np.asarray(acc, S.dtype), d2

    def logits_loss_acc(self, S, labels):
        """network.loss_and_accuracy's (L, acc) in one pass over the logits (ops.logits_loss_acc)."""
        loss, acc = self._kernels.softmax_xent(S, labels, S, False)  # S stands in for the unused d2
        return np.asarray(loss, S.dtype), np.asarray(acc, S.dtype)

    def hidden_backward(self, A1, d2, W2):
        """All four lines of network.hidden_backward (dW2 = A1ᵀ d2, db2 = Σ_n d2,
        d1 = (d2 W2ᵀ) ⊙ [S1 > 0], db1 = Σ_n d1) with one read of A1: d1 is written over A1."""
        kernels = self._kernels
        _N, H = A1.shape
        K = d2.shape[1]
        dtype = A1.dtype
        W2T = np.ascontiguousarray(W2.T)  # (K, H)
        dW2T_parts = self._buffer("dW2T_parts", (kernels.CHUNKS, K, H), dtype)  # (C, K, H)
        db1_parts = self._buffer("db1_parts", (kernels.CHUNKS, H), dtype)  # (C, H)
        kernels.hidden_backward(A1, d2, W2T, dW2T_parts, db1_parts)  # (N, H)  A1 now holds d1
        dW2 = np.empty((H, K), dtype)  # (H, K)
        db1 = np.empty(H, dtype)  # (H,)
        kernels.sum_partials(dW2T_parts, db1_parts, dW2, db1)  # dW2 = A1ᵀ d2, db1 = Σ_n d1
        db2 = d2.sum(axis=0)  # (K,)  db2 = Σ_n d2
        return dW2, db2, A1, db1

    def momentum_update(self, param, velocity, grad, lr, momentum):
        """network.momentum_step, in place, in one pass over each parameter."""
        if not (param.flags.c_contiguous and velocity.flags.c_contiguous):
            return super().momentum_update(param, velocity, grad, lr, momentum)
        scalar = param.dtype.type
        self._kernels.momentum_update(
            param.reshape(-1),
            velocity.reshape(-1),
            np.ascontiguousarray(grad).reshape(-1),
            scalar(lr),
            scalar(momentum),
        )
        return param, velocity
