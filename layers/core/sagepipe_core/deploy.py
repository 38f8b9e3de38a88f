"""Endpoint rollout: CreateModel, a new EndpointConfig per model version, then CreateEndpoint or UpdateEndpoint.

The update is blue/green. The state machine then polls DescribeEndpoint until the requested
EndpointConfigName is live (AWS has no ``.sync`` for endpoints).

Follows the SageMaker API reference: CreateModel, CreateEndpointConfig, CreateEndpoint,
UpdateEndpoint (``DeploymentConfig.BlueGreenUpdatePolicy``, ``AutoRollbackConfiguration``).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from .aws import error_kind
from .errors import DeploymentFailedError, EndpointBusyError
from .ports import CloudWatchPort, SageMakerPort
from .records import DeployResult

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
) -> DeployResult:
    """Create the model and its EndpointConfig (idempotent on retry), then create or update the endpoint.

    Returns ``{"EndpointName", "EndpointConfigName", "ModelName", "action": "create"|"update"|"noop",
    "previous_endpoint_config_name"}``. Raises :class:`EndpointBusyError` when the endpoint is in a
    transitional status, or another run created/updated it between our DescribeEndpoint and our call
    (the state machine retries with backoff: deploys of one model are serialised) and :class:`DeploymentFailedError`
    when it is ``Failed`` (a failed endpoint must be deleted by an operator; we never delete).
    """
    try:
        sm.create_model(
            ModelName=model_name,
            ExecutionRoleArn=role_arn,
            PrimaryContainer={
                "Image": image,
                "ModelDataUrl": model_data_url,
                "Environment": {
                    "SAGEMAKER_PROGRAM": "inference.py",
                    "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                    "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
                    "SAGEMAKER_REGION": region,
                },
            },
        )
    except ClientError as exc:
        if error_kind(exc) != "already_exists":
            raise
    try:
        sm.create_endpoint_config(
            EndpointConfigName=endpoint_config_name,
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": model_name,
                    "InitialInstanceCount": instance_count,
                    "InstanceType": instance_type,
                    "InitialVariantWeight": 1.0,
                }
            ],
        )
    except ClientError as exc:
        if error_kind(exc) != "already_exists":
            raise
    out: DeployResult = {
        "EndpointName": endpoint_name,
        "EndpointConfigName": endpoint_config_name,
        "ModelName": model_name,
        "action": "create",
        "previous_endpoint_config_name": None,
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
    cfg = sm.describe_endpoint_config(EndpointConfigName=ep["EndpointConfigName"])
    model = sm.describe_model(ModelName=cfg["ProductionVariants"][0]["ModelName"])
    return ep["EndpointConfigName"], model["PrimaryContainer"].get("ModelDataUrl")
