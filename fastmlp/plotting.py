"""Every chart fastmlp draws, as PNG files (matplotlib's object API: no pyplot, no global state).

Training curves (:func:`plot_curves`) and the benchmark's charts (:func:`plot_bars`, :func:`plot_sweep`).
"""

from __future__ import annotations

from .files import atomic_write

__all__ = ["plot_curves", "plot_bars", "plot_sweep", "save_figure"]


def _figure(figsize=(6.4, 4.2)):
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, dpi=100, layout="tight")
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


def plot_bars(result, path):
    """Bar chart: median seconds per epoch by backend for every configuration, floor marked."""
    configs = result["configs"]
    figure, axes = _figure(figsize=(max(6.4, 2.2 * len(configs)), 4.2))
    names = list(dict.fromkeys(name for c in configs for name in c["backends"]))  # in the order timed
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        xs, medians, floors = [], [], []
        for j, config in enumerate(configs):
            if name in config["backends"]:
                xs.append(j + i * width)
                medians.append(config["backends"][name]["median_s"])
                floors.append(config["backends"][name]["floor_median_s"])
        axes.bar(xs, medians, width=width, label=name)
        axes.scatter(xs, floors, marker="_", s=300, color="black", zorder=3,
                     label="three large products alone" if i == 0 else None)
    axes.set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(configs))],
                    [f"{c['dtype']}{'/' + c['precision'] if c.get('precision', 'float32') != 'float32' else ''}"
                     f"\nN={c['n']} H={c['hidden']}" for c in configs])
    axes.set_ylabel("seconds per epoch (median)")
    axes.set_title("fastmlp: epoch time by backend")
    axes.legend()
    save_figure(figure, path)


def _sweep_lines(points):
    """(label, [points]) per backend and sweep: H grows at the usual N, N grows at the usual H."""
    for name in dict.fromkeys(p["backend"] for p in points):
        mine = [p for p in points if p["backend"] == name]
        for label, fixed in (("H grows", "n"), ("N grows", "hidden")):
            values = [p[fixed] for p in mine]
            base = max(set(values), key=values.count)  # the value most points share
            line = sorted((p for p in mine if p[fixed] == base), key=lambda p: p["flops"])
            yield f"{name}, {label} ({fixed}={base})", line


def plot_sweep(points, path):
    """Log-log plot of seconds per epoch against FLOPs per epoch, one line per backend and sweep."""
    figure, axes = _figure(figsize=(6.4, 4.8))
    for label, line in _sweep_lines(points):
        axes.plot([p["flops"] for p in line], [p["median_s"] for p in line], marker="o", label=label)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("FLOPs of matrix products per epoch")
    axes.set_ylabel("seconds per epoch (median)")
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize="small")
    save_figure(figure, path)
