"""The epoch loops and their record, :class:`History`.

One epoch, as in the assignment: forward on the training set, backward, update all four parameters, then
loss and accuracy on the training and validation sets for the updated weights. In full-batch mode
the training metrics of the updated weights are exactly what the next epoch's forward pass
computes, so the loop reuses that pass and runs one extra forward after the last epoch.

The path of one full-batch epoch: :func:`full_batch_epoch` calls the *step* :func:`epoch_step`,
compiled once through the backend's ``compile_step`` seam (a plain call on the CPU; a backend may
trace it or capture it and replay it). The step copies the weights into the free slot of
:class:`Snapshots` (for the divergence check), runs the passes of :mod:`.network` (forward,
backward, momentum update) and the validation forward, and returns the metrics as one device
vector. The loop copies that vector to the host (once per epoch, the only synchronisation), and
:class:`_Recorder` checks the training loss with :class:`_DivergenceGuard`, which accepts the
snapshot or restores the last accepted one, and appends the metrics to the :class:`History`.
"""

from __future__ import annotations

import math
import statistics
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from . import network
from .errors import DivergenceError

#: a fit learned only if its final training loss is at most this share of its initial one
LEARNED_LOSS_SHARE = 0.98
#: ... and its final training accuracy beats its initial one by more than this many standard errors
LEARNED_ACCURACY_ERRORS = 3
#: a final training accuracy within this of the most common class's share counts as chance
CHANCE_MARGIN = 0.01

__all__ = [
    "History",
    "TrainingState",
    "Snapshots",
    "gradient_step",
    "epoch_step",
    "metrics_step",
    "full_batch_epoch",
    "run_epochs",
]


@dataclass
class History:
    """Per-epoch metrics of a ``fit``: losses, accuracies and wall-clock seconds per epoch, and
    the training loss and accuracy of the weights it started from.

    ``seconds[0]`` includes one-time costs (kernel compilation or cache load, buffer
    allocation); :attr:`steady_seconds` is the median of the epochs after it. :meth:`failure`
    says whether the fit learned.
    """

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    valid_loss: list[float] = field(default_factory=list)
    valid_acc: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    #: training loss of the weights the fit started from (NaN until a fit checked it, or when it
    #: was not finite)
    initial_loss: float = math.nan
    #: training accuracy of the weights the fit started from (NaN until a fit checked them)
    initial_acc: float = math.nan
    #: training images the fit read (the N of the standard error in :meth:`failure`)
    train_size: int = 0

    @property
    def epochs(self) -> int:
        """Epochs recorded (those with a training loss)."""
        return len(self.train_loss)

    @property
    def first_epoch_seconds(self) -> float:
        """Time of the first epoch, compile / cache-load / warm-up included."""
        return self.seconds[0] if self.seconds else float("nan")

    @property
    def steady_seconds(self) -> float:
        """Median seconds of the epochs after the first (the steady state)."""
        later = self.seconds[1:]
        return statistics.median(later) if later else float("nan")

    def truncate(self, epochs: int) -> None:
        """Keep the records of the first ``epochs`` epochs only."""
        for values in (self.train_loss, self.train_acc, self.valid_loss, self.valid_acc, self.seconds):
            del values[epochs:]

    @property
    def loss_fell(self) -> bool:
        """Whether the final training loss is below the initial one."""
        return bool(self.train_loss) and self.train_loss[-1] < self.initial_loss

    def failure(self, chance_accuracy: float | None = None) -> str | None:
        """Why the fit did not learn, or None when it did: on its training split it must end
        clearly better than it started (the same images, the same measure, whatever the initial
        weights scored).

        - The final loss is at most 98% of the initial one. The assignment's velocities start at 1e-5,
          so every weight moves however small the learning rate is: at ``lr=1e-9`` the loss drifts
          down by about 0.1% an epoch and by under 1% in 200 epochs, while one epoch at the
          default learning rate takes about 5-11% off.
        - The final accuracy beats the initial accuracy p by more than 3 standard errors,
          3·sqrt(p(1-p)/N) over the N training images (0.011 for 6000 images at p = 0.1, 0.052
          for 300): a classifier only as good as the initial weights scores that high on N
          images about once in 740 draws.
        - With ``chance_accuracy`` (the share of the most common class), the final accuracy is
          more than 0.01 above it.
        """
        if not self.train_loss or not math.isfinite(self.initial_loss):
            return None
        loss, acc = self.train_loss[-1], self.train_acc[-1]
        if loss > LEARNED_LOSS_SHARE * self.initial_loss:
            return (
                f"the final training loss {loss:.4g} is not clearly below the initial {self.initial_loss:.4g} "
                f"(at most {LEARNED_LOSS_SHARE:.0%} of it)"
            )
        needed = self.initial_acc + self._accuracy_margin()
        if not acc > needed:
            return (
                f"the final training accuracy {acc:.4f} is not clearly above the initial {self.initial_acc:.4f} "
                f"(more than {needed:.4f}: {LEARNED_ACCURACY_ERRORS} standard errors over {self.train_size} images)"
            )
        if chance_accuracy is not None and acc <= chance_accuracy + CHANCE_MARGIN:
            return (
                f"the final training accuracy {acc:.4f} is at chance (the most common class is {chance_accuracy:.4f})"
            )
        return None

    def _accuracy_margin(self):
        """LEARNED_ACCURACY_ERRORS standard errors of the initial accuracy over the training images."""
        p, n = self.initial_acc, max(self.train_size, 1)
        return LEARNED_ACCURACY_ERRORS * math.sqrt(p * (1 - p) / n)

    def to_csv(self) -> str:
        """CSV text, one row per epoch: epoch, train_loss, train_acc, valid_loss, valid_acc, seconds."""
        columns = (self.train_loss, self.train_acc, self.valid_loss, self.valid_acc, self.seconds)
        lines = ["epoch,train_loss,train_acc,valid_loss,valid_acc,seconds"]
        for i in range(self.epochs):
            cells = [repr(float(column[i])) if i < len(column) else "" for column in columns]
            lines.append(",".join([str(i + 1), *cells]))
        return "\n".join(lines) + "\n"


