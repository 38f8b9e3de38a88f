"""Step Functions quotas and terminal errors as AWS applies them, where moto's interpreter does not.

- **Terminal errors** (patch ``sfn_terminal_errors``). ``States.ALL`` "can't catch the
  ``States.DataLimitExceeded`` terminal error or ``Runtime`` error types" (Step Functions Developer Guide,
  "Handling errors in Step Functions workflows", error names). moto's ``ErrorEqualsDecl`` matches every
  error on ``States.ALL``, so a Catch ``["States.ALL"]`` ran NotifyFailed where AWS ends the execution
  FAILED at once. The patch makes ``States.ALL`` (in a Retry or a Catch) not match those two error types;
  an ``ErrorEquals`` that names one of them explicitly keeps moto's matching.
- **Execution history quota** (patch ``sfn_history_quota``). "Maximum execution history size: 25,000
  events" (Step Functions quotas). AWS fails the execution when its history is full: event 25,000 is
  ``ExecutionFailed`` with error ``States.Runtime`` and cause "The execution reached the maximum number
  of history events (25000)."; event 24,999 is the last one the states produced; no Retry or Catch runs.
  moto has no such quota (a polling loop runs until the execution's ``TimeoutSeconds``). The patch counts
  in moto's ``EventManager.add_event``: when the next event would be number 25,000 and is not the
  execution's own end, it raises :class:`HistoryQuotaExceeded` - a ``BaseException``, so no state's
  ``except Exception`` (Retry, Catch) sees it - and ``Program._eval_body`` ends the execution with AWS's
  error and cause in ``DescribeExecution`` and in the history.

- **History pages** (patch ``sfn_history_pages``). ``GetExecutionHistory`` returns at most ``maxResults``
  events per call (0 or absent: 100; at most 1000), oldest first unless ``reverseOrder``, with a
  ``nextToken`` while more remain, and without ``input``/``output`` when ``includeExecutionData`` is false
  (Step Functions API Reference, GetExecutionHistory). moto answered every event in one page, oldest
  first, whatever the request said: a caller that forgot to paginate, or that relied on
  ``reverseOrder``, passed on the twin. A token that is not one the twin issued is ``InvalidToken``.

Not covered: the quota inside ``Map``/``Parallel`` iterations that moto runs in their own threads
(sagepipe's state machine has none); the 256 KB payload quota is moto's own (``quotas.py``: task results,
state output), which this module leaves as it is, except that ``States.ALL`` no longer catches it.
"""

from __future__ import annotations

from typing import Any, cast

from ..patches import Patch

#: Step Functions' execution history quota (events per execution, hard limit).
HISTORY_EVENT_QUOTA = 25_000
HISTORY_QUOTA_CAUSE = f"The execution reached the maximum number of history events ({HISTORY_EVENT_QUOTA})."

_ERROR_EQUALS = "moto.stepfunctions.parser.asl.component.common.error_name.error_equals_decl"
_EVENTS = "moto.stepfunctions.parser.asl.eval.event.event_manager"
_PROGRAM = "moto.stepfunctions.parser.asl.component.program.program"
#: The moto attributes each patch replaces (``patches.Patch.sites``).
TERMINAL_SITES = (f"{_ERROR_EQUALS}:ErrorEqualsDecl._eval_body",)
HISTORY_SITES = (f"{_EVENTS}:EventManager.add_event", f"{_PROGRAM}:Program._eval_body")
HISTORY_SITES_PAGES = ("moto.stepfunctions.responses:StepFunctionResponse.get_execution_history",)
#: GetExecutionHistory's page size when ``maxResults`` is 0 or absent (API Reference).
HISTORY_DEFAULT_PAGE = 100
#: History events that end an execution: always recorded, even as event number 25,000.
_END_EVENTS = ("ExecutionFailed", "ExecutionSucceeded", "ExecutionAborted", "ExecutionTimedOut")


class HistoryQuotaExceeded(BaseException):  # noqa: N818 - named after the condition, like moto's exceptions
    """The execution's history is full (:data:`HISTORY_EVENT_QUOTA`); unwinds the interpreter past every
    Retry and Catch (they handle ``Exception``) to :func:`apply`'s ``Program._eval_body``."""


