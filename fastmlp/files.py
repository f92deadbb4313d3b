"""Files: checked before they are read, and written so that a failure never leaves a half-written one.

:func:`require_file` refuses a path that is missing or not a regular file, saying what it is, in one
wording for every kind of file; :func:`open_member` opens a member of a zip archive (an ``.npz`` data
set or weights file), refusing one that is encrypted or compressed by a method Python cannot read, and
:func:`npy_member` reads the header of an ``.npy`` member and refuses one holding less data than it
declares.

**One rule for every destination** (a run folder, ``--json``, ``--plot``, an ONNX file, a weights
file). A write goes where the path leads: symbolic links are followed and their target is written,
the link stays. What is found there decides how:

- nothing, or a regular file: :func:`atomic_write` writes a temporary file in the target's folder,
  flushes it to disk and replaces the target with it (``os.replace``): an interrupted write (exception,
  Ctrl-C, full disk) leaves the old file as it was and removes the temporary file;
- a FIFO, a character device (``/dev/null``, a terminal) or one of this process's open file
  descriptors (``/dev/stdout``, ``/dev/fd/N``): written into, never replaced; the content is made
  in memory first, so a failure while making it sends nothing; a FIFO that no process reads is an
  error, not a hang;
- a folder, a socket or a block device: refused.

:func:`run_folder` writes a whole folder of results: it yields a fresh temporary folder beside the
destination, and on a clean exit moves it into place with one ``rename``; on any exception, Ctrl-C
included, it removes it. :func:`check_destination` and :func:`check_file_destination` check a
destination before any work is done. A folder is replaced (``overwrite``) only when it is none of
the places that are never replaced: a folder holding an input of the command, the working folder
or one of its parents, the home folder or one of its parents, a mount point. Files and folders get
the permissions the umask allows, like any other program's.

A Ctrl-C or SIGTERM that arrives while a destination is put in place is held back until it is
there, then raised with ``written`` (a tuple of paths) naming what is in place, so that the
command line can say what is true.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
import secrets
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, NamedTuple, TypeAlias

import numpy as np

from .errors import InvalidInputError, MissingFileError, StorageError

__all__ = [
    "PathArg",
    "require_file",
    "open_member",
    "npy_member",
    "atomic_write",
    "write_text",
    "write_json",
    "printable",
    "Target",
    "target_of",
    "check_destination",
    "check_file_destination",
    "run_folder",
    "default_run_name",
]

#: a path as the API takes it: a string or any path-like object
PathArg: TypeAlias = "str | os.PathLike[str]"

#: signals whose handlers could interrupt a rename or a clean-up half-way
_DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: symbolic links followed in a row before a path counts as a loop (Linux's own limit)
_MAX_LINKS = 40


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


# ------------------------------------------------------------ destinations
class Target(NamedTuple):
    """Where a write to a path lands."""

    #: the path a write reaches, symbolic links followed
    path: Path
    #: what is there now: "missing", "file", "folder", "stream" (a FIFO, a character device or an
    #: open descriptor), "socket" or "block device"
    kind: str
    #: this process's open file descriptor the path names (``/dev/stdout``: 1), else None
    descriptor: int | None = None


_KINDS = ((stat.S_ISREG, "file"), (stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "stream"), (stat.S_ISCHR, "stream"))


def target_of(path: PathArg) -> Target:
    """Follow ``path``'s symbolic links one at a time to where a write lands, and say what is there.

    A link into this process's descriptor folder (``/proc/<pid>/fd``, which ``/dev/stdout`` and
    ``/dev/fd/N`` lead to) stops the walk: it names an open descriptor, a stream. A chain of more
    than 40 links (a loop) is a :class:`StorageError`."""
    descriptors = Path(f"/proc/{os.getpid()}/fd")
    current = Path(os.path.abspath(Path(path).expanduser()))
    for _ in range(_MAX_LINKS):
        if current.name in ("", ".", ".."):  # the root, or a link to a folder's "." or ".."
            return _target(Path(os.path.realpath(current)))
        folder = Path(os.path.realpath(current.parent))
        current = folder / current.name
        if folder == descriptors and current.name.isdigit():
            return Target(current, "stream", int(current.name))
        if not current.is_symlink():
            return _target(current)
        current = folder / os.readlink(current)  # a relative link is relative to its own folder
    raise StorageError(f"{path}: more than {_MAX_LINKS} symbolic links in a row (a loop?); give another path")


def _target_for(given, name):
    """:func:`target_of` for a checked destination: its errors start with ``name``."""
    try:
        return target_of(given)
    except StorageError as exc:
        raise StorageError(f"{name} {exc}") from None


def _target(path):
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return Target(path, "missing")
    except OSError as exc:
        raise StorageError(f"{path}: {exc.strerror or exc}") from None
    kind = next((kind for test, kind in _KINDS if test(mode)), "socket" if stat.S_ISSOCK(mode) else "block device")
    return Target(path, kind)


def _via(given, target):
    """`` (a link to TARGET)`` when the user's path is not where the write lands."""
    return "" if target.path == given else f" (a link to {target.path})"


