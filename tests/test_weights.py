"""Weights files: round trip, atomic saves under injected failures, and every kind of bad file."""

import errno
import hashlib
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

import fastmlp
from fastmlp import files, weights
from fastmlp.errors import InvalidInputError, MissingFileError, StorageError


@pytest.fixture
def net():
    return fastmlp.MLP(784, 16, 10, seed=2)


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_round_trip_is_exact(tmp_path, net, dtype):
    net = fastmlp.MLP(784, 16, 10, seed=2, dtype=dtype)
    net.save(tmp_path / "w.npz")
    again = fastmlp.MLP.load(tmp_path / "w.npz")
    assert again.dtype == dtype and (again.n_in, again.n_hidden, again.n_out) == (784, 16, 10)
    for name, value in net.params.items():
        assert np.array_equal(again.params[name], value) and again.params[name].dtype == value.dtype
    with zipfile.ZipFile(tmp_path / "w.npz") as archive:
        meta = json.loads(archive.read("metadata.json"))
    assert meta["format_version"] == 1 and meta["dtype"] == dtype and meta["fastmlp_version"] == fastmlp.__version__
    assert meta["shapes"] == {"W1": [784, 16], "b1": [16], "W2": [16, 10], "b2": [10]}


def test_the_file_is_a_plain_npz(tmp_path, net):
    net.save(tmp_path / "w.npz")
    with np.load(tmp_path / "w.npz", allow_pickle=False) as archive:
        assert np.array_equal(archive["W1"], net.params["W1"])


class Injected(Exception):
    pass


def _fail_on_call(original, call, error):
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            raise error
        return original(*args, **kwargs)

    return wrapper


INJECTIONS = [
    ("first array", weights, "_write_member", 1, OSError(errno.ENOSPC, "No space left on device")),
    ("second array", weights, "_write_member", 2, OSError(errno.ENOSPC, "No space left on device")),
    ("third array, Ctrl-C", weights, "_write_member", 3, KeyboardInterrupt()),
    ("fourth array, bug", weights, "_write_member", 4, Injected("bug while writing")),
    ("npy writer", np.lib.format, "write_array", 2, OSError(errno.EIO, "I/O error")),
    ("metadata", zipfile.ZipFile, "writestr", 1, OSError(errno.ENOSPC, "No space left on device")),
    ("fsync", os, "fsync", 1, OSError(errno.EIO, "I/O error")),
    ("fsync, Ctrl-C", os, "fsync", 1, KeyboardInterrupt()),
    ("replace", os, "replace", 1, OSError(errno.EXDEV, "Invalid cross-device link")),
    ("temporary file", files.tempfile, "mkstemp", 1, OSError(errno.EACCES, "Permission denied")),
]


@pytest.mark.parametrize("where, owner, attribute, call, error", INJECTIONS, ids=[i[0] for i in INJECTIONS])
def test_an_interrupted_save_leaves_the_old_file_byte_identical(
    tmp_path, net, monkeypatch, where, owner, attribute, call, error
):
    path = tmp_path / "model.npz"
    fastmlp.MLP(784, 16, 10, seed=99).save(path)
    before = sha(path)
    monkeypatch.setattr(owner, attribute, _fail_on_call(getattr(owner, attribute), call, error))
    expected = StorageError if isinstance(error, OSError) else type(error)
    with pytest.raises(expected) as raised:
        net.save(path)
    monkeypatch.undo()
    if expected is StorageError:
        assert str(path) in str(raised.value) and isinstance(raised.value, OSError)
    assert sha(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]  # no temporary file left
    assert np.array_equal(fastmlp.MLP.load(path).params["W1"], fastmlp.MLP(784, 16, 10, seed=99).params["W1"])


def test_save_into_a_missing_folder(tmp_path, net):
    with pytest.raises(StorageError, match=r"the folder .*missing does not exist"):
        net.save(tmp_path / "missing" / "w.npz")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders: shown only as another user")
