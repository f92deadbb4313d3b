"""An independent plain-NumPy transcription of the seed's training loop (the oracle).

Written the way the course assignment writes it: one-hot targets, softmax probabilities, the
log of the probabilities for the loss, and two extra forward passes per epoch for the metrics.
It shares no code with fastmlp.
"""

import numpy as np


def relu(x):
    return np.maximum(x, 0)


def softmax(x):
    e = np.exp(x - np.max(x, axis=1, keepdims=True))
    return e / np.sum(e, axis=1, keepdims=True)


def compute_layer(X, W, b):
    return np.matmul(X, W) + b


def average_ce(target, prediction):
    return -np.mean(np.sum(target * np.log(prediction), axis=1))


def grad_ce(target, prediction):
    return (prediction - target) / target.shape[0]


def forward(X, W1, b1, W2, b2):
    S1 = compute_layer(X, W1, b1)
    A1 = relu(S1)
    P = softmax(compute_layer(A1, W2, b2))
    return S1, A1, P


def metrics(X, Y, W1, b1, W2, b2):
    P = forward(X, W1, b1, W2, b2)[2]
    return average_ce(Y, P), np.mean(np.argmax(P, axis=1) == np.argmax(Y, axis=1))


def train(X, y, X_valid, y_valid, W1, b1, W2, b2, *, epochs, lr=0.1, gamma=0.9):
    """Returns the final (W1, b1, W2, b2) and the per-epoch metrics of the updated weights."""
    Y = np.eye(10)[y]
    Y_valid = np.eye(10)[y_valid]
    W1, b1, W2, b2 = (np.array(p, dtype=np.float64) for p in (W1, b1, W2, b2))
    vW1, vb1, vW2, vb2 = (np.full(p.shape, 1e-5) for p in (W1, b1, W2, b2))
    history = {"train_loss": [], "train_acc": [], "valid_loss": [], "valid_acc": []}
    for _ in range(epochs):
        S1, A1, P = forward(X, W1, b1, W2, b2)
        d2 = grad_ce(Y, P)
        dW2 = A1.T @ d2
        db2 = np.sum(d2, axis=0)
        d1 = (d2 @ W2.T) * (S1 > 0)
        dW1 = X.T @ d1
        db1 = np.sum(d1, axis=0)
        vW1 = gamma * vW1 + lr * dW1
        vb1 = gamma * vb1 + lr * db1
        vW2 = gamma * vW2 + lr * dW2
        vb2 = gamma * vb2 + lr * db2
        W1, b1, W2, b2 = W1 - vW1, b1 - vb1, W2 - vW2, b2 - vb2
        train_loss, train_acc = metrics(X, Y, W1, b1, W2, b2)
        valid_loss, valid_acc = metrics(X_valid, Y_valid, W1, b1, W2, b2)
        history["train_loss"].append(train_loss)
        history["train_acc"].append(train_acc)
        history["valid_loss"].append(valid_loss)
        history["valid_acc"].append(valid_acc)
    return (W1, b1, W2, b2), history