def _nearest_existing(path):
    """The path itself or its closest ancestor that exists (as anything, file included)."""
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return Path(".")


def _refuse_missing_folder(folder, name, given):
    """A StorageError when a file cannot be made in ``folder``: it is missing, or inside a file."""
    if folder.is_dir():
        return
    existing = _nearest_existing(folder)
    if existing.is_dir():
        raise StorageError(f"{name} {given}: the folder {folder} does not exist")
    raise StorageError(f"{name} {given}: {existing} is a file, not a folder")


def _probe(folder, name, given, doing):
    """Create and remove a folder in ``folder``, for real: a StorageError when that fails."""
    try:
        with _signals_deferred():
            os.rmdir(_make_temporary(folder, "probe"))
    except OSError as exc:
        raise StorageError(
            f"{name} {given}: cannot {doing} in {folder} ({exc.strerror or exc}); choose another path"
        ) from None


def _places_never_replaced(inputs):
    """(what, folder) of each place that is never replaced, and of each input, as written and with
    its links followed."""
    for what, find in (("the working folder", Path.cwd), ("your home folder", Path.home)):
        with contextlib.suppress(OSError, RuntimeError, KeyError):
            place = find().resolve()
            yield f"{what} {place}", place
    for what, path in inputs.items():
        for place in {Path(os.path.abspath(path)), Path(os.path.realpath(path))}:
            yield f"{what} ({path})", place


def _never_replaced(folder, inputs):
    """Why ``folder`` (its links followed) is never replaced, or None."""
    for what, place in _places_never_replaced(inputs):
        if folder == place:
            return f"is {what}"
        if folder in place.parents:
            return f"holds {what}"
    return "is a mount point" if os.path.ismount(folder) else None


def check_destination(
    destination: PathArg, *, overwrite: bool = False, name: str = "--out", inputs: Mapping[str, PathArg] | None = None
) -> Path:
    """Check a run folder's destination before any work; returns the folder it leads to (absolute,
    symbolic links followed: a link to a folder is written through).

    Refused, with a :class:`StorageError` that starts with ``name`` and says why: a path that is
    a file (or anything but a folder), a path inside a file, a place where no folder can be created
    (tried for real: a probe folder is made and removed), an existing folder that is not empty
    unless ``overwrite`` (which replaces it as a whole at the end), and, whatever ``overwrite``
    says, an existing folder that is never replaced: one that holds an input of the command
    (``inputs``: {what it is, e.g. "the data": its path}), the working folder or a parent of it, the
    home folder or a parent of it, a mount point.
    """
    given = Path(os.path.abspath(Path(destination).expanduser()))
    target = _target_for(given, name)
    path = target.path
    if target.kind == "folder":
        reason = _never_replaced(path, inputs or {})
        if reason:
            raise StorageError(
                f"{name} {destination}: the folder {given}{_via(given, target)} {reason}, so it is never "
                "replaced; choose another folder"
            )
        if not overwrite and any(path.iterdir()):
            raise StorageError(
                f"{name} {destination}: the folder {given}{_via(given, target)} already holds files; choose another "
                "path, or pass --overwrite to replace it as a whole"
            )
        parent = path.parent
    elif target.kind == "missing":
        parent = _nearest_existing(path)
        if not parent.is_dir():
            raise StorageError(f"{name} {destination}: {parent} is a file, so {path} cannot be created inside it")
    else:
        raise StorageError(
            f"{name} {destination}: {given}{_via(given, target)} exists and is not a folder; choose another path"
        )
    _probe(parent, name, destination, "create a folder")
    return path


