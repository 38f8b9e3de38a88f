"""EventBridge rule targets, delivered by the twin.

The ``events_targets`` patch (registered in :mod:`sagepipe.twin.patches`) delivers each target of a
matching rule on its own, so one failing target does not stop the others: Lambda and Step Functions
targets go to the running twin's ``deliver`` (:class:`Delivery`), the others to moto's own delivery (the
event whole, as EventBridge sends it, unless the target has an ``InputTransformer``: moto rebuilt every
event from a default template without ``account``).

:class:`Delivery` delivers as AWS does: EventBridge → Step Functions is a StartExecution; EventBridge →
Lambda an asynchronous Invoke, with the target's dead-letter queue for delivery failures and Lambda's
retries and ``OnFailure`` destination for function errors.
"""

from __future__ import annotations

import copy
import json
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from .. import iam
from ..awslambda.api import MAX_ASYNC_REQUEST
from ..awslambda.runtime import FunctionSpec, WorkerPool
from ..patches import _APPLIED, Patch, _install, _require, twin

if TYPE_CHECKING:
    from moto.events.utils import EventMessageType


def _check_events() -> None:
    from moto.events.models import Rule

    _require(Rule, "send_to_targets", ["self", "original_event", "transform_input"])
    from moto.events.models import EventPattern

    _require(EventPattern, "load", ["raw_pattern"])
    _require(EventPattern, "matches_event", ["self", "event"])
    _require(EventPattern, "get_pattern", ["self"])


def _apply_events() -> None:
    from moto.events.models import Rule
    from moto.events.utils import EventTemplateParser

    original = _APPLIED.setdefault("events.original", Rule.send_to_targets)

    def send_to_targets(self: Any, original_event: EventMessageType, transform_input: bool = True) -> None:
        # a rule with only a ScheduleExpression fires on its schedule (scheduler.py), never on bus events;
        # moto's EventPattern of such a rule is empty and matches every event
        if getattr(self, "scheduled_expression", None) and not self.event_pattern.get_pattern():
            return
        if not self.event_pattern.matches_event(original_event):
            return
        if getattr(self, "state", "ENABLED") != "ENABLED":
            return
        for target in list(self.targets):
            service = target["Arn"].split(":")[2]
            try:
                event: Any = original_event
                if transform_input and (
                    target.get("Input") or target.get("InputPath") or target.get("InputTransformer")
                ):
                    if target.get("Input"):
                        event = json.loads(target["Input"])
                    elif target.get("InputTransformer"):
                        tr = target["InputTransformer"]
                        event = EventTemplateParser.parse(
                            input_template=tr.get("InputTemplate"),
                            input_paths_map=tr.get("InputPathsMap", {}),
                            event=original_event,
                        )
                if service in {"lambda", "states"}:
                    twin().deliver(self, target, event)
                else:
                    only = copy.copy(self)
                    # CloudFormation's LogGroup Arn ends in ":*"; EventBridge accepts it, moto does not
                    only.targets = [{**target, "Arn": target["Arn"].removesuffix(":*")}]
                    # without an InputTransformer EventBridge sends the event as it is; moto's "transform"
                    # then rebuilt it from a default template that drops ``account``
                    transform = transform_input and bool(target.get("InputTransformer"))
                    sent = copy.deepcopy(original_event)
                    iso = sent.get("time")
                    if service == "logs" and isinstance(iso, str):
                        # moto's log-group target formats an epoch ``time`` as ISO 8601 and fails on the ISO
                        # string the twin's S3 and Step Functions events already carry
                        sent["time"] = datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
                    original(only, sent, transform)
            except Exception as exc:  # noqa: BLE001 - one failing target must not stop the others
                twin().log("events", f"delivery of rule {self.name} to {target['Arn']} failed: {exc!r}")

    _install("events_targets", Rule, "send_to_targets", send_to_targets)


