"""The epoch loop and its record, :class:`History`.

One epoch, as in the seed: forward on the training set, backward, update all four parameters, then
loss and accuracy on the training and validation sets for the updated weights. In full-batch mode
the training metrics of the updated weights are exactly what the next epoch's forward pass
computes, so the loop reuses that pass and runs one extra forward after the last epoch.

Device data stays on the device: the loop copies to the host once per epoch, the four metric
scalars together, and checks there that the training loss has not diverged.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field

import numpy as np

from . import model
from .errors import DivergenceError

__all__ = ["History", "TrainingState", "full_batch_epoch", "run_epochs"]


@dataclass
class History:
    """Per-epoch metrics of a ``fit``: losses, accuracies and wall-clock seconds per epoch.

    ``seconds[0]`` includes one-time costs (kernel compilation or cache load, buffer
    allocation); :attr:`steady_seconds` is the median of the epochs after it.
    """

    train_loss: list = field(default_factory=list)
    train_acc: list = field(default_factory=list)
    valid_loss: list = field(default_factory=list)
    valid_acc: list = field(default_factory=list)
    seconds: list = field(default_factory=list)

    @property
    def epochs(self):
        return len(self.train_loss)

    @property
    def first_epoch_seconds(self):
        """Time of the first epoch, compile / cache-load / warm-up included."""
        return self.seconds[0] if self.seconds else float("nan")

    @property
    def steady_seconds(self):
        """Median seconds of the epochs after the first (the steady state)."""
        later = self.seconds[1:]
        return statistics.median(later) if later else float("nan")

    def to_csv(self):
        """CSV text, one row per epoch: epoch, train_loss, train_acc, valid_loss, valid_acc, seconds."""
        columns = (self.train_loss, self.train_acc, self.valid_loss, self.valid_acc, self.seconds)
        lines = ["epoch,train_loss,train_acc,valid_loss,valid_acc,seconds"]
        for i in range(self.epochs):
            cells = [repr(float(column[i])) if i < len(column) else "" for column in columns]
            lines.append(",".join([str(i + 1), *cells]))
        return "\n".join(lines) + "\n"


class TrainingState:
    """Parameters and velocities on the backend, and the momentum update of all four."""

    def __init__(self, backend, params, velocities):
        self.backend = backend
        self.params = params          # {name: backend array}
        self.velocities = velocities  # {name: backend array}

    def update(self, grads, lr, momentum):
        for name in model.PARAM_NAMES:
            self.params[name], self.velocities[name] = self.backend.momentum_update(
                self.params[name], self.velocities[name], grads[name], lr, momentum
            )

    def snapshot(self, into=None):
        """Copies of parameters and velocities (into ``into``'s buffers where the backend can)."""
        copy = self.backend.copy
        into = into or ({}, {})
        return (
            {k: copy(v, into[0].get(k)) for k, v in self.params.items()},
            {k: copy(v, into[1].get(k)) for k, v in self.velocities.items()},
        )

    def restore(self, snapshot):
        params, velocities = snapshot
        for name in model.PARAM_NAMES:
            self.params[name] = self.backend.copy(params[name], self.params[name])
            self.velocities[name] = self.backend.copy(velocities[name], self.velocities[name])


def _metrics_to_host(backend, values):
    """Backend scalars -> Python floats, in one device-to-host copy."""
    xp = backend.xp
    stacked = xp.stack([xp.astype(xp.reshape(v, ()), xp.float64) for v in values])
    return [float(v) for v in backend.to_numpy(stacked)]


class _Progress:
    """A tqdm bar over epochs when asked for; no-op otherwise."""

    def __init__(self, enabled, epochs, backend_name):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=epochs, desc=f"training ({backend_name})", unit="epoch", leave=True)

    def update(self, history):
        if self.bar is None:
            return
        postfix = {}
        i = history.epochs - 1  # the last epoch with training metrics
        if i >= 0:
            postfix.update(loss=f"{history.train_loss[i]:.4f}", acc=f"{history.train_acc[i]:.4f}")
        if 0 <= i < len(history.valid_loss):
            postfix.update(val_loss=f"{history.valid_loss[i]:.4f}", val_acc=f"{history.valid_acc[i]:.4f}")
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(1)

    def close(self):
        if self.bar is not None:
            self.bar.close()


class _DivergenceGuard:
    """Decides from each epoch's training loss whether the run diverged.

    A loss diverged when it is not finite, or when it exceeds ``FACTOR`` times the larger of the
    initial weights' loss and log K (the loss of a uniform guess): past that, the correct class's
    average log-probability is below about -2300 for K = 10 and the run does not come back. (With
    the stable log-softmax the loss of a blown-up network stays finite, so finiteness alone would
    miss it.)
    """

    FACTOR = 1000.0

    def __init__(self, n_classes, lr):
        self.n_classes, self.lr = n_classes, lr
        self.limit = None
        self.last_good = None  # (epoch, loss); epoch 0 = the initial weights

    def accepts(self, epoch, loss):
        if self.limit is None and math.isfinite(loss):
            self.limit = self.FACTOR * max(loss, math.log(self.n_classes))
        if math.isfinite(loss) and loss <= self.limit:
            self.last_good = (epoch, loss)
            return True
        return False

    def error(self, epoch, loss, history, state, good):
        """Restore the last good weights, trim the history to them, and build the error."""
        state.restore(good)
        for values in (history.train_loss, history.train_acc, history.valid_loss, history.valid_acc, history.seconds):
            del values[max(epoch - 1, 0):]
        why = "not finite" if not math.isfinite(loss) else (
            f"above {self.limit:.3g}, {self.FACTOR:g} x the larger of the initial loss and log K")
        if epoch == 0:
            where = f"the initial weights give a training loss of {loss:.6g} ({why})"
        else:
            where = f"training diverged at epoch {epoch}: the training loss of its updated weights is {loss:.6g} ({why})"
        if self.last_good is None:
            last = "no good loss was seen"
        else:
            when = "the initial weights" if self.last_good[0] == 0 else f"after epoch {self.last_good[0]}"
            last = f"the last finite loss was {self.last_good[1]:.6g} ({when})"
        return DivergenceError(
            f"{where}, lr={self.lr:g}; {last}. The model keeps those weights; try a smaller learning rate (--lr)",
            epoch=epoch, lr=self.lr, last_finite_loss=None if self.last_good is None else self.last_good[1],
            history=history)


