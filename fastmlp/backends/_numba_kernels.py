"""Numba kernels of the ``numba`` backend. Imported only by that backend.

Each kernel computes lines of :mod:`fastmlp.network` (its docstring names them) in one pass over
its arrays; ``tests/test_kernels.py`` compares each with the generic step.

Every kernel is compiled with ``cache=True`` (a second process loads the machine code instead of
compiling it) and without ``fastmath``: NaN and infinity keep their IEEE meaning, so a diverging
run is seen exactly as on NumPy. Row-parallel kernels split the rows into ``CHUNKS`` fixed
chunks and sum their partial results in chunk order, so the result does not depend on the number
of threads: the same input gives bit-identical output on every run.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

#: fixed number of row chunks of the parallel reductions (independent of the thread count)
CHUNKS = 16


@njit(parallel=True, cache=True)
def bias_relu(S, b):
    """network.hidden_layer after the product: S <- relu(S + b), in place, one pass.  S (N, H), b (H,)"""
    N, H = S.shape
    for n in prange(N):
        row = S[n]
        for h in range(H):
            value = row[h] + b[h]
            row[h] = 0.0 if value < 0.0 else value  # NaN stays NaN, like max(x, 0)


@njit(cache=True)
def _row_log_partition(s):
    """(max of the row, index of its first maximum, log Σ exp(s - max)) of one row of logits."""
    K = s.shape[0]
    top = s[0]
    arg = 0
    for k in range(1, K):
        if s[k] > top:
            top = s[k]
            arg = k
    total = 0.0
    for k in range(K):
        total += math.exp(s[k] - top)
    return top, arg, math.log(total)


@njit(cache=True)
def softmax_xent(S, labels, d2, with_grad):
    """One pass over the logits: (average loss L, accuracy), and with ``with_grad`` also the first
    line of network.backward, d2 = (softmax(S) - Y) / N, written into d2; no probabilities are kept.

    S (N, K) logits, labels (N,) integers, d2 (N, K) output (ignored without ``with_grad``).
    Sums in float64."""
    N, K = S.shape
    inv_n = 1.0 / N
    loss = 0.0
    correct = 0
    for n in range(N):
        s = S[n]
        top, arg, log_z = _row_log_partition(s)
        label = labels[n]
        loss += log_z - (s[label] - top)  # -log softmax(s)[label], shifted logits only
        if arg == label:
            correct += 1
        if with_grad:
            for k in range(K):
                p = math.exp(s[k] - top - log_z)
                d2[n, k] = ((p - 1.0) if k == label else p) * inv_n
    return loss * inv_n, correct * inv_n


@njit(cache=True)
def _backward_row(a, g, W2T, dW2T, db1, dA):
    """One row: dW2ᵀ += g ⊗ a; a <- (g W2ᵀ) ⊙ [a > 0]; db1 += a.  dA (H,) is scratch."""
    K, H = W2T.shape
    dA[:] = 0.0
    for k in range(K):
        gk = g[k]
        dW2T_k = dW2T[k]
        W2T_k = W2T[k]
        for h in range(H):
            dW2T_k[h] += a[h] * gk
            dA[h] += gk * W2T_k[h]
    for h in range(H):
        value = dA[h] if a[h] > 0.0 else 0.0
        a[h] = value
        db1[h] += value


@njit(parallel=True, cache=True)
def hidden_backward(A1, d2, W2T, dW2T_parts, db1_parts):
    """network.hidden_backward with one read of A1, over fixed row chunks.

    For every row n:  dW2ᵀ += d2[n] ⊗ A1[n];  d1[n] = (d2[n] W2ᵀ) ⊙ [A1[n] > 0], written over A1[n];
    db1 += d1[n]. Each chunk c keeps its own partial sums in dW2T_parts[c] (K, H) and
    db1_parts[c] (H,); :func:`sum_partials` adds them in chunk order. Rows go in pairs, so each
    pass over dW2ᵀ and W2ᵀ serves two rows.
    A1 (N, H) in/out, d2 (N, K), W2T (K, H) contiguous.
    """
    N, H = A1.shape
    K = d2.shape[1]
    C = dW2T_parts.shape[0]
    for c in prange(C):
        dW2T = dW2T_parts[c]
        db1 = db1_parts[c]
        dW2T[:, :] = 0.0
        db1[:] = 0.0
        dA0 = np.empty(H, dtype=A1.dtype)
        dA1 = np.empty(H, dtype=A1.dtype)
        start, stop = c * N // C, (c + 1) * N // C
        for n in range(start, stop - 1, 2):
            a0, a1 = A1[n], A1[n + 1]
            g0, g1 = d2[n], d2[n + 1]
            dA0[:] = 0.0
            dA1[:] = 0.0
            for k in range(K):
                g0k, g1k = g0[k], g1[k]
                dW2T_k = dW2T[k]
                W2T_k = W2T[k]
                for h in range(H):
                    w = W2T_k[h]
                    dW2T_k[h] += a0[h] * g0k + a1[h] * g1k
                    dA0[h] += g0k * w
                    dA1[h] += g1k * w
            for h in range(H):
                value0 = dA0[h] if a0[h] > 0.0 else 0.0
                value1 = dA1[h] if a1[h] > 0.0 else 0.0
                a0[h] = value0
                a1[h] = value1
                db1[h] += value0 + value1
        if (stop - start) % 2 == 1:  # the chunk's last, unpaired row
            _backward_row(A1[stop - 1], d2[stop - 1], W2T, dW2T, db1, dA0)


@njit(cache=True)
def sum_partials(dW2T_parts, db1_parts, dW2, db1):
    """dW2 (H, K) = Σ_c dW2T_parts[c]ᵀ and db1 (H,) = Σ_c db1_parts[c], in chunk order."""
    C, K, H = dW2T_parts.shape
    dW2[:, :] = 0.0
    db1[:] = 0.0
    for c in range(C):
        for h in range(H):
            for k in range(K):
                dW2[h, k] += dW2T_parts[c, k, h]
            db1[h] += db1_parts[c, h]


@njit(parallel=True, cache=True)
def momentum_update(param, velocity, grad, lr, momentum):
    """network.momentum_step: v <- momentum·v + lr·g; θ <- θ - v, in place, on flat views of one
    parameter."""
    for i in prange(param.shape[0]):
        v = momentum * velocity[i] + lr * grad[i]
        velocity[i] = v
        param[i] -= v
