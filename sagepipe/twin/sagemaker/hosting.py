"""The twin's SageMaker hosting: endpoints as local model servers.

``HostingManager`` runs one model-server process (:mod:`sagepipe.twin.sagemaker.model_server`) per endpoint
version on an ephemeral 127.0.0.1 port. Creating → InService only after ``GET /ping`` answers 200.
UpdateEndpoint is blue/green: the new version starts beside the old one; traffic moves only when the
new one is healthy; a failed update leaves the old EndpointConfig live with a FailureReason (AWS
behaviour, SageMaker docs "Blue/Green Deployments" and "Auto-Rollback Configuration").

Each model server is limited to its instance's CPUs as the twin gives them
(:func:`sagepipe.twin.sagemaker.capacity.hosting_cpus`: ``max(1, cpu_count // 4)``, at most the variant's
``InstanceType`` vCPUs - one thread on a 2-core machine): ``SM_NUM_CPUS``, ``OMP_NUM_THREADS`` and the
other thread-pool variables, unless the model's container ``Environment`` sets them.

Self-healing (SageMaker pings each instance's ``/ping`` periodically and replaces an instance that fails
its health checks; the endpoint stays InService): a watcher thread pings every live server every
``WATCH_INTERVAL_S``; a server whose process exited, or whose ping fails ``UNHEALTHY_PINGS`` times in a
row, is stopped, reaped and restarted from its model directory (a line ``replacing ...`` then ``replaced
...`` in the endpoint's log). While no healthy server is up, InvokeEndpoint answers ``ServiceUnavailable``
(503), one of the errors botocore's sagemaker-runtime model lists for InvokeEndpoint.

Data capture: an answered invocation goes to :attr:`HostingManager.capture`
(:class:`sagepipe.twin.sagemaker.capture.CaptureWriter`), which samples it by the answering
EndpointConfig's DataCaptureConfig and writes SageMaker's capture files with the model's execution role.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .capacity import cpu_environment, hosting_cpus
from .capture import CaptureWriter
from .training import LogSink, _now

#: SageMaker hosting's start-up window: a container that does not answer ``/ping`` with 200 "during the 8
#: minutes after startup" fails the launch (CreateEndpoint Failed; UpdateEndpoint rolled back); a
#: ProductionVariant's ``ContainerStartupHealthCheckTimeoutInSeconds`` (60-3600) replaces it.
CONTAINER_STARTUP_HEALTH_CHECK_S = 480.0
#: "The request timeout on /ping attempts is 2 seconds."
PING_TIMEOUT_S = 2.0
INVOKE_TIMEOUT_S = 60.0  # InvokeEndpoint's model response limit
#: How often the watcher pings each live model server (seconds). SageMaker does not document its
#: interval; the twin's choice, short enough that a dead server is replaced within seconds.
WATCH_INTERVAL_S = 2.0
#: Consecutive failed pings (no 200 within ``PING_TIMEOUT_S``) after which a running server is replaced:
#: 15 (30 s). SageMaker does not document its threshold; a short one (3, 6 s) replaced busy servers whose
#: pings queued behind invocations on a loaded machine - slowness must not change what happens (issue 10).
#: A server whose process exited is replaced at the next check.
UNHEALTHY_PINGS = 15


@dataclass
class ModelServer:
    """One running model-server process for one EndpointConfig."""

    endpoint_config_name: str
    process: subprocess.Popen[bytes]
    port: int
    directory: Path
    log_thread: threading.Thread | None = None
    start_seconds: float = 0.0  # process start → /ping 200 (wall seconds)
    in_flight: int = 0  # InvokeEndpoint requests routed here and not yet answered (HostingManager.route_lock)
    endpoint_name: str = ""
    # the model spec it was started with (restarts reuse it): PrimaryContainer, ExecutionRoleArn, InstanceType?,
    # ContainerStartupHealthCheckTimeoutInSeconds?
    model: dict[str, Any] = field(default_factory=dict)
    failed_pings: int = 0  # consecutive failed health checks (the watcher's count)

    def exited(self) -> bool:
        """True when the process has ended (and is reaped: ``poll`` waits for it)."""
        return self.process.poll() is not None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s; removes nothing on disk (kept for inspection)."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)


@dataclass
class EndpointState:
    """The twin's view of one endpoint: the serving process and a lock serialising changes."""

    live: ModelServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    replacing: bool = False  # the live server failed its health checks; a new one is starting


