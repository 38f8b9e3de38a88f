"""The twin's state across restarts: a snapshot in ``<state dir>/snapshot.pickle``, restored by the next
``Twin.start()`` on the same state dir.

What a deployed stack keeps when nobody is looking, the twin keeps across a stop (SIGINT/SIGTERM,
``Twin.stop()``) and a start on the same ``--state-dir``:

- **S3**: every object of every bucket, every version, with its metadata, tags and ``LastModified``
  (multipart uploads in progress too). The fresh deploy's own objects (the ``ModelCode`` custom resource's
  code bundle) go on top, as a ``sam deploy`` of the same stack would write them. Restoring fires no
  "Object Created" event: nothing was uploaded.
- **SageMaker**: the registry (model package groups and packages with their approval status and
  metadata), models, endpoint configs, endpoints, training and tuning jobs. A job that was running when
  the twin stopped is ``Stopped`` (what Step Functions does to a ``.sync`` job of an aborted execution);
  an endpoint that was ``InService``/``Creating`` is started again from its current EndpointConfig (an
  interrupted ``UpdateEndpoint`` keeps the old config live, with a ``FailureReason`` saying so), and
  ``Twin.start()`` waits for it (SageMaker keeps endpoints up; the twin brings them back).
- **Step Functions**: every execution of the pipeline with its input, output, error, cause and full
  history (``DescribeExecution``, ``ListExecutions``, ``GetExecutionHistory`` answer as before). An
  execution that was ``RUNNING`` is ``ABORTED`` (error :data:`ABORT_ERROR`, an ``ExecutionAborted``
  history event) and its "Step Functions Execution Status Change" event is put on the default bus, so the
  pipeline's ExecutionEndedFunction sends "Pipeline Failed" for it - no run ends without a notification.
- **CloudWatch Logs**: every log group's streams and events (the notifications log
  ``/aws/events/<stack>/notifications``, function, training and endpoint logs).
- **SQS**: the messages of every queue (the dead-letter queue's failed deliveries).
- **The API key** of the inference API (``x-api-key``), so clients keep working.

Not kept: CloudWatch metrics and alarms' history, in-flight Lambda invocations and EventBridge deliveries
(their retries), and anything a template change removed (a bucket no longer in the template is created
again with its objects). The snapshot is a Python pickle of moto's objects: it is written by and for this
machine, so a state dir is trusted input (never load one you did not create). It is stamped with
:data:`FORMAT` and the moto version; a mismatch refuses to start (:class:`TwinStateError`) rather than
lose or misread anything - ``sagepipe twin reset`` clears it deliberately.

When: :func:`save` runs on every ``Twin.stop()`` (before anything is shut down, so what was running is
recorded as running) and, debounced, after each execution ends (so a killed twin loses at most the
last few seconds). Files are written to a temporary name and renamed (atomic on POSIX).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from moto.stepfunctions.parser.backend.execution import Execution

#: Bumped whenever the snapshot's layout changes; a snapshot of another format is refused.
FORMAT = 1
SNAPSHOT = "snapshot.pickle"
ACCOUNT = "123456789012"
#: Error name and cause of an execution that was running when the twin stopped.
ABORT_ERROR = "sagepipe.TwinStopped"
#: Scratch directories under the state dir that a start clears (re-created from S3 as needed).
SCRATCH = ("training", "endpoints")
_SAVE_LOCK = threading.Lock()


class TwinStateError(RuntimeError):
    """The state dir holds a snapshot this twin cannot restore (another :data:`FORMAT` or moto version,
    or an unreadable file). Nothing is deleted; the message says how to clear it deliberately."""


@dataclass
class Manifest:
    """The first object of the snapshot file: what wrote it and what it holds (``counts``)."""

    format: int
    moto: str
    written: str  # ISO 8601, UTC
    stack_name: str
    region: str
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class Restored:
    """What :func:`restore` brought back (``Twin.start()`` prints :meth:`summary`)."""

    manifest: Manifest
    objects: int = 0
    model_packages: int = 0
    executions: int = 0
    aborted: list[str] = field(default_factory=list)
    jobs_stopped: list[str] = field(default_factory=list)
    endpoints: list[str] = field(default_factory=list)
    log_events: int = 0
    messages: int = 0
    api_key: bool = False

    def summary(self) -> str:
        """One line for the operator."""
        parts = [
            f"{self.objects} S3 objects",
            f"{self.model_packages} model packages",
            f"{self.executions} runs",
            f"{len(self.endpoints)} endpoints",
            f"{self.log_events} log events",
            f"{self.messages} queued messages",
        ]
        line = f"restored state of {self.manifest.written}: " + ", ".join(parts)
        if self.api_key:
            line += ", the API key"
        if self.aborted:
            line += f"; runs cut off by the stop, now ABORTED: {', '.join(self.aborted)}"
        if self.jobs_stopped:
            line += f"; jobs stopped: {', '.join(self.jobs_stopped)}"
        return line


def snapshot_path(state_dir: Path) -> Path:
    """``<state_dir>/snapshot.pickle``."""
    return Path(state_dir) / SNAPSHOT


def _moto_version() -> str:
    import moto

    return str(moto.__version__)


def _backends(region: str) -> dict[str, Any]:
    from moto.logs.models import logs_backends
    from moto.s3.models import s3_backends
    from moto.sagemaker.models import sagemaker_backends
    from moto.sqs.models import sqs_backends
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends

    return {
        "s3": s3_backends[ACCOUNT]["global"],
        "sagemaker": sagemaker_backends[ACCOUNT][region],
        "stepfunctions": stepfunctions_parser_backends[ACCOUNT][region],
        "logs": logs_backends[ACCOUNT][region],
        "sqs": sqs_backends[ACCOUNT][region],
    }


def check() -> None:
    """The moto internals this module reads and writes must still exist (raises ``MotoInternalsChanged``;
    ``tests/twin/test_persistence.py`` runs it, so a moto upgrade fails loudly)."""
    import inspect

    from moto.logs.models import LogGroup, LogStream
    from moto.s3.models import FakeBucket
    from moto.s3.utils import _VersionedKeyStore
    from moto.sagemaker.models import SageMakerModelBackend
    from moto.sqs.models import Queue
    from moto.stepfunctions.parser.backend.execution import Execution

    from .patches import MotoInternalsChanged

    wanted: dict[Any, tuple[str, ...]] = {
        FakeBucket.__init__: ("self.keys", "self.multiparts", "self.versioning_status"),
        LogGroup.__init__: ("self.streams",),
        LogStream.__init__: ("self.log_group", "self.events"),
        Queue.__init__: ("self._messages",),
        SageMakerModelBackend.__init__: (
            "self.training_jobs",
            "self.endpoints",
            "self.model_packages",
            "self.hyper_parameter_tuning_jobs",
        ),
        Execution.__init__: ("self.exec_status", "self.exec_worker", "self.execution_input", "self.input_data"),
    }
    for fn, fields in wanted.items():
        source = inspect.getsource(fn)
        for name in fields:
            if f"{name}" not in source:
                raise MotoInternalsChanged(f"{fn.__qualname__} no longer sets {name} (sagepipe.twin.persistence)")
    for method in ("getlist", "lists"):
        if not hasattr(_VersionedKeyStore, method):
            raise MotoInternalsChanged(f"moto's S3 key store lost {method} (sagepipe.twin.persistence)")
    for method in ("to_history_output", "to_describe_output"):
        if not hasattr(Execution, method):
            raise MotoInternalsChanged(f"moto's stepfunctions Execution lost {method} (sagepipe.twin.persistence)")


# ----------------------------------------------------------------------------------- capture
def _history(execution: Any) -> list[dict[str, Any]]:
    if isinstance(execution, RestoredExecution):
        return list(execution.history)
    frozen = getattr(execution, "_twin_events", None)  # a stopped or timed-out run's (stepfunctions/redrive.py)
    if frozen is not None:
        return list(frozen.get_event_history())
    env = getattr(getattr(execution, "exec_worker", None), "env", None)
    return list(env.event_manager.get_event_history()) if env is not None else []


def _extras(execution: Any) -> dict[str, Any]:
    """The twin's own ``_twin_*`` attributes of an execution (redrive counters ...) that pickle."""
    out = {}
    for name, value in vars(execution).items():
        if name.startswith("_twin_"):
            try:
                pickle.dumps(value)
            except Exception:  # noqa: BLE001, S112 - an unpicklable runtime attribute (a lock) is not state
                continue
            out[name] = value
    return out


