"""The benchmark module's own logic and ``fastmlp bench``'s refusals (timings themselves are
checked by bench/, never here: no test asserts a speed)."""

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from fastmlp import _sysinfo, benchmark, plotting
from fastmlp.errors import InvalidInputError

from .cuda_double import CudaDouble

QUIET = {"log": lambda line: None}
#: a configuration small enough to time in a test
TINY = {"dtypes": ("float32",), "hiddens": (16,), "n": 200, "n_valid": 50, "epochs": 3, "warmup": 1}


def test_epoch_flops_matches_the_cost_in_the_math_notes():
    # docs: X@W1 and Xᵀ@d1 are 9.4 GFLOP each, X_valid@W1 3.1 GFLOP, everything else under 0.5 GFLOP
    flops = benchmark.epoch_flops(6000, 2000, 1000)
    large = 2 * 6000 * 784 * 1000 * 2 + 2 * 2000 * 784 * 1000
    assert large == pytest.approx(9.4e9 * 2 + 3.1e9, rel=0.01)
    assert 0 < flops - large < 0.5e9


def test_compare_records_every_raw_time_the_per_round_floor_ratio_and_the_spread(tmp_path):
    result = benchmark.compare(["numpy"], **{**TINY, "epochs": 4}, **QUIET)
    entry = result["configs"][0]["backends"]["numpy"]
    assert len(entry["epoch_s"]) == 4 and len(entry["floor_s"]) == 4
    ratios = sorted(e / f for e, f in zip(entry["epoch_s"], entry["floor_s"], strict=True))
    assert entry["floor_ratio"] == pytest.approx((ratios[1] + ratios[2]) / 2)
    q1, q3 = np.percentile(entry["epoch_s"], [25, 75])
    assert entry["spread"] == pytest.approx((q3 - q1) / np.median(entry["epoch_s"]))
    assert entry["speedup_vs_baseline"] == 1.0 and result["configs"][0]["baseline"] == "numpy"
    assert result["machine"]["cpu_count"] >= 1 and len(result["load_average"]) == 3
    benchmark.write_json(result, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["configs"][0]["hidden"] == 16


class _Recorded(benchmark.EpochRunner):
    """The real runner, writing down the order of its calls."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []

    def epoch(self):
        self.calls.append("epoch")
        return super().epoch()

    def products(self):
        self.calls.append("products")
        return super().products()


def test_the_floors_products_are_warmed_up_before_their_first_timed_sample():
    """With --warmup 1, JAX compiled the floor's products inside the first timed sample (epoch/floor
    0.6x): every runner runs its products once before the rounds, whatever the warm-up."""
    made = []

    def factory(**shape):
        made.append(_Recorded("numpy", **shape))
        return made[-1]

    setting = benchmark.Setting("float32", "float32", {"numpy": factory}, {}, {})
    config = benchmark.measure(setting, n=100, n_valid=20, hidden=8, epochs=2, warmup=1)
    assert made[0].calls == ["epoch", "products"] + ["epoch", "products"] * 2
    assert len(config["backends"]["numpy"]["floor_s"]) == 2


class _SlowFloor(benchmark.EpochRunner):
    """A runner whose floor samples were disturbed: each reads 50 ms longer than its products took."""

    def products(self):
        return super().products() + 0.05


def test_a_floor_ratio_below_0_9_is_reported_as_a_measurement_error_not_a_result():
    setting = benchmark.Setting("float32", "float32", {"numpy": lambda **shape: _SlowFloor("numpy", **shape)}, {}, {})
    config = benchmark.measure(setting, n=100, n_valid=20, hidden=8, epochs=3, warmup=1)
    entry = config["backends"]["numpy"]
    assert entry["floor_ratio"] < benchmark.FLOOR_RATIO_MIN
    assert "measurement error" in entry["measurement_error"] and "not a result" in entry["measurement_error"]
    table = benchmark.format_table(config)
    assert f"{entry['floor_ratio']:.3f}x!" in table and f"numpy: {entry['measurement_error']}" in table
    assert "floor!" in benchmark.format_point(config)


def test_sweep_shapes_grow_h_at_the_tables_n_then_n_at_its_h_the_tables_size_once():
    shapes = [(s["n"], s["n_valid"], s["hidden"]) for s in benchmark.sweep_shapes(6000, 2000, 1000)]
    assert shapes == [
        *((6000, 2000, h) for h in (250, 500, 1000, 2000, 4000)),
        (1000, 333, 1000),
        (2000, 667, 1000),
        (4000, 1333, 1000),
        (10000, 3333, 1000),
    ]
    assert benchmark.sweep_shapes(300, 100, 64, (8,), ()) == [
        {"n": 300, "n_valid": 100, "hidden": 8},
        {"n": 300, "n_valid": 100, "hidden": 64},
    ]


def test_the_sweep_times_each_size_as_the_table_does_with_its_floor(tmp_path):
    said = []
    result = benchmark.compare(
        ["numpy", "numba"], sweep=True, sweep_hiddens=(8, 32), sweep_ns=(100,), **TINY, log=said.append
    )
    points = result["sweep"]["points"]
    assert result["sweep"] | {"points": None} == {"n": 200, "n_valid": 50, "hidden": 16, "points": None}
    assert [(p["n"], p["n_valid"], p["hidden"]) for p in points] == [
        (200, 50, 8),
        (200, 50, 16),
        (200, 50, 32),
        (100, 25, 16),
    ]
    table_entry = result["configs"][0]["backends"]["numba"]
    for point in points:
        assert list(point["backends"]) == ["numpy", "numba"]  # in alternating rounds, as the table
        for entry in point["backends"].values():
            assert set(entry) == set(table_entry)  # warm-up, floor, ratio, spread: the table's own record
            assert len(entry["epoch_s"]) == len(entry["floor_s"]) == 3
            ratios = [e / f for e, f in zip(entry["epoch_s"], entry["floor_s"], strict=True)]
            assert entry["floor_ratio"] == pytest.approx(float(np.median(ratios)))
    assert said[-1].startswith("N=100    H=16    float32: numpy ") and "x floor" in said[-1]
    plotting.plot_sweep(result, tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"


def _installed_peers():
    libraries = [name for name in ("torch", "jax") if importlib.util.find_spec(name) is not None]
    if not libraries:
        pytest.skip("neither PyTorch nor JAX is installed here: no peer loop can run")
    return libraries


def test_peers_run_in_the_same_rounds_beside_their_backend_in_the_table_and_the_sweep():
    """bench --peers: each library's own loop (bench/peers/) is timed in the same rounds as fastmlp on
    that library, and the table states fastmlp's epoch over the loop's; the sweep has them as lines."""
    libraries = _installed_peers()
    said = []
    result = benchmark.compare(
        libraries, peers=True, sweep=True, sweep_hiddens=(), sweep_ns=(), **TINY, log=said.append
    )
    for config in (result["configs"][0], result["sweep"]["points"][0]):
        for name in libraries:
            peer = config["backends"][f"{name} own loop"]
            assert peer["peer"] and not config["backends"][name]["peer"]
            assert len(peer["epoch_s"]) == len(peer["floor_s"]) == 3 and min(peer["epoch_s"]) > 0
            ratio = config["backends"][name]["median_s"] / peer["median_s"]
            assert config["vs_own_loop"][name] == pytest.approx(ratio)
    assert f"fastmlp on {libraries[-1]} / {libraries[-1]}'s own loop:" in said[-2]
    assert f"{libraries[0]} own loop" in said[-1]  # the sweep's line


def test_the_bf16_table_times_pytorchs_autocast_loop_beside_the_torch_row():
    """bench --peers --precision bf16: PyTorch's own loop under autocast(bfloat16) in the same
    rounds as fastmlp's bf16 epoch on torch, each with its bf16 floor; a loop without bf16 says so."""
    import fastmlp

    if importlib.util.find_spec("torch") is None or "bf16" not in fastmlp.get_backend("torch").precisions:
        pytest.skip("the torch backend does not offer bf16 here (PyTorch missing, or a CPU without native bf16)")
    said = []
    (config,) = benchmark.compare(["torch"], precisions=("bf16",), peers=True, **TINY, log=said.append)["configs"]
    assert [name for name in config["backends"]] == ["torch", "torch own loop"]
    assert config["backends"]["torch own loop"]["facts"]["autocast"] == "bfloat16"
    assert config["backends"]["torch"]["facts"]["products"].endswith("and, in bf16, X W1 and Xᵀ d1")
    assert set(config["vs_own_loop"]) == {"torch"}
    if importlib.util.find_spec("jax") is not None:
        assert config["skipped"]["jax own loop"].endswith("not in precision bf16")
    assert said[-1].startswith("float32 (products in bf16)")