def _terminal_types() -> tuple[Any, ...]:
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )

    return (StatesErrorNameType.StatesStatesDataLimitExceeded, StatesErrorNameType.StatesRuntime)


def check_terminal() -> None:
    """moto's ``ErrorEqualsDecl`` still pops the error name and pushes the match (a bool), knows
    ``States.ALL`` as ``_STATE_ALL_ERROR`` and names the two terminal error types. Raises MotoInternalsChanged."""
    import inspect

    from moto.stepfunctions.parser.asl.component.common.error_name import error_equals_decl as mod

    from ..patches import _APPLIED, MotoInternalsChanged, _require

    _require(mod.ErrorEqualsDecl, "_eval_body", ["self", "env"])
    _require(mod.ErrorEqualsDecl, "_STATE_ALL_ERROR")
    _terminal_types()
    source = inspect.getsource(_APPLIED.get("sfn_terminal_errors", mod.ErrorEqualsDecl._eval_body))
    if "env.stack.pop()" not in source or "env.stack.append(res)" not in source:
        raise MotoInternalsChanged("moto's ErrorEqualsDecl._eval_body no longer pops the error and pushes a bool")


def apply_terminal() -> None:
    """``States.ALL`` no longer matches ``States.DataLimitExceeded`` or ``States.Runtime``."""
    from moto.stepfunctions.parser.asl.component.common.error_name.error_equals_decl import ErrorEqualsDecl
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName

    from ..patches import _APPLIED, _install

    original = _APPLIED.setdefault("sfn_terminal_errors", ErrorEqualsDecl._eval_body)
    terminal = _terminal_types()

    def _eval_body(self: Any, env: Any) -> None:
        error = env.stack[-1] if env.stack else None
        if (
            isinstance(error, StatesErrorName)
            and error.typ in terminal
            and ErrorEqualsDecl._STATE_ALL_ERROR in self.error_names
        ):
            env.stack.pop()
            env.stack.append(False)
            return
        original(self, env)

    _install("sfn_terminal_errors", ErrorEqualsDecl, "_eval_body", _eval_body)


def check_history() -> None:
    """moto's ``EventManager`` still numbers events with ``_event_id_gen`` and ``Program._eval_body``
    still records the end event itself. Raises MotoInternalsChanged."""
    import inspect

    from moto.stepfunctions.parser.asl.component.program import program
    from moto.stepfunctions.parser.asl.eval.event import event_manager

    from ..patches import _APPLIED, MotoInternalsChanged, _require

    _require(
        event_manager.EventManager,
        "add_event",
        ["self", "context", "event_type", "event_details", "timestamp", "update_source_event_id"],
    )
    _require(event_manager.EventIdGenerator, "get", ["self"])
    if "self._next_id" not in inspect.getsource(event_manager.EventIdGenerator):
        raise MotoInternalsChanged("moto's EventIdGenerator no longer counts in _next_id")
    if "self._event_id_gen" not in inspect.getsource(event_manager.EventManager.__init__):
        raise MotoInternalsChanged("moto's EventManager no longer has _event_id_gen")
    _require(program.Program, "_eval_body", ["self", "env"])
    body = inspect.getsource(_APPLIED.get("sfn_history_quota.eval_body", program.Program._eval_body))
    for needle in ("env.set_error", "HistoryEventType.ExecutionFailed", "env.is_frame()"):
        if needle not in body:
            raise MotoInternalsChanged(f"moto's Program._eval_body no longer has {needle}")


