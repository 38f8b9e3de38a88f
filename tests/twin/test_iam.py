"""The twin enforces IAM as AWS does: each Lambda function calls as its own role, the state machine's
integrations as the state machine role, training jobs as the SageMaker execution role; a call the role's
policies do not allow (by action, resource ARN or condition) fails with the service's AccessDenied."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sagepipe import client
from sagepipe.client import Target
from sagepipe.twin import iam

from .conftest import CHURN_CONFIG, churn_rows, wait_for, wait_for_key, write_csv

pytestmark = pytest.mark.twin

ACCOUNT = "123456789012"


def role(logical_id: str) -> str:
    """The ARN of the role the deployer created for ``logical_id``."""
    [arn] = [arn for arn, r in iam.DEPLOYED.items() if r.logical_id == logical_id]
    return arn


def _denied(call: Any, code: str = "AccessDeniedException", status: int = 400) -> str:
    with pytest.raises(ClientError) as info:
        call()
    assert info.value.response["Error"]["Code"] == code, info.value.response
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    return str(info.value.response["Error"]["Message"])


def test_roles_are_denied_what_their_policies_do_not_grant(twin: Any) -> None:
    start = role("StartFunction")
    sm = twin.client("sagemaker", start)
    message = _denied(lambda: sm.describe_endpoint(EndpointName="sagepipe-churn"))
    session = start.rsplit("/", 1)[1]
    assert message == (
        f"User: arn:aws:sts::{ACCOUNT}:assumed-role/{session}/{session} is not authorized to perform: "
        f"sagemaker:DescribeEndpoint on resource: arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint/sagepipe-churn "
        "because no identity-based policy allows the sagemaker:DescribeEndpoint action"
    )
    # the same call by the twin's own (administrator) credentials reaches the service
    with pytest.raises(ClientError) as info:
        twin.client("sagemaker").describe_endpoint(EndpointName="sagepipe-churn")
    assert info.value.response["Error"]["Code"] == "ValidationException"


def test_s3_denies_with_its_own_403(twin: Any) -> None:
    s3 = twin.client("s3", role("ValidateFunction"))
    with pytest.raises(ClientError) as info:  # ValidateFunction may read the data bucket, not write it
        s3.put_object(Bucket=twin.info.data_bucket, Key="datasets/churn/x.csv", Body=b"a,b\n")
    err = info.value.response
    assert (err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]) == ("AccessDenied", 403)
    assert err["Error"]["Message"] == "Access Denied"
    s3.put_object(Bucket=twin.info.artifacts_bucket, Key="runs/iam-test/x", Body=b"x")  # granted: WriteArtifacts
    exec_s3 = twin.client("s3", role("SageMakerExecutionRole"))
    exec_s3.get_object(Bucket=twin.info.artifacts_bucket, Key="runs/iam-test/x")  # runs/* readable
    _denied(
        lambda: exec_s3.put_object(Bucket=twin.info.artifacts_bucket, Key="runs/iam-test/y", Body=b"y"),
        "AccessDenied",
        403,
    )


def test_resource_arns_are_checked(twin: Any) -> None:
    runtime = twin.client("sagemaker-runtime", role("PredictFunction"))
    # outside <ResourcePrefix>-*: denied before the endpoint is even looked up
    message = _denied(lambda: runtime.invoke_endpoint(EndpointName="other-churn", Body=b"{}"))
    assert "endpoint/other-churn" in message
    with pytest.raises(ClientError) as info:  # inside: allowed, and the endpoint does not exist
        runtime.invoke_endpoint(EndpointName="sagepipe-nosuchmodel", Body=b"{}")
    assert info.value.response["Error"]["Code"] == "ValidationError"


def test_conditions_pass_role_and_metric_namespace(twin: Any) -> None:
    execution, deploy = role("SageMakerExecutionRole"), role("DeployFunction")
    sm = twin.client("sagemaker", deploy)
    container = {"Image": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3"}
    message = _denied(
        lambda: sm.create_model(
            ModelName="iam-pass-other", ExecutionRoleArn=role("StartFunction"), PrimaryContainer=container
        )
    )
    assert "iam:PassRole on resource: " + role("StartFunction") in message
    sm.create_model(ModelName="iam-pass-ok", ExecutionRoleArn=execution, PrimaryContainer=container)
    cw = twin.client("cloudwatch", execution)
    metric = [{"MetricName": "m", "Value": 1.0}]
    message = _denied(lambda: cw.put_metric_data(Namespace="sagepipe", MetricData=metric), "AccessDenied", 403)
    assert "cloudwatch:PutMetricData on resource: *" in message
    cw.put_metric_data(Namespace="/aws/sagemaker/Endpoints", MetricData=metric)


def _without(documents: list[dict[str, Any]], drop: Any) -> list[dict[str, Any]]:
    out = []
    for doc in documents:
        kept = [st for st in iam._as_list(doc["Statement"]) if not drop(st)]
        out.append({**doc, "Statement": kept})
    return out


def _put(twin: Any, role_arn: str, documents: list[dict[str, Any]]) -> None:
    client_ = twin.client("iam")
    name = role_arn.rsplit("/", 1)[1]
    for i, doc in enumerate(documents):
        if doc["Statement"]:
            client_.put_role_policy(RoleName=name, PolicyName=f"policy{i}", PolicyDocument=json.dumps(doc))
        else:  # IAM refuses an empty policy: the policy goes
            client_.delete_role_policy(RoleName=name, PolicyName=f"policy{i}")


def test_a_missing_grant_fails_the_run_on_the_twin(twin: Any, target: Target, tmp_path: Any) -> None:
    """Real flows, a real mutation: without LambdaInvokePolicy on the ValidateFunction the state machine's
    first task fails; without WriteModelArtifacts the training job cannot upload its model."""
    pipeline = role("TrainingPipeline")
    original = list(iam.DEPLOYED[pipeline].documents)
    validate_arn = next(spec.function_arn() for name, spec in twin.functions.items() if "ValidateFunction" in name)
    _put(twin, pipeline, _without(original, lambda st: st["Resource"] == validate_arn + "*"))
    try:
        header, rows = churn_rows(0, 1500)
        key = client.upload(target, write_csv(tmp_path, "iam-a.csv", header, rows), "iamtest", CHURN_CONFIG)
        [desc] = wait_for_key(target, key)
    finally:
        _put(twin, pipeline, original)
    assert desc["status"] == "FAILED"
    pages = (
        twin.client("stepfunctions").get_paginator("get_execution_history").paginate(executionArn=desc["executionArn"])
    )
    history = [e for page in pages for e in page["events"]]
    failed = [e for e in history if e["type"] == "TaskFailed"]
    assert failed and "lambda:InvokeFunction" in failed[0]["taskFailedEventDetails"]["cause"], failed

    execution = role("SageMakerExecutionRole")
    original = list(iam.DEPLOYED[execution].documents)
    _put(twin, execution, _without(original, lambda st: st.get("Sid") == "WriteModelArtifacts"))
    try:
        key = client.upload(target, write_csv(tmp_path, "iam-b.csv", header, rows), "iamtest", CHURN_CONFIG)
        [desc] = wait_for_key(target, key)
    finally:
        _put(twin, execution, original)
    assert desc["status"] == "FAILED"
    jobs = twin.client("sagemaker").list_training_jobs(NameContains="iamtest")["TrainingJobSummaries"]
    reasons = [twin.client("sagemaker").describe_training_job(TrainingJobName=j["TrainingJobName"]) for j in jobs]
    assert any(r["TrainingJobStatus"] == "Failed" and "AccessDenied" in r.get("FailureReason", "") for r in reasons), [
        (r["TrainingJobStatus"], r.get("FailureReason")) for r in reasons
    ]


def test_a_missing_key_is_404_only_to_who_may_list_the_bucket(twin: Any) -> None:
    """S3 API Reference, GetObject: without s3:ListBucket a missing key is 403 AccessDenied, not 404."""
    validate_s3 = twin.client("s3", role("ValidateFunction"))  # GetObject + ListBucket on the data bucket
    with pytest.raises(ClientError) as info:
        validate_s3.head_object(Bucket=twin.info.data_bucket, Key="datasets/none/sagepipe.json")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    predict_s3 = twin.client("s3", role("PredictFunction"))  # GetObject on models/*, no ListBucket
    with pytest.raises(ClientError) as info:
        predict_s3.get_object(Bucket=twin.info.artifacts_bucket, Key="models/none/missing.json")
    assert info.value.response["Error"]["Code"] == "AccessDenied"


def test_start_dead_letters_as_its_role_and_validate_reads_a_missing_config(
    twin: Any, target: Target, tmp_path: Any
) -> None:
    """Two flows that need the grants of what is not there: a retrain of a model without data is sent to
    the trigger dead-letter queue by the start function itself (its role's sqs:SendMessage, from SAM's
    on-failure destination policy); a data set without sagepipe.json is validated with the defaults
    (the absent config is a 404 thanks to s3:ListBucket, else S3 would answer 403)."""

    sqs = twin.client("sqs")
    queue = next(u for u in sqs.list_queues()["QueueUrls"] if "TriggerDeadLetterQueue" in u)
    entry = {"Source": twin.info.event_source, "DetailType": "Retrain Requested", "Detail": '{"model": "iamnodata"}'}
    twin.client("events").put_events(Entries=[entry])
    bodies: list[str] = []

    def dead_letter() -> bool:
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        bodies.extend(m["Body"] for m in messages)
        return any("iamnodata" in b for b in bodies)

    wait_for(dead_letter, "no dead letter for the retrain of a model without data", poll_s=0)
    start = role("StartFunction")
    sent = [e for e in iam.RECORDER.entries if e.role_arn == start and e.check.action == "sqs:SendMessage"]
    assert sent and all(e.allowed for e in sent), sent

    header, rows = churn_rows(0, 300)
    key = client.upload(target, write_csv(tmp_path, "noconf.csv", header, rows), "iamnoconf")
    wait_for_key(target, key)
    validate = role("ValidateFunction")
    listed = [e for e in iam.RECORDER.entries if e.role_arn == validate and e.check.action == "s3:ListBucket"]
    assert listed and all(e.allowed for e in listed), listed