def _execution_record(execution: Any) -> dict[str, Any]:
    return {
        "name": execution.name,
        "exec_arn": execution.exec_arn,
        "role_arn": execution.role_arn,
        "sm_type": execution.sm_type,
        "account_id": execution.account_id,
        "region_name": execution.region_name,
        "status": execution.exec_status.value if execution.exec_status is not None else "RUNNING",
        "start_date": execution.start_date,
        "stop_date": execution.stop_date,
        "input_data": execution.input_data,
        "execution_input": execution.execution_input,
        "trace_header": execution.trace_header,
        "output": execution.output,
        "error": execution.error,
        "cause": execution.cause,
        "history": _history(execution),
        "extras": _extras(execution),
    }


def capture(stack_name: str, region: str, api_key: str | None) -> tuple[Manifest, dict[str, Any]]:
    """Copy the twin's state out of moto's backends. Returns ``(manifest, state)``; ``state`` holds plain
    dicts and lists of moto objects (a pickled ``_VersionedKeyStore`` would keep only the last version of
    each key, so S3 is flattened to ``{bucket: {"keys": {key: [versions]}}}``)."""
    b = _backends(region)
    s3 = {
        name: {
            "keys": {key: list(versions) for key, versions in bucket.keys.lists()},
            "multiparts": dict(bucket.multiparts),
            "versioning_status": bucket.versioning_status,
        }
        for name, bucket in list(b["s3"].buckets.items())
    }
    sagemaker = {k: v for k, v in vars(b["sagemaker"]).items() if k not in ("region_name", "account_id", "partition")}
    stepfunctions = {
        sm.name: [_execution_record(e) for e in list(sm.executions)] for sm in b["stepfunctions"].state_machines
    }
    logs = dict(b["logs"].groups)
    sqs = {name: list(q._messages) for name, q in b["sqs"].queues.items()}
    state = {
        "s3": s3,
        "sagemaker": sagemaker,
        "stepfunctions": stepfunctions,
        "logs": logs,
        "sqs": sqs,
        "api_key": api_key,
    }
    manifest = Manifest(
        format=FORMAT,
        moto=_moto_version(),
        written=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        stack_name=stack_name,
        region=region,
        counts={
            "objects": sum(len(v) for bucket in s3.values() for v in bucket["keys"].values()),
            "executions": sum(len(v) for v in stepfunctions.values()),
            "model_packages": len(sagemaker.get("model_packages", {})),
            "endpoints": len(sagemaker.get("endpoints", {})),
        },
    )
    return manifest, state