def check_file_destination(
    path: PathArg, *, name: str, overwrite: bool = True, inputs: Mapping[str, PathArg] | None = None
) -> Path:
    """Check where one output file will go, before any work; returns the path (absolute).

    Accepted: a new file in an existing folder, an existing regular file (``overwrite=False``
    refuses it), a FIFO, a character device or an open descriptor (written into, whatever
    ``overwrite`` says), each reached through symbolic links (see :func:`target_of`). Refused, with
    a :class:`StorageError` starting with ``name``: a folder, a socket, a block device, a file that
    is one of ``inputs`` ({what it is: its path}), a folder that is missing, inside a file or
    takes no new file."""
    given = Path(os.path.abspath(Path(path).expanduser()))
    target = _target_for(given, name)
    if target.kind == "stream":
        return given
    if target.kind == "folder":
        raise StorageError(f"{name} {given}: is a folder{_via(given, target)}; give a file name")
    if target.kind not in ("missing", "file"):
        raise StorageError(f"{name} {given}: is a {target.kind}{_via(given, target)}; give a file name")
    for what, source in (inputs or {}).items():
        if target.kind == "file" and os.path.exists(source) and os.path.samefile(target.path, source):
            raise StorageError(f"{name} {given}: is {what}{_via(given, target)}; give another file name")
    if target.kind == "file" and not overwrite:
        raise StorageError(f"{name} {given}: already exists; choose another path, or pass --overwrite to replace it")
    _refuse_missing_folder(target.path.parent, name, given)
    _probe(target.path.parent, name, given, "write")
    return given


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
    """Hold SIGINT and SIGTERM back while the block runs, so that a rename or a clean-up is never
    cut in half by a Python signal handler; one that arrived meanwhile is handled as the block ends.

    The handlers are swapped for one that only notes the signal (not the signal mask: another
    thread, a BLAS worker say, would take a signal the main thread blocks, and Python would still
    raise KeyboardInterrupt in the main thread at once)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []

    def note(number, frame):
        arrived.append(number)

    # (a handler that C code installed, which Python cannot put back, is left alone)
    previous: dict[int, Any] = {s: signal.signal(s, note) for s in _DEFERRED_SIGNALS if signal.getsignal(s) is not None}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for number in dict.fromkeys(arrived):
            _handle(number, previous[number])


def _handle(signum, handler):
    """What the process does on ``signum`` under ``handler``: call it (Python's own raises
    KeyboardInterrupt for SIGINT), or the system's default action."""
    if callable(handler):
        handler(signum, None)
    elif handler == signal.SIG_DFL:
        os.kill(os.getpid(), signum)


def _in_place(put: Callable[..., Path], *args: Any) -> Path:
    """``put(*args)``, which puts a destination in place and returns where, with SIGINT and SIGTERM
    held back; one that arrived meanwhile is raised afterwards with ``written`` naming that place."""
    placed = None
    try:
        with _signals_deferred():
            placed = put(*args)
    except KeyboardInterrupt as exc:
        if placed is not None:
            exc.written = (*getattr(exc, "written", ()), placed)  # type: ignore[attr-defined]
        raise
    return placed


def _replace(source, destination):
    os.replace(source, destination)
    return destination


