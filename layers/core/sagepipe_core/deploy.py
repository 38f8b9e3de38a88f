"""Endpoint rollout: CreateModel, a new EndpointConfig per model version, then CreateEndpoint or UpdateEndpoint.

The update is blue/green. The state machine then polls DescribeEndpoint until the requested
EndpointConfigName is live (AWS has no ``.sync`` for endpoints).

Follows the SageMaker API reference: CreateModel, CreateEndpointConfig, CreateEndpoint,
UpdateEndpoint (``DeploymentConfig.BlueGreenUpdatePolicy``, ``AutoRollbackConfiguration``).

Just before it creates or updates, the deploy re-checks the live model (:func:`recheck`): an older data
version never replaces a newer one (``superseded``), and a candidate gated against a model that is no longer
live is evaluated again against the live one (``regate``). The data version a model was trained on is kept
in its Model's ``PrimaryContainer.Environment`` (:data:`DATA_KEY_ENV`, :data:`DATA_LAST_MODIFIED_ENV`), so
DescribeModel tells which data the live model came from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from botocore.exceptions import ClientError

from .aws import error_kind
from .errors import DeploymentFailedError, EndpointBusyError
from .ports import CloudWatchPort, SageMakerPort
from .records import DeployResult, LiveModel

#: The Model's Environment entries naming the data version it was trained on (CreateModel ``Environment``
#: values may be 1,024 characters: an S3 key is at most 1,024 bytes).
DATA_KEY_ENV = "SAGEPIPE_DATA_KEY"
DATA_LAST_MODIFIED_ENV = "SAGEPIPE_DATA_LAST_MODIFIED"
#: The version's drift settings (compact JSON of the config's ``drift``), read by the drift check.
DRIFT_ENV = "SAGEPIPE_DRIFT"

BUSY_STATUSES = {"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting", "UpdateRollbackFailed"}


def deployment_config(alarm_names: list[str]) -> dict[str, Any]:
    """UpdateEndpoint ``DeploymentConfig``: blue/green with auto-rollback on ``alarm_names``.

    All-at-once traffic shift with a 5 minute bake (``TerminationWaitInSeconds``); auto-rollback on the
    CloudWatch alarms ``alarm_names``.
    """
    cfg: dict[str, Any] = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
            "TerminationWaitInSeconds": 300,
            "MaximumExecutionTimeoutInSeconds": 3600,
        }
    }
    if alarm_names:
        cfg["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in alarm_names]}
    return cfg


def ensure_rollback_alarms(cw: CloudWatchPort, endpoint_name: str, *, latency_ms: float, errors_5xx: int) -> list[str]:
    """PutMetricAlarm (idempotent) for the endpoint's auto-rollback alarms.

    ``<endpoint>-invocation-5xx`` (``Invocation5XXErrors`` Sum ≥ ``errors_5xx`` in a minute) and
    ``<endpoint>-model-latency`` (``ModelLatency`` p99 > ``latency_ms``, in microseconds as SageMaker reports
    it, 2 of 3 minutes). Namespace ``AWS/SageMaker``, dimensions EndpointName + VariantName ``AllTraffic``
    (SageMaker docs, "Monitor Amazon SageMaker AI with Amazon CloudWatch"). Returns the alarm names.
    """
    dims = [{"Name": "EndpointName", "Value": endpoint_name}, {"Name": "VariantName", "Value": "AllTraffic"}]
    errors, latency = f"{endpoint_name}-invocation-5xx", f"{endpoint_name}-model-latency"
    cw.put_metric_alarm(
        AlarmName=errors,
        Namespace="AWS/SageMaker",
        MetricName="Invocation5XXErrors",
        Dimensions=dims,
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=float(errors_5xx),
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="notBreaching",
        AlarmDescription="sagepipe auto-rollback: invocation 5xx errors on the endpoint",
    )
    cw.put_metric_alarm(
        AlarmName=latency,
        Namespace="AWS/SageMaker",
        MetricName="ModelLatency",
        Dimensions=dims,
        ExtendedStatistic="p99",
        Period=60,
        EvaluationPeriods=3,
        DatapointsToAlarm=2,
        Threshold=float(latency_ms) * 1000.0,
        ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="notBreaching",
        AlarmDescription="sagepipe auto-rollback: model latency p99 on the endpoint",
    )
    return [errors, latency]


#: The content types the pipeline's endpoints are sent and answer (the predict function and the model
#: server's ``input_fn``/``output_fn``): captured as text (``encoding`` CSV / JSON), anything else base64.
CAPTURE_CSV_CONTENT_TYPES = ["text/csv"]
CAPTURE_JSON_CONTENT_TYPES = ["application/json"]


def data_capture_config(percentage: int, destination_s3_uri: str) -> dict[str, Any] | None:
    """The EndpointConfig's ``DataCaptureConfig`` for ``percentage`` of requests, or None when it is 0.

    Input and output are captured (``CaptureOptions`` ``Input`` and ``Output``); CSV and JSON bodies are
    written as text (``CaptureContentTypeHeader``), others base64. SageMaker writes JSON-lines files under
    ``<destination_s3_uri>/<EndpointName>/<VariantName>/yyyy/mm/dd/hh/`` with the model's execution role
    (SageMaker Developer Guide, "Capture data from real-time endpoint"; API Reference ``DataCaptureConfig``:
    ``InitialSamplingPercentage`` 0-100, ``DestinationS3Uri`` at most 512 characters).

    Raises:
        ValueError: ``percentage`` outside 0-100, or a non-zero one without ``destination_s3_uri``.
    """
    if not 0 <= percentage <= 100:
        raise ValueError(f"data capture percentage must be 0-100, got {percentage}")
    if percentage == 0:
        return None
    if not destination_s3_uri.startswith("s3://"):
        raise ValueError(f"data capture needs an s3:// destination, got {destination_s3_uri!r}")
    return {
        "EnableCapture": True,
        "InitialSamplingPercentage": percentage,
        "DestinationS3Uri": destination_s3_uri,
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {
            "CsvContentTypes": CAPTURE_CSV_CONTENT_TYPES,
            "JsonContentTypes": CAPTURE_JSON_CONTENT_TYPES,
        },
    }


def serverless_config(endpoint: dict[str, Any]) -> dict[str, Any] | None:
    """The ProductionVariant's ``ServerlessConfig`` for a per-model ``endpoint`` config, or None.

    ``{"MemorySizeInMB", "MaxConcurrency"}`` from ``serverless.memory_size_in_mb`` / ``max_concurrency``
    (API Reference ``ProductionVariantServerlessConfig``); None for an instance-based endpoint.
    """
    sl = endpoint.get("serverless")
    if not sl:
        return None
    return {"MemorySizeInMB": int(sl["memory_size_in_mb"]), "MaxConcurrency": int(sl["max_concurrency"])}


def is_serverless(endpoint_config: dict[str, Any]) -> bool:
    """Whether a DescribeEndpointConfig answer's first variant is serverless (has ``ServerlessConfig``)."""
    return bool((endpoint_config.get("ProductionVariants") or [{}])[0].get("ServerlessConfig"))


