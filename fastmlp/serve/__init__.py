"""``fastmlp serve``: a page to draw a letter on and watch the network read it, and a JSON API beside it.

The page (``static/``: plain HTML, CSS and JavaScript, nothing fetched from elsewhere) sends the
drawing, or an image file, to ``POST /predict``, which converts it by the rule of ``fastmlp predict``
(:func:`fastmlp.images.read_image`) and answers the ranked letters and the 28 × 28 input the network
saw. Built on Starlette and uvicorn (the ``serve`` extra: ``pip install "fastmlp[serve]"``), which
only this package imports: ``import fastmlp`` never does.
"""

from __future__ import annotations

import importlib

from ..errors import FastMLPError

__all__ = ["serve"]

#: the packages of the ``serve`` extra
PACKAGES = ("starlette", "uvicorn")


def serve(model_path, *, host="127.0.0.1", port=8000, backend=None):
    """Load ``model_path``, warm it up and serve the page and the API until Ctrl-C (or SIGTERM)."""
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
