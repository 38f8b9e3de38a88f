"""The Lambda handlers (``functions/<name>/app.py``) called for real with the sample events and a fake
context, against moto (``mock_aws``). Where moto's SageMaker does not behave like AWS (canned training
metrics, no UpdateEndpoint, canned InvokeEndpoint) the handler's client is stubbed with botocore's
``Stubber``."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import html
import io
import json
import re
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from sagepipe_core import naming
from sagepipe_core.errors import EndpointBusyError, InvalidDatasetError
from tests.conftest import ACCOUNT, REGION, load_event, tar_gz

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
ASL = REPO / "statemachines" / "training_pipeline.asl.json"
CHURN = REPO / "examples" / "data" / "churn.csv"
DATA = "sagepipe-data-123456789012"
ARTIFACTS = "sagepipe-artifacts-123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/sagepipe-sagemaker"
SM_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
EXEC_RE = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
NOW = dt.datetime(2024, 11, 18, tzinfo=dt.UTC)
EP_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/sagepipe-churn"
EPC_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint-config/churn"


@pytest.fixture()
def stack(aws, monkeypatch):
    """Buckets (versioned) and a state machine built from the real ASL file; the functions' env vars."""
    from sagepipe_core.model_code import build

    s3 = boto3.client("s3")
    for bucket in (DATA, ARTIFACTS):
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    # what the stack's ModelCode custom resource publishes at deploy time
    s3.put_object(Bucket=ARTIFACTS, Key="code/sourcedir.tar.gz", Body=build(REPO / "model"))
    iam = boto3.client("iam")
    role = iam.create_role(
        RoleName="sfn",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "states.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ],
            }
        ),
    )["Role"]["Arn"]
    dlq = boto3.client("sqs").create_queue(QueueName="sagepipe-trigger-dlq")["QueueUrl"]
    sfn = boto3.client("stepfunctions")
    arn = sfn.create_state_machine(name="TrainingPipeline", definition=ASL.read_text(), roleArn=role)["stateMachineArn"]
    env = {
        "STATE_MACHINE_ARN": arn,
        "DATA_BUCKET": DATA,
        "ARTIFACTS_BUCKET": ARTIFACTS,
        "SCHEDULED_MODEL_NAME": "churn",
        "RESOURCE_PREFIX": "sagepipe",
        "APP_SOURCE": "sagepipe",
        "POLL_SECONDS": "1",
        "MAX_POLLS": "5",
        "MODEL_CODE_S3_URI": f"s3://{ARTIFACTS}/code/sourcedir.tar.gz",
        "INFERENCE_IMAGE": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3",
        "SAGEMAKER_ROLE_ARN": ROLE,
        "DEAD_LETTER_QUEUE_URL": dlq,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return {"s3": s3, "sfn": sfn, "state_machine_arn": arn, "dlq": dlq}


def _dead_letters(stack) -> list[dict]:
    sqs = boto3.client("sqs")
    out = sqs.receive_message(QueueUrl=stack["dlq"], MaxNumberOfMessages=10, MessageAttributeNames=["All"])
    return [
        {**json.loads(m["Body"]), "ERROR_TYPE": m["MessageAttributes"]["ERROR_TYPE"]["StringValue"]}
        for m in out.get("Messages", [])
    ]


def _executions(stack):
    return stack["sfn"].list_executions(stateMachineArn=stack["state_machine_arn"])["executions"]


# ---------------------------------------------------------------------------------------- start
def test_start_same_event_twice_one_execution(stack, load_handler, lambda_context):
    app = load_handler("start")
    event = load_event("start_s3_eventbridge.json")
    first = app.lambda_handler(copy.deepcopy(event), lambda_context)["results"]
    second = app.lambda_handler(copy.deepcopy(event), lambda_context)["results"]
    assert [r["status"] for r in first] == ["started"]
    assert len(_executions(stack)) == 1
    assert second[0]["execution_name"] == first[0]["execution_name"]
    assert second[0]["execution_arn"] == first[0]["execution_arn"]
    assert second[0]["status"] == "already_started"


def test_start_redelivery_after_run_finished_is_already_started(stack, load_handler, lambda_context):
    app = load_handler("start")
    event = load_event("start_s3_eventbridge.json")
    first = app.lambda_handler(copy.deepcopy(event), lambda_context)["results"][0]
    stack["sfn"].stop_execution(executionArn=first["execution_arn"])
    second = app.lambda_handler(copy.deepcopy(event), lambda_context)["results"][0]
    assert second["status"] == "already_started"
    assert second["execution_arn"] == first["execution_arn"]
    assert len(_executions(stack)) == 1


@pytest.mark.parametrize(
    "name, key",
    [
        ("start_s3_eventbridge.json", "datasets/churn/churn - Copy (2).csv"),
        ("start_s3_notification.json", "datasets/churn/c++.csv"),
    ],
)
def test_start_decodes_keys_and_passes_input(stack, load_handler, lambda_context, name, key):
    app = load_handler("start")
    [result] = app.lambda_handler(load_event(name), lambda_context)["results"]
    assert result["status"] == "started" and result["key"] == key and result["model"] == "churn"
    assert EXEC_RE.match(result["execution_name"])
    desc = stack["sfn"].describe_execution(executionArn=result["execution_arn"])
    assert desc["name"] == result["execution_name"]
    doc = json.loads(desc["input"])
    assert doc["dataset"]["key"] == key and doc["poll_seconds"] == 1 and doc["max_polls"] == 5


def test_start_zero_byte_folder_skipped(stack, load_handler, lambda_context):
    app = load_handler("start")
    event = load_event("start_s3_eventbridge.json")
    event["detail"]["object"].update(key="datasets/churn/2024/", size=0)
    [result] = app.lambda_handler(event, lambda_context)["results"]
    assert result["status"] == "skipped" and result["key"] == "datasets/churn/2024/" and result["reason"]
    assert _executions(stack) == []


def test_start_long_model_name(stack, load_handler, lambda_context):
    app = load_handler("start")
    model = "m" + "odel-with-a-very-long-name_" * 5
    model = (model * 2)[:120]
    assert len(model) == 120
    event = load_event("start_s3_eventbridge.json")
    event["detail"]["object"]["key"] = f"datasets/{model}/data.csv"
    [result] = app.lambda_handler(event, lambda_context)["results"]
    assert result["status"] == "started" and result["model"] == model
    name = result["execution_name"]
    assert len(name) <= 80 and EXEC_RE.match(name)
    sm_names = [*naming.version_names(model, name).values(), naming.endpoint_name("sagepipe", model)]
    assert all(len(n) <= 63 and SM_RE.match(n) for n in sm_names), sm_names


def test_start_retrain_resolves_latest_csv(stack, load_handler, lambda_context):
    s3 = stack["s3"]
    s3.put_object(Bucket=DATA, Key="datasets/churn/old.csv", Body=b"a,b\n1,2\n")
    s3.put_object(Bucket=DATA, Key="datasets/churn/new.csv", Body=b"a,b\n1,3\n")
    s3.put_object(Bucket=DATA, Key="datasets/churn/sagepipe.json", Body=b"{}")
    app = load_handler("start")
    [result] = app.lambda_handler(load_event("start_retrain_requested.json"), lambda_context)["results"]
    assert result["status"] == "started" and result["key"] in {"datasets/churn/old.csv", "datasets/churn/new.csv"}
    [sched] = app.lambda_handler(load_event("start_schedule.json"), lambda_context)["results"]
    assert sched["status"] == "started" and sched["execution_name"] != result["execution_name"]
    assert len(_executions(stack)) == 2


def test_start_classic_notification_one_good_one_malformed_record(stack, load_handler, lambda_context):
    """The good record starts; the malformed one is dead-lettered with its reason; nothing raises."""
    app = load_handler("start")
    event = load_event("start_s3_notification.json")
    bad = copy.deepcopy(event["Records"][0])
    del bad["s3"]["object"]["key"]
    event["Records"].append(bad)
    out = app.lambda_handler(event, lambda_context)
    assert [r["status"] for r in out["results"]] == ["started", "dead_lettered"] and out["failed"] == 1
    assert len(_executions(stack)) == 1
    [letter] = _dead_letters(stack)
    assert letter["ERROR_TYPE"] == "InvalidEventError" and letter["reason"] == "invalid_event"
    assert "'key'" in letter["message"] and letter["record"] == bad
    # Lambda's retry of the same event (or a redelivery) starts nothing twice
    again = app.lambda_handler(copy.deepcopy(event), lambda_context)["results"]
    assert [r["status"] for r in again] == ["already_started", "dead_lettered"] and len(_executions(stack)) == 1


@pytest.mark.parametrize("name", ["start_s3_notification.json", "start_s3_eventbridge.json"])
def test_start_object_in_another_bucket_is_skipped_with_a_reason(stack, load_handler, lambda_context, name):
    app = load_handler("start")
    event = load_event(name)
    (event["Records"][0]["s3"] if "Records" in event else event["detail"])["bucket"]["name"] = "someone-else"
    [result] = app.lambda_handler(event, lambda_context)["results"]
    assert result["status"] == "skipped" and f"is not the data bucket '{DATA}'" in result["reason"]
    assert _executions(stack) == [] and _dead_letters(stack) == []


def test_start_retrain_without_data_is_dead_lettered(stack, load_handler, lambda_context):
    app = load_handler("start")
    [result] = app.lambda_handler(load_event("start_retrain_requested.json"), lambda_context)["results"]
    assert result["status"] == "dead_lettered" and result["error"] == "DatasetNotFoundError"
    [letter] = _dead_letters(stack)
    assert letter["record"]["kind"] == "RetrainRequest" and letter["record"]["model"] == "churn"


def test_start_throttled_record_is_raised_after_the_others_start(stack, load_handler, lambda_context):
    """A transient error of one record does not stop the next; it is raised at the end (Lambda retries)."""
    from sagepipe_core.errors import TransientServiceError

    app = load_handler("start")
    event = load_event("start_s3_notification.json")
    second = copy.deepcopy(event["Records"][0])
    second["s3"]["object"]["key"] = "datasets/churn/other.csv"
    event["Records"].insert(0, second)
    real = app.SFN.start_execution
    calls = []

    def throttle_first(**kwargs):
        calls.append(kwargs["name"])
        if len(calls) == 1:
            raise ClientError(
                {
                    "Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"},
                    "ResponseMetadata": {"HTTPStatusCode": 400},
                },
                "StartExecution",
            )
        return real(**kwargs)

    app.SFN.start_execution = throttle_first
    with pytest.raises(TransientServiceError):
        app.lambda_handler(event, lambda_context)
    assert len(calls) == 2 and len(_executions(stack)) == 1