def save(state_dir: Path, stack_name: str, region: str, api_key: str | None, attempts: int = 5) -> Manifest:
    """Write the snapshot atomically (``snapshot.pickle.tmp`` then rename). moto's dicts may change while
    they are copied (a request in flight): "changed size during iteration" is retried up to ``attempts``
    times. Raises the last error if every attempt fails (the old snapshot is then untouched)."""
    path = snapshot_path(state_dir)
    tmp = path.with_name(path.name + ".tmp")
    with _SAVE_LOCK:
        for attempt in range(attempts):
            try:
                manifest, state = capture(stack_name, region, api_key)
                with tmp.open("wb") as fh:
                    pickle.dump(manifest, fh, protocol=pickle.HIGHEST_PROTOCOL)
                    pickle.dump(state, fh, protocol=pickle.HIGHEST_PROTOCOL)
                    fh.flush()
                    os.fsync(fh.fileno())
                tmp.replace(path)
                return manifest
            except RuntimeError:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.05)
    raise AssertionError("unreachable")


@dataclass
class Snapshot:
    """A state dir's snapshot whose :class:`Manifest` matched (from :func:`load`); :meth:`state` reads the
    rest. moto tracks every model object it creates and a backend reset disposes of them all (S3 keys
    close their buffers), so the state is unpickled only after the new twin's reset (:func:`restore`)."""

    path: Path
    manifest: Manifest

    def state(self) -> dict[str, Any]:
        """The saved state (see :func:`capture`). Raises :class:`TwinStateError` if it cannot be read."""
        try:
            with self.path.open("rb") as fh:
                pickle.load(fh)  # noqa: S301 - the manifest, checked by load()
                state = pickle.load(fh)  # noqa: S301 - the state dir is the operator's own (module docstring)
        except Exception as exc:  # noqa: BLE001 - any unreadable snapshot is refused the same way
            raise TwinStateError(
                f"{self.path} cannot be read ({type(exc).__name__}: {exc}); {_reset_hint(self.path.parent)}"
            ) from exc
        if not isinstance(state, dict):
            raise TwinStateError(f"{self.path} holds no twin state; {_reset_hint(self.path.parent)}")
        return state


