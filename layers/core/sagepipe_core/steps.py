"""One function per pipeline step; each Lambda handler is glue into exactly one of these.

Clients are injected (boto3 clients, or fakes in tests). Settings come in as a :class:`Settings`
built from the function's environment (names in ``template.yaml``).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal, NoReturn, cast

from botocore.exceptions import ClientError

from . import approval, deploy, gate, naming, registry, report, training
from . import dataset as ds
from .aws import ArtifactError, error_kind, read_artifact_members, service_error
from .config import CONFIG_FILE_NAME, DEFAULT_PIPELINE_TIMEOUT_SECONDS, ModelConfig, StackLimits, parse_config
from .errors import (
    ChampionKeptChangingError,
    DeploymentFailedError,
    InvalidConfigError,
    InvalidDatasetError,
    InvalidEventError,
    ModelCodeMissingError,
    SagepipeError,
    TransientServiceError,
)
from .events import DataVersion, Malformed, RetrainRequest, Skip, latest_data_version, normalize
from .ports import CloudWatchPort, EventBridgePort, S3Port, SageMakerPort, StepFunctionsPort
from .records import (
    ApprovalInput,
    ApprovalNeeded,
    Champion,
    DatasetRecord,
    DatasetRef,
    DeployInput,
    DeployResult,
    EvaluateInput,
    ExecutionInput,
    GateDecision,
    LiveModel,
    Regate,
    RegisteredPackage,
    RegisterInput,
    RunDeadLettered,
    RunNames,
    RunRecord,
    RunStarted,
    Splits,
    StartResult,
)

log = logging.getLogger("sagepipe")


@dataclass(frozen=True)
class Settings:
    """Function settings from environment variables (see ``template.yaml`` ``Environment``)."""

    state_machine_arn: str = ""
    data_bucket: str = ""
    artifacts_bucket: str = ""
    app_source: str = "sagepipe"
    resource_prefix: str = "sagepipe"
    scheduled_model: str | None = None
    poll_seconds: int = 30
    max_polls: int = 240
    model_code_uri: str = ""
    inference_image: str = ""
    sagemaker_role_arn: str = ""
    alarm_names: list[str] = field(default_factory=list)
    rollback_latency_ms: float = 1000.0
    rollback_5xx: int = 1
    event_bus: str = "default"
    region: str = "us-east-1"
    dead_letter_queue_url: str = ""
    pipeline_timeout_seconds: int = DEFAULT_PIPELINE_TIMEOUT_SECONDS
    endpoint_instance_count: int = 1
    data_capture_uri: str = ""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """The settings from ``env`` (default: ``os.environ``).

        Reads ``STATE_MACHINE_ARN``, ``DATA_BUCKET``, ``ARTIFACTS_BUCKET``, ``APP_SOURCE``,
        ``RESOURCE_PREFIX``, ``SCHEDULED_MODEL_NAME``, ``POLL_SECONDS``, ``MAX_POLLS``, ``MODEL_CODE_S3_URI``,
        ``INFERENCE_IMAGE``, ``SAGEMAKER_ROLE_ARN``, ``ROLLBACK_ALARM_NAMES`` (comma-separated, extra alarms),
        ``ROLLBACK_LATENCY_MS``, ``ROLLBACK_5XX_ERRORS``, ``EVENT_BUS_NAME``, ``DEAD_LETTER_QUEUE_URL``,
        ``PIPELINE_TIMEOUT_SECONDS`` (the state machine's ``TimeoutSeconds``), ``DEFAULT_ENDPOINT_INSTANCE_COUNT``,
        ``DATA_CAPTURE_S3_URI`` (where endpoints write captured requests) and ``AWS_REGION``; missing ones take the defaults above.
        """
        e = os.environ if env is None else env
        return cls(
            state_machine_arn=e.get("STATE_MACHINE_ARN", ""),
            data_bucket=e.get("DATA_BUCKET", ""),
            artifacts_bucket=e.get("ARTIFACTS_BUCKET", ""),
            app_source=e.get("APP_SOURCE", "sagepipe"),
            resource_prefix=e.get("RESOURCE_PREFIX", "sagepipe"),
            scheduled_model=e.get("SCHEDULED_MODEL_NAME") or None,
            poll_seconds=int(e.get("POLL_SECONDS", "30")),
            max_polls=int(e.get("MAX_POLLS", "240")),
            model_code_uri=e.get("MODEL_CODE_S3_URI", ""),
            inference_image=e.get("INFERENCE_IMAGE", ""),
            sagemaker_role_arn=e.get("SAGEMAKER_ROLE_ARN", ""),
            alarm_names=[a for a in e.get("ROLLBACK_ALARM_NAMES", "").split(",") if a],
            event_bus=e.get("EVENT_BUS_NAME", "default"),
            rollback_latency_ms=float(e.get("ROLLBACK_LATENCY_MS", "1000")),
            rollback_5xx=int(e.get("ROLLBACK_5XX_ERRORS", "1")),
            region=e.get("AWS_REGION", e.get("AWS_DEFAULT_REGION", "us-east-1")),
            dead_letter_queue_url=e.get("DEAD_LETTER_QUEUE_URL", ""),
            pipeline_timeout_seconds=int(e.get("PIPELINE_TIMEOUT_SECONDS", str(DEFAULT_PIPELINE_TIMEOUT_SECONDS))),
            endpoint_instance_count=int(e.get("DEFAULT_ENDPOINT_INSTANCE_COUNT", "1")),
            data_capture_uri=e.get("DATA_CAPTURE_S3_URI", ""),
        )


# --------------------------------------------------------------------------------------- start
def start_runs(
    event: dict[str, Any], *, sfn: StepFunctionsPort, s3: S3Port, settings: Settings, sqs: Any = None
) -> list[StartResult]:
    """Start one execution per data version in ``event`` (StartExecution, deterministic ``name``).

    An execution of that name that already exists (DescribeExecution), or ``ExecutionAlreadyExists`` from
    StartExecution, means a redelivery: reported as ``already_started``. Two concurrent duplicates may both
    report ``started``, but StartExecution is idempotent for the same name and input, so there is still exactly
    one execution.

    Each item is started on its own, so one bad record does not stop the others. An item that can never
    start (a :class:`~sagepipe_core.events.Malformed` record, a retrain of a model with no data, a
    StartExecution AWS refuses) is sent to ``settings.dead_letter_queue_url`` (SQS SendMessage, see
    :func:`dead_letter`) and reported ``dead_lettered``. An item that failed for a passing reason
    (throttling, a 5xx) is reported ``retry``; after every item is done the first such error is raised,
    so Lambda retries the event (the started items are then ``already_started``) and, past its retries,
    sends it to the function's on-failure destination (``EventInvokeConfig``).

    Returns:
        One :class:`~.records.RunStarted`, :class:`~.records.RunSkipped`, :class:`~.records.RunDeadLettered`
        or :class:`~.records.RunRetry` per item.

    Raises:
        InvalidEventError: the event is of no accepted shape (nothing in it can be read).
        botocore.exceptions.ClientError: a transient AWS error of some item (after the others ran), any
            error of an item when no dead-letter queue is configured, or a dead-letter that could not be sent.
    """
    results: list[StartResult] = []
    transient: list[Exception] = []
    items = normalize(
        event,
        app_source=settings.app_source,
        scheduled_model=settings.scheduled_model,
        data_bucket=settings.data_bucket or None,
    )
    for item in items:
        if isinstance(item, Skip):
            log.info("skipping event: %s", item.reason, extra={"key": item.key, "skip_reason": item.reason})
            results.append({"status": "skipped", "reason": item.reason, "key": item.key})
            continue
        if isinstance(item, Malformed):
            results.append(dead_letter(sqs, settings, item.record, InvalidEventError(item.reason)))
            continue
        try:
            results.append(_start_one(item, sfn=sfn, s3=s3, settings=settings))
        except Exception as exc:
            error = service_error(exc) or exc
            if isinstance(error, TransientServiceError):
                log.warning("start will be retried: %s", error.message, extra={"error": error.to_dict()})
                transient.append(exc)
                results.append({"status": "retry", "error": error.to_dict()})
            elif isinstance(error, SagepipeError) and sqs is not None and settings.dead_letter_queue_url:
                results.append(dead_letter(sqs, settings, _describe(item), error))
            else:
                raise
    if transient:
        raise transient[0]
    return results


def _describe(item: DataVersion | RetrainRequest) -> dict[str, Any]:
    return {"kind": type(item).__name__, **asdict(item)}


def _start_one(
    item: DataVersion | RetrainRequest, *, sfn: StepFunctionsPort, s3: S3Port, settings: Settings
) -> RunStarted:
    version = latest_data_version(s3, settings.data_bucket, item) if isinstance(item, RetrainRequest) else item
    name = version.execution_name
    payload = version.execution_input(poll_seconds=settings.poll_seconds, max_polls=settings.max_polls)
    arn = f"{settings.state_machine_arn.replace(':stateMachine:', ':execution:')}:{name}"
    status: Literal["started", "already_started"] = "already_started" if _execution_exists(sfn, arn) else "started"
    if status == "started":
        try:
            arn = sfn.start_execution(stateMachineArn=settings.state_machine_arn, name=name, input=payload)[
                "executionArn"
            ]
        except ClientError as exc:
            if error_kind(exc) != "already_exists":
                raise
            status = "already_started"
    if status == "already_started" and not isinstance(item, RetrainRequest):
        log.info(
            "data version already ran: %s (model %s, key %s, ETag %s); a byte-identical upload starts nothing, "
            "a Retrain Requested event (sagepipe retrain --model %s) trains again",
            name,
            version.model,
            version.key,
            version.etag,
            version.model,
            extra={"execution_name": name, "key": version.key},
        )
    else:
        log.info("execution %s: %s", status, name, extra={"execution_name": name, "key": version.key})
    return {"status": status, "execution_name": name, "execution_arn": arn, "key": version.key, "model": version.model}


DEAD_LETTER_MAX_CHARS = 200_000  # SQS messages are at most 256 KiB


def dead_letter(sqs: Any, settings: Settings, record: Any, error: SagepipeError) -> RunDeadLettered:
    """Send one item that cannot start to the start function's dead-letter queue (SQS SendMessage).

    The message body is JSON ``{"reason", "error", "message", "details", "record"}`` (``record`` cut to
    200,000 characters of JSON, below SQS's 256 KiB message limit), with the ``ERROR_TYPE`` message
    attribute. Nothing is lost: the queue keeps it 14 days.

    Returns:
        ``{"status": "dead_lettered", "reason", "error", "message"}`` for the function's result.

    Raises:
        SagepipeError: ``error`` itself when no queue is configured (``DEAD_LETTER_QUEUE_URL`` unset), so
            the event goes to the function's on-failure destination instead.
    """
    info = error.to_dict()
    if sqs is None or not settings.dead_letter_queue_url:
        raise error
    text = json.dumps(record, default=str, sort_keys=True)
    body = {
        "reason": info.get("reason"),
        "error": type(error).__name__,
        "message": error.message,
        "details": {k: v for k, v in info.items() if k not in {"reason", "message"}},
        "record": record if len(text) <= DEAD_LETTER_MAX_CHARS else text[:DEAD_LETTER_MAX_CHARS],
    }
    sqs.send_message(
        QueueUrl=settings.dead_letter_queue_url,
        MessageBody=json.dumps(body, default=str, sort_keys=True),
        MessageAttributes={"ERROR_TYPE": {"DataType": "String", "StringValue": type(error).__name__}},
    )
    log.warning("dead-lettered: %s", error.message, extra={"error": info})
    return {
        "status": "dead_lettered",
        "reason": info.get("reason"),
        "error": type(error).__name__,
        "message": error.message,
    }


def _execution_exists(sfn: StepFunctionsPort, arn: str) -> bool:
    """DescribeExecution: True if the execution exists (running or not)."""
    try:
        sfn.describe_execution(executionArn=arn)
    except ClientError as exc:
        if error_kind(exc) == "not_found":
            return False
        raise
    return True


# ------------------------------------------------------------------------------------ validate
def _load_config(s3: S3Port, bucket: str, model: str, limits: StackLimits) -> tuple[Any, bytes | None]:
    key = f"datasets/{model}/{CONFIG_FILE_NAME}"
    try:
        raw = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if error_kind(exc) == "not_found":
            return parse_config(None, limits), None
        raise
    return parse_config(raw, limits), raw


def check_model_code(s3: S3Port, code_uri: str) -> dict[str, Any]:
    """HeadObject on the model code bundle before any training cost.

    Args:
        s3: the S3 client (HeadObject).
        code_uri: ``s3://bucket/key`` of ``sourcedir.tar.gz`` (``MODEL_CODE_S3_URI``).

    Returns:
        ``{"uri", "etag", "version_id"}`` of the bundle.

    Raises:
        ModelCodeMissingError: the object is absent (S3 answers 404 with ``s3:ListBucket``: "is not
            there"; 403 without it, or when the role may not read it: the message says both are possible;
            the S3 code is in ``s3_error``) or the URI is not an S3 object URI.
    """
    if not code_uri.startswith("s3://") or "/" not in code_uri.removeprefix("s3://"):
        raise ModelCodeMissingError(f"MODEL_CODE_S3_URI {code_uri!r} is not an s3://bucket/key URI", uri=code_uri)
    bucket, key = code_uri.removeprefix("s3://").split("/", 1)
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in {"403", "AccessDenied"}:  # S3 hides a missing key behind 403 without s3:ListBucket
            raise ModelCodeMissingError(
                f"S3 refused HeadObject on the model code {code_uri} (S3 {code}): it is missing, or the validate "
                "function's role may not read it (s3:GetObject, and s3:ListBucket for S3 to answer 404): check "
                "the role, then deploy the stack with `sam deploy` or run `sagepipe publish-code`",
                uri=code_uri,
                s3_error=code,
            ) from exc
        if error_kind(exc) == "not_found" or code == "NoSuchBucket":
            raise ModelCodeMissingError(
                f"the model code {code_uri} is not there (S3 {code}): deploy the stack with `sam deploy` (its "
                "ModelCode custom resource publishes model/) or run `sagepipe publish-code`",
                uri=code_uri,
                s3_error=code,
            ) from exc
        raise
    return {"uri": code_uri, "etag": str(head.get("ETag", "")).strip('"'), "version_id": head.get("VersionId")}


def _rejecter(
    s3: S3Port, d: DatasetRef, settings: Settings, model: str, execution_name: str
) -> Callable[[SagepipeError], NoReturn]:
    """``reject(err)``: quarantine the object with ``err``'s reason, then raise ``err`` (with its quarantine URIs)."""

    def reject(err: SagepipeError) -> NoReturn:
        where = ds.quarantine(
            s3,
            source_bucket=d["bucket"],
            key=d["key"],
            version_id=d.get("version_id"),
            artifacts_bucket=settings.artifacts_bucket,
            prefix=f"quarantine/{model}/{execution_name}",
            error=err,
        )
        err.details["quarantine"] = where
        log.warning("data set rejected: %s", err.message, extra={"reason": err.to_dict()})
        raise type(err)(err.message, reason=err.reason, **err.details)

    return reject


def _checked_data(
    s3: S3Port, d: DatasetRef, model: str, limits: StackLimits, reject: Callable[[SagepipeError], NoReturn]
) -> tuple[ModelConfig, ds.Dataset, str]:
    """The model name, the config, the object's size, then the CSV checks; any failure is rejected.

    Returns the config, the parsed data set and the object's ``LastModified`` (HeadObject) as
    :class:`deploy.DataOrder` writes it (whole seconds UTC): the data version's place in time.
    """
    if not naming.MODEL_NAME_RE.match(model):
        reject(
            InvalidDatasetError(
                f"model name {model!r} must match {naming.MODEL_NAME_RE.pattern} (it names the "
                "endpoint and the API path)",
                reason="invalid_model_name",
                check="invalid_model_name",
                model=model,
            )
        )
    try:
        config, _ = _load_config(s3, d["bucket"], model, limits)
    except InvalidConfigError as err:
        reject(err)
    get: dict[str, Any] = {"Bucket": d["bucket"], "Key": d["key"]}
    if d.get("version_id"):
        get["VersionId"] = d["version_id"]
    head = s3.head_object(**get)
    if head["ContentLength"] > config.max_dataset_bytes:
        reject(
            InvalidDatasetError(
                f"object is {head['ContentLength']} bytes; limit is {config.max_dataset_bytes}",
                reason="too_large",
                check="too_large",
                bytes=head["ContentLength"],
            )
        )
    body = s3.get_object(**get)["Body"].read()
    try:
        data = ds.parse_and_validate(body, config)
    except InvalidDatasetError as err:
        reject(err)
    return config, data, deploy.DataOrder.of(head["LastModified"], d["key"]).last_modified


def _write_splits(s3: S3Port, bucket: str, prefix: str, data: ds.Dataset, config: ModelConfig) -> Splits:
    """PutObject ``<prefix>/splits/<name>/<name>.csv`` per split (streamed, :func:`dataset.write_splits`).

    And the split manifest (:func:`dataset.manifest`: the identities of the train and validation rows)
    at ``<prefix>/splits/manifest/split_manifest.json``; the state carries only its URI (``manifest``).
    """
    split_prefixes: dict[str, str] = {}
    rows_per_split: dict[str, int] = {}
    where = ds.assign_splits(data, config)
    for name, (fh, rows) in ds.write_splits(data, config, where).items():
        with fh:
            s3.put_object(Bucket=bucket, Key=f"{prefix}/splits/{name}/{name}.csv", Body=fh, ContentType="text/csv")
        split_prefixes[name] = f"s3://{bucket}/{prefix}/splits/{name}/"
        rows_per_split[name] = rows
    key = f"{prefix}/splits/manifest/{ds.MANIFEST_FILE}"
    body = json.dumps(ds.manifest(data, where), separators=(",", ":")).encode()
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
    return cast(Splits, {**split_prefixes, "rows": rows_per_split, "manifest": f"s3://{bucket}/{key}"})


def validate_data(
    execution: ExecutionInput, *, execution_name: str, s3: S3Port, sm: SageMakerPort, settings: Settings
) -> RunRecord:
    """ValidateData step: check the data set, write the splits, build the CreateTrainingJob request.

    Loads the config, checks the CSV, writes the splits and ``dataset.json`` (the full header and class
    counts: the run record carries a bounded summary, as a state must stay far below 256 KB), finds the
    champion and builds the request.

    ``execution`` is the execution input. On a failed check the object is quarantined under
    ``quarantine/<model>/<execution_name>/`` and the :class:`InvalidDatasetError` / :class:`InvalidConfigError`
    is re-raised (the ASL catches it by name). A missing model code bundle raises :class:`ModelCodeMissingError`
    first (no quarantine: the data is not at fault; the ASL's Catch of ``errors.PERMANENT_ERRORS`` sends "Pipeline Failed").
    Returns the :class:`~.records.RunRecord` (``tuning`` is the CreateHyperParameterTuningJob request when the
    config asks for tuning, else None).
    """
    d, model = execution["dataset"], execution["model"]
    prefix = f"runs/{model}/{execution_name}"
    check_model_code(s3, settings.model_code_uri)  # a stack problem, not the data's: fails the run, no quarantine
    limits = StackLimits(
        pipeline_timeout_seconds=settings.pipeline_timeout_seconds,
        deploy_seconds=int(execution.get("poll_seconds", settings.poll_seconds))
        * int(execution.get("max_polls", settings.max_polls)),
        endpoint_instance_count=settings.endpoint_instance_count,
    )
    config, data, last_modified = _checked_data(s3, d, model, limits, _rejecter(s3, d, settings, model, execution_name))
    resolved = {**config.resolved(data.target), "exclude_columns": data.excluded}
    splits = _write_splits(s3, settings.artifacts_bucket, prefix, data, config)
    split_prefixes = {"train": splits["train"], "validation": splits["validation"], "test": splits["test"]}
    s3.put_object(
        Bucket=settings.artifacts_bucket,
        Key=f"{prefix}/dataset.json",
        Body=json.dumps(data.profile(), sort_keys=True).encode(),
        ContentType="application/json",
    )
    profile = f"s3://{settings.artifacts_bucket}/{prefix}/dataset.json"
    endpoint = naming.endpoint_name(settings.resource_prefix, model)
    champion_config, champion_url = deploy.production_model_data_url(sm, endpoint)
    names = naming.version_names(model, execution_name)
    request = training.build_request(
        job_name=names["TrainingJobName"],
        config=resolved,
        split_prefixes=split_prefixes,
        manifest_uri=splits["manifest"].rsplit("/", 1)[0] + "/",  # the channel: the manifest's folder
        champion_model_data_url=champion_url,
        output_path=f"s3://{settings.artifacts_bucket}/models/{model}/",
        code_uri=settings.model_code_uri,
        region=settings.region,
    )
    tuning = (
        training.build_tuning_request(
            job_name=naming.tuning_job_name(model, execution_name), training=request, config=resolved
        )
        if resolved.get("tuning")
        else None
    )
    champion: Champion | None = (
        {"endpoint_config_name": champion_config, "model_data_url": champion_url} if champion_url else None
    )
    return {
        "model": model,
        "tuning": tuning,
        "dataset": cast(DatasetRecord, {**d, **data.summary(), "profile": profile, "last_modified": last_modified}),
        "config": resolved,
        "splits": splits,
        "champion": champion,
        "training": request,
        "names": cast(RunNames, {**names, "EndpointName": endpoint}),
    }


# ------------------------------------------------------------------------------------ evaluate
def _read_evaluation(s3: S3Port, model_data_url: str) -> dict[str, Any]:
    raw = read_artifact_members(s3, model_data_url, ("evaluation.json",)).get("evaluation.json")
    if raw is None:
        raise ArtifactError("evaluation.json is not in model.tar.gz")
    report = json.loads(raw)
    if not isinstance(report, dict):
        raise ArtifactError("evaluation.json is not a JSON object")
    return report


def evaluate_model(
    state: EvaluateInput, *, s3: S3Port, sm: SageMakerPort, settings: Settings | None = None, now: str | None = None
) -> GateDecision:
    """Evaluate step: the gate decision for the trained model, and the run report.

    Reads ``evaluation.json`` from the model artifact and ``FinalMetricDataList`` (DescribeTrainingJob),
    applies :func:`gate.decide`, then writes the run report (:func:`publish_report`).

    ``state`` holds ``config`` (resolved) and ``training`` (the training task's ``TrainingJobName`` and
    ``ModelArtifacts``); with ``model``, ``dataset`` and ``names`` (the run's lineage) and
    ``settings.artifacts_bucket`` set, the report is written for every decision - a rejected run's report
    says why. Never raises for a bad or missing evaluation: that is a ``reject`` decision (fail closed).
    Returns the :class:`~.records.GateDecision` with ``metrics`` (the report's metrics per split) and
    ``report`` (its ``s3://`` URI, or None). Raises ``ClientError`` from DescribeTrainingJob and from the
    report's PutObject (the ASL retries the step).
    """
    evaluation, error = None, None
    try:
        evaluation = _read_evaluation(s3, state["training"]["ModelArtifacts"])
    except (ClientError, ValueError, KeyError, OSError) as exc:  # ArtifactError and JSON errors are ValueErrors
        error = f"{type(exc).__name__}: {exc}"
    job = sm.describe_training_job(TrainingJobName=state["training"]["TrainingJobName"])
    final = [{"MetricName": m["MetricName"], "Value": m["Value"]} for m in job.get("FinalMetricDataList", [])]
    decision = gate.decide(config=state["config"], evaluation=evaluation, final_metrics=final, evaluation_error=error)
    decision["metrics"] = json_safe((evaluation or {}).get("metrics"))
    decision["report"] = None
    if settings is not None and settings.artifacts_bucket and "model" in state:
        decision["report"] = publish_report(
            s3, bucket=settings.artifacts_bucket, state=state, evaluation=evaluation, decision=decision, now=now
        )
    log.info("gate decision: %s (%s)", decision["decision"], decision["reason"], extra={"decision": decision})
    return decision


def report_lineage(
    state: Mapping[str, Any], decision: Mapping[str, Any], package_arn: str | None = None
) -> dict[str, Any]:
    """The report's lineage rows: data key and version, training job, model package, endpoint config.

    Read from a step's ``state`` (``dataset``, ``names``, ``training`` or ``trained``, ``config``).
    """
    d = state.get("dataset") or {}
    names = state.get("names") or {}
    trained = state.get("trained") or state.get("training") or {}
    deploys = decision.get("decision") == "deploy"
    approval = effective_approval(state.get("config") or {}, decision)
    if package_arn:
        package = f"{package_arn} ({'Approved' if approval == 'auto' else 'PendingManualApproval'} at registration)"
    else:
        package = "registered by the next step (RegisterModel)" if deploys else "none: the gate rejected the model"
    config = names.get("EndpointConfigName")
    return {
        "data": f"s3://{d.get('bucket')}/{d.get('key')}" if d else None,
        "data ETag": d.get("etag"),
        "data VersionId": d.get("version_id") or "(bucket unversioned)",
        "rows / columns": f"{d.get('rows')} / {d.get('columns')}" if d.get("rows") is not None else None,
        "TrainingJobName": trained.get("TrainingJobName"),
        "model artifact": trained.get("ModelArtifacts"),
        "ModelPackageArn": package,
        "EndpointName": names.get("EndpointName"),
        "EndpointConfigName": (
            f"{config} ({'created by DeployModel' if deploys else 'not created: not deployed'})" if config else None
        ),
    }


def effective_approval(config: Mapping[str, Any], decision: Mapping[str, Any]) -> str:
    """The approval a candidate gets: ``manual`` or ``auto``.

    ``manual`` when the config says so or the gate requires it (a feature-set change under
    ``schema_change: manual``: ``decision["approval_required"]``).
    """
    return "manual" if decision.get("approval_required") else str(config.get("approval", "auto"))


def publish_report(
    s3: S3Port,
    *,
    bucket: str,
    state: Mapping[str, Any],
    evaluation: dict[str, Any] | None,
    decision: Mapping[str, Any],
    package_arn: str | None = None,
    now: str | None = None,
) -> str:
    """Render the run report (:func:`sagepipe_core.report.render`) and PutObject it next to the model.

    Key ``models/<model>/<TrainingJobName>/report.html``, ``text/html; charset=utf-8``.

    ``state`` needs ``model``, ``execution_name``, ``training`` or ``trained`` and, for the lineage,
    ``dataset`` and ``names``. Returns the ``s3://`` URI. Raises ClientError from S3.
    """
    from datetime import UTC, datetime

    trained = state.get("trained") or state["training"]
    key = report.report_key(state["model"], trained["TrainingJobName"])
    page = report.render(
        evaluation,
        decision=decision,
        lineage=report_lineage(state, decision, package_arn),
        model=state["model"],
        execution=state.get("execution_name", ""),
        generated_at=now or datetime.now(UTC).isoformat(timespec="seconds"),
    )
    s3.put_object(Bucket=bucket, Key=key, Body=page.encode("utf-8"), ContentType="text/html; charset=utf-8")
    return f"s3://{bucket}/{key}"


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats (NaN, ±inf) replaced by None: Lambda results must be valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


# -------------------------------------------------------------------------------------- deploy
#: How many times a run may be evaluated again because the live model changed under it (see
#: :func:`deploy.recheck`); past it the run fails with :class:`ChampionKeptChangingError`, deploying nothing.
MAX_REGATES = 2


def deploy_model(state: DeployInput, *, sm: SageMakerPort, cw: CloudWatchPort, settings: Settings) -> DeployResult:
    """Deploy step: rollback alarms, then create or update the endpoint.

    The endpoint's auto-rollback alarms (:func:`deploy.ensure_rollback_alarms`), then
    :func:`deploy.start_deployment` for the run's names and the endpoint config in
    ``state["config"]["endpoint"]`` (its ``data_capture_percentage`` > 0: a DataCaptureConfig to
    ``settings.data_capture_uri``). ``state`` needs ``names`` and ``training.ModelArtifacts``; with ``run``
    (the :class:`~.records.RunRecord`: dataset, champion, requests) and ``model`` the live model is
    re-checked first (:func:`deploy.recheck`). On ``regate`` the result's ``regate`` holds the run's next
    attempt (:func:`regate_run`: new names, the live model as champion, the requests that train against it).

    Raises:
        ChampionKeptChangingError: the live model changed under the run more than :data:`MAX_REGATES`
            times; nothing is deployed.
        EndpointBusyError, DeploymentFailedError: as :func:`deploy.start_deployment`.
    """
    names, ep = state["names"], state["config"]["endpoint"]
    run = state.get("run")
    data: deploy.DataOrder | None = None
    champion: str | None = None
    if run is not None:
        dataset = run["dataset"]
        data = deploy.DataOrder(dataset["last_modified"], dataset["key"]) if dataset.get("last_modified") else None
        gated = run.get("champion")
        champion = gated["endpoint_config_name"] if gated else None
    alarms = (
        deploy.ensure_rollback_alarms(
            cw, names["EndpointName"], latency_ms=settings.rollback_latency_ms, errors_5xx=settings.rollback_5xx
        )
        + settings.alarm_names
    )
    result = deploy.start_deployment(
        sm,
        endpoint_name=names["EndpointName"],
        model_name=names["ModelName"],
        endpoint_config_name=names["EndpointConfigName"],
        image=settings.inference_image,
        model_data_url=state["training"]["ModelArtifacts"],
        role_arn=settings.sagemaker_role_arn,
        instance_type=ep["instance_type"],
        instance_count=ep["instance_count"],
        alarm_names=alarms,
        region=settings.region,
        data=data,
        champion_endpoint_config_name=champion,
        recheck_live=run is not None,
        data_capture=deploy.data_capture_config(int(ep.get("data_capture_percentage", 0)), settings.data_capture_uri),
        drift=state["config"].get("drift"),
        serverless=deploy.serverless_config(ep),
    )
    result["regate"] = None
    if result["action"] == "regate":
        assert run is not None and result["live"] is not None  # recheck regates only with a run and a live model
        result["regate"] = regate_run(
            run, model=state.get("model") or "", execution_name=state.get("execution_name") or "", live=result["live"]
        )
    log.info(
        "deploy %s: %s",
        result["action"],
        names["EndpointConfigName"],
        extra={"deploy_action": result["action"], "live": result["live"]},
    )
    return result


def regate_run(run: RunRecord, *, model: str, execution_name: str, live: LiveModel) -> Regate:
    """The next attempt of a run whose champion changed before it deployed (:func:`deploy.recheck` ``regate``).

    New SageMaker names (``<execution>:regate<n>`` hashed: :func:`naming.version_names`), the live model as
    the champion, and the CreateTrainingJob (and CreateHyperParameterTuningJob) requests with the ``champion``
    channel on its ``ModelDataUrl``: the ASL merges this into ``$.run`` and trains again, so the gate compares
    the new candidate with the model that is live now.

    Raises:
        ChampionKeptChangingError: this would be attempt ``MAX_REGATES + 1``.
    """
    n = int(run.get("regates", 0)) + 1
    if n > MAX_REGATES:
        raise ChampionKeptChangingError(
            f"the live model changed under this run {n} times (now {live['EndpointConfigName']}); "
            f"nothing was deployed after {MAX_REGATES} evaluations against a newer champion",
            regates=n - 1,
            live=live["EndpointConfigName"],
        )
    if not live["ModelDataUrl"]:
        raise DeploymentFailedError(f"the live model {live['ModelName']} has no ModelDataUrl to be compared with")
    attempt = f"{execution_name}:regate{n}"
    names = naming.version_names(model, attempt)
    request = training.with_champion(
        run["training"], job_name=names["TrainingJobName"], champion_model_data_url=live["ModelDataUrl"]
    )
    tuning = (
        training.build_tuning_request(
            job_name=naming.tuning_job_name(model, attempt), training=request, config=run["config"]
        )
        if run.get("tuning")
        else None
    )
    return {
        "names": cast(RunNames, {**names, "EndpointName": run["names"]["EndpointName"]}),
        "champion": {"endpoint_config_name": live["EndpointConfigName"], "model_data_url": live["ModelDataUrl"]},
        "training": request,
        "tuning": tuning,
        "regates": n,
    }


# ------------------------------------------------------------------------------------ register
def register_model(state: RegisterInput, *, sm: SageMakerPort, s3: S3Port, settings: Settings) -> RegisteredPackage:
    """RegisterModel step: a model package in the model's group.

    The package carries metrics (ModelMetrics from ``evaluation.json``), schema and lineage (data key and ETag,
    split URIs and the split manifest, training job, decision). Its approval is :func:`effective_approval`:
    ``manual`` (``PendingManualApproval``, then RequestApproval) when the config says so or the gate
    requires it for a feature-set change.

    ``state`` needs ``model``, ``config``, ``run`` (``dataset``, ``splits``), ``trained`` and
    ``decision``. The full lineage and decision (the gate reason is free text, which
    ``CustomerMetadataProperties`` cannot hold) are written to
    ``models/<model>/<TrainingJobName>/registry/registration.json``, whose URI is the package's
    ``registration`` metadata, with the winning candidate and the runner-up of ``evaluation.json``
    ``model_selection`` (:func:`registry.model_selection`: in the record as ``model_selection``, in the
    metadata as ``model_chosen``, ``model_runner_up``...); the run report's URI is its ``report``
    metadata, and the report is rendered again with the ModelPackageArn in its lineage (same key as the
    evaluate step's). Returns the
    :class:`~.records.RegisteredPackage` (with ``report``).
    """
    model, trained, run = state["model"], state["trained"], state["run"]
    approval = effective_approval(state["config"], state["decision"])
    group = registry.ensure_group(sm, settings.resource_prefix, model)
    reports = registry.publish_reports(
        s3,
        trained["ModelArtifacts"],
        settings.artifacts_bucket,
        f"models/{model}/{trained['TrainingJobName']}/registry",
    )
    lineage: dict[str, Any] = {
        "data_bucket": run["dataset"]["bucket"],
        "data_key": run["dataset"]["key"],
        "data_etag": run["dataset"]["etag"],
        "data_version_id": run["dataset"].get("version_id"),
        "split_train": run["splits"]["train"],
        "split_validation": run["splits"]["validation"],
        "split_test": run["splits"]["test"],
        "split_manifest": run["splits"].get("manifest"),
        "training_job": trained["TrainingJobName"],
        "schema": reports.get("schema"),
        "report": f"s3://{settings.artifacts_bucket}/{report.report_key(model, trained['TrainingJobName'])}",
    }
    try:
        evaluation: dict[str, Any] | None = _read_evaluation(s3, trained["ModelArtifacts"])
    except (ValueError, KeyError) as exc:  # the gate passed, so it was readable; say so if it no longer is
        log.warning("evaluation.json unreadable for the report: %s", exc)
        evaluation = None
    selection = registry.model_selection(evaluation)
    record_uri = registry.publish_record(
        s3,
        settings.artifacts_bucket,
        f"models/{model}/{trained['TrainingJobName']}/registry/registration.json",
        {
            "execution": state["execution_name"],
            "lineage": lineage,
            "decision": state["decision"],
            "reports": reports,
            "model_selection": selection,
        },
    )
    arn = registry.register(
        sm,
        group=group,
        image=settings.inference_image,
        model_data_url=trained["ModelArtifacts"],
        approval=approval,
        instance_type=state["config"]["endpoint"]["instance_type"],
        lineage=lineage,
        decision=state["decision"],
        reports=reports,
        execution=state["execution_name"],
        record_uri=record_uri,
        selection=selection,
    )
    log.info("registered %s in %s", arn, group, extra={"model_package_arn": arn})
    uri = publish_report(
        s3,
        bucket=settings.artifacts_bucket,
        state={**state, "dataset": run["dataset"], "names": run.get("names") or {}},
        evaluation=evaluation,
        decision=state["decision"],
        package_arn=arn,
    )
    return {
        "ModelPackageArn": arn,
        "ModelPackageGroupName": group,
        "approval": approval,
        "report": uri,
    }


def request_approval(
    state: ApprovalInput, *, s3: S3Port, events: EventBridgePort, settings: Settings
) -> ApprovalNeeded:
    """RequestApproval step (``lambda:invoke.waitForTaskToken``): store the token, send "Approval Needed".

    The execution resumes when ``sagepipe approve|reject`` calls SendTaskSuccess (or times out).
    """
    return approval.request(
        s3,
        events,
        bucket=settings.artifacts_bucket,
        task_token=state["task_token"],
        model=state["model"],
        execution=state["execution_name"],
        registered=state["registered"],
        decision=state["decision"],
        source=settings.app_source,
        bus=settings.event_bus,
    )


# ------------------------------------------------------------------------- uncaught execution ends
#: Statuses of "Step Functions Execution Status Change" that end a run (Step Functions docs, "EventBridge
#: for Step Functions execution status changes"). SUCCEEDED runs always notify from the state machine.
ENDED_STATUSES = frozenset({"FAILED", "TIMED_OUT", "ABORTED"})
PIPELINE_FAILED = "Pipeline Failed"
MAX_CAUSE_CHARS = 4096  # the event's cause may be 32,768 characters; the notification keeps the head
_DEFAULT_ERROR = {"TIMED_OUT": "States.Timeout", "ABORTED": "ExecutionAborted"}
_DEFAULT_CAUSE = {
    "TIMED_OUT": "the execution reached the state machine's TimeoutSeconds; no Catch runs for that",
    "ABORTED": "the execution was stopped (StopExecution); no Catch runs for that",
    "FAILED": "the execution failed at a step with an error its Catch does not handle",
}


def _ended_in_fail_state(sfn: StepFunctionsPort, execution_arn: str, stop_ms: Any) -> bool:
    """Whether the attempt of ``execution_arn`` that stopped at ``stop_ms`` (epoch ms) ended in a Fail state.

    GetExecutionHistory newest first (``reverseOrder``, without data, 1,000 events a page): the
    ``ExecutionFailed`` event nearest to ``stop_ms`` (a redriven execution has one per failed attempt, and
    may be running again by now) and the event before it, which is ``FailStateEntered`` when a Fail state
    ended it, a Task's failure (``TaskFailed``, ``LambdaFunctionFailed``...) when no Catch handled the
    error. Raises the ClientError of GetExecutionHistory (Lambda's async retries, then the DLQ, follow).
    """
    events: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        params: dict[str, Any] = {
            "executionArn": execution_arn,
            "reverseOrder": True,
            "includeExecutionData": False,
            "maxResults": 1000,
        }
        if token:
            params["nextToken"] = token
        page = sfn.get_execution_history(**params)
        events.extend(page.get("events") or [])
        token = page.get("nextToken")
        if not token:
            break
    failed = [i for i, e in enumerate(events) if e.get("type") == "ExecutionFailed"]
    if not failed:
        return False

    def distance(i: int) -> float:
        stamp = events[i].get("timestamp")
        if not isinstance(stop_ms, int | float) or not isinstance(stamp, datetime):
            return float(i)  # the newest
        return float(abs(stamp.timestamp() * 1000 - float(stop_ms)))

    i = min(failed, key=distance)
    return i + 1 < len(events) and events[i + 1].get("type") == "FailStateEntered"


def notify_execution_ended(
    event: dict[str, Any], *, events: EventBridgePort, sfn: StepFunctionsPort, settings: Settings
) -> dict[str, Any]:
    """Turn an execution that ended without its own notification into "Pipeline Failed" (PutEvents).

    ``event`` is EventBridge's "Step Functions Execution Status Change" (``source`` ``aws.states``;
    ``detail``: ``executionArn``, ``stateMachineArn``, ``name``, ``status``, ``startDate``/``stopDate`` in
    epoch ms, ``input`` (JSON text), ``output``, ``error``, ``cause``). TIMED_OUT and ABORTED never ran a
    Catch. A FAILED execution notified itself when it ended in one of the pipeline's Fail states (each comes
    after a Notify* step); one that failed at a Task - an error the Catch does not name (a transient one, so
    that RedriveExecution resumes there, ``errors.TRANSIENT_ERRORS``), or one no Catch can handle
    (``States.Runtime``, ``States.DataLimitExceeded``) - did not: the history (:func:`_ended_in_fail_state`)
    tells which, so each ended attempt is notified exactly once, by the state machine or here.

    Returns ``{"status": "notified", "detail": <the notification detail>}`` or ``{"status": "skipped",
    "reason"}``. Raises ``RuntimeError`` when PutEvents reports a failed entry, and GetExecutionHistory's
    ClientError (Lambda's async retries and the rule's dead-letter queue then take over).
    """
    detail = event.get("detail") or {}
    status, error, arn = str(detail.get("status") or ""), detail.get("error"), detail.get("stateMachineArn")
    skip = None
    if event.get("source") != "aws.states" or status not in ENDED_STATUSES:
        skip = f"not an ended execution (source {event.get('source')!r}, status {status!r})"
    elif settings.state_machine_arn and arn != settings.state_machine_arn:
        skip = f"execution of another state machine ({arn})"
    elif status == "FAILED" and _ended_in_fail_state(sfn, str(detail.get("executionArn")), detail.get("stopDate")):
        skip = f"ended in a Fail state ({error}) that the state machine notified itself"
    if skip:
        log.info("not notifying: %s", skip, extra={"execution_arn": detail.get("executionArn")})
        return {"status": "skipped", "reason": skip}
    try:
        execution_input = json.loads(detail.get("input") or "{}")
    except ValueError:
        execution_input = {}
    if not isinstance(execution_input, dict):
        execution_input = {}
    cause = str(detail.get("cause") or _DEFAULT_CAUSE[status])
    notification = {
        "model": execution_input.get("model"),
        "execution": detail.get("name"),
        "executionArn": detail.get("executionArn"),
        "dataset": execution_input.get("dataset"),
        "outcome": "failed",
        "status": status,
        "error": error or _DEFAULT_ERROR.get(status, "States.Runtime"),
        "cause": cause if len(cause) <= MAX_CAUSE_CHARS else cause[: MAX_CAUSE_CHARS - 1] + "…",
    }
    resp = events.put_events(
        Entries=[
            {
                "Source": settings.app_source,
                "DetailType": PIPELINE_FAILED,
                "Detail": json.dumps(notification, default=str),
                "EventBusName": settings.event_bus,
            }
        ]
    )
    if resp.get("FailedEntryCount"):
        raise RuntimeError(f"PutEvents refused the notification: {resp.get('Entries')}")
    log.warning("execution %s ended %s without a notification: sent %s", detail.get("name"), status, PIPELINE_FAILED)
    return {"status": "notified", "detail": notification}
