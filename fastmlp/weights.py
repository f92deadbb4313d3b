"""Weights files: save atomically, load without pickle, refuse anything unexpected.

Format: a zip archive (NumPy's ``.npz`` layout) with one ``.npy`` member per parameter (``W1``,
``b1``, ``W2``, ``b2``) and a small ``metadata.json``: format name and version, dtype, shapes,
the fastmlp version that wrote it and, optionally, ``classes``: the name of each output (e.g. the
letters "A" ... "J"), ``precision``: the precision of the products it was trained with, and
``training``: the settings of each fit (a list of objects: epochs, lr, momentum, batch_size, seed,
backend, dtype, precision). Files without them (written by fastmlp 0.1.0) are still read, and
readers that do not know them ignore them, so the format version stays 1.

Saving goes through :func:`fastmlp.files.atomic_write`: an interrupted save (exception, Ctrl-C,
full disk) leaves the old file as it was. Loading reads the zip's directory first and, before
decompressing anything, refuses members larger than the declared shapes, arrays inflating more than
100 times their stored size (a bomb: trained weights barely compress), members encrypted or
compressed by a method Python cannot read, and arrays that with the model's copy of them would not
fit in the memory available; arrays are read with ``allow_pickle=False``, so no code in a file ever
runs.
"""

from __future__ import annotations

import json
import math
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from .arguments import DTYPES, PRECISIONS, array_problems, classes_problem, layout_problems
from .errors import InvalidInputError, format_bytes
from .files import PathArg, atomic_write, npy_member, open_member, require_file
from .memory import ensure_fits, host_memory_errors
from .network import PARAM_NAMES

__all__ = ["FORMAT", "FORMAT_VERSION", "save_weights", "load_weights"]

FORMAT = "fastmlp-weights"
FORMAT_VERSION = 1
_METADATA = "metadata.json"
_MAX_METADATA_BYTES = 64 * 1024
_MAX_NPY_HEADER_BYTES = 4096
#: arrays inflating more than this many times their stored size are refused: trained weights (random-looking
#: floats) compress by a few percent; only a file of mostly zeros or repeats does better (a bomb)
_MAX_INFLATION = 100
_SMALL_ARRAYS = 1 << 20  # arrays this small (in total, stored) are never a bomb worth refusing


def _write_member(archive, name, array):
    with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
        np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)


def save_weights(
    path: PathArg, params: Mapping[str, np.ndarray], *, extra_metadata: Mapping[str, Any] | None = None
) -> None:
    """Write ``params`` ({'W1', 'b1', 'W2', 'b2'} -> host arrays) to ``path`` atomically."""
    dtype = np.dtype(params["W1"].dtype).name
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dtype": dtype,
        "shapes": {name: list(params[name].shape) for name in PARAM_NAMES},
        **(extra_metadata or {}),
    }

    def write(handle):
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED) as archive:
            for name in PARAM_NAMES:
                _write_member(archive, name, params[name])
            archive.writestr(_METADATA, json.dumps(metadata, indent=1))

    atomic_write(path, write)


