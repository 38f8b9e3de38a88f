"""Data capture (issue 14): the DataCaptureConfig DeployModel sends, and the twin's capture files in
SageMaker's format (``sagepipe/twin/sagemaker/capture.py``)."""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from sagepipe.twin.sagemaker import capture
from sagepipe_core import deploy, steps
from sagepipe_core.config import EndpointResources
from tests.unit.fakes import FakeCloudWatch, FakeSageMaker
from tests.unit.test_steps import SETTINGS, deploy_input

DESTINATION = "s3://artifacts/datacapture"
CONFIG = deploy.data_capture_config(100, DESTINATION)
assert CONFIG is not None
WHEN = datetime(2026, 12, 4, 19, 3, 7, 123456, tzinfo=UTC)


# ------------------------------------------------------------------------------- DeployModel
def test_zero_percent_sends_no_data_capture_config() -> None:
    sm, cw = FakeSageMaker(), FakeCloudWatch()
    settings = dataclasses.replace(SETTINGS, data_capture_uri=DESTINATION)
    steps.deploy_model(deploy_input(), sm=sm, cw=cw, settings=settings)
    [config] = sm.called("CreateEndpointConfig")
    assert "DataCaptureConfig" not in config


def test_a_percentage_sends_a_data_capture_config_aws_accepts() -> None:
    """The fake validates every call against botocore's model (pattern, range, enum), as SageMaker does."""
    sm, cw = FakeSageMaker(), FakeCloudWatch()
    state = deploy_input()
    state["config"] = {**state["config"], "endpoint": {**state["config"]["endpoint"], "data_capture_percentage": 25}}
    settings = dataclasses.replace(SETTINGS, data_capture_uri=DESTINATION)
    steps.deploy_model(state, sm=sm, cw=cw, settings=settings)
    [config] = sm.called("CreateEndpointConfig")
    assert config["DataCaptureConfig"] == {
        "EnableCapture": True,
        "InitialSamplingPercentage": 25,
        "DestinationS3Uri": DESTINATION,
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"], "JsonContentTypes": ["application/json"]},
    }


@pytest.mark.parametrize("percentage", [-1, 101])
def test_the_config_refuses_a_percentage_outside_sagemakers_range(percentage: int) -> None:
    with pytest.raises(ValidationError, match="data_capture_percentage"):
        EndpointResources(data_capture_percentage=percentage)


def test_capture_without_a_destination_is_refused() -> None:
    with pytest.raises(ValueError, match="s3:// destination"):
        deploy.data_capture_config(10, "")
    assert deploy.data_capture_config(0, "") is None


def test_settings_read_the_capture_destination() -> None:
    assert steps.Settings.from_env({"DATA_CAPTURE_S3_URI": DESTINATION}).data_capture_uri == DESTINATION


# ------------------------------------------------------------------------------ record format
def test_a_record_has_sagemakers_shape() -> None:
    record = capture.capture_record(
        CONFIG,
        request=b"1,2,3",
        request_type="text/csv",
        response=b'{"predictions": [1]}',
        response_type="application/json",
        when=WHEN,
        event_id="e-1",
        inference_id="inf-1",
    )
    assert record == {
        "captureData": {
            "endpointInput": {"observedContentType": "text/csv", "mode": "INPUT", "data": "1,2,3", "encoding": "CSV"},
            "endpointOutput": {
                "observedContentType": "application/json",
                "mode": "OUTPUT",
                "data": '{"predictions": [1]}',
                "encoding": "JSON",
            },
        },
        "eventMetadata": {"eventId": "e-1", "inferenceTime": "2026-12-04T19:03:07Z", "inferenceId": "inf-1"},
        "eventVersion": "0",
    }


def test_only_the_configured_modes_are_captured() -> None:
    config = {**CONFIG, "CaptureOptions": [{"CaptureMode": "Output"}]}
    record = capture.capture_record(
        config, request=b"x", request_type="text/csv", response=b"y", response_type="text/csv", when=WHEN, event_id="e"
    )
    assert list(record["captureData"]) == ["endpointOutput"]
    assert "inferenceId" not in record["eventMetadata"]


@pytest.mark.parametrize(
    ("ctype", "header", "expected"),
    [
        ("text/csv; charset=utf-8", CONFIG["CaptureContentTypeHeader"], ("CSV", "a,b")),
        ("Application/JSON", CONFIG["CaptureContentTypeHeader"], ("JSON", "a,b")),
        ("application/x-npy", CONFIG["CaptureContentTypeHeader"], ("BASE64", base64.b64encode(b"a,b").decode())),
        ("text/csv", None, ("BASE64", base64.b64encode(b"a,b").decode())),  # no header: SageMaker base64s all
    ],
)
def test_encoding_follows_the_content_type_header(ctype: str, header: Any, expected: tuple[str, str]) -> None:
    assert capture.encode(b"a,b", ctype, header) == expected


def test_a_body_that_is_not_utf8_is_base64_even_when_listed() -> None:
    assert capture.encode(b"\xff\xfe", "text/csv", CONFIG["CaptureContentTypeHeader"])[0] == "BASE64"


