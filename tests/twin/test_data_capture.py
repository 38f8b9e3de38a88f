"""Data capture on the twin (issue 14): a model config's ``endpoint.data_capture_percentage`` gives its
EndpointConfig a DataCaptureConfig, and the endpoint writes every sampled request and response to S3 in
SageMaker's capture format, as the execution role (which needs ``s3:PutObject`` on ``datacapture/*``)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from sagepipe import client
from sagepipe.client import Target

from .conftest import CHURN, churn_config, record, wait_for, wait_for_key

pytestmark = pytest.mark.twin
MODEL = "capture"
ENDPOINT = f"sagepipe-{MODEL}"


@pytest.fixture(scope="module")
def live(twin: Any, target: Target, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``capture`` (churn, 1,500 rows) deployed with 100 % capture; three held-out records."""
    directory = tmp_path_factory.mktemp("capture")
    header, *rows = CHURN.read_text().splitlines()
    path = directory / "churn.csv"
    path.write_text("\n".join([header, *rows[:1500]]) + "\n")
    config = churn_config(
        directory, endpoint={"instance_type": "ml.m5.large", "instance_count": 1, "data_capture_percentage": 100}
    )
    [desc] = wait_for_key(target, client.upload(target, path, MODEL, config))
    assert desc["status"] == "SUCCEEDED", desc.get("cause")
    names = header.split(",")
    records = [dict(zip(names, r.split(","), strict=True)) for r in rows[-3:]]
    for r in records:
        r.pop("churn")
    return {"records": records}


def _captured(target: Target) -> list[dict[str, Any]]:
    s3 = target.client("s3")
    out: list[dict[str, Any]] = []
    listing = s3.list_objects_v2(Bucket=target.artifacts_bucket, Prefix=f"datacapture/{ENDPOINT}/")
    for obj in sorted(listing.get("Contents", []), key=lambda o: o["Key"]):
        body = s3.get_object(Bucket=target.artifacts_bucket, Key=obj["Key"])["Body"].read().decode()
        out.extend({"key": obj["Key"], **json.loads(line)} for line in body.splitlines())
    return out


def test_every_sampled_request_is_written_in_sagemakers_capture_format(
    live: dict[str, Any], twin: Any, target: Target
) -> None:
    sm = target.client("sagemaker")
    config_name = sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]
    capture = sm.describe_endpoint_config(EndpointConfigName=config_name)["DataCaptureConfig"]
    assert capture["EnableCapture"] is True and capture["InitialSamplingPercentage"] == 100, capture
    assert capture["DestinationS3Uri"] == f"s3://{target.artifacts_bucket}/datacapture", capture

    headers = {"Content-Type": "application/json", "x-api-key": target.api_key}
    request_ids = []
    for one in live["records"]:
        resp = requests.post(
            f"{target.api_url}/models/{MODEL}/predictions",
            data=json.dumps({"instances": [one]}),
            headers=headers,
            timeout=30,
        )
        assert resp.status_code == 200, resp.text
        request_ids.append(resp.json()["request_id"])

    def three() -> list[dict[str, Any]] | None:
        dropped = [line for prefix, line in twin.logs if prefix == f"endpoint:{ENDPOINT}" and "data capture" in line]
        assert not dropped, dropped  # fail fast: the writer could not write (the role's grant, the bucket)
        captured = _captured(target)
        return captured if len(captured) >= 3 else None

    found = wait_for(three, "three capture records")
    assert len(found) == 3, found
    for item in found:
        parts = item["key"].split("/")
        # datacapture/<endpoint>/<variant>/yyyy/mm/dd/hh/<mm>-<ss>-<mmm>-<id>.jsonl
        assert parts[:3] == ["datacapture", ENDPOINT, "AllTraffic"] and len(parts) == 8, item["key"]
        assert parts[-1].endswith(".jsonl") and all(p.isdigit() for p in parts[3:7]), item["key"]
        data = item["captureData"]
        assert data["endpointInput"]["mode"] == "INPUT" and data["endpointOutput"]["mode"] == "OUTPUT", data
        assert data["endpointOutput"]["encoding"] == "JSON", data
        json.loads(data["endpointOutput"]["data"])  # the model server's answer, as sent
        meta = item["eventMetadata"]
        assert meta["eventId"] and meta["inferenceTime"].endswith("Z"), meta
        assert item["eventVersion"] == "0"
    # the predict function sends the API's request id as InferenceId: each record names its request
    assert sorted(item["eventMetadata"]["inferenceId"] for item in found) == sorted(request_ids), found
    inputs = [json.loads(item["captureData"]["endpointInput"]["data"]) for item in found]  # JSON, as sent
    assert all(item["captureData"]["endpointInput"]["encoding"] == "JSON" for item in found), found
    for state in (r["state"] for r in live["records"]):  # each request's record, as the predict function sent it
        assert any(f'"{state}"' in json.dumps(one) for one in inputs), (state, inputs)
    record("data capture at 100 %", f"{len(found)} of 3 requests in s3://…/datacapture/{ENDPOINT}/AllTraffic/")
