"""Wall time of a 4-setting GridSearchCV of fastmlp.sklearn.MLPClassifier: n_jobs=1 against n_jobs=2.

Times, in this process, rounds of (n_jobs=1, n_jobs=2, n_jobs=2 with each fit forced to
``--oversubscribe`` threads) after one untimed search of each (which starts joblib's worker
processes and fills Numba's cache), and prints the median and range of each, the threads one fit
gets in each mode, and the machine. Each search is GridSearchCV's whole call: cross-validated fits
of the 4 settings in parallel, then the refit of the best in this process.

Like the ``fastmlp`` command, it sets ``OPENBLAS_THREAD_TIMEOUT=4`` (unless set) before NumPy loads,
so that idle BLAS threads sleep instead of spinning on the cores the other fits need.

    python bench/grid_search.py [--n 3000] [--hidden 100,300] [--lr 0.05,0.1] [--epochs 20] [--cv 3]
                                [--repeats 3] [--backend numpy] [--oversubscribe 2]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # before NumPy loads; joblib's workers inherit it

import numpy as np
from joblib import Parallel, delayed
from sklearn.model_selection import GridSearchCV

from fastmlp import _sysinfo, datasets
from fastmlp.backends import get_backend
from fastmlp.sklearn import MLPClassifier


def search(X, y, grid, *, n_jobs, cv, **settings):
    """One timed GridSearchCV: (seconds, the fitted search)."""
    start = time.perf_counter()
    fitted = GridSearchCV(MLPClassifier(**settings), grid, cv=cv, n_jobs=n_jobs).fit(X, y)
    return time.perf_counter() - start, fitted


def threads_per_fit(n_jobs, **settings):
    """The thread count a fit uses in a worker of an n_jobs search (the caller's process for 1)."""
    estimator = MLPClassifier(**settings)
    if n_jobs == 1:
        return estimator._thread_count()
    return Parallel(n_jobs=n_jobs)(delayed(estimator._thread_count)() for _ in range(n_jobs))[0]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="training rows of the sample to search on")
    parser.add_argument("--hidden", default="100,300")
    parser.add_argument("--lr", default="0.05,0.1")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--cv", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backend", default=None, help="a fastmlp backend (default: FASTMLP_BACKEND or numpy)")
    parser.add_argument(
        "--oversubscribe",
        type=int,
        default=os.cpu_count() or 2,
        help="threads forced on each fit in the third mode (default: every core)",
    )
    return parser.parse_args()


def main():
    args = parse_args()
    X, y = datasets.load_notmnist().train
    X, y = X[: args.n], y[: args.n]
    grid = {"hidden": [int(h) for h in args.hidden.split(",")], "lr": [float(v) for v in args.lr.split(",")]}
    common = {"epochs": args.epochs, "backend": args.backend}
    modes = {  # label -> (n_jobs, estimator settings)
        "n_jobs=1": (1, common),
        "n_jobs=2": (2, common),
        f"n_jobs=2, {args.oversubscribe} threads/fit": (2, {**common, "n_threads": args.oversubscribe}),
    }
    seconds = {label: [] for label in modes}
    best = {}
    for n_jobs, settings in modes.values():  # warm-up: worker processes, Numba's cache
        search(X, y, grid, n_jobs=n_jobs, cv=args.cv, **settings)
    for _ in range(args.repeats):
        for label, (n_jobs, settings) in modes.items():
            elapsed, fitted = search(X, y, grid, n_jobs=n_jobs, cv=args.cv, **settings)
            seconds[label].append(elapsed)
            best[label] = (fitted.best_params_, fitted.best_score_)
    report(args, grid, modes, seconds, best)


def report(args, grid, modes, seconds, best):
    machine, blas = _sysinfo.machine_info(), _sysinfo.blas_info()
    print(
        f"machine: {machine['cpu']}, {machine['cpu_count']} cores; Python {machine['python']}, "
        f"NumPy {machine['numpy_version']}, {blas['blas']} ({blas['blas_threads']} threads)"
    )
    print(
        f"GridSearchCV of MLPClassifier: {len(grid['hidden']) * len(grid['lr'])} settings {grid}, "
        f"cv={args.cv}, {args.n} rows of the sample, epochs={args.epochs}, "
        f"backend {get_backend(args.backend).name}; {args.repeats} rounds, median"
    )
    base = statistics.median(seconds["n_jobs=1"])
    print(f"{'mode':<26} {'threads/fit':>11} {'median s':>9} {'min-max s':>13} {'vs n_jobs=1':>11}")
    for label, (n_jobs, settings) in modes.items():
        times = seconds[label]
        median = statistics.median(times)
        threads = threads_per_fit(n_jobs, **settings)
        print(f"{label:<26} {threads:>11} {median:9.2f} {min(times):6.2f}-{max(times):<6.2f} {median / base:10.2f}x")
    params = {label: found for label, (found, _) in best.items()}
    scores = {label: score for label, (_, score) in best.items()}
    same = len({str(p) for p in params.values()}) == 1 and np.ptp(list(scores.values())) == 0
    print(
        f"best {params['n_jobs=1']} (cv accuracy {scores['n_jobs=1']:.4f}); "
        f"{'the same' if same else 'NOT the same'} in every mode"
    )


if __name__ == "__main__":
    main()
