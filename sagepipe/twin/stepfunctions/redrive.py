"""Step Functions ``RedriveExecution`` for the twin (patch ``sfn_redrive``, registered in
:mod:`sagepipe.twin.patches`). moto 5.2.5 has no such action: the request fell through to an HTML 500.

What AWS does (Step Functions API Reference, RedriveExecution; Developer Guide, "Restarting state machine
executions with redrive"), and the twin with it:

- **Request** ``{"executionArn", "clientToken"?}`` → ``{"redriveDate"}``. Only a Standard workflow's
  execution that is FAILED, ABORTED or TIMED_OUT, that ended at most 14 days ago, that was redriven fewer
  than 1,000 times and whose history did not reach 25,000 events can be redriven; otherwise
  ``ExecutionNotRedrivable`` (400, JSON ``__type``) whose message carries the reason that
  DescribeExecution's ``redriveStatusReason`` gives ("Execution is SUCCEEDED and cannot be redriven.",
  "Execution is RUNNING and cannot be redriven.", "Execution redrivable period exceeded.", ...).
  A malformed ARN is ``InvalidArn``, an unknown one ``ExecutionDoesNotExist``.
- **clientToken**: a token used for a successful redrive of this execution in the last 15 minutes (the
  last 10 tokens) answers that redrive's ``redriveDate`` again and starts nothing.
- **Resume**: the execution goes back to RUNNING with the same ARN, input and definition; the history
  keeps every event and gets ``ExecutionRedriven`` (``executionRedrivenEventDetails.redriveCount``),
  then the state that was unsuccessful - the one running when the execution failed, was stopped or timed
  out - is entered again with the input it had then; the states that succeeded are not run again and their
  results stay in the state's input. The state machine's ``TimeoutSeconds`` counts afresh.
  ``$$.Execution.RedriveCount`` (0 before any redrive) and ``$$.Execution.RedriveTime`` are in the
  context object, so names built from them differ per attempt.
- **DescribeExecution** answers ``redriveCount`` (always), ``redriveDate`` (once redriven),
  ``redriveStatus`` (``REDRIVABLE`` / ``NOT_REDRIVABLE``) and ``redriveStatusReason`` (when not).
- The ended-execution event ("Step Functions Execution Status Change") is emitted again at the end of each
  attempt (:mod:`.events`).

How: every top-level state's entry records its name and input on the execution's ``Environment``
(``CommonStateField._eval_body``); the initial context gets ``RedriveCount`` 0
(``ExecutionWorker._get_evaluation_environment``). A redrive builds a new worker and environment whose
``EventManager`` continues the old history (ids and events), and runs the parsed program from the
recorded state in a thread of its own, as ``Program.eval`` does from ``StartAt``. An ABORTED or TIMED_OUT
execution's old interpreter thread may still be inside its last task (moto ends it only when the task
returns): :func:`close_history` gives it a history of its own to write to, so nothing it does later shows.

Not covered: Map and Parallel iterations (AWS redrives only the failed ones; sagepipe's state machine
has none), Distributed Map runs, ``ListExecutions``' ``redriveFilter`` and its items' ``redriveCount`` /
``redriveDate``, the redrive members of the "Execution Status Change" event.
"""

from __future__ import annotations

import copy
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from ..patches import Patch

_EXECUTION = "moto.stepfunctions.parser.backend.execution"
_WORKER = "moto.stepfunctions.parser.backend.execution_worker"
_STATE = "moto.stepfunctions.parser.asl.component.state.state"
_RESPONSES = "moto.stepfunctions.responses"
#: The moto attributes :func:`apply` replaces or adds (``patches.Patch.sites``).
SITES = (
    f"{_RESPONSES}:StepFunctionResponse.redrive_execution",
    f"{_RESPONSES}:StepFunctionResponse.describe_execution",
    f"{_EXECUTION}:Execution.to_history_output",
    f"{_WORKER}:ExecutionWorker._get_evaluation_environment",
    f"{_STATE}:CommonStateField._eval_body",
)

#: AWS's limits (API Reference, RedriveExecution; Developer Guide, redrive eligibility).
REDRIVABLE_PERIOD = timedelta(days=14)
MAX_REDRIVES = 1000
HISTORY_EVENT_LIMIT = 25_000
CLIENT_TOKENS_KEPT = 10
CLIENT_TOKEN_TTL = timedelta(minutes=15)
_REDRIVABLE_STATUSES = ("FAILED", "ABORTED", "TIMED_OUT")
_LOCK = threading.Lock()