def test_save_into_a_read_only_folder(tmp_path, net):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(StorageError, match="Permission denied"):
            net.save(folder / "w.npz")
    finally:
        folder.chmod(0o755)
    assert list(folder.iterdir()) == []


def test_save_where_the_folder_is_a_file(tmp_path, net):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError):
        net.save(tmp_path / "file" / "w.npz")


# ------------------------------------------------------------------ bad files
def test_missing_file(tmp_path):
    with pytest.raises(MissingFileError, match=r"weights file .*nope.npz does not exist"):
        fastmlp.MLP.load(tmp_path / "nope.npz")


def test_truncated_file(tmp_path, net):
    net.save(tmp_path / "w.npz")
    data = (tmp_path / "w.npz").read_bytes()
    (tmp_path / "w.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInputError, match="not a readable zip archive"):
        fastmlp.MLP.load(tmp_path / "w.npz")


def test_not_a_zip(tmp_path):
    (tmp_path / "w.npz").write_text("hello")
    with pytest.raises(InvalidInputError, match="not a fastmlp weights file"):
        fastmlp.MLP.load(tmp_path / "w.npz")


class Boom:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_pickle_file_never_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "w.npz").write_bytes(pickle.dumps(Boom()))
    with pytest.raises(InvalidInputError):
        fastmlp.MLP.load(tmp_path / "w.npz")
    assert not (tmp_path / "pwned").exists()


def test_a_pickled_object_array_inside_is_refused(tmp_path, net, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = net.params
    params["W1"] = np.array([Boom()], dtype=object)
    with zipfile.ZipFile(tmp_path / "w.npz", "w") as archive:
        for name, value in params.items():
            with archive.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, value, allow_pickle=True)
        archive.writestr(
            "metadata.json",
            json.dumps(
                {
                    "format": "fastmlp-weights",
                    "format_version": 1,
                    "dtype": "float32",
                    "shapes": {"W1": [784, 16], "b1": [16], "W2": [16, 10], "b2": [10]},
                }
            ),
        )
    with pytest.raises(InvalidInputError, match="W1 cannot be read without pickle"):
        fastmlp.MLP.load(tmp_path / "w.npz")
    assert not (tmp_path / "pwned").exists()


def test_a_zip_bomb_is_refused_before_decompressing(tmp_path, net):
    path = tmp_path / "w.npz"
    net.save(path)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            if name == "b2.npy":  # 200 MB of zeros behind a tiny compressed member
                data = data + b"\0" * 200_000_000
            archive.writestr(name, data)
    assert path.stat().st_size < 1_000_000
    with pytest.raises(
        InvalidInputError, match=r"b2.npy would decompress to 200000\d+ bytes.*refused without decompressing"
    ):
        fastmlp.MLP.load(path)


def rewrite(path, *, drop=(), add=None, metadata=None, arrays=None):
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    meta = json.loads(members.pop("metadata.json"))
    meta.update(metadata or {})
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            key = name[:-4]
            if key in drop:
                continue
            if arrays and key in arrays:
                with archive.open(name, "w") as member:
                    np.lib.format.write_array(member, arrays[key])
            else:
                archive.writestr(name, data)
        for name, value in (add or {}).items():
            with archive.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, value)
        archive.writestr("metadata.json", json.dumps(meta))


def test_every_mismatch_is_listed(tmp_path, net):
    path = tmp_path / "w.npz"
    net.save(path)
    rewrite(path, drop=("b1",), add={"extra": np.zeros(3)}, metadata={"format_version": 7})
    with pytest.raises(InvalidInputError) as error:
        fastmlp.MLP.load(path)
    message = str(error.value)
    assert "format version 7 is not supported" in message
    assert "missing arrays: b1" in message
    assert "unexpected members: extra.npy" in message


