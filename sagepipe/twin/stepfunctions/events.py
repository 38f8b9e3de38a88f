"""Step Functions → EventBridge for the twin: when an execution ends, the "Step Functions Execution Status
Change" event that AWS puts on the account's default bus (Step Functions Developer Guide, "EventBridge for
Step Functions execution status changes"): ``source`` ``aws.states``, ``resources`` the execution ARN,
``detail`` with ``executionArn``, ``stateMachineArn``, ``name``, ``status``, ``startDate``/``stopDate``
(epoch milliseconds), ``input``/``output`` (JSON text or null) with their ``*Details``, ``error``, ``cause``.

moto records the end of an execution in ``BaseExecutionWorkerCommunication.terminated`` (it sets the
status) and emits no event; the twin's patch (``sfn_status_events``, registered in :mod:`sagepipe.twin.patches`) calls
:func:`emit` right after it. The event goes through the default bus's rules like every other event, so
Lambda targets get the twin's asynchronous delivery (retries, then the target's dead-letter queue).
Only the end statuses are emitted (SUCCEEDED, FAILED, TIMED_OUT, ABORTED), not RUNNING.

StopExecution: moto drops the request's ``error``/``cause`` and only flags the program as stopped, so the
execution stays RUNNING until its current task returns (a ``waitForTaskToken`` task: until its timeout),
and only then records ``ExecutionAborted``. On AWS the execution is ABORTED at once. The patch ends it at
once too (status ABORTED, ``stopDate``, ``error``/``cause`` from the request, ``ExecutionAborted`` with them
in the history at once - :func:`sagepipe.twin.stepfunctions.redrive.close_history` -, the event emitted);
moto's worker thread winds down later, its late history goes nowhere and its ``terminated`` is ignored.
An execution's own ``TimeoutSeconds`` likewise gets ``ExecutionTimedOut`` at once. After a redrive, the
end hook of the attempt before it is ignored too.
"""

from __future__ import annotations

import inspect
import json
import threading
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from ..patches import Patch

if TYPE_CHECKING:
    from moto.events.utils import EventMessageType

_EXECUTION = "moto.stepfunctions.parser.backend.execution"
#: The moto attributes :func:`apply` replaces (``patches.Patch.sites``).
SITES = (
    f"{_EXECUTION}:BaseExecutionWorkerCommunication.terminated",
    f"{_EXECUTION}:Execution.stop",
    "moto.stepfunctions.responses:StepFunctionResponse.stop_execution",
)
_STOP_REQUESTS: dict[str, tuple[str | None, str | None]] = {}  # executionArn -> StopExecution error, cause
_STOP_LOCK = threading.Lock()


def _millis(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(float(value) * 1000)


def status_change_event(execution: Any) -> dict[str, Any]:
    """The EventBridge event for moto ``Execution`` ``execution`` in its current (end) status."""
    status = execution.exec_status.value
    program = getattr(getattr(execution, "exec_worker", None), "env", None)
    state = program.program_state() if program is not None else None
    error, cause = execution.error, execution.cause
    if status == "ABORTED" and state is not None and not (error or cause):
        error, cause = getattr(state, "error", None) or None, getattr(state, "cause", None) or None
    output = json.dumps(execution.output, separators=(",", ":")) if status == "SUCCEEDED" else None
    arn = execution.exec_arn
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": execution.account_id,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": execution.region_name,
        "resources": [arn],
        "detail": {
            "executionArn": arn,
            "stateMachineArn": execution.state_machine_arn,
            "name": execution.name,
            "status": status,
            "startDate": _millis(execution.start_date),
            "stopDate": _millis(execution.stop_date),
            "input": json.dumps(execution.input_data, separators=(",", ":")),
            "output": output,
            "inputDetails": {"included": True},
            "outputDetails": {"included": True} if output is not None else None,
            "error": error,
            "cause": cause,
        },
    }


