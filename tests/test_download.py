"""Downloading the sample, against a real HTTP server on 127.0.0.1 started here (no outside network)."""

import hashlib
import http.server
import signal
import threading

import pytest

from fastmlp import datasets
from fastmlp.errors import InvalidInputError, MissingFileError, StorageError

#: the sample's two files, as the server serves them (the copy shipped inside the package)
FILES = {name: (datasets.EMBEDDED_SAMPLE / name).read_bytes() for name in datasets.SAMPLE_FILES}


class Server:
    """Serves the sample's files; ``broken`` maps a file name to a status code or wrong bytes."""

    def __init__(self):
        self.requests = []
        self.broken = {}
        self.stalled = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                server.requests.append(name)
                fault = server.broken.get(name)
                if isinstance(fault, int) or name not in FILES:
                    self.send_response(fault if isinstance(fault, int) else 404)
                    self.end_headers()
                    return
                body = fault if isinstance(fault, bytes) else FILES[name]
                if fault == "stall":
                    body = FILES[name]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if fault == "stall":  # half the body, then nothing for a while
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    server.stalled.wait(10)
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/files/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.stalled.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.close()


@pytest.fixture
def online(monkeypatch, tmp_path):
    """No FASTMLP_DATA, a fresh cache, and a package installed without its shipped sample (so
    that load_notmnist() reaches the cache and the download)."""
    monkeypatch.delenv("FASTMLP_OFFLINE", raising=False)
    monkeypatch.delenv("FASTMLP_DATA", raising=False)
    monkeypatch.setenv("FASTMLP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets, "EMBEDDED_SAMPLE", tmp_path / "not-shipped")
    return tmp_path / "cache"


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name not in datasets.SAMPLE_FILES)


def test_download_fills_the_cache_and_load_uses_it(server, online, monkeypatch):
    monkeypatch.setenv("FASTMLP_DATA_URL", server.url)
    data = datasets.load_notmnist()
    assert len(data.train[1]) == 6000
    assert sorted(server.requests) == sorted(FILES)
    assert {name: sha(online / name) for name in FILES} == datasets.SAMPLE_FILES
    datasets.load_notmnist()  # second time: from the cache, no request
    assert len(server.requests) == 2


def test_wrong_digest_deletes_the_download_and_keeps_the_cache(server, online):
    online.mkdir()
    good = online / "t10k-images-idx3-ubyte.gz"
    good.write_bytes(FILES[good.name])
    server.broken["t10k-labels-idx1-ubyte.gz"] = b"tampered"
    with pytest.raises(StorageError) as error:
        datasets.download_sample(online, base_url=server.url, retries=2)
    message = str(error.value)
    assert datasets.SAMPLE_FILES["t10k-labels-idx1-ubyte.gz"] in message
    assert hashlib.sha256(b"tampered").hexdigest() in message
    assert "FASTMLP_DATA" in message
    assert leftovers(online) == []  # no temporary file left
    assert not (online / "t10k-labels-idx1-ubyte.gz").exists()
    assert sha(good) == datasets.SAMPLE_FILES[good.name]  # the cache is untouched


def test_server_errors_are_retried_then_reported_with_url_and_hint(server, online):
    server.broken["t10k-images-idx3-ubyte.gz"] = 503
    with pytest.raises(StorageError) as error:
        datasets.download_sample(online, base_url=server.url, retries=2)
    message = str(error.value)
    assert server.url + "t10k-images-idx3-ubyte.gz" in message
    assert "503" in message and "--data" in message and "FASTMLP_DATA" in message
    assert server.requests.count("t10k-images-idx3-ubyte.gz") == 2
    assert leftovers(online) == []


def test_no_server_at_all(online):
    with pytest.raises(StorageError, match=r"could not download http://127.0.0.1:9/"):
        datasets.download_sample(online, base_url="http://127.0.0.1:9/", retries=1, timeout=2)


def test_a_corrupt_cached_file_is_detected_and_replaced(server, online):
    online.mkdir()
    for name, body in FILES.items():
        (online / name).write_bytes(body)
    (online / "t10k-labels-idx1-ubyte.gz").write_bytes(b"corrupted in the cache")
    datasets.download_sample(online, base_url=server.url)
    assert server.requests == ["t10k-labels-idx1-ubyte.gz"]
    assert {name: sha(online / name) for name in FILES} == datasets.SAMPLE_FILES


def test_offline_never_touches_the_network(server, online, monkeypatch):
    monkeypatch.setenv("FASTMLP_OFFLINE", "1")
    monkeypatch.setenv("FASTMLP_DATA_URL", server.url)
    with pytest.raises(
        MissingFileError, match=r"FASTMLP_OFFLINE=1 forbids downloading; pass --data PATH or set FASTMLP_DATA"
    ):
        datasets.load_notmnist()
    assert server.requests == []


def test_only_https_is_accepted_for_remote_hosts(online):
    with pytest.raises(InvalidInputError, match="only https"):
        datasets.download_sample(online, base_url="http://example.invalid/notmnist/")
    assert not online.exists() or leftovers(online) == []


def test_ctrl_c_during_a_download_leaves_no_partial_file(server, online):
    server.broken["t10k-images-idx3-ubyte.gz"] = "stall"
    # Ctrl-C raises KeyboardInterrupt even where the runner started with SIGINT ignored (a background job)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(1.0, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            datasets.download_sample(online, base_url=server.url, retries=1, timeout=30)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert server.requests == ["t10k-images-idx3-ubyte.gz"]
    assert list(online.iterdir()) == []


def test_offline_with_a_corrupt_cached_file_says_so(server, online, monkeypatch):
    online.mkdir()
    for name, body in FILES.items():
        (online / name).write_bytes(body)
    (online / "t10k-images-idx3-ubyte.gz").write_bytes(b"bit rot")
    monkeypatch.setenv("FASTMLP_OFFLINE", "1")
    with pytest.raises(StorageError, match=r"cached file .*t10k-images-idx3-ubyte.gz is corrupt .*FASTMLP_OFFLINE=1"):
        datasets.download_sample(online, base_url=server.url)
    assert server.requests == []
    assert (online / "t10k-images-idx3-ubyte.gz").read_bytes() == b"bit rot"  # left for the user to see
