"""Gradient descent with momentum, in the seed's form (README, "The math"):

    v <- γ·v + α·g
    θ <- θ - v

α is the learning rate, γ the momentum. Velocities start at ``INITIAL_VELOCITY`` in every entry.
This differs from PyTorch's SGD (v <- μ·v + g; θ <- θ - lr·v): learning rates do not carry over.
"""

from __future__ import annotations

__all__ = ["INITIAL_VELOCITY", "momentum_step", "update"]

#: the seed's starting value of every velocity entry
INITIAL_VELOCITY = 1e-5


def momentum_step(param, velocity, grad, lr, momentum):
    """One update of one parameter: returns the new (θ, v). Works on any Array-API namespace."""
    velocity = momentum * velocity + lr * grad
    return param - velocity, velocity


def update(backend, params, velocities, grads, lr, momentum):
    """The momentum step of every parameter, through the backend's (possibly in-place) version.

    Returns new ``(params, velocities)`` dicts; a backend that works in place returns the same arrays."""
    new_params, new_velocities = {}, {}
    for name in params:
        new_params[name], new_velocities[name] = backend.momentum_update(
            params[name], velocities[name], grads[name], lr, momentum
        )
    return new_params, new_velocities
