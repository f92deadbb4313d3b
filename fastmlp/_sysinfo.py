"""Facts about this machine and its libraries, for ``fastmlp info`` and benchmark records."""

from __future__ import annotations

import os
import platform
import sys

import numpy as np

__all__ = ["blas_info", "machine_info", "cpu_model"]


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


def blas_info():
    """NumPy's BLAS: library, version, kernel architecture and thread count."""
    info = {"blas": "unknown", "blas_threads": None}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        threadpool_info = None
    if threadpool_info is not None:
        for pool in threadpool_info():
            if pool.get("user_api") == "blas":
                info.update(
                    blas=f"{pool.get('internal_api')} {pool.get('version')}",
                    blas_architecture=pool.get("architecture"),
                    blas_threads=pool.get("num_threads"),
                )
                break
    else:
        try:
            config = np.show_config(mode="dicts")
            blas = config["Build Dependencies"]["blas"]
            info["blas"] = f"{blas.get('name')} {blas.get('version')}"
        except Exception:
            pass
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
