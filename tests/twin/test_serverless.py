"""Serverless endpoints on the twin (issue 14): a model config's ``endpoint.serverless`` deploys a
ServerlessConfig variant that serves the API; SageMaker's refusals hold (memory steps, data capture, a
real-time endpoint updated to serverless, InvokeEndpoint over 4 MB)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from sagepipe import client
from sagepipe.client import Target

from .conftest import CHURN, churn_config, record, wait_for_key

pytestmark = pytest.mark.twin
SERVERLESS = {"serverless": {"memory_size_in_mb": 2048, "max_concurrency": 5}}


def _upload(target: Target, directory: Path, model: str, rows: slice, **config: Any) -> dict[str, Any]:
    header, *lines = CHURN.read_text().splitlines()
    path = directory / f"{model}-{rows.start}-{rows.stop}.csv"
    path.write_text("\n".join([header, *lines[rows]]) + "\n")
    [desc] = wait_for_key(target, client.upload(target, path, model, churn_config(directory, **config)))
    return desc


def _records(n: int) -> list[dict[str, str]]:
    header, *lines = CHURN.read_text().splitlines()
    names = header.split(",")
    out = [dict(zip(names, r.split(","), strict=True)) for r in lines[-n:]]
    for r in out:
        r.pop("churn")
    return out


def test_a_serverless_endpoint_is_deployed_and_serves_the_api(target: Target, tmp_path: Path) -> None:
    desc = _upload(target, tmp_path, "sless", slice(0, 1500), endpoint=SERVERLESS)
    assert desc["status"] == "SUCCEEDED", desc.get("cause")
    sm = target.client("sagemaker")
    config = sm.describe_endpoint_config(
        EndpointConfigName=sm.describe_endpoint(EndpointName="sagepipe-sless")["EndpointConfigName"]
    )
    [variant] = config["ProductionVariants"]
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 5}, variant
    assert "InstanceType" not in variant
    resp = requests.post(
        f"{target.api_url}/models/sless/predictions",
        data=json.dumps({"instances": _records(3)}),
        headers={"Content-Type": "application/json", "x-api-key": target.api_key},
        timeout=30,
    )
    assert resp.status_code == 200 and len(resp.json()["predictions"]) == 3, resp.text
    runtime = target.client("sagemaker-runtime")
    with pytest.raises(ClientError) as refused:  # SageMaker's serverless payload limit, not the 6 MB one
        runtime.invoke_endpoint(EndpointName="sagepipe-sless", ContentType="text/csv", Body=b"1," * (2_200_000))
    assert refused.value.response["Error"]["Code"] == "ValidationError"
    assert "serverless InvokeEndpoint limit of 4194304 bytes" in str(refused.value)
    model_name = variant["ModelName"]
    for variants, capture, expected in (
        (
            [{**variant, "ServerlessConfig": {"MemorySizeInMB": 1500, "MaxConcurrency": 5}}],
            None,
            "Member must be one of",
        ),
        ([{**variant, "InstanceType": "ml.m5.large"}], None, "has both ServerlessConfig and an instance"),
        (
            [variant],
            {
                "EnableCapture": True,
                "InitialSamplingPercentage": 10,
                "DestinationS3Uri": "s3://b/dc",
                "CaptureOptions": [{"CaptureMode": "Input"}],
            },
            "DataCaptureConfig is not supported for serverless endpoints",
        ),
    ):
        with pytest.raises(ClientError) as bad:
            sm.create_endpoint_config(
                EndpointConfigName=f"bad-{len(expected)}",
                ProductionVariants=[{k: v for k, v in v_.items() if k != "CurrentServerlessConfig"} for v_ in variants],
                **({"DataCaptureConfig": capture} if capture else {}),
            )
        assert bad.value.response["Error"]["Code"] == "ValidationException" and expected in str(bad.value), bad.value
    assert model_name
    record("serverless endpoint", "ServerlessConfig 2048 MB / 5 deployed, API 200; over 4 MB, 1.5 GB, capture refused")


def test_a_real_time_endpoint_is_not_updated_to_serverless(target: Target, tmp_path: Path) -> None:
    first = _upload(target, tmp_path, "tosless", slice(0, 1500))
    assert first["status"] == "SUCCEEDED", first.get("cause")
    sm = target.client("sagemaker")
    live = sm.describe_endpoint(EndpointName="sagepipe-tosless")["EndpointConfigName"]
    second = _upload(
        target, tmp_path, "tosless", slice(0, 1600), endpoint=SERVERLESS, tolerance=1.0, threshold=0.5
    )  # gate passes
    assert second["status"] == "FAILED" and second["error"] == "DeploymentFailedError", second.get("output", "")[-2500:]
    assert "cannot update it to serverless" in second["cause"], second["cause"]
    assert sm.describe_endpoint(EndpointName="sagepipe-tosless")["EndpointConfigName"] == live  # still serving
    failed = [n for n in client.notifications(target, "tosless") if n["detail-type"] == "Pipeline Failed"]
    assert failed and "cannot update it to serverless" in json.dumps(failed[-1]["detail"])
    # and SageMaker itself (the twin) refuses the update, had the deploy step tried it
    model = sm.describe_endpoint_config(EndpointConfigName=live)["ProductionVariants"][0]["ModelName"]
    sm.create_endpoint_config(
        EndpointConfigName="tosless-serverless",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": model,
                **{"ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 1}},
            }
        ],
    )
    with pytest.raises(ClientError) as refused:
        sm.update_endpoint(EndpointName="sagepipe-tosless", EndpointConfigName="tosless-serverless")
    assert "Updating a real-time endpoint to a serverless endpoint is not supported" in str(refused.value)
    record(
        "real-time endpoint → serverless", "run FAILED (DeploymentFailedError) before UpdateEndpoint; old model serving"
    )