class TrainingState:
    """What a fit changes on the device: the parameters, their velocities, and the
    :class:`Snapshots` of them that the divergence check restores."""

    def __init__(self, backend, params, velocities):
        self.backend = backend
        self.params = params  # {name: backend array}
        self.velocities = velocities  # {name: backend array}
        self.snapshots = Snapshots(backend, params, velocities)

    def restore(self):
        """Back to the last accepted weights (see :meth:`Snapshots.restore`)."""
        self.params, self.velocities = self.snapshots.restore(self.params, self.velocities)


class Snapshots:
    """Copies of the weights (parameters and velocities) for the divergence check, in two slots.

    Each check is of the weights last copied into :attr:`pending`, the slot that does not hold the
    last accepted weights: :meth:`accept` makes it the accepted slot, :meth:`restore` copies the
    accepted weights back (the pending ones while none was accepted: the initial weights). The
    slots therefore alternate from epoch to epoch, and a step that copies into :attr:`pending`
    sees the same buffers every other epoch, which a backend that replays steps relies on.
    """

    def __init__(self, backend, params, velocities):
        self.backend = backend
        self._slots = [(_zeros_like(backend, params), _zeros_like(backend, velocities)) for _ in range(2)]
        self._accepted = None  # index of the slot holding the last accepted weights

    @property
    def _pending(self):
        return 1 if self._accepted == 0 else 0

    @property
    def pending(self):
        """The slot the next copy goes into: (params, velocities) dicts of backend arrays."""
        return self._slots[self._pending]

    def store(self, copies):
        """Keep ``copies`` (params, velocities), made into :attr:`pending`'s buffers by a step, as
        that slot (a backend that cannot write in place returns new arrays)."""
        self._slots[self._pending] = copies

    def take(self, params, velocities):
        """Copy the weights into :attr:`pending`."""
        self.store(copy_weights(self.backend, params, velocities, self.pending))

    def accept(self):
        """The weights in :attr:`pending` passed the check: they become the ones :meth:`restore` restores."""
        self._accepted = self._pending

    def restore(self, params, velocities):
        """The last accepted weights, copied into the buffers of ``params`` and ``velocities``
        where the backend can; returns the new (params, velocities)."""
        accepted_params, accepted_velocities = self._slots[
            self._accepted if self._accepted is not None else self._pending
        ]
        return copy_weights(self.backend, accepted_params, accepted_velocities, into=(params, velocities))