def emit(execution: Any) -> None:
    """Put :func:`status_change_event` on the default bus of the execution's account and Region, then
    ask the twin to save its state (``TwinRuntime.state_changed``)."""
    from moto.events.models import events_backends

    from ..patches import twin

    event = status_change_event(execution)
    bus = events_backends[execution.account_id][execution.region_name].event_buses.get("default")
    for rule in list(bus.rules.values()) if bus else []:
        try:
            rule.send_to_targets(cast("EventMessageType", event), transform_input=True)
        except Exception as exc:  # noqa: BLE001 - as on AWS, the execution's end does not depend on delivery
            twin().log("events", f"status change delivery via rule {rule.name} failed: {exc!r}")
    twin().state_changed()  # the twin's snapshot (sagepipe.twin.persistence) records the ended run


def check() -> None:
    """moto's execution end hook, StopExecution path and the fields read here must still exist."""
    from moto.stepfunctions.parser.backend import execution as ex
    from moto.stepfunctions.responses import StepFunctionResponse

    from ..patches import MotoInternalsChanged, _require

    _require(ex.BaseExecutionWorkerCommunication, "terminated", ["self"])
    _require(ex.Execution, "stop", ["self", "stop_date", "error", "cause"])
    _require(StepFunctionResponse, "stop_execution", ["self"])
    source = inspect.getsource(ex.BaseExecutionWorkerCommunication)
    for field in ("exec_status", "stop_date", "error", "cause"):
        if f"self.execution.{field}" not in source:
            raise MotoInternalsChanged(f"moto's BaseExecutionWorkerCommunication no longer sets execution.{field}")
    init = inspect.getsource(ex.Execution.__init__)
    for field in ("exec_arn", "account_id", "region_name", "state_machine_arn", "input_data", "start_date", "name"):
        if f"self.{field} =" not in init:
            raise MotoInternalsChanged(f"moto's stepfunctions Execution no longer has {field}")


def apply() -> None:
    """Wrap ``terminated`` (emit the event once per execution) and StopExecution (abort at once)."""
    from moto.stepfunctions.parser.api import ExecutionStatus
    from moto.stepfunctions.parser.backend import execution as ex
    from moto.stepfunctions.responses import StepFunctionResponse

    from ..patches import _APPLIED, _install
    from . import redrive

    terminated_orig = _APPLIED.setdefault("sfn_events.terminated", ex.BaseExecutionWorkerCommunication.terminated)
    stop_orig = _APPLIED.setdefault("sfn_events.stop", ex.Execution.stop)
    respond_orig = _APPLIED.setdefault("sfn_events.respond_stop", StepFunctionResponse.stop_execution)

    def terminated(self: Any) -> None:
        if getattr(self, "_twin_stale", False) or getattr(self.execution, "_twin_ended", False):
            return  # an attempt before a redrive (redrive.py), or already ABORTED by StopExecution (below)
        terminated_orig(self)
        self.execution._twin_ended = True
        if self.execution.exec_status == ExecutionStatus.TIMED_OUT:  # the interpreter may still be in a task
            redrive.close_history(self.execution, "ExecutionTimedOut", {"executionTimedOutEventDetails": {}})
        emit(self.execution)

    def stop(self: Any, stop_date: Any, error: str | None, cause: str | None) -> None:
        with _STOP_LOCK:
            error, cause = _STOP_REQUESTS.pop(self.exec_arn, (error or None, cause or None))
        stop_orig(self, stop_date=stop_date, error=error, cause=cause)
        if self.exec_status == ExecutionStatus.RUNNING and not getattr(self, "_twin_ended", False):
            self._twin_ended = True
            self.exec_status, self.stop_date = ExecutionStatus.ABORTED, stop_date
            self.error, self.cause = error, cause
            details = {k: v for k, v in (("error", error), ("cause", cause)) if v is not None}
            redrive.close_history(self, "ExecutionAborted", {"executionAbortedEventDetails": details})
            emit(self)

    def stop_execution(self: Any) -> Any:  # StopExecution's optional error/cause (moto ignores them)
        with _STOP_LOCK:
            _STOP_REQUESTS[self._get_param("executionArn")] = (self._get_param("error"), self._get_param("cause"))
        return respond_orig(self)

    _install("sfn_status_events", ex.BaseExecutionWorkerCommunication, "terminated", terminated)
    _install("sfn_status_events", ex.Execution, "stop", stop)
    _install("sfn_status_events", StepFunctionResponse, "stop_execution", stop_execution)


PATCHES: tuple[Patch, ...] = (Patch("sfn_status_events", SITES, lambda: check(), lambda: apply()),)
