"""sagepipe.twin.sagemaker.model_server: the SageMaker hosting-container emulation, as a real process."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.twin

REPO = Path(__file__).resolve().parents[2]
CHURN = REPO / "examples" / "data" / "churn.csv"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """Train a small churn model with model/train.py (SageMaker env contract)."""
    tmp = tmp_path_factory.mktemp("served")
    df = pd.read_csv(CHURN, dtype=str, keep_default_na=False)
    train, test = df.iloc[:4000], df.iloc[4000:]
    for name, frame in (("train", train), ("test", test)):
        (tmp / name).mkdir()
        frame.to_csv(tmp / name / f"{name}.csv", index=False)
    env = {
        **os.environ,
        "SM_MODEL_DIR": str(tmp / "model"),
        "SM_CHANNEL_TRAIN": str(tmp / "train"),
        "SM_CHANNEL_TEST": str(tmp / "test"),
        "SM_OUTPUT_DIR": str(tmp),
    }
    proc = subprocess.run(
        [sys.executable, str(REPO / "model" / "train.py"), "--target", "churn", "--max_iter", "50"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return tmp / "model", test


def start_server(model_dir: Path, ready: Path, extra_env: dict | None = None, code_dir: Path | None = None):
    env = {**os.environ, **(extra_env or {})}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sagepipe.twin.sagemaker.model_server",
            "--model-dir",
            str(model_dir),
            "--code-dir",
            str(code_dir or model_dir / "code"),
            "--program",
            "inference.py",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--ready-file",
            str(ready),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, started


def wait_ready(proc, ready: Path, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready.exists():
            return json.loads(ready.read_text())
        if proc.poll() is not None:
            raise AssertionError(f"server exited {proc.returncode}: {proc.stderr.read()}")
        time.sleep(0.02)
    raise AssertionError(f"server not ready in {timeout}s")


def request(port: int, method: str, path: str, body: bytes | str = b"", headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type"), resp.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    ready = tmp_path_factory.mktemp("srv") / "ready.json"
    proc, started = start_server(model_dir[0], ready)
    info = wait_ready(proc, ready)
    info["ready_seconds"] = time.monotonic() - started
    yield info
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    proc.stdout.close()
    proc.stderr.close()


def test_ready_file_and_ping(server):
    assert server["port"] > 0 and server["pid"] > 0
    status, ctype, body = request(server["port"], "GET", "/ping")
    assert status == 200 and body == b"" and ctype
    print("model server start-to-ready: {:.3f}s".format(server["ready_seconds"]))


def test_invocations_json_and_csv(server, model_dir):
    _, test = model_dir
    features = test.drop(columns=["churn"]).iloc[:3]
    payload = json.dumps({"instances": features.to_dict("records")})
    status, ctype, body = request(server["port"], "POST", "/invocations", payload, {"Content-Type": "application/json"})
    assert status == 200 and ctype == "application/json", body
    preds = json.loads(body)["predictions"]
    assert len(preds) == 3 and all(p["label"] in ("no", "yes") for p in preds)
    assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-9 for p in preds)

    csv_body = features.to_csv(index=False, header=False)
    status, ctype, body = request(
        server["port"], "POST", "/invocations", csv_body, {"Content-Type": "text/csv", "Accept": "text/csv"}
    )
    assert status == 200 and ctype == "text/csv"
    assert body.decode().splitlines() == [p["label"] for p in preds]

    # no Accept / */* -> application/json
    status, ctype, body = request(
        server["port"], "POST", "/invocations", csv_body, {"Content-Type": "text/csv", "Accept": "*/*"}
    )
    assert status == 200 and ctype == "application/json" and json.loads(body)["predictions"] == preds


def test_latency(server, model_dir):
    _, test = model_dir
    row = test.drop(columns=["churn"]).iloc[:1].to_csv(index=False, header=False)
    conn = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=10)  # keep-alive
    times = []
    for _ in range(30):
        t = time.perf_counter()
        conn.request("POST", "/invocations", body=row, headers={"Content-Type": "text/csv"})
        resp = conn.getresponse()
        resp.read()
        times.append(time.perf_counter() - t)
        assert resp.status == 200
    conn.close()
    times.sort()
    print(f"single-row latency p50={times[15] * 1e3:.1f}ms p90={times[27] * 1e3:.1f}ms")
    assert times[15] < 0.5


@pytest.mark.parametrize(
    "body, headers, expected, fragment",
    [
        ("1,2\n", {"Content-Type": "text/csv"}, 400, "row 1 has 2 values"),
        ("{oops", {"Content-Type": "application/json"}, 400, "malformed JSON"),
        ("x", {"Content-Type": "text/plain"}, 415, "unsupported content type"),
        (
            '{"instances": [{"state": "KS"}]}',
            {"Content-Type": "application/json", "Accept": "application/xml"},
            415,
            "unsupported accept",
        ),
    ],
)
def test_error_mapping(server, body, headers, expected, fragment):
    status, ctype, resp = request(server["port"], "POST", "/invocations", body, headers)
    assert status == expected and ctype == "text/plain"
    assert fragment in resp.decode()


def test_unknown_paths(server):
    assert request(server["port"], "GET", "/nope")[0] == 404
    assert request(server["port"], "GET", "/invocations")[0] == 405


def test_predict_exception_is_500(model_dir, tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "inference.py").write_text(
        "def model_fn(d):\n    return 'm'\n"
        "def input_fn(b, c):\n    return b\n"
        "def predict_fn(x, m):\n    raise RuntimeError('kaboom')\n"
        "def output_fn(p, a):\n    return p\n"
    )
    proc, _ = start_server(model_dir[0], tmp_path / "ready.json", code_dir=code)
    try:
        port = wait_ready(proc, tmp_path / "ready.json")["port"]
        status, ctype, body = request(port, "POST", "/invocations", "{}", {"Content-Type": "application/json"})
        assert status == 500 and b"kaboom" in body and ctype == "text/plain"
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_sigterm_stops_cleanly(model_dir, tmp_path):
    ready = tmp_path / "ready.json"
    proc, _ = start_server(model_dir[0], ready)
    port = wait_ready(proc, ready)["port"]
    assert request(port, "GET", "/ping")[0] == 200
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert f"model_server listening on 127.0.0.1:{port}" in out.splitlines()
    with pytest.raises(OSError):
        request(port, "GET", "/ping")


def test_fail_ping_injection(model_dir, tmp_path):
    ready = tmp_path / "ready.json"
    proc, _ = start_server(model_dir[0], ready, {"SAGEPIPE_TWIN_FAIL_PING": "1"})
    try:
        port = wait_ready(proc, ready)["port"]
        status, _, body = request(port, "GET", "/ping")
        assert status == 500 and b"SAGEPIPE_TWIN_FAIL_PING" in body
        # invocations still work: only the health check is broken
        row = model_dir[1].drop(columns=["churn"]).iloc[:1].to_csv(index=False, header=False)
        assert request(port, "POST", "/invocations", row, {"Content-Type": "text/csv"})[0] == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_model_fn_failure_exits_nonzero(tmp_path, model_dir):
    empty = tmp_path / "empty-model"
    empty.mkdir()
    ready = tmp_path / "ready.json"
    proc, _ = start_server(empty, ready, code_dir=model_dir[0] / "code")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert "schema.json" in err and "model loading failed" in err
    assert not ready.exists()


def test_server_exits_when_its_parent_is_killed(model_dir, tmp_path):
    """A twin killed with SIGKILL cannot stop its model servers: each watches its parent and exits."""
    model_dir = model_dir[0]
    ready = tmp_path / "ready.json"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import subprocess, sys, os, time\n"
                f"p = subprocess.Popen([sys.executable, '-m', 'sagepipe.twin.sagemaker.model_server', '--model-dir', {str(model_dir)!r},"
                f" '--code-dir', {str(model_dir / 'code')!r}, '--ready-file', {str(ready)!r}, '--parent-pid', str(os.getpid())],"
                " start_new_session=True)\n"
                "print(p.pid, flush=True)\n"
                "time.sleep(120)\n"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    child = int(parent.stdout.readline())
    deadline = time.monotonic() + 30
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready.exists()
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        if Path(f"/proc/{child}/stat").exists() and Path(f"/proc/{child}/stat").read_text().split()[2] == "Z":
            break
        time.sleep(0.1)
    else:
        os.kill(child, 9)
        raise AssertionError("model server outlived its killed parent")