def full_batch_epoch(state, X, labels, X_valid=None, labels_valid=None, *, lr, momentum, snapshot_into=None):
    """One epoch of the seed's loop on the whole training set, as the training loop runs it.

    Returns (snapshot of the weights before the update, host metrics): the metrics are the
    training loss and accuracy of the weights *before* the update (this epoch's forward pass)
    and, with a validation set, its loss and accuracy *after* the update, in one device-to-host
    copy (which also waits for the device).
    """
    backend = state.backend
    before = state.snapshot(into=snapshot_into)
    loss, acc, grads = model.loss_and_grads(backend, state.params, X, labels, workspace="train_hidden")
    state.update(grads, lr, momentum)
    valid = []
    if X_valid is not None:
        valid = model.evaluate(backend, state.params, X_valid, labels_valid, workspace="valid_hidden")
    return before, _metrics_to_host(backend, [loss, acc, *valid])


def run_epochs(state, X, labels, X_valid=None, labels_valid=None, *, epochs, lr, momentum,
               batch_size=None, rng=None, progress=False):
    """Train ``state`` in place for ``epochs`` epochs; returns the :class:`History`.

    X (N, D) and labels (N,) are backend arrays already on the device. ``batch_size=None`` is
    full-batch gradient descent (the seed); an int gives mini-batches in an order drawn on the
    host from ``rng`` (a ``numpy.random.Generator``). When the training loss diverges (see
    :class:`_DivergenceGuard`) the state is reset to the last weights whose loss was good and
    :class:`DivergenceError` is raised.
    """
    backend = state.backend
    N = X.shape[0]
    has_valid = X_valid is not None
    full_batch = batch_size is None or batch_size >= N
    history = History()
    bar = _Progress(progress, epochs, backend.name)

    def valid_metrics():
        if not has_valid:
            return []
        return list(model.evaluate(backend, state.params, X_valid, labels_valid, workspace="valid_hidden"))

    def record_valid(values):
        if has_valid:
            history.valid_loss.append(values[0])
            history.valid_acc.append(values[1])

    guard = _DivergenceGuard(state.params["W2"].shape[1], lr)
    # `good`: weights whose training loss the guard accepted; `pending`: weights not yet checked;
    # `spare`: a snapshot no longer needed, whose buffers the next snapshot reuses.
    good = spare = None
    try:
        if not full_batch:  # the initial loss, which the full-batch loop gets from its first forward
            good = state.snapshot()
            initial = _metrics_to_host(backend, model.evaluate(backend, state.params, X, labels, workspace="train_hidden"))
            if not guard.accepts(0, initial[0]):
                raise guard.error(0, initial[0], history, state, good)
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            if full_batch:
                # the loss of the weights before this update arrives with this epoch's forward pass
                pending, host = full_batch_epoch(state, X, labels, X_valid, labels_valid,
                                                 lr=lr, momentum=momentum, snapshot_into=spare)
                if not guard.accepts(epoch - 1, host[0]):
                    raise guard.error(epoch - 1, host[0], history, state, good or pending)
                spare, good = good, pending
                if epoch > 1:  # the training metrics of the previous epoch's weights
                    history.train_loss.append(host[0])
                    history.train_acc.append(host[1])
                record_valid(host[2:])
            else:
                good = state.snapshot(into=good)
                for batch in np.array_split(rng.permutation(N), math.ceil(N / batch_size)):
                    rows = backend.asarray(batch)
                    Xb, lb = backend.take_rows(X, rows), backend.take_rows(labels, rows)
                    _, _, grads = model.loss_and_grads(backend, state.params, Xb, lb, workspace="batch_hidden")
                    state.update(grads, lr, momentum)
                loss, acc = model.evaluate(backend, state.params, X, labels, workspace="train_hidden")
                host = _metrics_to_host(backend, [loss, acc, *valid_metrics()])
                if not guard.accepts(epoch, host[0]):
                    raise guard.error(epoch, host[0], history, state, good)
                history.train_loss.append(host[0])
                history.train_acc.append(host[1])
                record_valid(host[2:])
            history.seconds.append(time.perf_counter() - start)
            if not full_batch or epoch > 1:
                bar.update(history)

        if full_batch:  # training metrics of the final weights: one extra forward pass
            start = time.perf_counter()
            loss, acc = model.evaluate(backend, state.params, X, labels, workspace="train_hidden")
            host = _metrics_to_host(backend, [loss, acc])
            if not guard.accepts(epochs, host[0]):
                raise guard.error(epochs, host[0], history, state, good)
            history.train_loss.append(host[0])
            history.train_acc.append(host[1])
            history.seconds[-1] += time.perf_counter() - start
            bar.update(history)
    finally:
        bar.close()
        backend.release()
    return history
