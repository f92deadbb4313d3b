"""The two-layer network: parameters, Xavier initialisation, forward and backward (README, "The math").

    S1 = X @ W1 + b1      A1 = relu(S1)      S2 = A1 @ W2 + b2      P = softmax(S2)

Every function receives the backend object and calls its steps; none knows which backend it is.
Shapes: X (N, D), W1 (D, H), b1 (H,), W2 (H, K), b2 (K,), labels (N,) integers.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["PARAM_NAMES", "param_shapes", "init_params", "forward", "backward", "loss_and_grads", "evaluate"]

#: parameter order, everywhere: in dicts, in gradients, in weights files
PARAM_NAMES = ("W1", "b1", "W2", "b2")


def param_shapes(n_in, n_hidden, n_out):
    """{name: shape} of the network's parameters."""
    return {"W1": (n_in, n_hidden), "b1": (n_hidden,), "W2": (n_hidden, n_out), "b2": (n_out,)}


def init_params(n_in, n_hidden, n_out, *, seed=0, dtype="float32"):
    """The seed's Xavier variant, drawn on the host so every backend starts from identical weights.

    W1 ~ Normal(0, sqrt(2 / (D + K))), W2 ~ Normal(0, sqrt(2 / (H + 1))), b1 = b2 = 0.
    Draws in float64 with ``numpy.random.default_rng(seed)`` (W1 first), then casts to ``dtype``.
    """
    rng = np.random.default_rng(seed)
    W1 = rng.normal(0.0, math.sqrt(2.0 / (n_in + n_out)), size=(n_in, n_hidden))  # D×H
    W2 = rng.normal(0.0, math.sqrt(2.0 / (n_hidden + 1)), size=(n_hidden, n_out))  # H×K
    params = {"W1": W1, "b1": np.zeros(n_hidden), "W2": W2, "b2": np.zeros(n_out)}
    return {name: params[name].astype(dtype) for name in PARAM_NAMES}


def forward(backend, params, X, *, workspace=None):
    """Logits S2 (N, K) and the cache backward needs, ``(X, A1)``.

    ``workspace`` names a reusable buffer for the N×H activation (training loop only).
    """
    A1 = backend.hidden_layer(X, params["W1"], params["b1"], workspace=workspace)  # N×H
    S2 = backend.affine(A1, params["W2"], params["b2"])  # N×K
    return S2, (X, A1)


def backward(backend, params, cache, d2):
    """Gradients {W1, b1, W2, b2} from d2 = dL/dS2 (N, K). May overwrite the cached A1."""
    X, A1 = cache
    dW2, db2, d1, db1 = backend.hidden_backward(A1, d2, params["W2"])  # H×K, K, N×H, H
    dW1 = backend.matmul(X.T, d1, workspace="dW1")  # D×H
    return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}


def loss_and_grads(backend, params, X, labels, *, workspace=None):
    """(loss, accuracy, gradients) of the average cross-entropy on (X, labels)."""
    S2, cache = forward(backend, params, X, workspace=workspace)
    loss, acc, d2 = backend.softmax_xent_grad(S2, labels)  # d2 = (P - Y) / N, N×K
    return loss, acc, backward(backend, params, cache, d2)


def evaluate(backend, params, X, labels, *, workspace=None):
    """(loss, accuracy) on (X, labels) as 0-d backend arrays."""
    S2, _ = forward(backend, params, X, workspace=workspace)
    return backend.logits_loss_acc(S2, labels)
