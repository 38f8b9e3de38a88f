"""The core's step functions called directly, with the in-memory fakes of tests/unit/fakes.py as their ports.

No handler reloads, no moto: each test builds the fakes' state, calls one step of ``sagepipe_core.steps``
and checks what it returned and what it did to the fakes (objects written, calls made, resources created).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import botocore.session
import pytest
from botocore.exceptions import ClientError

from sagepipe_core import deploy, naming, ports, steps, training
from sagepipe_core.approval import ApprovalError
from sagepipe_core.errors import (
    ChampionKeptChangingError,
    DatasetNotFoundError,
    DeploymentFailedError,
    EndpointBusyError,
    InvalidConfigError,
    InvalidDatasetError,
)
from sagepipe_core.records import (
    ApprovalInput,
    DeployInput,
    EvaluateInput,
    ExecutionInput,
    GateDecision,
    RegisterInput,
    RunRecord,
    RunStarted,
)
from tests.conftest import REPO, load_event, tar_gz
from tests.unit.fakes import FakeCloudWatch, FakeEventBridge, FakeS3, FakeSageMaker, FakeStepFunctions, _error

DATA, ARTIFACTS = "sagepipe-data-123456789012", "sagepipe-artifacts-123456789012"
STATE_MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:sagepipe-training"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3"
SETTINGS = steps.Settings(
    state_machine_arn=STATE_MACHINE,
    data_bucket=DATA,
    artifacts_bucket=ARTIFACTS,
    model_code_uri=f"s3://{ARTIFACTS}/code/sourcedir.tar.gz",
    inference_image=IMAGE,
    sagemaker_role_arn="arn:aws:iam::123456789012:role/sagepipe-sagemaker",
    alarm_names=["ops-extra-alarm"],
)
CHURN = (REPO / "examples" / "data" / "churn.csv").read_bytes()


def upload_event(key: str, etag: str = "0f343b0931126a20f133d67c2b018a3b", event_id: str = "e-1") -> dict[str, Any]:
    """An EventBridge S3 "Object Created" event for ``s3://DATA/key``."""
    event = load_event("start_s3_eventbridge.json")
    event["id"] = event_id
    event["detail"]["bucket"]["name"] = DATA
    event["detail"]["object"].update(key=key, etag=etag, size=1000)
    return event


# ---------------------------------------------------------------------------------------- start
def test_start_runs_starts_one_execution_with_the_data_version_as_input() -> None:
    sfn = FakeStepFunctions()
    [result] = steps.start_runs(upload_event("datasets/churn/churn.csv"), sfn=sfn, s3=FakeS3(), settings=SETTINGS)
    assert result["status"] == "started"
    [call] = sfn.called("StartExecution")
    assert call["stateMachineArn"] == STATE_MACHINE and call["name"] == result["execution_name"]
    assert result["execution_arn"] == f"{STATE_MACHINE.replace(':stateMachine:', ':execution:')}:{call['name']}"
    doc = json.loads(call["input"])
    assert doc["model"] == "churn" and doc["dataset"]["key"] == "datasets/churn/churn.csv"
    assert doc["dataset"]["bucket"] == DATA and (doc["poll_seconds"], doc["max_polls"]) == (30, 240)
    assert (result["key"], result["model"]) == ("datasets/churn/churn.csv", "churn")


def test_start_runs_redelivery_is_already_started_without_a_second_start() -> None:
    sfn, event = FakeStepFunctions(), upload_event("datasets/churn/churn.csv")
    first = steps.start_runs(event, sfn=sfn, s3=FakeS3(), settings=SETTINGS)
    again = steps.start_runs(event, sfn=sfn, s3=FakeS3(), settings=SETTINGS)
    assert [r["status"] for r in first + again] == ["started", "already_started"]
    assert len(sfn.called("StartExecution")) == 1 and len(sfn.executions) == 1
    assert cast(RunStarted, again[0])["execution_name"] == cast(RunStarted, first[0])["execution_name"]


def test_start_runs_execution_already_exists_race_is_already_started() -> None:
    """DescribeExecution said no, then another delivery started it: StartExecution's ExecutionAlreadyExists."""
    sfn = FakeStepFunctions()
    sfn.fail["StartExecution"] = _error("ExecutionAlreadyExists", "Execution Already Exists: 'arn'", "StartExecution")
    [result] = steps.start_runs(upload_event("datasets/churn/churn.csv"), sfn=sfn, s3=FakeS3(), settings=SETTINGS)
    assert result["status"] == "already_started"


def test_start_runs_other_start_errors_propagate() -> None:
    sfn = FakeStepFunctions()
    sfn.fail["StartExecution"] = _error("AccessDeniedException", "not authorized", "StartExecution")
    with pytest.raises(ClientError, match="AccessDeniedException"):
        steps.start_runs(upload_event("datasets/churn/churn.csv"), sfn=sfn, s3=FakeS3(), settings=SETTINGS)


def test_start_runs_skips_what_is_not_a_data_set() -> None:
    sfn = FakeStepFunctions()
    [result] = steps.start_runs(upload_event("datasets/churn/notes.txt"), sfn=sfn, s3=FakeS3(), settings=SETTINGS)
    assert result["status"] == "skipped" and result["key"] == "datasets/churn/notes.txt" and result["reason"]
    assert sfn.calls == []


