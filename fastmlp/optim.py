"""Gradient descent with momentum, in the seed's form (docs/math.md):

    v <- γ·v + α·g
    θ <- θ - v

α is the learning rate, γ the momentum. Velocities start at ``INITIAL_VELOCITY`` in every entry.
This differs from PyTorch's SGD (v <- μ·v + g; θ <- θ - lr·v): learning rates do not carry over.
"""

from __future__ import annotations

__all__ = ["INITIAL_VELOCITY", "momentum_step"]

#: the seed's starting value of every velocity entry
INITIAL_VELOCITY = 1e-5


def momentum_step(param, velocity, grad, lr, momentum):
    """One update of one parameter: returns the new (θ, v). Works on any Array-API namespace."""
    velocity = momentum * velocity + lr * grad
    return param - velocity, velocity
