"""Service errors reach Step Functions under the names AWS gives them (issue 10, "Error names as AWS sends
them"), so the ASL's Retry and Catch by name run in the twin as on AWS.

- optimised integration ``arn:aws:states:::sagemaker:createTrainingJob.sync``: an unmodelled service error
  (ValidationException) is ``SageMaker.AmazonSageMakerException`` (the Java SDK's base exception, the code
  in the Cause); TrainModel retries it 3 times, then Catch sends "Pipeline Failed";
- ``aws-sdk:sagemaker:*``: ``SageMaker.<Code>`` (``SageMaker.ValidationException``), not moto's
  ``sagemaker.sagemakerException``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sagepipe import client
from sagepipe.client import Target
from sagepipe.twin.sfn_sagemaker import optimized_error_name, sdk_error_name

from .conftest import churn_rows, record, wait_for_key, write_csv

pytestmark = pytest.mark.twin


def _client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": 400}}, "Op")


def test_error_names_follow_aws() -> None:
    """The naming rules, per code (modelled SageMaker exceptions keep their own class name)."""
    assert optimized_error_name(_client_error("ValidationException")) == "SageMaker.AmazonSageMakerException"
    assert optimized_error_name(_client_error("ResourceLimitExceeded")) == "SageMaker.ResourceLimitExceededException"
    assert sdk_error_name("sagemaker", _client_error("ValidationException")) == "SageMaker.ValidationException"
    assert sdk_error_name("sagemaker", _client_error("ResourceNotFound")) == "SageMaker.ResourceNotFoundException"
    assert sdk_error_name("events", _client_error("ThrottlingException")) == "EventBridge.ThrottlingException"


def test_a_refused_create_training_job_is_retried_by_name_then_notified(
    target: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CreateTrainingJob answers ValidationException: the task fails as SageMaker.AmazonSageMakerException,
    TrainModel's Retry on that name runs (1 + 3 attempts), then its Catch → NotifyFailed."""
    from moto.sagemaker.exceptions import ValidationError
    from moto.sagemaker.models import SageMakerModelBackend

    calls: list[str] = []

    def refuse(self: Any, **kwargs: Any) -> Any:
        calls.append(kwargs.get("training_job_name", "?"))
        raise ValidationError(message="Could not find model data at s3://nowhere/x (refused by the test)")

    monkeypatch.setattr(SageMakerModelBackend, "create_training_job", refuse)
    header, data = churn_rows(0, 1200)
    key = client.upload(target, write_csv(tmp_path, "refused.csv", header, data), "refused")
    [desc] = wait_for_key(target, key)
    assert desc["status"] == "FAILED"
    sfn = target.client("stepfunctions")
    history = sfn.get_execution_history(executionArn=desc["executionArn"], maxResults=1000)["events"]
    failed = [e["taskFailedEventDetails"] for e in history if e["type"] == "TaskFailed"]
    train = [f for f in failed if f.get("resourceType") == "sagemaker"]
    assert [f["error"] for f in train] == ["SageMaker.AmazonSageMakerException"] * 4, failed
    assert "Error Code: ValidationException" in train[0]["cause"] and "Service: AmazonSageMaker" in train[0]["cause"]
    assert len(calls) == 4
    events = client.notifications(target, "refused", desc["name"])
    assert [e["detail-type"] for e in events] == ["Pipeline Failed"]
    detail = events[0]["detail"]
    assert detail["error"] == "SageMaker.AmazonSageMakerException", json.dumps(detail)[:500]
    record("CreateTrainingJob refused (ValidationException)", "SageMaker.AmazonSageMakerException, 3 retries, notified")