def test_start_runs_retrain_runs_the_newest_csv() -> None:
    s3, sfn = FakeS3(), FakeStepFunctions()
    s3.put_object(Bucket=DATA, Key="datasets/churn/old.csv", Body=b"a,b\n1,2\n")
    s3.put_object(Bucket=DATA, Key="datasets/churn/new.csv", Body=b"a,b\n1,3\n")
    s3.put_object(Bucket=DATA, Key="datasets/churn/sagepipe.json", Body=b"{}")  # newest, but not a data set
    [result] = steps.start_runs(load_event("start_retrain_requested.json"), sfn=sfn, s3=s3, settings=SETTINGS)
    assert result["status"] == "started" and result["key"] == "datasets/churn/new.csv"
    assert json.loads(sfn.called("StartExecution")[0]["input"])["dataset"]["key"] == "datasets/churn/new.csv"


def test_start_runs_retrain_without_data_raises() -> None:
    with pytest.raises(DatasetNotFoundError):
        steps.start_runs(
            load_event("start_retrain_requested.json"), sfn=FakeStepFunctions(), s3=FakeS3(), settings=SETTINGS
        )


# ------------------------------------------------------------------------------------- validate
def execution_input(s3: FakeS3, key: str, body: bytes, model: str = "churn") -> tuple[ExecutionInput, str]:
    """Upload ``body`` and return the execution input and name the start function would give it."""
    # the model code bundle the stack's ModelCode custom resource publishes (ValidateData checks it first)
    s3.put_object(Bucket=ARTIFACTS, Key="code/sourcedir.tar.gz", Body=b"bundle")
    put = s3.put_object(Bucket=DATA, Key=key, Body=body)
    etag = put["ETag"].strip('"')
    dataset = {"bucket": DATA, "key": key, "etag": etag, "version_id": put["VersionId"], "size": len(body)}
    execution: ExecutionInput = {"dataset": cast(Any, dataset), "model": model, "trigger": "s3:ObjectCreated:Put"}
    return execution, naming.execution_name(model, key, etag)


def test_validate_data_writes_splits_and_builds_the_training_request() -> None:
    s3, sm = FakeS3(), FakeSageMaker()
    execution, name = execution_input(s3, "datasets/churn/churn.csv", CHURN)
    run = steps.validate_data(execution, execution_name=name, s3=s3, sm=sm, settings=SETTINGS)

    prefix = f"runs/churn/{name}/splits"
    written = {k: v for (b, k), v in s3.objects.items() if b == ARTIFACTS and not k.startswith("code/")}
    profile = f"runs/churn/{name}/dataset.json"
    manifest = f"{prefix}/manifest/split_manifest.json"
    splits = [f"{prefix}/{n}/{n}.csv" for n in ("test", "train", "validation")]
    assert sorted(written) == sorted([profile, manifest, *splits])
    assert json.loads(written.pop(profile))["class_counts"] == {"no": 4293, "yes": 707}
    assert json.loads(written.pop(manifest))["rows"] == run["splits"]["rows"]
    assert run["splits"]["manifest"] == f"s3://{ARTIFACTS}/{manifest}"
    assert run["dataset"]["profile"] == f"s3://{ARTIFACTS}/{profile}"
    rows = {n: written[f"{prefix}/{n}/{n}.csv"].decode().splitlines() for n in ("train", "validation", "test")}
    assert all(lines[0] == CHURN.decode().splitlines()[0] for lines in rows.values())  # header in every split
    assert {n: len(lines) - 1 for n, lines in rows.items()} == run["splits"]["rows"]
    assert sum(run["splits"]["rows"].values()) == run["dataset"]["rows"] == 5000
    assert run["splits"]["train"] == f"s3://{ARTIFACTS}/{prefix}/train/"

    request = run["training"]
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]}
    assert channels == {n: f"s3://{ARTIFACTS}/{prefix}/{n}/" for n in ("train", "validation", "test", "manifest")}
    assert request["TrainingJobName"] == run["names"]["TrainingJobName"]
    assert run["names"]["EndpointName"] == "sagepipe-churn" and run["champion"] is None and run["tuning"] is None
    assert run["dataset"]["version_id"] == execution["dataset"]["version_id"] and run["dataset"]["target"] == "churn"
    assert sm.called("DescribeEndpoint") == [{"EndpointName": "sagepipe-churn"}]  # the champion lookup
    json.dumps(run, allow_nan=False)  # a Lambda result: valid JSON


