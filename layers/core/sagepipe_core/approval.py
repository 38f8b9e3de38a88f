"""Manual approval: the execution waits on a Step Functions task token (``lambda:invoke.waitForTaskToken``).

It waits until someone approves or rejects the model package, or the task's timeout rejects it.

The token is kept at ``s3://<artifacts>/approvals/<model>/<execution>.json`` (never in an event or a
log). ``sagepipe approve|reject <execution>`` reads it, refuses a second decision, calls SendTaskSuccess
with ``{"approved": bool, "reason", "by"}`` and records the decision next to the token. The state
machine then sets the model package's approval status (MarkApproved / MarkRejected), so the registry
always follows what the execution did. Follows the Step Functions docs "Wait for a Callback with Task
Token" (SendTaskSuccess).
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from .aws import error_code, error_kind
from .errors import SagepipeError
from .ports import EventBridgePort, S3Port, StepFunctionsPort
from .records import ApprovalNeeded, GateDecision, RegisteredPackage

APPROVAL_NEEDED = "Pipeline Approval Needed"
TASK_ENDED_CODES = frozenset({"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"})  # SendTaskSuccess errors


class ApprovalError(SagepipeError):
    """The approval cannot be recorded (no pending approval for that run, or it already ended)."""

    reason = "approval_error"


def _key(model: str, execution: str) -> str:
    return f"approvals/{model}/{execution}.json"


def request(
    s3: S3Port,
    events: EventBridgePort,
    *,
    bucket: str,
    task_token: str,
    model: str,
    execution: str,
    registered: RegisteredPackage,
    decision: GateDecision,
    source: str,
    bus: str,
) -> ApprovalNeeded:
    """Store the task token and announce the pending approval (EventBridge "Pipeline Approval Needed").

    When the gate asked for the approval (``decision["approval_required"]``: the feature set changed under
    ``schema_change: manual``), the detail's ``schema_change`` is the diff (added / removed / retyped
    features) and the decision's reason says so. Returns the event detail sent (without the token).
    """
    record = {
        "model": model,
        "execution": execution,
        "task_token": task_token,
        "model_package_arn": registered["ModelPackageArn"],
        "decision": decision,
    }
    s3.put_object(
        Bucket=bucket, Key=_key(model, execution), Body=json.dumps(record).encode(), ContentType="application/json"
    )
    detail: ApprovalNeeded = {
        "model": model,
        "execution": execution,
        "outcome": "approval_needed",
        "model_package_arn": registered["ModelPackageArn"],
        "decision": decision,
        "schema_change": decision.get("schema_change") if decision.get("approval_required") else None,
        "how_to_decide": f"sagepipe approve {execution}  |  sagepipe reject {execution} --reason '...'",
    }
    resp = events.put_events(
        Entries=[{"Source": source, "DetailType": APPROVAL_NEEDED, "EventBusName": bus, "Detail": json.dumps(detail)}]
    )
    if resp.get("FailedEntryCount"):
        raise ApprovalError("could not send the Approval Needed event", entries=resp.get("Entries"))
    return detail


def find(s3: S3Port, bucket: str, execution: str) -> dict[str, Any]:
    """The pending-approval record of ``execution``. Raises :class:`ApprovalError` if there is none."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="approvals/"):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith(f"/{execution}.json"):
                record: dict[str, Any] = json.loads(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
                return record
    raise ApprovalError(f"no approval was requested for run {execution!r}", execution=execution)


def decide(
    s3: S3Port, sfn: StepFunctionsPort, *, bucket: str, execution: str, approved: bool, reason: str, by: str
) -> dict[str, Any]:
    """Approve or reject ``execution`` and resume it (SendTaskSuccess).

    The decision is recorded at ``approvals/<model>/<execution>.decision.json`` with the package it was
    for. A run evaluated again because the live model changed under it (``regate``) asks again for its new
    package, and that request can be decided.

    Raises :class:`ApprovalError` when there is no pending approval, the pending package was already
    decided, or the task already ended (``TaskTimedOut`` / ``InvalidToken`` / ``TaskDoesNotExist``).
    """
    record = find(s3, bucket, execution)
    decision_key = _key(record["model"], execution).removesuffix(".json") + ".decision.json"
    earlier: dict[str, Any] | None = None
    try:
        earlier = json.loads(s3.get_object(Bucket=bucket, Key=decision_key)["Body"].read())
    except ClientError as exc:
        if error_kind(exc) != "not_found":
            raise
    else:
        if earlier.get("model_package_arn", record["model_package_arn"]) != record["model_package_arn"]:
            earlier = None  # that decision was for the run's previous package; this request is a new one
    if earlier is not None:
        raise ApprovalError(
            f"run {execution} was already {'approved' if earlier['approved'] else 'rejected'} by {earlier['by']}",
            execution=execution,
            decision=earlier,
        )
    output = {"approved": approved, "reason": reason, "by": by}
    try:
        sfn.send_task_success(taskToken=record["task_token"], output=json.dumps(output))
    except ClientError as exc:
        code = error_code(exc)
        if code in TASK_ENDED_CODES:
            raise ApprovalError(
                f"run {execution} is no longer waiting for approval ({code})", execution=execution
            ) from exc
        raise
    stored = {**output, "model_package_arn": record["model_package_arn"]}
    s3.put_object(Bucket=bucket, Key=decision_key, Body=json.dumps(stored).encode(), ContentType="application/json")
    return {**output, "execution": execution, "model_package_arn": record["model_package_arn"]}