def _zeros_like(backend, arrays):
    return {name: backend.full(a.shape, 0, a.dtype) for name, a in arrays.items()}


def copy_weights(backend, params, velocities, into):
    """(copies of params, copies of velocities), written into the buffers of ``into`` (params,
    velocities) where the backend can."""
    return (
        {name: backend.copy(p, into[0][name]) for name, p in params.items()},
        {name: backend.copy(v, into[1][name]) for name, v in velocities.items()},
    )


# ------------------------------------------------------------------ steps
#: what an update step replaces: the loop passes the parameters and velocities in and keeps only
#: the step's new ones, so a backend may reuse their memory (JAX donates the buffers)
UPDATED = ("params", "velocities")


def gradient_step(backend, params, velocities, X, labels, lr, momentum, *, workspace):
    """Forward, backward and the momentum update of all four parameters on (X, labels).

    Returns (params, velocities, loss, accuracy): the new parameters and velocities (updated in
    place where the backend can) and the loss and accuracy of the weights *before* the update,
    as 0-d device arrays."""
    loss, acc, grads = network.loss_and_grads(backend, params, X, labels, workspace=workspace)
    params, velocities = network.update(backend, params, velocities, grads, lr, momentum)
    return params, velocities, loss, acc


def epoch_step(backend, snapshot, params, velocities, X, labels, X_valid, labels_valid, lr, momentum):
    """One full-batch epoch on the device, with no host synchronisation inside: the weights copied
    into ``snapshot``'s buffers (for the divergence check), then :func:`gradient_step` on the whole
    training set and the validation metrics of the updated weights.

    Returns (snapshot, params, velocities, metrics): ``metrics`` is one device vector holding the
    training loss and accuracy of the weights before the update and, with a validation set, the
    validation loss and accuracy after it."""
    snapshot = copy_weights(backend, params, velocities, into=snapshot)
    params, velocities, loss, acc = gradient_step(
        backend, params, velocities, X, labels, lr, momentum, workspace="hidden"
    )
    metrics = [loss, acc]
    if X_valid is not None:
        metrics += network.loss_and_accuracy(backend, params, X_valid, labels_valid, workspace="hidden")
    return snapshot, params, velocities, _stack(backend, metrics)


def metrics_step(backend, params, X, labels, X_valid, labels_valid):
    """The loss and accuracy of ``params`` on (X, labels) and, if given, on the validation set,
    as one device vector."""
    metrics = list(network.loss_and_accuracy(backend, params, X, labels, workspace="hidden"))
    if X_valid is not None:
        metrics += network.loss_and_accuracy(backend, params, X_valid, labels_valid, workspace="hidden")
    return _stack(backend, metrics)


def _stack(backend, scalars):
    """0-d device arrays -> one device vector in the first one's dtype (one copy to the host later)."""
    xp = backend.xp
    dtype = scalars[0].dtype
    return xp.stack([xp.astype(xp.reshape(s, ()), dtype) for s in scalars])


def _to_host(backend, vector):
    """A device vector -> Python floats, in one device-to-host copy (which waits for the device)."""
    return [float(v) for v in backend.to_numpy(vector)]


def full_batch_epoch(state, X, labels, X_valid=None, labels_valid=None, *, lr, momentum):
    """One epoch of the assignment's loop on the whole training set, as the training loop runs it.

    Returns the host metrics: the training loss and accuracy of the weights *before* the update
    (this epoch's forward pass; the step copies those weights into ``state.snapshots.pending``)
    and, with a validation set, the loss and accuracy *after* the update, in one device-to-host
    copy."""
    step = state.backend.compiled(epoch_step, donate=UPDATED)
    snapshot, state.params, state.velocities, metrics = step(
        state.snapshots.pending, state.params, state.velocities, X, labels, X_valid, labels_valid, lr, momentum
    )
    state.snapshots.store(snapshot)
    return _to_host(state.backend, metrics)


