"""Self-healing endpoints (issue 16 item 3): SageMaker pings each instance's ``/ping`` and replaces one that
fails its health checks; the endpoint stays InService. Before, a killed model server stayed a zombie, every
request got 502 ``model_error`` for as long as the twin ran and DescribeEndpoint said nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from sagepipe import client
from sagepipe.client import Target
from sagepipe.twin.sagemaker import hosting as hosting_mod
from sagepipe.twin.sagemaker.hosting import EndpointState, HostingManager, ModelServer

from .conftest import CHURN, CHURN_CONFIG, endpoint, wait_for, wait_for_key

pytestmark = pytest.mark.twin
ENDPOINT = "sagepipe-churn"


@pytest.fixture(scope="module")
def live(twin: Any, target: Target, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Churn (1,500 rows) trained and deployed; a request body of two held-out records."""
    header, *rows = CHURN.read_text().splitlines()
    path = tmp_path_factory.mktemp("d") / "churn.csv"
    path.write_text("\n".join([header, *rows[:1500]]) + "\n")
    [desc] = wait_for_key(target, client.upload(target, path, "churn", CHURN_CONFIG))
    assert desc["status"] == "SUCCEEDED", desc.get("cause")
    names = header.split(",")
    records = [dict(zip(names, r.split(","), strict=True)) for r in rows[-2:]]
    for r in records:
        r.pop("churn")
    return {"body": json.dumps({"instances": records})}


def _predict(target: Target, body: str) -> requests.Response:
    headers = {"Content-Type": "application/json", "x-api-key": target.api_key}
    return requests.post(f"{target.api_url}/models/churn/predictions", data=body, headers=headers, timeout=30)


def _reaped(pid: int) -> bool:
    """No process table entry at all: not running and not a zombie (a zombie keeps /proc/<pid>)."""
    return not Path(f"/proc/{pid}").exists()


def test_a_killed_model_server_is_replaced_and_503_meanwhile(live: dict[str, Any], twin: Any, target: Target) -> None:
    assert _predict(target, live["body"]).status_code == 200
    old = twin.hosting.endpoints[ENDPOINT].live
    pid = old.process.pid
    os.kill(pid, signal.SIGKILL)
    answers: list[requests.Response] = []

    def served() -> bool:
        answers.append(_predict(target, live["body"]))
        assert answers[-1].status_code in (200, 503), answers[-1].text  # fail fast: a 502 is the old behaviour
        return answers[-1].status_code == 200

    wait_for(served, "predictions after the model server was killed", poll_s=0.1)
    failed = answers[:-1]
    assert failed, "the first request after the kill was answered 200: the kill did not take"
    for resp in failed:  # while no healthy server is up: 503 + Retry-After, never 502 model_error
        assert resp.status_code == 503, resp.text
        assert resp.headers["Retry-After"].isdigit(), resp.headers
        error = resp.json()["error"]
        assert error["code"] == "model_unavailable" and error["sagemaker_error"] == "ServiceUnavailable", error
    assert _reaped(pid), f"the killed model server {pid} was not reaped"
    new = twin.hosting.endpoints[ENDPOINT].live
    assert new.process.pid != pid and new.process.poll() is None
    lines = [line for prefix, line in twin.logs if prefix.startswith(f"endpoint:{ENDPOINT}/")]
    assert any("replacing the model server" in line and str(pid) in line for line in lines), lines[-10:]
    assert any(f"replaced the model server: pid {pid} -> {new.process.pid}" in line for line in lines), lines[-10:]
    desc = endpoint(target, "churn")
    assert desc["EndpointStatus"] == "InService" and "FailureReason" not in desc, desc
    assert len(answers[-1].json()["predictions"]) == 2


class _Sick(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(500)  # /ping fails: the process runs but cannot serve
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_a_server_failing_its_pings_is_stopped_and_replaced(tmp_path: Path) -> None:
    import threading

    http = ThreadingHTTPServer(("127.0.0.1", 0), _Sick)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    sick_process = subprocess.Popen(["sleep", "60"], start_new_session=True)
    sick = ModelServer("v1", sick_process, http.server_address[1], tmp_path, endpoint_name="ep")
    healthy = ModelServer("v1", subprocess.Popen(["sleep", "60"], start_new_session=True), 1, tmp_path)
    logs: list[tuple[str, str]] = []
    hosting = HostingManager(tmp_path, lambda role: None, lambda prefix, line: logs.append((prefix, line)))
    state = hosting.endpoints["ep"] = EndpointState(live=sick)
    launched: list[tuple[str, Path]] = []

    def launch(name: str, config: str, directory: Path, model: dict[str, Any]) -> ModelServer:
        launched.append((config, directory))
        return healthy

    hosting._launch = launch  # type: ignore[method-assign]  # the replacement is healthy at once
    try:
        for _ in range(hosting_mod.UNHEALTHY_PINGS - 1):
            assert not hosting.check("ep", state)  # a failed ping or two is not yet a failed instance
        assert state.live is sick and sick_process.poll() is None
        assert hosting.check("ep", state)
        assert state.live is healthy and not state.replacing
        assert launched == [("v1", tmp_path)]  # restarted from the same model directory
        assert sick_process.returncode is not None  # stopped and reaped
        assert any("did not answer 200 (last: 500)" in line for _, line in logs), logs
    finally:
        http.shutdown()
        sick.stop()
        healthy.stop()
