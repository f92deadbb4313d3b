"""Bad data files, bad weights files, memory, settings and the command line's small promises
(rows of the fault list: tests/README.md says which). Real files on disk, real subprocesses."""

import gzip
import json
import os
import re
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

import fastmlp
from fastmlp import datasets, network
from fastmlp.errors import FastMLPError, HostMemoryError, InvalidInputError, InvalidTypeError, StorageError

from .helpers import run_measured, write_idx

REPO = Path(__file__).resolve().parent.parent


def images_npz(path, images, n=None):
    n = len(images) if n is None else n
    np.savez(path, images=images, labels=np.arange(n) % 10)
    return path


def pixels(dtype, n=20, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 28, 28)).astype(dtype)


# ------------------------------------------------------------- image values
def test_float_images_in_0_1_are_used_as_they_are(tmp_path):
    raw = pixels(np.uint8)
    as_uint8 = datasets.load_notmnist(images_npz(tmp_path / "a.npz", raw), dtype="float64")
    as_float = datasets.load_notmnist(images_npz(tmp_path / "b.npz", raw / 255.0), dtype="float64")
    np.testing.assert_allclose(as_float.train[0], as_uint8.train[0], rtol=0, atol=1e-15)
    assert np.array_equal(as_float.train[1], as_uint8.train[1])


@pytest.mark.parametrize("dtype", [np.int16, np.int64, np.uint16, np.float32])
def test_integer_images_within_0_255_are_accepted(tmp_path, dtype):
    raw = pixels(np.uint8)
    scaled = (raw / 255).astype(dtype) if np.issubdtype(dtype, np.floating) else raw.astype(dtype)
    data = datasets.load_notmnist(images_npz(tmp_path / "a.npz", scaled))
    expected = datasets.load_notmnist(images_npz(tmp_path / "b.npz", raw))
    np.testing.assert_allclose(data.train[0], expected.train[0], rtol=1e-6)


@pytest.mark.parametrize(
    "dtype, value, index, pattern",
    [
        (np.int64, 300, (3, 4, 5), r"images\[3, 4, 5\] = 300 \(dtype int64\): integer pixels must be 0-255"),
        (np.int16, -1, (0, 0, 7), r"images\[0, 0, 7\] = -1 \(dtype int16\): integer pixels must be 0-255"),
        (
            np.float64,
            2.0,
            (9, 27, 27),
            r"images\[9, 27, 27\] = 2.0 \(dtype float64\): floats must already be scaled to \[0, 1\]",
        ),
        (np.float32, np.nan, (1, 1, 1), r"images\[1, 1, 1\] = nan"),
    ],
    ids=["int64 300", "int16 -1", "float 2", "float nan"],
)
def test_images_outside_their_formats_range_are_refused_with_value_and_index(tmp_path, dtype, value, index, pattern):
    images = pixels(np.uint8).astype(dtype) / (255 if np.issubdtype(dtype, np.floating) else 1)
    images = images.astype(dtype)
    images[index] = value
    with pytest.raises(InvalidInputError, match=pattern):
        datasets.load_notmnist(images_npz(tmp_path / "x.npz", images))


def test_bool_images_are_refused(tmp_path):
    with pytest.raises(InvalidTypeError, match="images have dtype bool"):
        datasets.load_notmnist(images_npz(tmp_path / "x.npz", pixels(np.uint8) > 100))


def test_a_data_set_too_small_to_split(tmp_path):
    with pytest.raises(InvalidInputError, match="4 images are too few to split into train / valid / test; at least 5"):
        datasets.load_notmnist(images_npz(tmp_path / "x.npz", pixels(np.uint8, n=4)))
    data = datasets.load_notmnist(images_npz(tmp_path / "y.npz", pixels(np.uint8, n=5)))
    assert [len(part[1]) for part in (data.train, data.valid, data.test)] == [3, 1, 1]


