"""The API front under concurrent clients: new connections that stall or are reset, before vs after.

Issue 16 item 6: at 32 concurrent clients 0.5-0.9 % of new connections were reset; the twin's API front
listened with ``socketserver``'s default backlog of 5. This runs :class:`sagepipe.twin.apigateway.ApiFront`
with an instant fake integration (no Lambda, so only the front is measured), once with the backlog it had
("before": ``request_queue_size = 5``) and once as it is ("after"), each with ``--clients`` threads making
``--requests`` requests on a new connection each (``GET /health``). It reports, per run: errors (resets,
refused, timeouts, non-200), connects that waited >= 1 s (Linux retransmits a SYN dropped by a full accept
queue after 1 s; with ``net.ipv4.tcp_abort_on_overflow=1`` those are resets), and latency p50/p99 in ms.

    .venv/bin/python bench/api_concurrency.py [--clients 32] [--requests 63]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sagepipe.twin import apigateway
from sagepipe.twin.apigateway import ApiFront, Route
from sagepipe.twin.awslambda.runtime import InvokeResult

OK = InvokeResult(payload=json.dumps({"statusCode": 200, "body": "{}"}).encode(), errored=False, logs="", duration_ms=0)


def run(clients: int, requests: int, backlog: int) -> dict[str, Any]:
    """One run: ``clients`` x ``requests`` new-connection GETs against a front listening with ``backlog``.
    Returns ``{"backlog", "requests", "errors", "syn_stalls", "p50_ms", "p99_ms", "wall_s"}``."""
    saved = apigateway._Server.request_queue_size
    apigateway._Server.request_queue_size = backlog
    api = ApiFront([Route("GET", "/health", "health")], lambda name, event: OK)
    try:
        base = api.start()
    finally:
        apigateway._Server.request_queue_size = saved
    u = urllib.parse.urlsplit(base)
    host, port = u.hostname or "127.0.0.1", u.port
    barrier = threading.Barrier(clients)
    lock = threading.Lock()
    latencies: list[float] = []
    connects: list[float] = []
    errors: list[str] = []

    def client(_: int) -> None:
        barrier.wait()
        for _ in range(requests):
            t0 = time.monotonic()
            try:
                conn = http.client.HTTPConnection(host, port, timeout=10)
                conn.connect()
                t1 = time.monotonic()
                conn.request("GET", u.path + "/health")
                resp = conn.getresponse()
                resp.read()
                conn.close()
                with lock:
                    connects.append(t1 - t0)
                    latencies.append(time.monotonic() - t0)
                    if resp.status != 200:
                        errors.append(f"status {resp.status}")
            except OSError as exc:
                with lock:
                    errors.append(type(exc).__name__)

    start = time.monotonic()
    try:
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(client, range(clients)))
    finally:
        api.stop()
    qs = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return {
        "backlog": backlog,
        "requests": clients * requests,
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "syn_stalls": sum(1 for c in connects if c >= 1.0),
        "p50_ms": round(qs[49] * 1000, 2),
        "p99_ms": round(qs[98] * 1000, 2),
        "wall_s": round(time.monotonic() - start, 2),
    }


def main() -> None:
    """Run before (backlog 5) and after (the front's backlog) and print one JSON line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=63, help="requests per client (63 x 32 = 2,016)")
    args = parser.parse_args()
    for label, backlog in (("before", 5), ("after", apigateway._Server.request_queue_size)):
        print(json.dumps({"run": label, **run(args.clients, args.requests, backlog)}), flush=True)


if __name__ == "__main__":
    main()
