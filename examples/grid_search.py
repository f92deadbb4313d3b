"""A grid search over hidden units and learning rate on the notMNIST sample, on this machine's cores
(joblib's process workers) and on a Dask cluster (a LocalCluster of two single-threaded worker
processes standing in for a real one), with the table of both results.

    python examples/grid_search.py [--epochs 50] [--scheduler ADDRESS]

``--scheduler tcp://host:8786`` runs the second search on an existing Dask cluster instead.
Needs ``pip install "fastmlp[dask]"`` and the sample (FASTMLP_DATA, the cache, or a download).
"""

import argparse
import contextlib

import joblib
import numpy as np
from dask.distributed import Client, LocalCluster
from sklearn.model_selection import GridSearchCV

import fastmlp
from fastmlp.sklearn import MLPClassifier

GRID = {"hidden": [100, 300], "lr": [0.05, 0.1]}


def grid_search(X, y, epochs):
    """GridSearchCV over GRID with 3-fold cross-validation, every core (or Dask worker) busy."""
    return GridSearchCV(MLPClassifier(epochs=epochs, seed=0), GRID, cv=3, n_jobs=-1).fit(X, y)


def dask_client(scheduler):
    """A client of the cluster at ``scheduler``, or of a local two-process cluster."""
    if scheduler:
        return Client(scheduler)
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    return Client(cluster)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--scheduler", default=None, help="address of a running Dask scheduler")
    args = parser.parse_args()
    X, y = fastmlp.datasets.load_notmnist().train  # 6000 images, labels 0..9
    letters = np.array(list("ABCDEFGHIJ"))[y]  # any labels work: classes_ maps them

    local = grid_search(X, letters, args.epochs)  # joblib's process workers, n_jobs=-1
    with contextlib.closing(dask_client(args.scheduler)) as client, joblib.parallel_backend("dask"):
        on_dask = grid_search(X, letters, args.epochs)  # the same fits, run by the Dask workers
        workers = len(client.scheduler_info()["workers"])
    print_table(local, on_dask, workers)


def print_table(local, on_dask, workers):
    results, dask_results = local.cv_results_, on_dask.cv_results_
    print(f"{'hidden':>6} {'lr':>5}  {'local mean ± std':>17}  {f'Dask, {workers} workers':>17}  rank")
    for i, params in enumerate(results["params"]):
        cells = [f"{r['mean_test_score'][i]:.4f} ± {r['std_test_score'][i]:.4f}" for r in (results, dask_results)]
        print(
            f"{params['hidden']:>6} {params['lr']:>5}  {cells[0]:>17}  {cells[1]:>17}  {results['rank_test_score'][i]:>4}"
        )
    same = local.best_params_ == on_dask.best_params_ and np.array_equal(
        results["mean_test_score"], dask_results["mean_test_score"]
    )
    print(
        f"best: {local.best_params_} locally, {on_dask.best_params_} on Dask; "
        f"scores {'identical' if same else 'DIFFERENT'}"
    )


if __name__ == "__main__":
    main()
