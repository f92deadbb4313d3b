"""Curves and charts as PNG files (matplotlib's object API: no pyplot, no global state)."""

from __future__ import annotations

from .io import atomic_write

__all__ = ["plot_curves", "save_figure"]


def _figure():
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.2), dpi=100, layout="tight")
    return figure, figure.subplots()


def save_figure(figure, path):
    """Write a matplotlib figure as PNG, atomically."""
    atomic_write(path, lambda handle: figure.savefig(handle, format="png"))


def plot_curves(history, loss_path, accuracy_path, *, title=""):
    """The seed's two plots: training vs validation loss, and accuracy, per epoch."""
    epochs = range(1, history.epochs + 1)
    for path, train, valid, label in (
        (loss_path, history.train_loss, history.valid_loss, "loss (average cross-entropy)"),
        (accuracy_path, history.train_acc, history.valid_acc, "accuracy"),
    ):
        figure, axes = _figure()
        axes.plot(epochs, train, label="training")
        if valid:
            axes.plot(epochs, valid[: history.epochs], label="validation")
        axes.set_xlabel("epoch")
        axes.set_ylabel(label)
        axes.set_title(title)
        axes.grid(alpha=0.3)
        axes.legend()
        save_figure(figure, path)
