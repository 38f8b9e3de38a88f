"""Tests for sagepipe.twin.awslambda.runtime (real handlers in warm worker processes)."""

from __future__ import annotations

import json
import os
import textwrap
import threading
import time
from pathlib import Path

import pytest

from sagepipe.twin.awslambda.runtime import FunctionSpec, InvokeResult, WorkerPool

pytestmark = pytest.mark.twin

APP = """
import json, os, sys, time, logging, subprocess
import shared
print("init-phase print")

def lambda_handler(event, context):
    action = event.get("action")
    print(f"handling {action} in {context.aws_request_id}")
    if action == "echo":
        return {"event": event, "pid": os.getpid()}
    if action == "env":
        keys = ["MY_VAR", "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                "AWS_LAMBDA_FUNCTION_TIMEOUT", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_EXECUTION_ENV",
                "LAMBDA_TASK_ROOT", "AWS_LAMBDA_LOG_GROUP_NAME", "_HANDLER", "POWERTOOLS_TRACE_DISABLED",
                "PYTHONPATH", "SAGEPIPE_SECRET_PARENT_VAR"]
        return {"env": {k: os.environ.get(k) for k in keys}, "cwd": os.getcwd()}
    if action == "path":
        return {"shared": shared.WHO, "layer_only": __import__("layeronly").WHO, "sys_path": sys.path[:3]}
    if action == "context":
        return {"function_name": context.function_name, "version": context.function_version,
                "arn": context.invoked_function_arn, "mem": context.memory_limit_in_mb,
                "rid": context.aws_request_id, "group": context.log_group_name,
                "stream": context.log_stream_name, "remaining": context.get_remaining_time_in_millis()}
    if action == "raise":
        raise KeyError("missing-thing")
    if action == "sleep":
        time.sleep(event["s"])
        return {"slept": event["s"]}
    if action == "spawn_and_sleep":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        with open(event["pidfile"], "w") as f:
            f.write(str(child.pid))
        time.sleep(60)
    if action == "exit":
        os._exit(7)
    if action == "marshal":
        return {"s": {1, 2}}
    if action == "alloc":
        block = bytearray(event["mb"] << 20)
        block[::4096] = b"\x01" * len(block[::4096])  # touch every page
        hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:")][0]
        return {"hwm_mb": int(hwm.split()[1]) // 1024}
    if action == "log":
        print("line-out")
        sys.stderr.write("line-err\\n")
        logging.getLogger().error("via-logging")
        return None
    return {"default": True}
"""


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


@pytest.fixture(scope="module")
def fixture_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("lambda_fixture")
    code = root / "fn"
    layer = root / "layer"
    _write(code / "app.py", APP)
    _write(code / "shared.py", "WHO = 'code'\n")
    _write(layer / "shared.py", "WHO = 'layer'\n")
    _write(layer / "layeronly.py", "WHO = 'layer'\n")
    bad = root / "bad"
    _write(bad / "app.py", "import does_not_exist_xyz\n\ndef lambda_handler(e, c):\n    return 1\n")
    return code, layer, bad


@pytest.fixture(scope="module")
def sink_lines():
    return []


@pytest.fixture(scope="module")
def pool(tmp_path_factory, sink_lines):
    lock = threading.Lock()

    def sink(name, line):
        with lock:
            sink_lines.append((name, line))

    p = WorkerPool(log_sink=sink, log_dir=tmp_path_factory.mktemp("logs"))
    yield p
    p.shutdown()


def _spec(code, layer, name="fn", timeout=3.0, env=None):
    return FunctionSpec(
        name=name,
        code_dir=code,
        handler="app.lambda_handler",
        layer_dirs=(layer,),
        environment=env or {"MY_VAR": "hello"},
        timeout_s=timeout,
        memory_mb=256,
    )


def _call(pool, spec, event) -> tuple[InvokeResult, dict]:
    res = pool.invoke(spec, json.dumps(event).encode())
    return res, json.loads(res.payload)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); treat zombies as dead
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_round_trip_and_warm_reuse(pool, fixture_dirs):
    code, layer, _ = fixture_dirs
    spec = _spec(code, layer)
    res, body = _call(pool, spec, {"action": "echo", "n": [1, 2.5, "x", None, {"ü": True}]})
    assert not res.errored
    assert body["event"] == {"action": "echo", "n": [1, 2.5, "x", None, {"ü": True}]}
    assert res.init_duration_ms is not None
    res2, body2 = _call(pool, spec, {"action": "echo"})
    assert body2["pid"] == body["pid"]
    assert res2.init_duration_ms is None
    assert body["pid"] in pool.pids()


def test_none_return_is_null(pool, fixture_dirs):
    code, layer, _ = fixture_dirs
    res = pool.invoke(_spec(code, layer), b'{"action": "log"}')
    assert res.payload == b"null" and not res.errored


