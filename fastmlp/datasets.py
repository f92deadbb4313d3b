"""notMNIST: readers for the course's ``notMNIST.npz`` and MNIST-format idx files, the split, and
the download of the 10,000-image sample. Host NumPy only.

Where the data comes from, first match wins:

1. the ``path`` argument (the CLI's ``--data``): an ``.npz`` file, an idx images file, or a folder;
2. the ``FASTMLP_DATA`` environment variable (file or folder);
3. the cache folder (``FASTMLP_CACHE``, default ``~/.cache/fastmlp``), downloading the sample's two
   files into it with pooch (SHA-256 checked) unless ``FASTMLP_OFFLINE=1``.

The split is the course starter's: ``numpy.random.seed(521)``, shuffle ``arange(n)``, divide by 255;
the course's npz (18,724 images) gives 10000 / 6000 / rest, the 10,000-image sample 6000 / 2000 / 2000.
"""

from __future__ import annotations

import gzip
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InvalidInputError, MissingFileError

__all__ = [
    "NotMNIST", "CLASSES", "to_features", "load_notmnist", "read_idx", "read_npz", "split", "find_data", "download_sample",
    "SAMPLE_URL", "SAMPLE_FILES", "DATA_ENV", "CACHE_ENV", "OFFLINE_ENV", "URL_ENV",
]

DATA_ENV = "FASTMLP_DATA"
CACHE_ENV = "FASTMLP_CACHE"
OFFLINE_ENV = "FASTMLP_OFFLINE"
URL_ENV = "FASTMLP_DATA_URL"
#: where the 10,000-image sample is published (David Flanagan's notMNIST-to-MNIST, MIT licence)
SAMPLE_URL = "https://raw.githubusercontent.com/davidflanagan/notMNIST-to-MNIST/master/"
#: file name -> SHA-256 of the sample's two files
SAMPLE_FILES = {
    "t10k-images-idx3-ubyte.gz": "70ae9e06201f2827e5b0a3781a3169d735dd2efc69996b9eeaee7f10ed4044d7",
    "t10k-labels-idx1-ubyte.gz": "1fa03836e01c862542f8eb83463bb951bebec6fcb3efa28dad748c6b38a9021b",
}
_SPLIT_SEED = 521
_IDX_UBYTE = 0x08
#: the notMNIST class names, label 0 ... 9 (A=0 ... J=9)
CLASSES = ("A", "B", "C", "D", "E", "F", "G", "H", "I", "J")
_IMAGES_SUFFIX = "-images-idx3-ubyte"
_LABELS_SUFFIX = "-labels-idx1-ubyte"


@dataclass
class NotMNIST:
    """The split data: ``train``, ``valid`` and ``test`` are ``(X, y)`` pairs.

    X is (n, 784) scaled to [0, 1] in ``dtype``; y holds int64 labels 0-9, and ``classes[y]`` is
    the letter (A=0 ... J=9).
    """

    train: tuple
    valid: tuple
    test: tuple
    source: str
    classes: tuple = CLASSES

    def __repr__(self):
        return (f"NotMNIST(train={len(self.train[1])}, valid={len(self.valid[1])}, "
                f"test={len(self.test[1])}, source={self.source!r})")


