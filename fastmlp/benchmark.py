"""Epoch timing across backends, in one process, for ``fastmlp bench`` and ``bench/``.

What one timed epoch is: exactly the training loop's full-batch epoch
(:func:`fastmlp.train.full_batch_epoch`: forward, backward, update, validation metrics, the one
device-to-host copy) on data already on the device, the device synchronised before the clock is
read. The *floor* is the same epoch's three large products alone (X @ W1, Xᵀ @ d1, X_valid @ W1)
on the same backend, timed in the same rounds; the floor ratio is the median over rounds of
epoch / products. Backends are interleaved round by round
(A B C A B C ...) after warm-up epochs, so machine noise falls on all of them alike.

Each backend times its own work (``Backend.time_device_work``): the CPU backends by the wall
clock between two synchronisations, a CUDA backend by CUDA events around the work on the device,
so that the host thread's wait for a core (BLAS threads of a CPU round still spinning) is not
charged to the GPU. Each precision (float32, tf32, bf16) is its own configuration, and its floor
is the three products in that precision; a backend that does not offer a precision is skipped
for it, with the reason. With ``peers``, the other libraries' own loops of the same epoch
(``bench/peers/``, outside the package) are timed in the same rounds.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import statistics
import time
from pathlib import Path

import numpy as np

from . import _sysinfo, model, train
from .backends import ALL_CHOICES, BASELINE, GPU_CHOICES, backend_status, configure, get_backend
from .errors import BackendError, InvalidInputError
from .files import write_text
from .memory import ensure_fits
from .optim import INITIAL_VELOCITY

__all__ = ["EpochRunner", "epoch_flops", "compare", "load_peers", "sweep", "format_table", "write_json", "PEERS"]

N_IN, N_OUT = 784, 10
#: the other libraries' own loops, beside the package in a checkout of the repository
PEERS = Path(__file__).resolve().parent.parent / "bench" / "peers"


def epoch_flops(n, n_valid, hidden, n_in=N_IN, n_out=N_OUT):
    """Floating-point operations of one epoch's matrix products (2 per multiply-add)."""
    large = 2 * n * n_in * hidden * 2 + 2 * n_valid * n_in * hidden  # X@W1, Xᵀ@d1, X_valid@W1
    small = 2 * n * hidden * n_out * 3 + 2 * n_valid * hidden * n_out  # A1@W2, A1ᵀ@d2, d2@W2ᵀ, valid
    return large + small


class EpochRunner:
    """One backend, one configuration: data and parameters on the device, ready to time."""

    def __init__(self, backend, *, n=6000, n_valid=2000, hidden=1000, dtype="float32", seed=0, precision="float32"):
        self.backend = backend if not isinstance(backend, str) else get_backend(backend)
        configure(self.backend, dtype=dtype, precision=precision, cuda_graphs=None)  # raises if not offered
        self.n, self.n_valid, self.hidden, self.dtype, self.precision = n, n_valid, hidden, dtype, precision
        rng = np.random.default_rng(seed)
        to_device = self.backend.asarray
        self.X = to_device(rng.random((n, N_IN)), dtype)  # N×D in [0, 1)
        self.labels = to_device(rng.integers(0, N_OUT, n))  # N
        self.X_valid = to_device(rng.random((n_valid, N_IN)), dtype)  # Nv×D
        self.labels_valid = to_device(rng.integers(0, N_OUT, n_valid))  # Nv
        params = {k: to_device(v) for k, v in model.init_params(N_IN, hidden, N_OUT, seed=seed, dtype=dtype).items()}
        velocities = {k: self.backend.full(v.shape, INITIAL_VELOCITY, v.dtype) for k, v in params.items()}
        self.state = train.TrainingState(self.backend, params, velocities)
        self._spare = None
        self._d1 = to_device(rng.standard_normal((n, hidden)) * 1e-3, dtype)  # N×H stand-in for d1
        self.backend.hold_constant(self.X, self.X_valid)  # as fit promises: the data are never written

    def epoch(self):
        """Seconds of one full-batch training epoch, validation metrics included."""

        def work():
            self._spare, _ = train.full_batch_epoch(
                self.state,
                self.X,
                self.labels,
                self.X_valid,
                self.labels_valid,
                lr=1e-3,
                momentum=0.9,
                snapshot_into=self._spare,
            )
            return self.state.params, self.state.velocities

        return self.backend.time_device_work(work)

    def describe(self):
        return {**self.backend.describe(), "timer": self.backend.timer}

    def release(self):
        self.backend.release()

    def products(self):
        """Seconds of the epoch's three large products alone, into the epoch's own buffers."""
        backend, W1 = self.backend, self.state.params["W1"]

        def work():
            return (
                backend.matmul(self.X, W1, workspace="train_hidden"),  # N×H
                backend.matmul(self.X.T, self._d1, workspace="dW1"),  # D×H
                backend.matmul(self.X_valid, W1, workspace="valid_hidden"),
            )  # Nv×H

        return backend.time_device_work(work)


