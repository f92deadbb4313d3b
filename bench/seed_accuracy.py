"""200 seed epochs on several backends from the same weights: do they reach the same accuracy?

Trains the seed's configuration (H=1000, lr 0.1, momentum 0.9, full batch, float32, seed 0) on the
notMNIST sample on each backend and prints the final validation accuracy and loss, and each
backend's difference from the first one's. Needs the data (FASTMLP_DATA or the cache).

    .venv/bin/python bench/seed_accuracy.py [--backends numpy,torch,jax] [--epochs 200]
"""

import argparse
import time

import fastmlp


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", default="numpy,torch,jax")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    data = fastmlp.datasets.load_notmnist(dtype=args.dtype)
    results = {}
    for name in args.backends.split(","):
        model = fastmlp.MLP(784, 1000, 10, backend=name, dtype=args.dtype, seed=0)
        start = time.perf_counter()
        history = model.fit(*data.train, *data.valid, epochs=args.epochs, lr=0.1, momentum=0.9)
        results[name] = (history.valid_acc[-1], history.valid_loss[-1], history.train_loss[-1])
        print(
            f"{name:<8} valid acc {results[name][0]:.4f}  valid loss {results[name][1]:.5f}  "
            f"train loss {results[name][2]:.5f}  ({time.perf_counter() - start:.0f} s, "
            f"{history.steady_seconds:.3f} s/epoch)",
            flush=True,
        )
    first = next(iter(results))
    for name, (acc, loss, _) in results.items():
        print(
            f"{name:<8} valid acc - {first}: {acc - results[first][0]:+.5f}   valid loss - {first}: "
            f"{loss - results[first][1]:+.6f}"
        )


if __name__ == "__main__":
    main()