def atomic_write(path: PathArg, write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write(binary_file)`` and put what it wrote at ``path``, by the rule of the module's
    docstring: a regular file (new or existing, a link's target included) is replaced atomically
    by a temporary file beside it; a FIFO, a device or an open descriptor is written into.

    A new file gets the permissions the umask allows (like ``open``). On any failure the temporary
    file is removed, ``path`` is untouched, and an OSError becomes a :class:`StorageError` naming
    the path.
    """
    path = Path(path)
    target = target_of(path)
    if target.kind == "stream":
        _write_into(path, target, write)
        return
    if target.kind not in ("missing", "file"):
        raise StorageError(f"cannot write {path}: it is a {target.kind}{_via(Path(os.path.abspath(path)), target)}")
    folder = target.path.parent
    _refuse_missing_folder(folder, "cannot write", path)
    tmp_name = None
    try:
        with _signals_deferred():
            fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{target.path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o666 & ~_umask())
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        _in_place(_replace, tmp_name, target.path)
        tmp_name = None
    except OSError as exc:
        raise StorageError(
            f"cannot write {path}: {exc.strerror or exc}; the existing file (if any) is unchanged"
        ) from exc
    finally:
        if tmp_name is not None:
            with _signals_deferred(), contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)


def _write_into(path, target, write):
    """Write into a FIFO, a device or an open descriptor as it is (see :func:`atomic_write`)."""
    content = io.BytesIO()
    write(content)  # made first: a failure here sends nothing
    try:
        if target.descriptor is not None:
            _flush_python_streams(target.descriptor)  # what was printed comes first
            fd = os.dup(target.descriptor)  # shares the offset: a redirected stdout is appended to
        else:  # non-blocking open: a FIFO that nobody reads is ENXIO, not a hang
            fd = os.open(target.path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY)
            os.set_blocking(fd, True)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content.getvalue())
    except OSError as exc:
        why = "no process is reading it" if exc.errno == errno.ENXIO else exc.strerror or str(exc)
        raise StorageError(f"cannot write {path}: {why}") from exc


def _flush_python_streams(descriptor):
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            if stream.fileno() == descriptor:
                stream.flush()


def write_text(path: PathArg, text: str) -> None:
    """Write ``text`` (UTF-8; see :func:`printable` for file names that are not) to ``path`` atomically."""
    atomic_write(path, lambda handle: handle.write(printable(text).encode("utf-8")))


def write_json(path: PathArg, data: Any) -> None:
    """Write ``data`` as indented JSON (UTF-8, file names made :func:`printable`) to ``path`` atomically."""
    write_text(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def printable(text: str) -> str:
    """``text`` with each byte of a file name that is not UTF-8 (which Python carries as a lone
    surrogate) written as ``\\xNN``: valid UTF-8 that can be printed and put in JSON."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


# ------------------------------------------------------------ run folders
def default_run_name(suffix: str = "", parent: PathArg = "runs") -> Path:
    """``runs/<YYYYmmdd-HHMMSS>-<6 hex digits><suffix>``: unique even for runs started in the same second."""
    return Path(parent) / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}{suffix}"


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


def _displace(destination):
    """Rename an existing ``destination`` to a hidden ``.<name>.<random>.old`` beside it; returns
    that path, or None when there is nothing there (or another run moved it away first)."""
    old = destination.with_name(f".{destination.name}.{secrets.token_hex(4)}.old")
    try:
        os.rename(destination, old)
    except FileNotFoundError:
        return None
    return old


def _move_into_place(temporary, destination, overwrite):
    """One rename of ``temporary`` onto ``destination``; returns where the folder ended up.

    ``overwrite``: the folder there is first moved aside (:func:`_displace`), removed once the new
    one is in place, and put back if the new one cannot be put there. If another run fills the
    destination meanwhile, this run's folder is kept beside it under a new name (and a displaced
    folder, which this run was asked to replace, is removed)."""
    displaced = _displace(destination) if overwrite else None
    try:
        os.rename(temporary, destination)  # replaces a missing or empty folder in one step
        final = destination
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            if displaced is not None:
                os.rename(displaced, destination)
            raise StorageError(f"cannot move the run into {destination}: {exc.strerror or exc}") from None
        final = _unique_sibling(destination)  # another run filled the destination while this one worked
        os.rename(temporary, final)
    if displaced is not None:
        shutil.rmtree(displaced, ignore_errors=True)
    return final


@contextlib.contextmanager
def run_folder(
    destination: PathArg, *, overwrite: bool = False, inputs: Mapping[str, PathArg] | None = None
) -> Iterator[Path]:
    """Yield a temporary folder beside ``destination``; on a clean exit move it into place whole.

    The destination is checked first (:func:`check_destination`, with ``inputs``). Write every
    file of the run into the yielded folder. On a clean exit it is renamed onto ``destination`` in
    one step (``overwrite=True`` replaces an existing folder as a whole); if another run filled
    the destination meanwhile, this run's folder is kept beside it under a new name and a
    :class:`StorageError` names both. On any exception (Ctrl-C included) the temporary folder and
    any parent folders created for it are removed and the exception propagates: the destination
    ends up complete or untouched, never in between. A Ctrl-C or SIGTERM during the move is raised
    once the folder is in place, with ``written`` naming it.
    """
    path = check_destination(destination, overwrite=overwrite, inputs=inputs)
    created = temporary = None
    try:
        with _signals_deferred():
            created = _make_parents(path.parent)
            temporary = _make_temporary(path.parent, path.name)
        yield temporary
        final = _in_place(_move_into_place, temporary, path, overwrite)
        temporary = None
    except BaseException:
        with _signals_deferred():
            if temporary is not None:  # (already renamed away when a signal came during the move)
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