def _choose_backends(names):
    """[(name, status)] for the requested names ('all' = every registered backend and device)."""
    if names in (None, "all", ["all"]):
        names = list(ALL_CHOICES)
    return [(name, backend_status(name)) for name in names]


def _usable(backends, result, log):
    """The requested backends that can run here; the others go to ``result['skipped']``."""
    usable = []
    for name, status in _choose_backends(backends):
        if status["usable"]:
            usable.append(name)
        else:
            result["skipped"][name] = status["reason"]
            log(f"skipping {name}: {status['reason']}")
    return usable


def load_peers(log=print, folder=PEERS):
    """The reference loops of other libraries in ``bench/peers/*_loop.py`` (not part of the
    package: found beside it in a checkout of the repository), as {title: module}; a loop whose
    library is missing, or a missing folder, is reported through ``log`` and left out."""
    if not folder.is_dir():
        log(
            f"peers not available: {folder} does not exist (the reference loops live in the repository's "
            "bench/peers/, not in an installed wheel; run from a checkout)"
        )
        return {}
    peers = {}
    for path in sorted(folder.glob("*_loop.py")):
        spec = importlib.util.spec_from_file_location(f"fastmlp_peer_{path.stem}", path)
        assert spec is not None and spec.loader is not None  # a .py file always has a spec and a loader
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except ImportError as exc:
            log(f"skipping peer {path.name}: {exc}")
            continue
        peers[module.TITLE] = module
    return peers


def compare(backends, *, dtypes, hiddens, n, n_valid, epochs, warmup, precisions=("float32",), peers=False, log=print):
    """Time every usable backend on every (dtype, precision, hidden), interleaved; returns a
    JSON-able dict. The settings have no defaults here: ``fastmlp bench``'s flags hold them.
    ``peers``: also time the other libraries' own loops of ``bench/peers/`` in the same rounds
    (float32 products only)."""
    result = {
        "machine": _sysinfo.machine_info(),
        "blas": _sysinfo.blas_info(),
        "date": time.strftime("%Y-%m-%d"),
        "epochs": epochs,
        "warmup": warmup,
        "skipped": {},
        "configs": [],
    }
    usable = _usable(backends, result, log)
    if not usable:
        raise BackendError(
            "none of the requested backends can run here: "
            + "; ".join(f"{name}: {reason}" for name, reason in result["skipped"].items())
        )
    peer_modules = load_peers(log) if peers else {}
    _ensure_fits(usable, len(peer_modules), dtypes, hiddens, n=n, n_valid=n_valid)
    for dtype, precision, hidden in _configurations(dtypes, precisions, hiddens, log):
        config = {
            "dtype": dtype,
            "precision": precision,
            "n": n,
            "n_valid": n_valid,
            "hidden": hidden,
            "flops_per_epoch": epoch_flops(n, n_valid, hidden),
            "backends": {},
            "skipped": {},
        }
        factories = {name: functools.partial(EpochRunner, name, precision=precision) for name in usable}
        if precision == "float32":  # the libraries' own loops compute in the dtype's precision
            factories.update({title: module.Runner for title, module in peer_modules.items()})
        runners = _warm_up(config, factories, warmup, n=n, n_valid=n_valid, hidden=hidden, dtype=dtype)
        _time_rounds(config, runners, epochs)
        _compare_with_peers(config, peer_modules)
        result["configs"].append(config)
        log(format_table(config))
    return result


