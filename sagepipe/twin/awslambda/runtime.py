"""Run real Lambda handlers as warm worker processes (the twin's Lambda service).

Each function gets up to ``max_workers_per_function`` (default 4) warm
subprocesses running :mod:`sagepipe.twin.awslambda.worker`; concurrent invokes of
the same function use idle workers, spawn new ones up to the cap, and then
queue (block) until a worker is free - like Lambda's execution environments
with a reserved concurrency of N, except that throttling is replaced by waiting.

Behaviour follows the AWS Lambda Python runtime
(https://docs.aws.amazon.com/lambda/latest/dg/python-handler.html,
https://docs.aws.amazon.com/lambda/latest/dg/python-exceptions.html,
https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime):
reserved environment variables, ``sys.path`` order, the error object shape,
``Sandbox.Timedout`` / ``Runtime.ExitError`` / ``Runtime.ImportModuleError`` /
``Runtime.MarshalError`` and START/END/REPORT log lines.

Not emulated: memory limits (``memory_mb`` is only reported), /tmp isolation,
the read-only file system, the 6 MB payload limit, throttling.
"""

from __future__ import annotations

import atexit
import datetime as _dt
import json
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

_WORKER_FILE = str(Path(__file__).with_name("worker.py"))
_MARKER = b"\x1eSAGEPIPE-END "
INIT_TIMEOUT_S = 10.0  # Lambda's init phase limit for on-demand functions
_DEFAULT_ACCOUNT = "123456789012"


@dataclass(frozen=True)
class FunctionSpec:
    """What the twin needs to run one Lambda function (from the SAM template).

    ``code_dir``: the CodeUri directory (becomes ``LAMBDA_TASK_ROOT`` and cwd,
    first on ``sys.path``).  ``handler``: ``"module.function"``.  ``layer_dirs``:
    layer *content* dirs, the equivalent of ``/opt/python`` (put on ``sys.path``
    after ``code_dir``, in order).  ``environment``: template variables plus what
    the caller adds (``AWS_ENDPOINT_URL`` ...); these override the twin's
    defaults but the reserved names set by :class:`WorkerPool` win.
    ``timeout_s``: seconds (float), ``memory_mb``: MB (reported, not enforced).
    ``arn``: invoked function ARN; defaults to
    ``arn:aws:lambda:<region>:123456789012:function:<name>``.
    """

    name: str
    code_dir: Path
    handler: str
    layer_dirs: tuple[Path, ...] = ()
    environment: dict[str, str] = field(default_factory=dict, hash=False)
    timeout_s: float = 3.0
    memory_mb: int = 128
    arn: str = ""

    def region(self) -> str:
        """Region from the environment (``AWS_REGION`` / ``AWS_DEFAULT_REGION``) or us-east-1."""
        env = self.environment or {}
        return env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"

    def function_arn(self) -> str:
        """``arn`` or the synthesised ``arn:aws:lambda:<region>:123456789012:function:<name>``."""
        return self.arn or f"arn:aws:lambda:{self.region()}:{_DEFAULT_ACCOUNT}:function:{self.name}"


@dataclass
class InvokeResult:
    """Outcome of one invocation (the Lambda ``Invoke`` API response, synchronous).

    ``payload``: JSON bytes - the handler's return value, or the Lambda error
    object.  ``errored``: True when Lambda would set
    ``X-Amz-Function-Error: Unhandled`` (handler raised, timed out, crashed,
    failed to init).  ``logs``: everything the invocation printed
    (stdout+stderr, plus init output on a cold start) framed by START/END/REPORT
    lines, like the ``LogType=Tail`` log.  ``duration_ms``: wall time of the
    handler call in ms as measured by the parent (excludes worker cold start).
    """

    payload: bytes
    errored: bool
    logs: str
    duration_ms: float
    request_id: str = ""
    init_duration_ms: float | None = None


class _WorkerDied(Exception):
    pass


class _Timeout(Exception):
    pass


