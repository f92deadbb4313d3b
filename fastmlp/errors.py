"""The one exception hierarchy of fastmlp.

Every error fastmlp raises on purpose is a :class:`FastMLPError`, mixed with the
builtin a caller would expect, so ``except ValueError`` keeps working::

    FastMLPError
    ├── InvalidInputError    (ValueError)         bad values, shapes, labels, file contents
    ├── InvalidTypeError     (TypeError)          wrong dtypes
    ├── MissingFileError     (FileNotFoundError)  a data or weights file is not there
    ├── StorageError         (OSError)            a save or download that failed
    ├── BackendError         (RuntimeError)       backend package missing, no GPU, compiler missing
    ├── DeviceMemoryError    (MemoryError)        the device ran out of memory
    ├── HostMemoryError      (MemoryError)        the host (main memory) ran out of memory
    └── DivergenceError      (FloatingPointError) the training loss diverged
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

__all__ = [
    "FastMLPError",
    "InvalidInputError",
    "InvalidTypeError",
    "MissingFileError",
    "StorageError",
    "BackendError",
    "DeviceMemoryError",
    "HostMemoryError",
    "DivergenceError",
]

#: FastMLPError or one of its subclasses
_Error = TypeVar("_Error", bound="FastMLPError")


class FastMLPError(Exception):
    """Base class of every error fastmlp raises on purpose.

    ``parameter``: the API argument the error is about, when there is one. An error made by
    :meth:`about` says the argument's name, then what is wrong with it, and :meth:`naming` says the
    same with another name in that place (the command line names the argument's flag)."""

    def __init__(self, *args: object, parameter: str | None = None) -> None:
        super().__init__(*args)
        self.parameter = parameter
        self._predicate: str | None = None

    @classmethod
    def about(cls: type[_Error], parameter: str, predicate: str) -> _Error:
        """The error "<parameter> <predicate>", e.g. ``about("lr", "must be > 0, got -1")``."""
        error = cls(f"{parameter} {predicate}", parameter=parameter)
        error._predicate = predicate
        return error

    def naming(self, name: str) -> str:
        """The message with the argument called ``name`` (the message as it is, for an error that
        was not made by :meth:`about`)."""
        return str(self) if self._predicate is None else f"{name} {self._predicate}"


class InvalidInputError(FastMLPError, ValueError):
    """A value, shape, label or file content is not what fastmlp accepts."""


class InvalidTypeError(FastMLPError, TypeError):
    """An array or argument has a type or dtype fastmlp cannot use."""


class MissingFileError(FastMLPError, FileNotFoundError):
    """A data or weights file does not exist."""


class StorageError(FastMLPError, OSError):
    """Writing or downloading a file failed; nothing that existed before was changed."""


class BackendError(FastMLPError, RuntimeError):
    """The chosen backend cannot run here (package missing, no usable device, ...)."""


class DeviceMemoryError(FastMLPError, MemoryError):
    """The backend's device ran out of memory."""


class HostMemoryError(FastMLPError, MemoryError):
    """The host ran out of memory (or an allocation was refused before it was tried).

    ``bytes_requested`` is the size of the allocation that failed (or was refused), when known;
    ``bytes_available`` the memory that was available when it was refused up front.
    """

    def __init__(self, message: str, *, bytes_requested: int | None = None, bytes_available: int | None = None) -> None:
        super().__init__(message)
        self.bytes_requested = bytes_requested
        self.bytes_available = bytes_available

    @classmethod
    def from_exception(cls, exc: MemoryError, doing: str, bytes_requested: int | None = None) -> HostMemoryError:
        """The error for a MemoryError ``exc`` raised while ``doing`` (e.g. "loading data.npz")."""
        if bytes_requested is None:
            shape, dtype = getattr(exc, "shape", None), getattr(exc, "dtype", None)  # NumPy's _ArrayMemoryError
            if shape is not None and dtype is not None:
                bytes_requested = int(math.prod(shape)) * dtype.itemsize
        return cls(
            f"out of memory {doing}"
            + ("" if bytes_requested is None else f": {format_bytes(bytes_requested)} could not be allocated")
            + "; free memory, or use a smaller model or data set",
            bytes_requested=bytes_requested,
        )


def format_bytes(n: int) -> str:
    """``n`` bytes in words: '1.5 GiB (1610612736 bytes)'."""
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.3g} {unit} ({n} bytes)"
    return f"{n} bytes"


class DivergenceError(FastMLPError, FloatingPointError):
    """Training diverged: a training loss that is not finite, or far above the initial one.

    Attributes: ``epoch`` (1-based; 0 for the initial weights), ``lr``, ``last_accepted_loss``
    (the last training loss the divergence check accepted, whose weights the model keeps; None
    when the very first loss was rejected) and ``history`` (the epochs recorded before it).
    """

    def __init__(
        self, message: str, *, epoch: int, lr: float, last_accepted_loss: float | None, history: Any = None
    ) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.lr = lr
        self.last_accepted_loss = last_accepted_loss
        self.history = history