# --------------------------------------------------------- decompression bomb
def test_a_gz_bomb_is_refused_after_reading_what_the_header_declares(tmp_path):
    header = bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in (10, 28, 28))
    bomb = tmp_path / "x-images-idx3-ubyte.gz"
    compressor = zlib_stream = gzip.GzipFile(bomb, "wb", compresslevel=1)
    with compressor:
        compressor.write(header)
        zeros = bytes(1 << 20)
        for _ in range(256):  # 256 MiB of payload where the header declares 7,840 bytes
            zlib_stream.write(zeros)
    assert bomb.stat().st_size < 2 << 20
    write_idx(tmp_path / "x-labels-idx1-ubyte.gz", np.arange(10) % 10)
    tracemalloc.start()
    try:
        with pytest.raises(
            InvalidInputError,
            match=r"payload is longer than the 7840 bytes the header's shape "
            r"\(10, 28, 28\) declares; refused after reading 7857 bytes",
        ):
            datasets.load_notmnist(tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20  # a few MiB at most, never the 256 MiB inside


def test_a_header_promising_gigabytes_allocates_only_what_arrives(tmp_path):
    path = tmp_path / "x-images-idx3-ubyte.gz"
    path.write_bytes(
        gzip.compress(bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in (3_000_000, 28, 28)) + bytes(5000))
    )
    tracemalloc.start()
    try:
        with pytest.raises(
            InvalidInputError,
            match=r"is not a readable gzip file \(truncated or corrupt: the header's shape \(3000000, 28, 28\) "
            r"needs 2352000000 bytes, more than a \d+-byte gzip file can hold, deflate inflating at most 1032 times\)",
        ):
            datasets.read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


# ----------------------------------------------------- folders and odd files
def test_a_folder_with_two_data_sets_names_the_one_it_used(tmp_path):
    for prefix in ("train", "t10k"):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", pixels(np.uint8))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", np.arange(20) % 10)
    source = datasets.load_notmnist(tmp_path).source
    assert source.startswith(str(tmp_path / "t10k-images-idx3-ubyte"))
    assert "the first of 2 data sets in the folder; not used: train-images-idx3-ubyte" in source


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_a_folder_or_non_regular_file_is_named_as_such(tmp_path, kind):
    path = tmp_path / "x-images-idx3-ubyte"
    weights = tmp_path / "w.npz"
    for p in (path, weights):
        os.mkdir(p) if kind == "folder" else os.mkfifo(p)
    expected = "is a folder, not a file" if kind == "folder" else r"is a named pipe \(FIFO\), not a file"
    with pytest.raises(InvalidInputError, match=expected):
        datasets.read_idx(path)
    with pytest.raises(InvalidInputError, match=expected):
        datasets.read_npz(weights)
    with pytest.raises(InvalidInputError, match=f"weights file {weights} {expected}"):
        fastmlp.MLP.load(weights)