def test_validate_data_finds_the_champion_and_hands_it_to_training() -> None:
    s3, sm = FakeS3(), FakeSageMaker()
    champion_url = f"s3://{ARTIFACTS}/models/churn/v1/output/model.tar.gz"
    sm.models["v1"] = {"ModelName": "v1", "PrimaryContainer": {"Image": IMAGE, "ModelDataUrl": champion_url}}
    sm.endpoint_configs["v1"] = {"EndpointConfigName": "v1", "ProductionVariants": [{"ModelName": "v1"}]}
    sm.endpoints["sagepipe-churn"] = {
        "EndpointName": "sagepipe-churn",
        "EndpointConfigName": "v1",
        "EndpointStatus": "InService",
    }
    execution, name = execution_input(s3, "datasets/churn/churn.csv", CHURN)
    run = steps.validate_data(execution, execution_name=name, s3=s3, sm=sm, settings=SETTINGS)
    assert run["champion"] == {"endpoint_config_name": "v1", "model_data_url": champion_url}
    channels = {c["ChannelName"]: c for c in run["training"]["InputDataConfig"]}
    assert channels["champion"]["DataSource"]["S3DataSource"]["S3Uri"] == champion_url


def test_validate_data_quarantines_the_exact_version_of_a_bad_csv() -> None:
    s3 = FakeS3()
    key, bad = "datasets/churn/semicolons.csv", b"a;b;label\n1;2;yes\n"
    execution, name = execution_input(s3, key, bad)
    s3.put_object(Bucket=DATA, Key=key, Body=CHURN)  # a newer, good version of the same key
    with pytest.raises(InvalidDatasetError) as err:
        steps.validate_data(execution, execution_name=name, s3=s3, sm=FakeSageMaker(), settings=SETTINGS)
    q = f"quarantine/churn/{name}"
    assert err.value.reason == "delimiter"
    assert err.value.details["quarantine"] == {
        "object": f"s3://{ARTIFACTS}/{q}/semicolons.csv",
        "reason": f"s3://{ARTIFACTS}/{q}/reason.json",
    }
    assert s3.objects[ARTIFACTS, f"{q}/semicolons.csv"] == bad  # the version the run was for, not the newer one
    reason = json.loads(s3.objects[ARTIFACTS, f"{q}/reason.json"])
    assert reason["check"] == "delimiter" and reason["source"]["version_id"] == execution["dataset"]["version_id"]
    assert s3.objects[DATA, key] == CHURN  # nothing deleted
    assert not any(k.startswith("runs/") for _, k in s3.objects)  # no splits


def test_validate_data_rejects_an_object_over_the_configured_size_before_reading_it() -> None:
    s3 = FakeS3()
    s3.put_object(Bucket=DATA, Key="datasets/churn/sagepipe.json", Body=b'{"max_dataset_bytes": 1000}')
    execution, name = execution_input(s3, "datasets/churn/churn.csv", CHURN)
    with pytest.raises(InvalidDatasetError) as err:
        steps.validate_data(execution, execution_name=name, s3=s3, sm=FakeSageMaker(), settings=SETTINGS)
    assert err.value.reason == "too_large" and err.value.details["bytes"] == len(CHURN)
    data_reads = [c for c in s3.called("GetObject") if c["Key"] == "datasets/churn/churn.csv"]
    assert data_reads == []  # HeadObject decided: the body was never downloaded


def test_validate_data_invalid_config_is_quarantined_as_invalid_config() -> None:
    s3 = FakeS3()
    s3.put_object(Bucket=DATA, Key="datasets/churn/sagepipe.json", Body=b'{"metric": "no-such-metric"}')
    execution, name = execution_input(s3, "datasets/churn/churn.csv", CHURN)
    with pytest.raises(InvalidConfigError) as err:
        steps.validate_data(execution, execution_name=name, s3=s3, sm=FakeSageMaker(), settings=SETTINGS)
    assert err.value.details["errors"]
    assert json.loads(s3.objects[ARTIFACTS, f"quarantine/churn/{name}/reason.json"])["reason"] == "invalid_config"


def test_validate_data_invalid_model_name_is_quarantined() -> None:
    s3 = FakeS3()
    execution, name = execution_input(s3, "datasets/bad.name/churn.csv", CHURN, model="bad.name")
    with pytest.raises(InvalidDatasetError) as err:
        steps.validate_data(execution, execution_name=name, s3=s3, sm=FakeSageMaker(), settings=SETTINGS)
    assert err.value.reason == "invalid_model_name"
    assert (ARTIFACTS, f"quarantine/bad.name/{name}/churn.csv") in s3.objects


# ------------------------------------------------------------------------------------- evaluate
ARTIFACT = f"s3://{ARTIFACTS}/models/churn/job-1/output/model.tar.gz"


def trained_state(s3: FakeS3, sm: FakeSageMaker, evaluation: Any, job_metrics: dict[str, float]) -> EvaluateInput:
    """A model.tar.gz with ``evaluation`` (None: no evaluation.json) and a Completed training job."""
    files = {"model.joblib": b"\x80\x04fake"}
    if evaluation is not None:
        files["evaluation.json"] = json.dumps(evaluation).encode()
    s3.objects[ARTIFACTS, "models/churn/job-1/output/model.tar.gz"] = tar_gz(files)
    sm.training_jobs["job-1"] = {
        "TrainingJobName": "job-1",
        "TrainingJobStatus": "Completed",
        "ModelArtifacts": {"S3ModelArtifacts": ARTIFACT},
        "FinalMetricDataList": [{"MetricName": m, "Value": v} for m, v in job_metrics.items()],
    }
    config = load_event("evaluate.json")["config"]
    return {"config": config, "training": {"TrainingJobName": "job-1", "ModelArtifacts": ARTIFACT}}