def test_start_unknown_event_raises(stack, load_handler, lambda_context):
    from sagepipe_core.errors import InvalidEventError

    app = load_handler("start")
    with pytest.raises(InvalidEventError):
        app.lambda_handler({"source": "aws.ec2", "detail-type": "x", "id": "1"}, lambda_context)
    assert _executions(stack) == []


# ------------------------------------------------------------------------------------- validate
def _validate_event(s3, key: str, body: bytes) -> dict:
    put = s3.put_object(Bucket=DATA, Key=key, Body=body)
    event = load_event("validate.json")
    d = event["execution"]["dataset"]
    d.update(bucket=DATA, key=key, etag=put["ETag"].strip('"'), version_id=put["VersionId"], size=len(body))
    event["execution_name"] = naming.execution_name("churn", key, d["etag"])
    return event


def test_validate_good_csv(stack, load_handler, lambda_context):
    s3 = stack["s3"]
    event = _validate_event(s3, "datasets/churn/churn.csv", CHURN.read_bytes())
    app = load_handler("validate")
    run = app.lambda_handler(event, lambda_context)
    exec_name = event["execution_name"]
    prefix = f"runs/churn/{exec_name}/splits"
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=ARTIFACTS, Prefix=prefix)["Contents"])
    manifest_key = f"{prefix}/manifest/split_manifest.json"
    assert keys == sorted([manifest_key] + [f"{prefix}/{n}/{n}.csv" for n in ("test", "train", "validation")])
    manifest = json.loads(s3.get_object(Bucket=ARTIFACTS, Key=manifest_key)["Body"].read())
    assert run["splits"]["manifest"] == f"s3://{ARTIFACTS}/{manifest_key}"
    assert manifest["rows"] == run["splits"]["rows"] and manifest["columns"] == sorted(manifest["columns"])
    trained = len(base64.b64decode(manifest["train"])) + len(base64.b64decode(manifest["validation"]))
    assert 0 < trained // 16 <= run["splits"]["rows"]["train"] + run["splits"]["rows"]["validation"]
    total = 0
    for n in ("train", "validation", "test"):
        text = s3.get_object(Bucket=ARTIFACTS, Key=f"{prefix}/{n}/{n}.csv")["Body"].read().decode()
        lines = text.splitlines()
        assert lines[0].startswith("state,account_length") and lines[0].endswith(",churn")
        assert run["splits"]["rows"][n] == len(lines) - 1
        total += len(lines) - 1
    assert total == 5000
    req = run["training"]
    assert [c["ChannelName"] for c in req["InputDataConfig"]] == ["train", "validation", "test", "manifest"]
    for c in req["InputDataConfig"]:
        assert c["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{ARTIFACTS}/{prefix}/{c['ChannelName']}/"
    assert SM_RE.match(req["TrainingJobName"]) and req["TrainingJobName"] == run["names"]["TrainingJobName"]
    assert req["OutputDataConfig"]["S3OutputPath"] == f"s3://{ARTIFACTS}/models/churn/"
    assert json.loads(req["HyperParameters"]["target"]) == "churn"
    assert json.loads(req["HyperParameters"]["selection_metric"]) == "auc"  # train.py chooses by the gate metric
    assert run["champion"] is None and run["names"]["EndpointName"] == "sagepipe-churn"
    assert run["config"]["metric"] == "auc" and run["dataset"]["rows"] == 5000
    # everything the ASL ResultSelector picks is present and JSON-safe
    assert {"dataset", "config", "splits", "champion", "training", "names"} <= set(run)
    json.dumps(run)


def test_validate_without_model_code_fails_before_touching_the_data(stack, load_handler, lambda_context):
    """No code bundle (a stack deployed without it, or the object deleted): a clear ModelCodeMissingError
    (the ASL's Catch of errors.PERMANENT_ERRORS sends "Pipeline Failed"); no quarantine, no splits - the data is fine."""
    from sagepipe_core.errors import ModelCodeMissingError

    s3 = stack["s3"]
    for v in s3.list_object_versions(Bucket=ARTIFACTS, Prefix="code/")["Versions"]:
        s3.delete_object(Bucket=ARTIFACTS, Key=v["Key"], VersionId=v["VersionId"])
    event = _validate_event(s3, "datasets/churn/churn.csv", CHURN.read_bytes())
    with pytest.raises(ModelCodeMissingError) as info:
        load_handler("validate").lambda_handler(event, lambda_context)
    cause = json.loads(str(info.value))
    assert cause["reason"] == "model_code_missing" and cause["s3_error"] == "404"
    assert cause["uri"] == f"s3://{ARTIFACTS}/code/sourcedir.tar.gz" and "sam deploy" in cause["message"]
    assert "Contents" not in s3.list_objects_v2(Bucket=ARTIFACTS, Prefix="quarantine/")
    assert "Contents" not in s3.list_objects_v2(Bucket=ARTIFACTS, Prefix="runs/")


def test_validate_config_over_the_execution_timeout_quarantined(stack, load_handler, lambda_context, monkeypatch):
    """A manual approval of a year cannot fire inside a 7-day execution: rejected with the budget."""
    from sagepipe_core.errors import InvalidConfigError

    monkeypatch.setenv("PIPELINE_TIMEOUT_SECONDS", "604800")
    s3 = stack["s3"]
    doc = {"approval": "manual", "approval_timeout_seconds": 31536000}
    s3.put_object(Bucket=DATA, Key="datasets/churn/sagepipe.json", Body=json.dumps(doc).encode())
    event = _validate_event(s3, "datasets/churn/churn.csv", CHURN.read_bytes())
    with pytest.raises(InvalidConfigError) as info:
        load_handler("validate").lambda_handler(event, lambda_context)
    [error] = json.loads(str(info.value))["errors"]
    assert "times out after 604800 s" in error["error"] and "approval_timeout_seconds 31536000 s" in error["error"]


def test_validate_endpoint_instance_count_defaults_from_the_stack(stack, load_handler, lambda_context, monkeypatch):
    monkeypatch.setenv("DEFAULT_ENDPOINT_INSTANCE_COUNT", "2")  # samconfig.toml's prod
    event = _validate_event(stack["s3"], "datasets/churn/churn.csv", CHURN.read_bytes())
    run = load_handler("validate").lambda_handler(event, lambda_context)
    assert run["config"]["endpoint"]["instance_count"] == 2


def test_validate_malformed_csv_quarantined(stack, load_handler, lambda_context):
    s3 = stack["s3"]
    key = "datasets/churn/churn - Copy (2).csv"
    body = b"a;b;label\n1;2;yes\n"
    event = _validate_event(s3, key, body)
    app = load_handler("validate")
    with pytest.raises(InvalidDatasetError) as info:
        app.lambda_handler(event, lambda_context)
    assert type(info.value).__name__ == "InvalidDatasetError"  # the ASL Catch name
    assert info.value.reason == "delimiter"
    q = f"quarantine/churn/{event['execution_name']}"
    assert s3.get_object(Bucket=ARTIFACTS, Key=f"{q}/churn - Copy (2).csv")["Body"].read() == body
    reason = json.loads(s3.get_object(Bucket=ARTIFACTS, Key=f"{q}/reason.json")["Body"].read())
    assert reason["check"] == "delimiter"
    assert reason["source"]["version_id"] == event["execution"]["dataset"]["version_id"]
    assert json.loads(str(info.value))["quarantine"]["reason"] == f"s3://{ARTIFACTS}/{q}/reason.json"
    assert s3.get_object(Bucket=DATA, Key=key)["Body"].read() == body  # original still there
    assert "Contents" not in s3.list_objects_v2(Bucket=ARTIFACTS, Prefix="runs/")


def test_validate_invalid_config_quarantined(stack, load_handler, lambda_context):
    from sagepipe_core.errors import InvalidConfigError

    s3 = stack["s3"]
    s3.put_object(Bucket=DATA, Key="datasets/churn/sagepipe.json", Body=b'{"metric": "rmse"}')
    event = _validate_event(s3, "datasets/churn/churn.csv", CHURN.read_bytes())
    app = load_handler("validate")
    with pytest.raises(InvalidConfigError) as info:
        app.lambda_handler(event, lambda_context)
    assert info.value.details["errors"]
    reason = json.loads(
        s3.get_object(Bucket=ARTIFACTS, Key=f"quarantine/churn/{event['execution_name']}/reason.json")["Body"].read()
    )
    assert reason["reason"] == "invalid_config"


# ------------------------------------------------------------------------------------- evaluate
def _model_tar(evaluation: dict | None) -> bytes:
    files = {"model.joblib": b"\x80\x04fake"}
    if evaluation is not None:
        files["evaluation.json"] = json.dumps(evaluation).encode()
    return tar_gz(files)


def _training_job(name: str, artifacts: str, final: list[dict]) -> dict:
    return {
        "TrainingJobName": name,
        "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{name}",
        "ModelArtifacts": {"S3ModelArtifacts": artifacts},
        "TrainingJobStatus": "Completed",
        "SecondaryStatus": "Completed",
        "AlgorithmSpecification": {"TrainingImage": "img", "TrainingInputMode": "File"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "CreationTime": NOW,
        "FinalMetricDataList": [{"MetricName": m, "Value": v, "Timestamp": NOW} for m, v in final],
    }


@pytest.mark.parametrize(
    "report_auc, job_metrics, decision, rule",
    [
        (None, [("test:auc", 0.9)], "reject", "fail_closed"),
        (0.9, [("test:accuracy", 0.9)], "reject", "fail_closed"),
        (float("nan"), [("test:auc", float("nan"))], "reject", "fail_closed"),
        (0.9, [("test:auc", float("nan"))], "reject", "fail_closed"),
        (0.9, [("train:auc", 0.99), ("test:auc", 0.9)], "deploy", "threshold"),
    ],
)
def test_evaluate(stack, load_handler, lambda_context, report_auc, job_metrics, decision, rule):
    event = load_event("evaluate.json")
    job_name, artifacts = event["training"]["TrainingJobName"], event["training"]["ModelArtifacts"]
    test_metrics = {"accuracy": 0.91} if report_auc is None else {"auc": report_auc, "accuracy": 0.91}
    evaluation = {"metrics": {"test": test_metrics}, "champion": {"status": "absent"}}
    bucket, key = artifacts.removeprefix("s3://").split("/", 1)
    stack["s3"].put_object(Bucket=bucket, Key=key, Body=_model_tar(evaluation))
    app = load_handler("evaluate")
    with Stubber(app.SM) as stub:
        stub.add_response(
            "describe_training_job", _training_job(job_name, artifacts, job_metrics), {"TrainingJobName": job_name}
        )
        out = app.lambda_handler(event, lambda_context)
        stub.assert_no_pending_responses()
    assert out["decision"] == decision and out["deploy"] is (decision == "deploy") and out["rule"] == rule
    assert out["metrics"]["test"]["accuracy"] == 0.91
    # every decision leaves the run report next to the model; a rejected run's says why
    assert out["report"] == f"s3://{ARTIFACTS}/models/churn/{job_name}/report.html"
    obj = stack["s3"].get_object(Bucket=ARTIFACTS, Key=f"models/churn/{job_name}/report.html")
    page = obj["Body"].read().decode()
    assert obj["ContentType"] == "text/html; charset=utf-8"
    assert html.escape(out["reason"]) in page and f"badge {decision}" in page
    assert "datasets/churn/churn.csv" in page and event["names"]["EndpointConfigName"] in page


def test_evaluate_missing_report_rejects(stack, load_handler, lambda_context):
    event = load_event("evaluate.json")
    job_name, artifacts = event["training"]["TrainingJobName"], event["training"]["ModelArtifacts"]
    bucket, key = artifacts.removeprefix("s3://").split("/", 1)
    stack["s3"].put_object(Bucket=bucket, Key=key, Body=_model_tar(None))
    app = load_handler("evaluate")
    with Stubber(app.SM) as stub:
        stub.add_response("describe_training_job", _training_job(job_name, artifacts, [("test:auc", 0.9)]))
        out = app.lambda_handler(event, lambda_context)
    assert out["decision"] == "reject" and out["rule"] == "fail_closed" and "evaluation.json" in out["reason"]


def test_evaluate_nan_in_report_output_is_json_safe(stack, load_handler, lambda_context):
    """The decision's ``metrics`` echo the report: a NaN there must not make the Lambda result invalid JSON
    (Lambda serialises with json.dumps; Step Functions cannot parse ``NaN``)."""
    event = load_event("evaluate.json")
    job_name, artifacts = event["training"]["TrainingJobName"], event["training"]["ModelArtifacts"]
    evaluation = {"metrics": {"test": {"auc": float("nan")}}}
    bucket, key = artifacts.removeprefix("s3://").split("/", 1)
    stack["s3"].put_object(Bucket=bucket, Key=key, Body=_model_tar(evaluation))
    app = load_handler("evaluate")
    with Stubber(app.SM) as stub:
        stub.add_response("describe_training_job", _training_job(job_name, artifacts, [("test:auc", 0.9)]))
        out = app.lambda_handler(event, lambda_context)
    assert out["decision"] == "reject"
    json.dumps(out, allow_nan=False)


# --------------------------------------------------------------------------------------- deploy
def _endpoint(status: str, config: str) -> dict:
    return {
        "EndpointName": "sagepipe-churn",
        "EndpointArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/sagepipe-churn",
        "EndpointConfigName": config,
        "EndpointStatus": status,
        "CreationTime": NOW,
        "LastModifiedTime": NOW,
    }


def _expect_model_and_config(stub, event):
    names = event["names"]
    stub.add_response(
        "create_model",
        {"ModelArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model/{names['ModelName']}"},
        {
            "ModelName": names["ModelName"],
            "ExecutionRoleArn": ROLE,
            "PrimaryContainer": {"Image": ANY, "ModelDataUrl": event["training"]["ModelArtifacts"], "Environment": ANY},
        },
    )
    stub.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": EPC_ARN},
        {
            "EndpointConfigName": names["EndpointConfigName"],
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "ModelName": names["ModelName"],
                    "InitialInstanceCount": 1,
                    "InstanceType": "ml.m5.large",
                    "InitialVariantWeight": 1.0,
                }
            ],
        },
    )