class InvokeFailure(Exception):
    """InvokeEndpoint failure: ``code`` is the AWS error code (ValidationError, ModelError,
    ServiceUnavailable), ``status`` its HTTP status."""

    def __init__(
        self,
        code: str,
        message: str,
        status: int,
        original_status: int | None = None,
        original_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status
        self.original_status, self.original_message = original_status, original_message


class HostingManager:
    """Model-server processes per endpoint (see module docstring). ``s3_factory(role_arn)`` returns an
    S3 client signed as the model's ``ExecutionRoleArn`` (SageMaker downloads ``ModelDataUrl`` with it)."""

    def __init__(
        self,
        work_root: Path,
        s3_factory: Callable[[str | None], Any],
        log_sink: LogSink,
        python: str = sys.executable,
    ) -> None:
        self.work_root = work_root
        self.s3_factory = s3_factory
        self.log_sink = log_sink
        self.python = python
        self.endpoints: dict[str, EndpointState] = {}
        self.all_servers: list[ModelServer] = []
        self.route_lock = threading.Lock()  # routing a request to ``live`` and counting it are one step
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        # data capture (capture.CaptureWriter): offered each answered invocation; None captures nothing
        self.capture: CaptureWriter | None = None

    # -- process management ------------------------------------------------------------------
    def _start_server(self, endpoint_name: str, config_name: str, model: dict[str, Any]) -> ModelServer:
        """Download ``ModelDataUrl``, start the server, wait for /ping 200. Raises RuntimeError."""
        container = model["PrimaryContainer"]
        directory = self.work_root / endpoint_name / config_name
        if directory.exists():
            shutil.rmtree(directory)
        model_dir = directory / "model"
        model_dir.mkdir(parents=True)
        bucket, key = container["ModelDataUrl"].removeprefix("s3://").split("/", 1)
        archive = directory / "model.tar.gz"
        self.s3_factory(model.get("ExecutionRoleArn")).download_file(bucket, key, str(archive))
        with tarfile.open(archive) as tar:
            tar.extractall(model_dir, filter="data")
        return self._launch(endpoint_name, config_name, directory, model)

    def _launch(self, endpoint_name: str, config_name: str, directory: Path, model: dict[str, Any]) -> ModelServer:
        """Start a model server on the extracted ``directory/model`` and wait for /ping 200 (see
        :meth:`await_healthy`). Returns the healthy server. Raises RuntimeError."""
        container = model["PrimaryContainer"]
        model_dir = directory / "model"
        env_vars = container.get("Environment") or {}
        code_dir = model_dir / "code"
        program = env_vars.get("SAGEMAKER_PROGRAM", "inference.py")
        ready = directory / "ready.json"
        ready.unlink(missing_ok=True)  # a restart: the old server's port is not the new one's
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEPIPE_TWIN_"))}
        # the instance's CPUs (its share of this machine): SM_NUM_CPUS and the thread pools, unless the
        # container's Environment sets them
        env.update(cpu_environment(hosting_cpus(model.get("InstanceType"))))
        env.update({k: str(v) for k, v in env_vars.items()})
        env["SM_MODEL_DIR"] = str(model_dir)
        proc = subprocess.Popen(
            [
                self.python,
                "-u",
                "-m",
                "sagepipe.twin.sagemaker.model_server",
                "--model-dir",
                str(model_dir),
                "--code-dir",
                str(code_dir),
                "--program",
                program,
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--ready-file",
                str(ready),
                "--parent-pid",
                str(os.getpid()),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        prefix = f"endpoint:{endpoint_name}/{config_name}"
        started = time.monotonic()
        output: list[str] = []

        def pump() -> None:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                output.append(line)
                self.log_sink(prefix, line)

        pump_thread = threading.Thread(target=pump, daemon=True)
        pump_thread.start()
        server = ModelServer(config_name, proc, 0, directory, pump_thread, endpoint_name=endpoint_name, model=model)
        self.all_servers.append(server)
        timeout_s = float(model.get("ContainerStartupHealthCheckTimeoutInSeconds") or CONTAINER_STARTUP_HEALTH_CHECK_S)
        self.await_healthy(server, ready, output, timeout_s)
        server.start_seconds = time.monotonic() - started
        return server

    def await_healthy(self, server: ModelServer, ready: Path, output: list[str], timeout_s: float) -> None:
        """Ping ``server`` until ``GET /ping`` answers 200, for at most ``timeout_s`` seconds from now.

        As SageMaker hosting does ("How Your Container Should Respond to Health Check (Ping) Requests"): a
        ping that times out (2 s) or answers another status is not a failure yet - the container has until
        the end of the start-up window (8 minutes, or the variant's
        ``ContainerStartupHealthCheckTimeoutInSeconds``) to answer 200. A process that exits has failed.
        The port is read from ``ready`` (the twin's model server writes it there once listening).

        Raises:
            RuntimeError: the process exited, or the window ended without a 200 (the server is stopped);
                the message is AWS's FailureReason for a failed ping health check.
        """
        deadline = time.monotonic() + timeout_s
        last: int | None = None
        while time.monotonic() < deadline:
            if self._stopping.is_set():
                server.stop()
                raise RuntimeError("the twin is stopping")
            if server.process.poll() is not None:
                code = server.process.returncode
                raise RuntimeError(f"model server exited with code {code}: {' | '.join(output[-5:])}")
            if server.port or ready.exists():
                server.port = server.port or json.loads(ready.read_text())["port"]
                last = self._ping(server.port)
                if last == 200:
                    return
            time.sleep(0.05 if last is None else 1.0)
        server.stop()
        raise RuntimeError(
            f"The primary container for production variant AllTraffic did not pass the ping health check "
            f"within {timeout_s:.0f} s (last /ping: {last if last is not None else 'no answer'}). "
            "Please check CloudWatch logs for this endpoint."
        )

    @staticmethod
    def _ping(port: int) -> int | None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=PING_TIMEOUT_S)
            conn.request("GET", "/ping")
            status = conn.getresponse().status
            conn.close()
            return status
        except OSError:
            return None

    # -- API behaviour -------------------------------------------------------------------------
    def create(self, endpoint: Any, model: dict[str, Any]) -> None:
        """CreateEndpoint: ``endpoint`` (moto object) goes Creating → InService, or Failed."""
        state = self.endpoints.setdefault(endpoint.endpoint_name, EndpointState())
        endpoint.endpoint_status = "Creating"
        self._start_watcher()
        config_name = endpoint.endpoint_config_name

        def run() -> None:
            with state.lock:
                try:
                    state.live = self._start_server(endpoint.endpoint_name, config_name, model)
                    endpoint.failure_reason = None
                    endpoint.endpoint_status = "InService"
                except Exception as exc:  # noqa: BLE001 - any failure is the endpoint's FailureReason
                    endpoint.failure_reason = f"Model server failed to become healthy: {exc}"
                    endpoint.endpoint_status = "Failed"
                endpoint.last_modified_time = _now()

        threading.Thread(target=run, name=f"create-{endpoint.endpoint_name}", daemon=True).start()

    def update(
        self,
        endpoint: Any,
        new_config_name: str,
        new_variants: list[dict[str, Any]],
        model: dict[str, Any],
        process_variants: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
    ) -> None:
        """UpdateEndpoint (blue/green): the old version serves until the new one answers /ping.

        On failure the old EndpointConfigName stays live, status returns to InService and
        FailureReason says why (what DescribeEndpoint shows after an update rolls back on AWS).
        """
        state = self.endpoints.setdefault(endpoint.endpoint_name, EndpointState())
        endpoint.endpoint_status = "Updating"

        def run() -> None:
            with state.lock:
                try:
                    new = self._start_server(endpoint.endpoint_name, new_config_name, model)
                except Exception as exc:  # noqa: BLE001
                    endpoint.failure_reason = (
                        f"Update to EndpointConfig {new_config_name} failed and was rolled back: {exc}"
                    )
                    endpoint.endpoint_status = "InService"
                    endpoint.last_modified_time = _now()
                    return
                with self.route_lock:
                    old, state.live = state.live, new
                endpoint.endpoint_config_name = new_config_name
                endpoint.production_variants = process_variants(new_variants)
                endpoint.failure_reason = None
                endpoint.last_modified_time = _now()
                endpoint.endpoint_status = "InService"
                if old is not None:
                    self._drain(old)
                    old.stop()

        threading.Thread(target=run, name=f"update-{endpoint.endpoint_name}", daemon=True).start()

    def _drain(self, server: ModelServer) -> None:
        """Wait until the requests already routed to ``server`` are answered (at most InvokeEndpoint's 60 s).

        AWS's blue/green update shifts traffic to the new fleet, then retires the old one: a request in
        flight on the old fleet is answered by it, never cut off (SageMaker docs, "Blue/Green Deployments").
        """
        deadline = time.monotonic() + INVOKE_TIMEOUT_S
        while time.monotonic() < deadline:
            with self.route_lock:
                if server.in_flight == 0:
                    return
            time.sleep(0.05)
        self.log_sink(f"endpoint:{server.endpoint_config_name}", f"stopping with {server.in_flight} requests in flight")

    def delete(self, endpoint_name: str) -> None:
        """DeleteEndpoint: stop the process."""
        state = self.endpoints.pop(endpoint_name, None)
        if state and state.live:
            state.live.stop()

    def invoke(
        self,
        endpoint_name: str,
        body: bytes,
        content_type: str | None,
        accept: str | None,
        inference_id: str | None = None,
    ) -> tuple[int, bytes, str]:
        """POST /invocations on the live process. Returns ``(200, body, content_type)``.

        An answered invocation is offered to :attr:`capture` with the EndpointConfig of the server that
        answered it (its DataCaptureConfig decides; ``inference_id`` is InvokeEndpoint's ``InferenceId``).

        Raises :class:`InvokeFailure` (ValidationError when not InService; ServiceUnavailable 503 while
        its model server is dead or being replaced; ModelError with the container's status when it answers
        non-200 or cannot be reached while its process runs).
        """
        with self.route_lock:
            state = self.endpoints.get(endpoint_name)
            server = state.live if state else None
            if state is not None and state.replacing:
                raise _unavailable(endpoint_name)
            if server is not None:
                server.in_flight += 1
        if server is None:
            raise InvokeFailure("ValidationError", f"Endpoint {endpoint_name} is not in service.", 400)
        try:
            answer = self._post(server, body, content_type, accept)
        finally:
            with self.route_lock:
                server.in_flight -= 1
        if self.capture is not None:
            self.capture.capture(
                endpoint=endpoint_name,
                endpoint_config=server.endpoint_config_name,
                role_arn=server.model.get("ExecutionRoleArn"),
                request=body,
                request_type=content_type,
                response=answer[1],
                response_type=answer[2],
                inference_id=inference_id,
            )
        return answer

    @staticmethod
    def _post(server: ModelServer, body: bytes, content_type: str | None, accept: str | None) -> tuple[int, bytes, str]:
        """POST /invocations to ``server``; see :meth:`invoke`."""
        headers = {"Content-Type": content_type or "application/octet-stream"}
        if accept:
            headers["Accept"] = accept
        try:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=INVOKE_TIMEOUT_S)
            conn.request("POST", "/invocations", body=body, headers=headers)
            resp = conn.getresponse()
            data, status = resp.read(), resp.status
            ctype = resp.getheader("Content-Type") or "application/json"
            conn.close()
        except OSError as exc:
            if _exited_soon(server):  # the instance is gone: no model answered; the watcher replaces it
                raise _unavailable(server.endpoint_name or server.endpoint_config_name) from exc
            raise InvokeFailure(
                "ModelError", f"Received server error (500) from primary: {exc}", 424, 500, str(exc)
            ) from exc
        if status != 200:
            text = data.decode("utf-8", "replace")
            raise InvokeFailure(
                "ModelError", f'Received client error ({status}) from primary with message "{text}".', 424, status, text
            )
        return 200, data, ctype

    def pids(self) -> list[int]:
        """PIDs of every model-server process started (alive or not)."""
        return [s.process.pid for s in self.all_servers]

    def shutdown(self) -> None:
        """Stop the watcher (waiting for a restart it is making), then every model server this manager started."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(timeout=INVOKE_TIMEOUT_S)
        for server in self.all_servers:
            server.stop()

    # -- health checks -------------------------------------------------------------------------
    def _start_watcher(self) -> None:
        if self._watcher is None and not self._stopping.is_set():
            self._watcher = threading.Thread(target=self._watch, name="hosting-watcher", daemon=True)
            self._watcher.start()

    def _watch(self) -> None:
        """Until :meth:`shutdown`: every ``WATCH_INTERVAL_S`` health-check each endpoint's live server."""
        while not self._stopping.wait(WATCH_INTERVAL_S):
            for name, state in list(self.endpoints.items()):
                if self._stopping.is_set():
                    return
                try:
                    self.check(name, state)
                except Exception as exc:  # noqa: BLE001 - the watcher outlives one endpoint's failure
                    self.log_sink(f"endpoint:{name}", f"health check failed: {exc!r}")

    def check(self, endpoint_name: str, state: EndpointState) -> bool:
        """Health-check ``state.live`` once; replace it when it is dead or unhealthy.

        A process that exited is replaced at once; a running one after ``UNHEALTHY_PINGS`` pings in a row
        that did not answer 200 within ``PING_TIMEOUT_S`` (SageMaker: "replaces ... instances that fail
        health checks"). An endpoint busy with a create or update (its lock held) is left to that.

        Returns:
            True when a replacement was made or attempted.
        """
        server = state.live
        if server is None:
            return False
        if not server.exited():
            status = self._ping(server.port) if server.port else None
            server.failed_pings = 0 if status == 200 else server.failed_pings + 1
            if server.failed_pings < UNHEALTHY_PINGS:
                return False
            why = f"{server.failed_pings} health checks (GET /ping) in a row did not answer 200 (last: {status})"
        else:
            why = f"its process exited with code {server.process.returncode}"
        if not state.lock.acquire(blocking=False):
            return False
        try:
            if state.live is not server or self.endpoints.get(endpoint_name) is not state:
                return False
            self._replace(endpoint_name, state, server, why)
            return True
        finally:
            state.lock.release()

    def _replace(self, endpoint_name: str, state: EndpointState, server: ModelServer, why: str) -> None:
        """Stop and reap ``server``, start a new one from its model directory (``state.lock`` held)."""
        prefix = f"endpoint:{endpoint_name}/{server.endpoint_config_name}"
        self.log_sink(prefix, f"replacing the model server (pid {server.process.pid}): {why}")
        with self.route_lock:
            state.replacing = True  # requests now get ServiceUnavailable; one on a hung server is cut off
        server.stop()  # SIGTERM/SIGKILL if still running; waits, so the process is reaped either way
        try:
            new = self._launch(endpoint_name, server.endpoint_config_name, server.directory, server.model)
        except RuntimeError as exc:
            self.log_sink(prefix, f"replacement failed, retrying at the next health check: {exc}")
            return  # state.live stays the dead server: the next check tries again
        with self.route_lock:
            current = self.endpoints.get(endpoint_name) is state
            if current:
                state.live, state.replacing = new, False
        if not current:  # the endpoint was deleted meanwhile
            new.stop()
            return
        self.log_sink(
            prefix,
            f"replaced the model server: pid {server.process.pid} -> {new.process.pid} "
            f"(healthy after {new.start_seconds:.1f} s)",
        )


def _unavailable(endpoint_name: str) -> InvokeFailure:
    """InvokeEndpoint's ServiceUnavailable (HTTP 503): no healthy instance can take the request."""
    return InvokeFailure(
        "ServiceUnavailable",
        f"The service is unavailable. Try your call again. (Endpoint {endpoint_name} has no healthy instance: "
        "its model server is being replaced.)",
        503,
    )


def _exited_soon(server: ModelServer, within_s: float = 0.5) -> bool:
    """True when ``server``'s process has exited or exits within ``within_s`` (a kill races the request)."""
    try:
        server.process.wait(timeout=within_s)
    except subprocess.TimeoutExpired:
        return False
    return True