def test_evaluate_model_deploys_a_candidate_that_meets_the_threshold() -> None:
    s3, sm = FakeS3(), FakeSageMaker()
    report = {
        "metrics": {"test": {"auc": 0.9, "accuracy": 0.88}, "train": {"auc": 0.95}},
        "champion": {"status": "absent"},
    }
    state = trained_state(s3, sm, report, {"test:auc": 0.9, "train:auc": 0.95})
    decision = steps.evaluate_model(state, s3=s3, sm=sm)
    assert (decision["decision"], decision["deploy"], decision["rule"]) == ("deploy", True, "threshold")
    assert decision["challenger"] == 0.9 and decision["threshold"] == 0.75 and decision["metric"] == "auc"
    assert decision.get("metrics") == report["metrics"]
    assert sm.called("DescribeTrainingJob") == [{"TrainingJobName": "job-1"}]


def test_evaluate_model_rejects_when_the_job_metric_disagrees_with_the_report() -> None:
    s3, sm = FakeS3(), FakeSageMaker()
    state = trained_state(s3, sm, {"metrics": {"test": {"auc": 0.9}}}, {"test:auc": 0.6})
    decision = steps.evaluate_model(state, s3=s3, sm=sm)
    assert (decision["decision"], decision["rule"]) == ("reject", "fail_closed") and "disagrees" in decision["reason"]


@pytest.mark.parametrize(
    ("evaluation", "artifact_present", "reason_part"),
    [
        (None, True, "evaluation.json is not in model.tar.gz"),
        ([1, 2], True, "evaluation.json is not a JSON object"),
        ({"metrics": {}}, False, "NoSuchKey"),
    ],
)
def test_evaluate_model_fails_closed_on_a_missing_or_bad_report(
    evaluation: Any, artifact_present: bool, reason_part: str
) -> None:
    s3, sm = FakeS3(), FakeSageMaker()
    state = trained_state(s3, sm, evaluation, {"test:auc": 0.9})
    if not artifact_present:
        del s3.objects[ARTIFACTS, "models/churn/job-1/output/model.tar.gz"]
    decision = steps.evaluate_model(state, s3=s3, sm=sm)
    assert (decision["decision"], decision["deploy"], decision["rule"]) == ("reject", False, "fail_closed")
    assert reason_part in decision["reason"]


def test_evaluate_model_output_is_json_even_with_nan_in_the_report() -> None:
    s3, sm = FakeS3(), FakeSageMaker()
    state = trained_state(s3, sm, {"metrics": {"test": {"auc": math.nan, "f1": math.inf}}}, {"test:auc": 0.9})
    decision = steps.evaluate_model(state, s3=s3, sm=sm)
    assert decision["decision"] == "reject" and decision.get("metrics") == {"test": {"auc": None, "f1": None}}
    json.dumps(decision, allow_nan=False)


# ------------------------------------------------------------------------------------- register
def decision(**overrides: Any) -> GateDecision:
    base: GateDecision = {
        "deploy": True,
        "decision": "deploy",
        "rule": "threshold",
        "reason": "no champion; challenger test auc 0.9000 meets threshold 0.75",
        "metric": "auc",
        "higher_is_better": True,
        "threshold": 0.75,
        "challenger": 0.9,
        "champion": None,
        "champion_status": "absent",
        "metrics": {"test": {"auc": 0.9}},
    }
    return cast(GateDecision, {**base, **overrides})


def register_input(s3: FakeS3, approval: str = "auto") -> RegisterInput:
    s3.objects[ARTIFACTS, "models/churn/job-1/output/model.tar.gz"] = tar_gz(
        {"model.joblib": b"x", "evaluation.json": b'{"metrics": {}}', "schema.json": b'{"features": []}'}
    )
    config = {**load_event("evaluate.json")["config"], "approval": approval}
    run = {
        "dataset": {"bucket": DATA, "key": "datasets/churn/churn.csv", "etag": "abc", "version_id": "v1", "size": 9},
        "splits": {n: f"s3://{ARTIFACTS}/runs/churn/x/splits/{n}/" for n in ("train", "validation", "test")},
    }
    return {
        "model": "churn",
        "config": config,
        "run": cast(RunRecord, run),
        "trained": {"TrainingJobName": "job-1", "ModelArtifacts": ARTIFACT},
        "decision": decision(),
        "execution_name": "churn-churn-0123456789",
    }


