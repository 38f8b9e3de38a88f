"""Operations the CLI performs against a sagepipe stack: the local twin (found through ``twin.json``)
or a deployed AWS stack (found through its CloudFormation outputs). Same code path for both.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import boto3
import requests
from botocore.config import Config

from sagepipe_core.config import CONFIG_FILE_NAME, parse_config
from sagepipe_core.naming import MODEL_NAME_RE

DEFAULT_STATE_DIR = Path(".twin")


class TargetError(RuntimeError):
    """The twin or stack cannot be found or reached; the message says what to do."""


class NotRetriableError(RuntimeError):
    """``sagepipe retry``: Step Functions refused RedriveExecution (``ExecutionNotRedrivable``); the message
    has the run and the reason (DescribeExecution's ``redriveStatusReason``)."""


@dataclass
class Target:
    """Where commands go: buckets, state machine, API URL and boto3 session settings."""

    data_bucket: str
    artifacts_bucket: str
    state_machine_arn: str
    api_url: str
    region: str
    event_source: str = "sagepipe"
    endpoint_url: str | None = None  # the twin's moto endpoint; None for AWS
    stack_name: str = "sagepipe"
    profile: str | None = None
    api_key: str | None = None  # inference API x-api-key (twin.json / the stack's ApiKeyId output)

    def client(self, service: str) -> Any:
        """A boto3 client for the target (twin: fixed test credentials on 127.0.0.1)."""
        cfg = Config(retries={"mode": "standard", "max_attempts": 5})
        if self.endpoint_url:
            return boto3.client(  # type: ignore[call-overload]  # types-boto3 overloads Literal names only
                service,
                endpoint_url=self.endpoint_url,
                region_name=self.region,
                config=cfg,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        session = boto3.Session(profile_name=self.profile, region_name=self.region)
        return session.client(service, config=cfg)  # type: ignore[call-overload]  # as above: any service name

    @classmethod
    def twin(cls, state_dir: Path = DEFAULT_STATE_DIR) -> Target:
        """Read ``<state_dir>/twin.json`` written by ``sagepipe twin up``. Raises TargetError."""
        path = state_dir / "twin.json"
        if not path.exists():
            raise TargetError(
                f"no running twin: {path} not found. Start one with `sagepipe twin up --state-dir {state_dir}`"
                " or pass --aws for a deployed stack."
            )
        info = json.loads(path.read_text())
        return cls(
            data_bucket=info["data_bucket"],
            artifacts_bucket=info["artifacts_bucket"],
            state_machine_arn=info["state_machine_arn"],
            api_url=info["api_url"],
            region=info["region"],
            event_source=info.get("event_source", "sagepipe"),
            endpoint_url=info["aws_endpoint_url"],
            stack_name=info.get("stack_name", "sagepipe"),
            api_key=info.get("api_key"),
        )

    @classmethod
    def aws(cls, stack: str, region: str | None, profile: str | None) -> Target:
        """Resolve a deployed stack's outputs (CloudFormation DescribeStacks). Raises TargetError."""
        session = boto3.Session(profile_name=profile, region_name=region)
        try:
            desc = session.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
        except Exception as exc:  # noqa: BLE001 - surfaced with the stack name
            raise TargetError(f"cannot read stack {stack!r}: {exc}") from exc
        out = {o["OutputKey"]: o["OutputValue"] for o in desc.get("Outputs", [])}
        return cls(
            data_bucket=out["DataBucketName"],
            artifacts_bucket=out["ArtifactsBucketName"],
            state_machine_arn=out["StateMachineArn"],
            api_url=out["ApiUrl"],
            region=session.region_name or "us-east-1",
            event_source=out.get("EventSource", "sagepipe"),
            profile=profile,
            stack_name=stack,
            api_key=_stack_api_key(session, out.get("ApiKeyId")),
        )


def _stack_api_key(session: Any, key_id: str | None) -> str | None:
    """The value of the stack's usage-plan API key (apigateway GetApiKey includeValue); None if unreadable
    (then pass ``--api-key``)."""
    if not key_id:
        return None
    try:
        value: str | None = session.client("apigateway").get_api_key(apiKey=key_id, includeValue=True).get("value")
        return value
    except Exception:  # noqa: BLE001 - no permission: the user passes --api-key
        return None


def check_upload(file: Path, model: str, config: Path | None = None) -> bytes | None:
    """The local checks of :func:`upload`, with no AWS call: the model name, the file (exists, ``.csv`` in
    any case) and ``config`` (parsed as the pipeline will). Returns the config's bytes (None without one).
    Raises ValueError for bad input, ``InvalidConfigError`` with the bad fields."""
    if not MODEL_NAME_RE.match(model):
        raise ValueError(f"model name {model!r} must match {MODEL_NAME_RE.pattern}")
    if not file.is_file():
        raise ValueError(f"{file}: no such file")
    if file.suffix.lower() != ".csv":
        raise ValueError(f"{file}: only .csv files start a run")
    if config is None:
        return None
    raw = config.read_bytes()
    parse_config(raw)  # raises InvalidConfigError with the bad fields
    return raw


def upload(target: Target, file: Path, model: str, config: Path | None = None) -> str:
    """Upload ``file`` to ``datasets/<model>/<file name>`` (and ``config`` to ``datasets/<model>/sagepipe.json``
    first, after validating it locally: :func:`check_upload`). Returns the data set key. Raises ValueError
    for bad input."""
    raw = check_upload(file, model, config)
    s3 = target.client("s3")
    if raw is not None:
        s3.put_object(
            Bucket=target.data_bucket,
            Key=f"datasets/{model}/{CONFIG_FILE_NAME}",
            Body=raw,
            ContentType="application/json",
        )
    key = f"datasets/{model}/{file.name}"
    s3.put_object(Bucket=target.data_bucket, Key=key, Body=file.read_bytes(), ContentType="text/csv")
    return key


def previous_run(target: Target, file: Path, model: str) -> dict[str, Any] | None:
    """The run that uploading ``file`` for ``model`` would repeat, if any: call it *before* the upload.

    The start function names a run after the model, key and the S3 event's ETag
    (:func:`sagepipe_core.naming.execution_name`), so re-uploading byte-identical data starts nothing new. For
    a single-part PutObject to a bucket with SSE-S3 (the stack's data bucket: ``AES256``) the ETag is the hex
    MD5 of the body (S3 ``Object`` docs, "ETag"), so the name is known before the upload: an execution of
    that name (DescribeExecution) that exists now belongs to an earlier upload of the same bytes. Asking
    before the upload has no race with this upload's own run (comparing start times to S3's one-second
    ``LastModified`` had one). Returns the :func:`run_record` row, or None. Raises ValueError for a bad model
    name or a missing file.
    """
    import hashlib

    from sagepipe_core.naming import execution_name

    if not MODEL_NAME_RE.match(model):
        raise ValueError(f"model name {model!r} must match {MODEL_NAME_RE.pattern}")
    if not file.is_file():
        raise ValueError(f"{file}: no such file")
    key = f"datasets/{model}/{file.name}"
    name = execution_name(model, key, hashlib.md5(file.read_bytes(), usedforsecurity=False).hexdigest())
    sfn = target.client("stepfunctions")
    arn = _execution_arn(target, name)
    try:
        sfn.describe_execution(executionArn=arn)
    except sfn.exceptions.ExecutionDoesNotExist:
        return None
    return run_record(sfn, {"executionArn": arn, "name": name})


def retrain(target: Target, model: str) -> dict[str, Any]:
    """``sagepipe retrain``: send the "Retrain Requested" event (EventBridge PutEvents, default bus).

    The stack's RetrainRequested rule sends it to the start function, which starts one run on the model's
    latest data (:func:`sagepipe_core.events.latest_data_object`: newest ``LastModified`` second, then key).
    Returns ``{"event_id", "model", "key", "tied", "execution_name"}``: the data version it will train on and
    the run's name (both as the start function derives them). Raises ValueError for a bad model name,
    ``DatasetNotFoundError`` when the model has no data (nothing is sent), SagepipeError when PutEvents
    refuses the entry.
    """
    from sagepipe_core.errors import DatasetNotFoundError, SagepipeError
    from sagepipe_core.events import DATASETS_PREFIX, RETRAIN_DETAIL_TYPE, latest_data_object
    from sagepipe_core.naming import execution_name

    if not MODEL_NAME_RE.match(model):
        raise ValueError(f"model name {model!r} must match {MODEL_NAME_RE.pattern}")
    newest, tied = latest_data_object(target.client("s3"), target.data_bucket, model)
    if newest is None:
        raise DatasetNotFoundError(
            f"model {model!r} has no data: no .csv under s3://{target.data_bucket}/{DATASETS_PREFIX}{model}/"
            " (upload one with `sagepipe upload`)",
            model=model,
        )
    resp = target.client("events").put_events(
        Entries=[
            {"Source": target.event_source, "DetailType": RETRAIN_DETAIL_TYPE, "Detail": json.dumps({"model": model})}
        ]
    )
    [entry] = resp["Entries"]
    if resp.get("FailedEntryCount") or "EventId" not in entry:
        raise SagepipeError(f"PutEvents refused the event: {entry.get('ErrorCode')}: {entry.get('ErrorMessage')}")
    event_id = entry["EventId"]
    return {
        "event_id": event_id,
        "model": model,
        "key": newest["Key"],
        "tied": tied,
        "execution_name": execution_name(model, newest["Key"], f"retrain-request:{event_id}"),
    }


def _current_state(sfn: Any, arn: str) -> str | None:
    """The last state entered (GetExecutionHistory, all pages, oldest first)."""
    current = None
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn):
        for ev in page["events"]:
            if "stateEnteredEventDetails" in ev:
                current = ev["stateEnteredEventDetails"]["name"]
    return current


def cause_text(cause: str | None) -> str:
    """A failure Cause made readable: a Lambda error object becomes its errorMessage; a JSON reason
    (``{"reason", "message", ...}``) becomes ``reason: message``; a training job becomes its FailureReason."""
    try:
        doc = json.loads(cause or "")
    except ValueError:
        return cause or ""
    if isinstance(doc, dict) and "errorMessage" in doc:
        return cause_text(doc["errorMessage"])
    if isinstance(doc, dict) and "FailureReason" in doc:
        return str(doc["FailureReason"])
    if isinstance(doc, dict) and "message" in doc:
        return f"{doc.get('reason', 'error')}: {doc['message']}"
    return cause or ""


def run_record(sfn: Any, execution: dict[str, Any]) -> dict[str, Any]:
    """One row of ``sagepipe runs``: name, status, current state, metrics, decision, reason, endpoint config."""
    desc = sfn.describe_execution(executionArn=execution["executionArn"])
    inp = json.loads(desc.get("input") or "{}")
    out = json.loads(desc.get("output") or "{}")
    record = (out.get("evaluation") or {}).get("record") or {}
    test_metrics = ((record.get("metrics") or {}).get("test")) or {}
    row: dict[str, Any] = {
        "execution_name": execution["name"],
        "status": desc["status"],
        "model": inp.get("model"),
        "key": (inp.get("dataset") or {}).get("key"),
        "current_state": _current_state(sfn, execution["executionArn"]) if desc["status"] == "RUNNING" else None,
        "metrics": test_metrics,
        "decision": record.get("decision"),
        "reason": record.get("reason"),
        "endpoint_config": (out.get("deployment") or {}).get("EndpointConfigName"),
        "report": record.get("report"),
        "started": desc["startDate"].isoformat(),
        "stopped": desc["stopDate"].isoformat() if desc.get("stopDate") else None,
    }
    approval = out.get("approval") or {}
    if approval.get("approved") is False:
        row["decision"] = "rejected (approval)"
        row["reason"] = f"{approval.get('by')}: {approval.get('reason')}"
    superseded = out.get("superseded") or {}
    if desc["status"] == "SUCCEEDED" and superseded:  # the state machine's Superseded end (README, Deployment)
        row["decision"] = "superseded"
        row["reason"] = superseded.get("reason")
        row["endpoint_config"] = superseded.get("live")
    if desc["status"] in {"FAILED", "TIMED_OUT", "ABORTED"}:
        row["decision"] = row["decision"] or (
            "rejected" if desc.get("error") in {"InvalidDatasetError", "InvalidConfigError"} else "failed"
        )
        row["reason"] = f"{desc.get('error')}: {cause_text(desc.get('cause'))}"
    return row


def list_runs(target: Target, model: str | None = None) -> list[dict[str, Any]]:
    """All executions (newest first) as :func:`run_record` rows, optionally for one model."""
    sfn = target.client("stepfunctions")
    rows = []
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=target.state_machine_arn):
        for ex in page["executions"]:
            row = run_record(sfn, ex)
            if model is None or row["model"] == model:
                rows.append(row)
    return rows