def test_deploy_creates_endpoint(stack, load_handler, lambda_context):
    event = load_event("deploy.json")
    app = load_handler("deploy")
    with Stubber(app.SM) as stub:
        _expect_model_and_config(stub, event)
        stub.add_client_error(
            "describe_endpoint",
            "ValidationException",
            'Could not find endpoint "arn:aws:sagemaker:us-east-1:123456789012:endpoint/sagepipe-churn".',
            expected_params={"EndpointName": "sagepipe-churn"},
        )
        stub.add_response(
            "create_endpoint",
            {"EndpointArn": EP_ARN},
            {"EndpointName": "sagepipe-churn", "EndpointConfigName": event["names"]["EndpointConfigName"]},
        )
        out = app.lambda_handler(event, lambda_context)
        stub.assert_no_pending_responses()
    assert out["action"] == "create" and out["previous_endpoint_config_name"] is None
    assert out["EndpointName"] == "sagepipe-churn" and out["EndpointConfigName"] == event["names"]["EndpointConfigName"]


def test_deploy_updates_endpoint_blue_green(stack, load_handler, lambda_context):
    event = load_event("deploy.json")
    app = load_handler("deploy")
    with Stubber(app.SM) as stub:
        _expect_model_and_config(stub, event)
        stub.add_response(
            "describe_endpoint", _endpoint("InService", "churn-0000000000"), {"EndpointName": "sagepipe-churn"}
        )
        stub.add_response(
            "update_endpoint",
            {"EndpointArn": EP_ARN},
            {
                "EndpointName": "sagepipe-churn",
                "EndpointConfigName": event["names"]["EndpointConfigName"],
                "RetainAllVariantProperties": False,
                "DeploymentConfig": ANY,
            },
        )
        out = app.lambda_handler(event, lambda_context)
        stub.assert_no_pending_responses()
    assert out["action"] == "update" and out["previous_endpoint_config_name"] == "churn-0000000000"


