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
