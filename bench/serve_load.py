"""Latency of ``fastmlp serve`` under load: REQUESTS predictions from CLIENTS clients at once, on the loopback.

Start a server first, then point this at it with image files to send (each request sends the next
file in turn); it prints the median, 95th and 99th percentile latency and the requests per second,
and fails on any answer that is not 200:

    fastmlp serve runs/<run>/model.npz --port 8123 &
    python bench/serve_load.py http://127.0.0.1:8123/ docs/letters/C.png docs/letters/J-transparent.png \\
        --requests 2000 --clients 8
    kill %1

Each client keeps one HTTP/1.1 connection open (``http.client``), as a browser does. The test suite
(``tests/test_serve.py``) runs :func:`send` with 500 requests from 8 clients and checks every answer.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit


def send(url, bodies, *, requests=500, clients=8, query=""):
    """POST ``bodies`` (in turn) to ``url``predict from ``clients`` threads at once.

    Returns one (index into bodies, HTTP status, decoded JSON answer, seconds) per request, in order."""
    address = urlsplit(url)
    # client c sends requests c, c + clients, c + 2 clients, ...
    shares = [range(c, requests, clients) for c in range(clients)]

    def client(share):
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
        results = []
        try:
            for number in share:
                index = number % len(bodies)
                start = time.perf_counter()
                connection.request("POST", f"/predict{query}", body=bodies[index])
                response = connection.getresponse()
                answer = json.loads(response.read())
                results.append((number, (index, response.status, answer, time.perf_counter() - start)))
        finally:
            connection.close()
        return results

    with ThreadPoolExecutor(clients) as pool:
        done = [result for results in pool.map(client, shares) for result in results]
    return [result for _, result in sorted(done, key=lambda pair: pair[0])]


def percentiles(seconds):
    """{50, 95, 99} -> that percentile of ``seconds``, in milliseconds."""
    cuts = statistics.quantiles(seconds, n=100, method="inclusive")
    return {p: 1000 * cuts[p - 1] for p in (50, 95, 99)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="where fastmlp serve listens, e.g. http://127.0.0.1:8123/")
    parser.add_argument("images", nargs="+", help="image files to send, in turn")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args(argv)
    bodies = [Path(path).read_bytes() for path in args.images]
    send(args.url, bodies, requests=4 * args.clients, clients=args.clients)  # warm connections and threads
    start = time.perf_counter()
    results = send(args.url, bodies, requests=args.requests, clients=args.clients)
    wall = time.perf_counter() - start
    failed = [(status, answer) for _, status, answer, _ in results if status != 200]
    cut = percentiles([seconds for *_, seconds in results])
    print(
        f"{args.requests} requests from {args.clients} clients in {wall:.2f} s ({args.requests / wall:.0f}/s): "
        f"p50 {cut[50]:.1f} ms, p95 {cut[95]:.1f} ms, p99 {cut[99]:.1f} ms; {len(failed)} failed"
    )
    if failed:
        sys.exit(f"first failure: {failed[0]}")


if __name__ == "__main__":
    main()