def test_deploy_update_sends_deployment_config(stack, load_handler, lambda_context):
    event = load_event("deploy.json")
    app = load_handler("deploy")
    sent = {}

    def capture(params, **kwargs):
        if kwargs.get("event_name", "").endswith("UpdateEndpoint"):
            sent.update(params)

    app.SM.meta.events.register("provide-client-params.sagemaker.UpdateEndpoint", capture)
    with Stubber(app.SM) as stub:
        _expect_model_and_config(stub, event)
        stub.add_response("describe_endpoint", _endpoint("InService", "churn-0000000000"))
        stub.add_response("update_endpoint", {"EndpointArn": EP_ARN})
        app.lambda_handler(event, lambda_context)
    dc = sent["DeploymentConfig"]
    assert dc["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] == "ALL_AT_ONCE"
    assert dc["BlueGreenUpdatePolicy"]["TerminationWaitInSeconds"] > 0


def test_deploy_noop_when_config_already_live(stack, load_handler, lambda_context):
    event = load_event("deploy.json")
    app = load_handler("deploy")
    with Stubber(app.SM) as stub:
        _expect_model_and_config(stub, event)
        stub.add_response("describe_endpoint", _endpoint("InService", event["names"]["EndpointConfigName"]))
        out = app.lambda_handler(event, lambda_context)
        stub.assert_no_pending_responses()
    assert out["action"] == "noop"


def test_deploy_idempotent_create_model_on_retry(stack, load_handler, lambda_context):
    event = load_event("deploy.json")
    app = load_handler("deploy")
    with Stubber(app.SM) as stub:
        stub.add_client_error("create_model", "ValidationException", 'Cannot create already existing model "arn:x".')
        stub.add_client_error(
            "create_endpoint_config",
            "ValidationException",
            'Cannot create already existing endpoint configuration "arn:x".',
        )
        stub.add_response("describe_endpoint", _endpoint("InService", "old"))
        stub.add_response("update_endpoint", {"EndpointArn": EP_ARN})
        assert app.lambda_handler(event, lambda_context)["action"] == "update"


@pytest.mark.parametrize("status", ["Updating", "Creating", "RollingBack", "SystemUpdating"])
def test_deploy_busy_endpoint(stack, load_handler, lambda_context, status):
    event = load_event("deploy.json")
    app = load_handler("deploy")
    with Stubber(app.SM) as stub:
        _expect_model_and_config(stub, event)
        stub.add_response("describe_endpoint", _endpoint(status, "churn-0000000000"))
        with pytest.raises(EndpointBusyError) as info:
            app.lambda_handler(event, lambda_context)
        stub.assert_no_pending_responses()  # no update_endpoint was attempted
    assert type(info.value).__name__ == "EndpointBusyError"  # the ASL Retry name
    assert info.value.details["status"] == status


# -------------------------------------------------------------------------------------- predict
@pytest.fixture()
def predict_stack(stack):
    """Issue 5: the predict function validates against the live version's schema.json, so a churn version
    is deployed in moto (the full error matrix is tests/unit/test_predict_api.py)."""
    from tests.unit.predict_helpers import churn_schema, deploy_version

    deploy_version(boto3.client("s3"), boto3.client("sagemaker"), "churn-v1", churn_schema(), create_bucket=False)


def _predict_event(
    body: str | None = None,
    content_type: str | None = "application/json",
    model: str = "churn",
    base64_body: bool = False,
) -> dict:
    event = load_event("predict_rest.json")
    if body is not None:
        event["body"] = body
    if base64_body and event["body"] is not None:
        event["body"] = base64.b64encode(event["body"].encode()).decode()
        event["isBase64Encoded"] = True
    for headers in (event["headers"], event["multiValueHeaders"]):
        headers.pop("Content-Type", None)
    if content_type is not None:
        event["headers"]["Content-Type"] = content_type
        event["multiValueHeaders"]["Content-Type"] = [content_type]
    event["path"] = f"/models/{model}/predictions"
    event["pathParameters"] = {"model": model}
    event["requestContext"]["path"] = f"/v1/models/{model}/predictions"
    return event


def _ok(stub, expected_body: bytes | None = None, endpoint: str = "sagepipe-churn"):
    # one prediction per instance sent (the predict function checks the count)
    n = len(json.loads(expected_body)["instances"]) if expected_body is not None else 1
    payload = json.dumps({"predictions": [{"label": "no", "probability": 0.12}] * n}).encode()
    expected_body = None if expected_body is None else _normalised(expected_body)
    params = {
        "EndpointName": endpoint,
        "ContentType": "application/json",
        "Accept": "application/json",
        "Body": expected_body if expected_body is not None else ANY,
        "InferenceId": ANY,  # the event's request id (data capture's inferenceId)
    }
    stub.add_response(
        "invoke_endpoint",
        {
            "Body": StreamingBody(io.BytesIO(payload), len(payload)),
            "ContentType": "application/json",
            "InvokedProductionVariant": "AllTraffic",
        },
        params,
    )


def _normalised(body: bytes) -> bytes:
    """What the predict function sends on: the records validated and normalised (numbers as floats)."""
    from tests.unit.predict_helpers import churn_schema

    types = {f["name"]: f["type"] for f in churn_schema()["features"]}
    recs = [{k: float(v) if types[k] == "numeric" else v for k, v in r.items()} for r in json.loads(body)["instances"]]
    return json.dumps({"instances": recs}, separators=(",", ":")).encode()


def _call(app, event, lambda_context):
    resp = app.lambda_handler(event, lambda_context)
    return resp["statusCode"], json.loads(resp["body"]), resp


def test_predict_sample_event(predict_stack, load_handler, lambda_context):
    app = load_handler("predict")
    event = _predict_event()
    features = json.loads(event["body"])["instances"][0]
    header = CHURN.read_text().split("\n", 1)[0].split(",")
    assert set(features) == set(header) - {"churn"}
    with Stubber(app.RUNTIME) as stub:
        _ok(stub, event["body"].encode())
        status, body, resp = _call(app, event, lambda_context)
        stub.assert_no_pending_responses()
    assert status == 200, body
    assert body["predictions"] == [{"label": "no", "probability": 0.12}] * 2
    assert body["model"] == "churn" and body["endpoint"] == "sagepipe-churn" and body["variant"] == "AllTraffic"
    assert body["request_id"] == "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    assert "application/json" in str(resp.get("headers") or resp.get("multiValueHeaders"))


def test_predict_base64_body(predict_stack, load_handler, lambda_context):
    app = load_handler("predict")
    plain = _predict_event()["body"].encode()
    with Stubber(app.RUNTIME) as stub:
        _ok(stub, plain)
        status, body, _ = _call(app, _predict_event(base64_body=True), lambda_context)
    assert status == 200 and body["predictions"]


def test_predict_csv_content_type(predict_stack, load_handler, lambda_context):
    """CSV rows are checked against the schema (issue 5): a short row is a 422 naming the record; a full
    row is sent on as normalised JSON."""
    app = load_handler("predict")
    with Stubber(app.RUNTIME):
        status, body, _ = _call(app, _predict_event("KS,128\n", "text/csv; charset=utf-8"), lambda_context)
    assert status == 422 and body["error"]["errors"][0]["code"] == "wrong_value_count"
    row = CHURN.read_text().splitlines()[1].rsplit(",", 1)[0]
    with Stubber(app.RUNTIME) as stub:
        _ok(stub)
        status, body, _ = _call(app, _predict_event(row + "\n", "text/csv; charset=utf-8"), lambda_context)
    assert status == 200 and body["predictions"]


def test_predict_unknown_model_404(predict_stack, load_handler, lambda_context):
    app = load_handler("predict")
    with Stubber(app.RUNTIME) as stub:
        stub.add_client_error(
            "invoke_endpoint",
            "ValidationError",
            "Endpoint sagepipe-nope of account 123456789012 not found.",
            400,
            expected_params={"EndpointName": "sagepipe-nope", "ContentType": ANY, "Accept": ANY, "Body": ANY},
        )
        status, body, _ = _call(app, _predict_event(model="nope"), lambda_context)
    assert status == 404 and body["error"]["code"] == "model_not_found" and body["error"]["model"] == "nope"


@pytest.mark.parametrize("model", ["bad.name", "-x", "a" * 41])
def test_predict_invalid_model_name_400(predict_stack, load_handler, lambda_context, model):
    app = load_handler("predict")
    with Stubber(app.RUNTIME):  # no call expected: any call would raise
        status, body, _ = _call(app, _predict_event(model=model), lambda_context)
    assert status == 400 and body["error"]["code"] == "invalid_model_name"


@pytest.mark.parametrize("ct", ["text/plain", "application/xml", None])
def test_predict_wrong_content_type_415(predict_stack, load_handler, lambda_context, ct):
    app = load_handler("predict")
    with Stubber(app.RUNTIME):
        status, body, _ = _call(app, _predict_event(content_type=ct), lambda_context)
    assert status == 415 and body["error"]["code"] == "unsupported_media_type"


@pytest.mark.parametrize("raw", ["", "   "])
def test_predict_empty_body_400(predict_stack, load_handler, lambda_context, raw):
    app = load_handler("predict")
    with Stubber(app.RUNTIME):
        status, body, _ = _call(app, _predict_event(raw), lambda_context)
    assert status == 400 and body["error"]["code"] == "empty_body"


def test_predict_null_body_400(predict_stack, load_handler, lambda_context):
    app = load_handler("predict")
    event = _predict_event()
    event["body"] = None
    with Stubber(app.RUNTIME):
        status, body, _ = _call(app, event, lambda_context)
    assert status == 400 and body["error"]["code"] == "empty_body"


@pytest.mark.parametrize(
    "raw, code",
    [
        ('{"instances": [', "malformed_json"),
        ("{'a': 1}", "malformed_json"),
        ('{"rows": []}', "missing_instances"),
        ('{"instances": []}', "missing_instances"),
        ("[1, 2]", "missing_instances"),
    ],
)
def test_predict_bad_json_400(predict_stack, load_handler, lambda_context, raw, code):
    app = load_handler("predict")
    with Stubber(app.RUNTIME):
        status, body, _ = _call(app, _predict_event(raw), lambda_context)
    assert status == 400 and body["error"]["code"] == code


def test_predict_body_too_large_413(predict_stack, load_handler, lambda_context):
    app = load_handler("predict")
    big = json.dumps({"instances": [{"state": "KS", "pad": "x" * (6 * 1024 * 1024)}]})
    with Stubber(app.RUNTIME):
        status, body, _ = _call(app, _predict_event(big), lambda_context)
    assert status == 413 and body["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize(
    "original, status, code",
    [
        (400, 422, "model_rejected_input"),
        (415, 422, "model_rejected_input"),
        (500, 502, "model_error"),
        (503, 502, "model_error"),
    ],
)
def test_predict_model_error_mapping(predict_stack, load_handler, lambda_context, original, status, code):
    app = load_handler("predict")
    with Stubber(app.RUNTIME) as stub:
        stub.add_client_error(
            "invoke_endpoint",
            "ModelError",
            "Received client error from model",
            424,
            modeled_fields={"OriginalStatusCode": original, "OriginalMessage": "column missing: plan"},
        )
        got, body, _ = _call(app, _predict_event(), lambda_context)
    assert got == status and body["error"]["code"] == code and body["error"]["model_status"] == original


def test_predict_throttled_429(predict_stack, load_handler, lambda_context):
    app = load_handler("predict")
    with Stubber(app.RUNTIME) as stub:
        stub.add_client_error("invoke_endpoint", "ThrottlingException", "Rate exceeded", 400)
        status, body, resp = _call(app, _predict_event(), lambda_context)
    assert status == 429 and body["error"]["code"] == "throttled"


# ------------------------------------------------------------------ transient vs permanent errors
@pytest.mark.parametrize(
    "code, status, raised",
    [
        ("ThrottlingException", 400, "TransientServiceError"),
        ("InternalFailure", 500, "TransientServiceError"),
        ("ServiceUnavailable", 503, "TransientServiceError"),
        ("ValidationException", 400, "ServiceRequestError"),
        ("AccessDeniedException", 400, "ServiceRequestError"),
    ],
)
def test_deploy_aws_errors_are_named_for_the_asl(stack, load_handler, lambda_context, code, status, raised):
    """A throttled CreateModel leaves DeployModel as TransientServiceError (the ASL retries it); a
    ValidationException as ServiceRequestError with the service's code and message (fails at once)."""
    from sagepipe_core import errors

    app = load_handler("deploy")
    with Stubber(app.SM) as stub:
        stub.add_client_error(
            "create_model", code, "Rate exceeded" if status != 400 else "nope", http_status_code=status
        )
        with pytest.raises(errors.SagepipeError) as info:
            app.lambda_handler(load_event("deploy.json"), lambda_context)
    assert type(info.value).__name__ == raised
    cause = json.loads(str(info.value))  # the ASL Cause: machine-readable
    assert cause["code"] == code and cause["operation"] == "CreateModel" and cause["http_status"] == status


# ------------------------------------------------------------------------------ execution ended
def _ended_event(stack, status: str, error: str | None = None, cause: str | None = None) -> dict:
    event = load_event("execution_ended.json")
    event["detail"].update(stateMachineArn=stack["state_machine_arn"], status=status, error=error, cause=cause)
    return event


def _capture_notifications() -> str:
    """A queue receiving the "Pipeline ..." events, as the stack's notification rule does."""
    sqs, events = boto3.client("sqs"), boto3.client("events")
    url = sqs.create_queue(QueueName="notifications")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="notifications", EventPattern=json.dumps({"source": ["sagepipe"]}))
    events.put_targets(Rule="notifications", Targets=[{"Id": "q", "Arn": arn}])
    return url