def _status(execution: Any) -> str:
    status = getattr(execution, "exec_status", None)
    return str(getattr(status, "value", status) or "")


def _history(execution: Any) -> Any:
    """The execution's authoritative ``EventManager`` (see :func:`close_history`), or None."""
    closed = getattr(execution, "_twin_events", None)
    if closed is not None:
        return closed
    worker = getattr(execution, "exec_worker", None)
    env = getattr(worker, "env", None)
    return getattr(env, "event_manager", None)


def _event_count(execution: Any) -> int:
    manager = _history(execution)
    return len(manager._history_event_list) if manager is not None else 0


def not_redrivable_reason(execution: Any, now: datetime | None = None) -> str | None:
    """Why RedriveExecution would refuse ``execution`` now (DescribeExecution's ``redriveStatusReason``
    wording), or None when it can be redriven."""
    now = now or datetime.now(UTC)
    status = _status(execution)
    if str(getattr(getattr(execution, "sm_type", None), "value", getattr(execution, "sm_type", ""))) == "EXPRESS":
        return "Execution of an EXPRESS state machine cannot be redriven."
    if status not in _REDRIVABLE_STATUSES:
        return f"Execution is {status} and cannot be redriven."
    stop = getattr(execution, "stop_date", None)
    if isinstance(stop, datetime) and stop.tzinfo is None:
        stop = stop.replace(tzinfo=UTC)  # StopExecution's (moto's utcnow(): naive UTC)
    if isinstance(stop, datetime) and now - stop > REDRIVABLE_PERIOD:
        return "Execution redrivable period exceeded."
    if getattr(execution, "_twin_redrive_count", 0) >= MAX_REDRIVES:
        return f"Execution redrive count limit ({MAX_REDRIVES}) reached."
    if getattr(execution, "exec_worker", None) is None and getattr(execution, "history", None) is not None:
        # restored from the state dir (sagepipe.twin.persistence): its interpreter state is gone
        return "Execution ran in an earlier twin (restored from its state dir); the twin cannot redrive it."
    manager = _history(execution)
    if (
        manager is None
        or getattr(manager, "_twin_history_full", False)
        or _event_count(execution) >= HISTORY_EVENT_LIMIT
    ):
        return "Execution history event limit exceeded."
    if getattr(getattr(getattr(execution, "exec_worker", None), "env", None), "_twin_entered", None) is None:
        return "Execution has no unsuccessful state to redrive."
    return None


def redrive_fields(execution: Any) -> dict[str, Any]:
    """DescribeExecution's redrive members for ``execution``: ``redriveCount``, ``redriveStatus``,
    ``redriveDate`` (once redriven), ``redriveStatusReason`` (when NOT_REDRIVABLE)."""
    out: dict[str, Any] = {"redriveCount": getattr(execution, "_twin_redrive_count", 0)}
    if getattr(execution, "_twin_redrive_date", None) is not None:
        out["redriveDate"] = execution._twin_redrive_date
    reason = not_redrivable_reason(execution)
    out["redriveStatus"] = "NOT_REDRIVABLE" if reason else "REDRIVABLE"
    if reason:
        out["redriveStatusReason"] = reason
    return out


def _continued(manager: Any) -> Any:
    """A new ``EventManager`` that holds ``manager``'s events and numbers on from them."""
    from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager

    new = EventManager(cloud_watch_logging_session=manager._cloud_watch_logging_session)
    new._history_event_list.extend(manager._history_event_list)
    new._event_id_gen._next_id = manager._event_id_gen._next_id
    return new


def close_history(execution: Any, event_type: str, details: dict[str, Any]) -> None:
    """Record the end event ``event_type`` (``ExecutionAborted`` / ``ExecutionTimedOut``) of an execution
    whose interpreter thread may still be inside a task, and freeze its history there: the thread writes
    on into a history of its own that nobody reads (on AWS nothing happens after the end event)."""
    from moto.stepfunctions.parser.api import HistoryEventType
    from moto.stepfunctions.parser.asl.eval.event.event_manager import EventHistoryContext

    env = getattr(getattr(execution, "exec_worker", None), "env", None)
    if env is None or getattr(execution, "_twin_events", None) is not None:
        return
    manager = env.event_manager
    last = manager._history_event_list[-1]["id"] if manager._history_event_list else 0
    manager.add_event(
        context=EventHistoryContext(previous_event_id=last),
        event_type=HistoryEventType(event_type),
        event_details=details,
    )
    execution._twin_events = manager
    env.event_manager = _continued(manager)  # where the old thread's late events go


