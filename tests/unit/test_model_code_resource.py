"""The ModelCode custom resource (``sagepipe_core.model_code``): CloudFormation's request in, the model
code at ``s3://<artifacts>/code/sourcedir.tar.gz`` and exactly one response object out (CloudFormation
User Guide, "Custom resource request/response objects"), against moto."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import boto3
import pytest

from sagepipe_core import model_code

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
BUCKET = "sagepipe-artifacts-123456789012"


def _request(kind: str, **props: str) -> dict:
    return {
        "RequestType": kind,
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:ModelCodeFunction",
        "ResponseURL": "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/x?sig",
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/sagepipe/guid",
        "RequestId": "req-1",
        "ResourceType": "Custom::ModelCode",
        "LogicalResourceId": "ModelCode",
        "ResourceProperties": {"ServiceToken": "arn", "Bucket": BUCKET, "Key": "code/sourcedir.tar.gz", **props},
    }


@pytest.fixture()
def s3(aws):
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return client


def _handle(event: dict, s3, code_dir: Path = REPO / "model") -> tuple[dict, list[tuple[str, bytes]]]:
    sent: list[tuple[str, bytes]] = []
    response = model_code.handle(event, s3=s3, code_dir=code_dir, send=lambda url, body: sent.append((url, body)))
    return response, sent


@pytest.mark.parametrize("kind", ["Create", "Update"])
def test_create_and_update_publish_the_code_package(s3, kind):
    response, [(url, body)] = _handle(_request(kind, CodeVersion="arn:...:ModelCodeFunction:3"), s3)
    assert url.startswith("https://cloudformation-custom-resource-response")
    assert json.loads(body) == response and len(body) <= 4096
    assert response["Status"] == "SUCCESS" and response["PhysicalResourceId"] == f"s3://{BUCKET}/code/sourcedir.tar.gz"
    assert (response["StackId"], response["RequestId"], response["LogicalResourceId"]) == (
        "arn:aws:cloudformation:us-east-1:123456789012:stack/sagepipe/guid",
        "req-1",
        "ModelCode",
    )
    obj = s3.get_object(Bucket=BUCKET, Key="code/sourcedir.tar.gz")
    data = obj["Body"].read()
    assert data == model_code.build(REPO / "model")
    assert response["Data"]["S3Uri"] == f"s3://{BUCKET}/code/sourcedir.tar.gz"
    assert response["Data"]["ETag"] == obj["ETag"].strip('"') and response["Data"]["VersionId"] == obj["VersionId"]
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:  # what the training toolkit un-tars
        assert {"train.py", "inference.py"} <= set(tar.getnames())


def test_same_code_gives_the_same_bytes(s3):
    first, _ = _handle(_request("Create"), s3)
    second, _ = _handle(_request("Update"), s3)
    assert first["Data"]["Sha256"] == second["Data"]["Sha256"]


def test_delete_keeps_the_code_and_succeeds(s3):
    _handle(_request("Create"), s3)
    event = _request("Delete") | {"PhysicalResourceId": f"s3://{BUCKET}/code/sourcedir.tar.gz"}
    response, [_] = _handle(event, s3)
    assert response["Status"] == "SUCCESS" and response["PhysicalResourceId"] == event["PhysicalResourceId"]
    assert s3.head_object(Bucket=BUCKET, Key="code/sourcedir.tar.gz")["ContentLength"] > 0


def test_a_failure_is_answered_failed_with_the_reason(s3):
    event = _request("Create")
    event["ResourceProperties"]["Bucket"] = "no-such-bucket-sagepipe"
    response, [(_, body)] = _handle(event, s3)
    assert response["Status"] == "FAILED" and "NoSuchBucket" in response["Reason"]
    assert json.loads(body)["Status"] == "FAILED" and len(body) <= 4096


def test_no_bucket_property_is_failed_not_silent(s3):
    event = _request("Create")
    del event["ResourceProperties"]["Bucket"]
    response, [_] = _handle(event, s3)
    assert response["Status"] == "FAILED" and "Bucket is required" in response["Reason"]