#: The stopDate of the fixture event (events/execution_ended.json), epoch ms.
_STOP_MS = 1732485600000


def _history(*types: str, stop_ms: int = _STOP_MS) -> list[dict]:
    """History events of the given types, oldest first, one second apart, the last at ``stop_ms``."""
    from datetime import UTC, datetime

    n = len(types)
    return [
        {"id": i + 1, "type": t, "timestamp": datetime.fromtimestamp((stop_ms - (n - 1 - i) * 1000) / 1000, UTC)}
        for i, t in enumerate(types)
    ]


#: A run whose Task failed with an error no Catch names (transient: left to RedriveExecution).
TASK_FAILED = ("ExecutionStarted", "TaskStateEntered", "TaskScheduled", "TaskStarted", "TaskFailed", "ExecutionFailed")
#: A run that ended in a Fail state after its own Notify* step.
FAIL_STATE = (
    "ExecutionStarted",
    "TaskStateEntered",
    "TaskSucceeded",
    "TaskStateExited",
    "FailStateEntered",
    "ExecutionFailed",
)


@pytest.fixture
def history(load_handler, monkeypatch):
    """The execution_ended handler with a fake Step Functions: ``history(events)`` sets the run's history."""
    from tests.unit.fakes import FakeStepFunctions

    app = load_handler("execution_ended")
    fake = FakeStepFunctions()
    monkeypatch.setattr(app, "SFN", fake)
    arn = "arn:aws:states:us-east-1:123456789012:execution:TrainingPipeline:churn-churn-0123456789"

    def set_history(events: list[dict]) -> Any:
        fake.histories[arn] = events
        return app

    set_history.fake = fake  # type: ignore[attr-defined]
    return set_history


