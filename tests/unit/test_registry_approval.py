"""Registry, approval and rollout pieces of the core (moto where it is faithful, Stubber where not)."""

from __future__ import annotations

import json
from unittest.mock import ANY

import boto3
import pytest
from botocore.stub import Stubber

from sagepipe_core import approval, deploy, registry
from sagepipe_core.errors import EndpointBusyError
from tests.conftest import tar_gz

pytestmark = pytest.mark.unit


def _model_tar(evaluation: dict, schema: dict) -> bytes:
    return tar_gz({"evaluation.json": json.dumps(evaluation).encode(), "schema.json": json.dumps(schema).encode()})


def test_register_creates_group_once_and_a_package_with_lineage_and_metrics(aws: None) -> None:
    s3, sm = boto3.client("s3"), boto3.client("sagemaker")
    s3.create_bucket(Bucket="art")
    s3.put_object(
        Bucket="art",
        Key="models/churn/job/output/model.tar.gz",
        Body=_model_tar({"metrics": {"test": {"auc": 0.93}}}, {"features": []}),
    )
    group = registry.ensure_group(sm, "sagepipe", "churn")
    assert registry.ensure_group(sm, "sagepipe", "churn") == group == "sagepipe-churn"
    reports = registry.publish_reports(
        s3, "s3://art/models/churn/job/output/model.tar.gz", "art", "models/churn/job/registry"
    )
    assert reports == {
        "evaluation": "s3://art/models/churn/job/registry/evaluation.json",
        "schema": "s3://art/models/churn/job/registry/schema.json",
    }
    decision = {
        "rule": "threshold",
        "reason": "x" * 400,
        "metric": "auc",
        "challenger": 0.93,
        "champion": None,
        "metrics": {"test": {"auc": 0.93}},
    }
    arn = registry.register(
        sm,
        group=group,
        image="img",
        model_data_url="s3://art/models/churn/job/output/model.tar.gz",
        approval="manual",
        instance_type="ml.m5.large",
        lineage={"data_key": "datasets/churn/a.csv", "data_etag": "e", "training_job": "job"},
        decision=decision,
        reports=reports,
        execution="run-1",
    )
    pkg = sm.describe_model_package(ModelPackageName=arn)
    assert pkg["ModelApprovalStatus"] == "PendingManualApproval"
    meta = pkg["CustomerMetadataProperties"]
    assert meta["data_key"] == "datasets/churn/a.csv" and meta["test_auc"] == "0.93"
    assert "gate_reason" not in meta  # free text: in the registration record (S3), not in the metadata
    assert pkg["ModelPackageDescription"] == f"run-1: {'x' * 400}"
    assert pkg["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"] == reports["evaluation"]
    registry.set_status(sm, arn, "Rejected", "rolled back: x")
    assert sm.describe_model_package(ModelPackageName=arn)["ModelApprovalStatus"] == "Rejected"


#: ``evaluation.json`` ``model_selection`` as model/train.py writes it (model/candidates.py fit_and_select).
SELECTION = {
    "metric": "validation:auc",
    "higher_is_better": True,
    "rule": "one_standard_error",
    "guard": "validation:logloss",
    "chosen": "linear",
    "runner_up": "gbm",
    "best": "gbm",
    "reason": "validation auc: linear 0.9012, gbm 0.9034; chose linear (gbm is better by 0.0022 < 1 s.e.)",
    "candidates": [
        {"name": "linear", "family": "linear", "params": {"C": 1.0}, "validation": {"auc": 0.9012, "logloss": 0.3}},
        {"name": "gbm", "family": "gbm", "params": {"max_iter": 200}, "validation": {"auc": 0.9034, "logloss": 0.29}},
    ],
}