def test_environment(pool, fixture_dirs, monkeypatch):
    code, layer, _ = fixture_dirs
    monkeypatch.setenv("SAGEPIPE_SECRET_PARENT_VAR", "leak")
    spec = FunctionSpec(
        name="envfn",
        code_dir=code,
        handler="app.lambda_handler",
        layer_dirs=(layer,),
        environment={"MY_VAR": "hello", "AWS_REGION": "eu-west-1"},
        timeout_s=7,
        memory_mb=512,
    )
    res, body = _call(pool, spec, {"action": "env"})
    env = body["env"]
    assert env["MY_VAR"] == "hello"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "envfn"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "512"
    assert env["AWS_LAMBDA_FUNCTION_TIMEOUT"] == "7"
    assert env["AWS_REGION"] == "eu-west-1" and env["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.13"
    assert env["LAMBDA_TASK_ROOT"] == str(code.resolve())
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/envfn"
    assert env["_HANDLER"] == "app.lambda_handler"
    assert env["POWERTOOLS_TRACE_DISABLED"] == "true"
    assert env["PYTHONPATH"] is None
    assert env["SAGEPIPE_SECRET_PARENT_VAR"] is None  # os.environ-free base
    assert body["cwd"] == str(code.resolve())


def test_sys_path_code_dir_shadows_layer(pool, fixture_dirs):
    code, layer, _ = fixture_dirs
    res, body = _call(pool, _spec(code, layer), {"action": "path"})
    assert body["shared"] == "code"
    assert body["layer_only"] == "layer"
    assert body["sys_path"][:2] == [str(code.resolve()), str(layer.resolve())]
    assert not any(p.endswith(os.path.join("sagepipe", "twin")) for p in body["sys_path"])


def test_context_object(pool, fixture_dirs):
    code, layer, _ = fixture_dirs
    res, body = _call(pool, _spec(code, layer, timeout=3.0), {"action": "context"})
    assert body["function_name"] == "fn"
    assert body["version"] == "$LATEST"
    assert body["arn"] == "arn:aws:lambda:us-east-1:123456789012:function:fn"
    assert body["mem"] == 256
    assert body["rid"] == res.request_id
    assert body["group"] == "/aws/lambda/fn"
    assert "[$LATEST]" in body["stream"]
    assert 2000 < body["remaining"] <= 3000


def test_exception_shape_and_worker_stays_warm(pool, fixture_dirs):
    code, layer, _ = fixture_dirs
    spec = _spec(code, layer)
    _, before = _call(pool, spec, {"action": "echo"})
    res, err = _call(pool, spec, {"action": "raise"})
    assert res.errored
    assert err["errorType"] == "KeyError"
    assert err["errorMessage"] == "'missing-thing'"
    assert err["requestId"] == res.request_id
    assert isinstance(err["stackTrace"], list) and err["stackTrace"]
    assert "app.py" in err["stackTrace"][0] and "awslambda/worker.py" not in "".join(err["stackTrace"])
    assert "[ERROR] KeyError: 'missing-thing'" in res.logs
    _, after = _call(pool, spec, {"action": "echo"})
    assert after["pid"] == before["pid"]


def test_marshal_error(pool, fixture_dirs):
    code, layer, _ = fixture_dirs
    res, err = _call(pool, _spec(code, layer), {"action": "marshal"})
    assert res.errored and err["errorType"] == "Runtime.MarshalError"
    assert err["errorMessage"].startswith("Unable to marshal response:")


def test_timeout_kills_worker_and_children(pool, fixture_dirs, tmp_path):
    code, layer, _ = fixture_dirs
    spec = _spec(code, layer, name="slowfn", timeout=1.0)
    _, warm = _call(pool, spec, {"action": "echo"})
    pidfile = tmp_path / "child.pid"
    t0 = time.monotonic()
    res, err = _call(pool, spec, {"action": "spawn_and_sleep", "pidfile": str(pidfile)})
    elapsed = time.monotonic() - t0
    assert res.errored
    assert err["errorType"] == "Sandbox.Timedout"
    assert err["errorMessage"].endswith(f"{res.request_id} Task timed out after 1.00 seconds")
    assert 0.9 <= elapsed < 2.0
    assert "Status: timeout" in res.logs
    assert not _alive(warm["pid"])
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 2
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)
    res2, body2 = _call(pool, spec, {"action": "echo"})
    assert not res2.errored and body2["pid"] != warm["pid"]


def test_worker_crash_is_exit_error(pool, fixture_dirs):
    code, layer, _ = fixture_dirs
    spec = _spec(code, layer, name="crashfn")
    _, warm = _call(pool, spec, {"action": "echo"})
    res, err = _call(pool, spec, {"action": "exit"})
    assert res.errored and err["errorType"] == "Runtime.ExitError"
    assert "exit status 7" in err["errorMessage"]
    res2, body2 = _call(pool, spec, {"action": "echo"})
    assert not res2.errored and body2["pid"] != warm["pid"]


