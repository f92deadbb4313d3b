"""The ``fastmlp`` command: ``train``, ``bench`` and ``info``.

Errors print one line to stderr and exit with status 2; ``--debug`` shows the traceback.
This module imports NumPy only after parsing the arguments, so that the BLAS thread setting
below is in place before NumPy loads.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

__all__ = ["main", "build_parser"]

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (status 2), like every other fastmlp error."""

    def error(self, message):
        raise _UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


class _UsageError(Exception):
    pass


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _float(text):
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _list(text):
    return [part.strip() for part in text.split(",") if part.strip()]


def build_parser():
    from .backends import BACKEND_NAMES, DEFAULT, DEVICES, ENV_VAR  # imports no NumPy

    parser = _Parser(prog="fastmlp", description="Train and benchmark the two-layer notMNIST network.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    debug = dict(action="store_true", default=argparse.SUPPRESS, help="show tracebacks of errors")

    train = commands.add_parser("train", help="train on notMNIST and write curves, history and weights")
    train.add_argument("--data", help="notMNIST.npz, an idx images file, or a folder (default: $FASTMLP_DATA, then the cache)")
    train.add_argument("--epochs", type=int, default=200, help="epochs (default 200)")
    train.add_argument("--hidden", type=int, default=1000, help="hidden units H (default 1000)")
    train.add_argument("--lr", type=_float, default=0.1, help="learning rate (default 0.1)")
    train.add_argument("--momentum", type=_float, default=0.9, help="momentum in [0, 1) (default 0.9)")
    train.add_argument("--batch-size", type=int, default=None, help="mini-batch size (default: full batch)")
    train.add_argument("--backend", help=f"{', '.join(BACKEND_NAMES)} or auto; a device after a colon for "
                       f"{', '.join(DEVICES)} (e.g. torch:cuda, jax:cpu) (default: ${ENV_VAR}, then {DEFAULT})")
    train.add_argument("--dtype", default="float32", help="float32 (default) or float64")
    train.add_argument("--seed", type=int, default=0, help="seed of the initial weights (default 0)")
    train.add_argument("--out", help="output folder (default runs/<timestamp>)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--debug", **debug)

    bench = commands.add_parser("bench", help="time an epoch on every backend, side by side")
    bench.add_argument("--backends", type=_list, default=["all"], help="comma-separated names, or all (default)")
    bench.add_argument("--dtype", type=_list, default=["float32"], help="float32 (default), float64, or both comma-separated")
    bench.add_argument("--hidden", type=lambda t: [_positive_int(v) for v in _list(t)], default=[1000],
                       help="hidden units, comma-separated (default 1000)")
    bench.add_argument("--n", type=_positive_int, default=6000, help="training rows (default 6000)")
    bench.add_argument("--valid", type=_positive_int, default=2000, help="validation rows (default 2000)")
    bench.add_argument("--epochs", type=_positive_int, default=10, help="timed epochs per backend (default 10)")
    bench.add_argument("--warmup", type=_positive_int, default=2, help="warm-up epochs per backend (default 2)")
    bench.add_argument("--json", help="write every raw timing and the machine's facts here")
    bench.add_argument("--plot", help="write a bar chart of seconds per epoch here (PNG)")
    bench.add_argument("--sweep", action="store_true", help="also time epochs as N and H grow")
    bench.add_argument("--peers", action="store_true",
                       help="also time other libraries' own loops (bench/peers/ in a checkout) in the same rounds")
    bench.add_argument("--sweep-plot", default="bench-sweep.png", help="log-log PNG of the sweep (default bench-sweep.png)")
    bench.add_argument("--debug", **debug)

    info = commands.add_parser("info", help="versions, BLAS, threads, and which backends can run here")
    info.add_argument("--debug", **debug)
    return parser


def _requested_backends(args):
    """The backend names the command asks for (None: the environment's or the default)."""
    if args.command == "train":
        return [args.backend]
    return getattr(args, "backends", [])


def _print_error(exc, debug):
    if debug:
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    message = " ".join(str(exc).split()) or type(exc).__name__
    print(f"fastmlp: error: {message}", file=sys.stderr)


def _train(args):
    from . import datasets
    from .files import atomic_write
    from .mlp import MLP
    from .plotting import plot_curves
    from .validation import check_hyperparameters, check_positive_int

    check_positive_int(args.hidden, "--hidden")
    check_hyperparameters(epochs=args.epochs, lr=args.lr, momentum=args.momentum, batch_size=args.batch_size)
    model = MLP(784, args.hidden, 10, backend=args.backend, dtype=args.dtype, seed=args.seed)
    facts = model.backend_facts
    extra = ", ".join(f"{k}={v}" for k, v in facts.items() if k in ("blas", "blas_threads", "numba_threads"))
    print(f"backend: {model.backend} on {facts['device']} ({extra}), dtype {model.dtype}", flush=True)
    data = datasets.load_notmnist(args.data, dtype=args.dtype)
    print(f"data: {data.source} (train {len(data.train[1])}, valid {len(data.valid[1])}, "
          f"test {len(data.test[1])})", flush=True)
    history = model.fit(*data.train, *data.valid, epochs=args.epochs, lr=args.lr, momentum=args.momentum,
                        batch_size=args.batch_size, progress=not args.no_progress)
    test_loss, test_acc = model.evaluate(*data.test)
    print(f"Training Loss: {history.train_loss[-1]:.4f}")
    print(f"Training Accuracy: {history.train_acc[-1]:.4f}")
    print(f"Validation Loss: {history.valid_loss[-1]:.4f}")
    print(f"Validation Accuracy: {history.valid_acc[-1]:.4f}")
    print(f"Test Accuracy: {test_acc:.4f}")
    steady = f"{history.steady_seconds:.4f} s/epoch after it" if history.epochs > 1 else "no later epochs"
    print(f"time: first epoch {history.first_epoch_seconds:.3f} s (compile / cache load / warm-up), {steady}")
    out = args.out or os.path.join("runs", time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out, exist_ok=True)
    title = f"fastmlp {model.backend} {model.dtype}, H={args.hidden}, lr={args.lr}, momentum={args.momentum}"
    plot_curves(history, os.path.join(out, "loss.png"), os.path.join(out, "accuracy.png"), title=title)
    atomic_write(os.path.join(out, "history.csv"), lambda handle: handle.write(history.to_csv().encode()))
    model.save(os.path.join(out, "model.npz"))
    print(f"wrote {out}/: loss.png, accuracy.png, history.csv, model.npz")
    return 0


def _bench(args):
    from . import benchmark, plotting
    from .validation import check_dtype

    dtypes = [check_dtype(d) for d in args.dtype]
    names = args.backends
    if names != ["all"]:
        from .backends import resolve_name

        names = [resolve_name(name) for name in names]
    result = benchmark.compare(names, dtypes=dtypes, hiddens=args.hidden, n=args.n, n_valid=args.valid,
                               epochs=args.epochs, warmup=args.warmup, peers=args.peers)
    if args.sweep:
        result["sweep"] = benchmark.sweep(names, dtype=dtypes[0])
        plotting.plot_sweep(result["sweep"], args.sweep_plot)
        print(f"wrote {args.sweep_plot}")
    if args.json:
        benchmark.write_json(result, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        plotting.plot_bars(result, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _info(args):
    from . import __version__, _sysinfo
    from .backends import BACKEND_CHOICES, backend_status, describe_choice, get_backend

    facts = {"fastmlp": __version__, **_sysinfo.machine_info(), **_sysinfo.blas_info()}
    for key, value in facts.items():
        print(f"{key}: {value}")
    print(f"chosen by default: {describe_choice()}")
    print("backends:")
    for name in BACKEND_CHOICES:
        status = backend_status(name)
        line = f"  {name:<10} installed: {'yes' if status['installed'] else 'no':<3} usable: {'yes' if status['usable'] else 'no'}"
        if status["usable"]:
            described = get_backend(name).describe()
            details = {k: v for k, v in described.items() if k not in facts and k not in ("backend", "device")}
            line += f"  on {described['device']}"
            if details:
                line += "  (" + ", ".join(f"{k}={v}" for k, v in details.items()) + ")"
        else:
            line += f"  why: {status['reason']}"
        print(line)
    return 0


def main(argv=None):
    """Run the command line; returns the exit status."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        _print_error(exc, False)
        return EXIT_ERROR
    from .backends import prepare_threads  # imports no NumPy

    prepare_threads(_requested_backends(args))
    from .errors import FastMLPError

    try:
        return {"train": _train, "bench": _bench, "info": _info}[args.command](args)
    except KeyboardInterrupt:
        print("fastmlp: interrupted; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (FastMLPError, OSError, MemoryError) as exc:
        _print_error(exc, debug)
        return EXIT_ERROR
