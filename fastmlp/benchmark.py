"""Epoch timing across backends, in one process, for ``fastmlp bench`` and ``bench/``.

What one timed epoch is: exactly the training loop's full-batch epoch
(:func:`fastmlp.train.full_batch_epoch`: forward, backward, update, validation metrics, the one
device-to-host copy) on data already on the device, the device synchronised before the clock is
read. The *floor* is the same epoch's three large products alone (X @ W1, Xᵀ @ d1, X_valid @ W1)
on the same backend, timed in the same rounds; the floor ratio is the median over rounds of
epoch / products. Each runner is warmed up (epochs and products, so that no timed sample includes
a compilation), then backends are interleaved round by round (A B C A B C ...), so machine noise
falls on all of them alike. A ratio below :data:`FLOOR_RATIO_MIN` cannot be true (an epoch contains
its products) and is reported as a measurement error.

Each backend times its own work (``Backend.time_device_work``): the CPU backends by the wall
clock between two synchronisations, a CUDA backend by CUDA events around the work on the device,
so that the host thread's wait for a core (BLAS threads of a CPU round still spinning) is not
charged to the GPU. Each precision (float32, tf32, bf16) is its own configuration, and its floor
is the three products in that precision. What is timed is decided before anything is
(:func:`plan`): a backend that does not offer a dtype or precision is left out of it, with the
reason, and a dtype or precision no chosen backend offers is refused. With ``peers``, the other
libraries' own loops of the same epoch (``bench/peers/``, outside the package) are timed in the
same rounds. The sweep (``compare(..., sweep=True)``) times each of its sizes by the same path as
the table, floor and all.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
import statistics
import time
from pathlib import Path

import numpy as np

from . import _sysinfo, files, network, train
from .arguments import PRECISIONS
from .backends import ALL_CHOICES, BASELINE, GPU_CHOICES, backend_status, backends_offering, configure, get_backend
from .errors import BackendError, InvalidInputError
from .memory import ensure_fits

__all__ = [
    "EpochRunner",
    "Setting",
    "epoch_flops",
    "plan",
    "measure",
    "compare",
    "sweep_shapes",
    "load_peers",
    "format_table",
    "format_point",
    "write_json",
    "PEERS",
    "FLOOR_RATIO_MIN",
    "SWEEP_HIDDENS",
    "SWEEP_NS",
]

N_IN, N_OUT = 784, 10
#: the other libraries' own loops, beside the package in a checkout of the repository
PEERS = Path(__file__).resolve().parent.parent / "bench" / "peers"
#: an epoch/floor ratio below this is a measurement error: an epoch cannot be quicker than its own products
FLOOR_RATIO_MIN = 0.9
#: the sweep's sizes: H grows at the table's N, N grows at the table's H (whose own size is a point too)
SWEEP_HIDDENS = (250, 500, 1000, 2000, 4000)
SWEEP_NS = (1000, 2000, 4000, 10000)


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
        params = {k: to_device(v) for k, v in network.init_params(N_IN, hidden, N_OUT, seed=seed, dtype=dtype).items()}
        self.state = train.TrainingState(self.backend, params, network.init_velocities(self.backend, params))
        self._d1 = to_device(rng.standard_normal((n, hidden)) * 1e-3, dtype)  # N×H stand-in for d1
        self.backend.hold_constant(self.X, self.X_valid)  # as fit promises: the data are never written

    def epoch(self):
        """Seconds of one full-batch training epoch, validation metrics included."""

        def work():
            train.full_batch_epoch(
                self.state, self.X, self.labels, self.X_valid, self.labels_valid, lr=1e-3, momentum=0.9
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
                backend.matmul(self.X, W1, workspace="hidden"),  # N×H
                backend.matmul(self.X.T, self._d1, workspace="dW1"),  # D×H
                backend.matmul(self.X_valid, W1, workspace="hidden"),
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
    if not usable:
        raise BackendError(
            "none of the requested backends can run here: "
            + "; ".join(f"{name}: {reason}" for name, reason in result["skipped"].items())
        )
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


@dataclasses.dataclass
class Setting:
    """One (dtype, precision) to time: who times it, and who was left out and why."""

    dtype: str
    precision: str
    runners: dict  # name -> factory(n=, n_valid=, hidden=, dtype=) of an object with epoch() and products()
    left_out: dict  # name -> why it cannot time this setting
    peers: dict  # title of another library's own loop -> the backend it is compared with

    def times_a_backend(self):
        """Whether a fastmlp backend (not only a peer loop) times this setting."""
        return any(name not in self.peers for name in self.runners)


def plan(backends="all", *, dtypes=("float32",), precisions=("float32",), peers=False, result=None, log=print):
    """What each (dtype, precision) will time, decided before anything is timed; [Setting].

    A backend that cannot run here, or cannot time a setting, is left out with the reason (in
    ``result['skipped']``, or the setting's ``left_out``); a setting none of the chosen backends
    can time is skipped and said (``result['skipped_settings']``). Raises InvalidInputError, naming
    what would work, when a requested dtype or precision would be timed by none of them."""
    result = {"skipped": {}} if result is None else result
    usable = _usable(backends, result, log)
    peer_modules = load_peers(log) if peers else {}
    settings = [_setting(usable, peer_modules, dtype, precision) for dtype in dtypes for precision in precisions]
    timed = [setting for setting in settings if setting.times_a_backend()]
    _refuse_untimed(settings, timed, usable, result["skipped"])
    for setting in settings:
        if setting not in timed:
            what = f"{setting.dtype} with precision {setting.precision}"
            result.setdefault("skipped_settings", {})[what] = _reasons([setting])
            log(f"skipping {what}: {_reasons([setting])}")
    return timed


def _refuse_untimed(settings, timed, usable, unusable):
    """InvalidInputError when a requested precision (else a dtype) would be timed by no chosen backend."""
    problems, untimed = [], []
    offered = dict.fromkeys(p for name in usable for p in get_backend(name).precisions)  # by the usable backends
    for kind in ("precision", "dtype"):
        for value in dict.fromkeys(getattr(s, kind) for s in settings):
            if all(getattr(s, kind) != value for s in timed):
                untimed.append(value)
                mine = [s for s in settings if getattr(s, kind) == value]
                problems.append(_untimed(kind, value, mine, usable, offered, unusable))
        if problems:  # a dtype is only a problem once every precision can be timed
            break
    if not problems:
        return
    if timed:
        fix = f"drop {', '.join(untimed)} to time " + ", ".join(
            f"{s.dtype} with precision {s.precision}" for s in timed
        )
    else:
        reduced = " (a reduced one with --dtype float32)" if len(offered) > 1 else ""
        fix = f"{', '.join(usable)} can time --precision {' or '.join(offered)}{reduced}"
    raise InvalidInputError(f"nothing would be timed for {'; nor for '.join(problems)}; {fix}")


def _untimed(kind, value, settings, usable, offered, unusable):
    """Why no chosen backend times ``kind`` (dtype or precision) ``value``: for a precision none of
    the ``usable`` backends offers, the backends that do; else the backends' own reasons."""
    if kind == "dtype" or value in offered:
        return f"{kind} {value!r}: {_reasons(settings)}"
    where = [
        f"{name} offers it but cannot run here" if name in unusable else f"{name} offers it but was not chosen"
        for name in backends_offering(precision=value)
    ]
    return (
        f"precision {value!r}: the chosen backends that can run here ({', '.join(usable)}) offer "
        f"{', '.join(offered)}" + "".join(f"; {w}" for w in where)
    )


def _setting(usable, peer_modules, dtype, precision):
    """The Setting of one (dtype, precision): each backend probed, each peer loop in the precisions it offers."""
    runners, left_out = {}, {}
    for name in usable:
        reason = _cannot_time(name, dtype, precision)
        if reason:
            left_out[name] = reason
        else:
            runners[name] = functools.partial(EpochRunner, name, precision=precision)
    for title, module in peer_modules.items():
        if precision == PRECISIONS[0]:  # the libraries' own loops compute in their dtype's precision
            runners[title] = module.Runner
        elif precision in module.PRECISIONS:  # e.g. PyTorch's loop under autocast(bfloat16)
            runners[title] = functools.partial(module.Runner, precision=precision)
        else:
            left_out[title] = f"the library's own loop computes in {dtype}, not in precision {precision}"
    peers = {title: module.BACKEND for title, module in peer_modules.items() if title in runners}
    return Setting(dtype, precision, runners, left_out, peers)


def _cannot_time(name, dtype, precision):
    """Why backend ``name`` cannot time ``dtype`` with ``precision`` (the backend's own message), or None.

    A dtype its device cannot hold (float64 on an Apple GPU) is refused only when the runner puts
    data there; :func:`measure` then leaves the backend out with the reason. (Probing it here
    would switch JAX to 64 bits for every configuration.)"""
    try:
        configure(get_backend(name), dtype=dtype, precision=precision, cuda_graphs=None)
    except InvalidInputError as exc:
        return str(exc)
    return None


def _reasons(settings):
    """The distinct reasons the settings' backends were left out, in one line."""
    return "; ".join(dict.fromkeys(reason for s in settings for reason in s.left_out.values()))


def compare(
    backends,
    *,
    dtypes,
    hiddens,
    n,
    n_valid,
    epochs,
    warmup,
    precisions=("float32",),
    peers=False,
    sweep=False,
    sweep_hiddens=SWEEP_HIDDENS,
    sweep_ns=SWEEP_NS,
    log=print,
):
    """Time every usable backend on every (dtype, precision, hidden), interleaved; returns a
    JSON-able dict. The settings have no defaults here: ``fastmlp bench``'s flags hold them.
    ``peers``: also time the other libraries' own loops of ``bench/peers/`` in
    the same rounds (float32, and bf16 where a loop offers it). ``sweep``: then time every size of
    :func:`sweep_shapes` the same way, floors included (``result['sweep']['points']``)."""
    result = _record(epochs=epochs, warmup=warmup)
    settings = plan(backends, dtypes=dtypes, precisions=precisions, peers=peers, result=result, log=log)
    shapes = [{"n": n, "n_valid": n_valid, "hidden": hidden} for hidden in hiddens]
    sweep_sizes = sweep_shapes(n, n_valid, hiddens[0], sweep_hiddens, sweep_ns) if sweep else []
    _ensure_fits(settings, [*shapes, *sweep_sizes])
    timed = functools.partial(measure, epochs=epochs, warmup=warmup)
    for setting in settings:
        for hidden in hiddens:
            result["configs"].append(timed(setting, n=n, n_valid=n_valid, hidden=hidden))
            log(format_table(result["configs"][-1]))
    if sweep:
        result["sweep"] = {"n": n, "n_valid": n_valid, "hidden": hiddens[0], "points": []}
        for setting in settings:
            for shape in sweep_sizes:
                result["sweep"]["points"].append(timed(setting, **shape))
                log(format_point(result["sweep"]["points"][-1]))
    return result


def _ensure_fits(settings, shapes):
    """Refuse, before anything is timed, sizes whose runners would not fit in host memory: each
    runner on the host holds X, X_valid, the stand-in d1, an epoch's N x H and Nv x H buffers and
    three copies of the parameters while its size is timed; the float64 draws come one at a time."""
    itemsize = max(np.dtype(setting.dtype).itemsize for setting in settings)
    on_host = max(sum(name not in GPU_CHOICES for name in setting.runners) for setting in settings)

    def needs(n, n_valid, hidden):
        per_runner = (n + n_valid) * N_IN + 4 * n * hidden + n_valid * hidden + 3 * (N_IN + N_OUT + 1) * hidden
        return on_host * itemsize * per_runner + 8 * max(n, n_valid) * max(N_IN, hidden)

    largest = max(shapes, key=lambda shape: needs(**shape))
    ensure_fits(
        needs(**largest),
        f"bench with --n {largest['n']}, --valid {largest['n_valid']}, --hidden {largest['hidden']} "
        f"on {on_host} host backend(s)",
        hint="use a smaller --n, --valid or --hidden, or fewer --backends",
    )


def _record(**settings):
    """The result's header: the machine, its BLAS, the date and how busy the machine was."""
    return {
        "machine": _sysinfo.machine_info(),
        "blas": _sysinfo.blas_info(),
        "date": time.strftime("%Y-%m-%d"),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        **settings,
        "skipped": {},
        "configs": [],
    }


def sweep_shapes(n, n_valid, hidden, hiddens=SWEEP_HIDDENS, ns=SWEEP_NS):
    """The sizes of the sweep, as [{n, n_valid, hidden}]: H grows at N = ``n``, then N grows at
    H = ``hidden``, the validation rows keeping their share of N. The table's own size
    (``n``, ``hidden``) is always one point, timed once."""
    shapes = [{"n": n, "n_valid": n_valid, "hidden": h} for h in sorted({*hiddens, hidden})]
    shapes += [
        {"n": m, "n_valid": max(1, round(m * n_valid / n)), "hidden": hidden} for m in sorted({*ns, n}) if m != n
    ]
    return shapes


def measure(setting, *, n, n_valid, hidden, epochs, warmup):
    """One configuration timed: every runner of ``setting`` made and warmed up, then ``epochs``
    rounds of (epoch, products) alternating across them; the configuration's dict."""
    config = {
        "dtype": setting.dtype,
        "precision": setting.precision,
        "n": n,
        "n_valid": n_valid,
        "hidden": hidden,
        "flops_per_epoch": epoch_flops(n, n_valid, hidden),
        "backends": {},
        "skipped": dict(setting.left_out),
    }
    runners = _warm_up(config, setting, warmup, n=n, n_valid=n_valid, hidden=hidden, dtype=setting.dtype)
    _time_rounds(config, runners, epochs)
    config["vs_own_loop"] = {
        backend: config["backends"][backend]["median_s"] / config["backends"][title]["median_s"]
        for title, backend in setting.peers.items()
        if backend in config["backends"] and title in config["backends"]
    }
    return config


def _warm_up(config, setting, warmup, **shape):
    """Each runner made, its first epoch timed (cold start), then warmed up: ``warmup`` epochs
    and ``warmup`` rounds of the floor's products, so that no timed sample of either includes a
    compilation; {name: runner}. A runner that cannot be made is left out, with the reason."""
    runners = {}
    for name, factory in setting.runners.items():
        start = time.perf_counter()
        try:
            runner = factory(**shape)
        except (InvalidInputError, BackendError) as exc:
            config["skipped"][name] = str(exc)
            continue
        first = runner.epoch()
        cold = time.perf_counter() - start
        runner.products()
        for _ in range(warmup - 1):
            runner.epoch()
            runner.products()
        runners[name] = runner
        config["backends"][name] = {
            "cold_start_s": cold,
            "first_epoch_s": first,
            "epoch_s": [],
            "floor_s": [],
            "facts": runner.describe(),
            "peer": name in setting.peers,
        }
    return runners


def _time_rounds(config, runners, epochs):
    """``epochs`` rounds, every runner once per round (A B C A B C ...), then the summary."""
    for _ in range(epochs):
        for name, runner in runners.items():
            config["backends"][name]["epoch_s"].append(runner.epoch())
            config["backends"][name]["floor_s"].append(runner.products())
    for runner in runners.values():
        getattr(runner, "release", lambda: None)()
    _summarise(config)


def _spread(samples):
    """The interquartile range of ``samples`` over their median (0.05: they move by about 5%);
    None for fewer than two."""
    if len(samples) < 2:
        return None
    q1, median, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return (q3 - q1) / median


def _summarise(config):
    config["baseline"] = BASELINE
    baseline = config["backends"].get(BASELINE)
    base_median = statistics.median(baseline["epoch_s"]) if baseline else None
    for entry in config["backends"].values():
        median = statistics.median(entry["epoch_s"])
        # each round times an epoch and then its products: the ratio within a round cancels the
        # machine's slow drifts, and the median over rounds drops the odd disturbed round
        ratios = [epoch / products for epoch, products in zip(entry["epoch_s"], entry["floor_s"], strict=True)]
        ratio = statistics.median(ratios)
        entry.update(
            median_s=median,
            min_s=min(entry["epoch_s"]),
            max_s=max(entry["epoch_s"]),
            spread=_spread(entry["epoch_s"]),
            floor_median_s=statistics.median(entry["floor_s"]),
            floor_ratio=ratio,
            measurement_error=_floor_error(ratio),
            samples_per_s=config["n"] / median,
            speedup_vs_baseline=(base_median / median) if base_median else None,
            gflops=config["flops_per_epoch"] / median / 1e9,
        )


def _floor_error(ratio):
    """What is wrong with an epoch/floor ratio below FLOOR_RATIO_MIN, or None."""
    if ratio >= FLOOR_RATIO_MIN:
        return None
    return (
        f"epoch/floor {ratio:.3f}x is below {FLOOR_RATIO_MIN}: an epoch cannot take less time than its own "
        "products alone, so this is a measurement error (samples disturbed by other work on the machine, or a "
        "compilation timed), not a result; rerun with more --warmup and --epochs on a quiet machine"
    )


def format_table(config):
    """A text table of one configuration: one row per backend (and per peer loop), then notes."""
    precision = config.get("precision", "float32")
    head = (
        f"{config['dtype']}"
        + (f" (products in {precision})" if precision != "float32" else "")
        + f", N={config['n']}, H={config['hidden']}, valid {config['n_valid']} "
        f"({config['flops_per_epoch'] / 1e9:.1f} GFLOP of products per epoch)"
    )
    width = max([8, *(len(name) for name in config["backends"])])  # no backend left: the skipped lines only
    rows = [
        f"{'backend':<{width}} {'median s':>9} {'min-max s':>15} {'iqr/med':>7} {'samples/s':>10} "
        f"{'vs ' + config['baseline']:>9} {'floor s':>8} {'epoch/floor':>11} {'cold s':>7}"
    ]
    for name, e in config["backends"].items():
        speedup = f"{e['speedup_vs_baseline']:.2f}x" if e["speedup_vs_baseline"] else "-"
        spread = f"{100 * e['spread']:.1f}%" if e["spread"] is not None else "-"
        ratio = f"{e['floor_ratio']:.3f}x" + ("!" if e["measurement_error"] else " ")
        rows.append(
            f"{name:<{width}} {e['median_s']:>9.4f} {e['min_s']:>7.4f}-{e['max_s']:<7.4f} {spread:>7} "
            f"{e['samples_per_s']:>10.0f} {speedup:>9} {e['floor_median_s']:>8.4f} {ratio:>12} {e['cold_start_s']:>6.2f}"
        )
    return "\n".join([head, *rows, *_table_notes(config)])


def _table_notes(config):
    """The lines under a table: peer ratios, timers, who does the products, unfused products,
    measurement errors, and the backends left out with the reason."""
    backends = config["backends"]
    notes = [
        f"fastmlp on {name} / {name}'s own loop: {r:.3f}x (median epochs)" for name, r in config["vs_own_loop"].items()
    ]
    timers = sorted({e["facts"].get("timer") for e in backends.values()} - {None})
    notes += [f"timed by: {'; '.join(timers)}"] * bool(timers)
    libraries: dict[str, list[str]] = {}
    for name, e in backends.items():
        if "products" in e["facts"]:
            libraries.setdefault(e["facts"]["products"], []).append(name)
    notes += ["products by: " + "; ".join(f"{', '.join(n)}: {lib}" for lib, n in libraries.items())] * bool(libraries)
    notes += [
        f"{name}: products without their epilogue: {e['facts']['unfused']}"
        for name, e in backends.items()
        if "unfused" in e["facts"]
    ]
    notes += [f"{name}: {e['measurement_error']}" for name, e in backends.items() if e["measurement_error"]]
    notes += [f"skipped {name}: {reason}" for name, reason in config["skipped"].items()]
    return notes


def format_point(config):
    """One line of the sweep: the size, then each backend's median epoch and epoch/floor."""
    precision = "" if config["precision"] == "float32" else f" (products in {config['precision']})"
    timed = ", ".join(
        f"{name} {e['median_s']:.4f} s ({e['floor_ratio']:.2f}x floor{'!' if e['measurement_error'] else ''})"
        for name, e in config["backends"].items()
    )
    left_out = f"; skipped {', '.join(config['skipped'])}" if config["skipped"] else ""
    return f"N={config['n']:<6} H={config['hidden']:<5} {config['dtype']}{precision}: {timed}{left_out}"


def write_json(data, path):
    """Write benchmark results as JSON, by the rule of :mod:`fastmlp.files`."""
    files.write_json(path, data)