def _create_model_and_config(
    sm: SageMakerPort,
    *,
    model_name: str,
    endpoint_config_name: str,
    container: dict[str, Any],
    role_arn: str,
    instance_type: str,
    instance_count: int,
    data_capture: dict[str, Any] | None = None,
    serverless: dict[str, Any] | None = None,
) -> None:
    """CreateModel and CreateEndpointConfig; "already exists" (a retried step) is not an error.

    ``data_capture``: the EndpointConfig's DataCaptureConfig (None: none). ``serverless``: the variant's
    ServerlessConfig (:func:`serverless_config`) instead of the instance type and count.
    """
    try:
        sm.create_model(
            ModelName=model_name,
            ExecutionRoleArn=role_arn,
            PrimaryContainer=container,
        )
    except ClientError as exc:
        if error_kind(exc) != "already_exists":
            raise
    capture: dict[str, Any] = {"DataCaptureConfig": data_capture} if data_capture else {}
    try:
        sm.create_endpoint_config(
            EndpointConfigName=endpoint_config_name,
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": model_name,
                    **(
                        {"ServerlessConfig": serverless}
                        if serverless
                        else {"InitialInstanceCount": instance_count, "InstanceType": instance_type}
                    ),
                    "InitialVariantWeight": 1.0,
                }
            ],
            **capture,
        )
    except ClientError as exc:
        if error_kind(exc) != "already_exists":
            raise


