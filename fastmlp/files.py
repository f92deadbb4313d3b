"""Writing files so that a failure never leaves a half-written one.

:func:`atomic_write` writes a temporary file in the target folder, flushes it to disk and
``os.replace``s it over the target: an interrupted write (exception, Ctrl-C, full disk) leaves the
old file as it was and removes the temporary file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import StorageError

__all__ = ["atomic_write", "write_text"]


def atomic_write(path, write):
    """Call ``write(binary_file)`` on a temporary file next to ``path``, then replace ``path``.

    On any failure the temporary file is removed, ``path`` is untouched, and an OSError becomes a
    :class:`StorageError` naming the path.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise StorageError(f"cannot write {path}: the folder {folder} does not exist")
    tmp_name = None
    try:
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
        tmp_name = None
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}; the existing file (if any) is unchanged") from exc
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except FileNotFoundError:
                pass


def write_text(path, text):
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))
