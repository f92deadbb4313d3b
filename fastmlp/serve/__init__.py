"""``fastmlp serve``: a page to draw a letter on and watch the network read it, and a JSON API beside it.

The page (``static/``: plain HTML, CSS and JavaScript, nothing fetched from elsewhere) sends the
drawing, or an image file, to ``POST /predict``, which converts it by the rule of ``fastmlp predict``
(:func:`fastmlp.images.read_image`) and answers the ranked letters and the 28 × 28 input the network
saw. Built on Starlette and uvicorn (the ``serve`` extra: ``pip install "fastmlp[serve]"``), which
only this package imports: ``import fastmlp`` never does.
"""

from __future__ import annotations

import importlib
import os

from ..errors import FastMLPError

__all__ = ["serve"]

#: the packages of the ``serve`` extra
PACKAGES = ("starlette", "uvicorn")
#: the thread pools a request's product would use: one thread each (see :func:`serve`)
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def serve(model_path, *, host="127.0.0.1", port=8000, backend=None):
    """Load ``model_path``, warm it up and serve the page and the API until Ctrl-C (or SIGTERM).

    A request is one image, whose products are far too small to share among threads: handing them
    to a pool's threads costs more than it saves (a 1 × 784 by 784 × 1000 product took 4 ms with two
    OpenBLAS threads on a busy two-core machine, 0.1 ms with one). So each pool keeps to one thread,
    and requests run in parallel instead: set here, before NumPy loads (the command line has not
    loaded it yet); a value the user set is kept."""
    for variable in THREAD_VARIABLES:
        os.environ.setdefault(variable, "1")
    for package in PACKAGES:
        try:
            importlib.import_module(package)
        except ImportError as exc:
            raise FastMLPError(
                f"fastmlp serve needs the package {package!r}, which cannot be imported ({exc}); "
                'install it with: pip install "fastmlp[serve]"'
            ) from None
    from .app import run

    return run(model_path, host=host, port=port, backend=backend)
