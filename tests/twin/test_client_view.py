"""What a real client sees (issue 16, item 6): the twin's answers to boto3 and plain HTTP clients carry
the types, fields and headers AWS sends, so a typed SDK or a browser behaves against the twin as against
AWS."""

from __future__ import annotations

import gzip
import http.client
import json
import time
import urllib.parse
from typing import Any

import pytest

from sagepipe import client
from sagepipe.client import Target

from .conftest import churn_rows, wait_for, wait_for_key, write_csv

pytestmark = pytest.mark.twin


@pytest.fixture(scope="module")
def rejected_run(target: Target, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A run on a data set missing a column: it ends fast ("Pipeline Rejected") with its notifications."""
    header, rows = churn_rows(0, 200)
    cols = header.split(",")
    header = ",".join(cols[:-2] + cols[-1:])
    rows = [",".join(r.split(",")[:-2] + r.split(",")[-1:]) for r in rows]
    key = client.upload(target, write_csv(tmp_path_factory.mktemp("rej"), "bad.csv", header, rows), "clientview")
    [desc] = wait_for_key(target, key)
    events = wait_for(lambda: client.notifications(target, model="clientview") or None, "a notification")
    return {"key": key, "desc": desc, "events": events}


def test_notification_log_events_have_integer_millisecond_timestamps(target: Target, rejected_run: Any) -> None:
    """FilterLogEvents' ``timestamp``/``ingestionTime`` are longs (ms since the epoch) on AWS; moto's
    EventBridge → CloudWatch Logs target wrote ``time.time() * 1000`` floats, which typed SDKs refuse."""
    logs = target.client("logs")
    group = f"/aws/events/{target.stack_name}/notifications"
    page = logs.filter_log_events(logGroupName=group)
    assert page["events"]
    for event in page["events"]:
        assert type(event["timestamp"]) is int and type(event["ingestionTime"]) is int, event
    for stream in logs.describe_log_streams(logGroupName=group)["logStreams"]:
        for field in ("firstEventTimestamp", "lastEventTimestamp", "lastIngestionTime", "creationTime"):
            assert type(stream[field]) is int, (field, stream)
    assert abs(page["events"][0]["timestamp"] - time.time() * 1000) < 3600_000


def test_notification_events_name_the_account(target: Target, rejected_run: Any) -> None:
    """Every EventBridge event has ``account`` (the 12-digit id of the account it came from)."""
    for event in rejected_run["events"]:
        assert event.get("account") == "123456789012", sorted(event)
        assert {"version", "id", "detail-type", "source", "time", "region", "resources", "detail"} <= set(event)


def _http(
    url: str, method: str, headers: dict[str, str], body: bytes | None = None
) -> tuple[int, list[tuple[str, str]]]:
    """One plain HTTP request (http.client keeps repeated headers apart, as a browser sees them)."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        conn.request(method, u.path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.getheaders()
    finally:
        conn.close()


def _values(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in headers if k.lower() == name.lower()]


def test_the_apis_403_carries_the_templates_gateway_response_headers(target: Target) -> None:
    """The template's ``GatewayResponses`` (DEFAULT_4XX/5XX) set ``Access-Control-Allow-Origin``: API
    Gateway adds it to its own 403, so a browser reads the 403 instead of failing on CORS."""
    url = f"{target.api_url}/models/churn/predictions"
    origin = {"Origin": "https://app.example.com", "Content-Type": "application/json"}
    status, headers = _http(url, "POST", origin, b"{}")  # no x-api-key
    assert status == 403
    assert _values(headers, "Access-Control-Allow-Origin") == ["*"]
    status, headers = _http(f"{target.api_url}/no/such/route", "GET", origin)
    assert status == 403 and _values(headers, "x-amzn-ErrorType") == ["MissingAuthenticationTokenException"]
    assert _values(headers, "Access-Control-Allow-Origin") == ["*"]


def test_the_preflight_carries_the_templates_max_age(target: Target) -> None:
    """``Cors.MaxAge: '600'`` is the preflight's ``Access-Control-Max-Age`` (browsers cache it 600 s)."""
    status, headers = _http(
        f"{target.api_url}/models/churn/predictions",
        "OPTIONS",
        {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"},
    )
    assert status == 200 and _values(headers, "Access-Control-Max-Age") == ["600"]


def test_api_responses_carry_one_date_header(target: Target) -> None:
    """One ``Date`` per response (RFC 9110 5.3: a field that is not a list appears once)."""
    for method, path in (("GET", "/health"), ("POST", "/models/churn/predictions"), ("OPTIONS", "/health")):
        _, headers = _http(f"{target.api_url}{path}", method, {"Origin": "https://app.example.com"})
        assert len(_values(headers, "Date")) == 1, (method, path, _values(headers, "Date"))


def test_a_multipart_upload_is_one_object_created_event(twin: Any, target: Target) -> None:
    """CompleteMultipartUpload sends one "Object Created" event, reason ``CompleteMultipartUpload`` (S3 User
    Guide, "EventBridge event message structure"); moto also sent a ``PutObject`` one for the same object."""
    events, logs, s3 = target.client("events"), target.client("logs"), target.client("s3")
    group = "/aws/events/test-multipart"
    logs.create_log_group(logGroupName=group)
    key = "scratch/multipart/one.bin"
    events.put_rule(
        Name="test-multipart",
        EventPattern=json.dumps(
            {"source": ["aws.s3"], "detail": {"bucket": {"name": [target.data_bucket]}, "object": {"key": [key]}}}
        ),
    )
    events.put_targets(
        Rule="test-multipart", Targets=[{"Id": "log", "Arn": f"arn:aws:logs:us-east-1:123456789012:log-group:{group}"}]
    )
    upload = s3.create_multipart_upload(Bucket=target.data_bucket, Key=key)
    part = s3.upload_part(
        Bucket=target.data_bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=b"x" * 1024
    )
    s3.complete_multipart_upload(
        Bucket=target.data_bucket,
        Key=key,
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    s3.put_object(Bucket=target.data_bucket, Key=key, Body=b"y")  # a PutObject after it: its own event
    # S3 → EventBridge → CloudWatch Logs is delivered within the S3 request in the twin
    got = [json.loads(x["message"]) for x in logs.filter_log_events(logGroupName=group)["events"]]
    reasons = sorted((e["detail-type"], e["detail"]["reason"]) for e in got)
    assert reasons, [x for x in twin.logs if x[0] == "events"][-5:]
    assert reasons == [("Object Created", "CompleteMultipartUpload"), ("Object Created", "PutObject")], reasons


def test_a_gzip_body_is_a_415_that_says_so(target: Target) -> None:
    """A client that gzips its JSON (``Content-Encoding: gzip``) gets 415 naming the encoding; it got
    "400 body is not valid UTF-8". Checked before any model lookup, so no model needs to be live."""
    body = gzip.compress(json.dumps({"instances": [{"state": "KS"}]}).encode())
    u = urllib.parse.urlsplit(f"{target.api_url}/models/churn/predictions")
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip", "x-api-key": target.api_key or ""}
        conn.request("POST", u.path, body=body, headers=headers)
        resp = conn.getresponse()
        doc = json.loads(resp.read())
    finally:
        conn.close()
    assert resp.status == 415, doc
    assert doc["error"]["code"] == "unsupported_content_encoding" and "gzip" in doc["error"]["message"]