def _metrics(state, X, labels, X_valid=None, labels_valid=None):
    """Host [loss, accuracy (, validation loss, accuracy)] of the current weights."""
    step = state.backend.compiled(metrics_step)
    return _to_host(state.backend, step(state.params, X, labels, X_valid, labels_valid))


# -------------------------------------------------------- the loop's record
class _Progress:
    """A tqdm bar over epochs when asked for; no-op otherwise."""

    def __init__(self, enabled, epochs, backend_name):
        self.bar = None
        if enabled:
            with warnings.catch_warnings():  # it warns when it picks the notebook bar, which is what we want
                warnings.simplefilter("ignore")
                # a notebook's widget bar in Jupyter, else the terminal's; lighter than tqdm.auto,
                # which also loads asyncio (5 MiB more resident memory for every command-line run)
                from tqdm.autonotebook import tqdm

            self.bar = tqdm(total=epochs, desc=f"training ({backend_name})", unit="epoch", leave=True)

    def update(self, history):
        if self.bar is None:
            return
        postfix: dict[str, str] = {}
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
    miss it.) The guard only decides and words the error; the loop restores the weights.
    """

    FACTOR = 1000.0

    def __init__(self, n_classes, lr):
        self.n_classes, self.lr = n_classes, lr
        self.limit = None
        self.last_accepted = None  # (epoch, loss); epoch 0 = the initial weights

    def accepts(self, epoch, loss):
        if self.limit is None and math.isfinite(loss):
            self.limit = self.FACTOR * max(loss, math.log(self.n_classes))
        if math.isfinite(loss) and loss <= self.limit:
            self.last_accepted = (epoch, loss)
            return True
        return False

    def error(self, epoch, loss, history):
        """The :class:`DivergenceError` for a rejected ``loss`` of the weights after ``epoch``."""
        why = (
            "not finite"
            if not math.isfinite(loss)
            else (f"above {self.limit:.3g}, {self.FACTOR:g} x the larger of the initial loss and log K")
        )
        if epoch == 0:
            where = f"the initial weights give a training loss of {loss:.6g} ({why})"
        else:
            where = (
                f"training diverged at epoch {epoch}: the training loss of its updated weights is {loss:.6g} ({why})"
            )
        if self.last_accepted is None:
            last = "no loss was accepted"
        else:
            when = "the initial weights" if self.last_accepted[0] == 0 else f"after epoch {self.last_accepted[0]}"
            last = f"the last accepted loss was {self.last_accepted[1]:.6g} ({when})"
        return DivergenceError(
            f"{where}, lr={self.lr:g}; {last}. The model keeps those weights; try a smaller learning rate (--lr)",
            epoch=epoch,
            lr=self.lr,
            last_accepted_loss=None if self.last_accepted is None else self.last_accepted[1],
            history=history,
        )


class _Recorder:
    """The check both loops share, then the record of the metrics.

    Every training loss checked is that of the weights last copied into ``state.snapshots``: a loss
    the guard accepts accepts that copy; one it rejects restores the last accepted weights, trims
    the history to them and raises the guard's :class:`DivergenceError`.
    """

    def __init__(self, state, lr, progress, epochs):
        self.state = state
        self.history = History()
        self.guard = _DivergenceGuard(state.params["W2"].shape[1], lr)
        self.bar = _Progress(progress, epochs, state.backend.name)

    def train_metrics(self, epoch, loss_acc):
        """Training (loss, accuracy) of the weights after ``epoch`` (0: the initial weights)."""
        loss, acc = loss_acc
        if epoch == 0 and math.isfinite(loss):
            self.history.initial_loss, self.history.initial_acc = loss, acc
        if not self.guard.accepts(epoch, loss):
            self.state.restore()
            self.history.truncate(max(epoch - 1, 0))
            raise self.guard.error(epoch, loss, self.history)
        self.state.snapshots.accept()
        if epoch >= 1:
            self.history.train_loss.append(loss)
            self.history.train_acc.append(acc)
            self.bar.update(self.history)

    def valid_metrics(self, loss_acc, seconds):
        """Validation (loss, accuracy), if any, and the wall-clock seconds of the epoch that ends."""
        if loss_acc:
            self.history.valid_loss.append(loss_acc[0])
            self.history.valid_acc.append(loss_acc[1])
        self.history.seconds.append(seconds)

    def final_train_metrics(self, epochs, loss_acc):
        """Training (loss, accuracy) of the final weights, which no step copied: copied here first."""
        self.state.snapshots.take(self.state.params, self.state.velocities)
        self.train_metrics(epochs, loss_acc)


# -------------------------------------------------------------- the loops
def _full_batch_loop(record, X, labels, X_valid, labels_valid, *, epochs, lr, momentum):
    """The assignment's loop: each epoch's forward pass also yields the previous weights' metrics."""
    state = record.state
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        host = full_batch_epoch(state, X, labels, X_valid, labels_valid, lr=lr, momentum=momentum)
        record.train_metrics(epoch - 1, host[:2])  # the weights before this update: after epoch - 1
        record.valid_metrics(host[2:], time.perf_counter() - start)
    start = time.perf_counter()  # the final weights' training metrics: one extra forward pass
    host = _metrics(state, X, labels)
    record.history.seconds[-1] += time.perf_counter() - start
    record.final_train_metrics(epochs, host)


