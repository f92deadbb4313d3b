"""The idiomatic JAX loop for the same epoch, as a reference row of ``fastmlp bench --peers``.

Not part of fastmlp: what a JAX user would write instead. A parameter dict, the loss written with
``jax.nn.log_softmax``, gradients by ``jax.value_and_grad``, momentum with ``jax.tree.map``, and
the whole epoch (step, training metrics from the step's forward, validation forward) under one
``jax.jit`` that donates the old parameters and velocities; the four metrics copied to the host once.
"""

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

#: the fastmlp backend this loop is compared with
BACKEND = "jax"
TITLE = "jax own loop"
#: the precisions this loop can compute in
PRECISIONS = ("float32",)


def _logits(params, X):
    hidden = jax.nn.relu(X @ params["W1"] + params["b1"])  # N×H
    return hidden @ params["W2"] + params["b2"]  # N×K


def _loss(params, X, labels):
    logits = _logits(params, X)
    log_p = jax.nn.log_softmax(logits, axis=1)
    return -jnp.mean(jnp.take_along_axis(log_p, labels[:, None], axis=1)), logits


def _accuracy(logits, labels):
    return jnp.mean((jnp.argmax(logits, axis=1) == labels).astype(logits.dtype))


@functools.partial(jax.jit, donate_argnums=(0, 1))
def _epoch(params, velocities, X, labels, X_valid, labels_valid, lr, momentum):
    (loss, logits), grads = jax.value_and_grad(_loss, has_aux=True)(params, X, labels)
    velocities = jax.tree.map(lambda v, g: momentum * v + lr * g, velocities, grads)
    params = jax.tree.map(lambda p, v: p - v, params, velocities)
    valid_loss, valid_logits = _loss(params, X_valid, labels_valid)
    metrics = jnp.stack([loss, _accuracy(logits, labels), valid_loss, _accuracy(valid_logits, labels_valid)])
    return params, velocities, metrics


class Runner:
    """One configuration of the loop: data and parameters on JAX's default device, ready to time."""

    def __init__(self, *, n, n_valid, hidden, dtype, seed=0, n_in=784, n_out=10):
        if dtype == "float64" and not jax.config.jax_enable_x64:
            jax.config.update("jax_enable_x64", True)
        rng = np.random.default_rng(seed)
        self.X = jnp.asarray(rng.random((n, n_in)), dtype=dtype)  # N×D
        self.labels = jnp.asarray(rng.integers(0, n_out, n).astype(np.int32))  # N
        self.X_valid = jnp.asarray(rng.random((n_valid, n_in)), dtype=dtype)  # Nv×D
        self.labels_valid = jnp.asarray(rng.integers(0, n_out, n_valid).astype(np.int32))
        self.params = {
            "W1": jnp.asarray(rng.normal(0, np.sqrt(2 / (n_in + n_out)), (n_in, hidden)), dtype=dtype),
            "b1": jnp.zeros(hidden, dtype=dtype),
            "W2": jnp.asarray(rng.normal(0, np.sqrt(2 / (hidden + 1)), (hidden, n_out)), dtype=dtype),
            "b2": jnp.zeros(n_out, dtype=dtype),
        }
        self.velocities = {k: jnp.full(v.shape, 1e-5, dtype=dtype) for k, v in self.params.items()}
        self._d1 = jnp.asarray(rng.standard_normal((n, hidden)) * 1e-3, dtype=dtype)  # N×H stand-in for d1

    def describe(self):
        return {"library": f"jax {jax.__version__}", "device": str(jax.devices()[0])}

    def epoch(self):
        """Seconds of one compiled epoch and the one copy of its metrics to the host."""
        start = time.perf_counter()
        self.params, self.velocities, metrics = _epoch(
            self.params, self.velocities, self.X, self.labels, self.X_valid, self.labels_valid, 1e-3, 0.9
        )
        np.asarray(metrics)
        return time.perf_counter() - start

    def products(self):
        """Seconds of the epoch's three large products alone (dispatched one by one)."""
        W1 = self.params["W1"]
        start = time.perf_counter()
        jax.block_until_ready((self.X @ W1, self.X.T @ self._d1, self.X_valid @ W1))
        return time.perf_counter() - start