def test_the_package_records_the_winning_candidate_and_the_runner_up(aws: None) -> None:
    """Issue 11: the evaluation report names the chosen candidate and the runner-up; the model package
    carries them too (CustomerMetadataProperties, checked against SageMaker's CustomerMetadataMap pattern
    by the ``aws`` fixture). Before, the package said nothing of which model family won."""
    sm = boto3.client("sagemaker")
    group = registry.ensure_group(sm, "sagepipe", "churn")
    selection = registry.model_selection({"model_selection": SELECTION})
    assert selection == {
        "metric": "validation:auc",
        "chosen": "linear",
        "chosen_family": "linear",
        "chosen_validation": 0.9012,
        "runner_up": "gbm",
        "runner_up_family": "gbm",
        "runner_up_validation": 0.9034,
    }
    arn = registry.register(
        sm,
        group=group,
        image="img",
        model_data_url="s3://art/models/churn/job/output/model.tar.gz",
        approval="auto",
        instance_type="ml.m5.large",
        lineage={"training_job": "job"},
        decision={"rule": "threshold", "decision": "deploy", "metrics": {"test": {"auc": 0.9}}},
        reports={},
        execution="run-1",
        selection=selection,
    )
    meta = sm.describe_model_package(ModelPackageName=arn)["CustomerMetadataProperties"]
    assert {k: meta[k] for k in meta if k.startswith(("model_", "selection_"))} == {
        "model_chosen": "linear",
        "model_chosen_family": "linear",
        "model_chosen_validation": "0.9012",
        "model_runner_up": "gbm",
        "model_runner_up_family": "gbm",
        "model_runner_up_validation": "0.9034",
        "selection_metric": "validation:auc",
    }


def test_model_selection_of_older_or_single_candidate_evaluations() -> None:
    assert registry.model_selection(None) is None
    assert registry.model_selection({"metrics": {}}) is None  # a model trained before candidates
    assert registry.model_selection({"model_selection": {"chosen": None}}) is None
    gbm = {"name": "gbm", "family": "gbm", "validation": {"auc": None}}  # NaN, made JSON-safe by train.py
    only = {"metric": "validation:auc", "chosen": "gbm", "runner_up": None, "candidates": [gbm]}
    assert registry.model_selection({"model_selection": only}) == {
        "metric": "validation:auc",
        "chosen": "gbm",
        "chosen_family": "gbm",
        "chosen_validation": None,
        "runner_up": None,
        "runner_up_family": None,
        "runner_up_validation": None,
    }
    selection = registry.model_selection({"model_selection": only})
    meta = registry.customer_metadata(lineage={}, decision={}, execution="e", record_uri=None, selection=selection)
    expected = {"model_chosen": "gbm", "model_chosen_family": "gbm", "selection_metric": "validation:auc"}
    assert meta == {"execution": "e", **expected}


def test_approval_decide_resumes_the_execution_once(aws: None) -> None:
    s3, events = boto3.client("s3"), boto3.client("events")
    s3.create_bucket(Bucket="art")
    arn = "arn:aws:sagemaker:us-east-1:123456789012:model-package/sagepipe-churn/1"
    detail = approval.request(
        s3,
        events,
        bucket="art",
        task_token="tok-1",
        model="churn",
        execution="run-1",
        registered={"ModelPackageArn": arn},
        decision={"reason": "ok"},
        source="sagepipe",
        bus="default",
    )
    assert "task_token" not in json.dumps(detail) and "sagepipe approve run-1" in detail["how_to_decide"]
    sfn = boto3.client("stepfunctions")
    with Stubber(sfn) as stub:
        stub.add_response(
            "send_task_success",
            {},
            {"taskToken": "tok-1", "output": json.dumps({"approved": False, "reason": "bias", "by": "ana"})},
        )
        out = approval.decide(s3, sfn, bucket="art", execution="run-1", approved=False, reason="bias", by="ana")
        stub.assert_no_pending_responses()
    assert out["approved"] is False and out["model_package_arn"] == arn
    stored = json.loads(s3.get_object(Bucket="art", Key="approvals/churn/run-1.decision.json")["Body"].read())
    assert stored == {"approved": False, "reason": "bias", "by": "ana", "model_package_arn": arn}
    with Stubber(sfn) as stub:  # a second decision never reaches Step Functions
        with pytest.raises(approval.ApprovalError, match="already rejected by ana"):
            approval.decide(s3, sfn, bucket="art", execution="run-1", approved=True, reason="oops", by="bob")
        stub.assert_no_pending_responses()
    # the run was evaluated again (the live model changed under it): its new package asks anew, and may be decided
    second = arn.replace("/1", "/2")
    approval.request(
        s3,
        events,
        bucket="art",
        task_token="tok-2",
        model="churn",
        execution="run-1",
        registered={"ModelPackageArn": second},
        decision={"reason": "ok"},
        source="sagepipe",
        bus="default",
    )
    with Stubber(sfn) as stub:
        stub.add_response("send_task_success", {}, {"taskToken": "tok-2", "output": ANY})
        again = approval.decide(s3, sfn, bucket="art", execution="run-1", approved=True, reason="fine", by="bob")
        stub.assert_no_pending_responses()
    assert again["model_package_arn"] == second and again["approved"] is True


