"""Files: checked before they are read, and written so that a failure never leaves a half-written one.

:func:`require_file` refuses a path that is missing or not a regular file, saying what it is, in one
wording for every kind of file; :func:`open_member` opens a member of a zip archive (an ``.npz`` data
set or weights file), refusing one that is encrypted or compressed by a method Python cannot read, and
:func:`npy_member` reads the header of an ``.npy`` member and refuses one holding less data than it
declares.

:func:`atomic_write` writes a temporary file in the target folder, flushes it to disk and
``os.replace``s it over the target: an interrupted write (exception, Ctrl-C, full disk) leaves the
old file as it was and removes the temporary file.

:func:`run_folder` does the same for a whole folder of results: it yields a fresh temporary folder
beside the destination, and on a clean exit moves it into place with one ``rename``; on any
exception, Ctrl-C included, it removes it. :func:`check_destination` validates a destination
before any work is done. Files and folders get the permissions the umask allows, like any other
program's.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import secrets
import shutil
import signal
import stat
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TypeAlias

import numpy as np

from .errors import InvalidInputError, MissingFileError, StorageError

__all__ = [
    "PathArg",
    "require_file",
    "open_member",
    "npy_member",
    "atomic_write",
    "write_text",
    "check_destination",
    "check_file_destination",
    "run_folder",
    "default_run_name",
]

#: a path as the API takes it: a string or any path-like object
PathArg: TypeAlias = "str | os.PathLike[str]"

#: signals whose handlers could interrupt a rename or a clean-up half-way
_DEFERRED_SIGNALS = {signal.SIGINT, signal.SIGTERM}


# ---------------------------------------------------------------- reading
def require_file(path: PathArg, what: str) -> Path:
    """``path`` as a Path when it is a regular file (or a link to one); else a clear error saying what
    it is instead: missing, a folder, a named pipe, a socket, a device, a link to nothing or a link
    that loops. ``what`` names the file in the message ("data file", "weights file", "image file")."""
    path = Path(path)
    try:
        mode = path.stat().st_mode  # follows links
    except FileNotFoundError:
        if path.is_symlink():
            raise MissingFileError(
                f"{what} {path} is a symbolic link to {os.readlink(path)}, which does not exist"
            ) from None
        raise MissingFileError(f"{what} {path} does not exist") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InvalidInputError(f"{what} {path} is a symbolic link that loops (it leads back to itself)") from None
        raise InvalidInputError(f"{what} {path} cannot be opened: {exc.strerror or exc}") from None
    if stat.S_ISREG(mode):
        return path
    raise InvalidInputError(f"{what} {path} is {_NOT_A_FILE.get(stat.S_IFMT(mode), 'not a regular file')}, not a file")


#: what a path that is not a regular file is, by its stat type
_NOT_A_FILE = {
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def open_member(archive: zipfile.ZipFile, name: str) -> IO[bytes]:
    """The member ``name`` of a zip archive, open for reading; an InvalidInputError for a member that
    is encrypted or compressed by a method Python's zipfile cannot read (Deflate64, PPMd, ...)."""
    try:
        return archive.open(name)
    except NotImplementedError as exc:  # zipfile: "That compression method is not supported"
        method = archive.getinfo(name).compress_type
        raise InvalidInputError(
            f"{name} is compressed by zip method {method}, which Python cannot read ({exc}); "
            "write it stored or deflated (numpy.savez, numpy.savez_compressed)"
        ) from None
    except RuntimeError as exc:  # zipfile: "File ... is encrypted, password required for extraction"
        raise InvalidInputError(f"{name} is encrypted ({exc}); write it without a password") from None