@pytest.mark.parametrize(
    "status, error, cause, want_error",
    [
        ("TIMED_OUT", None, None, "States.Timeout"),
        ("ABORTED", "OperatorStopped", "maintenance", "OperatorStopped"),
        ("FAILED", "States.DataLimitExceeded", "state output over 256 KB", "States.DataLimitExceeded"),
        ("FAILED", "TransientServiceError", '{"reason": "transient_service_error"}', "TransientServiceError"),
        ("FAILED", "Lambda.ServiceException", "Lambda is unavailable", "Lambda.ServiceException"),
        ("FAILED", "States.TaskFailed", '{"TrainingJobStatus": "Failed"}', "States.TaskFailed"),
    ],
)
def test_execution_ended_uncaught_sends_pipeline_failed(
    stack, history, lambda_context, monkeypatch, status, error, cause, want_error
):
    """TIMED_OUT, ABORTED, and a FAILED run whose Task failed with an error no Catch names (a transient
    one, left to RedriveExecution) or none can handle: "Pipeline Failed" with the run's error."""
    monkeypatch.setenv("EVENT_BUS_NAME", "default")
    url = _capture_notifications()
    app = history(_history(*TASK_FAILED))
    result = app.lambda_handler(_ended_event(stack, status, error, cause), lambda_context)
    assert result["status"] == "notified"
    [msg] = boto3.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    event = json.loads(msg["Body"])
    assert event["detail-type"] == "Pipeline Failed" and event["source"] == "sagepipe"
    detail = event["detail"]
    assert (detail["model"], detail["execution"], detail["outcome"]) == ("churn", "churn-churn-0123456789", "failed")
    assert detail["status"] == status and detail["error"] == want_error
    assert detail["dataset"]["key"] == "datasets/churn/churn.csv" and detail["cause"]