def _utc_now_iso() -> str:
    now = _dt.datetime.now(_dt.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


class _Worker:
    """One warm worker subprocess plus its log-reader threads."""

    def __init__(self, pool: WorkerPool, spec: FunctionSpec) -> None:
        self.pool = pool
        self.spec = spec
        self.lock = threading.Condition()
        self.buf: list[str] = []
        self.markers: dict[int, str] = {}
        self.init_ms: float | None = None
        self.dead = False
        self._rbuf = b""

        env = pool._worker_env(spec)
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        env["_SAGEPIPE_TWIN_FDS"] = f"{req_r},{resp_w}"
        env["_SAGEPIPE_TWIN_LAYERS"] = os.pathsep.join(str(Path(p).resolve()) for p in spec.layer_dirs)
        try:
            self.proc = subprocess.Popen(
                [pool.python, "-u", _WORKER_FILE],
                cwd=str(Path(spec.code_dir).resolve()),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(req_r, resp_w),
                start_new_session=True,
            )
        except BaseException:
            for fd in (req_r, req_w, resp_r, resp_w):
                os.close(fd)
            raise
        os.close(req_r)
        os.close(resp_w)
        self.req_w = req_w
        self.resp_r = resp_r
        self.pid = self.proc.pid
        self.readers = [
            threading.Thread(target=self._read_logs, args=(self.proc.stdout, 1), daemon=True),
            threading.Thread(target=self._read_logs, args=(self.proc.stderr, 2), daemon=True),
        ]
        for t in self.readers:
            t.start()

    # ------------------------------------------------------------------ logs
    def _read_logs(self, stream: IO[bytes], which: int) -> None:
        for raw in iter(stream.readline, b""):
            idx = raw.find(_MARKER)
            if idx >= 0:
                rid = raw[idx + len(_MARKER) :].rstrip(b"\n").rstrip(b"\x1e").decode("utf-8", "replace")
                raw = raw[:idx]
                if raw:
                    self._emit(raw.decode("utf-8", "replace").rstrip("\n"))
                with self.lock:
                    self.markers[which] = rid
                    self.lock.notify_all()
                continue
            self._emit(raw.decode("utf-8", "replace").rstrip("\n"))
        with self.lock:
            self.markers[which] = "<eof>"
            self.lock.notify_all()

    def _emit(self, line: str) -> None:
        with self.lock:
            self.buf.append(line)
        self.pool._sink_line(self.spec.name, line)

    def _platform_line(self, line: str) -> None:
        self._emit(line)

    def _wait_markers(self, rid: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.lock:
            while not all(self.markers.get(w) in (rid, "<eof>") for w in (1, 2)):
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.lock.wait(left)

    def take_logs(self) -> str:
        with self.lock:
            out = "\n".join(self.buf)
            self.buf.clear()
        return out + "\n" if out else ""

    # ------------------------------------------------------------------ frames
    def _read_frame(self, deadline: float | None) -> bytes:
        while True:
            if len(self._rbuf) >= 4:
                (n,) = struct.unpack(">I", self._rbuf[:4])
                if len(self._rbuf) >= 4 + n:
                    data = self._rbuf[4 : 4 + n]
                    self._rbuf = self._rbuf[4 + n :]
                    return data
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _Timeout()
                r, _, _ = select.select([self.resp_r], [], [], left)
                if not r:
                    raise _Timeout()
            try:
                chunk = os.read(self.resp_r, 1 << 20)
            except OSError:
                chunk = b""
            if not chunk:
                raise _WorkerDied()
            self._rbuf += chunk

    def _write_frames(self, *frames: bytes) -> None:
        data = b"".join(struct.pack(">I", len(f)) + f for f in frames)
        view = memoryview(data)
        try:
            while view:
                n = os.write(self.req_w, view)
                view = view[n:]
        except (BrokenPipeError, OSError):
            raise _WorkerDied() from None

    def wait_ready(self) -> dict[str, Any] | None:
        """Block until init finished; return the init error object or None."""
        head = json.loads(self._read_frame(time.monotonic() + INIT_TIMEOUT_S))
        body = self._read_frame(time.monotonic() + 5.0)
        self.init_ms = float(head.get("init_ms", 0.0))
        if head.get("type") == "init_error":
            error: dict[str, Any] = json.loads(body)
            return error
        return None

    def call(self, meta: dict[str, Any], event: bytes, deadline: float) -> tuple[dict[str, Any], bytes]:
        self._write_frames(json.dumps(meta).encode(), event)
        head = json.loads(self._read_frame(deadline))
        body = self._read_frame(time.monotonic() + 5.0)
        return head, body

    # ------------------------------------------------------------------ teardown
    def kill(self) -> None:
        """SIGKILL the worker's whole process group and reap it (idempotent)."""
        if self.dead:
            return
        self.dead = True
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.kill()
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for fd in (self.req_w, self.resp_r):
            try:
                os.close(fd)
            except OSError:
                pass
        for t in self.readers:
            t.join(timeout=0.5)
        for s in (self.proc.stdout, self.proc.stderr):
            try:
                if s is not None:
                    s.close()
            except Exception:
                pass

    def alive(self) -> bool:
        return not self.dead and self.proc.poll() is None


class _Slot:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.idle: list[_Worker] = []
        self.count = 0


class WorkerPool:
    """Warm Lambda execution environments for many functions.

    ``log_sink(function_name, line)`` receives every log line (handler output and
    START/END/REPORT platform lines); default: ``[name] line`` on stderr.
    ``log_dir``: if given, lines are also appended to ``log_dir/<name>.log``.
    ``python``: interpreter for workers (needs the handlers' dependencies, e.g.
    boto3 / aws-lambda-powertools, on its own site-packages).
    ``max_workers_per_function``: concurrency cap per function name; further
    concurrent invokes wait for a free worker.

    Thread-safe.  Workers are started lazily on the first invoke (cold start),
    run in their own session/process group and are killed by :meth:`shutdown`
    (also registered with :mod:`atexit`); a worker also exits by itself when the
    parent disappears (EOF on its request pipe).
    """

    def __init__(
        self,
        log_sink: Callable[[str, str], None] | None = None,
        log_dir: Path | None = None,
        python: str = sys.executable,
        max_workers_per_function: int = 4,
    ) -> None:
        self.log_sink = log_sink or self._default_sink
        self.log_dir = Path(log_dir) if log_dir is not None else None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        self.python = python
        self.max_workers = max(1, int(max_workers_per_function))
        self._lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}
        self._all: set[_Worker] = set()
        self._files: dict[str, IO[str]] = {}
        self._file_lock = threading.Lock()
        self._closed = False
        atexit.register(self.shutdown)

    # ------------------------------------------------------------------ logging
    @staticmethod
    def _default_sink(name: str, line: str) -> None:
        print(f"[{name}] {line}", file=sys.stderr, flush=True)

    def _sink_line(self, name: str, line: str) -> None:
        try:
            self.log_sink(name, line)
        except Exception:
            pass
        if self.log_dir is not None:
            with self._file_lock:
                f = self._files.get(name)
                if f is None:
                    f = open(self.log_dir / f"{name}.log", "a", encoding="utf-8")
                    self._files[name] = f
                f.write(line + "\n")
                f.flush()

    # ------------------------------------------------------------------ env
    def _worker_env(self, spec: FunctionSpec) -> dict[str, str]:
        """Minimal base env + spec.environment + Lambda's reserved variables."""
        env: dict[str, str] = {}
        for k in ("PATH", "HOME", "LANG"):
            if k in os.environ:
                env[k] = os.environ[k]
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        env.setdefault("LANG", "en_US.UTF-8")
        env["TZ"] = ":UTC"
        # Lambda always provides credentials; never leak the developer's real ones.
        env["AWS_ACCESS_KEY_ID"] = "testing"
        env["AWS_SECRET_ACCESS_KEY"] = "testing"
        env["AWS_SESSION_TOKEN"] = "testing"
        env["POWERTOOLS_TRACE_DISABLED"] = "true"
        env.update({str(k): str(v) for k, v in (spec.environment or {}).items()})
        region = spec.region()
        code_dir = str(Path(spec.code_dir).resolve())
        today = _dt.datetime.now(_dt.UTC).strftime("%Y/%m/%d")
        env.update(
            {
                "AWS_LAMBDA_FUNCTION_NAME": spec.name,
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(int(spec.memory_mb)),
                "AWS_LAMBDA_FUNCTION_TIMEOUT": str(int(spec.timeout_s))
                if float(spec.timeout_s).is_integer()
                else str(spec.timeout_s),
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
                "AWS_LAMBDA_LOG_STREAM_NAME": f"{today}/[$LATEST]{uuid.uuid4().hex}",
                "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
                "AWS_REGION": region,
                "AWS_DEFAULT_REGION": env.get("AWS_DEFAULT_REGION", region),
                "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
                "LAMBDA_TASK_ROOT": code_dir,
                "_HANDLER": spec.handler,
            }
        )
        env.pop("PYTHONPATH", None)
        env.pop("PYTHONHOME", None)
        return env

    # ------------------------------------------------------------------ pool
    def _slot(self, name: str) -> _Slot:
        with self._lock:
            if self._closed:
                raise RuntimeError("WorkerPool is shut down")
            s = self._slots.get(name)
            if s is None:
                s = self._slots[name] = _Slot()
            return s

    def _acquire(self, spec: FunctionSpec) -> tuple[_Worker, bool]:
        slot = self._slot(spec.name)
        stale: list[_Worker] = []
        with slot.cond:
            while True:
                if self._closed:
                    raise RuntimeError("WorkerPool is shut down")
                while slot.idle:
                    w = slot.idle.pop()
                    if w.spec == spec and w.alive():
                        for s in stale:
                            self._discard(s)
                        return w, False
                    stale.append(w)
                    slot.count -= 1
                if slot.count < self.max_workers:
                    slot.count += 1
                    break
                slot.cond.wait()
        for s in stale:
            self._discard(s)
        try:
            w = _Worker(self, spec)
        except BaseException:
            with slot.cond:
                slot.count -= 1
                slot.cond.notify()
            raise
        with self._lock:
            self._all.add(w)
            closed = self._closed
        if closed:
            self._discard(w)
            raise RuntimeError("WorkerPool is shut down")
        return w, True

    def _discard(self, w: _Worker) -> None:
        w.kill()
        with self._lock:
            self._all.discard(w)

    def _release(self, w: _Worker, healthy: bool) -> None:
        slot = self._slot_nocheck(w.spec.name)
        if not healthy or self._closed:
            self._discard(w)
        with slot.cond:
            if healthy and not self._closed and w.alive():
                slot.idle.append(w)
            else:
                slot.count -= 1
            slot.cond.notify()

    def _slot_nocheck(self, name: str) -> _Slot:
        with self._lock:
            return self._slots.setdefault(name, _Slot())

    def invoke(self, spec: FunctionSpec, event: bytes) -> InvokeResult:
        """Invoke ``spec``'s handler synchronously with ``event`` (JSON bytes).

        Returns an :class:`InvokeResult`; never raises for handler-side failures
        (they become Lambda error objects with ``errored=True``):
        handler exception -> ``{"errorMessage","errorType","requestId","stackTrace"}``
        (worker stays warm); no response within ``spec.timeout_s`` seconds ->
        ``Sandbox.Timedout`` (worker group killed, next invoke cold-starts);
        worker exited -> ``Runtime.ExitError``; init failure ->
        ``Runtime.ImportModuleError`` & co.; unserialisable result ->
        ``Runtime.MarshalError``.  An empty ``event`` means ``{}``.
        Raises ``RuntimeError`` after :meth:`shutdown`, ``OSError`` if the worker
        cannot be spawned.
        """
        if isinstance(event, str):
            event = event.encode("utf-8")
        worker, cold = self._acquire(spec)
        rid = str(uuid.uuid4())
        healthy = False
        init_ms: float | None = None
        try:
            if cold:
                try:
                    init_err = worker.wait_ready()
                except _Timeout:
                    init_err = {
                        "errorMessage": f"{_utc_now_iso()} {rid} Task timed out after {INIT_TIMEOUT_S:.2f} seconds",
                        "errorType": "Sandbox.Timedout",
                    }
                except _WorkerDied:
                    init_err = self._exit_error(worker, rid)
                init_ms = worker.init_ms
                if init_err is not None:
                    worker._wait_markers("init", 0.5)
                    worker._platform_line(
                        f"INIT_REPORT Init Duration: {init_ms or 0:.2f} ms\tPhase: init\tStatus: error\t"
                        f"Error Type: {init_err.get('errorType')}"
                    )
                    if not init_err.get("requestId"):
                        init_err["requestId"] = rid
                    return self._finish(worker, spec, rid, init_err, True, 0.0, init_ms, "error")
                worker._wait_markers("init", 2.0)  # init output first, as Lambda's log stream shows it
            worker._platform_line(f"START RequestId: {rid} Version: $LATEST")
            meta = {
                "requestId": rid,
                "deadlineMs": int((time.time() + spec.timeout_s) * 1000),
                "arn": spec.function_arn(),
                "traceId": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};"
                f"Sampled=0;Lineage=1:{uuid.uuid4().hex[:8]}:0",
            }
            t_call = time.monotonic()
            try:
                head, body = worker.call(meta, event, t_call + float(spec.timeout_s))
            except _Timeout:
                dur = (time.monotonic() - t_call) * 1000.0
                worker.kill()
                msg = f"{_utc_now_iso()} {rid} Task timed out after {float(spec.timeout_s):.2f} seconds"
                worker._platform_line(msg)
                err = {"errorMessage": msg, "errorType": "Sandbox.Timedout"}
                return self._finish(worker, spec, rid, err, True, dur, init_ms, "timeout")
            except _WorkerDied:
                dur = (time.monotonic() - t_call) * 1000.0
                err = self._exit_error(worker, rid)
                worker._platform_line(f"RequestId: {rid} Error: {err['errorMessage'].split('Error: ', 1)[-1]}")
                return self._finish(worker, spec, rid, err, True, dur, init_ms, "error")
            dur = (time.monotonic() - t_call) * 1000.0
            worker._wait_markers(rid, 2.0)
            healthy = True
            return self._finish(
                worker,
                spec,
                rid,
                body,
                bool(head.get("errored")),
                dur,
                init_ms,
                None,
                max_rss_kb=int(head.get("maxRssKb") or 0),
            )
        finally:
            self._release(worker, healthy)

    def _exit_error(self, worker: _Worker, rid: str) -> dict[str, str]:
        try:
            rc = worker.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            rc = None
        worker.kill()
        if rc is None:
            why = "exit status unknown"
        elif rc < 0:
            try:
                why = f"signal: {signal.Signals(-rc).name}"
            except ValueError:
                why = f"signal: {-rc}"
        else:
            why = f"exit status {rc}"
        return {
            "errorMessage": f"RequestId: {rid} Error: Runtime exited with error: {why}",
            "errorType": "Runtime.ExitError",
        }

    def _finish(
        self,
        worker: _Worker,
        spec: FunctionSpec,
        rid: str,
        payload: bytes | dict[str, Any],
        errored: bool,
        dur_ms: float,
        init_ms: float | None,
        status: str | None,
        max_rss_kb: int = 0,
    ) -> InvokeResult:
        if isinstance(payload, dict):
            payload = json.dumps(payload).encode()
        worker._platform_line(f"END RequestId: {rid}")
        report = (
            f"REPORT RequestId: {rid}\tDuration: {dur_ms:.2f} ms\tBilled Duration: {max(1, int(dur_ms + 0.999))} ms"
            f"\tMemory Size: {int(spec.memory_mb)} MB\tMax Memory Used: {max_rss_kb // 1024} MB"
        )
        if init_ms is not None:
            report += f"\tInit Duration: {init_ms:.2f} ms"
        if status:
            report += f"\tStatus: {status}"
        worker._platform_line(report)
        return InvokeResult(
            payload=payload,
            errored=errored,
            logs=worker.take_logs(),
            duration_ms=dur_ms,
            request_id=rid,
            init_duration_ms=init_ms,
        )

    def shutdown(self) -> None:
        """Kill every worker (SIGKILL to each worker's process group) and close log files.

        Idempotent; later :meth:`invoke` calls raise ``RuntimeError``.
        """
        with self._lock:
            self._closed = True
            workers = list(self._all)
            self._all.clear()
            slots = list(self._slots.values())
        for w in workers:
            w.kill()
        for s in slots:
            with s.cond:
                s.idle.clear()
                s.cond.notify_all()
        with self._file_lock:
            for f in self._files.values():
                try:
                    f.close()
                except Exception:
                    pass
            self._files.clear()

    def pids(self) -> list[int]:
        """PIDs (ints) of the live worker processes, idle or busy."""
        with self._lock:
            return [w.pid for w in self._all if w.alive()]
