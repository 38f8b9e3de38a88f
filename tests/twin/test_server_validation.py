"""The twin's server answers what breaks a service model as AWS does (issue 10, "Server-side validation").

The clients here are plain boto3 clients on the twin with no client-side model check (botocore checks
only required members, types and ``min``): what is refused is refused by the server, in the service's own
protocol and error shape, before moto acts on it.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from sagepipe.client import Target
from sagepipe.twin import validation

pytestmark = pytest.mark.twin


@pytest.fixture(autouse=True)
def _no_client_side_check() -> Any:
    before = validation.set_active(False)
    yield
    validation.set_active(before)


def _refused(call: Any, **params: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as info:
        call(**params)
    return info.value.response


def test_create_model_package_with_a_metadata_value_off_the_pattern_is_refused(target: Target) -> None:
    """Issue 9 item 1's defect at the wire: CustomerMetadataProperties values must match
    ``[\\p{L}\\p{Z}\\p{N}_.:\\/=+\\-@]*`` (JSON protocol; moto alone accepts it)."""
    sm = target.client("sagemaker")
    sm.create_model_package_group(ModelPackageGroupName="srv-validation")
    before = validation.server_counts()["refused"]
    resp = _refused(
        sm.create_model_package,
        ModelPackageGroupName="srv-validation",
        CustomerMetadataProperties={"gate_reason": "no champion; auc 0.91 (threshold 0.75)"},
        InferenceSpecification={
            "Containers": [{"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
    )
    assert resp["Error"]["Code"] == "ValidationException" and resp["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "CustomerMetadataProperties" in resp["Error"]["Message"] and "pattern" in resp["Error"]["Message"]
    assert validation.server_counts()["refused"] == before + 1
    assert sm.list_model_packages(ModelPackageGroupName="srv-validation")["ModelPackageSummaryList"] == []


def test_put_events_with_more_entries_than_the_model_allows_is_refused(target: Target) -> None:
    """EventBridge PutEvents takes 1-10 entries (list size, JSON protocol); moto alone takes 11."""
    entries = [{"Source": "sagepipe", "DetailType": "probe", "Detail": "{}"}] * 11
    resp = _refused(target.client("events").put_events, Entries=entries)
    assert resp["Error"]["Code"] == "ValidationException"
    assert "entries" in resp["Error"]["Message"] and "10" in resp["Error"]["Message"]


def test_a_pattern_breach_in_cloudwatch_logs_is_refused(target: Target) -> None:
    """CloudWatch Logs CreateLogGroup: ``logGroupName`` must match ``[\\.\\-_/#A-Za-z0-9]+``; nothing is created."""
    logs = target.client("logs")
    resp = _refused(logs.create_log_group, logGroupName="bad group name with spaces!")
    assert resp["Error"]["Code"] == "ValidationException"
    assert "logGroupName" in resp["Error"]["Message"] and "pattern" in resp["Error"]["Message"]
    assert logs.describe_log_groups(logGroupNamePrefix="bad")["logGroups"] == []


def test_a_query_protocol_breach_is_answered_in_the_query_error_shape(target: Target) -> None:
    """SNS (query protocol): a tag key is at most 128 characters; the answer is query XML with
    ``ValidationError``, the code query services send, and no topic is created."""
    tags = [{"Key": "k" * 129, "Value": "v"}]
    resp = _refused(target.client("sns").create_topic, Name="srv-validation", Tags=tags)
    assert resp["Error"]["Code"] == "ValidationError" and resp["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "Tags" in resp["Error"]["Message"] and "128" in resp["Error"]["Message"]
    topics = target.client("sns").list_topics()["Topics"]
    assert not [t for t in topics if t["TopicArn"].endswith(":srv-validation")]


def test_valid_requests_pass_and_are_counted(target: Target) -> None:
    """The check reads every request it can (the counter moves) and lets valid ones through."""
    before = validation.server_counts()["checked"]
    target.client("sagemaker").list_endpoints()
    target.client("stepfunctions").list_state_machines()
    assert validation.server_counts()["checked"] >= before + 2
    assert validation.server_counts()["unparsed"] == 0  # every request so far was read by moto's parsers


def test_s3_requests_that_break_the_model_are_refused_as_s3_does(target: Target) -> None:
    """S3 goes around moto's generic dispatch; the twin still checks it (enum values in headers and query)."""
    s3 = target.client("s3")
    refused = _refused(
        s3.put_object, Bucket=target.artifacts_bucket, Key="x/sse", Body=b"x", ServerSideEncryption="AES512"
    )
    assert refused["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert refused["Error"]["Code"] == "InvalidArgument"
    assert "'ServerSideEncryption'" in refused["Error"]["Message"] and "enum" in refused["Error"]["Message"]
    listed = _refused(s3.list_objects_v2, Bucket=target.artifacts_bucket, EncodingType="base64")
    assert listed["Error"]["Code"] == "InvalidArgument" and "'EncodingType'" in listed["Error"]["Message"]
    storage = _refused(s3.put_object, Bucket=target.artifacts_bucket, Key="x/sc", Body=b"x", StorageClass="COLD")
    assert storage["Error"]["Code"] == "InvalidStorageClass"
    with pytest.raises(ClientError) as missing:  # nothing was written by the refused calls
        s3.head_object(Bucket=target.artifacts_bucket, Key="x/sse")
    assert missing.value.response["Error"]["Code"] == "404"
    before = validation.server_counts()["checked"]
    s3.put_object(Bucket=target.artifacts_bucket, Key="x/ok", Body=b"x", ServerSideEncryption="AES256")
    assert s3.get_object(Bucket=target.artifacts_bucket, Key="x/ok")["Body"].read() == b"x"
    assert validation.server_counts()["checked"] >= before + 2