def _read_metadata(archive, path):
    try:
        info = archive.getinfo(_METADATA)
    except KeyError:
        raise InvalidInputError(f"{path} is not a fastmlp weights file: it has no {_METADATA} member") from None
    if info.file_size > _MAX_METADATA_BYTES:
        raise InvalidInputError(f"{path}: {_METADATA} is {info.file_size} bytes, more than a weights file's metadata")
    try:
        with open_member(archive, _METADATA) as member:
            metadata = json.loads(member.read(_MAX_METADATA_BYTES + 1).decode("utf-8"))
    except InvalidInputError as exc:
        raise InvalidInputError(f"{path}: {exc}") from None
    except RecursionError:  # JSON nested thousands deep: no weights file's metadata looks like that
        raise InvalidInputError(f"{path}: {_METADATA} is nested too deeply to be a weights file's metadata") from None
    except (ValueError, UnicodeDecodeError, zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InvalidInputError(f"{path}: {_METADATA} is not valid JSON ({exc})") from None
    if not isinstance(metadata, dict):
        raise InvalidInputError(f"{path}: {_METADATA} must hold a JSON object")
    return metadata


def _declared_layout(metadata, problems):
    """(dtype, {name: shape}) from the metadata, adding every problem found to ``problems``."""
    if metadata.get("format") != FORMAT:
        problems.append(f"format is {metadata.get('format')!r}, expected {FORMAT!r}")
    if metadata.get("format_version") != FORMAT_VERSION:
        problems.append(
            f"format version {metadata.get('format_version')!r} is not supported (this fastmlp reads {FORMAT_VERSION})"
        )
    dtype = metadata.get("dtype")
    if dtype not in DTYPES:
        problems.append(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
        dtype = None
    if "precision" in metadata and metadata["precision"] not in PRECISIONS:
        problems.append(f"precision {metadata['precision']!r} is not one of {', '.join(PRECISIONS)}")
    declared = _declared_shapes(metadata.get("shapes"), problems)
    if len(declared.get("W2", ())) == 2:
        _check_classes(metadata, declared["W2"][-1], problems)
    training = metadata.get("training")
    if training is not None and not (isinstance(training, list) and all(isinstance(t, dict) for t in training)):
        problems.append(f"training must be a list of JSON objects (the settings of each fit), got {training!r:.60}")
    return dtype, declared


def _is_shape(value):
    return (
        isinstance(value, list)
        and value
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in value)
    )


def _declared_shapes(shapes, problems):
    """{name: shape} from the metadata's 'shapes' object, checked by the rule of every parameter dict."""
    if not isinstance(shapes, dict):
        problems.append("metadata has no 'shapes' object")
        return {}
    declared = {}
    for name in PARAM_NAMES:
        if _is_shape(shapes.get(name)):
            declared[name] = tuple(shapes[name])
        else:
            problems.append(f"declared shape of {name} is {shapes.get(name)!r}, not a list of positive integers")
    if len(declared) == len(PARAM_NAMES):
        problems += layout_problems(declared, describe="declared shape of {name} is")
    return declared


def _open_archive(path):
    path = require_file(path, "weights file")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidInputError(
            f"{path} is not a fastmlp weights file: not a readable zip archive ({exc}); "
            "it may be truncated or of another format"
        ) from None


def _check_member_names(members, problems):
    expected_members = {f"{name}.npy" for name in PARAM_NAMES} | {_METADATA}
    missing = sorted(n[:-4] for n in expected_members - set(members) if n != _METADATA)
    extra = sorted(set(members) - expected_members)
    if missing:
        problems.append(f"missing arrays: {', '.join(missing)}")
    if extra:
        problems.append(f"unexpected members: {', '.join(extra)}")


def _check_member_sizes(declared, members, itemsize, problems):
    """Each member's stated size against its declared shape, and the arrays' size against what the
    file stores them in, before decompressing anything."""
    inflated = stored = 0
    for name, shape in declared.items():
        info = members.get(f"{name}.npy")
        if info is None:
            continue
        inflated, stored = inflated + info.file_size, stored + info.compress_size
        payload = math.prod(shape) * itemsize
        if info.file_size > payload + _MAX_NPY_HEADER_BYTES:
            problems.append(
                f"{name}.npy would decompress to {info.file_size} bytes, more than its declared "
                f"shape {shape} allows ({payload + _MAX_NPY_HEADER_BYTES}); refused without decompressing"
            )
    if inflated > _MAX_INFLATION * max(stored, _SMALL_ARRAYS):
        problems.append(
            f"its arrays would decompress to {format_bytes(inflated)} from {format_bytes(stored)} "
            f"({inflated // max(stored, 1)} times): trained weights compress less than {_MAX_INFLATION} times, "
            "so this is refused as a decompression bomb, without decompressing"
        )


def _read_member(archive, name, declared_shape, problems):
    """One array, read without pickle; None (and a problem recorded) when it cannot be."""
    try:
        shape, dtype = npy_member(archive, f"{name}.npy")  # a truncated member is refused here
        if dtype.hasobject:
            problems.append(f"{name} cannot be read without pickle (it holds objects, dtype {dtype}); refused")
            return None
        if shape != declared_shape:  # checked before NumPy allocates what the header says
            problems.append(f"{name} has shape {shape}, metadata says {declared_shape}")
            return None
        with open_member(archive, f"{name}.npy") as member:
            return np.lib.format.read_array(member, allow_pickle=False)
    except InvalidInputError as exc:
        problems.append(str(exc))
    except ValueError as exc:
        if "pickle" in str(exc):  # object arrays need pickle: refused
            problems.append(f"{name} cannot be read without pickle ({exc}); refused")
        else:
            problems.append(f"{name} is truncated or corrupt ({exc})")
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        problems.append(f"{name} is corrupt ({exc})")
    return None


def _check_classes(metadata, n_classes, problems):
    """The optional class names: a list of ``n_classes`` distinct non-empty strings."""
    classes = metadata.get("classes")
    problem = None if classes is None else classes_problem(classes, n_classes)  # JSON gives lists, never tuples
    if problem:
        problems.append(problem)


def load_weights(path: PathArg) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a weights file -> ({'W1', 'b1', 'W2', 'b2'} -> host arrays, metadata dict).

    Raises MissingFileError when the file is missing and InvalidInputError listing every
    problem when it is not a valid fastmlp weights file.
    """

    def refuse(problems):
        if problems:
            raise InvalidInputError(f"{path} is not a valid fastmlp weights file: " + "; ".join(problems))

    with _open_archive(path) as archive:
        metadata = _read_metadata(archive, path)
        problems: list[str] = []
        dtype, declared = _declared_layout(metadata, problems)
        members = {info.filename: info for info in archive.infolist()}
        _check_member_names(members, problems)
        _check_member_sizes(declared, members, np.dtype(dtype).itemsize if dtype else 8, problems)
        refuse(problems)
        arrays_bytes = sum(math.prod(shape) for shape in declared.values()) * np.dtype(dtype).itemsize
        # the arrays read, and the model's own copy of them
        ensure_fits(2 * arrays_bytes, f"loading {path}", hint="free memory, or use a smaller model")
        with host_memory_errors(f"loading {path}"):
            params = {name: _read_member(archive, name, declared[name], problems) for name in PARAM_NAMES}
        params = {name: array for name, array in params.items() if array is not None}
    for name, array in params.items():
        problems += _array_against_metadata(name, array, dtype, declared[name])
    refuse(problems)
    return params, metadata


def _array_against_metadata(name, array, dtype, shape):
    """A read array's problems: dtype or shape unlike the metadata's, NaN or infinity inside."""
    problems = []
    if array.dtype.name != dtype:
        problems.append(f"{name} has dtype {array.dtype}, metadata says {dtype}")
    if array.shape != shape:
        problems.append(f"{name} has shape {array.shape}, metadata says {shape}")
    return problems + [p for p in array_problems(name, array) if "dtype" not in p]