def redrive(execution: Any, client_token: str | None, now: datetime | None = None) -> datetime:
    """Redrive ``execution`` (a moto parser ``Execution``) and return the redrive's date.

    Raises:
        moto.core.exceptions.JsonRESTError: ``ExecutionNotRedrivable`` with the reason.
    """
    from moto.core.exceptions import JsonRESTError

    now = now or datetime.now(UTC)
    with _LOCK:
        tokens: list[tuple[str, datetime, datetime]] = getattr(execution, "_twin_client_tokens", [])
        tokens = [t for t in tokens if now - t[1] <= CLIENT_TOKEN_TTL][-CLIENT_TOKENS_KEPT:]
        execution._twin_client_tokens = tokens
        if client_token:
            for token, _used, date in tokens:
                if token == client_token:
                    return date
        reason = not_redrivable_reason(execution, now)
        if reason:
            raise JsonRESTError(
                "ExecutionNotRedrivable", f"Execution '{execution.exec_arn}' cannot be redriven: {reason}"
            )
        _start_redrive(execution, now)
        if client_token:
            tokens.append((client_token, now, now))
        return now


def _start_redrive(execution: Any, now: datetime) -> None:
    from moto.stepfunctions.parser.api import ExecutionStatus, HistoryEventType
    from moto.stepfunctions.parser.asl.eval.event.event_manager import EventHistoryContext
    from moto.stepfunctions.parser.utils import TMP_THREADS

    old_worker = execution.exec_worker
    old_env = old_worker.env
    state_name, state_input = old_env._twin_entered
    manager = getattr(execution, "_twin_events", None) or old_env.event_manager
    history = _continued(manager)
    old_env.event_manager = _continued(manager)  # anything the old thread still records goes nowhere visible
    old_worker._execution_communication._twin_stale = True  # its terminated() must not end the new attempt

    count = getattr(execution, "_twin_redrive_count", 0) + 1
    worker = execution._get_start_execution_worker()
    env = worker._get_evaluation_environment()
    env.event_manager = history
    env.variable_store = old_env.variable_store
    env.states.context_object.context_object_data["Execution"]["RedriveCount"] = count
    env.states.context_object.context_object_data["Execution"]["RedriveTime"] = now.isoformat()
    env.states.reset(copy.deepcopy(state_input))
    env.next_state_name = state_name
    worker.env = env

    execution._twin_redrive_count, execution._twin_redrive_date = count, now
    execution._twin_events = None
    execution._twin_ended = False  # :mod:`.events` emits the status change of this attempt's end
    execution.exec_worker = worker
    execution.exec_status = ExecutionStatus.RUNNING
    execution.stop_date = execution.output = execution.error = execution.cause = None

    last = history._history_event_list[-1]["id"] if history._history_event_list else 0
    history.add_event(
        context=EventHistoryContext(previous_event_id=last),
        event_type=HistoryEventType.ExecutionRedriven,
        event_details={"executionRedrivenEventDetails": {"redriveCount": count}},
        update_source_event_id=False,
    )
    env.event_history_context.source_event_id = history._event_id_gen._next_id - 1
    env.event_history_context.last_published_event_id = env.event_history_context.source_event_id
    program = worker._get_evaluation_entrypoint()
    thread = threading.Thread(target=_run, args=(worker, program, env), daemon=True, name="sfn-redrive")
    TMP_THREADS.append(thread)
    thread.start()


def _run(worker: Any, program: Any, env: Any) -> None:
    """``Program.eval`` from ``env.next_state_name`` (not ``StartAt``), then the worker's end hook."""
    from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent
    from moto.stepfunctions.parser.utils import TMP_THREADS

    timeout = program.timeout_seconds.timeout_seconds if program.timeout_seconds else None
    inner = threading.Thread(target=EvalComponent.eval, args=(program, env), daemon=True)
    TMP_THREADS.append(inner)
    inner.start()
    inner.join(timeout=timeout)
    if inner.is_alive():
        env.set_timed_out()
    worker._execution_communication.terminated()


