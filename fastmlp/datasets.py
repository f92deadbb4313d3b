"""notMNIST: readers for the course's ``notMNIST.npz`` and MNIST-format idx files, the split, and
the download of the 10,000-image sample. Host NumPy only.

Where the data comes from, first match wins:

1. the ``path`` argument (the CLI's ``--data``): an ``.npz`` file, an idx images file, or a folder;
2. the ``FASTMLP_DATA`` environment variable (file or folder);
3. the copy of the 10,000-image sample shipped inside the package (``fastmlp/data/notmnist``, MIT
   licence, see its README), so that the first run needs no network;
4. the cache folder (``FASTMLP_CACHE``, default ``~/.cache/fastmlp``), downloading the sample's two
   files into it with pooch (SHA-256 checked) unless ``FASTMLP_OFFLINE`` is true (only reached
   when the shipped copy was removed).

Every file is checked before use: idx headers, payload sizes (a ``.gz`` file is decompressed in
chunks and refused as soon as it holds more than its header declares), label values, and image
values (uint8 0-255, other integers within 0-255, or floats already in [0, 1]).

The split is the course starter's: ``numpy.random.seed(521)``, shuffle ``arange(n)``, divide by 255;
the course's npz (18,724 images) gives 10000 / 6000 / rest, the 10,000-image sample 6000 / 2000 / 2000.
"""

from __future__ import annotations

import gzip
import math
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import numpy as np

from ._download import fetch
from .arguments import as_images, check_dtype
from .classes import CLASSES
from .errors import InvalidInputError, InvalidTypeError, MissingFileError, StorageError
from .files import PathArg, npy_member, require_file
from .memory import ensure_fits, host_memory_errors

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

