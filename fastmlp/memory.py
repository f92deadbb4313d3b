"""Host memory: refuse what cannot fit before allocating it, and turn an out-of-memory during an
allocation into :class:`~fastmlp.errors.HostMemoryError` (still a ``MemoryError``) with the bytes
and a hint."""

from __future__ import annotations

import contextlib
import os

from .errors import FastMLPError, HostMemoryError, format_bytes

__all__ = ["physical_memory", "ensure_fits", "host_memory_errors"]


def physical_memory():
    """This machine's main memory in bytes, or None where the system does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def ensure_fits(nbytes, doing):
    """Raise :class:`HostMemoryError` when ``nbytes`` exceed this machine's whole main memory."""
    total = physical_memory()
    if total is not None and nbytes > total:
        raise HostMemoryError(
            f"{doing} needs {format_bytes(nbytes)}, more than this machine's {format_bytes(total)} of "
            "memory; use a smaller model or data set",
            bytes_requested=nbytes,
        )


@contextlib.contextmanager
def host_memory_errors(doing):
    """Re-raise a MemoryError of the block (NumPy's included) as :class:`HostMemoryError`;
    fastmlp's own memory errors (host or device) pass through unchanged."""
    try:
        yield
    except FastMLPError:
        raise
    except MemoryError as exc:
        raise HostMemoryError.from_exception(exc, doing) from None