def apply_history() -> None:
    """Count history events; at :data:`HISTORY_EVENT_QUOTA` end the execution as AWS does."""
    from moto.stepfunctions.parser.api import ExecutionFailedEventDetails, HistoryEventType
    from moto.stepfunctions.parser.asl.component.program.program import Program
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
    from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager

    from ..patches import _APPLIED, _install

    add_original = _APPLIED.setdefault("sfn_history_quota.add_event", EventManager.add_event)
    body_original = _APPLIED.setdefault("sfn_history_quota.eval_body", Program._eval_body)
    end_events = {HistoryEventType(name) for name in _END_EVENTS}

    def add_event(
        self: Any,
        context: Any,
        event_type: Any,
        event_details: Any = None,
        timestamp: Any = None,
        update_source_event_id: bool = True,
    ) -> int:
        if event_type not in end_events:
            if getattr(self, "_twin_history_full", False):
                return int(self._event_id_gen._next_id) - 1  # the execution is ending: nothing more is recorded
            if self._event_id_gen._next_id >= HISTORY_EVENT_QUOTA:
                self._twin_history_full = True
                raise HistoryQuotaExceeded(HISTORY_QUOTA_CAUSE)
        return int(add_original(self, context, event_type, event_details, timestamp, update_source_event_id))

    def _eval_body(self: Any, env: Any) -> None:
        try:
            body_original(self, env)
        except HistoryQuotaExceeded:
            if env.is_frame():
                raise
            details = ExecutionFailedEventDetails(error="States.Runtime", cause=HISTORY_QUOTA_CAUSE)
            env.set_error(error=details)
            env.event_manager.add_event(
                context=env.event_history_context,
                event_type=HistoryEventType.ExecutionFailed,
                event_details=cast(
                    "EventDetails", {"executionFailedEventDetails": details}
                ),  # moto: total=False in use
            )

    _install("sfn_history_quota", EventManager, "add_event", add_event)
    _install("sfn_history_quota", Program, "_eval_body", _eval_body)


def check_pages() -> None:
    """moto's ``StepFunctionResponse.get_execution_history`` and the backend call it makes still exist.
    Raises MotoInternalsChanged."""
    from moto.stepfunctions.responses import StepFunctionResponse

    from ..patches import _require

    _require(StepFunctionResponse, "get_execution_history", ["self"])
    _require(StepFunctionResponse, "_get_param", ["self", "param_name"])


def _token(position: int, arn: str, reverse: bool) -> str:
    import base64
    import json

    return base64.urlsafe_b64encode(json.dumps([position, arn, reverse]).encode()).decode()


def _position(token: str, arn: str, reverse: bool) -> int | None:
    import base64
    import binascii
    import json

    try:
        position, token_arn, token_reverse = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, binascii.Error, TypeError):
        return None
    if token_arn != arn or token_reverse != reverse or not isinstance(position, int) or position < 0:
        return None
    return position


def _without_data(event: dict[str, Any]) -> dict[str, Any]:
    out = dict(event)
    for key, value in event.items():
        if key.endswith("EventDetails") and isinstance(value, dict):
            out[key] = {k: v for k, v in value.items() if k not in ("input", "output", "inputDetails", "outputDetails")}
    return out


def apply_pages() -> None:
    """GetExecutionHistory pages as AWS serves them (``maxResults``, ``reverseOrder``, ``nextToken``,
    ``includeExecutionData``)."""
    from moto.core.exceptions import JsonRESTError
    from moto.core.responses import ActionResult
    from moto.stepfunctions.responses import StepFunctionResponse

    from ..patches import _install

    def get_execution_history(self: Any) -> Any:
        arn = self._get_param("executionArn")
        size = int(self._get_param("maxResults") or 0) or HISTORY_DEFAULT_PAGE
        reverse = bool(self._get_param("reverseOrder"))
        include = self._get_param("includeExecutionData")
        token = self._get_param("nextToken")
        events = list(self.stepfunction_backend.get_execution_history(arn)["events"])
        if reverse:
            events.reverse()
        start = 0
        if token is not None:
            found = _position(token, arn, reverse)
            if found is None:
                raise JsonRESTError("InvalidToken", f"Invalid Token: '{token}'")
            start = found
        page = events[start : start + size]
        if include is False:
            page = [_without_data(e) for e in page]
        out: dict[str, Any] = {"events": page}
        if start + size < len(events):
            out["nextToken"] = _token(start + size, arn, reverse)
        return ActionResult(out)

    _install("sfn_history_pages", StepFunctionResponse, "get_execution_history", get_execution_history)


PATCHES: tuple[Patch, ...] = (
    Patch("sfn_terminal_errors", TERMINAL_SITES, check_terminal, apply_terminal),
    Patch("sfn_history_quota", HISTORY_SITES, check_history, apply_history),
    Patch("sfn_history_pages", HISTORY_SITES_PAGES, check_pages, apply_pages),
)
