"""200 seed epochs on several backends and precisions from the same weights: do they reach the same accuracy?

Trains the seed's configuration (H=1000, lr 0.1, momentum 0.9, full batch, float32, seed 0) on the
notMNIST sample on each backend in each precision it offers here, and prints the final validation
accuracy and loss, and each run's difference from the first one's. Needs the data (FASTMLP_DATA
or the cache).

    .venv/bin/python bench/seed_accuracy.py [--backends numpy,torch,jax] [--precision float32,bf16] [--epochs 200]
"""

import argparse
import time

import fastmlp
from fastmlp.backends import get_backend


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", default="numpy,torch,jax")
    parser.add_argument("--precision", default="float32", help="comma-separated, e.g. float32,bf16")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    data = fastmlp.datasets.load_notmnist(dtype=args.dtype)
    results = {}
    for name in args.backends.split(","):
        for precision in args.precision.split(","):
            if precision not in get_backend(name).precisions:
                print(f"{name}: precision {precision} not offered here, skipped")
                continue
            label = name if precision == "float32" else f"{name} {precision}"
            model = fastmlp.MLP(784, 1000, 10, backend=name, dtype=args.dtype, seed=0, precision=precision)
            start = time.perf_counter()
            history = model.fit(*data.train, *data.valid, epochs=args.epochs, lr=0.1, momentum=0.9)
            results[label] = (history.valid_acc[-1], history.valid_loss[-1], history.train_loss[-1])
            print(
                f"{label:<12} valid acc {results[label][0]:.4f}  valid loss {results[label][1]:.5f}  "
                f"train loss {results[label][2]:.5f}  ({time.perf_counter() - start:.0f} s, "
                f"{history.steady_seconds:.3f} s/epoch)",
                flush=True,
            )
    first = next(iter(results))
    for label, (acc, loss, _) in results.items():
        print(
            f"{label:<12} valid acc - {first}: {acc - results[first][0]:+.5f}   valid loss - {first}: "
            f"{loss - results[first][1]:+.6f}"
        )


if __name__ == "__main__":
    main()
