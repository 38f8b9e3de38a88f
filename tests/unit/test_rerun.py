"""Re-running a version (issue 11 item 7): the deterministic "latest data" of a retrain, ``sagepipe upload``
saying that the same bytes already ran and how that run ended, and ``sagepipe retrain``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from sagepipe import cli, client
from sagepipe.client import Target
from sagepipe_core.errors import DatasetNotFoundError
from sagepipe_core.events import RetrainRequest, latest_data_object, latest_data_version
from sagepipe_core.naming import execution_name

pytestmark = pytest.mark.unit

BUCKET = "sagepipe-data-123456789012"


class ListedS3:
    """ListObjectsV2 (one page per given list, in the given order) and HeadObject, no more."""

    def __init__(self, pages: list[list[dict[str, Any]]]) -> None:
        self.pages = pages

    def get_paginator(self, name: str) -> Any:
        assert name == "list_objects_v2"
        pages = self.pages

        class Paginator:
            def paginate(self, **_: Any) -> list[dict[str, Any]]:
                return [{"Contents": p} for p in pages]

        return Paginator()

    def head_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803 - boto3's parameter names
        return {"ETag": f'"etag-{Key}"', "VersionId": f"v-{Key}", "ContentLength": 10}


def obj(key: str, at: str) -> dict[str, Any]:
    return {"Key": key, "LastModified": datetime.fromisoformat(at).replace(tzinfo=UTC), "Size": 10, "ETag": '"x"'}


def test_retrain_latest_data_is_the_same_for_uploads_in_one_second_whatever_the_sub_second_or_listing_order():
    """AWS lists LastModified to the second: two uploads in one second are a tie there, broken by the key.
    The twin (moto keeps microseconds) must choose as AWS does, and the listing order must not matter."""
    same_second = [
        obj("datasets/churn/2026-12-03.csv", "2026-12-03T12:00:00.100"),  # written last, in the same second
        obj("datasets/churn/2026-12-02.csv", "2026-12-03T12:00:00.900"),
        obj("datasets/churn/2026-12-01.csv", "2026-12-03T11:59:59.999"),
    ]
    for pages in ([same_second], [same_second[::-1]], [[same_second[1]], [same_second[0], same_second[2]]]):
        newest, tied = latest_data_object(ListedS3(pages), BUCKET, "churn")
        assert newest is not None and newest["Key"] == "datasets/churn/2026-12-03.csv"
        assert tied == ["datasets/churn/2026-12-02.csv"]
    version = latest_data_version(ListedS3([same_second]), BUCKET, RetrainRequest("churn", "retrain-request", "e1"))
    assert (version.key, version.etag, version.version_id) == (
        "datasets/churn/2026-12-03.csv",
        "etag-datasets/churn/2026-12-03.csv",
        "v-datasets/churn/2026-12-03.csv",
    )
    later = [*same_second, obj("datasets/churn/a-later.csv", "2026-12-03T12:00:01.000")]
    assert latest_data_object(ListedS3([later]), BUCKET, "churn") == (later[-1], [])


def test_retrain_ignores_empty_and_non_csv_objects():
    objects = [
        obj("datasets/churn/sagepipe.json", "2026-12-03T12:00:05"),
        {**obj("datasets/churn/empty.csv", "2026-12-03T12:00:04"), "Size": 0},
        obj("datasets/churn/data.CSV", "2026-12-03T12:00:00"),
    ]
    assert latest_data_object(ListedS3([objects]), BUCKET, "churn") == (objects[2], [])
    assert latest_data_object(ListedS3([[]]), BUCKET, "churn") == (None, [])


# ------------------------------------------------------------------------- CLI (moto, validated)
@pytest.fixture()
def target(aws: None) -> Target:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    role = "arn:aws:iam::123456789012:role/sfn"
    arn = boto3.client("stepfunctions").create_state_machine(
        name="sagepipe-pipeline",
        definition=json.dumps({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 600, "End": True}}}),
        roleArn=role,
    )["stateMachineArn"]
    return Target(
        data_bucket=BUCKET,
        artifacts_bucket="sagepipe-artifacts",
        state_machine_arn=arn,
        api_url="http://127.0.0.1:1",
        region="us-east-1",
    )


def _start_run_for(target: Target, key: str) -> str:
    """What the start function does for an upload: StartExecution named after model, key and ETag."""
    etag = boto3.client("s3").head_object(Bucket=BUCKET, Key=key)["ETag"].strip('"')
    name = execution_name(key.split("/")[1], key, etag)
    boto3.client("stepfunctions").start_execution(stateMachineArn=target.state_machine_arn, name=name, input="{}")
    return name


def test_upload_of_bytes_that_already_ran_names_the_run_and_how_it_ended(target: Target, tmp_path: Path):
    data = tmp_path / "churn.csv"
    data.write_text("a,b,churn\n1,2,yes\n")
    assert client.previous_run(target, data, "churn") is None  # a first upload: no earlier run
    key = client.upload(target, data, "churn")
    name = _start_run_for(target, key)
    sfn = boto3.client("stepfunctions")
    sfn.stop_execution(executionArn=f"{target.state_machine_arn.replace(':stateMachine:', ':execution:')}:{name}")
    # no sleep: asked before the upload, the earlier run is found even within the same LastModified second
    earlier = client.previous_run(target, data, "churn")
    assert earlier is not None and earlier["execution_name"] == name and earlier["status"] == "ABORTED"
    assert client.upload(target, data, "churn") == key  # the same bytes again
    text = cli.already_ran_text(earlier, "churn")
    assert f"already ran as {name} and ended ABORTED" in text and "sagepipe retrain --model churn" in text
    data.write_text("a,b,churn\n1,3,yes\n")  # other bytes under the same key: a new version, no earlier run
    assert client.previous_run(target, data, "churn") is None
    assert client.previous_run(target, tmp_path / "churn.csv", "other") is None  # same bytes, other model


def test_the_local_md5_is_the_etag_the_start_function_names_the_run_after(target: Target, tmp_path: Path):
    import hashlib

    data = tmp_path / "v.csv"
    data.write_bytes(b"a,b,churn\r\n1,2,yes\r\n\xef\xbb\xbf")
    key = client.upload(target, data, "churn")
    etag = boto3.client("s3").head_object(Bucket=BUCKET, Key=key)["ETag"].strip('"')
    assert etag == hashlib.md5(data.read_bytes()).hexdigest()


def test_upload_command_prints_the_earlier_run(target: Target, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "_target", lambda args: target)
    data = tmp_path / "v1.csv"
    data.write_text("a,b,churn\n1,2,yes\n")
    assert cli.main(["upload", str(data), "--model", "churn"]) == 0
    assert "already ran" not in capsys.readouterr().err
    name = _start_run_for(target, "datasets/churn/v1.csv")
    assert cli.main(["upload", str(data), "--model", "churn"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "datasets/churn/v1.csv"
    assert f"already ran as {name} and is still running" in " ".join(captured.err.split())


def test_retrain_sends_the_retrain_requested_event_for_the_latest_data(target: Target, monkeypatch, capsys):
    events = boto3.client("events")
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName="retrains")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(
        Name="retrain", EventPattern=json.dumps({"source": ["sagepipe"], "detail-type": ["Retrain Requested"]})
    )
    events.put_targets(Rule="retrain", Targets=[{"Id": "q", "Arn": queue_arn}])
    with pytest.raises(DatasetNotFoundError, match="has no data"):
        client.retrain(target, "churn")  # nothing is sent for a model without data
    s3 = boto3.client("s3")
    s3.put_object(Bucket=BUCKET, Key="datasets/churn/a.csv", Body=b"a,churn\n1,yes\n")
    s3.put_object(Bucket=BUCKET, Key="datasets/churn/b.csv", Body=b"a,churn\n2,yes\n")
    monkeypatch.setattr(cli, "_target", lambda args: target)
    assert cli.main(["retrain", "--model", "churn", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["key"] == "datasets/churn/b.csv" and result["model"] == "churn"
    assert result["execution_name"] == execution_name(
        "churn", "datasets/churn/b.csv", f"retrain-request:{result['event_id']}"
    )
    [message] = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    event = json.loads(message["Body"])
    assert (event["source"], event["detail-type"], event["detail"]) == (
        "sagepipe",
        "Retrain Requested",
        {"model": "churn"},
    )
    assert event["id"] == result["event_id"]
    assert cli.main(["retrain", "--model", "no/such"]) == 2  # a bad model name is bad usage
