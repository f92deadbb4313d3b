"""The two-layer network, equation by equation as docs/math.md states it.

    parameters  W1 (D, H)  b1 (H,)  W2 (H, K)  b2 (K,)    W1 ~ N(0, 2/(D+K))  W2 ~ N(0, 2/(H+1))  b = 0
    forward     S1 = X W1 + b1   A1 = relu(S1)   S2 = A1 W2 + b2   P = softmax(S2)
    loss        L = -(1/N) Σ_n log P[n, y_n]     acc = mean_n [argmax_k S2[n, k] = y_n]
    backward    d2 = (P − Y)/N   dW2 = A1ᵀ d2   db2 = Σ_n d2   d1 = (d2 W2ᵀ) ⊙ [S1 > 0]   dW1 = Xᵀ d1   db1 = Σ_n d1
    update      v ← γ v + α g   θ ← θ − v       (every parameter; velocities start at 1e-5)

Shapes: X (N, D), labels (N,) integers, Y (N, K) their one-hot rows; D inputs, H hidden units, K classes.

The passes (:func:`forward`, :func:`loss_and_grads`, :func:`backward`, :func:`update`) take a backend
and reach each equation through the backend's *step* of the same name (``backend.hidden_layer``,
``backend.hidden_backward``, ...). The generic backend (``Backend`` in ``backends/base.py``)
runs the functions of this module for its steps (:func:`hidden_layer`, :func:`hidden_backward`,
:func:`momentum_step`) and the primitives of :mod:`fastmlp.ops` for the rest; a fast backend
replaces a step with a fused version whose docstring names the lines of this module it replaces,
and ``tests/test_kernels.py`` compares each such version with the generic one.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np

__all__ = [
    "PARAM_NAMES",
    "INITIAL_VELOCITY",
    "Steps",
    "param_shapes",
    "init_params",
    "init_velocities",
    "forward",
    "hidden_layer",
    "loss_and_grads",
    "backward",
    "hidden_backward",
    "loss_and_accuracy",
    "update",
    "momentum_step",
]

#: an array of any Array-API library (NumPy, CuPy, PyTorch, JAX, array-api-strict)
Array = Any
#: parameters, velocities or gradients by name: {"W1", "b1", "W2", "b2"} -> arrays
Weights = dict[str, Array]

#: parameter order, everywhere: in dicts, in gradients, in weights files
PARAM_NAMES = ("W1", "b1", "W2", "b2")
#: the reference assignment's starting value of every velocity entry
INITIAL_VELOCITY = 1e-5


class Steps(Protocol):
    """The steps of a backend that the passes call (``Backend`` in ``backends/base.py`` has them all)."""

    xp: Any  # the backend's Array-API namespace

    def matmul(self, A: Array, B: Array, *, workspace: str | None = None) -> Array: ...
    def bias_relu(self, S: Array, b: Array) -> Array: ...
    def hidden_layer(self, X: Array, W1: Array, b1: Array, *, workspace: str | None = None) -> Array: ...
    def affine(self, A: Array, W: Array, b: Array) -> Array: ...
    def softmax_xent_grad(self, S: Array, labels: Array) -> tuple[Array, Array, Array]: ...
    def logits_loss_acc(self, S: Array, labels: Array) -> tuple[Array, Array]: ...
    def hidden_backward(self, A1: Array, d2: Array, W2: Array) -> tuple[Array, Array, Array, Array]: ...
    def relu_backward(self, A1: Array, dA1: Array) -> Array: ...
    def momentum_update(
        self, param: Array, velocity: Array, grad: Array, lr: float, momentum: float
    ) -> tuple[Array, Array]: ...
    def full(self, shape: tuple[int, ...], value: float, dtype: Any) -> Array: ...


# ------------------------------------------------------------------ parameters
def param_shapes(n_in: int, n_hidden: int, n_out: int) -> dict[str, tuple[int, ...]]:
    """{name: shape} of the network's parameters."""
    return {"W1": (n_in, n_hidden), "b1": (n_hidden,), "W2": (n_hidden, n_out), "b2": (n_out,)}


def init_params(n_in: int, n_hidden: int, n_out: int, *, seed: int = 0, dtype: Any = "float32") -> Weights:
    """The assignment's Xavier variant, drawn on the host so every backend starts from identical weights.

    Draws in float64 with ``numpy.random.default_rng(seed)`` (W1 first), then casts to ``dtype``."""
    rng = np.random.default_rng(seed)
    W1 = rng.normal(0.0, math.sqrt(2.0 / (n_in + n_out)), size=(n_in, n_hidden))  # (D, H)  W1 ~ N(0, 2/(D+K))
    W2 = rng.normal(0.0, math.sqrt(2.0 / (n_hidden + 1)), size=(n_hidden, n_out))  # (H, K)  W2 ~ N(0, 2/(H+1))
    params = {"W1": W1, "b1": np.zeros(n_hidden), "W2": W2, "b2": np.zeros(n_out)}  # b1 (H,) = 0, b2 (K,) = 0
    return {name: params[name].astype(dtype) for name in PARAM_NAMES}


def init_velocities(backend: Steps, params: Weights) -> Weights:
    """A velocity per parameter, on the backend, every entry INITIAL_VELOCITY (the assignment's choice)."""
    return {name: backend.full(p.shape, INITIAL_VELOCITY, p.dtype) for name, p in params.items()}  # shape of θ


