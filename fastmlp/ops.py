"""The network's primitives, written once against the array namespace of their inputs.

Each function takes arrays of any Array-API library (NumPy, CuPy, array-api-strict, ...), finds
their namespace ``xp`` with :func:`array_api_compat.array_namespace` and computes the formula of
the network's math (docs/math.md) with it. No function here knows which library it runs on.

Shapes: N rows, H hidden units, K classes. Labels are integer class indices, shape (N,).
"""

from __future__ import annotations

from array_api_compat import array_namespace, device

__all__ = [
    "relu",
    "relu_mask",
    "affine",
    "log_softmax",
    "softmax",
    "one_hot",
    "cross_entropy",
    "accuracy",
    "xent_grad",
    "softmax_xent_grad",
    "logits_loss_acc",
]


def relu(S):
    """max(S, 0), element-wise. NaN stays NaN, so a diverging run is still seen."""
    xp = array_namespace(S)
    return xp.maximum(S, xp.zeros_like(S))


def relu_mask(S):
    """ReLU's derivative: 1 where S > 0, else 0 (0 at exactly 0), in S's dtype."""
    xp = array_namespace(S)
    return xp.astype(S > 0, S.dtype)


def affine(X, W, b):
    """X @ W + b: (N, fan_in) @ (fan_in, fan_out) + (fan_out,) -> (N, fan_out)."""
    return X @ W + b


def log_softmax(S):
    """Row-wise log-softmax, stable: s - max(s) - log(sum(exp(s - max(s)))).  (N, K) -> (N, K)"""
    xp = array_namespace(S)
    shifted = S - xp.max(S, axis=1, keepdims=True)  # N×K, each row's maximum is 0
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))


def softmax(S):
    """Row-wise softmax, stable: exp(s - max(s)) / sum(exp(s - max(s))).  (N, K) -> (N, K)"""
    xp = array_namespace(S)
    E = xp.exp(S - xp.max(S, axis=1, keepdims=True))  # N×K, entries in [0, 1]
    return E / xp.sum(E, axis=1, keepdims=True)


def one_hot(labels, n_classes, dtype):
    """Integer labels (N,) -> one-hot matrix Y (N, K) of ``dtype``."""
    xp = array_namespace(labels)
    classes = xp.arange(n_classes, dtype=labels.dtype, device=device(labels))  # on the labels' device
    return xp.astype(labels[:, None] == classes[None, :], dtype)


def _label_log_probs(S, labels):
    """log P[n, label[n]] for every row.  (N, K), (N,) -> (N,)"""
    xp = array_namespace(S, labels)
    index = labels if xp.isdtype(labels.dtype, "integral") else xp.astype(labels, xp.int64)  # N, integers
    picked = xp.take_along_axis(log_softmax(S), index[:, None], axis=1)
    return picked[:, 0]


def cross_entropy(S, labels):
    """Average cross-entropy of the softmax of logits S: -(1/N) sum_n log P[n, label[n]]."""
    xp = array_namespace(S, labels)
    return -xp.mean(_label_log_probs(S, labels))


def accuracy(S, labels):
    """Fraction of rows whose largest logit (the first, on ties) is the label."""
    xp = array_namespace(S, labels)
    predicted = xp.argmax(S, axis=1)
    return xp.mean(xp.astype(predicted == xp.astype(labels, predicted.dtype), S.dtype))


def xent_grad(S, labels):
    """dL/dS of the average cross-entropy: d2 = (P - Y) / N.  (N, K) -> (N, K)"""
    N, K = S.shape
    return (softmax(S) - one_hot(labels, K, S.dtype)) / N


def softmax_xent_grad(S, labels):
    """Loss, accuracy and d2 = (P - Y)/N from logits S (N, K) in one call (the fused step's contract)."""
    return cross_entropy(S, labels), accuracy(S, labels), xent_grad(S, labels)


def logits_loss_acc(S, labels):
    """Loss and accuracy from logits, without the gradient (the evaluation step's contract)."""
    return cross_entropy(S, labels), accuracy(S, labels)