def test_import_error(pool, fixture_dirs):
    _, layer, bad = fixture_dirs
    spec = FunctionSpec(
        name="badfn", code_dir=bad, handler="app.lambda_handler", layer_dirs=(), environment={}, timeout_s=3
    )
    res, err = _call(pool, spec, {})
    assert res.errored
    assert err["errorType"] == "Runtime.ImportModuleError"
    assert err["errorMessage"] == "Unable to import module 'app': No module named 'does_not_exist_xyz'"
    assert "Runtime.ImportModuleError" in res.logs
    spec2 = FunctionSpec(name="badfn2", code_dir=bad, handler="nomodule.handler", environment={}, timeout_s=3)
    _, err2 = _call(pool, spec2, {})
    assert err2["errorType"] == "Runtime.ImportModuleError"
    spec3 = FunctionSpec(
        name="badfn3", code_dir=fixture_dirs[0], handler="app.nope", layer_dirs=(layer,), environment={}, timeout_s=3
    )
    _, err3 = _call(pool, spec3, {})
    assert err3["errorType"] == "Runtime.HandlerNotFound"


def test_logs_per_invocation_sink_and_file(pool, fixture_dirs, sink_lines):
    code, layer, _ = fixture_dirs
    spec = _spec(code, layer, name="logfn")
    first = pool.invoke(spec, b'{"action": "log"}')
    assert "init-phase print" in first.logs  # cold start: init output precedes START
    assert first.logs.index("init-phase print") < first.logs.index("START RequestId")
    res = pool.invoke(spec, b'{"action": "log"}')
    rid = res.request_id
    lines = res.logs.splitlines()
    assert lines[0] == f"START RequestId: {rid} Version: $LATEST"
    assert lines[-2] == f"END RequestId: {rid}"
    assert lines[-1].startswith(f"REPORT RequestId: {rid}\tDuration: ")
    assert "line-out" in lines and "line-err" in lines
    assert any(ln.startswith("[ERROR]\t") and ln.endswith(f"\t{rid}\tvia-logging") for ln in lines)
    assert "init-phase print" not in res.logs
    assert first.request_id not in res.logs
    got = [ln for (n, ln) in sink_lines if n == "logfn"]
    assert "line-out" in got and f"END RequestId: {rid}" in got
    logfile = pool.log_dir / "logfn.log"
    assert f"END RequestId: {rid}" in logfile.read_text()


def test_report_max_memory_used_is_the_workers_own_peak(pool, fixture_dirs):
    """REPORT's ``Max Memory Used`` is the function's peak resident memory (MB). ``ru_maxrss`` keeps the
    peak of the process that forked the worker across exec (Linux), so the REPORT claimed the twin's
    227-551 MB where workers peak at 66-86 MB; a 400 MB parent made that plain."""
    import re

    code, layer, _ = fixture_dirs
    ballast = b"\x01" * (400 << 20)  # the parent is big when the worker is spawned
    try:
        spec = _spec(code, layer, name="memfn")
        res, out = _call(pool, spec, {"action": "alloc", "mb": 60})
    finally:
        del ballast
    assert not res.errored, out
    used = int(re.search(r"Max Memory Used: (\d+) MB", res.logs.splitlines()[-1]).group(1))
    assert 60 <= used <= out["hwm_mb"] + 2, (used, out)
    assert used < 300, used


def test_concurrent_invokes(pool, fixture_dirs):
    code, layer, _ = fixture_dirs
    spec = _spec(code, layer, name="concfn")
    results: list = [None] * 8

    def run(i):
        results[i] = _call(pool, spec, {"action": "sleep", "s": 0.4})

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    assert all(r is not None and not r[0].errored and r[1] == {"slept": 0.4} for r in results)
    # 8 calls x 0.4 s with 4 workers -> two waves (~0.8 s + cold starts), not 3.2 s serial
    assert elapsed < 2.5
    assert len({r[0].request_id for r in results}) == 8


def test_shutdown_leaves_no_process(fixture_dirs):
    code, layer, _ = fixture_dirs
    p = WorkerPool(log_sink=lambda n, line: None)
    for name in ("a", "b"):
        p.invoke(_spec(code, layer, name=name), b'{"action": "echo"}')
    pids = p.pids()
    assert len(pids) == 2 and all(_alive(x) for x in pids)
    p.shutdown()
    p.shutdown()  # idempotent
    assert p.pids() == []
    assert not any(_alive(x) for x in pids)
    with pytest.raises(RuntimeError):
        p.invoke(_spec(code, layer, name="a"), b"{}")
