"""The benchmark module's own logic (timings themselves are checked by bench/, not here)."""

import importlib.util
import json

import numpy as np
import pytest

from fastmlp import _sysinfo, benchmark, plotting


def test_epoch_flops_matches_the_cost_in_the_math_notes():
    # docs: X@W1 and Xᵀ@d1 are 9.4 GFLOP each, X_valid@W1 3.1 GFLOP, everything else under 0.5 GFLOP
    flops = benchmark.epoch_flops(6000, 2000, 1000)
    large = 2 * 6000 * 784 * 1000 * 2 + 2 * 2000 * 784 * 1000
    assert large == pytest.approx(9.4e9 * 2 + 3.1e9, rel=0.01)
    assert 0 < flops - large < 0.5e9


def test_compare_records_every_raw_time_and_the_per_round_floor_ratio(tmp_path):
    result = benchmark.compare(
        ["numpy"], dtypes=("float32",), hiddens=(16,), n=200, n_valid=50, epochs=4, warmup=1, log=lambda line: None
    )
    entry = result["configs"][0]["backends"]["numpy"]
    assert len(entry["epoch_s"]) == 4 and len(entry["floor_s"]) == 4
    ratios = sorted(e / f for e, f in zip(entry["epoch_s"], entry["floor_s"], strict=True))
    assert entry["floor_ratio"] == pytest.approx((ratios[1] + ratios[2]) / 2)
    assert entry["speedup_vs_baseline"] == 1.0 and result["configs"][0]["baseline"] == "numpy"
    assert result["machine"]["cpu_count"] >= 1
    benchmark.write_json(result, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["configs"][0]["hidden"] == 16


def test_sweep_and_its_plot(tmp_path):
    points = benchmark.sweep(
        ["numpy"], hiddens=(8, 16), ns=(50, 100), base_n=100, base_hidden=16, epochs=1, log=lambda line: None
    )
    assert [(p["n"], p["hidden"]) for p in points] == [(100, 8), (100, 16), (50, 16)]
    assert all(p["median_s"] > 0 for p in points)
    plotting.plot_sweep(points, tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"


def test_peers_run_in_the_same_rounds_beside_their_backend():
    """bench --peers: each library's own loop (bench/peers/) is timed in the same rounds as fastmlp on
    that library, and the table states fastmlp's epoch over the loop's."""
    import importlib.util

    libraries = [name for name in ("torch", "jax") if importlib.util.find_spec(name) is not None]
    if not libraries:
        pytest.skip("neither PyTorch nor JAX is installed here: no peer loop can run")
    said = []
    result = benchmark.compare(
        libraries,
        dtypes=("float32",),
        hiddens=(16,),
        n=200,
        n_valid=50,
        epochs=3,
        warmup=1,
        peers=True,
        log=said.append,
    )
    config = result["configs"][0]
    for name in libraries:
        peer = config["backends"][f"{name} own loop"]
        assert peer["peer"] and not config["backends"][name]["peer"]
        assert len(peer["epoch_s"]) == len(peer["floor_s"]) == 3 and min(peer["epoch_s"]) > 0
        assert config["vs_own_loop"][name] == pytest.approx(config["backends"][name]["median_s"] / peer["median_s"])
        assert f"fastmlp on {name} / {name}'s own loop:" in said[-1]


def test_peers_missing_from_an_installed_package_are_reported(tmp_path):
    said = []
    assert benchmark.load_peers(said.append, folder=tmp_path / "bench" / "peers") == {}
    assert "peers not available" in said[0] and "not in an installed wheel" in said[0]


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
