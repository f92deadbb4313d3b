"""The application behind ``fastmlp serve`` (Starlette) and the server that runs it (uvicorn).

    GET  /         the page (``static/index.html``, and ``/static/``: its script and style sheet)
    POST /predict  the bytes of an image file -> the letters ranked and the 28 × 28 input, as JSON
    GET  /model    what the model is: layers, classes, dtype, backend, what its weights file records
    GET  /health   {"status": "ok"}

Every error is JSON, ``{"error": message}``: 404 and 405 for unknown paths and methods, 413 for an
upload over :data:`MAX_UPLOAD_BYTES` (refused while it is read, not after), 415 for a form instead
of a file's bytes, 422 with the words of ``fastmlp predict`` for what is not an image or what the
conversion rule refuses (and for bad ``top`` or ``ink`` values).
"""

from __future__ import annotations

import base64
import io
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .. import images
from ..errors import InvalidInputError
from ..mlp import MLP
from ..weights import load_weights

__all__ = ["MAX_UPLOAD_BYTES", "Reader", "create_app", "run"]

MAX_UPLOAD_BYTES = 5 * 2**20  # 5 MiB; a letter's image needs far less
#: the page's files, shipped inside the package
STATIC = Path(__file__).with_name("static")
#: what a request's ``name`` may be: this many printable characters
MAX_NAME_LENGTH = 100
#: metadata of a weights file that the model's own facts already say
_LAYOUT_KEYS = ("format", "format_version", "dtype", "shapes", "classes")
TOO_LARGE = (
    f"the upload is larger than {MAX_UPLOAD_BYTES // 2**20} MiB ({MAX_UPLOAD_BYTES} bytes), the most "
    "fastmlp serve reads; a letter's image needs far less: send a smaller file"
)
NOT_A_FORM = "send the image file's bytes as the request's body (curl --data-binary @letter.png), not a form (curl -F)"


class Reader:
    """The served model: an image file's bytes in, its ranked letters and the network's input out.

    The model is only read, but a backend may write even a prediction into a buffer it reuses (the
    GPU backend's logits), and array libraries have threading rules of their own: predictions go
    through one at a time (a lock; one image takes well under a millisecond), while the uploads are
    decoded and converted in parallel."""

    def __init__(self, model_path, backend=None):
        self.path = Path(model_path)
        self.model = MLP.load(model_path, backend=backend)
        metadata = load_weights(model_path)[1]  # MLP.load keeps only what computing needs
        self.recorded = {key: value for key, value in metadata.items() if key not in _LAYOUT_KEYS}
        self._lock = threading.Lock()

    def read(self, body, *, name="upload", ink="auto", top=3):
        """The bytes of an image file -> (its :class:`~fastmlp.images.Prediction`, the 28 × 28 input as PNG bytes).

        Raises InvalidInputError with the words of ``fastmlp predict`` (naming the file ``name``)."""
        upload = io.BytesIO(body)
        upload.name = name
        grey = images.read_image(upload, ink=ink)  # (28, 28) uint8, by the conversion rule
        with self._lock:
            [prediction] = images.rank_images(self.model, [name], grey[None], top=top)
        return prediction, _png(grey)

    def warm_up(self):
        """One request's whole path (decode, convert, predict, encode), so that the first real request
        does not wait for kernels to compile; returns the seconds it took."""
        ring = np.zeros((40, 40), np.uint8)  # a light O on black
        ring[8:32, 8:32] = 255
        ring[14:26, 14:26] = 0
        start = time.perf_counter()
        self.read(_png(ring), name="warm-up")
        return time.perf_counter() - start

    def facts(self):
        """The model in words, for ``GET /model`` and the page's "about this model" panel."""
        model, facts = self.model, self.model.backend_facts
        return {
            "file": self.path.name,
            "layers": [model.n_in, model.n_hidden, model.n_out],
            "classes": list(model.classes),
            "dtype": model.dtype,
            "backend": model.backend,
            "device": facts["device"],
            "threads": {key: value for key, value in facts.items() if key.endswith("threads")},
            "precision": model.precision,
            "recorded": self.recorded,  # what else the weights file says (e.g. the training precision)
        }


def _png(grey):
    """2-D uint8 grey levels -> PNG bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(grey).save(buffer, format="PNG")
    return buffer.getvalue()


def _options(query, n_classes):
    """The query's (name, ink, top): ``name`` names the upload in messages, ``ink`` and ``top`` as for predict."""
    name = "".join(ch for ch in query.get("name", "") if ch.isprintable())[:MAX_NAME_LENGTH] or "upload"
    text = query.get("top", "3")
    top = int(text) if text.isascii() and text.isdigit() else 0
    if not 1 <= top <= n_classes:
        raise InvalidInputError(f"top must be a whole number from 1 to {n_classes}, got {text!r}")
    return name, query.get("ink", "auto"), top  # ink: checked by read_image