def test_a_cache_path_that_is_a_file(tmp_path, monkeypatch):
    (tmp_path / "cache").write_text("x")
    monkeypatch.delenv("FASTMLP_DATA", raising=False)
    monkeypatch.setenv("FASTMLP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets, "EMBEDDED_SAMPLE", tmp_path / "not-shipped")
    with pytest.raises(StorageError, match=f"FASTMLP_CACHE {tmp_path / 'cache'} is a file, not a folder"):
        datasets.load_notmnist()


@pytest.mark.parametrize(
    "value, expected",
    [
        ("1", True),
        ("TRUE", True),
        ("yes", True),
        (" on ", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("", False),
    ],
)
def test_fastmlp_offline_spellings(monkeypatch, value, expected):
    monkeypatch.setenv("FASTMLP_OFFLINE", value)
    assert datasets.offline() is expected


def test_fastmlp_offline_refuses_other_values(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTMLP_OFFLINE", "maybe")
    with pytest.raises(
        InvalidInputError, match=r"FASTMLP_OFFLINE='maybe' is neither true \(1, true, yes, on\) nor false"
    ):
        datasets.download_sample(tmp_path)


# -------------------------------------------------------------------- memory
def test_a_model_too_big_for_the_host_is_a_host_memory_error():
    with pytest.raises(HostMemoryError) as raised:
        fastmlp.MLP(784, 10**9, 10)
    error = raised.value
    assert isinstance(error, MemoryError) and isinstance(error, FastMLPError)
    n_params = 784 * 10**9 + 10**9 * 10 + 10**9 + 10
    assert error.bytes_requested == (8 + 4) * n_params  # drawn in float64, cast to float32, both at once
    assert 0 < error.bytes_available < error.bytes_requested
    assert "creating MLP(784, 1000000000, 10) needs 8.68 TiB" in str(error) and "smaller model" in str(error)
    assert "of memory available now" in str(error)


def _weights_file(path, shapes, arrays):
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
        archive.writestr(
            "metadata.json",
            json.dumps({"format": "fastmlp-weights", "format_version": 1, "dtype": "float32", "shapes": shapes}),
        )
    return path


def test_a_weights_file_declaring_a_huge_w1_is_a_host_memory_error(tmp_path):
    params = network.init_params(784, 4, 10, seed=0, dtype="float32")
    shapes = {"W1": [784, 10**9], "b1": [10**9], "W2": [10**9, 10], "b2": [10]}
    path = _weights_file(tmp_path / "w.npz", shapes, params)
    with pytest.raises(HostMemoryError, match=r"loading .*w.npz needs .* TiB"):
        fastmlp.MLP.load(path)


def test_a_truncated_array_in_a_weights_file_is_called_truncated(tmp_path):
    net = fastmlp.MLP(784, 8, 10)
    net.save(tmp_path / "w.npz")
    with zipfile.ZipFile(tmp_path / "w.npz") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["W1.npy"] = members["W1.npy"][:1000]
    with zipfile.ZipFile(tmp_path / "cut.npz", "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(InvalidInputError) as raised:
        fastmlp.MLP.load(tmp_path / "cut.npz")
    assert "W1.npy is truncated: 1000 bytes, its shape (784, 8) needs 25088 bytes of data" in str(raised.value)
    assert "pickle" not in str(raised.value)


# ------------------------------------------------------------------ settings
def test_dtype_none_means_the_default_everywhere():
    assert fastmlp.MLP(784, 4, 10, dtype=None).dtype == "float32"
    params64 = network.init_params(784, 4, 10, seed=0, dtype="float64")
    assert fastmlp.MLP.from_params(params64, dtype=None).dtype == "float64"  # the parameters' own


def test_from_params_with_one_class_is_refused_like_the_constructor():
    params = network.init_params(784, 4, 1, seed=0, dtype="float32")
    with pytest.raises(InvalidInputError, match=r"n_out must be at least 2 classes, got 1 \(the columns of W2\)"):
        fastmlp.MLP.from_params(params)
    with pytest.raises(InvalidInputError, match="n_out must be at least 2"):
        fastmlp.MLP(784, 4, 1)


# ------------------------------------------------------------- command line
def cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "fastmlp", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_version():
    result = cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"fastmlp {fastmlp.__version__}"


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["bench", "--dtype", ""],
            "fastmlp: error: argument --dtype: expected one or more comma-separated values, got '' (see fastmlp bench --help)",
        ),
        (
            ["bench", "--hidden", ""],
            "fastmlp: error: argument --hidden: expected one or more comma-separated values, got '' (see fastmlp bench --help)",
        ),
        (
            ["bench", "--backends", " , "],
            "fastmlp: error: argument --backends: expected one or more comma-separated values, got ' , ' (see fastmlp bench --help)",
        ),
        (["train", "--frobnicate"], "fastmlp: error: unrecognized arguments: --frobnicate (see fastmlp train --help)"),
        (
            ["train", "--batch-size", "x"],
            "fastmlp: error: argument --batch-size: expected an integer, got 'x' (see fastmlp train --help)",
        ),
        # a value the API refuses is named by its flag, before any data is loaded
        (["train", "--batch-size", "-3"], "fastmlp: error: --batch-size must be an integer >= 1, got -3"),
    ],
    ids=["empty dtype", "empty hidden", "empty backends", "unknown flag", "batch size not a number", "batch size"],
)
def test_usage_errors_say_fastmlp_once_and_point_at_the_sub_commands_help(args, message):
    result = cli(*args)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == message


def test_info_flags_an_invalid_backend_variable():
    result = cli("info", env={"FASTMLP_BACKEND": "tensorflow"})
    assert "chosen by default: invalid: unknown backend 'tensorflow'" in result.stdout
    assert result.stderr.strip().startswith(
        "fastmlp: warning: unknown backend 'tensorflow' from the environment variable"
    )


def test_the_first_run_needs_no_network_and_no_fastmlp_data(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "FASTMLP_DATA"}
    env.update(FASTMLP_OFFLINE="1", FASTMLP_CACHE=str(tmp_path / "empty-cache"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastmlp",
            "train",
            "--epochs",
            "2",
            "--hidden",
            "20",
            "--no-progress",
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert (
        f"data: {datasets.EMBEDDED_SAMPLE / 't10k-images-idx3-ubyte.gz'} (train 6000, valid 2000, test 2000)"
        in result.stdout
    )
    assert not (tmp_path / "empty-cache").exists()


def test_no_test_hard_wires_a_path_outside_the_checkout():
    for path in sorted((REPO / "tests").glob("*.py")):
        if path.name == Path(__file__).name:
            continue
        text = path.read_text()
        assert '"shared"' not in text and '"../shared' not in text and "/work/" not in text, path.name


#: a path into this checkout, as the README and the sources cite it ("docs/letters/C.png", "bench/peers")
CITED_PATH = re.compile(r"(?<![\w./-])(?:bench|ci|docs|examples|fastmlp|tests)/[\w./-]*\w")


def test_every_path_the_readmes_the_documentation_and_the_sources_cite_exists():
    sources = [REPO / "README.md", REPO / "tests" / "README.md", *(REPO / "docs").rglob("*.md"), REPO / "mkdocs.yml"]
    sources += [*(REPO / "fastmlp").rglob("*.py"), *(REPO / "docs").rglob("*.py")]
    sources += [*(REPO / "tests").glob("*.py"), *(REPO / "bench").rglob("*.py"), *(REPO / "examples").glob("*.py")]
    cited = {(path.name, found) for path in sources for found in CITED_PATH.findall(path.read_text())}
    assert len(cited) > 20  # the README cites its pictures, scripts and tests
    assert sorted((name, found) for name, found in cited if not (REPO / found).exists()) == []


def test_an_npz_whose_header_promises_more_than_it_holds(tmp_path):
    with zipfile.ZipFile(tmp_path / "notMNIST.npz", "w") as archive:
        with archive.open("images.npy", "w") as member:
            np.lib.format.write_array_header_1_0(
                member, {"descr": "|u1", "fortran_order": False, "shape": (100_000_000, 28, 28)}
            )
            member.write(bytes(1000))
        with archive.open("labels.npy", "w") as member:
            np.lib.format.write_array(member, np.zeros(10, np.uint8))
    with pytest.raises(
        InvalidInputError,
        match=r"images.npy is truncated: \d+ bytes, its shape \(100000000, 28, 28\) "
        r"needs 78400000000 bytes",
    ):
        datasets.load_notmnist(tmp_path)


@pytest.mark.parametrize("flag", ["--json", "--plot"])
def test_bench_checks_its_output_files_before_timing_anything(tmp_path, flag):
    result = cli("bench", "--backends", "numpy", flag, str(tmp_path / "missing" / "out.x"))
    assert result.returncode == 2 and result.stdout == ""
    assert (
        result.stderr.strip()
        == f"fastmlp: error: {flag} {tmp_path / 'missing' / 'out.x'}: the folder {tmp_path / 'missing'} does not exist"
    )


OUT_OF_MEMORY_CHILD = """
import resource
resource.setrlimit(resource.RLIMIT_AS, (1500 << 20, 1500 << 20))  # 1.5 GiB of address space
import numpy as np, fastmlp
from fastmlp.errors import HostMemoryError
X, y = np.zeros((20000, 784), np.float32), np.arange(20000) % 10
model = fastmlp.MLP(784, 20000, 10, backend="numpy")  # fits; its 20000 x 20000 activations do not
try:
    model.fit(X, y, epochs=1)
except HostMemoryError as exc:
    print(isinstance(exc, MemoryError), exc.bytes_requested, exc)
"""


def test_running_out_of_host_memory_in_fit_is_a_host_memory_error():
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "FASTMLP_BACKEND": ""}
    result = subprocess.run(
        [sys.executable, "-c", OUT_OF_MEMORY_CHILD], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "True 1600000000 out of memory training: 1.49 GiB (1600000000 bytes) could not "
        "be allocated; free memory, or use a smaller model or data set"
    )


# ------------------------------------------------------- row 43: labels that are not integers
def small_model_file(path, n_out=10, classes=None):
    fastmlp.MLP(784, 4, n_out, classes=classes).save(path)
    return path


#: labels of a dtype that is not an integer -> the words the error line must hold
LABELS_NOT_INTEGERS = {
    "letters": (np.array(list("ABCDE")), "labels are text (dtype <U1)"),
    "structured": (np.zeros(5, dtype=[("letter", "U1"), ("score", "f4")]), "labels are structured records"),
    "strings and floats": (np.array(["A", 1.0, 2.5, "B", 3.0]), "labels are text (dtype <U32)"),
}


@pytest.mark.parametrize("case", LABELS_NOT_INTEGERS, ids=list(LABELS_NOT_INTEGERS))
def test_row43_labels_that_are_not_integers_are_one_error_line_naming_the_dtype(tmp_path, case):
    labels, words = LABELS_NOT_INTEGERS[case]
    data = tmp_path / "data.npz"
    np.savez(data, images=pixels(np.uint8, n=5), labels=labels)
    model_file = small_model_file(tmp_path / "model.npz")
    for command in (
        ["evaluate", str(model_file), "--data", str(data), "--out", str(tmp_path / "evaluated")],
        ["train", "--epochs", "1", "--hidden", "4", "--data", str(data), "--out", str(tmp_path / "trained")],
    ):
        result = cli(*command)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"fastmlp: error: {data}: {words}"), lines
        assert lines[0].endswith("they must be integers 0-9, the letters A-J in order (A=0 ... J=9)")
    predicted = cli("predict", str(model_file), str(data))  # predict does not use the labels
    assert predicted.returncode == 0, predicted.stderr
    assert len(predicted.stdout.splitlines()) == 5


# ---------------------------------------- row 45: zip members Python cannot read, deep metadata
def claim_in_zip(path, member, *, method=None, encrypted=False):
    """Make the zip archive at ``path`` claim that ``member`` is compressed by ``method`` (a zip method
    number) or encrypted, in its local header and its central directory entry (its bytes unchanged)."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    with zipfile.ZipFile(path) as archive:
        local = archive.getinfo(member).header_offset
    central = next(
        at
        for at in range(len(data) - 4)
        if data[at : at + 4] == b"PK\x01\x02" and data[at + 46 : at + 46 + len(name)] == name
    )
    for flags_at in (local + 6, central + 8):  # then the method, 2 bytes further
        if encrypted:
            data[flags_at] |= 0x01
        if method is not None:
            data[flags_at + 2 : flags_at + 4] = method.to_bytes(2, "little")
    path.write_bytes(bytes(data))
    return path


def deep_metadata(path):
    """A weights file whose metadata.json (under 64 KiB) nests 30,000 lists."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["metadata.json"] = b"[" * 30_000 + b"]" * 30_000
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize(
    "case, words",
    [
        ("weights, Deflate64", "W1.npy is compressed by zip method 9, which Python cannot read"),
        ("weights, encrypted", "W1.npy is encrypted"),
        ("weights, PPMd metadata", "metadata.json is compressed by zip method 98, which Python cannot read"),
        ("weights, deep metadata", "metadata.json is nested too deeply to be a weights file's metadata"),
        ("images, Deflate64", "images.npy is compressed by zip method 9, which Python cannot read"),
        ("images, encrypted", "images.npy is encrypted"),
    ],
)
def test_row45_zip_members_python_cannot_read_are_one_error_line(tmp_path, case, words):
    model_file = small_model_file(tmp_path / "model.npz")
    images = tmp_path / "images.npz"
    np.savez(images, images=pixels(np.uint8, n=3))
    member = {"weights": "W1.npy", "images": "images.npy"}[case.split(",")[0]]
    target = model_file if case.startswith("weights") else images
    if "metadata" in case:
        member = "metadata.json"
    if "deep" in case:
        deep_metadata(model_file)
    else:
        claim_in_zip(
            target, member, method={"D": 9, "P": 98}.get(case.split(", ")[1][0]), encrypted="encrypted" in case
        )
    result = cli("predict", str(model_file), str(images))
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"fastmlp: error: {target}") and words in lines[0], lines