def test_files_go_under_endpoint_variant_and_hour() -> None:
    assert capture.capture_location(DESTINATION, "sagepipe-churn", "AllTraffic", WHEN, "abc") == (
        "artifacts",
        "datacapture/sagepipe-churn/AllTraffic/2026/12/04/19/03-07-123-abc.jsonl",
    )
    assert capture.capture_location("s3://b", "e", "v", WHEN, "f")[1] == "e/v/2026/12/04/19/03-07-123-f.jsonl"
    with pytest.raises(ValueError, match="s3://bucket"):
        capture.capture_location("https://b/x", "e", "v", WHEN, "f")


# ------------------------------------------------------------------------------------ writer
class RecordingS3:
    def __init__(self, fail: Exception | None = None) -> None:
        self.puts: list[dict[str, Any]] = []
        self.fail = fail

    def put_object(self, **params: Any) -> dict[str, Any]:
        if self.fail is not None:
            raise self.fail
        self.puts.append(params)
        return {}


def _writer(s3: RecordingS3, percentage: int, samples: list[float], logs: list[tuple[str, str]]) -> Any:
    config = deploy.data_capture_config(percentage, DESTINATION)
    roles: list[str | None] = []

    def factory(role: str | None) -> RecordingS3:
        roles.append(role)
        return s3

    writer = capture.CaptureWriter(
        lambda name: (config if name == "cfg" else None, "AllTraffic"),
        factory,
        lambda prefix, line: logs.append((prefix, line)),
        sample=lambda: samples.pop(0),
    )
    writer.roles = roles
    return writer


def _invoke(writer: Any, config: str = "cfg") -> bool:
    return bool(
        writer.capture(
            endpoint="sagepipe-churn",
            endpoint_config=config,
            role_arn="arn:aws:iam::123456789012:role/exec",
            request=b"1,2",
            request_type="text/csv",
            response=b'{"p": 1}',
            response_type="application/json",
            inference_id="i-1",
        )
    )


def test_the_writer_samples_by_the_percentage_and_writes_json_lines_as_the_role() -> None:
    s3, logs = RecordingS3(), []
    writer = _writer(s3, 30, [0.1, 0.29, 0.3, 0.9], logs)
    assert [_invoke(writer) for _ in range(4)] == [True, True, False, False]  # sample * 100 < 30
    assert not _invoke(writer, config="other")  # an EndpointConfig without DataCaptureConfig
    assert writer.flush() == 2
    writer.close()
    [put] = s3.puts
    assert put["Bucket"] == "artifacts" and put["Key"].startswith("datacapture/sagepipe-churn/AllTraffic/")
    lines = [json.loads(line) for line in put["Body"].decode().splitlines()]
    assert [r["captureData"]["endpointInput"]["data"] for r in lines] == ["1,2", "1,2"]
    assert {r["eventMetadata"]["inferenceId"] for r in lines} == {"i-1"}
    assert len({r["eventMetadata"]["eventId"] for r in lines}) == 2
    assert writer.roles == ["arn:aws:iam::123456789012:role/exec"] and writer.written == 2 and not logs


def test_a_write_the_role_may_not_make_is_logged_and_never_raises() -> None:
    s3, logs = RecordingS3(fail=RuntimeError("AccessDenied")), []
    writer = _writer(s3, 100, [0.0], logs)
    assert _invoke(writer)
    assert writer.flush() == 0
    writer.close()
    assert writer.dropped == 1
    assert logs == [("endpoint:sagepipe-churn", f"data capture: 1 records not written to {DESTINATION}: AccessDenied")]


@pytest.mark.parametrize(
    "inference_id, sent",
    [
        ("c6af9ac6-7b61-11e6-9a41-93e8deadbeef", True),  # an API Gateway request id
        ("x" * 64, True),
        ("x" * 65, False),  # over InvokeEndpoint's max length 64
        (" leading-space", False),  # the pattern's \S first character
        ("tab\tinside", False),  # not \p{Print}
        (None, False),
    ],
)
def test_the_predict_path_sends_a_valid_inference_id_only(inference_id: str | None, sent: bool) -> None:
    """InvokeEndpoint's ``InferenceId`` (1-64, ``\\A\\S[\\p{Print}]*\\z``) carries the API's request id into the
    capture record; one AWS would refuse is left out rather than failing the prediction (the Stubber checks
    the call against the service model too)."""
    import io

    import botocore.session
    from botocore.response import StreamingBody
    from botocore.stub import ANY, Stubber

    from sagepipe_core import predict

    runtime = botocore.session.get_session().create_client("sagemaker-runtime", region_name="us-east-1")
    body = json.dumps({"predictions": [1]}).encode()
    version = predict.LiveVersion(
        model="churn",
        endpoint="sagepipe-churn",
        endpoint_config="churn-v1",
        model_name="churn-v1",
        model_data_url="s3://b/model.tar.gz",
        schema=None,  # type: ignore[arg-type]  # not read by _invoke
        evaluation=None,
        deployed_at=None,
    )
    expected: dict[str, Any] = {"EndpointName": "sagepipe-churn", "ContentType": ANY, "Accept": ANY, "Body": ANY}
    if sent:
        expected["InferenceId"] = inference_id
    with Stubber(runtime) as stub:
        stub.add_response("invoke_endpoint", {"Body": StreamingBody(io.BytesIO(body), len(body))}, expected)
        predictions, _ = predict._invoke(runtime, version, "churn", [{"a": 1}], inference_id)
        stub.assert_no_pending_responses()
    assert predictions == [1]