def _reset_hint(state_dir: Path) -> str:
    return f"`sagepipe twin reset --state-dir {state_dir}` clears it (deliberately: its objects, runs and models go)"


def load(state_dir: Path, stack_name: str, region: str) -> Snapshot | None:
    """The snapshot of ``state_dir`` with its manifest checked, or None when there is none. Raises
    :class:`TwinStateError` when it was written by another :data:`FORMAT`, moto version, stack name or
    Region, or its manifest cannot be read (nothing is deleted)."""
    path = snapshot_path(state_dir)
    if not path.exists():
        return None
    reset = _reset_hint(Path(state_dir))
    try:
        with path.open("rb") as fh:
            manifest = pickle.load(fh)  # noqa: S301 - the state dir is the operator's own (module docstring)
    except Exception as exc:  # noqa: BLE001 - any unreadable snapshot is refused the same way
        raise TwinStateError(f"{path} cannot be read ({type(exc).__name__}: {exc}); {reset}") from exc
    if not isinstance(manifest, Manifest):
        raise TwinStateError(f"{path} is not a sagepipe twin snapshot; {reset}")
    expected = (FORMAT, _moto_version(), stack_name, region)
    found = (manifest.format, manifest.moto, manifest.stack_name, manifest.region)
    if found != expected:
        raise TwinStateError(
            f"{path} was written by another twin (format {manifest.format}, moto {manifest.moto}, stack "
            f"{manifest.stack_name}, {manifest.region}); this one is format {FORMAT}, moto {_moto_version()}, "
            f"stack {stack_name}, {region}. Start it with that version or another --state-dir; {reset}"
        )
    return Snapshot(path, manifest)