def check() -> None:
    """The moto internals the redrive builds on must still be there. Raises MotoInternalsChanged."""
    import inspect

    from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent
    from moto.stepfunctions.parser.asl.component.program.program import Program
    from moto.stepfunctions.parser.asl.component.state.state import CommonStateField
    from moto.stepfunctions.parser.asl.eval.event.event_manager import EventIdGenerator, EventManager
    from moto.stepfunctions.parser.asl.eval.states import States
    from moto.stepfunctions.parser.backend import execution as ex
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker
    from moto.stepfunctions.responses import StepFunctionResponse

    from ..patches import _APPLIED, MotoInternalsChanged, _require

    if hasattr(StepFunctionResponse, "redrive_execution") and "sfn_redrive.describe" not in _APPLIED:
        raise MotoInternalsChanged("moto now implements RedriveExecution: the twin's sfn_redrive patch may go")
    _require(StepFunctionResponse, "describe_execution", ["self"])
    _require(ex.Execution, "to_history_output", ["self"])
    _require(ex.Execution, "_get_start_execution_worker", ["self"])
    _require(ExecutionWorker, "_get_evaluation_environment", ["self"])
    _require(ExecutionWorker, "_get_evaluation_entrypoint", ["self"])
    _require(CommonStateField, "_eval_body", ["self", "env"])
    _require(EvalComponent, "eval", ["self", "env"])
    _require(States, "reset", ["self", "input_value"])
    if "_execution_communication" not in inspect.getsource(ExecutionWorker.__init__):
        raise MotoInternalsChanged("moto's ExecutionWorker no longer keeps _execution_communication")
    manager = inspect.getsource(EventManager.__init__)
    for field in ("_history_event_list", "_event_id_gen", "_cloud_watch_logging_session"):
        if f"self.{field}" not in manager:
            raise MotoInternalsChanged(f"moto's EventManager no longer has {field}")
    if "self._next_id" not in inspect.getsource(EventIdGenerator):
        raise MotoInternalsChanged("moto's EventIdGenerator no longer counts in _next_id")
    body = inspect.getsource(Program.eval)
    if "env.next_state_name = self.start_at.start_at_name" not in body or "env.set_timed_out()" not in body:
        raise MotoInternalsChanged("moto's Program.eval no longer starts at StartAt with a timed join")
    env = inspect.getsource(_APPLIED.get("sfn_redrive.env", ExecutionWorker._get_evaluation_environment))
    if "Execution=ExecutionData(" not in env:
        raise MotoInternalsChanged("moto's ExecutionWorker no longer builds the context's Execution data")


def apply() -> None:
    """Add RedriveExecution; DescribeExecution's redrive members; record each state's entry; RedriveCount 0."""
    from moto.core.responses import ActionResult
    from moto.stepfunctions.parser.asl.component.state.state import CommonStateField
    from moto.stepfunctions.parser.backend import execution as ex
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker
    from moto.stepfunctions.responses import StepFunctionResponse

    from ..patches import _APPLIED, _install

    describe_orig = _APPLIED.setdefault("sfn_redrive.describe", StepFunctionResponse.describe_execution)
    history_orig = _APPLIED.setdefault("sfn_redrive.history", ex.Execution.to_history_output)
    env_orig = _APPLIED.setdefault("sfn_redrive.env", ExecutionWorker._get_evaluation_environment)
    body_orig = _APPLIED.setdefault("sfn_redrive.body", CommonStateField._eval_body)

    def redrive_execution(self: Any) -> Any:
        execution = self.stepfunction_backend.describe_execution(self._get_param("executionArn"))
        return ActionResult({"redriveDate": redrive(execution, self._get_param("clientToken"))})

    def describe_execution(self: Any) -> Any:
        result = describe_orig(self)
        execution = self.stepfunction_backend.describe_execution(self._get_param("executionArn"))
        result.result.update(redrive_fields(execution))
        return result

    def to_history_output(self: Any) -> Any:
        from moto.stepfunctions.parser.api import GetExecutionHistoryOutput

        closed = getattr(self, "_twin_events", None)
        if closed is not None:
            return GetExecutionHistoryOutput(events=closed.get_event_history())
        return history_orig(self)

    def _get_evaluation_environment(self: Any) -> Any:
        env = env_orig(self)
        env.states.context_object.context_object_data["Execution"].setdefault("RedriveCount", 0)
        return env

    def _eval_body(self: Any, env: Any) -> None:
        if not env.is_frame():
            env._twin_entered = (self.name, copy.deepcopy(env.states.get_input()))
        body_orig(self, env)

    _install("sfn_redrive", StepFunctionResponse, "redrive_execution", redrive_execution)
    _install("sfn_redrive", StepFunctionResponse, "describe_execution", describe_execution)
    _install("sfn_redrive", ex.Execution, "to_history_output", to_history_output)
    _install("sfn_redrive", ExecutionWorker, "_get_evaluation_environment", _get_evaluation_environment)
    _install("sfn_redrive", CommonStateField, "_eval_body", _eval_body)


PATCHES: tuple[Patch, ...] = (Patch("sfn_redrive", SITES, lambda: check(), lambda: apply()),)
