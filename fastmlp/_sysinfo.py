"""Facts about this machine and its libraries, for ``fastmlp info`` and benchmark records."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import numpy as np

__all__ = ["blas_info", "numpy_blas", "machine_info", "cpu_model"]


def cpu_model():
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _pool_name(pool):
    return f"{pool.get('internal_api')} {pool.get('version')}"


def _owner(filepath):
    """The Python package that ships a shared library (``scipy`` for
    ``.../site-packages/scipy.libs/libx.so``), or ``'the system'``."""
    for folder in Path(filepath).parents:
        if folder.parent.name in ("site-packages", "dist-packages"):
            return folder.name.removesuffix(".libs")
    return "the system"


def numpy_blas(pools):
    """Of threadpoolctl's ``pools``, the BLAS that NumPy's own products call: the one inside NumPy's
    installation (``numpy/`` or the wheel's ``numpy.libs/``), else the first BLAS loaded.

    Other packages may load a BLAS of their own into the process (Numba loads SciPy's copy of
    OpenBLAS): it serves their calls, not NumPy's ``@``, and may be listed first."""
    blas = [pool for pool in pools if pool.get("user_api") == "blas"]
    home = Path(np.__file__).resolve().parent
    for pool in blas:
        path = Path(pool.get("filepath") or "").resolve()
        if path.is_relative_to(home) or path.is_relative_to(home.parent / "numpy.libs"):
            return pool
    return blas[0] if blas else None


def _declared_blas():
    """The BLAS NumPy was built with, from its build configuration (without threadpoolctl)."""
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    except Exception:
        return "unknown"


def blas_info():
    """NumPy's BLAS, which does the products of NumPy's ``@``: library, version, kernel
    architecture, thread count; ``other_blas``: any other BLAS loaded into the process, and whose
    (e.g. SciPy's copy, which Numba loads: it does none of NumPy's products)."""
    info = {"blas": _declared_blas(), "blas_threads": None}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        threadpool_info = None
    pools = threadpool_info() if threadpool_info is not None else []
    mine = numpy_blas(pools)
    if mine is not None:
        info.update(blas=_pool_name(mine), blas_architecture=mine.get("architecture"), blas_threads=mine["num_threads"])
    others = [pool for pool in pools if pool.get("user_api") == "blas" and pool is not mine]
    if others:
        info["other_blas"] = "; ".join(
            f"{_pool_name(p)} ({_owner(p.get('filepath') or '')}'s copy, not NumPy's)" for p in others
        )
    info["openblas_thread_timeout"] = os.environ.get("OPENBLAS_THREAD_TIMEOUT")
    return info


def machine_info():
    """Python, NumPy, CPU and core count."""
    return {
        "python": sys.version.split()[0],
        "numpy_version": np.__version__,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
    }
