"""Independent check of the floor ratio that ``fastmlp bench`` prints.

Runs ``fastmlp bench`` for one backend in this process, then times the same three products
(X @ W1, Xᵀ @ d1, X_valid @ W1) independently — plain NumPy arrays of their own, no fastmlp code —
and compares epoch / floor computed both ways. Exits with status 1 when they differ by more than
10%.

    python bench/check_floor.py [--backend numba] [--dtype float32] [--hidden 1000] [--epochs 10]
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fastmlp import cli


def independent_products(n, n_valid, hidden, dtype, repeats):
    import numpy as np

    rng = np.random.default_rng(1)
    X = rng.random((n, 784)).astype(dtype)
    Xv = rng.random((n_valid, 784)).astype(dtype)
    W1 = rng.normal(0, 0.05, (784, hidden)).astype(dtype)
    d1 = rng.normal(0, 1e-3, (n, hidden)).astype(dtype)
    times = []
    for _ in range(repeats + 2):
        start = time.perf_counter()
        X @ W1
        X.T @ d1
        Xv @ W1
        times.append(time.perf_counter() - start)
    return times[2:]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numba")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--hidden", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "bench.json"
        status = cli.main(
            [
                "bench",
                "--backends",
                args.backend,
                "--dtype",
                args.dtype,
                "--hidden",
                str(args.hidden),
                "--epochs",
                str(args.epochs),
                "--json",
                str(out),
            ]
        )
        if status:
            return status
        entry = json.loads(out.read_text())["configs"][0]["backends"][args.backend]
    floor = statistics.median(independent_products(6000, 2000, args.hidden, args.dtype, args.epochs))
    printed = entry["floor_ratio"]
    independent = entry["median_s"] / floor
    difference = abs(printed - independent) / independent
    print(
        f"epoch median {entry['median_s']:.4f} s; products: in bench {entry['floor_median_s']:.4f} s, "
        f"independent {floor:.4f} s"
    )
    print(
        f"floor ratio printed {printed:.3f}, independent {independent:.3f}: differ by {100 * difference:.1f}% "
        f"({'within' if difference <= 0.10 else 'NOT within'} 10%)"
    )
    return 0 if difference <= 0.10 else 1


if __name__ == "__main__":
    sys.exit(main())