# ---------------------------------------------------------------- readers
def _read_bytes(path):
    """The file's bytes, gunzipped when it ends in .gz; one clear error for a bad gzip stream."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"data file {path} does not exist")
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as handle:
            return handle.read()
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise InvalidInputError(f"{path} is not a readable gzip file (truncated or corrupt: {exc})") from None


def read_idx(path, *, expected_ndim=None):
    """An MNIST-format idx file (raw or .gz) -> uint8 array of the shape its header declares.

    Header, big-endian: two zero bytes, the dtype byte (0x08 = uint8), the number of dimensions,
    then one uint32 per dimension; the payload must be exactly the product of those sizes.
    """
    data = _read_bytes(path)
    if len(data) < 4:
        raise InvalidInputError(f"{path}: {len(data)} bytes, too short for an idx header (at least 4)")
    zero, dtype_code, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or (expected_ndim is not None and ndim != expected_ndim):
        expected = f"0x0000{_IDX_UBYTE:02x}{expected_ndim:02x}" if expected_ndim else "0x000008nn"
        raise InvalidInputError(
            f"{path}: wrong magic number 0x{int.from_bytes(data[:4], 'big'):08x}, expected {expected}"
        )
    if dtype_code != _IDX_UBYTE:
        raise InvalidInputError(f"{path}: dtype byte 0x{dtype_code:02x}, expected 0x{_IDX_UBYTE:02x} (unsigned byte)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise InvalidInputError(f"{path}: header needs {header} bytes, the file has {len(data)}")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected_size = int(np.prod(shape, dtype=np.int64))
    found_size = len(data) - header
    if found_size != expected_size:
        raise InvalidInputError(
            f"{path}: payload is {found_size} bytes, the header's shape {shape} needs {expected_size}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _check_pair(images, labels, source):
    if images.ndim != 3 and images.ndim != 2:
        raise InvalidInputError(f"{source}: images have shape {images.shape}, expected (n, 28, 28) or (n, 784)")
    if labels.ndim != 1:
        raise InvalidInputError(f"{source}: labels have shape {labels.shape}, expected (n,)")
    if len(images) != len(labels):
        raise InvalidInputError(f"{source}: {len(images)} images but {len(labels)} labels; the counts must match")
    if len(labels) == 0:
        raise InvalidInputError(f"{source}: the data set is empty")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() > 9:
        raise InvalidInputError(f"{source}: labels must be integers 0-9, found dtype {labels.dtype} "
                                f"in [{labels.min()}, {labels.max()}]")


def read_npz(path):
    """The course's ``notMNIST.npz`` -> (images (n, 28, 28) uint8, labels (n,))."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"data file {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise InvalidInputError(f"{path} is not a readable .npz file (not a zip archive; truncated or another format)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = sorted(archive.files)
            if "images" not in keys or "labels" not in keys:
                raise InvalidInputError(
                    f"{path} must hold arrays 'images' and 'labels'; found keys: {', '.join(keys) or 'none'}"
                )
            images, labels = archive["images"], archive["labels"]
    except ValueError as exc:
        if isinstance(exc, InvalidInputError):
            raise
        raise InvalidInputError(f"{path}: cannot be read without pickle ({exc}); object arrays are refused") from None
    except (OSError, EOFError, zlib.error) as exc:  # not a zip, truncated
        raise InvalidInputError(f"{path} is not a readable .npz file ({exc})") from None
    _check_pair(images, labels, path)
    return images, labels


def _idx_pair_in(folder):
    """(images file, labels file) of the first idx pair in a folder, in name order."""
    for images in sorted(folder.glob(f"*{_IMAGES_SUFFIX}*")):
        labels = images.with_name(images.name.replace(_IMAGES_SUFFIX, _LABELS_SUFFIX))
        if labels.is_file():
            return images, labels
    return None


# ------------------------------------------------------------------ split
def to_features(images, dtype="float32"):
    """uint8 images (n, 28, 28) -> (n, 784) rows in [0, 1]: the seed's ``images / 255.0`` in float64,
    cast to ``dtype``, looked up per pixel value (the same numbers without an n x 784 float64 array)."""
    scaled = (np.arange(256) / 255.0).astype(dtype)
    return scaled[np.asarray(images).reshape(len(images), -1)]