def reset(state_dir: Path) -> list[str]:
    """``sagepipe twin reset``: delete the snapshot, the scratch directories and the Lambda logs of
    ``state_dir`` (the directory itself stays). Returns what was removed. Raises :class:`TwinStateError`
    while a twin that is alive runs on it (``twin.json``'s ``pid``)."""
    import json

    state_dir = Path(state_dir)
    info = state_dir / "twin.json"
    if info.exists():
        try:
            pid = int(json.loads(info.read_text())["pid"])
        except (ValueError, KeyError, TypeError):
            pid = 0
        if pid and _alive(pid):
            raise TwinStateError(f"a twin (pid {pid}) is running on {state_dir}; stop it first")
    removed = []
    for name in (SNAPSHOT, SNAPSHOT + ".tmp", "twin.json"):
        target = state_dir / name
        if target.exists():
            target.unlink()
            removed.append(name)
    for name in (*SCRATCH, "logs"):
        target = state_dir / name
        if target.exists():
            shutil.rmtree(target)
            removed.append(name + "/")
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clear_scratch(state_dir: Path) -> None:
    """Remove the scratch directories (training job dirs, model-server dirs) a previous run left: the
    data they held is in S3, and endpoints are started again from ``ModelDataUrl``."""
    for name in SCRATCH:
        shutil.rmtree(Path(state_dir) / name, ignore_errors=True)


# ----------------------------------------------------------------------------------- restore
class RestoredExecution(Execution):
    """An execution from a snapshot: it answers DescribeExecution, ListExecutions and GetExecutionHistory
    from its record; it has no worker (it ran in a previous twin), so StopExecution leaves it as it is."""

    history: list[dict[str, Any]]
    _twin_ended: bool

    def to_history_output(self) -> Any:
        """GetExecutionHistory's ``{"events": [...]}`` from the record."""
        from moto.stepfunctions.parser.api import GetExecutionHistoryOutput

        return GetExecutionHistoryOutput(events=list(self.history))  # type: ignore[arg-type]  # plain dicts

    def stop(self, stop_date: Any, error: str | None, cause: str | None) -> None:
        """An ended execution: nothing to stop."""
        return None


def _new_execution(record: dict[str, Any], state_machine: Any) -> Any:
    from moto.stepfunctions.parser.api import CloudWatchEventsExecutionDataDetails as Details
    from moto.stepfunctions.parser.api import ExecutionStatus

    ex = RestoredExecution.__new__(RestoredExecution)
    ex.name, ex.sm_type, ex.role_arn = record["name"], record["sm_type"], record["role_arn"]
    ex.exec_arn = ex.execution_arn = record["exec_arn"]
    ex.account_id, ex.region_name = record["account_id"], record["region_name"]
    ex.state_machine, ex.state_machine_arn = state_machine, state_machine.arn
    ex._cloud_watch_logging_session, ex._activity_store = None, {}
    ex.input_data, ex.execution_input = record["input_data"], record["execution_input"]
    ex.input_details = Details(included=True)
    ex.output_details = Details(included=True)
    ex.trace_header = record["trace_header"]
    ex.exec_status = ExecutionStatus(record["status"])
    ex.start_date, ex.stop_date = record["start_date"], record["stop_date"]
    ex.output, ex.error, ex.cause = record["output"], record["error"], record["cause"]
    ex.exec_worker = None
    ex.history = list(record["history"])
    for name, value in record["extras"].items():
        setattr(ex, name, value)
    ex._twin_ended = True
    return ex


def _abort(ex: Any, when: datetime, written: str) -> None:
    from moto.stepfunctions.parser.api import ExecutionStatus

    ex.exec_status, ex.stop_date = ExecutionStatus.ABORTED, when
    ex.error = ABORT_ERROR
    ex.cause = (
        f"The local twin stopped at {written} while this execution was running (state "
        f"{_current_state(ex.history) or 'unknown'}); its jobs were stopped. Run it again: `sagepipe retrain "
        f"--model {(ex.input_data or {}).get('model', '<model>')}` or upload new data."
    )
    last = ex.history[-1]["id"] if ex.history else 0
    ex.history.append(
        {
            "timestamp": when,
            "type": "ExecutionAborted",
            "id": last + 1,
            "previousEventId": last,
            "executionAbortedEventDetails": {"error": ex.error, "cause": ex.cause},
        }
    )


