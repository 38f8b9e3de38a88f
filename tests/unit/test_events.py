"""sagepipe_core.events: trigger normalisation (S3 via EventBridge, classic S3 notifications,
schedule, Retrain Requested), key decoding, skips and canonical execution input."""

from __future__ import annotations

import copy
import json

import pytest

from sagepipe_core.errors import InvalidEventError
from sagepipe_core.events import DataVersion, Malformed, RetrainRequest, Skip, decode_key, normalize
from tests.conftest import load_event

pytestmark = pytest.mark.unit

APP = "sagepipe"


def _norm(event, scheduled_model="churn"):
    return normalize(event, app_source=APP, scheduled_model=scheduled_model)


def _eb(key: str, size: int | None = 100, reason: str = "PutObject") -> dict:
    ev = load_event("start_s3_eventbridge.json")
    ev["detail"]["object"]["key"] = key
    ev["detail"]["object"]["size"] = size
    ev["detail"]["reason"] = reason
    return ev


def _classic(key: str, size: int | None = 100, name: str = "ObjectCreated:Put") -> dict:
    ev = load_event("start_s3_notification.json")
    ev["Records"][0]["s3"]["object"]["key"] = key
    ev["Records"][0]["s3"]["object"]["size"] = size
    ev["Records"][0]["eventName"] = name
    return ev


@pytest.mark.parametrize(
    "raw, decoded",
    [
        ("datasets/churn/churn+-+Copy+%282%29.csv", "datasets/churn/churn - Copy (2).csv"),
        ("datasets/churn/c%2B%2B.csv", "datasets/churn/c++.csv"),
        ("datasets/churn/100%25.csv", "datasets/churn/100%.csv"),
        ("datasets/churn/%C3%BCber.csv", "datasets/churn/über.csv"),
    ],
)
@pytest.mark.parametrize("shape", [_eb, _classic])
def test_key_decoded_exactly_once(shape, raw, decoded):
    assert decode_key(raw) == decoded
    [item] = _norm(shape(raw))
    assert isinstance(item, DataVersion)
    assert item.key == decoded
    assert item.model == "churn"


def test_eventbridge_sample_event():
    [item] = _norm(load_event("start_s3_eventbridge.json"))
    assert isinstance(item, DataVersion)
    assert item == DataVersion(
        bucket="sagepipe-data-123456789012",
        key="datasets/churn/churn - Copy (2).csv",
        etag="b1946ac92492d2347c6235b4d2611184",
        version_id="IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
        size=452312,
        model="churn",
        trigger="s3:ObjectCreated:PutObject",
        identity="b1946ac92492d2347c6235b4d2611184",
    )


def test_classic_sample_event_carries_complete_multipart_upload():
    [item] = _norm(load_event("start_s3_notification.json"))
    assert isinstance(item, DataVersion)
    assert item.key == "datasets/churn/c++.csv"
    assert item.trigger == "s3:ObjectCreated:CompleteMultipartUpload"
    assert item.etag == "d41d8cd98f00b204e9800998ecf8427e-4"
    assert item.version_id == "096fKKXTRTtl3on89fVO.nfljtsv6qko"


def test_eventbridge_multipart_reason_carried():
    [item] = _norm(_eb("datasets/churn/a.csv", reason="CompleteMultipartUpload"))
    assert item.trigger == "s3:ObjectCreated:CompleteMultipartUpload"


@pytest.mark.parametrize("shape", [_eb, _classic])
def test_zero_byte_folder_skipped_with_reason(shape):
    [item] = _norm(shape("datasets/churn/2024/", size=0))
    assert isinstance(item, Skip)
    assert item.key == "datasets/churn/2024/"
    assert "zero-byte" in item.reason


@pytest.mark.parametrize("shape", [_eb, _classic])
def test_empty_csv_is_a_data_version_not_a_folder(shape):
    """A zero-byte .csv is someone's upload: it runs so that ValidateData quarantines it as empty."""
    [item] = _norm(shape("datasets/churn/empty.csv", size=0))
    assert isinstance(item, DataVersion) and item.size == 0


@pytest.mark.parametrize("shape", [_eb, _classic])
@pytest.mark.parametrize(
    "key", ["datasets/churn/sagepipe.json", "datasets/churn/data.parquet", "datasets/churn/data.csv.gz"]
)
def test_non_csv_skipped(shape, key):
    [item] = _norm(shape(key))
    assert isinstance(item, Skip)
    assert item.reason == "not a .csv object"


@pytest.mark.parametrize("shape", [_eb, _classic])
@pytest.mark.parametrize(
    "key",
    [
        "quarantine/churn/x/churn.csv",
        "runs/churn/x/splits/train/train.csv",
        "models/churn/x.csv",
        "code/a.csv",
        "reports/a.csv",
    ],
)
def test_output_prefixes_skipped(shape, key):
    [item] = _norm(shape(key))
    assert isinstance(item, Skip)
    assert "output prefix" in item.reason


@pytest.mark.parametrize("key", ["other/churn/a.csv", "datasets/a.csv", "datasets//a.csv"])
def test_keys_outside_datasets_model_skipped(key):
    [item] = _norm(_eb(key))
    assert isinstance(item, Skip)