def start_deployment(
    sm: SageMakerPort,
    *,
    endpoint_name: str,
    model_name: str,
    endpoint_config_name: str,
    image: str,
    model_data_url: str,
    role_arn: str,
    instance_type: str,
    instance_count: int,
    alarm_names: list[str],
    region: str,
    data: DataOrder | None = None,
    champion_endpoint_config_name: str | None = None,
    recheck_live: bool = False,
    data_capture: dict[str, Any] | None = None,
    drift: dict[str, Any] | None = None,
    serverless: dict[str, Any] | None = None,
) -> DeployResult:
    """Create the model and its EndpointConfig (idempotent on retry), then create or update the endpoint.

    ``data`` is the data version the model was trained on (``(LastModified, key)``, see :class:`DataOrder`),
    written into the Model's Environment; ``champion_endpoint_config_name`` is the EndpointConfigName the
    gate compared the candidate with (None: there was no champion). With ``recheck_live`` the live model is
    re-checked before an update (:func:`recheck`) and the endpoint is left alone when that says
    ``superseded`` or ``regate``. ``data_capture`` is the EndpointConfig's DataCaptureConfig
    (:func:`data_capture_config`; None: none); ``serverless`` the variant's ServerlessConfig
    (:func:`serverless_config`; an instance-based live endpoint cannot take it: DeploymentFailedError
    before any update); with ``data_capture``, ``drift`` (the config's ``drift`` settings) goes
    into the Model's Environment as :data:`DRIFT_ENV`, so the drift check judges each version by the
    settings it was deployed with (a Model's Environment values are at most 1,024 characters).

    Returns ``{"EndpointName", "EndpointConfigName", "ModelName", "action":
    "create"|"update"|"noop"|"superseded"|"regate", "previous_endpoint_config_name", "live"}`` (``live``:
    the live model, :class:`LiveModel`, or None before a create). Raises :class:`EndpointBusyError` when the
    endpoint is in a transitional status, or another run created/updated it between our DescribeEndpoint and
    our call (the state machine retries with backoff: deploys of one model are serialised) and
    :class:`DeploymentFailedError` when it is ``Failed`` (a failed endpoint must be deleted by an operator; we
    never delete).
    """
    environment = {
        "SAGEMAKER_PROGRAM": "inference.py",
        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
        "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
        "SAGEMAKER_REGION": region,
    }
    if data is not None:
        environment |= {DATA_LAST_MODIFIED_ENV: data.last_modified, DATA_KEY_ENV: data.key}
    if data_capture and drift is not None:
        environment[DRIFT_ENV] = json.dumps(drift, separators=(",", ":"), sort_keys=True)
    _create_model_and_config(
        sm,
        model_name=model_name,
        endpoint_config_name=endpoint_config_name,
        container={"Image": image, "ModelDataUrl": model_data_url, "Environment": environment},
        role_arn=role_arn,
        instance_type=instance_type,
        instance_count=instance_count,
        data_capture=data_capture,
        serverless=serverless,
    )
    out: DeployResult = {
        "EndpointName": endpoint_name,
        "EndpointConfigName": endpoint_config_name,
        "ModelName": model_name,
        "action": "create",
        "previous_endpoint_config_name": None,
        "live": None,
    }
    try:
        current = sm.describe_endpoint(EndpointName=endpoint_name)
    except ClientError as exc:
        if error_kind(exc) != "not_found":
            raise
        try:
            sm.create_endpoint(EndpointName=endpoint_name, EndpointConfigName=endpoint_config_name)
        except ClientError as race:  # another run created it first: retry, and update it then
            if error_kind(race) == "already_exists":
                raise EndpointBusyError(
                    f"endpoint {endpoint_name} was created by another run", endpoint=endpoint_name, status="Creating"
                ) from race
            raise
        return out
    status, live = current["EndpointStatus"], current.get("EndpointConfigName")
    out["previous_endpoint_config_name"] = live
    if status in BUSY_STATUSES:
        raise EndpointBusyError(f"endpoint {endpoint_name} is {status}", endpoint=endpoint_name, status=status)
    if status == "Failed":
        raise DeploymentFailedError(
            f"endpoint {endpoint_name} is Failed: {current.get('FailureReason')}", endpoint=endpoint_name
        )
    if live == endpoint_config_name:
        return {**out, "action": "noop"}
    if serverless and live and not is_serverless(sm.describe_endpoint_config(EndpointConfigName=live)):
        # SageMaker Developer Guide, "Update a serverless endpoint": updating a real-time (instance-based)
        # endpoint to a serverless one is not supported; UpdateEndpoint would be refused
        raise DeploymentFailedError(
            f"endpoint {endpoint_name} is instance-based and SageMaker cannot update it to serverless; keep"
            " instance hosting (remove endpoint.serverless) or delete the endpoint so the next run creates it"
            " serverless",
            endpoint=endpoint_name,
        )
    if recheck_live:
        live_model = describe_live_model(sm, current)
        out["live"] = live_model
        verdict = recheck(live_model, data=data, champion_endpoint_config_name=champion_endpoint_config_name)
        if verdict != "update":
            return {**out, "action": verdict}
    try:
        sm.update_endpoint(
            EndpointName=endpoint_name,
            EndpointConfigName=endpoint_config_name,
            RetainAllVariantProperties=False,
            DeploymentConfig=deployment_config(alarm_names),
        )
    except ClientError as exc:  # another run's update started between our Describe and Update
        if error_kind(exc) == "in_progress":
            raise EndpointBusyError(
                f"endpoint {endpoint_name} is being updated by another run", endpoint=endpoint_name, status="Updating"
            ) from exc
        raise
    return {**out, "action": "update"}