PATCHES: tuple[Patch, ...] = (
    Patch("events_targets", ("moto.events.models:Rule.send_to_targets",), _check_events, _apply_events),
)


ASYNC_INVOKE_RETRIES = 2  # Lambda asynchronous invocation retries (AWS default)
#: Lambda's asynchronous Invoke quota, the one :mod:`sagepipe.twin.awslambda.api` applies (1 MB since 2025)
MAX_ASYNC_PAYLOAD = MAX_ASYNC_REQUEST


class Delivery:
    """The twin's delivery of an EventBridge rule's Lambda and Step Functions targets (what the
    ``events_targets`` patch hands over, through the running twin's ``deliver``).

    ``client(service, role_arn)`` is a boto3 client on the twin (unrestricted for ``None``, else signed
    as the role); ``pool`` runs the functions; ``functions()`` is the deployed template's functions by
    name; ``log(prefix, line)`` keeps a twin log line; ``spawn(target, name)`` runs ``target`` in a
    thread the twin owns; ``stop`` is set when the twin stops (pending retries end). Every delivered
    event is kept in ``events_log`` (``{"rule", "target", "event"}``).
    """

    def __init__(
        self,
        client: Callable[..., Any],
        pool: WorkerPool,
        functions: Callable[[], Mapping[str, FunctionSpec]],
        log: Callable[[str, str], None],
        spawn: Callable[[Callable[[], None], str], None],
        stop: threading.Event,
        events_log: list[dict[str, Any]],
    ) -> None:
        self.client = client
        self.pool = pool
        self._functions = functions
        self.log = log
        self._spawn = spawn
        self._stop = stop
        self.events_log = events_log

    @property
    def functions(self) -> Mapping[str, FunctionSpec]:
        """The deployed template's functions by name."""
        return self._functions()

    def deliver(self, rule: Any, target: dict[str, Any], event: dict[str, Any]) -> None:
        """Deliver ``event`` from ``rule`` to a Lambda or Step Functions target, asynchronously as AWS does.

        EventBridge → Lambda is an asynchronous Invoke. A *delivery* failure (no such function, an event
        over Lambda's 256 KB asynchronous payload limit) goes to the target's DeadLetterConfig queue. Once
        Lambda has accepted the event, a *function error* is Lambda's: 1 + ``MaximumRetryAttempts``
        (default 2) attempts, then the function's EventInvokeConfig ``OnFailure`` destination receives an
        invocation record (Lambda docs, "Asynchronous invocation" / "Capturing records of asynchronous
        invocations"); without one the event is dropped (logged), as on AWS.
        """
        self.events_log.append({"rule": rule.name, "target": target["Arn"], "event": event})

        def run() -> None:
            arn = target["Arn"]
            if ":states:" in arn:
                try:
                    self.client("stepfunctions").start_execution(stateMachineArn=arn, input=json.dumps(event))
                except Exception as exc:  # noqa: BLE001
                    self._dead_letter(target, event, repr(exc))
                return
            name = arn.split(":function:")[1].split(":")[0]
            payload = json.dumps(event).encode()
            if name not in self.functions:
                self._dead_letter(target, event, f"ResourceNotFoundException: Function not found: {arn}")
                return
            if len(payload) > MAX_ASYNC_PAYLOAD:
                self._dead_letter(
                    target,
                    event,
                    f"RequestEntityTooLargeException: Request must be smaller than {MAX_ASYNC_PAYLOAD} bytes "
                    "for the InvokeFunction operation",
                )
                return
            self._invoke_async(name, arn, event, payload)

        self._spawn(run, f"deliver-{rule.name}")

    def invoke_event(self, name: str, payload: bytes) -> bool:
        """Invoke with ``InvocationType: Event`` (the Lambda API, not an EventBridge target): accepted (202)
        and run in the background with Lambda's asynchronous semantics (:meth:`_invoke_async`: retries,
        then the OnFailure destination). False when ``name`` is not a deployed function (moto answers)."""
        if name.startswith("arn:"):
            name = name.split(":function:", 1)[-1]  # a qualified ARN (…:function:f:alias) stays unknown
        if name not in self.functions:
            return False
        arn = self.client("lambda").get_function(FunctionName=name)["Configuration"]["FunctionArn"]
        try:
            event: Any = json.loads(payload) if payload else {}
        except ValueError:
            event = payload.decode("utf-8", "replace")
        self._spawn(lambda: self._invoke_async(name, arn, event, payload), f"invoke-event-{name}")
        return True

    def _invoke_async(self, name: str, arn: str, event: Any, payload: bytes) -> None:
        """Lambda's asynchronous invocation of an accepted event: retries, then the on-failure destination."""
        config = self._event_invoke_config(name)
        retries = int(config.get("MaximumRetryAttempts", ASYNC_INVOKE_RETRIES))
        last: dict[str, Any] = {}
        attempts = 0
        for attempt in range(1 + retries):
            if attempt and self._stop.wait(min(2**attempt, 4)):  # AWS: about 1 min, then 2 min
                return
            attempts += 1
            try:
                result = self.pool.invoke(self.functions[name], payload)
            except Exception as exc:  # noqa: BLE001 - a crashed worker is a function error to Lambda
                last = {"errorType": type(exc).__name__, "errorMessage": str(exc)}
                continue
            if not result.errored:
                return
            try:
                last = json.loads(result.payload)
            except ValueError:
                last = {"errorMessage": result.payload.decode("utf-8", "replace")}
        on_failure = ((config.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        self.log("lambda", f"{name}: asynchronous event failed {attempts} times: {str(last)[:300]}")
        if not on_failure:
            self.log("lambda", f"{name}: no on-failure destination; the event is dropped (as on AWS)")
            return
        record = {
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": f"{arn}:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": attempts,
            },
            "requestPayload": event,
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": last,
        }
        if ":sqs:" not in on_failure:
            self.log("lambda", f"{name}: on-failure destination {on_failure} is not emulated (SQS only)")
            return
        url = self.client("sqs").get_queue_url(QueueName=on_failure.rsplit(":", 1)[1])["QueueUrl"]
        # Lambda sends the record with the function's execution role (Lambda Developer Guide, "Adding a
        # destination": the role needs sqs:SendMessage); denied, the record is lost, as on AWS
        role = iam.role_for_access_key(self.functions[name].environment.get("AWS_ACCESS_KEY_ID"))
        try:
            self.client("sqs", role).send_message(QueueUrl=url, MessageBody=json.dumps(record))
        except ClientError as exc:
            self.log("lambda", f"{name}: the on-failure record could not be sent to {on_failure}: {exc}")

    def _event_invoke_config(self, name: str) -> dict[str, Any]:
        """GetFunctionEventInvokeConfig of ``name`` ({} when none is set: Lambda's defaults apply)."""
        try:
            config: dict[str, Any] = self.client("lambda").get_function_event_invoke_config(FunctionName=name)
        except Exception:  # noqa: BLE001 - ResourceNotFoundException: no config, the defaults
            return {}
        return config

    def _dead_letter(self, target: dict[str, Any], event: dict[str, Any], error: str) -> None:
        self.log("events", f"delivery to {target['Arn']} failed: {error[:300]}")
        dlq = (target.get("DeadLetterConfig") or {}).get("Arn")
        if dlq:
            sqs = self.client("sqs")
            url = sqs.get_queue_url(QueueName=dlq.rsplit(":", 1)[1])["QueueUrl"]
            sqs.send_message(
                QueueUrl=url,
                MessageBody=json.dumps(event),
                MessageAttributes={
                    "ERROR_MESSAGE": {"DataType": "String", "StringValue": error[:256]},
                    "RULE_ARN": {"DataType": "String", "StringValue": target["Arn"]},
                },
            )