def _pending_uploads(target: Target, model: str | None, names: set[str], grace_s: float = 120) -> list[str]:
    """Keys of ``.csv`` data sets uploaded in the last ``grace_s`` seconds whose run has not started yet
    (the start is asynchronous: S3 → EventBridge → start function). The expected execution name is the
    one the start function derives (``sagepipe_core.naming.execution_name`` of model, key and ETag)."""
    from datetime import datetime

    from sagepipe_core.naming import execution_name

    s3 = target.client("s3")
    now = datetime.now(UTC)
    pending = []
    prefix = f"datasets/{model}/" if model else "datasets/"
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=target.data_bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            parts = key.split("/")
            if (
                not key.lower().endswith(".csv")
                or len(parts) < 3
                or (now - obj["LastModified"]).total_seconds() > grace_s
            ):
                continue
            if execution_name(parts[1], key, obj["ETag"].strip('"')) not in names:
                pending.append(key)
    return pending


def wait_for_runs(
    target: Target, model: str | None = None, timeout_s: float = 1800, poll_s: float = 0.5
) -> list[dict[str, Any]]:
    """Block until no run (of ``model``) is RUNNING and every data set uploaded in the last two minutes
    has its run. Raises TimeoutError."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = list_runs(target, model)
        if not any(r["status"] == "RUNNING" for r in rows) and not _pending_uploads(
            target, model, {r["execution_name"] for r in rows}
        ):
            return rows
        if time.monotonic() > deadline:
            raise TimeoutError(f"runs still in progress after {timeout_s:.0f}s")
        time.sleep(poll_s)


def predict(
    target: Target, model: str, body: bytes, content_type: str, api_key: str | None = None, timeout_s: float = 30
) -> requests.Response:
    """POST ``body`` to ``{api_url}/models/{model}/predictions``; returns the HTTP response. The API key is
    ``api_key`` or else the target's (twin.json / the stack's usage-plan key)."""
    api_key = api_key or target.api_key
    headers = {"Content-Type": content_type, "Accept": "application/json"}
    if api_key:
        headers["x-api-key"] = api_key
    return requests.post(f"{target.api_url}/models/{model}/predictions", data=body, headers=headers, timeout=timeout_s)


def notifications(target: Target, model: str | None = None, execution: str | None = None) -> list[dict[str, Any]]:
    """Every pipeline notification (EventBridge events kept in ``/aws/events/<stack>/notifications``
    by the stack's PipelineNotificationsRule), oldest first, optionally for one model or run."""
    logs = target.client("logs")
    group = f"/aws/events/{target.stack_name}/notifications"
    events: list[dict[str, Any]] = []
    try:
        for page in logs.get_paginator("filter_log_events").paginate(logGroupName=group):
            for item in page.get("events", []):
                event = json.loads(item["message"])
                detail = event.get("detail") or {}
                if (model and detail.get("model") != model) or (execution and detail.get("execution") != execution):
                    continue
                events.append(event)
    except logs.exceptions.ResourceNotFoundException as exc:
        raise TargetError(f"log group {group} not found: is the stack deployed?") from exc
    return events


def _execution_arn(target: Target, execution: str) -> str:
    return f"{target.state_machine_arn.replace(':stateMachine:', ':execution:')}:{execution}"


def run_arn(target: Target, run: str) -> str:
    """The execution ARN of ``run``: an execution ARN as given, else an execution name of the target's
    state machine (as ``sagepipe runs`` lists it)."""
    return run if run.startswith("arn:") else _execution_arn(target, run)


def retry(target: Target, run: str, client_token: str | None = None) -> dict[str, Any]:
    """``sagepipe retry``: RedriveExecution of a FAILED, ABORTED or TIMED_OUT run (Step Functions API
    Reference, RedriveExecution): the same execution resumes at the step that was unsuccessful, with the
    input it had; the steps that succeeded are not run again (their results are kept).

    ``run``: an execution name or ARN. ``client_token``: RedriveExecution's idempotency token (botocore
    makes one when None; the same token within 15 minutes redrives once).
    Returns ``{"execution_name", "executionArn", "resumes_at", "redriveCount", "redriveDate", "status"}``
    (DescribeExecution after the call; ``resumes_at`` the state the run was in when it ended).
    Raises TargetError when there is no such run (or the ARN is malformed), NotRetriableError when Step
    Functions refuses (``ExecutionNotRedrivable``: it SUCCEEDED, is RUNNING, ended more than 14 days ago,
    was redriven 1,000 times, its history is full, or it is an Express workflow's).
    """
    sfn = target.client("stepfunctions")
    arn = run_arn(target, run)
    name = arn.rsplit(":", 1)[-1]
    params = {"executionArn": arn} | ({"clientToken": client_token} if client_token else {})
    try:
        resumes_at = _current_state(sfn, arn)
        sfn.redrive_execution(**params)
    except (sfn.exceptions.ExecutionDoesNotExist, sfn.exceptions.InvalidArn) as exc:
        raise TargetError(f"no run named {run!r} (see `sagepipe runs`)") from exc
    except sfn.exceptions.ExecutionNotRedrivable as exc:
        desc = sfn.describe_execution(executionArn=arn)
        reason = desc.get("redriveStatusReason") or exc.response["Error"].get("Message", "")
        raise NotRetriableError(f"run {name} ({desc['status']}) cannot be retried: {reason}") from exc
    desc = sfn.describe_execution(executionArn=arn)
    return {
        "execution_name": name,
        "executionArn": arn,
        "resumes_at": resumes_at,
        "redriveCount": desc.get("redriveCount"),
        "redriveDate": desc["redriveDate"].isoformat() if desc.get("redriveDate") else None,
        "status": desc["status"],
    }


def report_uri(target: Target, execution: str) -> str:
    """The ``s3://`` URI of a run's report: from the execution output (``evaluation.record.report``) or,
    while the run is still going (e.g. waiting for approval), from the output of its EvaluateModel state
    (GetExecutionHistory). Raises TargetError when the run does not exist, ValueError when it has no
    report (it never trained, or has not been evaluated yet)."""
    sfn = target.client("stepfunctions")
    arn = _execution_arn(target, execution)
    try:
        desc = sfn.describe_execution(executionArn=arn)
    except sfn.exceptions.ExecutionDoesNotExist as exc:
        raise TargetError(f"no run named {execution!r} (see `sagepipe runs`)") from exc
    docs = [json.loads(desc.get("output") or "{}")]
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn, reverseOrder=True):
        for ev in page["events"]:
            exited = ev.get("stateExitedEventDetails") or {}
            if exited.get("name") in {"RegisterModel", "EvaluateModel"} and exited.get("output"):
                docs.append(json.loads(exited["output"]))
    for doc in docs:
        uri = ((doc.get("evaluation") or {}).get("record") or {}).get("report")
        if uri:
            return str(uri)
    raise ValueError(
        f"run {execution} has no report: status {desc['status']}"
        + (f", {desc.get('error')}" if desc.get("error") else "")
        + " (a report is written once a trained model has been evaluated)"
    )


def download_report(target: Target, execution: str, dest: Path) -> tuple[str, Path]:
    """Download a run's report (:func:`report_uri`) to ``dest``: a ``.html`` file, or else a directory
    (created if needed) that gets ``<execution>.html``. Returns ``(s3 uri, local path)``."""
    uri = report_uri(target, execution)
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    path = dest if dest.suffix.lower() in {".html", ".htm"} else dest / f"{execution}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(target.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    return uri, path


def decide_approval(target: Target, execution: str, approved: bool, reason: str, by: str) -> dict[str, Any]:
    """``sagepipe approve|reject``: update the model package and resume the waiting execution."""
    from sagepipe_core import approval

    return approval.decide(
        target.client("s3"),
        target.client("stepfunctions"),
        bucket=target.artifacts_bucket,
        execution=execution,
        approved=approved,
        reason=reason,
        by=by,
    )
