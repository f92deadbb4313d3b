"""Host memory: one budget for every input, and out-of-memory errors with the bytes and a hint.

:func:`ensure_fits` is the budget: a caller that is about to read or build something large says what
it will hold at its peak (every copy, in every dtype) and is refused up front, with
:class:`~fastmlp.errors.HostMemoryError`, when that is more than :func:`available_memory`: the memory
this process can take *now* (not the machine's total), the least of

- what the system has available (``MemAvailable`` in ``/proc/meminfo``; where the system does not say,
  the machine's whole memory),
- what the process's control group still allows (a container's memory limit, cgroup v2 or v1),
- what its address-space limit leaves (``ulimit -v``, ``RLIMIT_AS``).

:func:`host_memory_errors` turns an out-of-memory during an allocation into the same error.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .errors import FastMLPError, HostMemoryError, format_bytes

__all__ = ["physical_memory", "available_memory", "ensure_fits", "host_memory_errors"]

_CGROUP = Path("/sys/fs/cgroup")
#: a cgroup v1 memory limit at or above this means "no limit" (the kernel's page-rounded 2**63 - 1)
_NO_LIMIT = 1 << 62


def physical_memory():
    """This machine's main memory in bytes, or None where the system does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _read_fields(path, names):
    """{name: int} of the ``name value [kB]`` lines of a /proc or /sys file (kB turned into bytes)."""
    found = {}
    with contextlib.suppress(OSError, ValueError), open(path) as handle:
        for line in handle:
            parts = line.replace(":", " ").split()
            if len(parts) >= 2 and parts[0] in names:
                found[parts[0]] = int(parts[1]) * (1024 if parts[2:3] == ["kB"] else 1)
    return found


def _system_available():
    """Bytes the system could give without swapping: MemAvailable (Linux); elsewhere the machine's
    whole memory, the one figure every system gives."""
    return _read_fields("/proc/meminfo", {"MemAvailable"}).get("MemAvailable") or physical_memory()


def _read_int(path):
    with contextlib.suppress(OSError, ValueError):
        return int(Path(path).read_text().strip())  # "max" (no limit) is a ValueError
    return None


#: per cgroup version (v2?): its limit file, its usage file, and the memory.stat field of page cache
#: that can be reclaimed (not counted as held)
_CGROUP_FILES = {
    True: ("memory.max", "memory.current", "inactive_file"),
    False: ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"),
}


def _cgroup_folders():
    """(folder, is v2) of this process's memory control group, then of the mount's root (a container
    sees its own group there)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return
    for line in lines:
        _, controllers, relative = line.split(":", 2)
        v2 = controllers == ""
        if v2 or "memory" in controllers.split(","):
            root = _CGROUP if v2 else _CGROUP / "memory"
            yield from ((root / relative.lstrip("/"), v2), (root, v2))


def _cgroup_available():
    """What this process's control group still allows: its limit less what it holds (reclaimable page
    cache excluded); None without a limit."""
    for folder, v2 in _cgroup_folders():
        limit_file, usage_file, cache = _CGROUP_FILES[v2]
        limit = _read_int(folder / limit_file)
        if limit is not None and limit < _NO_LIMIT:
            usage = _read_int(folder / usage_file) or 0
            reclaimable = _read_fields(folder / "memory.stat", {cache}).get(cache, 0)
            return max(0, limit - (usage - reclaimable))
    return None


def _address_space_left():
    """What the address-space limit (RLIMIT_AS) leaves to this process; None without one."""
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    except (ImportError, OSError, ValueError):
        return None
    if limit == resource.RLIM_INFINITY:
        return None
    size = _read_fields("/proc/self/status", {"VmSize"}).get("VmSize")
    return None if size is None else max(0, limit - size)


def available_memory() -> int | None:
    """Bytes this process can allocate now (see the module's docstring); None where nothing is known."""
    known = [n for n in (_system_available(), _cgroup_available(), _address_space_left()) if n is not None]
    return min(known) if known else None


def ensure_fits(nbytes: int, doing: str, *, hint: str = "free memory, or use a smaller model or data set") -> None:
    """Raise :class:`HostMemoryError` when ``nbytes`` (what ``doing`` will hold at its peak) exceed the
    memory available now; the message names both figures and ``hint``."""
    available = available_memory()
    if available is not None and nbytes > available:
        raise HostMemoryError(
            f"{doing} needs {format_bytes(nbytes)} at its peak, more than the {format_bytes(available)} "
            f"of memory available now; {hint}",
            bytes_requested=nbytes,
            bytes_available=available,
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