def test_approval_for_an_unknown_run_or_an_ended_task_is_a_clear_error(aws: None) -> None:
    s3, sfn = boto3.client("s3"), boto3.client("stepfunctions")
    s3.create_bucket(Bucket="art")
    with pytest.raises(approval.ApprovalError, match="no approval was requested"):
        approval.decide(s3, sfn, bucket="art", execution="nope", approved=True, reason="", by="me")
    s3.put_object(
        Bucket="art",
        Key="approvals/churn/run-2.json",
        Body=json.dumps({"model": "churn", "task_token": "t", "model_package_arn": "arn"}).encode(),
    )
    with Stubber(sfn) as stub:
        stub.add_client_error("send_task_success", "TaskTimedOut", "timed out")
        with pytest.raises(approval.ApprovalError, match="no longer waiting"):
            approval.decide(s3, sfn, bucket="art", execution="run-2", approved=True, reason="", by="me")


def test_rollback_alarms_are_bound_to_the_endpoint(aws: None) -> None:
    cw = boto3.client("cloudwatch")
    names = deploy.ensure_rollback_alarms(cw, "sagepipe-churn", latency_ms=250, errors_5xx=3)
    assert names == ["sagepipe-churn-invocation-5xx", "sagepipe-churn-model-latency"]
    alarms = {a["AlarmName"]: a for a in cw.describe_alarms(AlarmNames=names)["MetricAlarms"]}
    assert alarms[names[0]]["Threshold"] == 3 and alarms[names[0]]["MetricName"] == "Invocation5XXErrors"
    assert alarms[names[1]]["Threshold"] == 250_000  # ModelLatency is in microseconds
    assert {d["Name"]: d["Value"] for d in alarms[names[1]]["Dimensions"]} == {
        "EndpointName": "sagepipe-churn",
        "VariantName": "AllTraffic",
    }
    assert deploy.deployment_config(names)["AutoRollbackConfiguration"]["Alarms"] == [{"AlarmName": n} for n in names]


def _deploy(sm: object) -> dict:
    return deploy.start_deployment(
        sm,
        endpoint_name="sagepipe-churn",
        model_name="m2",
        endpoint_config_name="c2",
        image="img",
        model_data_url="s3://a/m.tar.gz",
        role_arn="arn:aws:iam::123456789012:role/r",
        instance_type="ml.m5.large",
        instance_count=1,
        alarm_names=["a"],
        region="us-east-1",
    )


