"""Whole-command cost per backend: wall time and peak resident memory of ``fastmlp train``.

Runs ``fastmlp train --backend B --epochs E`` for each backend in turn (A B A B ...), after one
untimed run each that fills Numba's cache, and reports the median wall time and the peak RSS of
each command (from the kernel's accounting of the finished child, ``os.wait4``).

    python bench/cold_start.py [--backends numpy,numba] [--epochs 1] [--repeats 5]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(backend, epochs, out):
    command = [
        sys.executable,
        "-m",
        "fastmlp",
        "train",
        "--backend",
        backend,
        "--epochs",
        str(epochs),
        "--out",
        out,
        "--overwrite",
        "--no-progress",
    ]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed: {process.stderr.read().decode()}")
    return seconds, usage.ru_maxrss / 1024  # KiB -> MiB


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="numpy,numba")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    backends = args.backends.split(",")
    results = {name: [] for name in backends}
    with tempfile.TemporaryDirectory() as folder:
        out = str(Path(folder) / "run")
        for name in backends:  # warm Numba's cache and the file system
            run(name, 1, out)
        for _ in range(args.repeats):
            for name in backends:
                results[name].append(run(name, args.epochs, out))
    print(f"fastmlp train --epochs {args.epochs}, {args.repeats} runs each (median wall, max peak RSS):")
    base = statistics.median(s for s, _ in results[backends[0]])
    for name, runs in results.items():
        wall = statistics.median(s for s, _ in runs)
        rss = max(m for _, m in runs)
        print(f"  {name:<6} {wall:6.2f} s  ({wall - base:+.2f} s vs {backends[0]})   peak RSS {rss:6.1f} MiB")


if __name__ == "__main__":
    main()
