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
    """The reference assignment's two plots: training vs validation loss, and accuracy, per epoch."""
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


def _machine_line(result):
    """Where and when a benchmark ran, for a chart's title."""
    machine, load = result.get("machine", {}), result.get("load_average")
    return ", ".join(
        [
            f"{machine.get('cpu', 'unknown CPU')} ({machine.get('cpu_count')} cores)",
            f"BLAS {result.get('blas', {}).get('blas')}",
            *([f"load average {load[0]:.1f}"] if load else []),
            result.get("date", ""),
        ]
    )


def _colours(configs):
    """One colour per backend (and peer loop), the same in every panel."""
    names = dict.fromkeys(name for config in configs for name in config["backends"])
    return {name: f"C{i % 10}" for i, name in enumerate(names)}


def _legend(figure, colours, extra):
    from matplotlib.patches import Patch

    handles = [Patch(color=colour, label=name) for name, colour in colours.items()]
    handles += extra
    figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 5), fontsize="small")


def plot_bars(result, path):
    """Median seconds per epoch: one panel per precision, one group of bars per (dtype, N, H), the
    backends of each group sorted by time (fastest first), each bar labelled with its epoch/floor
    ratio and its floor (the three large products alone) marked across it; the legend beside the panels."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    configs = result["configs"]
    precisions = list(dict.fromkeys(c.get("precision", "float32") for c in configs))
    colours = _colours(configs)
    groups = [sum(c.get("precision", "float32") == p for c in configs) for p in precisions]
    width = sum(max(3.0, 0.2 + 0.55 * len(colours) * count) for count in groups)
    figure = Figure(figsize=(max(7.0, width), 5.0), dpi=100, layout="constrained")
    panels = figure.subplots(1, len(precisions), squeeze=False, width_ratios=groups)[0]
    for axes, precision in zip(panels, precisions, strict=True):
        _bar_panel(axes, [c for c in configs if c.get("precision", "float32") == precision], colours)
        axes.set_title(f"products in {precision}", fontsize="medium")
    floor = Line2D([], [], color="black", linewidth=2, label="floor: its 3 large products alone")
    _legend(figure, colours, [floor])
    figure.suptitle(
        f"fastmlp bench: seconds per epoch, each bar labelled epoch/floor\n{_machine_line(result)}", fontsize=9
    )
    save_figure(figure, path)


def _bar_panel(axes, configs, colours):
    """One group of bars per configuration, fastest backend first."""
    width = 0.8 / max(1, *(len(c["backends"]) for c in configs))
    for j, config in enumerate(configs):
        ranked = sorted(config["backends"].items(), key=lambda item: item[1]["median_s"])
        for i, (name, entry) in enumerate(ranked):
            x = j + (i - (len(ranked) - 1) / 2) * width
            bars = axes.bar(x, entry["median_s"], width=0.92 * width, color=colours[name])
            mark = "!" if entry.get("measurement_error") else ""
            axes.bar_label(bars, [f"{entry['floor_ratio']:.2f}x{mark}"], fontsize=7, padding=2)
            axes.plot([x - width / 2, x + width / 2], [entry["floor_median_s"]] * 2, color="black", linewidth=2)
    axes.set_xticks(range(len(configs)), [f"{c['dtype']}\nN={c['n']} H={c['hidden']}" for c in configs])
    axes.set_ylabel("seconds per epoch (median)")
    axes.margins(y=0.12)
    axes.grid(axis="y", alpha=0.3)


def _sweep_lines(points, varying, fixed, value):
    """{(backend, dtype, precision): [(x, entry)]} for the points where ``fixed`` == ``value``, by ``varying``."""
    lines: dict = {}
    for point in sorted((p for p in points if p[fixed] == value), key=lambda p: p[varying]):
        for name, entry in point["backends"].items():
            lines.setdefault((name, point["dtype"], point["precision"]), []).append((point[varying], entry))
    return lines


def plot_sweep(result, path):
    """The sweep of ``fastmlp bench --sweep``: seconds per epoch (top) and epoch/floor (bottom) as
    H grows at the table's N (left) and as N grows at the table's H (right); one line per backend,
    a line style per (dtype, precision) when several were timed."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    sweep = result["sweep"]
    settings = list(dict.fromkeys((p["dtype"], p["precision"]) for p in sweep["points"]))
    styles: dict = dict(zip(settings, ("-", "--", ":", "-."), strict=False))
    colours = _colours(sweep["points"])
    figure = Figure(figsize=(11.0, 8.0), dpi=100, layout="constrained")
    grid = figure.subplots(2, 2, sharex="col")
    for column, (varying, fixed, label) in enumerate(
        (
            ("hidden", "n", f"H, hidden units (N={sweep['n']})"),
            ("n", "hidden", f"N, training rows (H={sweep['hidden']})"),
        )
    ):
        for (name, *setting), line in _sweep_lines(sweep["points"], varying, fixed, sweep[fixed]).items():
            xs = [x for x, _ in line]
            style = {"color": colours[name], "linestyle": styles.get(tuple(setting), "-"), "marker": "o"}
            grid[0][column].plot(xs, [e["median_s"] for _, e in line], **style)
            grid[1][column].plot(xs, [e["floor_ratio"] for _, e in line], **style)
        _sweep_axes(grid[0][column], grid[1][column], label, sorted({p[varying] for p in sweep["points"]}))
    extra = [
        Line2D([], [], color="grey", linestyle=style, label=f"{d}, products in {p}") for (d, p), style in styles.items()
    ]
    _legend(figure, colours, extra if len(settings) > 1 else [])
    figure.suptitle(
        f"fastmlp bench --sweep: each point timed as the table is, with its floor\n{_machine_line(result)}", fontsize=9
    )
    save_figure(figure, path)


def _two_and_five(value, _):
    """A log axis's minor tick label: 0.2, 0.5, 2, 5, 20 ... plainly; the others unlabelled."""
    leading = value / 10 ** np.floor(np.log10(value))
    return f"{value:g}" if round(leading) in (2, 5) else ""


def _sweep_axes(time_axes, ratio_axes, label, sizes):
    """Log axes for the seconds, a band for the impossible ratios below the floor."""
    from matplotlib.ticker import FuncFormatter

    from .benchmark import FLOOR_RATIO_MIN

    time_axes.set_xscale("log")
    time_axes.set_yscale("log")
    time_axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    time_axes.yaxis.set_minor_formatter(FuncFormatter(_two_and_five))
    time_axes.set_ylabel("seconds per epoch (median)")
    time_axes.grid(alpha=0.3, which="both")
    low, high = ratio_axes.get_ylim()
    ratio_axes.set_ylim(min(low, 0.85), max(high, 1.3))
    ratio_axes.axhline(1.0, color="black", linewidth=0.8)
    ratio_axes.axhspan(0, FLOOR_RATIO_MIN, color="0.85", zorder=0)
    ratio_axes.text(
        0.01, 0.01, f"below {FLOOR_RATIO_MIN}: a measurement error", transform=ratio_axes.transAxes, fontsize=7
    )
    ratio_axes.set_ylabel("epoch / floor (its 3 large products alone)")
    ratio_axes.set_xlabel(label)
    ratio_axes.grid(alpha=0.3)
    ratio_axes.set_xticks(sizes, [str(size) for size in sizes])
    ratio_axes.minorticks_off()


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
