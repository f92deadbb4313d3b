"""Every chart fastmlp draws, as PNG files (matplotlib's object API: no pyplot, no global state).

Training curves (:func:`plot_curves`), the benchmark's charts (:func:`plot_bars`, :func:`plot_sweep`)
and the evaluation's pictures (:func:`plot_confusion`, :func:`plot_mistakes`).
"""

from __future__ import annotations

import numpy as np

from .files import atomic_write

__all__ = [
    "plot_curves",
    "plot_bars",
    "plot_sweep",
    "plot_confusion",
    "plot_mistakes",
    "save_figure",
    "CONFUSION_SIZE",
    "MISTAKES_SIZE",
    "MISTAKES_ROWS",
    "MISTAKES_COLUMNS",
    "MISTAKES_SHOWN",
]

#: size in inches of confusion.png and mistakes.png (100 dots per inch)
CONFUSION_SIZE = (11.0, 5.2)
MISTAKES_SIZE = (8.6, 6.0)
MISTAKES_ROWS, MISTAKES_COLUMNS = 4, 8
#: how many images mistakes.png has room for
MISTAKES_SHOWN = MISTAKES_ROWS * MISTAKES_COLUMNS


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
        axes.scatter(
            xs,
            floors,
            marker="_",
            s=300,
            color="black",
            zorder=3,
            label="three large products alone" if i == 0 else None,
        )
    axes.set_xticks(
        [j + width * (len(names) - 1) / 2 for j in range(len(configs))],
        [
            f"{c['dtype']}{'/' + c['precision'] if c.get('precision', 'float32') != 'float32' else ''}"
            f"\nN={c['n']} H={c['hidden']}"
            for c in configs
        ],
    )
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


def _confusion_panel(axes, matrix, classes, title, fmt):
    """One heat map with a number in every cell, true class down, predicted across."""
    axes.imshow(matrix, cmap="Blues", vmin=0, vmax=max(matrix.max(), 1e-12))
    ticks = range(len(classes))
    axes.set_xticks(ticks, classes)
    axes.set_yticks(ticks, classes)
    axes.set_xlabel("predicted letter")
    axes.set_ylabel("true letter")
    axes.set_title(title)
    for (row, column), value in np.ndenumerate(matrix):
        light = value > 0.5 * matrix.max()
        axes.text(column, row, fmt(value), ha="center", va="center", fontsize=7, color="white" if light else "black")


def plot_confusion(confusion, classes, path, *, title=""):
    """Confusion matrix as two heat maps side by side: counts, and each row divided by its total."""
    from matplotlib.figure import Figure

    confusion = np.asarray(confusion)
    totals = confusion.sum(axis=1, keepdims=True)
    normalised = np.divide(confusion, totals, out=np.zeros(confusion.shape), where=totals > 0)
    figure = Figure(figsize=CONFUSION_SIZE, dpi=100, layout="constrained")
    counts_axes, rows_axes = figure.subplots(1, 2)
    _confusion_panel(counts_axes, confusion, classes, "counts", lambda v: f"{v:d}")
    _confusion_panel(
        rows_axes,
        normalised,
        classes,
        "fraction of each true letter (rows sum to 1)",
        lambda v: f"{v:.2f}".lstrip("0") if v < 1 else "1",
    )
    if title:
        figure.suptitle(title)
    save_figure(figure, path)


def plot_mistakes(images, true_names, predicted_names, probabilities, path, *, title=""):
    """A grid of images (light ink on dark, as in the data), each titled "true -> predicted probability".

    ``images`` (n, s, s) with values in [0, 1]; the grid has room for MISTAKES_ROWS rows of
    MISTAKES_COLUMNS (one picture of all the tiles: quicker to draw than one chart per image).
    """
    images = np.asarray(images, dtype=float)
    side = images.shape[-1] if len(images) else 28
    cell_width, cell_height = side + 4, side + 12  # a gap between tiles, room for the caption above
    canvas = np.full((MISTAKES_ROWS * cell_height, MISTAKES_COLUMNS * cell_width), np.nan)
    figure, axes = _figure(figsize=MISTAKES_SIZE)
    for index, image in enumerate(images[:MISTAKES_SHOWN]):
        row, column = divmod(index, MISTAKES_COLUMNS)
        top, left = row * cell_height + 10, column * cell_width + 2
        canvas[top : top + side, left : left + side] = image
        axes.text(
            left + side / 2,
            top - 2,
            f"{true_names[index]} \u2192 {predicted_names[index]} {probabilities[index]:.2f}",
            ha="center",
            va="bottom",
            fontsize=9,
        )
    axes.imshow(canvas, cmap=_grey_map(), vmin=0, vmax=1, interpolation="nearest")
    axes.set_axis_off()
    if len(images) == 0:
        axes.text(canvas.shape[1] / 2, canvas.shape[0] / 2, "no mistakes", ha="center", va="center", fontsize=14)
    heading = "most confidently wrong: true \u2192 predicted letter, its probability"
    axes.set_title(f"{title}\n{heading}" if title else heading, fontsize=10)
    save_figure(figure, path)


def _grey_map():
    """Grey scale, black = 0 and white = 1, with the gaps (NaN) white."""
    from matplotlib import colormaps

    return colormaps["gray"].with_extremes(bad="white")