def _current_state(history: list[dict[str, Any]]) -> str | None:
    for event in reversed(history):
        details = event.get("stateEnteredEventDetails")
        if details:
            return str(details.get("name"))
    return None


def _restore_s3(backend: Any, saved: dict[str, Any], region: str) -> int:
    count = 0
    for name, data in saved.items():
        bucket = backend.buckets.get(name)
        if bucket is None:
            bucket = backend.create_bucket(name, region)
            bucket.versioning_status = data["versioning_status"]
        merged: dict[str, list[Any]] = {key: list(versions) for key, versions in data["keys"].items()}
        for key, versions in bucket.keys.lists():  # the new deploy's objects go on top
            merged.setdefault(key, []).extend(versions)
        versioned = bucket.versioning_status in ("Enabled", "Suspended")
        for key, versions in merged.items():
            kept = versions if versioned else versions[-1:]
            dict.__setitem__(bucket.keys, key, kept)
            count += len(kept)
        for upload_id, multipart in data["multiparts"].items():
            bucket.multiparts.setdefault(upload_id, multipart)
    return count


def _restore_logs(backend: Any, saved: dict[str, Any]) -> int:
    count = 0
    for name, old in saved.items():
        group = backend.groups.get(name)
        if group is None:
            backend.groups[name] = old
            count += sum(len(s.events) for s in old.streams.values())
            continue
        streams = dict(old.streams)
        for stream_name, stream in group.streams.items():  # written by this start's deploy
            if stream_name in streams:
                streams[stream_name].events.extend(stream.events)
            else:
                streams[stream_name] = stream
        for stream in streams.values():
            stream.log_group = group
        group.streams = streams
        count += sum(len(s.events) for s in old.streams.values())
    return count


def _restore_sqs(backend: Any, saved: dict[str, list[Any]]) -> int:
    count = 0
    for name, messages in saved.items():
        queue = backend.queues.get(name)
        if queue is None or not messages:
            continue  # a queue no longer in the template: its messages stay in the snapshot file only
        with queue._messages_lock:
            queue._messages[:0] = messages
        count += len(messages)
    return count


def _restore_sagemaker(backend: Any, saved: dict[str, Any], report: Restored, when: datetime) -> list[Any]:
    """Put the registry and resources back; returns the endpoints to start again."""
    for name, value in saved.items():
        setattr(backend, name, value)
    report.model_packages = len(backend.model_packages)
    for job in backend.training_jobs.values():
        if job.training_job_status in ("InProgress", "Stopping"):
            job.training_job_status, job.secondary_status = "Stopped", "Stopped"
            transitions = job.secondary_status_transitions or []
            if transitions:
                transitions[-1].setdefault("EndTime", when)
            transitions.append({"Status": "Stopped", "StartTime": when, "StatusMessage": "The local twin stopped."})
            job.secondary_status_transitions = transitions
            job.training_end_time = job.last_modified_time = when
            report.jobs_stopped.append(job.training_job_name)
    for job in backend.hyper_parameter_tuning_jobs.values():
        if getattr(job, "hyper_parameter_tuning_job_status", None) in ("InProgress", "Stopping"):
            job.hyper_parameter_tuning_job_status = "Stopped"
            job.hyper_parameter_tuning_end_time = job.last_modified_time = when
            report.jobs_stopped.append(job.hyper_parameter_tuning_job_name)
    restart = []
    for name, endpoint in list(backend.endpoints.items()):
        status = endpoint.endpoint_status
        if status == "Deleting":
            del backend.endpoints[name]
        elif status in ("InService", "Creating", "Updating", "SystemUpdating"):
            if status == "Updating":
                endpoint.failure_reason = (
                    "An UpdateEndpoint was interrupted by a twin stop; EndpointConfig "
                    f"{endpoint.endpoint_config_name} stays live."
                )
            restart.append(endpoint)
    return restart