def _mini_batch_loop(record, X, labels, X_valid, labels_valid, *, epochs, lr, momentum, batch_size, rng):
    """Shuffled mini-batches, the order drawn on the host; metrics after each epoch, checked
    (like the full-batch loop's) when the next epoch starts from those weights."""
    state, backend = record.state, record.state.backend
    N = X.shape[0]
    step = backend.compiled(gradient_step, donate=UPDATED, workspace="batch_hidden")
    host = _metrics(state, X, labels)  # the initial weights
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        state.snapshots.take(state.params, state.velocities)
        record.train_metrics(epoch - 1, host[:2])
        for batch in np.array_split(rng.permutation(N), math.ceil(N / batch_size)):
            rows = backend.asarray(batch)
            Xb, lb = backend.take_rows(X, rows), backend.take_rows(labels, rows)
            state.params, state.velocities, _, _ = step(state.params, state.velocities, Xb, lb, lr, momentum)
        host = _metrics(state, X, labels, X_valid, labels_valid)
        record.valid_metrics(host[2:], time.perf_counter() - start)
    record.final_train_metrics(epochs, host[:2])


def run_epochs(
    state: TrainingState,
    X,
    labels,
    X_valid=None,
    labels_valid=None,
    *,
    epochs: int,
    lr: float,
    momentum: float,
    batch_size: int | None = None,
    rng: np.random.Generator | None = None,
    progress: bool = False,
) -> History:
    """Train ``state`` in place for ``epochs`` epochs; returns the :class:`History`.

    X (N, D) and labels (N,) are backend arrays already on the device. ``batch_size=None`` is
    full-batch gradient descent (the assignment's); an int gives mini-batches in an order drawn on the
    host from ``rng`` (a ``numpy.random.Generator``). When the training loss diverges (see
    :class:`_DivergenceGuard`) the state is reset to the last accepted weights and
    :class:`DivergenceError` is raised, its ``history`` holding the accepted epochs.
    """
    record = _Recorder(state, lr, progress, epochs)
    record.history.train_size = int(X.shape[0])
    data = (X, labels, X_valid, labels_valid)
    try:
        if batch_size is None or batch_size >= X.shape[0]:
            _full_batch_loop(record, *data, epochs=epochs, lr=lr, momentum=momentum)
        else:
            _mini_batch_loop(record, *data, epochs=epochs, lr=lr, momentum=momentum, batch_size=batch_size, rng=rng)
    finally:
        record.bar.close()
        state.backend.release()
    return record.history