def test_peers_missing_from_an_installed_package_are_reported(tmp_path):
    said = []
    assert benchmark.load_peers(said.append, folder=tmp_path / "bench" / "peers") == {}
    assert "peers not available" in said[0] and "not in an installed wheel" in said[0]


# ----------------------------------------------------------------- what is timed, decided up front


def test_a_precision_no_chosen_backend_offers_is_refused_naming_what_would_work():
    with pytest.raises(InvalidInputError) as caught:
        benchmark.plan(["numpy", "numba"], precisions=("tf32", "float32"), **QUIET)
    message = str(caught.value)
    assert message.startswith("nothing would be timed for precision 'tf32': ")
    assert "(numpy, numba) offer float32" in message and "cupy offers it but was not chosen" in message
    assert message.endswith("drop tf32 to time float32 with precision float32")


def test_a_precision_only_an_unusable_backend_offers_says_it_cannot_run_here():
    with pytest.raises(InvalidInputError) as caught:
        benchmark.plan(["numpy", "cupy"], precisions=("bf16",), **QUIET)
    if "cupy offers it" not in str(caught.value):
        pytest.skip("cupy can run here")
    assert "cupy offers it but cannot run here" in str(caught.value)
    assert str(caught.value).endswith("numpy can time --precision float32")


@pytest.fixture
def gpu(monkeypatch):
    """The test double of CuPy, nvmath-python and CUDA (tests/cuda_double.py): cupy usable on the CPU."""
    CudaDouble().install(monkeypatch)