def production_model_data_url(sm: SageMakerPort, endpoint_name: str) -> tuple[str | None, str | None]:
    """The champion: ``(EndpointConfigName, ModelDataUrl)`` of the model the endpoint serves now.

    ``(None, None)`` if there is no endpoint (or it is Failed). DescribeEndpoint → DescribeEndpointConfig →
    DescribeModel.
    """
    try:
        ep = sm.describe_endpoint(EndpointName=endpoint_name)
    except ClientError as exc:
        if error_kind(exc) == "not_found":
            return None, None
        raise
    if ep["EndpointStatus"] == "Failed" or not ep.get("EndpointConfigName"):
        return None, None
    live = describe_live_model(sm, ep)
    return live["EndpointConfigName"], live["ModelDataUrl"]


@dataclass(frozen=True, order=True)
class DataOrder:
    """Which of two data versions is newer: ``LastModified``, then the key.

    ``last_modified`` is in whole seconds (UTC, ``YYYY-MM-DDTHH:MM:SSZ``); the order is the one
    :func:`sagepipe_core.events.latest_data_object` retrains by.

    S3 keeps ``LastModified`` to the second and records no order between keys written in the same second,
    so the key breaks the tie (S3 User Guide, "Working with object metadata"). Compares as a tuple.
    """

    last_modified: str
    key: str

    @classmethod
    def of(cls, last_modified: Any, key: str) -> DataOrder:
        """From an S3 ``LastModified`` (a ``datetime``, or an ISO 8601 string) and the object's key."""
        if isinstance(last_modified, str):
            last_modified = datetime.fromisoformat(last_modified.replace("Z", "+00:00"))
        if not isinstance(last_modified, datetime):
            raise TypeError(f"LastModified must be a datetime or an ISO 8601 string, not {last_modified!r}")
        stamp = last_modified.astimezone(UTC).replace(microsecond=0)
        return cls(stamp.strftime("%Y-%m-%dT%H:%M:%SZ"), key)


def describe_live_model(sm: SageMakerPort, endpoint: dict[str, Any]) -> LiveModel:
    """The model a DescribeEndpoint response serves: DescribeEndpointConfig → DescribeModel.

    Returns ``{"EndpointConfigName", "ModelName", "ModelDataUrl", "data_key", "data_last_modified"}``; the
    data fields come from the Model's Environment and are None for a model deployed without them.
    """
    cfg = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    model_name = cfg["ProductionVariants"][0]["ModelName"]
    container = sm.describe_model(ModelName=model_name)["PrimaryContainer"]
    env = container.get("Environment") or {}
    return {
        "EndpointConfigName": endpoint["EndpointConfigName"],
        "ModelName": model_name,
        "ModelDataUrl": container.get("ModelDataUrl"),
        "data_key": env.get(DATA_KEY_ENV),
        "data_last_modified": env.get(DATA_LAST_MODIFIED_ENV),
    }


def recheck(
    live: LiveModel, *, data: DataOrder | None, champion_endpoint_config_name: str | None
) -> Literal["update", "superseded", "regate"]:
    """What a candidate may do to the endpoint whose live model is ``live``, just before it deploys.

    - ``superseded``: the live model was trained on newer data (:class:`DataOrder`) - an older data version
      never replaces a newer one, whichever run finishes last;
    - ``regate``: the live model is not the champion the gate compared the candidate with (another run
      deployed in between, or created the endpoint when the gate saw none), so the comparison is stale and
      the candidate must be evaluated again against the live model;
    - ``update``: the live model is the one the candidate beat.

    A live model without data fields (deployed before they were recorded) is not newer than any data.
    """
    if data is not None and live["data_last_modified"] and live["data_key"] is not None:
        if DataOrder(live["data_last_modified"], live["data_key"]) > data:
            return "superseded"
    if live["EndpointConfigName"] != champion_endpoint_config_name:
        return "regate"
    return "update"
