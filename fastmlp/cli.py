"""The ``fastmlp`` command: ``train``, ``evaluate``, ``predict``, ``export``, ``serve``, ``bench`` and ``info``.

Exit status: 0 success; 2 an error (one line on stderr, ``--debug`` shows the traceback), standard
output that is closed or cannot be written included; 3 a *failed run*: training finished but did
not learn (:meth:`fastmlp.train.History.failure`), said on a ``warning:`` line; its run folder is
written all the same; 130 interrupted (Ctrl-C), 143 terminated (SIGTERM), with a line saying what
was written.

Every destination (``--out``, ``--json``, ``--plot``, ``--sweep-plot``, ``OUT.onnx``) is checked
before any work and written by the one rule of :mod:`fastmlp.files`; ``train`` and ``evaluate``
write their run into a temporary folder beside ``--out`` and move it into place in one rename
(:func:`fastmlp.files.run_folder`).
This module imports NumPy only after parsing the arguments, so that the BLAS thread setting
below is in place before NumPy loads: what imports NumPy is imported inside the commands.

The module reads top-down: the tables, :func:`main`, the parser, the commands, then the pieces
they share.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any, NamedTuple

from . import __version__
from .backends import (  # imports no NumPy
    BACKEND_CHOICES,
    BACKEND_NAMES,
    DEFAULT,
    DEVICES,
    ENV_VAR,
    backend_status,
    describe_choice,
    get_backend,
    prepare_threads,
    resolve_name,
)
from .errors import FastMLPError, StorageError

__all__ = ["main", "build_parser"]

EXIT_ERROR = 2
#: training finished but did not learn (the run folder is still written)
EXIT_FAILED_RUN = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

#: API argument -> the flag that sets it, so that a message names what the user typed
_FLAGS = {
    "n_hidden": "--hidden",
    "epochs": "--epochs",
    "lr": "--lr",
    "momentum": "--momentum",
    "batch_size": "--batch-size",
    "dtype": "--dtype",
    "seed": "--seed",
    "precision": "--precision",
}

#: the files fastmlp train writes besides the evaluation's, as summary.txt lists them
TRAIN_FILES = {
    "loss.png": "training and validation loss (average cross-entropy) per epoch",
    "accuracy.png": "training and validation accuracy per epoch",
    "history.csv": "loss, accuracy and seconds of every epoch",
    "model.npz": "the trained weights and class names (fastmlp predict / evaluate / MLP.load read it)",
}


class _Outcome(NamedTuple):
    """What a command did: its exit status, the folder it wrote (None: none) with the files in it,
    and a warning for the last line."""

    status: int = 0
    folder: Path | None = None
    files: tuple[str, ...] = ()
    warning: str | None = None


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    streams = sys.stdout, sys.stderr
    out = _Output(sys.stdout, 1)
    sys.stdout, sys.stderr = out, _Output(sys.stderr, 2)
    try:
        if streams[0] is None:  # started with standard output closed (>&-): nowhere to print results
            _print_error(
                StorageError("standard output is closed; give it somewhere to go (a file, a pipe, or >/dev/null)"),
                False,
            )
            return EXIT_ERROR
        status = _main(argv)
        out.flush()
        if out.failure is None:
            return status
        _print_error(
            StorageError(
                f"cannot write to standard output ({out.failure}); the rest of what the command printed is lost"
            ),
            False,
        )
        return status or EXIT_ERROR
    finally:
        sys.stdout, sys.stderr = streams


def _main(argv):
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    parser.command_hint = next((arg for arg in argv if arg in _COMMANDS), None)
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        _print_error(exc, False)
        return EXIT_ERROR
    prepare_threads(_requested_backends(args))
    signal.signal(signal.SIGTERM, _raise_terminated)
    outcome = None
    try:
        outcome = _COMMANDS[args.command](args)
        return _finish(outcome)
    except KeyboardInterrupt as exc:
        return _interrupted(exc, outcome)
    except (FastMLPError, OSError, MemoryError) as exc:
        _print_error(exc, debug)
        return EXIT_ERROR


def _interrupted(exc, outcome):
    """Say what is on disk after Ctrl-C or SIGTERM (what was in place when the signal came, which
    :mod:`fastmlp.files` names in ``exc.written``); returns the exit status."""
    what, status = ("terminated", EXIT_TERMINATED) if isinstance(exc, Terminated) else ("interrupted", EXIT_INTERRUPTED)
    written = [str(path) for path in getattr(exc, "written", ())]
    if outcome is not None and outcome.folder is not None:
        written.append(str(outcome.folder))
    said = (
        f"{', '.join(written)} {'was' if len(written) == 1 else 'were'} written" if written else "nothing was written"
    )
    print(f"fastmlp: {what}; {said}", file=sys.stderr)
    return status


def _finish(outcome):
    """Say what the command wrote, then its warning; returns its exit status."""
    if outcome.folder is not None:
        print(f"wrote {outcome.folder}/: {', '.join(outcome.files)}")
    if outcome.warning:
        print(f"fastmlp: warning: {outcome.warning}", file=sys.stderr)
    return outcome.status


def _print_error(exc, debug):
    """The error as one line on stderr, an API argument named by its flag (with ``debug``, the
    traceback first)."""
    if debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    flag = _FLAGS.get(exc.parameter) if isinstance(exc, FastMLPError) and exc.parameter else None
    message = exc.naming(flag) if flag else str(exc)
    print(f"fastmlp: error: {' '.join(message.split()) or type(exc).__name__}", file=sys.stderr)


def _requested_backends(args):
    """The backend names the command asks for (None: the environment's or the default)."""
    if args.command in ("train", "evaluate", "predict", "serve"):
        return [args.backend]
    return getattr(args, "backends", [])


# ------------------------------------------------------------------ parser
def build_parser():
    parser = _Parser(prog="fastmlp", description="Train, evaluate, use and benchmark the two-layer notMNIST network.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument("--version", action="version", version=f"fastmlp {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    debug: dict[str, Any] = dict(action="store_true", default=argparse.SUPPRESS, help="show tracebacks of errors")
    _add_train_parser(commands, debug)
    _add_evaluate_parser(commands, debug)
    _add_predict_parser(commands, debug)
    _add_export_parser(commands, debug)
    _add_serve_parser(commands, debug)
    _add_bench_parser(commands, debug)
    info = commands.add_parser("info", help="versions, BLAS, threads, and which backends can run here")
    info.add_argument("--debug", **debug)
    return parser


def _add_train_parser(commands, debug):
    """``fastmlp train [...]``."""
    train = commands.add_parser(
        "train", help="train on notMNIST; write curves, history, weights and the test evaluation"
    )
    train.add_argument(
        "--data",
        help="notMNIST.npz, an idx images file, or a folder (default: $FASTMLP_DATA, then the sample shipped with fastmlp)",
    )
    # the settings are only parsed here; the API checks their values (and the errors name these flags)
    train.add_argument("--epochs", type=_int, default=200, help="epochs (default 200)")
    train.add_argument("--hidden", type=_int, default=1000, help="hidden units H (default 1000)")
    train.add_argument("--lr", type=_float, default=0.1, help="learning rate (default 0.1)")
    train.add_argument("--momentum", type=_float, default=0.9, help="momentum in [0, 1) (default 0.9)")
    train.add_argument("--batch-size", type=_int, default=None, help="mini-batch size (default: full batch)")
    with_devices = ", ".join(f"{name}:{device}" for name, devices in DEVICES.items() for device in devices)
    train.add_argument(
        "--backend",
        help=f"{', '.join(BACKEND_NAMES)} or auto; with a device: {with_devices} (default: ${ENV_VAR}, then {DEFAULT})",
    )
    train.add_argument("--dtype", default="float32", help="float32 (default) or float64")
    train.add_argument(
        "--precision",
        default="float32",
        help="products in float32 (default: the dtype's own precision), or tf32 or bf16 where the "
        "backend offers them (fastmlp info)",
    )
    train.add_argument("--seed", type=_int, default=0, help="seed of the initial weights (default 0)")
    train.add_argument("--out", help="output folder, must not hold files yet (default runs/<timestamp>-<random>)")
    train.add_argument("--overwrite", action="store_true", help="replace an existing --out folder as a whole")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--debug", **debug)


def _add_evaluate_parser(commands, debug):
    """``fastmlp evaluate MODEL [--data PATH] [--out DIR]``."""
    evaluate = commands.add_parser("evaluate", help="a weights file on the test split: per-letter scores and pictures")
    evaluate.add_argument("model", metavar="MODEL", help="weights file written by fastmlp train (model.npz)")
    evaluate.add_argument("--data", help="as for train (default: $FASTMLP_DATA, then the sample shipped with fastmlp)")
    evaluate.add_argument("--backend", help="backend to run the model on (default as for train)")
    evaluate.add_argument(
        "--out",
        help="folder for confusion.png, mistakes.png, summary.txt/.json, must not hold "
        "files yet (default runs/<timestamp>-<random>-evaluate)",
    )
    evaluate.add_argument("--overwrite", action="store_true", help="replace an existing --out folder as a whole")
    evaluate.add_argument("--debug", **debug)


def _add_predict_parser(commands, debug):
    """``fastmlp predict MODEL IMAGE... [--json] [--ink auto|light|dark]``."""
    predict = commands.add_parser("predict", help="the letter in each image file (PNG, JPEG, ...), idx or .npz file")
    predict.add_argument("model", metavar="MODEL", help="weights file written by fastmlp train (model.npz)")
    predict.add_argument("images", nargs="+", metavar="IMAGE", help="image files, idx images files or .npz files")
    predict.add_argument(
        "--ink",
        choices=("auto", "light", "dark"),
        default="auto",
        help="is the letter lighter or darker than its background? (default auto: read from the image's border; "
        "pass dark for a dark letter touching the frame; without contrast, white is a letter filling the frame "
        "and black or grey is blank)",
    )
    predict.add_argument("--top", type=_positive_int, default=3, help="classes shown per image (default 3)")
    predict.add_argument("--json", action="store_true", help="one JSON object per line")
    predict.add_argument("--backend", help="backend to run the model on (default as for train)")
    predict.add_argument("--debug", **debug)


def _add_export_parser(commands, debug):
    """``fastmlp export MODEL OUT.onnx [--overwrite]``."""
    export = commands.add_parser("export", help="write a weights file as an ONNX model, for ONNX Runtime and others")
    export.add_argument("model", metavar="MODEL", help="weights file written by fastmlp train (model.npz)")
    export.add_argument("out", metavar="OUT.onnx", help='the ONNX file to write (needs: pip install "fastmlp[onnx]")')
    export.add_argument("--overwrite", action="store_true", help="replace OUT.onnx if it exists")
    export.add_argument("--debug", **debug)


def _add_serve_parser(commands, debug):
    """``fastmlp serve MODEL [--host H] [--port P] [--backend B]``."""
    serve = commands.add_parser(
        "serve", help="a page to draw a letter on and watch the network read it, and a JSON API"
    )
    serve.add_argument("model", metavar="MODEL", help="weights file written by fastmlp train (model.npz)")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: all)"
    )
    serve.add_argument("--port", type=_int, default=8000, help="port (default 8000; 0: any free one)")
    serve.add_argument("--backend", help="backend to run the model on (default as for train)")
    serve.add_argument("--debug", **debug)


def _add_bench_parser(commands, debug):
    """``fastmlp bench [...]``."""
    bench = commands.add_parser("bench", help="time an epoch on every backend, side by side")
    bench.add_argument("--backends", type=_list, default=["all"], help="comma-separated names, or all (default)")
    bench.add_argument(
        "--dtype", type=_list, default=["float32"], help="float32 (default), float64, or both comma-separated"
    )
    bench.add_argument(
        "--precision",
        type=_list,
        default=["float32"],
        help="float32 (default), tf32, bf16, or several comma-separated (rows side by side)",
    )
    bench.add_argument(
        "--hidden",
        type=lambda t: [_positive_int(v) for v in _list(t)],
        default=[1000],
        help="hidden units, comma-separated (default 1000)",
    )
    bench.add_argument("--n", type=_positive_int, default=6000, help="training rows (default 6000)")
    bench.add_argument("--valid", type=_positive_int, default=2000, help="validation rows (default 2000)")
    bench.add_argument("--epochs", type=_positive_int, default=10, help="timed epochs per backend (default 10)")
    bench.add_argument("--warmup", type=_positive_int, default=2, help="warm-up epochs per backend (default 2)")
    bench.add_argument("--json", help="write every raw timing and the machine's facts here")
    bench.add_argument("--plot", help="write a bar chart of seconds per epoch here (PNG)")
    bench.add_argument(
        "--sweep",
        action="store_true",
        help="also time epochs and floors as H grows (250-4000) and as N grows (1000-10000), as the table is timed",
    )
    bench.add_argument(
        "--peers",
        action="store_true",
        help="also time other libraries' own loops (bench/peers/ in a checkout) in the same rounds",
    )
    bench.add_argument(
        "--sweep-plot",
        default="bench-sweep.png",
        help="PNG of the sweep: seconds per epoch and epoch/floor against H and N (default bench-sweep.png)",
    )
    bench.add_argument("--debug", **debug)


def _parsed(convert, what):
    """An argparse type: ``convert(text)``, or an error saying what was expected."""

    def parse(text):
        try:
            return convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None

    return parse


_int = _parsed(int, "an integer")
_float = _parsed(float, "a number")


def _positive_int(text):
    value = _parsed(int, "an integer >= 1")(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _list(text):
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"expected one or more comma-separated values, got {text!r}")
    return parts


# ---------------------------------------------------------------- commands
def _train(args):
    from . import datasets, evaluation
    from .arguments import check_hyperparameters
    from .files import check_destination, default_run_name
    from .mlp import MLP

    datasets.offline()  # an invalid FASTMLP_OFFLINE is an error before any work, download or not
    destination = check_destination(args.out or default_run_name(), overwrite=args.overwrite, inputs=_inputs(args))
    check_hyperparameters(epochs=args.epochs, lr=args.lr, momentum=args.momentum, batch_size=args.batch_size)
    model = MLP(784, args.hidden, 10, backend=args.backend, dtype=args.dtype, seed=args.seed, precision=args.precision)
    facts = model.backend_facts
    extra = ", ".join(f"{k}={v}" for k, v in facts.items() if k == "blas" or k.endswith("threads"))
    print(
        f"backend: {model.backend} on {facts['device']} ({extra}), dtype {model.dtype}, precision {model.precision}",
        flush=True,
    )
    data = datasets.load_notmnist(args.data, dtype=args.dtype, n_features=model.n_in)
    print(
        f"data: {data.source} (train {len(data.train[1])}, valid {len(data.valid[1])}, test {len(data.test[1])})",
        flush=True,
    )
    history = model.fit(
        *data.train,
        *data.valid,
        epochs=args.epochs,
        lr=args.lr,
        momentum=args.momentum,
        batch_size=args.batch_size,
        progress=not args.no_progress,
    )
    failure = _failure(history, data.train[1])
    # the splits are views of one array: with copies of the test split, the rest of the data is freed
    # before the report's pictures are drawn (fastmlp train's peak memory)
    test_images, test_labels = (array.copy() for array in data.test)
    del data
    report = evaluation.report(model, test_images, test_labels)  # evaluated once: the test accuracy and the table
    _print_results(history, report.accuracy)
    _print_test_table(report)
    files = _write_run(destination, args, model, history, report, test_images)
    return _Outcome(EXIT_FAILED_RUN if failure else 0, destination, files, failure)


def _print_results(history, test_acc):
    print(f"Training Loss: {history.train_loss[-1]:.4f}")
    print(f"Training Accuracy: {history.train_acc[-1]:.4f}")
    print(f"Validation Loss: {history.valid_loss[-1]:.4f}")
    print(f"Validation Accuracy: {history.valid_acc[-1]:.4f}")
    print(f"Test Accuracy: {test_acc:.4f}")
    steady = f"{history.steady_seconds:.4f} s/epoch after it" if history.epochs > 1 else "no later epochs"
    print(f"time: first epoch {history.first_epoch_seconds:.3f} s (compile / cache load / warm-up), {steady}")


def _write_run(destination, args, model, history, report, test_images):
    """The run folder: curves, history, weights and the test evaluation, moved into place whole;
    returns the names of its files."""
    from .evaluation import write_report
    from .files import run_folder, write_text
    from .plotting import plot_curves

    title = f"fastmlp {model.backend} {model.dtype}, H={args.hidden}, lr={args.lr}, momentum={args.momentum}"
    with run_folder(destination, overwrite=args.overwrite, inputs=_inputs(args)) as folder:
        plot_curves(history, folder / "loss.png", folder / "accuracy.png", title=title)
        write_text(folder / "history.csv", history.to_csv())
        model.save(folder / "model.npz")
        written = write_report(report, folder, images=test_images, files=TRAIN_FILES, title=title)
    return (*TRAIN_FILES, *written)


def _failure(history, train_labels):
    """The warning of a run that did not learn (:meth:`History.failure`, exit status
    EXIT_FAILED_RUN), or None."""
    import numpy as np

    chance = float(np.bincount(train_labels).max() / len(train_labels))
    reason = history.failure(chance)
    if reason is None:
        return None
    hint = "try a larger --lr or more --epochs" if history.loss_fell else "try a smaller --lr"
    return f"the run failed to learn: {reason}; {hint} (exit status {EXIT_FAILED_RUN})"


def _inputs(args):
    """{what: path} of what a command reads, which its --out may never replace: the data (as
    --data, FASTMLP_DATA or the shipped sample names it) and the model it reads, if any."""
    from . import datasets

    data = args.data or os.environ.get(datasets.DATA_ENV) or datasets.EMBEDDED_SAMPLE
    model = {"the weights file this command reads": args.model} if getattr(args, "model", None) else {}
    return {**model, "the data": data}


def _evaluate(args):
    from . import datasets, evaluation
    from .files import check_destination, default_run_name, printable, run_folder
    from .mlp import MLP

    datasets.offline()
    inputs = _inputs(args)
    destination = check_destination(args.out or default_run_name("-evaluate"), overwrite=args.overwrite, inputs=inputs)
    model = MLP.load(args.model, backend=args.backend)
    data = datasets.load_notmnist(args.data, dtype=model.dtype, n_features=model.n_in)
    print(
        f"model: {args.model} ({model.n_in} -> {model.n_hidden} -> {model.n_out}, {model.dtype}, "
        f"{model.backend}); data: {data.source}"
    )
    report = evaluation.report(model, *data.test)
    _print_test_table(report)
    print(f"Test Loss: {report.loss:.4f}")
    print(f"Test Accuracy: {report.accuracy:.4f}")
    title = printable(f"fastmlp evaluate {Path(args.model).name}, test split of {Path(data.source).name}")
    with run_folder(destination, overwrite=args.overwrite, inputs=inputs) as folder:
        written = evaluation.write_report(report, folder, images=data.test[0], title=title)
    return _Outcome(0, destination, tuple(written))


def _print_test_table(report):
    """The per-letter table of the test split, as train and evaluate print it."""
    print(f"test split, {report.n} images:")
    print(report.table())


def _predict(args):
    from dataclasses import replace

    from .files import printable
    from .mlp import MLP

    model = MLP.load(args.model, backend=args.backend)
    predictions = model.predict_images(args.images, ink=args.ink, top=args.top)  # every file read first
    shown = (replace(prediction, source=printable(prediction.source)) for prediction in predictions)  # not UTF-8: \xNN
    print("\n".join(json.dumps(p.to_dict()) if args.json else p.line() for p in shown))
    return _Outcome()


def _export(args):
    from .backends import DEFAULT
    from .export import OPSET
    from .files import check_file_destination
    from .mlp import MLP

    inputs = {"the weights file this command reads": args.model}
    check_file_destination(args.out, name="ONNX file", overwrite=args.overwrite, inputs=inputs)
    model = MLP.load(args.model, backend=DEFAULT)  # the weights are only read: the default backend, on the host
    model.to_onnx(args.out, overwrite=args.overwrite)
    print(
        f"wrote {args.out}: ONNX opset {OPSET}, {model.n_in} -> {model.n_hidden} -> {model.n_out} in {model.dtype}; "
        f"input images (N x {model.n_in}, grey level / 255), outputs probabilities (N x {model.n_out}) and label (N)"
    )
    return _Outcome()


def _serve(args):
    from .serve import serve

    return _Outcome(serve(args.model, host=args.host, port=args.port, backend=args.backend))


def _bench_settings(args):
    """The benchmark's settings, checked before anything is timed: (backend names, dtypes)."""
    from .arguments import check_dtype, check_precision_name
    from .files import check_file_destination

    for flag, path in (("--json", args.json), ("--plot", args.plot), ("--sweep-plot", args.sweep and args.sweep_plot)):
        if path:
            check_file_destination(path, name=flag)  # before the benchmark, not after
    dtypes = [check_dtype(d) for d in args.dtype]
    for precision in args.precision:
        check_precision_name(precision)
    if args.backends == ["all"]:
        return args.backends, dtypes
    return [resolve_name(name) for name in args.backends], dtypes


def _bench(args):
    from . import benchmark, plotting

    names, dtypes = _bench_settings(args)
    result = benchmark.compare(
        names,
        dtypes=dtypes,
        precisions=args.precision,
        hiddens=args.hidden,
        n=args.n,
        n_valid=args.valid,
        epochs=args.epochs,
        warmup=args.warmup,
        peers=args.peers,
        sweep=args.sweep,
    )
    outputs = (
        (args.sweep and args.sweep_plot, plotting.plot_sweep),
        (args.json, benchmark.write_json),
        (args.plot, plotting.plot_bars),
    )
    written = []
    try:
        for path, write in outputs:
            if path:
                write(result, path)
                written.append(path)
                print(f"wrote {path}")
    except KeyboardInterrupt as exc:
        exc.written = (*written, *getattr(exc, "written", ()))  # type: ignore[attr-defined]
        raise
    return _Outcome()


def _backend_line(name, status, facts):
    """One line of ``fastmlp info``: installed, usable, and the backend's own facts or why not."""
    line = f"  {name:<10} installed: {'yes' if status['installed'] else 'no':<3} usable: {'yes' if status['usable'] else 'no'}"
    if not status["usable"]:
        return line + f"  why: {status['reason']}"
    described = get_backend(name).describe()
    details = {k: v for k, v in described.items() if k not in facts and k not in ("backend", "device")}
    line += f"  on {described['device']}"
    return line + ("  (" + ", ".join(f"{k}={v}" for k, v in details.items()) + ")" if details else "")


def _print_choice(choice):
    """The default backend's line (saying why when it cannot run here); an invalid FASTMLP_BACKEND
    also gets a warning on stderr."""
    print(f"chosen by default: {choice}")
    if choice.startswith("invalid"):
        print(f"fastmlp: warning: {choice.removeprefix('invalid: ')}", file=sys.stderr)


def _info(args):
    from . import _sysinfo

    facts = {"fastmlp": __version__, **_sysinfo.machine_info(), **_sysinfo.blas_info()}
    for key, value in facts.items():
        print(f"{key}: {value}")
    _print_choice(describe_choice())
    print("backends:")
    for name in BACKEND_CHOICES:
        print(_backend_line(name, backend_status(name), facts))
    return _Outcome()


_COMMANDS = {
    "train": _train,
    "evaluate": _evaluate,
    "predict": _predict,
    "export": _export,
    "serve": _serve,
    "bench": _bench,
    "info": _info,
}


# ------------------------------------------------------- shared pieces
class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that clean-up runs as for Ctrl-C."""


def _raise_terminated(signum, frame):
    raise Terminated()


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (status 2), like every other fastmlp error."""

    #: the sub-command named on the command line, so that the main parser's errors point at its help
    command_hint = None

    def error(self, message):
        prog = f"{self.prog} {self.command_hint}" if self.command_hint and " " not in self.prog else self.prog
        raise _UsageError(f"{message} (see {prog} --help)")


class _UsageError(Exception):
    pass


class _Output:
    """A standard stream that never fails the command: it stops writing once its reader has gone
    (as in ``fastmlp train | head -1``) or a write fails (a full disk, ``/dev/full``), and the
    command still finishes its work and writes its run folder. A failure other than a gone reader
    is kept in :attr:`failure` for :func:`main` to report. Text the stream cannot encode (a file
    name that is not UTF-8) is written with backslash escapes. A closed stream (None) writes
    nothing, and its descriptor is pointed at the null device, so that no file opened later takes
    its number."""

    def __init__(self, stream, descriptor):
        self.stream = stream
        self.stopped = stream is None
        self.failure = None  # why writing stopped, when not because the reader went away
        if stream is None:
            self._to_null(descriptor)

    def write(self, text):
        if not self.stopped:
            try:
                return self.stream.write(text)
            except UnicodeEncodeError:
                return self.stream.write(_escaped(text, self.stream.encoding))
            except OSError as exc:
                self._stop(exc)
        return len(text)

    def flush(self):
        if not self.stopped:
            try:
                self.stream.flush()
            except OSError as exc:
                self._stop(exc)

    def _stop(self, exc):
        self.stopped = True
        if not isinstance(exc, BrokenPipeError):
            self.failure = exc.strerror or str(exc)
        with contextlib.suppress(OSError, ValueError):  # Python's own last flush at exit then has nowhere to fail
            self._to_null(self.stream.fileno())

    @staticmethod
    def _to_null(descriptor):
        with contextlib.suppress(OSError):
            null = os.open(os.devnull, os.O_WRONLY)  # a closed descriptor's own number, when it is free
            if null != descriptor:
                os.dup2(null, descriptor)
                os.close(null)

    def __getattr__(self, name):
        return getattr(self.stream, name)


def _escaped(text, encoding):
    """``text`` as the encoding can carry it: a file name's bytes that are not UTF-8 as ``\\xNN``,
    other characters the encoding lacks as backslash escapes."""
    from .files import printable

    return printable(text).encode(encoding or "utf-8", "backslashreplace").decode(encoding or "utf-8")