def _ensure_fits(backends, n_peers, dtypes, hiddens, *, n, n_valid):
    """Refuse, before anything is timed, settings whose runners would not fit in host memory: each
    runner on the host holds X, X_valid, the stand-in d1, an epoch's N x H and Nv x H buffers and
    three copies of the parameters until its configuration is timed; the float64 draws come one at
    a time."""
    itemsize, hidden = max(np.dtype(dtype).itemsize for dtype in dtypes), max(hiddens)
    per_runner = itemsize * ((n + n_valid) * N_IN + 4 * n * hidden + n_valid * hidden + 3 * (N_IN + N_OUT + 1) * hidden)
    on_host = sum(name not in GPU_CHOICES for name in backends) + n_peers
    drawn = 8 * max(n, n_valid) * max(N_IN, hidden)
    ensure_fits(
        on_host * per_runner + drawn,
        f"bench with --n {n}, --valid {n_valid}, --hidden {hidden} on {on_host} host backend(s)",
        hint="use a smaller --n, --valid or --hidden, or fewer --backends",
    )


def _configurations(dtypes, precisions, hiddens, log):
    """(dtype, precision, hidden) to time; a reduced precision only with float32."""
    for dtype in dtypes:
        for precision in precisions:
            if precision != "float32" and dtype != "float32":
                log(f"skipping {dtype} with precision {precision}: reduced precisions need float32")
                continue
            for hidden in hiddens:
                yield dtype, precision, hidden


def _time_rounds(config, runners, epochs):
    """``epochs`` rounds, every runner once per round (A B C A B C ...), then the summary."""
    for _ in range(epochs):
        for name, runner in runners.items():
            config["backends"][name]["epoch_s"].append(runner.epoch())
            config["backends"][name]["floor_s"].append(runner.products())
    for runner in runners.values():
        getattr(runner, "release", lambda: None)()
    _summarise(config)


def _warm_up(config, factories, warmup, **shape):
    """Each runner made, its first epoch timed (cold start) and warmed up; {name: runner}. A
    backend that does not offer the configuration's precision is skipped, with the reason."""
    runners = {}
    for name, factory in factories.items():
        start = time.perf_counter()
        try:
            runner = factory(**shape)
        except InvalidInputError as exc:  # this precision is not offered by this backend
            config["skipped"][name] = str(exc)
            continue
        first = runner.epoch()
        cold = time.perf_counter() - start
        for _ in range(max(0, warmup - 1)):
            runner.epoch()
            runner.products()
        runners[name] = runner
        config["backends"][name] = {
            "cold_start_s": cold,
            "first_epoch_s": first,
            "epoch_s": [],
            "floor_s": [],
            "facts": runner.describe(),
            "peer": not isinstance(runner, EpochRunner),
        }
    return runners


def _compare_with_peers(config, peer_modules):
    """fastmlp's median epoch on a library's backend over that library's own loop's."""
    entries = config["backends"]
    config["vs_own_loop"] = {
        module.BACKEND: entries[module.BACKEND]["median_s"] / entries[title]["median_s"]
        for title, module in peer_modules.items()
        if module.BACKEND in entries
    }


def _summarise(config):
    config["baseline"] = BASELINE
    baseline = config["backends"].get(BASELINE)
    base_median = statistics.median(baseline["epoch_s"]) if baseline else None
    for entry in config["backends"].values():
        median = statistics.median(entry["epoch_s"])
        floor = statistics.median(entry["floor_s"])
        # each round times an epoch and then its products: the ratio within a round cancels the
        # machine's slow drifts, and the median over rounds drops the odd disturbed round
        ratios = [epoch / products for epoch, products in zip(entry["epoch_s"], entry["floor_s"], strict=True)]
        entry.update(
            median_s=median,
            min_s=min(entry["epoch_s"]),
            max_s=max(entry["epoch_s"]),
            floor_median_s=floor,
            floor_ratio=statistics.median(ratios),
            samples_per_s=config["n"] / median,
            speedup_vs_baseline=(base_median / median) if base_median else None,
            gflops=config["flops_per_epoch"] / median / 1e9,
        )


