"""Serverless endpoints (issue 14): the per-model config, the EndpointConfig's ServerlessConfig, what
SageMaker refuses (a real-time endpoint updated to serverless, data capture), and the 4 MB payload."""

from __future__ import annotations

import io
import json
from typing import Any

import botocore.session
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from sagepipe_core import deploy, predict
from sagepipe_core.config import parse_config
from sagepipe_core.errors import DeploymentFailedError, InvalidConfigError
from tests.unit.fakes import FakeSageMaker


def test_the_config_takes_serverless_memory_in_1_gb_steps_and_no_data_capture() -> None:
    ep = parse_config({"endpoint": {"serverless": {"memory_size_in_mb": 3072, "max_concurrency": 20}}}).endpoint
    assert ep.serverless is not None and (ep.serverless.memory_size_in_mb, ep.serverless.max_concurrency) == (3072, 20)
    for bad, field in (
        ({"memory_size_in_mb": 1500}, "memory_size_in_mb"),  # not a 1 GB step
        ({"memory_size_in_mb": 7168}, "memory_size_in_mb"),  # over 6 GB
        ({"max_concurrency": 201}, "max_concurrency"),
        ({"max_concurrency": 0}, "max_concurrency"),
    ):
        with pytest.raises(InvalidConfigError, match=field):
            parse_config({"endpoint": {"serverless": bad}})
    with pytest.raises(InvalidConfigError, match="serverless endpoints support no data capture"):
        parse_config({"endpoint": {"serverless": {}, "data_capture_percentage": 10}})


def _deploy(sm: FakeSageMaker, config_name: str, endpoint: dict[str, Any]) -> dict[str, Any]:
    return deploy.start_deployment(  # type: ignore[return-value]
        sm,
        endpoint_name="sagepipe-churn",
        model_name=config_name,
        endpoint_config_name=config_name,
        image="img",
        model_data_url="s3://b/models/churn/job/output/model.tar.gz",
        role_arn="arn:aws:iam::123456789012:role/r",
        instance_type="ml.m5.large",
        instance_count=1,
        alarm_names=[],
        region="us-east-1",
        serverless=deploy.serverless_config(endpoint),
    )


def test_a_serverless_variant_has_its_serverless_config_and_no_instances() -> None:
    sm = FakeSageMaker()
    _deploy(sm, "churn-v1", {"serverless": {"memory_size_in_mb": 2048, "max_concurrency": 5}})
    [variant] = sm.endpoint_configs["churn-v1"]["ProductionVariants"]
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 5}
    assert "InstanceType" not in variant and "InitialInstanceCount" not in variant
    assert deploy.is_serverless(sm.endpoint_configs["churn-v1"])
    assert deploy.serverless_config({"instance_type": "ml.m5.large"}) is None


def test_a_real_time_endpoint_is_not_updated_to_serverless() -> None:
    """SageMaker does not support updating a real-time endpoint to serverless ("Update a serverless
    endpoint"): the deploy step fails before UpdateEndpoint, with what to do, and the live model stays."""
    sm = FakeSageMaker()
    _deploy(sm, "churn-v1", {})
    sm.endpoints["sagepipe-churn"]["EndpointStatus"] = "InService"
    with pytest.raises(DeploymentFailedError, match="cannot update it to serverless"):
        _deploy(sm, "churn-v2", {"serverless": {"memory_size_in_mb": 2048, "max_concurrency": 5}})
    assert sm.called("UpdateEndpoint") == [] and sm.endpoints["sagepipe-churn"]["EndpointConfigName"] == "churn-v1"
    # serverless to serverless (another memory size) is an ordinary update
    sm2 = FakeSageMaker()
    _deploy(sm2, "churn-v1", {"serverless": {"memory_size_in_mb": 2048, "max_concurrency": 5}})
    sm2.endpoints["sagepipe-churn"]["EndpointStatus"] = "InService"
    assert (
        _deploy(sm2, "churn-v2", {"serverless": {"memory_size_in_mb": 4096, "max_concurrency": 5}})["action"]
        == "update"
    )


def _version(max_payload: int) -> predict.LiveVersion:
    return predict.LiveVersion(
        model="churn",
        endpoint="sagepipe-churn",
        endpoint_config="churn-v1",
        model_name="churn-v1",
        model_data_url="s3://b/model.tar.gz",
        schema=None,  # type: ignore[arg-type]  # not read by _invoke
        evaluation=None,
        deployed_at=None,
        max_payload_bytes=max_payload,
    )


def test_a_serverless_version_refuses_more_than_4_mb_for_the_model_with_413() -> None:
    runtime = botocore.session.get_session().create_client("sagemaker-runtime", region_name="us-east-1")
    records = [{"state": "x" * 1000} for _ in range(4500)]  # ≈ 4.5 MB of JSON: under 6 MB, over 4 MB
    with Stubber(runtime) as stub:  # no call expected: any call would raise
        with pytest.raises(predict.ApiError) as refused:
            predict._invoke(runtime, _version(predict.MAX_SERVERLESS_PAYLOAD_BYTES), "churn", records)
        stub.assert_no_pending_responses()
    assert refused.value.status == 413 and refused.value.code == "payload_too_large"
    assert "serverless: 4 MB" in refused.value.message
    body = json.dumps({"predictions": [1] * len(records)}).encode()
    with Stubber(runtime) as stub:  # the same records go to a real-time version
        stub.add_response(
            "invoke_endpoint",
            {"Body": StreamingBody(io.BytesIO(body), len(body))},
            {"EndpointName": "sagepipe-churn", "ContentType": ANY, "Accept": ANY, "Body": ANY},
        )
        predicted, _ = predict._invoke(runtime, _version(predict.MAX_PAYLOAD_BYTES), "churn", records)
    assert len(predicted) == len(records)