# ------------------------------------------------- row 47: one memory budget for every input
#: the most memory any command of these tests may take (the project's promise for its own test files)
PEAK_LIMIT = 600 << 20


def fastmlp_command(*args):
    return [sys.executable, "-m", "fastmlp", *args]


def zeros_npz(path, **shapes):
    """An .npz of uint8 zeros of these shapes, deflated, written a chunk at a time (never held whole)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, shape in shapes.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_1_0(member, {"descr": "|u1", "fortran_order": False, "shape": shape})
                for start in range(0, int(np.prod(shape)), 1 << 24):
                    member.write(bytes(min(1 << 24, int(np.prod(shape)) - start)))
    return path


def test_row47_large_images_are_refused_or_reduced_early_within_600_mb(tmp_path):
    model_file = small_model_file(tmp_path / "model.npz")
    one_bit = Image.new("1", (9400, 9400), 0)
    ImageDraw.Draw(one_bit).rectangle((3000, 2000, 6000, 7000), fill=1)
    one_bit.save(tmp_path / "huge-1bit.png")  # 18 KB, 88.4 megapixels
    deep = np.zeros((7000, 7000), np.uint16)
    deep[1500:5500, 2500:4500] = 65535
    Image.fromarray(deep).save(tmp_path / "large-16bit.png")  # 49 megapixels, just under the limit
    Image.new("RGB", (8000, 6000), "black").save(tmp_path / "photo.jpg", quality=80)
    result, peak = run_measured(fastmlp_command("predict", str(model_file), str(tmp_path / "huge-1bit.png")))
    assert result.returncode == 2 and result.stderr.splitlines() == [
        f"fastmlp: error: {tmp_path / 'huge-1bit.png'} is 9400 x 9400 pixels (88.4 megapixels); a letter's image "
        "may have at most 50 megapixels: scale it down"
    ]
    assert peak < 200 << 20, peak  # refused from the header: nothing decoded
    for name in ("large-16bit.png", "photo.jpg"):
        result, peak = run_measured(fastmlp_command("predict", str(model_file), str(tmp_path / name)))
        assert peak < PEAK_LIMIT, (name, peak)
        assert result.returncode == (0 if name.endswith("png") else 2), result.stderr
    assert "photo.jpg: the image is blank" in result.stderr  # a black JPEG, decoded at an eighth of its size


def test_row47_an_npz_image_set_is_predicted_a_batch_at_a_time_within_600_mb(tmp_path):
    model_file = small_model_file(tmp_path / "model.npz")
    blank = zeros_npz(tmp_path / "blank.npz", images=(200_000, 28, 28))  # 157 MB of images in ~150 KB
    assert blank.stat().st_size < 1 << 20
    result, peak = run_measured(fastmlp_command("predict", "--top", "1", str(model_file), str(blank)))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 200_000 and lines[-1].startswith(f"{blank}[199999]: ")
    assert peak < PEAK_LIMIT, peak


def test_row47_what_needs_more_memory_than_is_available_is_refused_up_front_with_both_figures(tmp_path):
    """Under an address-space limit of 1.5 GiB: evaluate on 500,000 images (392 MB) needs their float32
    copy too (1.57 GB): refused before anything large is read."""
    model_file = small_model_file(tmp_path / "model.npz")
    data = zeros_npz(tmp_path / "big.npz", images=(500_000, 28, 28), labels=(500_000,))
    out = tmp_path / "evaluated"
    result, peak = run_measured(
        fastmlp_command("evaluate", str(model_file), "--data", str(data), "--out", str(out)),
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
        limit_address_space=1536 << 20,
    )
    assert result.returncode == 2 and not out.exists()
    (line,) = result.stderr.splitlines()
    needed = 500_000 * 784 * (1 + 4)
    assert line.startswith(
        f"fastmlp: error: reading {data} (an array of shape (500000, 28, 28) and its float32 copy) "
        f"needs 1.83 GiB ({needed} bytes) at its peak, more than the "
    ), line
    assert line.endswith("of memory available now; free memory, or use a smaller data set")
    available = int(re.search(r"more than the [\d.]+ [KMG]iB \((\d+) bytes\)", line).group(1))
    assert 0 < available < needed
    assert peak < 300 << 20  # refused before the images were read


def test_row47_a_weights_file_inflating_1000_times_is_refused_before_decompressing(tmp_path):
    shapes = {"W1": [784, 50_000], "b1": [50_000], "W2": [50_000, 10], "b2": [10]}
    zeros = {name: np.zeros(shape, np.float32) for name, shape in shapes.items()}
    path = tmp_path / "zeros.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in zeros.items():
            with archive.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, array)
        archive.writestr(
            "metadata.json",
            json.dumps({"format": "fastmlp-weights", "format_version": 1, "dtype": "float32", "shapes": shapes}),
        )
    assert path.stat().st_size < 1 << 20  # 159 MB of zeros
    result, peak = run_measured(fastmlp_command("predict", str(path), str(tmp_path / "any.png")))
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert "its arrays would decompress to 152 MiB" in result.stderr
    assert "refused as a decompression bomb, without decompressing" in result.stderr
    assert peak < 200 << 20


def test_row47_bench_refuses_sizes_beyond_the_memory_before_timing_anything():
    result = cli("bench", "--backends", "numpy", "--n", "3000000")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(
        "fastmlp: error: bench with --n 3000000, --valid 2000, --hidden 1000 on 1 host backend(s) needs 75.8 GiB"
    )
    assert result.stderr.rstrip().endswith("use a smaller --n, --valid or --hidden, or fewer --backends")
