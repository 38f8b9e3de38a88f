"""The twin's SageMaker as AWS documents it: hosting (InService only after /ping, blue/green updates,
ValidationException for updates of an endpoint that is not InService, DeleteEndpoint stops the process),
sagemaker-runtime errors, and name rules."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sagepipe import client
from sagepipe.client import Target

from .conftest import CHURN_CONFIG, _alive, churn_rows, endpoint, wait_for_key, write_csv

pytestmark = pytest.mark.twin


@pytest.fixture(scope="module")
def deployed(twin: Any, target: Target, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    header, rows = churn_rows(0, 2000)
    key = client.upload(target, write_csv(tmp_path_factory.mktemp("sm"), "sm.csv", header, rows), "sm", CHURN_CONFIG)
    [desc] = wait_for_key(target, key)
    assert desc["status"] == "SUCCEEDED", desc.get("cause")
    return json.loads(desc["output"])


def _wait_status(sm: Any, name: str, want: str, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        ep = sm.describe_endpoint(EndpointName=name)
        if ep["EndpointStatus"] == want:
            return ep
        assert time.monotonic() < deadline, ep
        time.sleep(0.1)


def test_runtime_errors_are_the_ones_aws_returns(deployed: dict[str, Any], target: Target) -> None:
    rt = target.client("sagemaker-runtime")
    name = deployed["deployment"]["EndpointName"]
    with pytest.raises(ClientError) as unknown:
        rt.invoke_endpoint(EndpointName="sagepipe-nosuch", Body=b"{}", ContentType="application/json")
    assert unknown.value.response["Error"]["Code"] == "ValidationError"
    with pytest.raises(ClientError) as model:
        rt.invoke_endpoint(EndpointName=name, Body=b'{"instances": [{"nope": 1}]}', ContentType="application/json")
    assert model.value.response["Error"]["Code"] == "ModelError"
    assert model.value.response["OriginalStatusCode"] == 400 and "nope" in model.value.response["OriginalMessage"]
    with pytest.raises(ClientError) as big:
        rt.invoke_endpoint(EndpointName=name, Body=b"x" * (6 * 1024 * 1024 + 1), ContentType="text/csv")
    assert big.value.response["Error"]["Code"] == "ValidationError"
    ok = rt.invoke_endpoint(
        EndpointName=name, ContentType="text/csv", Body=churn_rows(4990, 4991)[1][0].rsplit(",", 1)[0].encode()
    )
    assert ok["InvokedProductionVariant"] == "AllTraffic" and json.loads(ok["Body"].read())["predictions"][0]["label"]


def test_update_is_blue_green_and_refused_while_in_progress(
    twin: Any, deployed: dict[str, Any], target: Target
) -> None:
    sm = target.client("sagemaker")
    name = deployed["deployment"]["EndpointName"]
    old_config = endpoint(target, "sm")["EndpointConfigName"]
    old_pid = twin.hosting.endpoints[name].live.process.pid
    model = sm.describe_endpoint_config(EndpointConfigName=old_config)["ProductionVariants"][0]["ModelName"]
    sm.create_endpoint_config(
        EndpointConfigName="sm-blue-green",
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": model, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
        ],
    )
    with pytest.raises(ClientError) as dup:
        sm.create_endpoint_config(
            EndpointConfigName="sm-blue-green",
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": model,
                    "InitialInstanceCount": 1,
                    "InstanceType": "ml.m5.large",
                }
            ],
        )
    assert "already existing" in dup.value.response["Error"]["Message"]
    sm.update_endpoint(EndpointName=name, EndpointConfigName="sm-blue-green")
    assert sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "Updating"
    assert sm.describe_endpoint(EndpointName=name)["EndpointConfigName"] == old_config  # old one serves meanwhile
    with pytest.raises(ClientError) as busy:
        sm.update_endpoint(EndpointName=name, EndpointConfigName=old_config)
    assert busy.value.response["Error"]["Code"] == "ValidationException"
    assert "Cannot update in-progress endpoint" in busy.value.response["Error"]["Message"]
    ep = _wait_status(sm, name, "InService")
    assert ep["EndpointConfigName"] == "sm-blue-green" and "FailureReason" not in ep
    deadline = time.monotonic() + 10
    while _alive(old_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(old_pid), "the old version's model server still runs after the switch"


def test_describe_endpoint_leaves_out_an_unset_data_capture_config(deployed: dict[str, Any], target: Target) -> None:
    """As AWS does (moto answered ``{}``, which the sagemaker SDK's Endpoint.get refuses to parse)."""
    desc = target.client("sagemaker").describe_endpoint(EndpointName=deployed["deployment"]["EndpointName"])
    assert "DataCaptureConfig" not in desc and desc["EndpointStatus"] == "InService"


def test_a_model_error_names_a_log_group_that_exists(deployed: dict[str, Any], target: Target) -> None:
    """InvokeEndpoint's ModelError names ``LogStreamArn`` (the endpoint's log group,
    ``/aws/sagemaker/Endpoints/<name>``); a client that follows it finds the group, a
    ``<variant>/<instance-id>`` stream and the model's error there (it named a group that did not exist)."""
    rt, logs = target.client("sagemaker-runtime"), target.client("logs")
    name = deployed["deployment"]["EndpointName"]
    with pytest.raises(ClientError) as model:
        rt.invoke_endpoint(EndpointName=name, Body=b'{"instances": [{"nope": 1}]}', ContentType="application/json")
    assert model.value.response["Error"]["Code"] == "ModelError", model.value.response
    arn = model.value.response["LogStreamArn"]
    group = f"/aws/sagemaker/Endpoints/{name}"
    assert arn == f"arn:aws:logs:us-east-1:123456789012:log-group:{group}"
    [found] = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert found["logGroupName"] == group
    streams = logs.describe_log_streams(logGroupName=group)["logStreams"]
    assert streams and all(s["logStreamName"].startswith("AllTraffic/i-") for s in streams)
    messages = [e["message"] for e in logs.filter_log_events(logGroupName=group)["events"]]
    assert any("nope" in m for m in messages), messages


def test_delete_endpoint_stops_its_process(twin: Any, deployed: dict[str, Any], target: Target) -> None:
    sm, rt = target.client("sagemaker"), target.client("sagemaker-runtime")
    name = deployed["deployment"]["EndpointName"]
    _wait_status(sm, name, "InService")
    pid = twin.hosting.endpoints[name].live.process.pid
    sm.delete_endpoint(EndpointName=name)
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)
    with pytest.raises(ClientError) as gone:
        rt.invoke_endpoint(EndpointName=name, Body=b"1", ContentType="text/csv")
    assert gone.value.response["Error"]["Code"] == "ValidationError"


@pytest.mark.parametrize("bad", ["has_underscore", "x" * 64, "-leading"])
def test_sagemaker_name_rules_are_enforced(target: Target, bad: str) -> None:
    sm = target.client("sagemaker")
    with pytest.raises(ClientError) as err:
        sm.create_endpoint_config(
            EndpointConfigName=bad,
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": "m",
                    "InitialInstanceCount": 1,
                    "InstanceType": "ml.m5.large",
                }
            ],
        )
    assert err.value.response["Error"]["Code"] == "ValidationException"