@pytest.mark.parametrize(("approval", "status"), [("auto", "Approved"), ("manual", "PendingManualApproval")])
def test_register_model_creates_the_group_once_and_a_package_per_candidate(approval: str, status: str) -> None:
    s3, sm = FakeS3(), FakeSageMaker()
    first = steps.register_model(register_input(s3, approval), sm=sm, s3=s3, settings=SETTINGS)
    second = steps.register_model(register_input(s3, approval), sm=sm, s3=s3, settings=SETTINGS)
    assert len(sm.called("CreateModelPackageGroup")) == 1 and list(sm.groups) == [first["ModelPackageGroupName"]]
    assert first["ModelPackageArn"] != second["ModelPackageArn"] and first["approval"] == approval
    package = sm.packages[first["ModelPackageArn"]]
    assert package["ModelApprovalStatus"] == status
    [container] = package["InferenceSpecification"]["Containers"]
    assert (container["Image"], container["ModelDataUrl"]) == (IMAGE, ARTIFACT)
    registry_prefix = "models/churn/job-1/registry"
    assert package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"] == (
        f"s3://{ARTIFACTS}/{registry_prefix}/evaluation.json"
    )
    assert s3.objects[ARTIFACTS, f"{registry_prefix}/schema.json"] == b'{"features": []}'  # copied out of the tarball
    assert package["CustomerMetadataProperties"]["data_key"] == "datasets/churn/churn.csv"


def test_register_model_records_the_chosen_candidate_and_the_runner_up() -> None:
    """The package metadata and registry/registration.json name the candidate train.py chose and the
    runner-up (evaluation.json model_selection). Before, neither did."""
    from tests.unit.test_registry_approval import SELECTION

    s3, sm = FakeS3(), FakeSageMaker()
    state = register_input(s3)
    s3.objects[ARTIFACTS, "models/churn/job-1/output/model.tar.gz"] = tar_gz(
        {
            "model.joblib": b"x",
            "evaluation.json": json.dumps({"metrics": {}, "model_selection": SELECTION}).encode(),
            "schema.json": b'{"features": []}',
        }
    )
    out = steps.register_model(state, sm=sm, s3=s3, settings=SETTINGS)
    meta = sm.packages[out["ModelPackageArn"]]["CustomerMetadataProperties"]
    assert (meta["model_chosen"], meta["model_chosen_family"], meta["model_runner_up"]) == ("linear", "linear", "gbm")
    record = json.loads(s3.objects[ARTIFACTS, "models/churn/job-1/registry/registration.json"])
    assert record["model_selection"]["chosen"] == "linear" and record["model_selection"]["runner_up"] == "gbm"
    assert record["model_selection"]["runner_up_validation"] == 0.9034


ADDED_NOISE = {"added": ["noise"], "removed": [], "retyped": [], "counts": {"added": 1, "removed": 0, "retyped": 0}}


def test_register_model_sends_a_feature_set_change_to_manual_approval() -> None:
    """Issue 11 item 2: under approval auto, a candidate the gate marks approval_required (its feature set
    changed) is registered PendingManualApproval and routed to RequestApproval ($.registered.approval)."""
    s3, sm = FakeS3(), FakeSageMaker()
    state = register_input(s3, "auto")
    state["decision"] = decision(schema_change=ADDED_NOISE, approval_required=True)
    result = steps.register_model(state, sm=sm, s3=s3, settings=SETTINGS)
    assert result["approval"] == "manual"
    assert sm.packages[result["ModelPackageArn"]]["ModelApprovalStatus"] == "PendingManualApproval"
    report = s3.objects[ARTIFACTS, "models/churn/job-1/report.html"].decode()
    assert "PendingManualApproval at registration" in report


def test_request_approval_shows_the_schema_diff() -> None:
    s3, events = FakeS3(), FakeEventBridge()
    state = approval_input()
    state["decision"] = decision(schema_change=ADDED_NOISE, approval_required=True)
    detail = steps.request_approval(state, s3=s3, events=events, settings=SETTINGS)
    assert detail["schema_change"] == ADDED_NOISE
    assert json.loads(events.entries[0]["Detail"])["schema_change"] == ADDED_NOISE
    plain = steps.request_approval(approval_input(), s3=FakeS3(), events=FakeEventBridge(), settings=SETTINGS)
    assert plain["schema_change"] is None  # approval asked by the config, not by a schema change


class RacingSageMaker(FakeSageMaker):
    """DescribeModelPackageGroup answers "does not exist" although another run has just created the group."""

    def describe_model_package_group(self, **params: Any) -> dict[str, Any]:
        self._call("DescribeModelPackageGroup", params)
        name = params["ModelPackageGroupName"]
        raise _error("ValidationException", f"ModelPackageGroup {name} does not exist.", "DescribeModelPackageGroup")


def test_register_model_create_group_race_reuses_the_group() -> None:
    """Another run created the group between our Describe and Create: its 'already exists' is not an error."""
    s3, sm = FakeS3(), RacingSageMaker()
    name = naming.model_package_group_name("sagepipe", "churn")
    sm.groups[name] = {"ModelPackageGroupName": name}  # what the other run made
    out = steps.register_model(register_input(s3), sm=sm, s3=s3, settings=SETTINGS)
    assert len(sm.called("CreateModelPackageGroup")) == 1  # tried, answered "already exists"
    assert out["ModelPackageGroupName"] == name and len(sm.packages) == 1


# --------------------------------------------------------------------------------------- deploy
def deploy_input(config_name: str = "churn-v2") -> DeployInput:
    names = {"TrainingJobName": config_name, "ModelName": config_name, "EndpointConfigName": config_name}
    return {
        "names": cast(Any, {**names, "EndpointName": "sagepipe-churn"}),
        "config": load_event("evaluate.json")["config"],
        "training": {"TrainingJobName": config_name, "ModelArtifacts": ARTIFACT},
    }