def test_a_precision_some_chosen_backends_offer_is_timed_on_those_and_says_who_was_left_out(gpu, tmp_path):
    said = []
    result = benchmark.compare(["numpy", "cupy"], precisions=("float32", "tf32"), **TINY, log=said.append)
    float32, tf32 = result["configs"]
    assert list(float32["backends"]) == ["numpy", "cupy"] and float32["skipped"] == {}
    assert list(tf32["backends"]) == ["cupy"]
    assert tf32["skipped"]["numpy"].startswith("precision 'tf32' is not offered by the numpy backend")
    assert f"skipped numpy: {tf32['skipped']['numpy']}" in said[-1].splitlines()
    plotting.plot_bars(result, tmp_path / "bars.png")  # one panel per precision
    assert (tmp_path / "bars.png").read_bytes()[:4] == b"\x89PNG"


def test_a_dtype_only_a_reduced_precision_was_asked_with_is_refused(gpu):
    with pytest.raises(InvalidInputError) as caught:
        benchmark.plan(["cupy"], dtypes=("float32", "float64"), precisions=("tf32",), **QUIET)
    assert str(caught.value).startswith(
        "nothing would be timed for dtype 'float64': precision 'tf32' needs dtype float32"
    )
    assert str(caught.value).endswith("drop float64 to time float32 with precision tf32")
    said = []
    settings = benchmark.plan(["cupy"], dtypes=("float32", "float64"), precisions=("float32", "tf32"), log=said.append)
    assert [(s.dtype, s.precision) for s in settings] == [
        ("float32", "float32"),
        ("float32", "tf32"),
        ("float64", "float32"),
    ]
    assert len(said) == 1 and said[0].startswith(
        "skipping float64 with precision tf32: precision 'tf32' needs dtype float32"
    )


def _bench(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "fastmlp", "bench", *args], capture_output=True, text=True, timeout=300, cwd=cwd
    )


@pytest.mark.parametrize(
    "backends, precisions",
    [("numpy", "bf16"), ("numpy", "tf32,float32"), ("all", "float32,tf32")],
    ids=["bf16 alone", "tf32 first", "all backends"],
)
def test_bench_refuses_a_precision_no_chosen_backend_offers_before_timing_anything(tmp_path, backends, precisions):
    """Each of these printed part of a table, then a TypeError traceback, and wrote no --json."""
    result = _bench("--backends", backends, "--precision", precisions, "--json", "b.json", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastmlp: error: nothing would be timed for precision ")
    assert "float32" in lines[0].split("; ")[-1]  # what would work
    assert "epoch/floor" not in result.stdout and not (tmp_path / "b.json").exists()


# ----------------------------------------------------------------- which library does the products


def test_numpys_blas_is_the_one_numpy_ships_whatever_else_is_loaded_first():
    """Numba loads SciPy's copy of OpenBLAS; the numba backend's BLAS line named that copy's version."""
    from threadpoolctl import threadpool_info

    from fastmlp.backends import get_backend

    if importlib.util.find_spec("numba") is None:
        pytest.skip("Numba is not installed: nothing loads a second BLAS here")
    facts = get_backend("numba").describe()  # runs a kernel: Numba loads what it needs
    blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    if len(blas) < 2:
        pytest.skip("only one BLAS is loaded in this process")
    declared = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["version"]
    assert _sysinfo.numpy_blas(blas[::-1])["version"] == declared  # the other copy listed first
    assert facts["blas"].endswith(declared) and facts["products"] == f"NumPy's BLAS, {facts['blas']}"
    assert "copy, not NumPy's" in facts["other_blas"]


def test_the_table_says_which_library_does_each_backends_products():
    result = benchmark.compare(["numpy", *(["torch"] if importlib.util.find_spec("torch") else [])], **TINY, **QUIET)
    lines = benchmark.format_table(result["configs"][0]).splitlines()
    blas = _sysinfo.blas_info()["blas"]
    line = next(line for line in lines if line.startswith("products by: "))
    assert line.startswith(f"products by: numpy: NumPy's BLAS, {blas}")
    if "torch" in result["configs"][0]["backends"]:
        import torch

        assert "; torch: PyTorch's BLAS, " in line
        assert ("; torch: PyTorch's BLAS, mkl" in line) == torch.backends.mkl.is_available()
        assert line.endswith(", and oneDNN for the products with W2") == torch.backends.mkldnn.is_available()
