"""Does torch.compile of the whole epoch step pay on this machine? (The torch backend keeps the
plain call unless it does.) Times fastmlp's epoch on torch with compile_step as a plain call and
as torch.compile(step), interleaved, N=6000, H=1000, products in float32 or bf16; prints the first
epoch of each (compilation included), the medians and the ratio.

    .venv/bin/python bench/torch_compile.py [--precision bf16] [--epochs 10] [--n 6000] [--hidden 1000]
"""

import argparse
import statistics
import time

from fastmlp.backends.torch_ import TorchBackend
from fastmlp.benchmark import EpochRunner


class CompiledTorch(TorchBackend):
    """The torch backend with each step through torch.compile."""

    def compile_step(self, step, *, donate=()):
        import torch

        return torch.compile(step, dynamic=False)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--n", type=int, default=6000)
    parser.add_argument("--hidden", type=int, default=1000)
    parser.add_argument("--precision", default="float32", help="float32, or bf16 on a CPU with native bf16")
    args = parser.parse_args()
    runners = {}
    for label, backend in (("plain call", TorchBackend()), ("torch.compile", CompiledTorch())):
        start = time.perf_counter()
        runner = EpochRunner(backend, n=args.n, n_valid=args.n // 3, hidden=args.hidden, precision=args.precision)
        try:
            runner.epoch()
        except Exception as exc:  # torch.compile refusing the step is a result too
            print(f"{label} failed: {type(exc).__name__}: {str(exc).strip().splitlines()[0]}")
            return
        print(f"{label}: first epoch (compilation included) {time.perf_counter() - start:.2f} s", flush=True)
        runner.epoch()
        runners[label] = runner
    times = {label: [] for label in runners}
    for _ in range(args.epochs):
        for label, runner in runners.items():
            times[label].append(runner.epoch())
    medians = {label: statistics.median(values) for label, values in times.items()}
    for label, median in medians.items():
        print(f"{label:<14} median {median:.4f} s/epoch  (min {min(times[label]):.4f})")
    print(f"torch.compile / plain: {medians['torch.compile'] / medians['plain call']:.3f}x")


if __name__ == "__main__":
    main()