# ------------------------------------------------------------------ forward
def forward(backend: Steps, params: Weights, X: Array, *, workspace: str | None = None) -> tuple[Array, tuple]:
    """The logits S2 (N, K) and the cache the backward pass reads, ``(X, A1)``.

    ``workspace`` names a reusable buffer for the N×H activation (the training loop's)."""
    A1 = backend.hidden_layer(X, params["W1"], params["b1"], workspace=workspace)  # (N, H)  A1 = relu(X W1 + b1)
    S2 = backend.affine(A1, params["W2"], params["b2"])  # (N, K)  S2 = A1 W2 + b2
    return S2, (X, A1)


def hidden_layer(backend: Steps, X: Array, W1: Array, b1: Array, *, workspace: str | None = None) -> Array:
    """The generic step ``hidden_layer``: A1 = relu(S1), S1 = X W1 + b1, as the product and then the
    element-wise step (``backend.matmul``, ``backend.bias_relu``).  (N, D), (D, H), (H,) -> (N, H)"""
    XW1 = backend.matmul(X, W1, workspace=workspace)  # (N, H)  X W1
    return backend.bias_relu(XW1, b1)  # (N, H)  A1 = relu(X W1 + b1)


# ------------------------------------------------------------------ loss and backward
def loss_and_grads(
    backend: Steps, params: Weights, X: Array, labels: Array, *, workspace: str | None = None
) -> tuple[Array, Array, Weights]:
    """(L, acc, gradients {W1, b1, W2, b2}) of the average cross-entropy on (X, labels); L and acc
    are 0-d backend arrays (no host synchronisation)."""
    S2, cache = forward(backend, params, X, workspace=workspace)  # (N, K)
    loss, acc, d2 = backend.softmax_xent_grad(S2, labels)  # L (), acc (), d2 = (P − Y)/N (N, K)
    return loss, acc, backward(backend, params, cache, d2)


def backward(backend: Steps, params: Weights, cache: tuple, d2: Array) -> Weights:
    """The gradients from d2 = dL/dS2 = (P − Y)/N (N, K), the first line of the backward pass
    (made by ``softmax_xent_grad`` with the loss). The other five:

        dW2 = A1ᵀ d2                (H, K)   ┐
        db2 = Σ_n d2                (K,)     │  hidden_backward (below): every line that reads A1
        d1  = (d2 W2ᵀ) ⊙ [S1 > 0]   (N, H)   │
        db1 = Σ_n d1                (H,)     ┘
        dW1 = Xᵀ d1                 (D, H)

    A fused ``hidden_backward`` may write d1 over the cached A1."""
    X, A1 = cache  # (N, D), (N, H)
    dW2, db2, d1, db1 = backend.hidden_backward(A1, d2, params["W2"])  # (H, K), (K,), (N, H), (H,)
    dW1 = backend.matmul(X.T, d1, workspace="dW1")  # (D, H)  dW1 = Xᵀ d1
    return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}


def hidden_backward(backend: Steps, A1: Array, d2: Array, W2: Array) -> tuple[Array, Array, Array, Array]:
    """The generic step ``hidden_backward``: the four lines of the backward pass that read A1.

    A1 = relu(S1) (N, H), d2 (N, K), W2 (H, K) -> dW2 (H, K), db2 (K,), d1 (N, H), db1 (H,)."""
    xp = backend.xp
    dW2 = A1.T @ d2  # (H, K)  dW2 = A1ᵀ d2
    db2 = xp.sum(d2, axis=0)  # (K,)  db2 = Σ_n d2
    dA1 = backend.matmul(d2, W2.T, workspace="dA1")  # (N, H)  d2 W2ᵀ
    d1 = backend.relu_backward(A1, dA1)  # (N, H)  d1 = (d2 W2ᵀ) ⊙ [S1 > 0]; A1 > 0 exactly where S1 > 0
    db1 = xp.sum(d1, axis=0)  # (H,)  db1 = Σ_n d1
    return dW2, db2, d1, db1


def loss_and_accuracy(
    backend: Steps, params: Weights, X: Array, labels: Array, *, workspace: str | None = None
) -> tuple[Array, Array]:
    """(L, acc) of ``params`` on (X, labels) as 0-d backend arrays: the forward pass and the loss,
    without the gradient."""
    S2, _ = forward(backend, params, X, workspace=workspace)  # (N, K)
    return backend.logits_loss_acc(S2, labels)  # L (), acc ()


# ------------------------------------------------------------------ update
def update(
    backend: Steps, params: Weights, velocities: Weights, grads: Weights, lr: float, momentum: float
) -> tuple[Weights, Weights]:
    """The momentum step of every parameter, through ``backend.momentum_update`` (in place where
    the backend can). Returns the new ``(params, velocities)``; ``grads`` may be consumed."""
    new_params, new_velocities = {}, {}
    for name in params:  # θ, v, g of one parameter: all of its shape
        new_params[name], new_velocities[name] = backend.momentum_update(
            params[name], velocities[name], grads[name], lr, momentum
        )
    return new_params, new_velocities


def momentum_step(param: Array, velocity: Array, grad: Array, lr: float, momentum: float) -> tuple[Array, Array]:
    """The generic step ``momentum_update`` of one parameter θ with gradient g, in the assignment's form:
    α is the learning rate, γ the momentum. Returns the new (θ, v).

    Not PyTorch's SGD (v ← μ v + g; θ ← θ − lr v): learning rates do not carry over one-to-one."""
    velocity = momentum * velocity + lr * grad  # shape of θ  v ← γ v + α g
    return param - velocity, velocity  # shape of θ  θ ← θ − v