def test_uppercase_csv_extension_accepted():
    [item] = _norm(_eb("datasets/churn/DATA.CSV"))
    assert isinstance(item, DataVersion)


def test_classic_non_creation_event_skipped():
    [item] = _norm(_classic("datasets/churn/a.csv", name="ObjectRemoved:Delete"))
    assert isinstance(item, Skip)


def test_classic_multiple_records():
    ev = _classic("datasets/churn/a.csv")
    second = copy.deepcopy(ev["Records"][0])
    second["s3"]["object"]["key"] = "datasets/churn/folder/"
    second["s3"]["object"]["size"] = 0
    ev["Records"].append(second)
    items = _norm(ev)
    assert [type(i) for i in items] == [DataVersion, Skip]


def test_eventbridge_other_detail_type_skipped():
    ev = _eb("datasets/churn/a.csv")
    ev["detail-type"] = "Object Tags Added"
    [item] = _norm(ev)
    assert isinstance(item, Skip)


def test_schedule_event():
    [item] = _norm(load_event("start_schedule.json"), scheduled_model="churn")
    assert item == RetrainRequest(model="churn", trigger="schedule", request_id="89d1a02d-5ec7-412e-82f5-13505f849b41")


def test_schedule_without_scheduled_model_is_invalid():
    with pytest.raises(InvalidEventError):
        _norm(load_event("start_schedule.json"), scheduled_model=None)


def test_retrain_requested_event():
    [item] = _norm(load_event("start_retrain_requested.json"))
    assert item == RetrainRequest(
        model="churn", trigger="retrain-request", request_id="0b6e1c2a-7d6f-4f4e-9a55-3c1f0e5b2d11"
    )


@pytest.mark.parametrize("detail", [{}, {"model": ""}, {"model": 3}, {"model": "a/b"}])
def test_retrain_requested_needs_model(detail):
    ev = load_event("start_retrain_requested.json")
    ev["detail"] = detail
    with pytest.raises(InvalidEventError):
        _norm(ev)


def test_retrain_from_other_source_is_invalid():
    ev = load_event("start_retrain_requested.json")
    ev["source"] = "someone.else"
    with pytest.raises(InvalidEventError):
        _norm(ev)


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"foo": 1},
        {"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification"},
        {"Records": "not a list"},
        {"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {"name": "b"}}},
    ],
)
def test_unknown_shapes_raise(event):
    with pytest.raises(InvalidEventError) as info:
        _norm(event)
    assert info.value.to_dict()["reason"] == "invalid_event"


@pytest.mark.parametrize(
    "record", [{"notS3": {}}, {"s3": {"bucket": {}}}, "text", {"s3": {"bucket": {"name": "b"}, "object": None}}]
)
def test_malformed_record_is_an_item_not_an_error(record):
    """One unreadable record of a classic notification is Malformed (dead-lettered); the others still run."""
    good = load_event("start_s3_notification.json")["Records"][0]
    items = _norm({"Records": [record, good]})
    assert isinstance(items[0], Malformed) and items[0].record == record and "lacks" in items[0].reason
    assert isinstance(items[1], DataVersion)


def test_non_dict_event_raises():
    with pytest.raises(InvalidEventError):
        _norm(["not", "a", "dict"])  # type: ignore[arg-type]


def test_execution_input_byte_identical_for_same_event():
    a = _norm(load_event("start_s3_eventbridge.json"))[0]
    b = _norm(load_event("start_s3_eventbridge.json"))[0]
    assert a.execution_input(poll_seconds=30, max_polls=240) == b.execution_input(poll_seconds=30, max_polls=240)
    assert a.execution_name == b.execution_name
    doc = json.loads(a.execution_input(poll_seconds=30, max_polls=240))
    assert doc == {
        "dataset": {
            "bucket": "sagepipe-data-123456789012",
            "key": "datasets/churn/churn - Copy (2).csv",
            "etag": "b1946ac92492d2347c6235b4d2611184",
            "version_id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
            "size": 452312,
        },
        "model": "churn",
        "trigger": "s3:ObjectCreated:PutObject",
        "poll_seconds": 30,
        "max_polls": 240,
    }


def test_redelivery_with_different_envelope_same_execution():
    """A redelivered event has the same object identity: event id / time differences must not matter."""
    a = load_event("start_s3_eventbridge.json")
    b = load_event("start_s3_eventbridge.json")
    b["id"], b["time"], b["detail"]["request-id"] = "another-id", "2030-01-01T00:00:00Z", "XYZ"
    ia, ib = _norm(a)[0], _norm(b)[0]
    assert ia.execution_name == ib.execution_name
    assert ia.execution_input() == ib.execution_input()


def test_new_etag_is_a_new_version():
    a = _eb("datasets/churn/a.csv")
    b = _eb("datasets/churn/a.csv")
    b["detail"]["object"]["etag"] = "00000000000000000000000000000000"
    assert _norm(a)[0].execution_name != _norm(b)[0].execution_name


def test_etag_quotes_stripped():
    ev = _classic("datasets/churn/a.csv")
    ev["Records"][0]["s3"]["object"]["eTag"] = '"abc"'
    assert _norm(ev)[0].etag == "abc"