@pytest.mark.parametrize(
    "status, error",
    [
        ("FAILED", "InvalidDatasetError"),
        ("FAILED", "TaskFailed"),
        ("FAILED", "DeploymentRolledBack"),
        ("FAILED", "Lambda.ServiceException"),  # PipelineFailed keeps the caught error's name
        ("SUCCEEDED", None),
    ],
)
def test_execution_ended_already_notified_is_skipped(stack, history, lambda_context, status, error):
    """A run that ended in one of the pipeline's Fail states (each after the run's own Notify*) is not
    notified again, whatever its error: the history's event before ExecutionFailed is FailStateEntered."""
    url = _capture_notifications()
    app = history(_history(*FAIL_STATE))
    result = app.lambda_handler(_ended_event(stack, status, error), lambda_context)
    assert result["status"] == "skipped"
    assert "Messages" not in boto3.client("sqs").receive_message(QueueUrl=url)


def test_execution_ended_of_a_redriven_run_judges_each_attempt_by_its_own_end(
    stack, history, lambda_context, monkeypatch
):
    """A redriven execution has one ExecutionFailed per failed attempt (and may be running again when the
    event of an earlier one arrives): the one nearest the event's stopDate decides - attempt 1 failed at a
    Task (notified here), attempt 2 ended in a Fail state (the state machine notified it), attempt 3 runs."""
    monkeypatch.setenv("EVENT_BUS_NAME", "default")
    url = _capture_notifications()
    first = _history(*TASK_FAILED, stop_ms=_STOP_MS)
    second = _history(
        "ExecutionRedriven",
        "TaskStateEntered",
        "TaskFailed",
        "TaskStateEntered",
        "TaskSucceeded",
        "TaskStateExited",
        "FailStateEntered",
        "ExecutionFailed",
        stop_ms=_STOP_MS + 60_000,
    )
    running = _history("ExecutionRedriven", "TaskStateEntered", "TaskScheduled", stop_ms=_STOP_MS + 120_000)
    app = history(first + second + running)
    failed_at_task = _ended_event(stack, "FAILED", "TransientServiceError", "throttled")
    assert app.lambda_handler(failed_at_task, lambda_context)["status"] == "notified"
    failed_in_fail_state = _ended_event(stack, "FAILED", "InvalidDatasetError", "bad")
    failed_in_fail_state["detail"]["stopDate"] = _STOP_MS + 60_000
    assert app.lambda_handler(failed_in_fail_state, lambda_context)["status"] == "skipped"
    assert len(boto3.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]) == 1
    calls = history.fake.called("GetExecutionHistory")
    assert calls and all(c["reverseOrder"] is True and c["includeExecutionData"] is False for c in calls)