def test_deploy_model_creates_the_endpoint_and_its_rollback_alarms() -> None:
    sm, cw = FakeSageMaker(), FakeCloudWatch()
    out = steps.deploy_model(deploy_input(), sm=sm, cw=cw, settings=SETTINGS)
    assert out == {
        "EndpointName": "sagepipe-churn",
        "EndpointConfigName": "churn-v2",
        "ModelName": "churn-v2",
        "action": "create",
        "previous_endpoint_config_name": None,
        "live": None,
        "regate": None,
    }
    assert sm.models["churn-v2"]["PrimaryContainer"]["ModelDataUrl"] == ARTIFACT
    assert sm.endpoints["sagepipe-churn"]["EndpointConfigName"] == "churn-v2"
    assert set(cw.alarms) == {"sagepipe-churn-invocation-5xx", "sagepipe-churn-model-latency"}
    assert cw.alarms["sagepipe-churn-model-latency"]["Threshold"] == 1000.0 * 1000.0  # ms → µs


def test_deploy_model_updates_blue_green_with_every_alarm() -> None:
    sm, cw = FakeSageMaker(), FakeCloudWatch()
    steps.deploy_model(deploy_input("churn-v1"), sm=sm, cw=cw, settings=SETTINGS)
    sm.endpoints["sagepipe-churn"]["EndpointStatus"] = "InService"
    out = steps.deploy_model(deploy_input("churn-v2"), sm=sm, cw=cw, settings=SETTINGS)
    assert (out["action"], out["previous_endpoint_config_name"]) == ("update", "churn-v1")
    [update] = sm.called("UpdateEndpoint")
    alarms = [a["AlarmName"] for a in update["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]]
    assert alarms == ["sagepipe-churn-invocation-5xx", "sagepipe-churn-model-latency", "ops-extra-alarm"]
    assert "BlueGreenUpdatePolicy" in update["DeploymentConfig"]


def test_deploy_model_retry_after_a_partial_create_is_idempotent() -> None:
    """A retried DeployModel finds its Model and EndpointConfig already there and goes on."""
    sm, cw = FakeSageMaker(), FakeCloudWatch()
    steps.deploy_model(deploy_input(), sm=sm, cw=cw, settings=SETTINGS)
    sm.endpoints["sagepipe-churn"]["EndpointStatus"] = "InService"
    out = steps.deploy_model(deploy_input(), sm=sm, cw=cw, settings=SETTINGS)
    assert out["action"] == "noop" and len(sm.models) == 1 and sm.called("UpdateEndpoint") == []


@pytest.mark.parametrize("status", ["Creating", "Updating", "RollingBack", "SystemUpdating"])
def test_deploy_model_busy_endpoint_is_retried_by_the_asl(status: str) -> None:
    sm = FakeSageMaker()
    sm.endpoints["sagepipe-churn"] = {
        "EndpointName": "sagepipe-churn",
        "EndpointConfigName": "old",
        "EndpointStatus": status,
    }
    with pytest.raises(EndpointBusyError) as err:
        steps.deploy_model(deploy_input(), sm=sm, cw=FakeCloudWatch(), settings=SETTINGS)
    assert err.value.details["status"] == status and sm.called("UpdateEndpoint") == []


def test_deploy_model_failed_endpoint_is_left_for_an_operator() -> None:
    sm = FakeSageMaker()
    sm.endpoints["sagepipe-churn"] = {
        "EndpointName": "sagepipe-churn",
        "EndpointConfigName": "old",
        "EndpointStatus": "Failed",
        "FailureReason": "bad image",
    }
    with pytest.raises(DeploymentFailedError, match="bad image"):
        steps.deploy_model(deploy_input(), sm=sm, cw=FakeCloudWatch(), settings=SETTINGS)
    assert "sagepipe-churn" in sm.endpoints and sm.called("UpdateEndpoint") == []  # never deleted


# ------------------------------------------------------------------- the newest data wins (re-check)
def run_record(key: str, last_modified: str, champion: str | None, *, tuning: bool = False) -> dict[str, Any]:
    """A ValidateData result for a data version of ``key`` written at ``last_modified``.

    Gated against ``champion`` (an EndpointConfigName the fake serves, or None).
    """
    config = load_event("evaluate.json")["config"]
    if tuning:
        ranges = {"max_iter": {"type": "integer", "min_value": 50, "max_value": 200, "scaling": "Auto"}}
        config = {
            **config,
            "tuning": {
                "strategy": "Random",
                "max_jobs": 3,
                "max_parallel_jobs": 1,
                "objective": None,
                "parameter_ranges": ranges,
            },
        }
    splits = {s: f"s3://a/runs/churn/x/splits/{s}/" for s in ("train", "validation", "test")}
    request = training.build_request(
        job_name="churn-first",
        config=config,
        split_prefixes=splits,
        champion_model_data_url=f"s3://a/models/{champion}/model.tar.gz" if champion else None,
        output_path="s3://a/models/churn/",
        code_uri="s3://a/code/sourcedir.tar.gz",
        region="us-east-1",
    )
    dataset = {"bucket": "data", "key": key, "etag": "e", "version_id": None, "size": 10}
    return {
        "dataset": {**dataset, "last_modified": last_modified},
        "config": config,
        "splits": {**splits, "rows": {}, "manifest": "s3://a/m.json"},
        "champion": (
            {"endpoint_config_name": champion, "model_data_url": f"s3://a/models/{champion}/model.tar.gz"}
            if champion
            else None
        ),
        "training": request,
        "tuning": (
            training.build_tuning_request(job_name="churn-first-t", training=request, config=config) if tuning else None
        ),
        "names": {
            "TrainingJobName": "x",
            "ModelName": "x",
            "EndpointConfigName": "x",
            "EndpointName": "sagepipe-churn",
        },
    }


def deploy_run(sm: FakeSageMaker, config_name: str, run: dict[str, Any]) -> Any:
    """DeployModel with the ASL's full payload; an update the fake started is then taken as done."""
    state = {**deploy_input(config_name), "run": run, "model": "churn", "execution_name": f"exec-{config_name}"}
    out = steps.deploy_model(cast(Any, state), sm=sm, cw=FakeCloudWatch(), settings=SETTINGS)
    if sm.endpoints.get("sagepipe-churn", {}).get("EndpointStatus") in {"Creating", "Updating"}:
        sm.endpoints["sagepipe-churn"]["EndpointStatus"] = "InService"
    return out


def test_the_model_carries_the_data_version_it_was_trained_on() -> None:
    sm = FakeSageMaker()
    deploy_run(sm, "churn-v1", run_record("datasets/churn/a.csv", "2026-12-03T10:00:00Z", None))
    env = sm.models["churn-v1"]["PrimaryContainer"]["Environment"]
    assert env[deploy.DATA_KEY_ENV] == "datasets/churn/a.csv"
    assert env[deploy.DATA_LAST_MODIFIED_ENV] == "2026-12-03T10:00:00Z"
    assert env["SAGEMAKER_PROGRAM"] == "inference.py"


@pytest.mark.parametrize(
    ("older_key", "older_time"),
    [("datasets/churn/z.csv", "2026-12-03T09:59:59Z"), ("datasets/churn/a.csv", "2026-12-03T10:00:00Z")],
    ids=["earlier-second", "same-second-lower-key"],
)
def test_an_older_data_version_never_replaces_a_newer_live_one(older_key: str, older_time: str) -> None:
    """The newer version (b.csv at 10:00:00) deployed first; the older run finishes last and is superseded."""
    sm = FakeSageMaker()
    deploy_run(sm, "churn-new", run_record("datasets/churn/b.csv", "2026-12-03T10:00:00Z", None))
    out = deploy_run(sm, "churn-old", run_record(older_key, older_time, "churn-new"))
    assert out["action"] == "superseded" and sm.called("UpdateEndpoint") == []
    assert sm.endpoints["sagepipe-churn"]["EndpointConfigName"] == "churn-new"
    live = out["live"]
    assert live is not None
    assert (live["EndpointConfigName"], live["data_key"], live["data_last_modified"]) == (
        "churn-new",
        "datasets/churn/b.csv",
        "2026-12-03T10:00:00Z",
    )


def test_a_newer_data_version_gated_against_the_live_model_replaces_it() -> None:
    sm = FakeSageMaker()
    deploy_run(sm, "churn-v1", run_record("datasets/churn/a.csv", "2026-12-03T10:00:00Z", None))
    out = deploy_run(sm, "churn-v2", run_record("datasets/churn/b.csv", "2026-12-03T10:00:01Z", "churn-v1"))
    assert (out["action"], out["regate"]) == ("update", None)
    assert sm.endpoints["sagepipe-churn"]["EndpointConfigName"] == "churn-v2"


@pytest.mark.parametrize("tuning", [False, True])
def test_a_candidate_gated_against_another_model_than_the_live_one_is_evaluated_again(tuning: bool) -> None:
    """Both runs saw no endpoint at the gate; the older one created it: the newer one trains again against it."""
    sm = FakeSageMaker()
    deploy_run(sm, "churn-v1", run_record("datasets/churn/a.csv", "2026-12-03T10:00:00Z", None))
    run = run_record("datasets/churn/b.csv", "2026-12-03T10:00:01Z", None, tuning=tuning)
    out = deploy_run(sm, "churn-v2", run)
    assert out["action"] == "regate" and sm.called("UpdateEndpoint") == []
    regate = out["regate"]
    assert regate is not None and regate["regates"] == 1
    assert regate["champion"] == {"endpoint_config_name": "churn-v1", "model_data_url": ARTIFACT}
    names = {**naming.version_names("churn", "exec-churn-v2:regate1"), "EndpointName": "sagepipe-churn"}
    assert regate["names"] == names
    assert regate["training"]["TrainingJobName"] == names["TrainingJobName"] != run["training"]["TrainingJobName"]
    channels = {c["ChannelName"]: c for c in regate["training"]["InputDataConfig"]}
    assert channels["champion"]["DataSource"]["S3DataSource"]["S3Uri"] == ARTIFACT
    assert channels["champion"]["ContentType"] == "application/x-tar"
    before = {c["ChannelName"]: c for c in run["training"]["InputDataConfig"]}
    assert {k: v for k, v in channels.items() if k != "champion"} == before
    if tuning:
        assert regate["tuning"] is not None
        tuning_name = naming.tuning_job_name("churn", "exec-churn-v2:regate1")
        assert regate["tuning"]["HyperParameterTuningJobName"] == tuning_name
    else:
        assert regate["tuning"] is None


def test_a_run_whose_champion_keeps_changing_deploys_nothing() -> None:
    sm = FakeSageMaker()
    deploy_run(sm, "churn-v1", run_record("datasets/churn/a.csv", "2026-12-03T10:00:00Z", None))
    run = {**run_record("datasets/churn/b.csv", "2026-12-03T10:00:01Z", "churn-v0"), "regates": steps.MAX_REGATES}
    with pytest.raises(ChampionKeptChangingError) as err:
        deploy_run(sm, "churn-v2", run)
    assert err.value.details == {"regates": steps.MAX_REGATES, "live": "churn-v1"}
    assert sm.called("UpdateEndpoint") == [] and sm.endpoints["sagepipe-churn"]["EndpointConfigName"] == "churn-v1"


def test_a_live_model_without_a_recorded_data_version_is_not_newer() -> None:
    """An endpoint deployed before the data version was recorded: the candidate gated against it updates it."""
    sm = FakeSageMaker()
    steps.deploy_model(deploy_input("churn-v1"), sm=sm, cw=FakeCloudWatch(), settings=SETTINGS)  # no run: no data
    sm.endpoints["sagepipe-churn"]["EndpointStatus"] = "InService"
    out = deploy_run(sm, "churn-v2", run_record("datasets/churn/a.csv", "2000-01-01T00:00:00Z", "churn-v1"))
    assert out["action"] == "update"


def test_data_order_is_last_modified_to_the_second_then_the_key() -> None:
    t = datetime(2026, 12, 3, 10, 0, 0, 999_999, tzinfo=UTC)
    assert deploy.DataOrder.of(t, "k") == deploy.DataOrder("2026-12-03T10:00:00Z", "k")
    assert deploy.DataOrder.of("2026-12-03T11:00:00+01:00", "k") == deploy.DataOrder("2026-12-03T10:00:00Z", "k")
    later = t + timedelta(seconds=1)
    assert deploy.DataOrder.of(t, "a") < deploy.DataOrder.of(t, "b") < deploy.DataOrder.of(later, "a")
    with pytest.raises(TypeError):
        deploy.DataOrder.of(1234, "k")


# ------------------------------------------------------------------------------------- approval
def approval_input() -> ApprovalInput:
    return {
        "task_token": "AQCEAAAAKgAAAA-token",
        "model": "churn",
        "execution_name": "churn-churn-0123456789",
        "registered": {
            "ModelPackageArn": "arn:aws:sagemaker:us-east-1:123456789012:model-package/sagepipe-churn/1",
            "ModelPackageGroupName": "sagepipe-churn",
            "approval": "manual",
        },
        "decision": decision(),
    }


def test_request_approval_keeps_the_token_in_s3_and_announces_without_it() -> None:
    s3, events = FakeS3(), FakeEventBridge()
    detail = steps.request_approval(approval_input(), s3=s3, events=events, settings=SETTINGS)
    stored = json.loads(s3.objects[ARTIFACTS, "approvals/churn/churn-churn-0123456789.json"])
    assert stored["task_token"] == "AQCEAAAAKgAAAA-token"
    [entry] = events.entries
    assert entry["DetailType"] == "Pipeline Approval Needed" and entry["Source"] == SETTINGS.app_source
    assert json.loads(entry["Detail"]) == detail and "AQCEAAAAKgAAAA-token" not in entry["Detail"]
    assert detail["outcome"] == "approval_needed" and detail["model_package_arn"].endswith("/1")


def test_request_approval_failed_event_is_an_error() -> None:
    events = FakeEventBridge()
    events.failed = True
    with pytest.raises(ApprovalError, match="Approval Needed"):
        steps.request_approval(approval_input(), s3=FakeS3(), events=events, settings=SETTINGS)


# ------------------------------------------------------------------------------------------ ports
@pytest.mark.parametrize(
    ("port", "service", "fake"),
    [
        (ports.S3Port, "s3", FakeS3),
        (ports.SageMakerPort, "sagemaker", FakeSageMaker),
        (ports.StepFunctionsPort, "stepfunctions", FakeStepFunctions),
        (ports.CloudWatchPort, "cloudwatch", FakeCloudWatch),
        (ports.EventBridgePort, "events", FakeEventBridge),
    ],
)
def test_ports_name_real_client_methods_and_the_fakes_implement_them(port: type, service: str, fake: type) -> None:
    """Every port method is a method of the real boto3 client (so the handlers' clients satisfy it), and the fake."""
    members = [name for name in vars(port) if not name.startswith("_")]
    session = botocore.session.get_session()
    client = session.create_client(service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    assert members and all(callable(getattr(client, name, None)) for name in members), members
    assert all(callable(getattr(fake, name, None)) for name in members), members