def npy_member(archive: zipfile.ZipFile, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from the header of the ``.npy`` member ``name`` of a zip archive, before NumPy
    allocates anything: an InvalidInputError when the member holds less data than its shape needs,
    or cannot be opened (:func:`open_member`)."""
    fmt = np.lib.format
    with open_member(archive, name) as member:
        version = fmt.read_magic(member)
        read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, dtype = read_header(member)
    needed = math.prod(shape) * dtype.itemsize
    stored = archive.getinfo(name).file_size
    if not dtype.hasobject and stored < needed:
        raise InvalidInputError(f"{name} is truncated: {stored} bytes, its shape {shape} needs {needed} bytes of data")
    return shape, dtype


# ---------------------------------------------------------------- writing
def _umask():
    """The process's umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # the portable way: set and restore at once
    os.umask(mask)
    return mask


@contextlib.contextmanager
def _signals_deferred():
    """Hold SIGINT and SIGTERM back (they arrive when the block ends), so that a rename or a
    clean-up is never cut in half by a Python signal handler."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _DEFERRED_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def atomic_write(path: PathArg, write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write(binary_file)`` on a temporary file next to ``path``, then replace ``path``.

    The file gets the permissions the umask allows (like ``open``). On any failure the temporary
    file is removed, ``path`` is untouched, and an OSError becomes a :class:`StorageError` naming
    the path.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise StorageError(f"cannot write {path}: the folder {folder} does not exist")
    tmp_name = None
    try:
        with _signals_deferred():
            fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o666 & ~_umask())
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
        tmp_name = None
    except OSError as exc:
        raise StorageError(
            f"cannot write {path}: {exc.strerror or exc}; the existing file (if any) is unchanged"
        ) from exc
    finally:
        if tmp_name is not None:
            with _signals_deferred(), contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)


def write_text(path: PathArg, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


# ------------------------------------------------------------ run folders
def default_run_name(suffix: str = "", parent: PathArg = "runs") -> Path:
    """``runs/<YYYYmmdd-HHMMSS>-<6 hex digits><suffix>``: unique even for runs started in the same second."""
    return Path(parent) / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}{suffix}"


def _nearest_existing(path):
    """The path itself or its closest ancestor that exists (as anything, file included)."""
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return Path(".")


def check_destination(destination: PathArg, *, overwrite: bool = False, name: str = "--out") -> Path:
    """Validate a run folder's destination before any work; returns it as an absolute Path.

    Refused, with a :class:`StorageError` that starts with ``name`` and says why: a path that is
    a file (or anything but a folder), a path inside a file, a place where no folder can be created
    (tried for real: a probe folder is made and removed), and an existing folder that is not empty
    unless ``overwrite`` (which replaces it as a whole at the end).
    """
    path = Path(os.path.abspath(Path(destination).expanduser()))
    existing = _nearest_existing(path)
    if existing == path:
        if not path.is_dir():
            raise StorageError(f"{name} {destination}: {path} exists and is not a folder; choose another path")
        if not overwrite and any(path.iterdir()):
            raise StorageError(
                f"{name} {destination}: the folder {path} already holds files; choose another "
                "path, or pass --overwrite to replace it as a whole"
            )
        existing = path.parent
    elif not existing.is_dir():
        raise StorageError(f"{name} {destination}: {existing} is a file, so {path} cannot be created inside it")
    try:
        with _signals_deferred():
            os.rmdir(_make_temporary(existing, "probe"))
    except OSError as exc:
        raise StorageError(
            f"{name} {destination}: cannot create a folder in {existing} ({exc.strerror or exc}); choose another path"
        ) from None
    return path


def check_file_destination(path: PathArg, *, name: str, overwrite: bool = True) -> Path:
    """Validate where one output file will go, before any work: its folder exists and takes a new
    file, and the path is not a folder; ``overwrite=False`` also refuses a path that exists.
    Raises :class:`StorageError` starting with ``name``."""
    path = Path(os.path.abspath(Path(path).expanduser()))
    if path.is_dir():
        raise StorageError(f"{name} {path}: is a folder; give a file name")
    if not overwrite and os.path.lexists(path):
        raise StorageError(f"{name} {path}: already exists; choose another path, or pass --overwrite to replace it")
    if not path.parent.is_dir():
        raise StorageError(f"{name} {path}: the folder {path.parent} does not exist")
    try:
        with _signals_deferred():
            os.rmdir(_make_temporary(path.parent, "probe"))
    except OSError as exc:
        raise StorageError(f"{name} {path}: cannot write in {path.parent} ({exc.strerror or exc})") from None
    return path


def _make_parents(folder):
    """Create ``folder`` and its missing ancestors; returns those created, deepest first."""
    missing = [p for p in (folder, *folder.parents) if not os.path.lexists(p)]
    for p in reversed(missing):
        os.mkdir(p)  # the umask applies
    return missing


def _make_temporary(parent, name):
    """A new, empty folder ``parent/.<name>.<random>.tmp`` (umask permissions)."""
    while True:
        candidate = parent / f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            os.mkdir(candidate)
            return candidate
        except FileExistsError:
            continue


def _unique_sibling(path):
    return path.with_name(f"{path.name}-{secrets.token_hex(3)}")


def _move_into_place(temporary, destination, overwrite):
    """One rename of ``temporary`` onto ``destination``; returns where the folder ended up."""
    old = None
    if overwrite and destination.is_dir() and not destination.is_symlink():
        old = destination.with_name(f".{destination.name}.{secrets.token_hex(4)}.old")
        os.rename(destination, old)
    try:
        os.rename(temporary, destination)  # replaces a missing or empty folder in one step
    except OSError as exc:
        if old is not None:
            os.rename(old, destination)
        if old is not None or exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise StorageError(f"cannot move the run into {destination}: {exc.strerror or exc}") from None
        # another run filled the destination while this one worked: keep this run beside it
        sibling = _unique_sibling(destination)
        os.rename(temporary, sibling)
        return sibling
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return destination


@contextlib.contextmanager
def run_folder(destination: PathArg, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``destination``; on a clean exit move it into place whole.

    The destination is checked first (:func:`check_destination`). Write every file of the run into
    the yielded folder. On a clean exit it is renamed onto ``destination`` in one step
    (``overwrite=True`` replaces an existing folder as a whole); if another run filled the
    destination meanwhile, this run's folder is kept beside it under a new name and a
    :class:`StorageError` names both. On any exception (Ctrl-C included) the temporary folder and
    any parent folders created for it are removed and the exception propagates: the destination
    ends up complete or untouched, never in between.
    """
    path = check_destination(destination, overwrite=overwrite)
    created = temporary = None
    try:
        with _signals_deferred():
            created = _make_parents(path.parent)
            temporary = _make_temporary(path.parent, path.name)
        yield temporary
        with _signals_deferred():
            final = _move_into_place(temporary, path, overwrite)
            temporary = None
    except BaseException:
        with _signals_deferred():
            if temporary is not None:
                shutil.rmtree(temporary, ignore_errors=True)
            for folder in created or ():
                with contextlib.suppress(OSError):
                    os.rmdir(folder)
        raise
    if final != path:
        raise StorageError(
            f"{path} was filled by another run while this one worked; "
            f"this run's results were written to {final} instead"
        )
