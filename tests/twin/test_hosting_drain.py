"""Blue/green UpdateEndpoint retires the old model server only after the requests routed to it are answered
(a request in flight during the switch was answered 500 ``model_error`` before: 1 in ~100 in the demo)."""

from __future__ import annotations

import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from sagepipe.twin.sagemaker.hosting import EndpointState, HostingManager, ModelServer

pytestmark = pytest.mark.twin


KILLED = threading.Event()  # the old model server's process was stopped


class _Slow(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if KILLED.wait(1.0):  # the old version is slow to answer: the switch happens meanwhile
            self.close_connection = True
            self.connection.shutdown(2)  # a stopped process answers nothing: the connection drops
            return
        body = b'{"predictions": [1]}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_request_in_flight_during_the_switch_is_answered_by_the_old_version(tmp_path: Path) -> None:
    http = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    stopped: list[float] = []

    class Server(ModelServer):
        def stop(self) -> None:
            stopped.append(time.monotonic())
            KILLED.set()  # the old process goes away: a request still on it is cut off
            super().stop()

    def process() -> subprocess.Popen[bytes]:
        return subprocess.Popen(["sleep", "60"], start_new_session=True)

    old = Server("old", process(), http.server_address[1], tmp_path)
    new = ModelServer("new", process(), 1, tmp_path)
    hosting = HostingManager(tmp_path, lambda role: None, lambda prefix, line: None)
    hosting.endpoints["ep"] = EndpointState(live=old)
    hosting._start_server = lambda *args: new  # type: ignore[method-assign]  # the new version is healthy at once
    answers: list[Any] = []

    def call() -> None:
        try:
            answers.append(hosting.invoke("ep", b"1,2", "text/csv", None))
        except Exception as exc:  # noqa: BLE001 - the failure is the finding
            answers.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.2)  # the request is on the old version
    endpoint = SimpleNamespace(endpoint_name="ep", endpoint_status="InService")
    hosting.update(endpoint, "new", [], {}, lambda variants: variants)
    caller.join(timeout=10)
    deadline = time.monotonic() + 10
    while not stopped and time.monotonic() < deadline:
        time.sleep(0.05)
    new.stop()
    http.shutdown()
    assert answers and answers[0][0] == 200, answers
    assert hosting.endpoints["ep"].live is new and stopped  # switched, and the old one retired after answering


class _Ping(BaseHTTPRequestHandler):
    """/ping answers 500 for the first ``failures`` pings, then 200."""

    failures = 0
    pings: list[int] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        _Ping.pings.append(1)
        status = 500 if len(_Ping.pings) <= _Ping.failures else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _pinged(tmp_path: Path, failures: int) -> tuple[ModelServer, ThreadingHTTPServer]:
    _Ping.failures, _Ping.pings = failures, []
    http = ThreadingHTTPServer(("127.0.0.1", 0), _Ping)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    return ModelServer("cfg", proc, http.server_address[1], tmp_path), http


def test_a_container_that_is_not_healthy_yet_is_pinged_until_it_is(tmp_path: Path) -> None:
    """Issue 10, "slow is not different": a /ping that answers 500 while the model loads is not a failure
    (SageMaker pings for 8 minutes, or ContainerStartupHealthCheckTimeoutInSeconds); the twin failed the
    endpoint on the first non-200."""
    server, http = _pinged(tmp_path, failures=3)
    hosting = HostingManager(tmp_path, lambda role: None, lambda prefix, line: None)
    try:
        hosting.await_healthy(server, tmp_path / "unused", [], timeout_s=30)
        assert len(_Ping.pings) == 4
        assert server.process.poll() is None  # healthy: still running
    finally:
        server.stop()
        http.shutdown()


def test_a_container_never_healthy_fails_at_the_end_of_its_startup_window(tmp_path: Path) -> None:
    server, http = _pinged(tmp_path, failures=10**6)
    hosting = HostingManager(tmp_path, lambda role: None, lambda prefix, line: None)
    t0 = time.monotonic()
    try:
        with pytest.raises(RuntimeError, match="did not pass the ping health check within 2 s"):
            hosting.await_healthy(server, tmp_path / "unused", [], timeout_s=2)
        assert time.monotonic() - t0 >= 2 and len(_Ping.pings) >= 2
        assert server.process.poll() is not None  # stopped
    finally:
        http.shutdown()


def test_the_startup_window_is_sagemakers_or_the_variants(tmp_path: Path) -> None:
    """8 minutes by default; CreateEndpointConfig's ContainerStartupHealthCheckTimeoutInSeconds overrides it."""
    from sagepipe.twin.sagemaker import hosting as module

    assert module.CONTAINER_STARTUP_HEALTH_CHECK_S == 480 and module.PING_TIMEOUT_S == 2
    seen: list[float] = []
    manager = HostingManager(tmp_path, lambda role: None, lambda prefix, line: None)
    manager.await_healthy = lambda server, ready, output, timeout_s: seen.append(timeout_s)  # type: ignore[method-assign]

    class _S3:
        def download_file(self, bucket: str, key: str, path: str) -> None:
            import io
            import tarfile

            with tarfile.open(path, "w:gz") as tar:
                tar.addfile(tarfile.TarInfo("empty"), io.BytesIO(b""))

    manager.s3_factory = lambda role: _S3()
    spec = {"PrimaryContainer": {"ModelDataUrl": "s3://b/k.tar.gz"}, "ExecutionRoleArn": "r"}
    for extra, expected in (({}, 480.0), ({"ContainerStartupHealthCheckTimeoutInSeconds": 90}, 90.0)):
        server = manager._start_server("ep", f"cfg{len(seen)}", {**spec, **extra})
        server.stop()
        assert seen[-1] == expected