def split(images, labels, *, dtype="float32"):
    """The course starter's shuffle and split -> (train, valid, test) of (X (n, 784), y int64)."""
    n = len(labels)
    order = np.arange(n)
    np.random.RandomState(_SPLIT_SEED).shuffle(order)  # = np.random.seed(521); np.random.shuffle
    X = to_features(images[order], dtype)
    y = labels[order].astype(np.int64)
    n_train, n_valid = (10000, 6000) if n > 10000 else (int(0.6 * n), int(0.2 * n))
    cut = (n_train, n_train + n_valid)
    return (X[:cut[0]], y[:cut[0]]), (X[cut[0]:cut[1]], y[cut[0]:cut[1]]), (X[cut[1]:], y[cut[1]:])


# ------------------------------------------------------- finding the data
def _cache_dir():
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "fastmlp")


def find_data(path=None):
    """Resolve where the data is: argument, then FASTMLP_DATA, then the cache (downloading)."""
    for candidate, origin in ((path, "the data argument"), (os.environ.get(DATA_ENV) or None, DATA_ENV)):
        if candidate is None:
            continue
        candidate = Path(candidate).expanduser()
        if not candidate.exists():
            raise MissingFileError(f"data path {candidate} (from {origin}) does not exist")
        return candidate
    return download_sample(_cache_dir())


def download_sample(folder=None, *, base_url=None, retries=3, timeout=30):
    """Fetch the sample's two files into ``folder`` (default: the cache) with their SHA-256 checked.

    Uses pooch: a file already there with the right hash is kept, a corrupt one is fetched again,
    a download goes to a temporary file that is removed on failure. Returns the folder.
    """
    folder = Path(folder) if folder is not None else _cache_dir()
    base_url = base_url or os.environ.get(URL_ENV) or SAMPLE_URL
    if os.environ.get(OFFLINE_ENV) == "1":
        missing = [name for name in SAMPLE_FILES if not (folder / name).is_file()]
        if missing:
            raise MissingFileError(
                f"{', '.join(missing)} not in {folder} and {OFFLINE_ENV}=1 forbids downloading; "
                f"pass --data PATH or set {DATA_ENV}"
            )
    from ._download import fetch

    for name, sha256 in SAMPLE_FILES.items():
        fetch(base_url + name, folder / name, sha256, retries=retries, timeout=timeout,
              offline=os.environ.get(OFFLINE_ENV) == "1")
    return folder


def load_notmnist(path=None, *, dtype="float32"):
    """Load and split notMNIST -> :class:`NotMNIST` with ``.train``, ``.valid``, ``.test``.

    ``path``: a ``notMNIST.npz``, an idx images file (``*-images-idx3-ubyte[.gz]``, its labels file
    beside it), or a folder holding either; None looks in FASTMLP_DATA, then the cache.
    """
    from .validation import check_dtype

    dtype = check_dtype(dtype)
    source = find_data(path)
    if source.is_dir():
        npz = source / "notMNIST.npz"
        pair = _idx_pair_in(source)
        if npz.is_file():
            source = npz
        elif pair is None:
            raise MissingFileError(
                f"{source} holds neither notMNIST.npz nor a *{_IMAGES_SUFFIX}[.gz] / *{_LABELS_SUFFIX}[.gz] pair"
            )
    if source.is_dir():
        images_file, labels_file = pair
        images, labels = read_idx(images_file, expected_ndim=3), read_idx(labels_file, expected_ndim=1)
    elif source.suffix == ".npz":
        images, labels = read_npz(source)
    elif _IMAGES_SUFFIX in source.name:
        images_file, labels_file = source, source.with_name(source.name.replace(_IMAGES_SUFFIX, _LABELS_SUFFIX))
        images, labels = read_idx(images_file, expected_ndim=3), read_idx(labels_file, expected_ndim=1)
    else:
        raise InvalidInputError(
            f"{source}: not a notMNIST file; expected notMNIST.npz or *{_IMAGES_SUFFIX}[.gz] with its labels file"
        )
    _check_pair(images, labels, source)
    train, valid, test = split(images, labels, dtype=dtype)
    return NotMNIST(train=train, valid=valid, test=test, source=str(source))

