"""State, error-cause and event sizes stay far below Step Functions' 256 KB whatever the data (issue 9 item 10).

``States.DataLimitExceeded`` (a state over 256 KB) cannot be caught, so the run would end with no
notification; the full detail goes to S3 and the state carries its URI.
"""

from __future__ import annotations

import json

import pytest

from sagepipe_core import gate, steps
from sagepipe_core.errors import RESULT_LIMIT, InvalidDatasetError, StateTooLargeError, check_result_size
from tests.unit.fakes import FakeS3, FakeSageMaker
from tests.unit.test_steps import ARTIFACTS, SETTINGS, execution_input

pytestmark = pytest.mark.unit

STATE_BUDGET = 16 * 1024  # what one step may add to the state, far below 256 KB


def _many_classes(classes: int, rows_per_class: int) -> bytes:
    lines = ["x,y,label"]
    for c in range(classes):
        lines += [f"{c % 97},{(c * r) % 89},class-{c:05d}" for r in range(rows_per_class)]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture(scope="module")
def ten_thousand_classes() -> bytes:
    return _many_classes(10_000, 10)


def test_validate_data_with_10000_classes_returns_a_small_run_record(ten_thousand_classes: bytes) -> None:
    s3, sm = FakeS3(), FakeSageMaker()
    execution, name = execution_input(s3, "datasets/many/data.csv", ten_thousand_classes, model="many")
    bucket = execution["dataset"]["bucket"]
    s3.objects[bucket, "datasets/many/sagepipe.json"] = json.dumps({"problem_type": "multiclass"}).encode()
    run = steps.validate_data(execution, execution_name=name, s3=s3, sm=sm, settings=SETTINGS)
    size = len(json.dumps(run))
    assert size < STATE_BUDGET, size  # was 304 KB: States.DataLimitExceeded
    assert run["dataset"]["classes"] == 10_000 and len(run["dataset"]["class_counts"]) == 20
    assert run["dataset"]["class_counts_truncated"] is True
    profile_key = run["dataset"]["profile"].removeprefix(f"s3://{ARTIFACTS}/")
    full = json.loads(s3.objects[ARTIFACTS, profile_key])
    assert len(full["class_counts"]) == 10_000 and full["class_counts"]["class-09999"] == 10
    check_result_size(run)


def test_too_few_rows_per_class_with_10000_classes_has_a_small_cause() -> None:
    s3, sm = FakeS3(), FakeSageMaker()
    execution, name = execution_input(s3, "datasets/many/data.csv", _many_classes(10_000, 3), model="many")
    bucket = execution["dataset"]["bucket"]
    s3.objects[bucket, "datasets/many/sagepipe.json"] = json.dumps({"problem_type": "multiclass"}).encode()
    with pytest.raises(InvalidDatasetError) as info:
        steps.validate_data(execution, execution_name=name, s3=s3, sm=sm, settings=SETTINGS)
    cause = str(info.value)  # the ASL Cause, carried into NotifyDataRejected's event and DataRejected
    assert len(cause) < 8 * 1024, len(cause)  # was 372 KB
    doc = json.loads(cause)
    assert doc["check"] == "too_few_rows_per_class" and doc["classes"] == 10_000 and "quarantine" in doc
    assert "10000 classes, e.g." in doc["message"]
    reason_key = doc["quarantine"]["reason"].removeprefix(f"s3://{ARTIFACTS}/")
    assert json.loads(s3.objects[ARTIFACTS, reason_key])["check"] == "too_few_rows_per_class"


def test_any_error_cause_is_bounded_and_says_what_was_cut() -> None:
    err = InvalidDatasetError("m" * 50_000, reason="x", huge={str(i): i for i in range(20_000)}, small=1)
    doc = json.loads(str(err))
    assert len(str(err)) <= 8192
    assert doc["huge"] == "…" and doc["small"] == 1 and doc["details_truncated"] == ["huge"]
    assert len(err.to_dict()["huge"]) == 20_000  # the full record (reason.json) keeps everything


def test_incompatible_champion_reason_is_bounded() -> None:
    config = {"metric": "auc", "threshold": 0.75, "higher_is_better": True}
    why = "features differ: " + ", ".join(f"feature_{i}" for i in range(3_000))  # ~34 KB
    evaluation = {"metrics": {"test": {"auc": 0.9}}, "champion": {"status": "incompatible", "reason": why}}
    decision = gate.decide(
        config=config, evaluation=evaluation, final_metrics=[{"MetricName": "test:auc", "Value": 0.9}]
    )
    assert decision["deploy"] and len(json.dumps(decision)) < 2048, len(json.dumps(decision))


def test_a_result_over_the_limit_is_a_named_catchable_error() -> None:
    with pytest.raises(StateTooLargeError) as info:
        check_result_size({"ok": 1, "big": "x" * RESULT_LIMIT})
    assert info.value.details["largest"]["big"] > RESULT_LIMIT and info.value.details["limit"] == RESULT_LIMIT