def format_table(config):
    """A text table of one configuration: one row per backend (and per peer loop)."""
    precision = config.get("precision", "float32")
    head = (
        f"{config['dtype']}"
        + (f" (products in {precision})" if precision != "float32" else "")
        + f", N={config['n']}, H={config['hidden']}, valid {config['n_valid']} "
        f"({config['flops_per_epoch'] / 1e9:.1f} GFLOP of products per epoch)"
    )
    width = max([8, *(len(name) for name in config["backends"])])  # no backend left: the skipped lines only
    rows = [
        f"{'backend':<{width}} {'median s':>9} {'min-max s':>15} {'samples/s':>10} "
        f"{'vs ' + config['baseline']:>9} {'floor s':>8} {'epoch/floor':>11} {'cold s':>7}"
    ]
    for name, e in config["backends"].items():
        speedup = f"{e['speedup_vs_baseline']:.2f}x" if e["speedup_vs_baseline"] else "-"
        rows.append(
            f"{name:<{width}} {e['median_s']:>9.4f} {e['min_s']:>7.4f}-{e['max_s']:<7.4f} {e['samples_per_s']:>10.0f} "
            f"{speedup:>9} {e['floor_median_s']:>8.4f} {e['floor_ratio']:>10.3f}x {e['cold_start_s']:>7.2f}"
        )
    for name, ratio in config.get("vs_own_loop", {}).items():
        rows.append(f"fastmlp on {name} / {name}'s own loop: {ratio:.3f}x (median epochs)")
    timers = sorted({e["facts"].get("timer") for e in config["backends"].values()} - {None})
    rows += [f"timed by: {'; '.join(timers)}"] * bool(timers)
    rows += [
        f"{name}: products without their epilogue: {e['facts']['unfused']}"
        for name, e in config["backends"].items()
        if "unfused" in e["facts"]
    ]
    rows += [f"skipped {name}: {reason}" for name, reason in config.get("skipped", {}).items()]
    return "\n".join([head, *rows])


def sweep(
    backends="all",
    *,
    dtype="float32",
    hiddens=(100, 250, 500, 1000, 2000, 4000),
    ns=(1000, 2000, 5000, 10000),
    base_n=6000,
    base_hidden=1000,
    epochs=3,
    log=print,
):
    """Seconds per epoch as H grows (N = base_n) and as N grows (H = base_hidden)."""
    points = []
    usable = [name for name, status in _choose_backends(backends) if status["usable"]]
    shapes = [(base_n, h) for h in hiddens] + [(n, base_hidden) for n in ns if n != base_n]
    for n, hidden in shapes:
        n_valid = max(1, n // 3)
        for name in usable:
            runner = EpochRunner(name, n=n, n_valid=n_valid, hidden=hidden, dtype=dtype)
            runner.epoch()
            times = [runner.epoch() for _ in range(epochs)]
            runner.backend.release()
            point = {
                "backend": name,
                "n": n,
                "n_valid": n_valid,
                "hidden": hidden,
                "dtype": dtype,
                "epoch_s": times,
                "median_s": statistics.median(times),
                "flops": epoch_flops(n, n_valid, hidden),
            }
            points.append(point)
            log(
                f"{name:<6} N={n:<6} H={hidden:<5} {point['median_s']:.4f} s/epoch "
                f"({point['flops'] / point['median_s'] / 1e9:.1f} GFLOP/s)"
            )
    return points


def write_json(data, path):
    """Write benchmark results as JSON, atomically."""
    write_text(path, json.dumps(data, indent=1))