def create_app(reader):
    """The Starlette application serving ``reader``'s model."""

    async def predict(request):
        name, ink, top = _options(request.query_params, reader.model.n_out)
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise HTTPException(415, NOT_A_FORM)
        try:
            body = await _body(request)
        except ClientDisconnect:
            return Response(status_code=400)  # nobody left to answer
        prediction, png = await run_in_threadpool(reader.read, body, name=name, ink=ink, top=top)
        return JSONResponse(
            {**prediction.to_dict(), "input": "data:image/png;base64," + base64.b64encode(png).decode()}
        )

    async def model(request):
        return JSONResponse(reader.facts())

    async def health(request):
        return JSONResponse({"status": "ok"})

    async def page(request):
        return FileResponse(STATIC / "index.html")

    routes = [
        Route("/", page),
        Route("/predict", predict, methods=["POST"]),
        Route("/model", model),
        Route("/health", health),
        Mount("/static", StaticFiles(directory=STATIC)),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_error, InvalidInputError: _refused})


async def _body(request):
    """The request's body, refused (413) once it is over MAX_UPLOAD_BYTES: by its declared length before
    anything is read, else while it is read. (Starlette's own ``max_body_size`` answers a fixed plain-text
    413; this one answers in words and JSON, as every other error.)"""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
        raise HTTPException(413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_UPLOAD_BYTES:
            raise HTTPException(413)
    return bytes(body)


async def _http_error(request, exc):
    """404, 405, 413, 415 as JSON, in words."""
    path = request.url.path
    message = {
        404: f"{path} is not here: the page is at /, the API at POST /predict, GET /model and GET /health",
        405: f"{request.method} is not allowed on {path}" + (f"; use {exc.headers['Allow']}" if exc.headers else ""),
        413: TOO_LARGE,
    }.get(exc.status_code, exc.detail)
    return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)


async def _refused(request, exc):
    """What is not an image, or what the conversion rule refuses: 422, with predict's words."""
    return JSONResponse({"error": str(exc)}, status_code=422)


def _listen(host, port):
    """A TCP socket listening on host:port (port 0: any free port).

    Made with the protocol number TCP, as asyncio makes its own: asyncio then sets TCP_NODELAY on each
    connection, without which a kept-alive connection waits some 40 ms per answer (Nagle's algorithm
    against delayed acknowledgements); ``socket.create_server`` leaves the protocol 0."""
    if isinstance(port, bool) or not 0 <= port <= 65535:
        raise InvalidInputError(f"port must be from 0 to 65535 (0: any free port), got {port}")
    sock = None
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )[0]
        sock = socket.socket(family, kind, proto)
        if os.name == "posix":  # rebind at once after a restart (elsewhere SO_REUSEADDR means sharing the port)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen()
        return sock
    except OSError as exc:
        if sock is not None:
            sock.close()
        raise InvalidInputError(
            f"cannot listen on {host} port {port}: {exc.strerror or exc}; choose another --port "
            "(0: any free one) or --host"
        ) from None


def _announce(reader, sock, seconds):
    """Where the page is, what it serves, and how to reach it from elsewhere."""
    host, port = sock.getsockname()[:2]
    model = reader.model
    print(
        f"fastmlp serve: {reader.path} ({model.n_in} -> {model.n_hidden} -> {model.n_out}, {model.dtype}, "
        f"{model.backend}; warmed up in {seconds:.2f} s)",
        flush=True,
    )
    loopback = host.startswith("127.") or host == "::1"
    reach = "this machine only; --host 0.0.0.0 lets other machines in" if loopback else "other machines can open it"
    print(
        f"the page: http://{f'[{host}]' if ':' in host else host}:{port}/ ({reach}: no login, so only on a "
        "network you trust); Ctrl-C stops it",
        flush=True,
    )


def run(model_path, *, host="127.0.0.1", port=8000, backend=None):
    """Serve until Ctrl-C or SIGTERM, which stop the server gracefully; returns 0."""
    import uvicorn

    reader = Reader(model_path, backend)
    seconds = reader.warm_up()
    sock = _listen(host, port)
    try:
        _announce(reader, sock, seconds)
        server = uvicorn.Server(uvicorn.Config(create_app(reader), timeout_graceful_shutdown=5))
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn shuts down gracefully on Ctrl-C or SIGTERM, then raises it again
        pass
    finally:
        sock.close()
    print("fastmlp serve: stopped", flush=True)
    return 0