def restore(snapshot: Snapshot, state: dict[str, Any], region: str, start_endpoint: Any) -> Restored:
    """Put ``state`` (``snapshot.state()``, read after the new twin's moto reset) into moto's backends
    after the fresh deploy. Running
    executions become ABORTED (their status-change events are returned via ``report.aborted`` names; the
    caller emits them once Lambda workers are up: :func:`aborted_executions`). ``start_endpoint(endpoint)``
    starts the model server of each endpoint that was up. Returns the :class:`Restored` report."""
    manifest = snapshot.manifest
    report = Restored(manifest=manifest, api_key=bool(state.get("api_key")))
    when = datetime.now(UTC)
    b = _backends(region)
    report.objects = _restore_s3(b["s3"], state["s3"], region)
    report.log_events = _restore_logs(b["logs"], state["logs"])
    report.messages = _restore_sqs(b["sqs"], state["sqs"])
    endpoints = _restore_sagemaker(b["sagemaker"], state["sagemaker"], report, when)
    machines = {sm.name: sm for sm in b["stepfunctions"].state_machines}
    for sm_name, records in state["stepfunctions"].items():
        sm = machines.get(sm_name)
        if sm is None:
            continue  # a state machine no longer in the template
        restored = [_new_execution(r, sm) for r in records]
        for ex in restored:
            if ex.exec_status.value == "RUNNING":
                _abort(ex, when, manifest.written)
                report.aborted.append(ex.name)
        sm.executions[:0] = restored
        report.executions += len(restored)
    for endpoint in endpoints:
        start_endpoint(endpoint)
        report.endpoints.append(endpoint.endpoint_name)
    return report


def stop_running(region: str) -> list[str]:
    """At ``Twin.stop()``, after :func:`save`: end every running execution's worker quietly (no status
    change event - the snapshot holds it as RUNNING and the next start reports it ABORTED), so its
    threads do not go on calling a twin that is gone (or, in one process, the next twin). Returns names."""
    stopped = []
    now = datetime.now(UTC)
    for sm in _backends(region)["stepfunctions"].state_machines:
        for ex in list(sm.executions):
            worker = getattr(ex, "exec_worker", None)
            if worker is None or ex.exec_status is None or ex.exec_status.value != "RUNNING":
                continue
            ex._twin_ended = True  # sagepipe.twin.stepfunctions.events emits nothing for it
            with contextlib.suppress(Exception):
                worker.stop(stop_date=now, cause="the local twin stopped", error=ABORT_ERROR)
            stopped.append(ex.name)
    return stopped


def aborted_executions(region: str, names: list[str]) -> list[Any]:
    """The restored executions named ``names`` (to emit their status-change events)."""
    b = _backends(region)
    wanted = set(names)
    return [e for sm in b["stepfunctions"].state_machines for e in sm.executions if e.name in wanted]


class Persister:
    """Debounced background saves: :meth:`changed` (an execution ended) asks for a save; the thread saves
    at most every ``interval_s`` seconds. :meth:`close` stops it (``Twin.stop()`` then saves itself)."""

    def __init__(self, save_fn: Any, log: Any, interval_s: float = 2.0) -> None:
        self._save, self._log, self._interval = save_fn, log, interval_s
        self._dirty = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="twin-persister", daemon=True)
        self._thread.start()

    def changed(self) -> None:
        """Ask for a save soon."""
        self._dirty.set()

    def _run(self) -> None:
        while not self._closed.is_set():
            if not self._dirty.wait(timeout=0.5):
                continue
            if self._closed.wait(self._interval):
                return
            self._dirty.clear()
            with contextlib.suppress(Exception):
                try:
                    self._save()
                except Exception as exc:
                    self._log(f"snapshot failed: {exc!r}")
                    raise

    def close(self) -> None:
        """Stop the thread (waits for a save in progress)."""
        self._closed.set()
        self._thread.join(timeout=30)