def test_wrong_shapes_dtypes_and_nan_are_listed(tmp_path, net):
    path = tmp_path / "w.npz"
    net.save(path)
    bad_W1 = net.params["W1"].copy()
    bad_W1[3, 4] = np.nan
    rewrite(path, arrays={"W1": bad_W1, "b1": np.zeros(16, np.float64), "W2": np.zeros((15, 10), np.float32)})
    with pytest.raises(InvalidInputError) as error:
        fastmlp.MLP.load(path)
    message = str(error.value)
    assert "W1 contains NaN or infinity" in message
    assert "b1 has dtype float64, metadata says float32" in message
    assert "W2 has shape (15, 10), metadata says (16, 10)" in message


def test_inconsistent_declared_shapes(tmp_path, net):
    path = tmp_path / "w.npz"
    net.save(path)
    rewrite(path, metadata={"shapes": {"W1": [784, 16], "b1": [17], "W2": [16, 10], "b2": [10]}, "dtype": "int8"})
    with pytest.raises(InvalidInputError) as error:
        fastmlp.MLP.load(path)
    assert "declared shape of b1 is (17,), expected (16,)" in str(error.value)
    assert "dtype 'int8' is not one of float32, float64" in str(error.value)


def test_the_file_records_the_precision_and_older_files_still_load(tmp_path, net):
    import json
    import zipfile

    from fastmlp.weights import load_weights, save_weights

    net.save(tmp_path / "w.npz")
    _, metadata = load_weights(tmp_path / "w.npz")
    assert metadata["precision"] == "float32"
    save_weights(tmp_path / "old.npz", net.params, extra_metadata={"fastmlp_version": "0.1"})  # no precision
    _, metadata = load_weights(tmp_path / "old.npz")
    assert "precision" not in metadata
    assert fastmlp.MLP.load(tmp_path / "old.npz").precision == "float32"
    save_weights(tmp_path / "bad.npz", net.params, extra_metadata={"precision": "fp8"})
    with zipfile.ZipFile(tmp_path / "bad.npz") as archive:
        assert json.loads(archive.read("metadata.json"))["precision"] == "fp8"
    with pytest.raises(fastmlp.FastMLPError, match=r"precision 'fp8' is not one of float32, tf32, bf16"):
        load_weights(tmp_path / "bad.npz")


def test_the_file_records_the_settings_of_each_fit(tmp_path, notmnist):
    from fastmlp.weights import save_weights

    model = fastmlp.MLP(784, 8, 10, seed=4)
    assert model.training_ == []
    first = model.fit(*notmnist.train, epochs=1, lr=0.2)
    second = model.fit(*notmnist.train, *notmnist.valid, epochs=2, momentum=0.0, batch_size=1000)
    model.save(tmp_path / "w.npz")
    same = {"seed": 4, "backend": model.backend, "dtype": "float32", "precision": "float32"}
    assert fastmlp.MLP.load(tmp_path / "w.npz").training_ == [
        {"epochs": 1, "lr": 0.2, "momentum": 0.9, "batch_size": None, **same, "train_accuracy": first.train_acc[-1]},
        {"epochs": 2, "lr": 0.1, "momentum": 0.0, "batch_size": 1000, **same}
        | {"train_accuracy": second.train_acc[-1], "valid_accuracy": second.valid_acc[-1]},
    ]
    assert fastmlp.MLP.from_params(model.params).training_ is None  # parameters from elsewhere: not known
    save_weights(tmp_path / "old.npz", model.params, extra_metadata={"fastmlp_version": "0.1.0"})
    assert fastmlp.MLP.load(tmp_path / "old.npz").training_ is None
    save_weights(tmp_path / "bad.npz", model.params, extra_metadata={"training": "200 epochs"})
    with pytest.raises(InvalidInputError, match=r"training must be a list of JSON objects .*, got '200 epochs'"):
        fastmlp.MLP.load(tmp_path / "bad.npz")
