"""The fastmlp command, run as a real subprocess."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastmlp

from .helpers import write_idx

#: FASTMLP_DATA as the suite found it (None: the shipped sample is used)
SAMPLE_ENV = {"FASTMLP_DATA": os.environ["FASTMLP_DATA"]} if os.environ.get("FASTMLP_DATA") else {}


def fastmlp_cli(*args, env=None, cwd=None, timeout=300):
    environment = {**os.environ, **SAMPLE_ENV, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "fastmlp", *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=cwd,
        timeout=timeout,
    )


def test_train_prints_the_results_and_writes_the_run(tmp_path, backend_name):
    out = tmp_path / "run"
    result = fastmlp_cli(
        "train", "--epochs", "3", "--hidden", "50", "--backend", backend_name, "--out", str(out), "--no-progress"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"backend: {backend_name} on ")
    for label in ("Training Loss", "Training Accuracy", "Validation Loss", "Validation Accuracy", "Test Accuracy"):
        matching = [line for line in lines if line.startswith(label + ": ")]
        assert len(matching) == 1, label
        assert 0 <= float(matching[0].split(": ")[1]) < 10
    assert sorted(p.name for p in out.iterdir()) == [
        "accuracy.png",
        "confusion.png",
        "history.csv",
        "loss.png",
        "mistakes.png",
        "model.npz",
        "summary.json",
        "summary.txt",
    ]
    for png in ("loss.png", "accuracy.png", "confusion.png", "mistakes.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(out / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["1", "2", "3"]
    assert float(rows[-1]["valid_acc"]) == pytest.approx(
        float(lines[[line.split(":")[0] for line in lines].index("Validation Accuracy")].split(": ")[1]), abs=5e-5
    )
    model = fastmlp.MLP.load(out / "model.npz")
    assert model.params["W1"].shape == (784, 50)
    assert model.classes == tuple("ABCDEFGHIJ")
    assert [line.split()[0] for line in lines if line[:1] in "ABCDEFGHIJ" and line[1:2] == " "] == list("ABCDEFGHIJ")
    listed = [line.split()[0] for line in (out / "summary.txt").read_text().split("files:\n")[1].splitlines()]
    assert sorted(listed) == sorted(p.name for p in out.iterdir())


def test_environment_variable_chooses_the_backend(tmp_path, backend_name):
    result = fastmlp_cli(
        "train",
        "--epochs",
        "1",
        "--hidden",
        "10",
        "--out",
        str(tmp_path / "r"),
        "--no-progress",
        env={"FASTMLP_BACKEND": backend_name.upper()},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"backend: {backend_name} on ")


def test_progress_bar_shows_running_loss(tmp_path):
    result = fastmlp_cli("train", "--epochs", "2", "--hidden", "10", "--backend", "numpy", "--out", str(tmp_path / "r"))
    assert result.returncode == 0
    assert "training (numpy)" in result.stderr and "loss=" in result.stderr and "val_acc=" in result.stderr


def test_info_lists_every_backend():
    result = fastmlp_cli("info")
    assert result.returncode == 0, result.stderr
    assert f"fastmlp: {fastmlp.__version__}" in result.stdout
    assert "numpy_version: " in result.stdout and "blas: " in result.stdout and "blas_threads: " in result.stdout
    for name in ("numpy", "numba", "cupy", "torch", "torch:cuda", "torch:mps", "jax", "jax:cpu", "jax:gpu"):
        assert any(line.strip().startswith(f"{name} ") and "usable:" in line for line in result.stdout.splitlines())
    assert "  numpy      installed: yes usable: yes  on CPU" in result.stdout


def test_console_script_is_installed():
    script = os.path.join(os.path.dirname(sys.executable), "fastmlp")
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "train" in result.stdout and "bench" in result.stdout


BAD_COMMANDS = {
    "unknown backend": (["train", "--backend", "tensorflow"], r"unknown backend 'tensorflow'"),
    "zero epochs": (["train", "--epochs", "0"], r"--epochs must be an integer >= 1, got 0"),
    "zero hidden": (["train", "--hidden", "0"], r"--hidden must be an integer >= 1, got 0"),
    "negative lr": (["train", "--lr", "-0.1"], r"--lr \(the learning rate\) must be a finite number > 0, got -0.1"),
    "nan lr": (["train", "--lr", "nan"], r"--lr \(the learning rate\) must be a finite number > 0"),
    "momentum 1": (["train", "--momentum", "1"], r"--momentum must be in \[0, 1\), got 1.0"),
    "batch size 0": (["train", "--batch-size", "0"], r"--batch-size must be an integer >= 1, got 0"),
    "bad dtype": (["train", "--dtype", "float16"], r"--dtype must be one of float32, float64, got 'float16'"),
    "not a number": (
        ["train", "--epochs", "many"],
        r"argument --epochs: expected an integer, got 'many' \(see fastmlp train --help\)",
    ),
    "negative seed": (["train", "--seed", "-1"], r"--seed must be an integer >= 0, got -1"),
    "unknown precision": (
        ["train", "--precision", "fp8"],
        r"--precision must be one of float32, tf32, bf16, got 'fp8'",
    ),
    "tf32 with float64": (
        ["train", "--precision", "tf32", "--dtype", "float64", "--backend", "numpy"],
        r"--precision 'tf32' needs dtype float32",
    ),
    "tf32 on the cpu": (
        ["train", "--precision", "tf32", "--backend", "numpy"],
        r"--precision 'tf32' is not offered by the numpy backend, which offers float32; it is offered by: cupy",
    ),
    "bench precision": (
        ["bench", "--precision", "float32,half"],
        r"--precision must be one of float32, tf32, bf16, got 'half'",
    ),
    "no command": ([], r"required: command"),
    "missing data": (
        ["train", "--data", "/nonexistent/notmnist"],
        r"data path /nonexistent/notmnist .* does not exist",
    ),
}


@pytest.mark.parametrize("case", BAD_COMMANDS, ids=list(BAD_COMMANDS))
def test_bad_input_is_one_line_on_stderr_and_status_2(tmp_path, case):
    args, pattern = BAD_COMMANDS[case]
    result = fastmlp_cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == "" or "backend:" in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("fastmlp")
    import re

    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_debug_shows_the_traceback(tmp_path):
    result = fastmlp_cli("--debug", "train", "--backend", "tensorflow", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("fastmlp: error: unknown backend")
    result = fastmlp_cli("train", "--backend", "tensorflow", "--debug", cwd=tmp_path)
    assert "Traceback (most recent call last)" in result.stderr


def test_corrupt_data_file_is_one_line(tmp_path, sample_folder):
    bad = tmp_path / "data"
    bad.mkdir()
    (bad / "t10k-images-idx3-ubyte.gz").write_bytes((sample_folder / "t10k-images-idx3-ubyte.gz").read_bytes()[:5000])
    (bad / "t10k-labels-idx1-ubyte.gz").write_bytes((sample_folder / "t10k-labels-idx1-ubyte.gz").read_bytes())
    before = {p.name: p.read_bytes() for p in bad.iterdir()}
    result = fastmlp_cli("train", "--data", str(bad), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("fastmlp: error: ")
    assert "not a readable gzip file" in result.stderr and "Traceback" not in result.stderr
    assert {p.name: p.read_bytes() for p in bad.iterdir()} == before
    assert not (tmp_path / "out").exists()


def test_divergence_writes_nothing(tmp_path):
    out = tmp_path / "out"
    result = fastmlp_cli(
        "train", "--lr", "1000", "--epochs", "20", "--hidden", "50", "--out", str(out), "--no-progress"
    )
    assert result.returncode == 2
    line = result.stderr.strip().splitlines()[-1]
    assert (
        line.startswith("fastmlp: error: training diverged at epoch ")
        and "lr=1000" in line
        and "last accepted loss" in line
    )
    assert not out.exists()


def test_bench_runs_and_writes_json_and_plot(tmp_path):
    result = fastmlp_cli(
        "bench",
        "--backends",
        "numpy",
        "--n",
        "500",
        "--valid",
        "100",
        "--hidden",
        "64",
        "--epochs",
        "3",
        "--warmup",
        "1",
        "--json",
        str(tmp_path / "b.json"),
        "--plot",
        str(tmp_path / "b.png"),
    )
    assert result.returncode == 0, result.stderr
    import json

    data = json.loads((tmp_path / "b.json").read_text())
    entry = data["configs"][0]["backends"]["numpy"]
    assert len(entry["epoch_s"]) == 3 and len(entry["floor_s"]) == 3
    assert entry["median_s"] == pytest.approx(float(np.median(entry["epoch_s"])))
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"
    assert "epoch/floor" in result.stdout


def _bad_data(kind, folder):
    images = np.zeros((20, 28, 28), np.uint8)
    labels = np.arange(20) % 10
    if kind == "wrong magic":
        write_idx(folder / "x-images-idx3-ubyte", images, magic=0x0803_0000)
        write_idx(folder / "x-labels-idx1-ubyte", labels)
    elif kind == "labels outside 0-9":
        write_idx(folder / "x-images-idx3-ubyte", images)
        write_idx(folder / "x-labels-idx1-ubyte", np.where(labels == 3, 12, labels))
    elif kind == "count mismatch":
        write_idx(folder / "x-images-idx3-ubyte", images)
        write_idx(folder / "x-labels-idx1-ubyte", labels[:18])
    elif kind == "npz missing keys":
        np.savez(folder / "notMNIST.npz", pictures=images, labels=labels)
    elif kind == "npz object arrays":
        np.savez(folder / "notMNIST.npz", images=np.array([None] * 20, object), labels=labels)


BAD_DATA = {
    "wrong magic": "wrong magic number 0x08030000, expected 0x00000803",
    "labels outside 0-9": r"labels\[\d+\] = 12; labels must be integers 0-9 \(A=0 ... J=9\)",
    "count mismatch": "20 images but 18 labels",
    "npz missing keys": "must hold arrays 'images' and 'labels'; found keys: labels, pictures",
    "npz object arrays": "object arrays are refused",
}


@pytest.mark.parametrize("kind", BAD_DATA, ids=list(BAD_DATA))
def test_bad_data_files_are_one_line_and_left_as_they_were(tmp_path, kind):
    import re

    folder = tmp_path / "data"
    folder.mkdir()
    _bad_data(kind, folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    result = fastmlp_cli("train", "--data", str(folder), "--out", str(tmp_path / "out"), "--no-progress")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastmlp: error: "), result.stderr
    assert re.search(BAD_DATA[kind], lines[0]), lines[0]
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert not (tmp_path / "out").exists()


def test_bench_with_no_usable_backend_says_why(tmp_path):
    result = fastmlp_cli("bench", "--backends", "cupy", "--json", str(tmp_path / "b.json"))
    if result.returncode == 0:
        pytest.skip("cupy can run here")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("fastmlp: error: none of the requested backends can run here: cupy: ")
    assert not (tmp_path / "b.json").exists()


# ------------------------------------------------------- standard output (row 46)
REPO = Path(__file__).resolve().parent.parent


def test_row46_a_file_name_that_is_not_utf8_is_printed_escaped(tmp_path, trained_model_file):
    letter = (REPO / "docs" / "letters" / "C.png").read_bytes()
    (tmp_path / "a.png").write_bytes(letter)
    odd = b"l\xffc.png"  # a Latin-1 name on a UTF-8 system
    with open(os.path.join(os.fsencode(tmp_path), odd), "wb") as handle:
        handle.write(letter)
    env = {**os.environ, **SAMPLE_ENV, "PYTHONIOENCODING": "utf-8"}
    for json_flag in ([], ["--json"]):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "fastmlp",
                "predict",
                str(trained_model_file),
                "a.png",
                os.fsdecode(odd),
                *json_flag,
            ],
            capture_output=True,
            env=env,
            cwd=tmp_path,
            timeout=300,
        )
        assert result.returncode == 0 and result.stderr == b"", result.stderr
        lines = result.stdout.decode("utf-8").splitlines()  # valid UTF-8 throughout
        if json_flag:
            assert [json.loads(line)["file"] for line in lines] == ["a.png", "l\\xffc.png"]
        else:
            assert lines[0].startswith("a.png: ") and lines[1].startswith("l\\xffc.png: ")


def test_row46_names_that_are_not_utf8_are_escaped_in_the_files_written_too(tmp_path, trained_model_file):
    folder = os.fsencode(tmp_path)
    model = os.path.join(folder, b"m\xff.npz")
    with open(model, "wb") as handle:
        handle.write(trained_model_file.read_bytes())
    result = subprocess.run(
        [sys.executable, "-m", "fastmlp", "evaluate", model, "--out", os.path.join(folder, b"out")],
        capture_output=True,
        env={**os.environ, **SAMPLE_ENV, "PYTHONIOENCODING": "utf-8"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    summary = (tmp_path / "out" / "summary.json").read_bytes().decode("utf-8")  # valid UTF-8
    assert json.loads(summary)["title"].startswith("fastmlp evaluate m\\xff.npz, ")
    assert (tmp_path / "out" / "summary.txt").read_bytes().decode("utf-8").startswith("fastmlp evaluate m\\xff.npz, ")
    assert result.stdout.decode("utf-8").startswith(f"model: {tmp_path}/m\\xff.npz ")


def test_row46_a_closed_standard_output_is_one_error_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "fastmlp", "info"],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.close(1),  # as `fastmlp info >&-`
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "fastmlp: error: standard output is closed; give it somewhere to go (a file, a pipe, or >/dev/null)\n"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
def test_row46_a_full_standard_output_is_one_error_line_after_the_work_is_done(tmp_path, trained_model_file):
    out = tmp_path / "out"
    with open("/dev/full", "w") as full:  # every write fails with ENOSPC
        result = subprocess.run(
            [sys.executable, "-m", "fastmlp", "evaluate", str(trained_model_file), "--out", str(out)],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **SAMPLE_ENV},
            timeout=300,
        )
    assert result.returncode == 2
    assert result.stderr == (
        "fastmlp: error: cannot write to standard output (No space left on device); "
        "the rest of what the command printed is lost\n"
    )
    assert sorted(p.name for p in out.iterdir()) == ["confusion.png", "mistakes.png", "summary.json", "summary.txt"]


# ------------------------------------------------------------ small promises
@pytest.mark.parametrize("name", ["torch:cuda", "jax:gpu", "torch:mps", "cupy"])
def test_info_says_when_the_backend_the_environment_chooses_cannot_run_here(name):
    result = fastmlp_cli("info", env={"FASTMLP_BACKEND": name})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    row = next(line for line in lines if line.strip().startswith(f"{name} "))  # the table's own verdict
    chosen = next(line for line in lines if line.startswith("chosen by default: "))
    if "usable: yes" in row:
        assert chosen == f"chosen by default: {name} (from FASTMLP_BACKEND='{name}')"
    else:
        why = row.split("  why: ", 1)[1]
        assert chosen == f"chosen by default: {name} (from FASTMLP_BACKEND='{name}'); it cannot run here: {why}"


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_an_unknown_fastmlp_offline_spelling_is_refused_before_any_work(tmp_path, command, sample_folder):
    args = ["evaluate", "model.npz"] if command == "evaluate" else ["train", "--epochs", "1"]
    result = fastmlp_cli(
        *args, "--data", str(sample_folder), "--out", "out", env={"FASTMLP_OFFLINE": "maybe"}, cwd=tmp_path
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        "fastmlp: error: FASTMLP_OFFLINE='maybe' is neither true (1, true, yes, on) "
        "nor false (0, false, no, off, empty)\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_the_documented_exit_status_table_lists_exactly_the_codes_of_the_command_line():
    from fastmlp import cli

    page = (REPO / "docs" / "command-line.md").read_text()
    table = page.split("| status | meaning |\n|---|---|\n", 1)[1].split("\n\n", 1)[0]
    listed = {int(code) for row in table.splitlines() for code in row.split("|")[1].split(",")}
    assert listed == {0} | {value for name, value in vars(cli).items() if name.startswith("EXIT_")}