@pytest.mark.parametrize("race", ["create", "update"])
def test_a_concurrent_deploy_of_the_same_model_is_retried_not_failed(race: str) -> None:
    sm = boto3.client("sagemaker", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(sm) as stub:
        stub.add_response("create_model", {"ModelArn": "arn:aws:sagemaker:us-east-1:123456789012:model/m2"})
        stub.add_response(
            "create_endpoint_config",
            {"EndpointConfigArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/c2"},
        )
        if race == "create":
            stub.add_client_error("describe_endpoint", "ValidationException", "Could not find endpoint")
            stub.add_client_error(
                "create_endpoint", "ValidationException", 'Cannot create already existing endpoint "x".'
            )
        else:
            stub.add_response(
                "describe_endpoint",
                {
                    "EndpointName": "sagepipe-churn",
                    "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/sagepipe-churn",
                    "EndpointConfigName": "c1",
                    "EndpointStatus": "InService",
                    "CreationTime": "2026-01-01T00:00:00Z",
                    "LastModifiedTime": "2026-01-01T00:00:00Z",
                },
            )
            stub.add_client_error("update_endpoint", "ValidationException", 'Cannot update in-progress endpoint "x".')
        with pytest.raises(EndpointBusyError):
            _deploy(sm)


def test_register_and_approval_handlers_run_on_their_sample_events(
    load_handler, lambda_context, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import load_event

    s3, sm = boto3.client("s3"), boto3.client("sagemaker")
    event = load_event("register.json")
    bucket, key = event["trained"]["ModelArtifacts"].removeprefix("s3://").split("/", 1)
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=key, Body=_model_tar({"metrics": {"test": {"auc": 0.93}}}, {"features": []}))
    monkeypatch.setenv("ARTIFACTS_BUCKET", bucket)
    monkeypatch.setenv(
        "INFERENCE_IMAGE", "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3"
    )
    registered = load_handler("register").lambda_handler(event, lambda_context)
    assert registered["approval"] == "manual" and registered["ModelPackageGroupName"] == "sagepipe-churn"
    assert (
        sm.describe_model_package(ModelPackageName=registered["ModelPackageArn"])["ModelApprovalStatus"]
        == "PendingManualApproval"
    )
    # the package links the run report, rendered again with the package in its lineage
    package = sm.describe_model_package(ModelPackageName=registered["ModelPackageArn"])
    assert package["CustomerMetadataProperties"]["report"] == registered["report"]
    assert registered["report"] == f"s3://{bucket}/models/churn/{event['trained']['TrainingJobName']}/report.html"
    page = s3.get_object(Bucket=bucket, Key=registered["report"].split("/", 3)[3])["Body"].read().decode()
    assert registered["ModelPackageArn"] in page and "PendingManualApproval" in page
    approval_event = load_event("approval.json") | {"registered": registered}
    detail = load_handler("approval").lambda_handler(approval_event, lambda_context)
    stored = json.loads(
        s3.get_object(Bucket=bucket, Key=f"approvals/churn/{approval_event['execution_name']}.json")["Body"].read()
    )
    assert stored["task_token"] == approval_event["task_token"] and detail["outcome"] == "approval_needed"


def _gate_decisions() -> list[dict]:
    """The decision records of every deploy path of the gate (their reasons hold ``;``, ``(``, ``,``)."""
    from sagepipe_core import gate

    config = {"metric": "auc", "threshold": 0.75, "higher_is_better": True}
    final = [{"MetricName": "test:auc", "Value": 0.91}]
    champions = [
        None,
        {"status": "scored", "metrics": {"test": {"auc": 0.9}}},
        {"status": "incompatible", "reason": "feature 'tenure (months)' dropped, 2 added"},
    ]
    out = []
    for champion in champions:
        evaluation = {"metrics": {"test": {"auc": 0.91, "logloss": 0.3}}, "champion": champion}
        decision = gate.decide(config=config, evaluation=evaluation, final_metrics=final)
        assert decision["deploy"], decision
        out.append({**decision, "metrics": evaluation["metrics"]})
    return out


@pytest.mark.parametrize("decision", _gate_decisions(), ids=lambda d: d["rule"])
def test_register_accepts_every_deploy_decision_as_aws_would(aws: None, decision: dict) -> None:
    """CreateModelPackage's CustomerMetadataMap pattern ([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*, 1-256) is checked
    by the ``aws`` fixture as SageMaker checks it; the gate's reason breaks it, so it must not be sent
    there, and lineage values that break it (a key with parentheses) neither: the record in S3 has them."""
    s3, sm = boto3.client("s3"), boto3.client("sagemaker")
    s3.create_bucket(Bucket="art")
    group = registry.ensure_group(sm, "sagepipe", "churn")
    lineage = {"data_key": "datasets/churn/churn - Copy (2).csv", "data_etag": "e1", "training_job": "job"}
    record = {"execution": "run-1", "lineage": lineage, "decision": decision}
    uri = registry.publish_record(s3, "art", "models/churn/job/registry/registration.json", record)
    arn = registry.register(
        sm,
        group=group,
        image="img",
        model_data_url="s3://art/models/churn/job/output/model.tar.gz",
        approval="auto",
        instance_type="ml.m5.large",
        lineage=lineage,
        decision=decision,
        reports={},
        execution="run-1",
        record_uri=uri,
    )
    meta = sm.describe_model_package(ModelPackageName=arn)["CustomerMetadataProperties"]
    assert meta["registration"] == "s3://art/models/churn/job/registry/registration.json"
    assert meta["gate_rule"] == decision["rule"] and meta["test_auc"] == "0.91" and meta["data_etag"] == "e1"
    assert "data_key" not in meta and "gate_reason" not in meta
    stored = json.loads(s3.get_object(Bucket="art", Key="models/churn/job/registry/registration.json")["Body"].read())
    assert stored["decision"]["reason"] == decision["reason"]
    assert stored["lineage"]["data_key"] == lineage["data_key"]


@pytest.mark.parametrize(
    "value, expected",
    [
        ("0.91", "0.91"),
        ("s3://b/k=v/a-b@c", "s3://b/k=v/a-b@c"),
        ("a;b", None),
        ("", None),
        ("x" * 257, None),
        (None, None),
        (True, None),
        (-0.5, "-0.5"),
        ("é ü 1", "é ü 1"),
        ("trunc…", None),
    ],
)
def test_metadata_value_follows_the_customer_metadata_pattern(value, expected) -> None:
    assert registry.metadata_value(value) == expected
