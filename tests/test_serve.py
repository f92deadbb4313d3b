"""`fastmlp serve` as users run it: a real server on 127.0.0.1 (a free port, `--port 0`) in a subprocess, real
HTTP requests (good ones, every kind of bad one, a bounded load), and the page in a real browser: headless
Chromium driven by Playwright, drawing with pointer events.

The browser test needs Chromium (Debian's `chromium` package; `.ci/run` installs it) and the `playwright`
package (the `test` extra); without them it skips, saying why, and under CI=true it fails.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import quote, urlsplit

import numpy as np
import pytest
from PIL import Image, ImageDraw

from fastmlp import images
from fastmlp.serve import THREAD_VARIABLES

from .helpers import ROOT, bench_module

pytest.importorskip("starlette", reason="fastmlp serve needs the serve extra: pip install 'fastmlp[serve]'")
pytest.importorskip("uvicorn", reason="fastmlp serve needs the serve extra: pip install 'fastmlp[serve]'")

LETTERS_DIR = ROOT / "docs" / "letters"
IN_CI = os.environ.get("CI", "").strip().lower() == "true"
MiB = 2**20


serve_load = bench_module("serve_load")  # the load client of bench/serve_load.py


# ------------------------------------------------------------------ the server
def start_server(model, folder, *args, timeout=60):
    """`fastmlp serve MODEL --port 0 ARGS` -> (process, url) once it says where the page is."""
    out, err = folder / "stdout.txt", folder / "stderr.txt"
    command = [sys.executable, "-m", "fastmlp", "serve", str(model), "--port", "0", *args]
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(r"the page: (http://\S+/)", out.read_text())
        if match:
            return process, match.group(1)
        if process.poll() is not None:
            raise AssertionError(f"fastmlp serve exited with {process.returncode}: {err.read_text()}")
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"fastmlp serve did not say where it listens within {timeout} s: {err.read_text()}")


def stop(process):
    """Ctrl-C, as a user stops it -> its exit status."""
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


@pytest.fixture(scope="module")
def server(trained_model_file, tmp_path_factory):
    """The URL of `fastmlp serve` running the trained test model; stopped with Ctrl-C at the end."""
    process, url = start_server(trained_model_file, tmp_path_factory.mktemp("serve"))
    yield url
    stop(process)


def call(url, method="GET", path="/", body=None, headers=None):
    """One HTTP request on a new connection -> (status, the response, its JSON answer or text)."""
    address = urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    kind = response.getheader("content-type", "")
    return response.status, response, json.loads(data) if kind.startswith("application/json") else data.decode()


def decoded_input(answer):
    """The 28 × 28 input of an answer, from its PNG data URL."""
    prefix = "data:image/png;base64,"
    assert answer["input"].startswith(prefix)
    image = Image.open(io.BytesIO(base64.b64decode(answer["input"][len(prefix) :])))
    assert image.format == "PNG" and image.mode == "L" and image.size == (28, 28)
    return np.asarray(image)


def fastmlp_predict(model, *args):
    return subprocess.run(
        [sys.executable, "-m", "fastmlp", "predict", str(model), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def predicted(model, paths, *options):
    """What `fastmlp predict --json` says for each file: [{file, letter, probability, next}]."""
    result = fastmlp_predict(model, "--json", *options, *paths)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def assert_same_answer(answer, expected):
    """An answer of the server against `fastmlp predict --json` for the same file."""
    assert answer["letter"] == expected["letter"]
    assert answer["probability"] == pytest.approx(expected["probability"], rel=1e-6)
    assert [n["letter"] for n in answer["next"]] == [n["letter"] for n in expected["next"]]


def assert_still_serving(url):
    """After a bad request: the server answers a good one as before."""
    status, _, answer = call(url, "GET", "/health")
    assert (status, answer) == (200, {"status": "ok"})
    status, _, answer = call(url, "POST", "/predict", (LETTERS_DIR / "C.png").read_bytes())
    assert status == 200 and answer["letter"] in "ABCDEFGHIJ", answer


# ------------------------------------------------------------------ the API
def test_predict_answers_what_fastmlp_predict_says_with_the_input_the_network_saw(server, trained_model_file):
    paths = [LETTERS_DIR / name for name in ("C.png", "F-on-blue.jpg", "J-transparent.png")]
    for path, expected in zip(paths, predicted(trained_model_file, paths), strict=True):
        status, response, answer = call(server, "POST", f"/predict?name={quote(path.name)}", path.read_bytes())
        assert status == 200 and response.getheader("content-type") == "application/json", answer
        assert answer["file"] == path.name
        assert_same_answer(answer, expected)
        np.testing.assert_array_equal(decoded_input(answer), images.read_image(path))
    status, _, answer = call(server, "POST", "/predict?top=10", paths[0].read_bytes())
    assert status == 200 and answer["file"] == "upload" and len(answer["next"]) == 9
    ranked = [answer["probability"], *(n["probability"] for n in answer["next"])]
    assert ranked == sorted(ranked, reverse=True) and math.isclose(sum(ranked), 1, rel_tol=1e-4)
    assert sorted([answer["letter"], *(n["letter"] for n in answer["next"])]) == list("ABCDEFGHIJ")


def test_model_and_health_describe_the_served_model(server, trained_model_file):
    from fastmlp import MLP

    model = MLP.load(trained_model_file)
    status, _, facts = call(server, "GET", "/model")
    assert status == 200
    assert facts["file"] == "model.npz" and facts["layers"] == [784, 100, 10]
    assert facts["classes"] == list("ABCDEFGHIJ") and facts["dtype"] == "float32"
    assert (facts["backend"], facts["device"], facts["precision"]) == (model.backend, "CPU", "float32")
    if not any(variable in os.environ for variable in THREAD_VARIABLES):  # one image: one thread per pool
        assert facts["threads"] and set(facts["threads"].values()) == {1}, facts["threads"]
    assert facts["recorded"]["precision"] == "float32" and facts["recorded"]["fastmlp_version"]
    assert "shapes" not in facts["recorded"]
    assert call(server, "GET", "/health")[::2] == (200, {"status": "ok"})


def test_the_page_and_its_files_are_served_from_the_package(server):
    status, response, page = call(server, "GET", "/")
    assert status == 200 and response.getheader("content-type").startswith("text/html")
    linked = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sorted(linked) == ["data:,", "static/app.js", "static/style.css"]  # nothing from elsewhere
    for path, kind in (("/static/app.js", "text/javascript"), ("/static/style.css", "text/css")):
        status, response, _ = call(server, "GET", path)
        assert status == 200 and response.getheader("content-type").startswith(kind)


# ------------------------------------------------------- bad input, real requests
def bad_images(folder, notmnist):
    """name -> a file the conversion rule refuses or that is no image."""
    Image.new("L", (50, 50), 200).save(folder / "blank.png")
    image = Image.new("L", (100, 100), 255)
    ImageDraw.Draw(image).rectangle((50, 50, 53, 53), fill=0)
    image.save(folder / "speck.png")
    ramp = np.linspace(-1, 1, 28 * 28, dtype=np.float32).reshape(28, 28)  # float values below 0: no grey levels
    Image.fromarray(ramp).save(folder / "negative.png", format="TIFF")
    (folder / "text.png").write_text("not an image\n")
    (folder / "truncated.png").write_bytes((LETTERS_DIR / "C.png").read_bytes()[:200])
    (folder / "empty.png").write_bytes(b"")
    shutil.copy(LETTERS_DIR / "word.png", folder / "word.png")
    names = ("blank", "speck", "negative", "text", "truncated", "empty", "word")
    return {name: folder / f"{name}.png" for name in names}


REFUSED_IMAGES = {
    "blank": "the image is blank",
    "speck": "draw it at least 8 pixels tall",
    "negative": "an image's values must be within",
    "text": "is not an image Pillow can read",
    "truncated": "truncated.png",
    "empty": "is not an image Pillow can read",
    "word": "is it a word?",
}


@pytest.mark.parametrize("case", REFUSED_IMAGES)
def test_a_refused_image_gets_422_with_the_words_of_predict(server, trained_model_file, notmnist, tmp_path, case):
    path = bad_images(tmp_path, notmnist)[case]
    printed = fastmlp_predict(trained_model_file, path)
    assert printed.returncode == 2 and printed.stderr.startswith("fastmlp: error: "), printed.stderr
    status, response, answer = call(server, "POST", f"/predict?name={quote(str(path))}", path.read_bytes())
    assert status == 422 and response.getheader("content-type") == "application/json"
    assert answer["error"] == printed.stderr.strip().removeprefix("fastmlp: error: ")
    assert REFUSED_IMAGES[case] in answer["error"]
    assert_still_serving(server)


C_PNG = (LETTERS_DIR / "C.png").read_bytes()
#: name -> (method, path, headers, body, status, a fragment of the error)
BAD_REQUESTS = {
    "top 0": ("POST", "/predict?top=0", {}, C_PNG, 422, "top must be a whole number from 1 to 10, got '0'"),
    "top not a number": ("POST", "/predict?top=three", {}, C_PNG, 422, "got 'three'"),
    "top in other digits": ("POST", "/predict?top=%C2%B2", {}, C_PNG, 422, "got '²'"),
    "an unknown ink": ("POST", "/predict?ink=grey", {}, C_PNG, 422, "ink must be one of auto, light, dark"),
    "a form": (
        "POST",
        "/predict",
        {"Content-Type": "multipart/form-data; boundary=x"},
        b"--x\r\nContent-Disposition: form-data; name=f; filename=C.png\r\n\r\n" + C_PNG + b"\r\n--x--\r\n",
        415,
        "not a form",
    ),
    "an unknown path": ("GET", "/nowhere", {}, None, 404, "/nowhere is not here"),
    "an unknown file": ("GET", "/static/nowhere.js", {}, None, 404, "is not here"),
    "GET /predict": ("GET", "/predict", {}, None, 405, "GET is not allowed on /predict; use POST"),
    "POST /": ("POST", "/", {}, C_PNG, 405, "POST is not allowed on /"),
    "DELETE /model": ("DELETE", "/model", {}, None, 405, "DELETE is not allowed on /model"),
    "over the size limit": ("POST", "/predict", {}, b"\0" * (5 * MiB + 1), 413, "larger than 5 MiB"),
}


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_a_bad_request_gets_its_status_and_a_message(server, case):
    method, path, headers, body, expected_status, fragment = BAD_REQUESTS[case]
    status, response, answer = call(server, method, path, body, headers)
    assert status == expected_status and response.getheader("content-type") == "application/json", answer
    assert fragment in answer["error"], answer
    assert_still_serving(server)


def read_reply(sock):
    """(status, JSON answer) of an HTTP/1.1 reply read from ``sock``."""
    reply = b""
    while b"\r\n\r\n" not in reply:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection without an answer: {reply!r}"
        reply += chunk
    head, body = reply.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"content-length: (\d+)", head, re.IGNORECASE).group(1))
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split()[1]), json.loads(body)


@pytest.mark.parametrize("declared", [True, False], ids=["declared length", "chunked"])
def test_an_upload_over_the_limit_is_refused_before_its_end(server, declared):
    """413 by the declared length before a byte of the body is sent; without one, as soon as 5 MiB have
    been read: either way while the client still has the rest to send (a server that read it all would
    wait here until the timeout)."""
    address = urlsplit(server)
    if declared:
        head, sent = f"Content-Length: {6 * MiB}", b""
    else:
        piece = 64 * 1024
        head, sent = (
            "Transfer-Encoding: chunked",
            (b"%x\r\n" % piece + b"\0" * piece + b"\r\n") * (5 * MiB // piece + 2),
        )
    request = f"POST /predict HTTP/1.1\r\nHost: {address.netloc}\r\n{head}\r\n\r\n".encode()
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.sendall(request + sent)  # and never the rest
        status, answer = read_reply(sock)
    assert status == 413 and "larger than 5 MiB (5242880 bytes)" in answer["error"]
    assert_still_serving(server)


# ---------------------------------------------------------------------- load
def sample_letters(notmnist, folder):
    """One PNG per letter, the first test image of each, as files."""
    X, y = notmnist.test
    paths = []
    for label in range(10):
        index = int(np.flatnonzero(y == label)[0])
        path = folder / f"{'ABCDEFGHIJ'[label]}-{index}.png"
        Image.fromarray(np.rint(X[index] * 255).astype(np.uint8).reshape(28, 28)).save(path)
        paths.append(path)
    return paths


def test_500_requests_from_8_clients_get_their_own_answers(server, trained_model_file, notmnist, tmp_path):
    paths = sample_letters(notmnist, tmp_path)  # the data's own images: their letters touch the edges
    expected = predicted(trained_model_file, paths, "--ink", "light")
    assert len({e["letter"] for e in expected}) >= 6, "distinct answers, so that mixed ones would show"
    inputs = [images.read_image(path, ink="light") for path in paths]
    bodies = [path.read_bytes() for path in paths]
    results = serve_load.send(server, bodies, requests=500, clients=8, query="?ink=light")
    assert len(results) == 500
    for index, status, answer, _ in results:
        assert status == 200, answer
        assert_same_answer(answer, expected[index])
        np.testing.assert_array_equal(decoded_input(answer), inputs[index])
    cut = serve_load.percentiles([seconds for *_, seconds in results])
    print(f"500 requests from 8 clients: p50 {cut[50]:.1f} ms, p95 {cut[95]:.1f} ms (load {os.getloadavg()[0]:.1f})")


# ----------------------------------------------------------- the command itself
def test_ctrl_c_stops_the_server_cleanly(trained_model_file, tmp_path):
    process, url = start_server(trained_model_file, tmp_path)
    assert call(url, "GET", "/health")[0] == 200
    assert stop(process) == 0
    out, err = (tmp_path / "stdout.txt").read_text(), (tmp_path / "stderr.txt").read_text()
    assert out.splitlines()[-1] == "fastmlp serve: stopped" and "Traceback" not in err + out
    address = urlsplit(url)
    with socket.create_server((address.hostname, address.port)):  # the port is free again
        pass


def test_the_command_refuses_what_it_cannot_serve_in_one_line(trained_model_file, tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        cases = {
            (str(trained_model_file), "--port", str(port)): f"cannot listen on 127.0.0.1 port {port}",
            (str(trained_model_file), "--port", "70000"): "port must be from 0 to 65535",
            (str(tmp_path / "none.npz"),): "does not exist",
            (str(LETTERS_DIR / "C.png"),): "not a fastmlp weights file",
        }
        for args, fragment in cases.items():
            result = subprocess.run(
                [sys.executable, "-m", "fastmlp", "serve", *args], capture_output=True, text=True, timeout=120
            )
            assert result.returncode == 2 and result.stdout == "", (args, result.stdout, result.stderr)
            lines = result.stderr.splitlines()
            assert len(lines) == 1 and lines[0].startswith("fastmlp: error: ") and fragment in lines[0], lines


def test_without_the_serve_extra_the_command_says_how_to_install_it(trained_model_file):
    code = (
        "import sys; sys.modules['starlette'] = None\n"  # as if it were not installed
        f"from fastmlp.cli import main; sys.exit(main(['serve', {str(trained_model_file)!r}]))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "needs the package 'starlette'" in result.stderr and 'pip install "fastmlp[serve]"' in result.stderr


def test_import_fastmlp_and_its_command_line_import_no_server_library():
    code = (
        "import sys, fastmlp, fastmlp.cli; fastmlp.cli.build_parser(); fastmlp.MLP(784, 8, 10)\n"
        "print(sorted(m for m in ('starlette', 'uvicorn', 'anyio', 'fastmlp.serve') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", (result.stdout, result.stderr)


# ------------------------------------------------------------------ the browser
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium():
    """(path of a Chromium, None) or (None, why there is none usable)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return None, "the package playwright is not installed (pip install -e '.[test]')"
    path = os.environ.get("FASTMLP_CHROMIUM") or next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    if path is None:
        return None, "no Chromium here (apt-get install chromium, or FASTMLP_CHROMIUM=/path/to/chrome)"
    return path, None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium with a new empty profile; skipped where there is none (failed under CI=true)."""
    path, why = _chromium()
    if path is None:
        if IN_CI:
            pytest.fail(f"CI=true needs the browser test: {why}")
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path_factory.mktemp("chromium-profile"),
            executable_path=path,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1000, "height": 800},
            has_touch=True,
        )
        yield context
        context.close()


#: what the browser itself writes in the console when the server refuses a drawing (as it may refuse a
#: letter half drawn: a first stroke wider than tall): the API's 422, not an error of the page
REFUSED = "Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)"


class Page:
    """The served page in a browser tab, with every error its console showed (but :data:`REFUSED`) and
    every URL it asked for."""

    def __init__(self, browser, url):
        self.url = url
        self.tab = browser.new_page()
        self.errors, self.requests = [], []
        self.tab.on("console", lambda message: message.type == "error" and self.console(message.text))
        self.tab.on("pageerror", lambda error: self.errors.append(str(error)))
        self.tab.on("request", lambda request: self.requests.append(request.url))
        self.tab.goto(url)
        self.tab.wait_for_selector("#facts dd")  # the about panel has its facts
        # which kinds of pointer drew on the canvas
        self.tab.evaluate(
            "window.pointerTypes = new Set();"
            "document.getElementById('canvas').addEventListener('pointerdown', e => pointerTypes.add(e.pointerType))"
        )

    def console(self, text):
        if text != REFUSED:
            self.errors.append(text)

    def draw(self, points, pointer):
        """One stroke through ``points`` (canvas pixels) with a mouse, a pen or a finger."""
        box = self.tab.locator("#canvas").bounding_box()
        at = [(box["x"] + x, box["y"] + y) for x, y in points]
        if pointer == "mouse":
            self.tab.mouse.move(*at[0])
            self.tab.mouse.down()
            for x, y in at[1:]:
                self.tab.mouse.move(x, y)
            self.tab.mouse.up()
        else:  # the DevTools protocol's input events: pen strokes are mouse events of pointer type pen
            cdp = self.tab.context.new_cdp_session(self.tab)
            for kind, (x, y) in zip(["start", *["move"] * (len(at) - 2), "end"], at, strict=True):
                if pointer == "touch":
                    touch = {"start": "touchStart", "move": "touchMove", "end": "touchEnd"}[kind]
                    fingers = [] if kind == "end" else [{"x": x, "y": y}]
                    cdp.send("Input.dispatchTouchEvent", {"type": touch, "touchPoints": fingers})
                else:
                    mouse = {"start": "mousePressed", "move": "mouseMoved", "end": "mouseReleased"}[kind]
                    event = {"type": mouse, "x": x, "y": y, "button": "left", "buttons": 0 if kind == "end" else 1}
                    cdp.send("Input.dispatchMouseEvent", {**event, "clickCount": 1, "pointerType": "pen"})
            cdp.detach()

    def settled_answer(self):
        """The server's answer for the canvas as it is now, once the page shows it (earlier answers, to
        the drawing half done, are replaced as the page asks again)."""
        png = base64.b64decode(self.tab.evaluate("document.getElementById('canvas').toDataURL('image/png')")[22:])
        status, _, answer = call(self.url, "POST", "/predict?top=5&name=drawing", png)
        if status == 200:
            shown = "expected => !document.getElementById('seen').hidden && document.getElementById('input').src === expected"
            self.tab.wait_for_function(shown, arg=answer["input"], timeout=15_000)
        else:
            shown = "expected => document.getElementById('error').textContent === expected"
            self.tab.wait_for_function(shown, arg=answer["error"], timeout=15_000)
        return png, status, answer

    def shown_letters(self):
        return self.tab.locator("#letters .name").all_inner_texts()


def c_stroke(radius=90, centre=(140, 140)):
    """A C: an arc from upper right, over the top, round the left, to lower right (canvas pixels)."""
    angles = np.radians(np.arange(45, 316, 5))
    return [(centre[0] + radius * math.cos(a), centre[1] - radius * math.sin(a)) for a in angles]


@pytest.mark.parametrize("pointer", ["mouse", "pen", "touch"])
def test_drawing_a_c_on_the_page_shows_c_on_top_and_the_networks_input(browser, server, pointer, tmp_path):
    page = Page(browser, server)
    page.draw(c_stroke(), pointer)
    _, status, answer = page.settled_answer()
    assert page.tab.evaluate("[...pointerTypes]") == [pointer]
    assert status == 200 and answer["letter"] == "C", answer
    assert page.shown_letters() == [answer["letter"], *(n["letter"] for n in answer["next"])]
    assert page.tab.locator("#status .letter").inner_text() == "C"
    assert page.tab.evaluate("document.getElementById('input').naturalWidth") == 28
    assert page.errors == [] and all(url.startswith(server) or url.startswith("data:") for url in page.requests)
    if pointer == "mouse":
        screenshot = os.environ.get("FASTMLP_SCREENSHOT")  # e.g. docs/serve.png, the README's picture
        if screenshot:
            page.tab.screenshot(path=screenshot)
    page.tab.close()


def test_the_page_reads_a_drawing_as_fastmlp_predict_reads_it_as_a_file(browser, server, trained_model_file, tmp_path):
    page = Page(browser, server)
    page.draw(c_stroke(radius=60, centre=(120, 150)), "mouse")
    png, _, answer = page.settled_answer()
    (tmp_path / "drawing.png").write_bytes(png)
    [expected] = predicted(trained_model_file, [tmp_path / "drawing.png"], "--top", "5")
    assert_same_answer(answer, expected)
    shown = page.tab.locator("#letters .p").all_inner_texts()
    assert shown[0] == f"{100 * expected['probability']:.1f}%"
    # the canvas says its ink is dark (a cleared canvas is white paper, not a letter filling the frame)
    queries = {url.split("?")[1] for url in page.requests if "/predict?" in url}
    assert queries == {"top=5&ink=dark&name=drawing"}
    page.tab.close()


def test_the_page_shows_a_refusal_in_words_and_clear_starts_again(browser, server, trained_model_file):
    page = Page(browser, server)
    page.draw([(20, 140), (140, 142), (260, 140)], "mouse")  # a dash: far wider than tall
    _, status, answer = page.settled_answer()
    assert status == 422 and "is it a word?" in answer["error"]
    assert page.tab.locator("#error").inner_text() == answer["error"]
    assert page.tab.locator("#seen").is_hidden() and page.shown_letters() == []
    page.tab.click("#clear")
    assert page.tab.locator("#error").is_hidden() and page.tab.locator("#status").inner_text() == "Draw a letter."
    blank = page.tab.evaluate(
        "(() => { const c = document.getElementById('canvas');"
        " return c.getContext('2d').getImageData(0, 0, c.width, c.height).data.every(v => v === 255); })()"
    )
    assert blank
    assert page.errors == []
    page.tab.close()


def test_an_image_file_is_read_from_the_file_picker_and_from_a_drop(browser, server, trained_model_file):
    page = Page(browser, server)
    expected = {
        e["file"]: e for e in predicted(trained_model_file, [LETTERS_DIR / "C.png", LETTERS_DIR / "J-transparent.png"])
    }
    page.tab.set_input_files("#file", LETTERS_DIR / "C.png")
    page.tab.wait_for_selector("#letters .name")
    assert page.shown_letters()[0] == expected[str(LETTERS_DIR / "C.png")]["letter"]
    page.tab.click("#clear")
    dropped = page.tab.evaluate_handle(
        "bytes => { const t = new DataTransfer();"
        " t.items.add(new File([new Uint8Array(bytes)], 'J.png', {type: 'image/png'})); return t; }",
        list((LETTERS_DIR / "J-transparent.png").read_bytes()),
    )
    page.tab.dispatch_event("#canvas", "drop", {"dataTransfer": dropped})
    page.tab.wait_for_selector("#letters .name")
    assert page.shown_letters()[0] == expected[str(LETTERS_DIR / "J-transparent.png")]["letter"]
    assert [url.split("?")[1] for url in page.requests if "/predict?" in url] == [
        "top=5&ink=auto&name=C.png",  # a file's ink: found by the conversion rule
        "top=5&ink=auto&name=J.png",
    ]
    assert page.errors == []
    page.tab.close()


def test_the_about_panel_names_the_model_and_what_its_weights_file_records(browser, trained_model, tmp_path):
    from fastmlp import weights

    fits = [{"epochs": 100, "lr": 0.1, "batch_size": None}, {"epochs": 5, "lr": 0.01, "valid_accuracy": 0.8965000224}]
    recorded = {"training": fits, "note": "an extra field"}
    model = tmp_path / "recorded.npz"
    metadata = {"classes": list(trained_model.classes), "precision": "float32", **recorded}
    weights.save_weights(model, trained_model.params, extra_metadata=metadata)
    process, url = start_server(model, tmp_path)
    try:
        assert call(url, "GET", "/model")[2]["recorded"] == {"precision": "float32", **recorded}
        page = Page(browser, url)
        terms, values = (page.tab.locator(f"#facts {tag}").all_inner_texts() for tag in ("dt", "dd"))
        facts = dict(zip(terms, values, strict=True))
        assert facts["file"] == "recorded.npz" and facts["layers"] == "784 → 100 → 10 (H = 100 hidden units)"
        assert facts["dtype"] == "float32" and facts["letters"] == "A B C D E F G H I J"
        assert facts["backend"].startswith(f"{trained_model.backend} on CPU") and facts["precision"] == "float32"
        assert facts["trained with precision"] == "float32"
        assert facts["fit 1"] == "epochs 100, lr 0.1, batch size full"
        assert facts["fit 2"] == "epochs 5, lr 0.01, valid accuracy 0.8965" and facts["note"] == "an extra field"
        assert page.errors == []
        page.tab.close()
    finally:
        assert stop(process) == 0


# ------------------------------------------------------------ every backend
def test_every_backend_serves_the_same_answers_to_concurrent_requests(
    backend_name, trained_model_file, notmnist, tmp_path
):
    """The application's reader on each backend (in-process): warmed up, then 8 threads at once give the
    answers one thread gives, which are numpy's."""
    from concurrent.futures import ThreadPoolExecutor

    from fastmlp.serve.app import Reader

    bodies = [path.read_bytes() for path in sample_letters(notmnist, tmp_path)]
    reference = Reader(trained_model_file, "numpy")
    expected = [reference.read(body, ink="light", top=10)[0].ranked for body in bodies]
    reader = Reader(trained_model_file, backend_name)
    reader.warm_up()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: reader.read(bodies[i % 10], ink="light", top=10), range(200)))
    for i, (prediction, png) in enumerate(answers):
        ranked = expected[i % 10]
        assert [name for name, _ in prediction.ranked] == [name for name, _ in ranked]
        np.testing.assert_allclose([p for _, p in prediction.ranked], [p for _, p in ranked], rtol=1e-4, atol=1e-6)
        assert png == reference.read(bodies[i % 10], ink="light")[1]
