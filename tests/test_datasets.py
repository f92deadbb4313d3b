"""notMNIST loading: the real sample, and tiny npz / idx files (raw and gzip) written here."""

import hashlib
import os

import numpy as np
import pytest

from fastmlp import datasets
from fastmlp.errors import InvalidInputError, MissingFileError

from .helpers import write_idx


def tiny_images(n=20, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), (np.arange(n) % 10).astype(np.uint8)


def course_split(images, labels, n_train, n_valid):
    """The course starter's own code, with the global RNG (state restored afterwards)."""
    state = np.random.get_state()
    try:
        np.random.seed(521)
        idx = np.arange(len(labels))
        np.random.shuffle(idx)
    finally:
        np.random.set_state(state)
    X, y = images[idx].reshape(len(labels), -1) / 255.0, labels[idx]
    return (
        (X[:n_train], y[:n_train]),
        (X[n_train : n_train + n_valid], y[n_train : n_train + n_valid]),
        (X[n_train + n_valid :], y[n_train + n_valid :]),
    )


def test_the_external_sample_matches_its_published_checksums(external_sample):
    for name, digest in datasets.SAMPLE_FILES.items():
        assert hashlib.sha256((external_sample / name).read_bytes()).hexdigest() == digest


def test_the_shipped_sample_matches_its_published_checksums_and_has_its_licence():
    for name, digest in datasets.SAMPLE_FILES.items():
        assert hashlib.sha256((datasets.EMBEDDED_SAMPLE / name).read_bytes()).hexdigest() == digest
    assert "Copyright (c) 2016 David Flanagan" in (datasets.EMBEDDED_SAMPLE / "LICENSE").read_text()
    assert "notMNIST-to-MNIST" in (datasets.EMBEDDED_SAMPLE / "README.md").read_text()


def test_without_fastmlp_data_the_shipped_sample_is_used(monkeypatch):
    monkeypatch.delenv("FASTMLP_DATA", raising=False)
    data = datasets.load_notmnist()
    assert data.source.startswith(str(datasets.EMBEDDED_SAMPLE))
    assert [len(part[1]) for part in (data.train, data.valid, data.test)] == [6000, 2000, 2000]


def test_the_real_sample_loads_and_splits_6000_2000_2000(notmnist):
    (X, y), (Xv, yv), (Xt, yt) = notmnist.train, notmnist.valid, notmnist.test
    assert X.shape == (6000, 784) and Xv.shape == (2000, 784) and Xt.shape == (2000, 784)
    assert X.dtype == np.float32 and y.dtype == np.int64
    assert X.min() >= 0.0 and X.max() <= 1.0
    assert set(np.unique(y)) == set(range(10))
    assert np.bincount(np.concatenate([y, yv, yt])).tolist() == [1000] * 10


def test_the_split_is_the_course_starters(notmnist, sample_folder):
    images = datasets.read_idx(sample_folder / "t10k-images-idx3-ubyte.gz")
    labels = datasets.read_idx(sample_folder / "t10k-labels-idx1-ubyte.gz")
    expected = course_split(images, labels, 6000, 2000)
    for (X, y), (eX, ey) in zip((notmnist.train, notmnist.valid, notmnist.test), expected, strict=True):
        assert np.array_equal(y, ey)
        assert np.array_equal(X, eX.astype(np.float32))


@pytest.mark.parametrize("suffix", ["", ".gz"], ids=["raw", "gz"])
def test_idx_pair_in_a_folder(tmp_path, suffix):
    images, labels = tiny_images(20)
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels)
    for source in (tmp_path, tmp_path / f"train-images-idx3-ubyte{suffix}"):
        data = datasets.load_notmnist(source, dtype="float64")
        expected = course_split(images, labels, 12, 4)
        for got, want in zip((data.train, data.valid, data.test), expected, strict=True):
            assert np.array_equal(got[1], want[1])
            np.testing.assert_array_equal(got[0], want[0])