__all__ = [
    "NotMNIST",
    "CLASSES",
    "to_features",
    "load_notmnist",
    "read_idx",
    "read_npz",
    "read_npz_images",
    "split",
    "find_data",
    "download_sample",
    "SAMPLE_URL",
    "SAMPLE_FILES",
    "DATA_ENV",
    "CACHE_ENV",
    "OFFLINE_ENV",
    "URL_ENV",
    "EMBEDDED_SAMPLE",
    "offline",
    "MIN_SAMPLES",
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
#: the sample's two files, shipped inside the package
EMBEDDED_SAMPLE = Path(__file__).resolve().parent / "data" / "notmnist"
#: the fewest images that split into non-empty train / valid / test parts (3 / 1 / 1)
MIN_SAMPLES = 5
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")
_CHUNK = 1 << 20  # bytes decompressed at a time
_ROWS_AT_A_TIME = 4096  # images converted to features at a time
_DEFLATE_MAX_RATIO = 1032  # the most a deflate stream inflates: 258 bytes from each 2 bits (RFC 1951)
_SPLIT_SEED = 521
_IDX_UBYTE = 0x08
_IMAGES_SUFFIX = "-images-idx3-ubyte"
_LABELS_SUFFIX = "-labels-idx1-ubyte"


#: (X, y): X (n, 784) features, y (n,) int64 labels
Split: TypeAlias = "tuple[np.ndarray, np.ndarray]"


@dataclass
class NotMNIST:
    """The split data: ``train``, ``valid`` and ``test`` are ``(X, y)`` pairs.

    X is (n, 784) scaled to [0, 1] in ``dtype``; y holds int64 labels 0-9, and ``classes[y]`` is
    the letter (A=0 ... J=9).
    """

    train: Split
    valid: Split
    test: Split
    source: str
    classes: tuple[str, ...] = CLASSES

    def __repr__(self):
        return (
            f"NotMNIST(train={len(self.train[1])}, valid={len(self.valid[1])}, "
            f"test={len(self.test[1])}, source={self.source!r})"
        )


# ---------------------------------------------------------------- readers
def _read_exactly(handle, size):
    """Up to ``size`` bytes, read in chunks: memory grows with what the stream holds, never with
    what a header claims."""
    data = bytearray()
    while len(data) < size:
        chunk = handle.read(min(_CHUNK, size - len(data)))
        if not chunk:
            break
        data += chunk
    return data


def _idx_header(handle, path, expected_ndim):
    """(shape, header bytes) from an idx stream, checked."""
    magic = handle.read(4)
    if len(magic) < 4:
        raise InvalidInputError(f"{path}: {len(magic)} bytes, too short for an idx header (at least 4)")
    zero, dtype_code, ndim = int.from_bytes(magic[:2], "big"), magic[2], magic[3]
    if zero != 0 or (expected_ndim is not None and ndim != expected_ndim):
        expected = f"0x0000{_IDX_UBYTE:02x}{expected_ndim:02x}" if expected_ndim else "0x000008nn"
        raise InvalidInputError(f"{path}: wrong magic number 0x{int.from_bytes(magic, 'big'):08x}, expected {expected}")
    if dtype_code != _IDX_UBYTE:
        raise InvalidInputError(f"{path}: dtype byte 0x{dtype_code:02x}, expected 0x{_IDX_UBYTE:02x} (unsigned byte)")
    dims = handle.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise InvalidInputError(f"{path}: header needs {4 + 4 * ndim} bytes, the file has {4 + len(dims)}")
    return tuple(int.from_bytes(dims[4 * i : 4 * i + 4], "big") for i in range(ndim)), 4 + 4 * ndim


def _ensure_fits(path, shape, dtype, features):
    """The budget of reading an array of ``shape`` and ``dtype`` from ``path``, with the (n, 784) copy in
    ``features`` (a dtype) that the caller will make of it (None: no copy), refused before reading."""
    count = math.prod(shape)
    copy = f" and its {np.dtype(features).name} copy" if features is not None else ""
    ensure_fits(
        count * (np.dtype(dtype).itemsize + (np.dtype(features).itemsize if features is not None else 0)),
        f"reading {path} (an array of shape {shape}{copy})",
        hint="free memory, or use a smaller data set",
    )


def _payload_capacity(path, header):
    """The most payload bytes the idx file ``path`` can hold: its size less the header, or for a .gz
    file what deflate can inflate its size to at most (1032 times)."""
    size = path.stat().st_size
    return size * _DEFLATE_MAX_RATIO if _is_gzip(path) else size - header


def _read_idx_stream(handle, path, expected_ndim, features):
    shape, header = _idx_header(handle, path, expected_ndim)
    expected_size = math.prod(shape)
    capacity = _payload_capacity(path, header)
    if expected_size > capacity and not _is_gzip(path):
        raise InvalidInputError(
            f"{path}: payload is {capacity} bytes, the header's shape {shape} needs {expected_size}"
        )
    if expected_size > capacity:  # a corrupt header, refused before the memory budget
        raise InvalidInputError(
            f"{path} is not a readable gzip file (truncated or corrupt: the header's shape {shape} needs "
            f"{expected_size} bytes, more than a {path.stat().st_size}-byte gzip file can hold, deflate "
            f"inflating at most {_DEFLATE_MAX_RATIO} times)"
        )
    _ensure_fits(path, shape, np.uint8, features)
    payload = _read_exactly(handle, expected_size)
    if len(payload) < expected_size:
        raise InvalidInputError(
            f"{path}: payload is {len(payload)} bytes, the header's shape {shape} needs {expected_size}"
        )
    if handle.read(1):
        raise InvalidInputError(
            f"{path}: payload is longer than the {expected_size} bytes the header's shape {shape} declares; "
            f"refused after reading {header + expected_size + 1} bytes (corrupt file or decompression bomb)"
        )
    return np.frombuffer(payload, dtype=np.uint8).reshape(shape)


def _is_gzip(path):
    return path.suffix.lower() == ".gz"


def read_idx(path: PathArg, *, expected_ndim: int | None = None, features: DTypeLike | None = None) -> np.ndarray:
    """An MNIST-format idx file (raw or .gz) -> uint8 array of the shape its header declares.

    Header, big-endian: two zero bytes, the dtype byte (0x08 = uint8), the number of dimensions,
    then one uint32 per dimension; the payload must be exactly the product of those sizes. A
    ``.gz`` file is decompressed in chunks and refused as soon as it holds more than that.
    ``features``: the dtype of the (n, 784) copy the caller will make (None: none), counted in the
    memory budget checked once the header is read (:func:`fastmlp.memory.ensure_fits`).
    """
    path = require_file(path, "data file")
    try:
        with (
            gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb") as handle,
            host_memory_errors(f"reading {path}"),
        ):
            return _read_idx_stream(handle, path, expected_ndim, features)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise InvalidInputError(f"{path} is not a readable gzip file (truncated or corrupt: {exc})") from None
    except OSError as exc:
        raise InvalidInputError(f"{path} cannot be read ({exc.strerror or exc})") from None


def _check_pair(images, labels, source):
    if images.ndim != 3 and images.ndim != 2:
        raise InvalidInputError(f"{source}: images have shape {images.shape}, expected (n, 28, 28) or (n, 784)")
    if labels.ndim != 1:
        raise InvalidInputError(f"{source}: labels have shape {labels.shape}, expected (n,)")
    if len(images) != len(labels):
        raise InvalidInputError(f"{source}: {len(images)} images but {len(labels)} labels; the counts must match")
    if len(labels) == 0:
        raise InvalidInputError(f"{source}: the data set is empty")
    if labels.dtype == np.bool_ or not np.issubdtype(labels.dtype, np.integer):
        raise InvalidTypeError(
            f"{source}: labels are {_KINDS.get(labels.dtype.kind, 'not integers')} (dtype {labels.dtype}); "
            "they must be integers 0-9, the letters A-J in order (A=0 ... J=9)"
        )
    bad = (labels < 0) | (labels > 9)
    if bad.any():
        index = int(np.argmax(bad))
        raise InvalidInputError(
            f"{source}: labels[{index}] = {labels[index]}; labels must be integers 0-9 (A=0 ... J=9)"
        )


#: what labels of a NumPy dtype kind are, in words
_KINDS = {
    "U": "text",
    "S": "bytes",
    "V": "structured records",
    "f": "floating-point numbers",
    "c": "complex numbers",
    "b": "booleans",
    "M": "dates",
    "m": "time spans",
    "O": "Python objects",
}


def _check_npz_members(path, names, features):
    """The members ``names`` of an .npz: there, each one's stored size against the shape its header
    declares, and the memory budget (the images with their ``features`` copy), before NumPy allocates
    anything."""
    try:
        with zipfile.ZipFile(path) as archive:
            keys = sorted(name.removesuffix(".npy") for name in archive.namelist())
            declared = {name: npy_member(archive, f"{name}.npy") for name in names if name in keys}
    except InvalidInputError as exc:
        raise InvalidInputError(f"{path}: {exc}") from None
    except (ValueError, EOFError, OSError, zlib.error, zipfile.BadZipFile) as exc:
        raise InvalidInputError(f"{path}: a member is truncated or corrupt ({exc})") from None
    if len(declared) < len(names):
        raise InvalidInputError(
            f"{path} must hold arrays {' and '.join(map(repr, names))}; found keys: {', '.join(keys) or 'none'}"
        )
    for name, (shape, dtype) in declared.items():
        _ensure_fits(path, shape, dtype, features if name == "images" else None)


def _read_npz_arrays(path, names, features):
    """{name: array} of the members ``names`` of an .npz, checked first (:func:`_check_npz_members`)."""
    path = require_file(path, "data file")
    if not zipfile.is_zipfile(path):
        raise InvalidInputError(f"{path} is not a readable .npz file (not a zip archive; truncated or another format)")
    _check_npz_members(path, names, features)
    try:
        with np.load(path, allow_pickle=False) as archive, host_memory_errors(f"reading {path}"):
            return {name: archive[name] for name in names}
    except ValueError as exc:
        if "allow_pickle" not in str(exc):  # a truncated or corrupt member
            raise InvalidInputError(f"{path}: a member is truncated or corrupt ({exc})") from None
        raise InvalidInputError(f"{path}: cannot be read without pickle ({exc}); object arrays are refused") from None
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as exc:  # not a zip, truncated
        raise InvalidInputError(f"{path} is not a readable .npz file ({exc})") from None


def read_npz(path: PathArg, *, features: DTypeLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The course's ``notMNIST.npz`` -> (images (n, 28, 28) uint8, labels (n,)).

    ``features``: as for :func:`read_idx`."""
    arrays = _read_npz_arrays(path, ("images", "labels"), features)
    _check_pair(arrays["images"], arrays["labels"], path)
    return arrays["images"], arrays["labels"]


def read_npz_images(path: PathArg) -> np.ndarray:
    """Only the ``images`` of an .npz, as they are stored (another member, ``labels`` included, is
    neither needed nor read)."""
    return _read_npz_arrays(path, ("images",), None)["images"]


def _idx_pairs_in(folder):
    """Every (images file, labels file) idx pair in a folder, in name order."""
    pairs = []
    for images in sorted(folder.glob(f"*{_IMAGES_SUFFIX}*")):
        labels = images.with_name(images.name.replace(_IMAGES_SUFFIX, _LABELS_SUFFIX))
        if labels.is_file():
            pairs.append((images, labels))
    return pairs


# ------------------------------------------------------------------ split
def to_features(images: np.ndarray, dtype: str = "float32") -> np.ndarray:
    """uint8 images (n, 28, 28) -> (n, 784) rows in [0, 1]: the assignment's ``images / 255.0`` in float64,
    cast to ``dtype``, looked up per pixel value (the same numbers without an n x 784 float64 array)."""
    scaled = (np.arange(256) / 255.0).astype(dtype)
    return scaled[np.asarray(images).reshape(len(images), -1)]


def _first_bad(mask):
    """(index tuple) of the first True in ``mask``."""
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)), mask.shape))


def _pixel_table_or_floats(images, dtype):
    """Check the images' values against what their dtype means; returns a function that gives
    the features of some images (``rows``: their indices), flattened, scaled to [0, 1], in ``dtype``.

    uint8 (and any integer type holding 0-255) is divided by 255 like the assignment; floats must already
    be in [0, 1]; anything else is refused with the offending value and its index.
    """
    if images.dtype == np.bool_ or not (
        np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)
    ):
        raise InvalidTypeError(
            f"images have dtype {images.dtype}; expected uint8 0-255 (or integers 0-255, or floats in [0, 1])"
        )
    if np.issubdtype(images.dtype, np.floating):
        bad = ~((images >= 0) & (images <= 1))  # NaN is bad too
        allowed = "floats must already be scaled to [0, 1]"
    else:
        bad = (images < 0) | (images > 255) if images.dtype != np.uint8 else None
        allowed = "integer pixels must be 0-255"
    if bad is not None and bad.any():
        index = _first_bad(bad)
        raise InvalidInputError(f"images{list(index)} = {images[index].item()!r} (dtype {images.dtype}): {allowed}")
    flat = images.reshape(len(images), -1)
    if np.issubdtype(images.dtype, np.floating):
        return lambda rows: flat[rows].astype(dtype)
    return lambda rows: to_features(flat[rows], dtype)


def _features_in_order(features_of, order, n_features, dtype):
    """X (len(order), n_features) in ``dtype``: ``features_of`` the rows ``order``, a block at a time,
    so that the images are never copied whole on the way (the memory budget counts X and the images)."""
    X = np.empty((len(order), n_features), dtype)
    for start in range(0, len(order), _ROWS_AT_A_TIME):
        block = order[start : start + _ROWS_AT_A_TIME]
        X[start : start + len(block)] = features_of(block)
    return X


def split(images: np.ndarray, labels: np.ndarray, *, dtype: str = "float32") -> tuple[Split, Split, Split]:
    """The course starter's shuffle and split -> (train, valid, test) of (X (n, 784), y int64)."""
    n = len(labels)
    if n < MIN_SAMPLES:
        raise InvalidInputError(
            f"{n} images are too few to split into train / valid / test; at least {MIN_SAMPLES} are needed"
        )
    images = np.asarray(images)
    features_of = _pixel_table_or_floats(images, dtype)
    order = np.arange(n)
    np.random.RandomState(_SPLIT_SEED).shuffle(order)  # = np.random.seed(521); np.random.shuffle
    X = _features_in_order(features_of, order, images[0].size, dtype)
    y = labels[order].astype(np.int64)
    n_train, n_valid = (10000, 6000) if n > 10000 else (int(0.6 * n), int(0.2 * n))
    cut = (n_train, n_train + n_valid)
    return (X[: cut[0]], y[: cut[0]]), (X[cut[0] : cut[1]], y[cut[0] : cut[1]]), (X[cut[1] :], y[cut[1] :])


# ------------------------------------------------------- finding the data
def offline() -> bool:
    """Whether ``FASTMLP_OFFLINE`` forbids downloading: 1/true/yes/on or 0/false/no/off (any case;
    empty or unset is false); anything else is an error."""
    value = os.environ.get(OFFLINE_ENV, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidInputError(
        f"{OFFLINE_ENV}={os.environ[OFFLINE_ENV]!r} is neither true (1, true, yes, on) "
        "nor false (0, false, no, off, empty)"
    )


def _cache_dir():
    folder = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "fastmlp").expanduser()
    if os.path.lexists(folder) and not folder.is_dir():
        origin = f"{CACHE_ENV}" if os.environ.get(CACHE_ENV) else "the cache path"
        raise StorageError(f"{origin} {folder} is a file, not a folder; remove it or set {CACHE_ENV} to a folder")
    return folder


def _embedded_sample():
    """The shipped sample's folder, or None when the package was installed without it."""
    if all((EMBEDDED_SAMPLE / name).is_file() for name in SAMPLE_FILES):
        return EMBEDDED_SAMPLE
    return None


def find_data(path: PathArg | None = None) -> Path:
    """Resolve where the data is: argument, then FASTMLP_DATA, then the sample shipped in the
    package, then the cache (downloading)."""
    for candidate, origin in ((path, "the data argument"), (os.environ.get(DATA_ENV) or None, DATA_ENV)):
        if candidate is None:
            continue
        candidate = Path(candidate).expanduser()
        if not os.path.lexists(candidate):
            raise MissingFileError(f"data path {candidate} (from {origin}) does not exist")
        return candidate
    return _embedded_sample() or download_sample(_cache_dir())


def _require_cached(folder):
    """Offline: the sample's files must already be in ``folder``."""
    missing = [name for name in SAMPLE_FILES if not (folder / name).is_file()]
    if missing:
        raise MissingFileError(
            f"{', '.join(missing)} not in {folder} and {OFFLINE_ENV}=1 forbids downloading; "
            f"pass --data PATH or set {DATA_ENV}"
        )


def download_sample(
    folder: PathArg | None = None, *, base_url: str | None = None, retries: int = 3, timeout: float = 30
) -> Path:
    """Fetch the sample's two files into ``folder`` (default: the cache) with their SHA-256 checked.

    Uses pooch: a file already there with the right hash is kept, a corrupt one is fetched again,
    a download goes to a temporary file that is removed on failure. Returns the folder.
    """
    folder = Path(folder) if folder is not None else _cache_dir()
    if os.path.lexists(folder) and not folder.is_dir():
        raise StorageError(f"cannot download into {folder}: it is a file, not a folder")
    base_url = base_url or os.environ.get(URL_ENV) or SAMPLE_URL
    no_network = offline()
    if no_network:
        _require_cached(folder)
    for name, sha256 in SAMPLE_FILES.items():
        fetch(base_url + name, folder / name, sha256, retries=retries, timeout=timeout, offline=no_network)
    return folder


def _read_folder(folder, features):
    """(images, labels, source) from a folder: its notMNIST.npz, else its one idx pair; the
    source names the file chosen, and how many data sets the folder held when more than one.
    ``features``: as for :func:`read_idx`."""
    npz = folder / "notMNIST.npz"
    candidates = ([npz] if npz.is_file() else []) + [images for images, _ in _idx_pairs_in(folder)]
    if not candidates:
        raise MissingFileError(
            f"{folder} holds neither notMNIST.npz nor a *{_IMAGES_SUFFIX}[.gz] / *{_LABELS_SUFFIX}[.gz] pair"
        )
    chosen = candidates[0]
    images, labels = _read_file(chosen, features)
    source = str(chosen)
    if len(candidates) > 1:
        others = ", ".join(p.name for p in candidates[1:])
        source += (
            f" (the first of {len(candidates)} data sets in the folder; not used: {others}; pass --data FILE to choose)"
        )
    return images, labels, source


def _read_file(source, features):
    """(images, labels) from a notMNIST.npz or an idx images file with its labels file beside it.
    ``features``: as for :func:`read_idx`."""
    if source.suffix.lower() == ".npz":
        return read_npz(source, features=features)
    if _IMAGES_SUFFIX in source.name:
        labels_file = source.with_name(source.name.replace(_IMAGES_SUFFIX, _LABELS_SUFFIX))
        return read_idx(source, expected_ndim=3, features=features), read_idx(labels_file, expected_ndim=1)
    require_file(source, "data file")
    raise InvalidInputError(
        f"{source}: not a notMNIST file; expected notMNIST.npz or *{_IMAGES_SUFFIX}[.gz] with its labels file"
    )


def load_notmnist(
    path: PathArg | None = None, *, dtype: str | np.dtype | None = "float32", n_features: int | None = None
) -> NotMNIST:
    """Load and split notMNIST -> :class:`NotMNIST` with ``.train``, ``.valid``, ``.test``.

    ``path``: a ``notMNIST.npz``, an idx images file (``*-images-idx3-ubyte[.gz]``, its labels file
    beside it), or a folder holding either; None looks in FASTMLP_DATA, then the sample shipped
    with the package, then the cache (downloading). ``dtype``: float32 (also for None) or float64.
    ``n_features``: the inputs of the model the data are for; images of another size are refused,
    naming both sizes.
    """
    dtype = check_dtype("float32" if dtype is None else dtype)
    source = find_data(path)
    with host_memory_errors(f"loading {source}"):
        if source.is_dir():
            images, labels, source = _read_folder(source, dtype)
        else:
            images, labels = _read_file(source, dtype)
        _check_pair(images, labels, source)
        if n_features is not None and images[0].size != n_features:
            size = " x ".join(map(str, images.shape[1:])) if images.ndim == 3 else f"rows of {images.shape[1]}"
            raise InvalidInputError(
                f"{source}: the images are {size} pixels, the model reads {n_features} pixels{as_images(n_features)}"
            )
        train, valid, test = split(images, labels, dtype=dtype)
    return NotMNIST(train=train, valid=valid, test=test, source=str(source))