def test_execution_ended_reads_every_page_of_a_long_history(stack, history, lambda_context, monkeypatch):
    """The ExecutionFailed that matches may be past the first page (newest first) of a long history."""
    monkeypatch.setenv("EVENT_BUS_NAME", "default")
    _capture_notifications()
    old = _history(*FAIL_STATE)
    later = _history("ExecutionRedriven", *["TaskStateEntered"] * 2500, stop_ms=_STOP_MS + 10_000_000)
    app = history(old + later)
    assert app.lambda_handler(_ended_event(stack, "FAILED", "InvalidDatasetError"), lambda_context)["status"] == (
        "skipped"
    )
    assert len(history.fake.called("GetExecutionHistory")) == 3


def test_execution_ended_of_another_state_machine_is_skipped(stack, history, lambda_context):
    event = _ended_event(stack, "TIMED_OUT")
    event["detail"]["stateMachineArn"] = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:other"
    assert history(_history(*TASK_FAILED)).lambda_handler(event, lambda_context)["status"] == "skipped"


def test_execution_ended_long_cause_is_bounded(stack, history, lambda_context):
    event = _ended_event(stack, "FAILED", "States.Runtime", "x" * 32768)
    result = history(_history(*TASK_FAILED)).lambda_handler(event, lambda_context)
    assert len(result["detail"]["cause"]) == 4096


def test_drift_schedule_checks_capturing_endpoints_only(stack, load_handler, lambda_context):
    """The scheduled event (``events/drift_schedule.json``): an endpoint without DataCaptureConfig is
    skipped with its reason (moto: wiring only; tests/twin/test_drift.py runs the check for real)."""
    sm = boto3.client("sagemaker", region_name="us-east-1")
    sm.create_model(
        ModelName="churn-v1",
        ExecutionRoleArn="arn:aws:iam::123456789012:role/sm",
        PrimaryContainer={"Image": "img", "ModelDataUrl": f"s3://{ARTIFACTS}/models/churn/job/output/model.tar.gz"},
    )
    sm.create_endpoint_config(
        EndpointConfigName="churn-v1",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "churn-v1",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
    )
    sm.create_endpoint(EndpointName="sagepipe-churn", EndpointConfigName="churn-v1")
    app = load_handler("drift")
    results = app.lambda_handler(load_event("drift_schedule.json"), lambda_context)["results"]
    assert results == [
        {"endpoint": "sagepipe-churn", "status": "skipped", "reason": "the endpoint does not capture its input"}
    ], results