def test_course_npz_is_split_10000_6000_rest(tmp_path):
    images, labels = tiny_images(18724 // 4, seed=1)
    images = np.concatenate([images] * 4 + [images[: 18724 - 4 * len(images)]])
    labels = np.concatenate([labels] * 4 + [labels[: 18724 - 4 * len(labels)]])
    np.savez(tmp_path / "notMNIST.npz", images=images, labels=labels)
    data = datasets.load_notmnist(tmp_path)
    assert [len(part[1]) for part in (data.train, data.valid, data.test)] == [10000, 6000, 2724]
    expected = course_split(images, labels, 10000, 6000)
    assert np.array_equal(data.valid[1], expected[1][1])
    np.testing.assert_array_equal(data.test[0], expected[2][0].astype(np.float32))


def test_fastmlp_data_environment_variable(tmp_path, monkeypatch, sample_folder):
    images, labels = tiny_images(10)
    np.savez(tmp_path / "mine.npz", images=images, labels=labels)
    monkeypatch.setenv("FASTMLP_DATA", str(tmp_path / "mine.npz"))
    assert datasets.load_notmnist().source == str(tmp_path / "mine.npz")
    assert datasets.load_notmnist(sample_folder).source.startswith(str(sample_folder))  # argument wins


def test_reading_leaves_the_global_random_state_alone(tmp_path, sample_folder):
    np.random.seed(7)
    before = np.random.get_state()[1].copy()
    datasets.load_notmnist(sample_folder)
    assert np.array_equal(np.random.get_state()[1], before)


# ----------------------------------------------------------------- bad files
def test_missing_path(tmp_path):
    with pytest.raises(MissingFileError, match="does not exist"):
        datasets.load_notmnist(tmp_path / "nope")


def test_folder_without_data(tmp_path):
    with pytest.raises(MissingFileError, match=r"neither notMNIST\.npz"):
        datasets.load_notmnist(tmp_path)


def _truncate_half(path):
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _overwrite_20_bytes(path):
    data = bytearray(path.read_bytes())
    data[20:40] = b"\xff" * 20
    path.write_bytes(bytes(data))


def _drop_last_5_bytes(path):
    path.write_bytes(path.read_bytes()[:-5])


#: a broken idx pair -> the error it must get: (file suffix, writer options, damage, labels kept, message)
BAD_IDX = {
    "truncated gz": (".gz", {}, _truncate_half, 20, r"x-images-idx3-ubyte.gz is not a readable gzip file"),
    "corrupt gz": (".gz", {}, _overwrite_20_bytes, 20, "gzip"),
    "wrong magic number": ("", {"magic": 0x00000801}, None, 20, r"wrong magic number 0x00000801, expected 0x00000803"),
    "wrong dtype byte": ("", {"dtype_byte": 0x0D}, None, 20, r"dtype byte 0x0d, expected 0x08"),
    "wrong payload size": (
        "",
        {},
        _drop_last_5_bytes,
        20,
        r"payload is 15675 bytes, the header's shape \(20, 28, 28\) needs 15680",
    ),
    "image and label counts differ": ("", {}, None, 19, "20 images but 19 labels"),
}


@pytest.mark.parametrize("case", BAD_IDX, ids=list(BAD_IDX))
def test_a_bad_idx_pair_is_one_clear_error(tmp_path, case):
    suffix, options, damage, n_labels, message = BAD_IDX[case]
    images, labels = tiny_images(20)
    path = write_idx(tmp_path / f"x-images-idx3-ubyte{suffix}", images, **options)
    write_idx(tmp_path / f"x-labels-idx1-ubyte{suffix}", labels[:n_labels])
    if damage is not None:
        damage(path)
    with pytest.raises(InvalidInputError, match=message):
        datasets.load_notmnist(tmp_path)


def test_npz_without_the_keys(tmp_path):
    np.savez(tmp_path / "notMNIST.npz", x=np.zeros((3, 28, 28), np.uint8), y=np.zeros(3, np.uint8))
    with pytest.raises(InvalidInputError, match="found keys: x, y"):
        datasets.load_notmnist(tmp_path)


def test_npz_with_object_arrays_is_refused(tmp_path):
    np.savez(tmp_path / "notMNIST.npz", images=np.array([object()] * 3, dtype=object), labels=np.zeros(3, np.uint8))
    with pytest.raises(InvalidInputError, match="object arrays are refused"):
        datasets.load_notmnist(tmp_path)


def test_npz_that_is_not_a_zip(tmp_path):
    (tmp_path / "notMNIST.npz").write_bytes(b"not a zip at all")
    with pytest.raises(InvalidInputError, match=r"not a readable \.npz"):
        datasets.load_notmnist(tmp_path)


def test_loading_never_changes_the_files(tmp_path):
    images, labels = tiny_images(20)
    path = write_idx(tmp_path / "x-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "x-labels-idx1-ubyte.gz", labels[:19])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(InvalidInputError):
        datasets.load_notmnist(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert os.path.exists(path)


def test_every_pixel_value_scales_exactly_like_the_seed(tmp_path):
    images = np.arange(256, dtype=np.uint8).reshape(1, 16, 16).repeat(5, axis=0)
    labels = np.arange(5, dtype=np.uint8)
    np.savez(tmp_path / "all.npz", images=images, labels=labels)
    for dtype in ("float32", "float64"):
        data = datasets.load_notmnist(tmp_path / "all.npz", dtype=dtype)
        X = np.concatenate([data.train[0], data.valid[0], data.test[0]])
        assert X.dtype == dtype
        assert np.array_equal(X[0], (np.arange(256) / 255.0).astype(dtype))
