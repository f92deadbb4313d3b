"""pytest-benchmark suite: one epoch per (usable backend x dtype x hidden) on the notMNIST shape.

Run with ``pytest bench/ --benchmark-only``. Like the ``fastmlp`` command, this sets
OPENBLAS_THREAD_TIMEOUT before NumPy loads so OpenBLAS workers do not spin over Numba's kernels.
"""

import os
import sys

if "numpy" not in sys.modules:
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
