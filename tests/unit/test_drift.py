"""Drift (issue 14): the training baseline (``model/baseline.py``), the scores and the scheduled check
(``sagepipe_core.drift``), and the retrain it may request."""

from __future__ import annotations

import io
import json
import re
import tarfile
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import numpy as np
import pandas as pd
import pytest
from moto import mock_aws

from sagepipe.twin.sagemaker import capture
from sagepipe_core import deploy, drift, events
from sagepipe_core.config import DriftConfig, parse_config
from sagepipe_core.steps import Settings
from tests.conftest import import_model_module

baseline = import_model_module("baseline")

FEATURES = [{"name": "tenure", "type": "numeric"}, {"name": "plan", "type": "categorical"}]
NOW = datetime(2026, 12, 4, 12, 30, tzinfo=UTC)
BUCKET = "artifacts"


def _frame(
    n: int, rng: np.random.Generator, *, shift: float = 0.0, plans: tuple[float, float, float] = (0.5, 0.3, 0.2)
):
    tenure = rng.normal(30 + shift, 10, n)
    tenure[rng.random(n) < 0.05] = np.nan
    plan = rng.choice(["basic", "plus", "pro"], size=n, p=list(plans)).astype(object)
    return pd.DataFrame({"tenure": tenure, "plan": plan})


def _stats(n: int = 4000, seed: int = 1) -> dict[str, Any]:
    return baseline.statistics(_frame(n, np.random.default_rng(seed)), FEATURES)


def test_the_baseline_has_model_monitors_statistics_shape_and_counts_every_row() -> None:
    stats = _stats()
    assert stats["version"] == 0.0 and stats["dataset"] == {"item_count": 4000}
    tenure, plan = stats["features"]
    assert (tenure["name"], tenure["inferred_type"], plan["inferred_type"]) == ("tenure", "Fractional", "String")
    num = tenure["numerical_statistics"]
    buckets = num["distribution"]["quantile"]["buckets"]
    assert len(buckets) == baseline.NUMERIC_BUCKETS
    assert sum(b["count"] for b in buckets) == num["common"]["num_present"]
    assert num["common"]["num_present"] + num["common"]["num_missing"] == 4000
    assert all(abs(b["count"] - num["common"]["num_present"] / 10) <= 2 for b in buckets)  # deciles
    assert buckets[0]["lower_bound"] == num["min"] and buckets[-1]["upper_bound"] == num["max"]
    cats = plan["string_statistics"]
    assert cats["distinct_count"] == 3 and cats["distribution"]["categorical"]["other_count"] == 0
    json.dumps(stats, allow_nan=False)  # what train.py writes: no NaN anywhere


def test_the_check_buckets_values_exactly_as_the_baseline_did() -> None:
    """The training rows counted by the drift check land in the baseline's buckets one for one (one rule,
    ``bisect_left`` on the upper bounds, on both sides), so PSI of the training data against itself is 0."""
    frame = _frame(3000, np.random.default_rng(7))
    frame.loc[0, "tenure"] = frame["tenure"].quantile(0.3)  # a value on an edge
    counts = drift.feature_counts(baseline.statistics(frame, FEATURES))
    for row in frame.to_dict("records"):
        for c in counts:
            value = row[c.name]
            c.add(None if isinstance(value, float) and np.isnan(value) else value)
    for c in counts:
        assert c.actual == c.expected, c.name
        assert drift.psi(c.expected, c.actual) == pytest.approx(0.0, abs=1e-12)


def test_strings_and_missing_tokens_are_read_as_training_reads_them() -> None:
    [c] = drift.feature_counts(
        baseline.statistics(pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]}), [FEATURES[0] | {"name": "x"}])
    )
    for value in ["2", " 3.0 ", "1,000", "N/A", "?", None, "abc", True]:
        c.add(value)
    missing = c.actual[-1]
    assert missing == 5  # N/A, ?, None, "abc" (not a number), True (a bool is not a number)
    assert sum(c.actual[:-1]) == 3 and c.actual[-2] == 1  # 1,000 is above every edge


def _judge(stats: dict[str, Any], frame: pd.DataFrame) -> list[dict[str, Any]]:
    counts = drift.feature_counts(stats)
    for row in frame.to_dict("records"):
        for c in counts:
            value = row[c.name]
            c.add(None if isinstance(value, float) and np.isnan(value) else value)
    cfg = DriftConfig()
    return drift.judge(
        counts, psi_threshold=cfg.psi_threshold, ks_threshold=cfg.ks_threshold, linf_threshold=cfg.linf_threshold
    )


def test_unshifted_traffic_does_not_drift_and_shifted_traffic_does() -> None:
    stats = _stats()
    same = _judge(stats, _frame(1000, np.random.default_rng(99)))
    assert not any(s["drifted"] for s in same), same
    moved = _judge(stats, _frame(1000, np.random.default_rng(99), shift=8.0))
    assert [s["name"] for s in moved if s["drifted"]] == ["tenure"], moved
    assert moved[0]["psi"] > 0.2 and moved[0]["ks"] > 0.15
    mixed = _judge(stats, _frame(1000, np.random.default_rng(99), plans=(0.2, 0.3, 0.5)))
    assert [s["name"] for s in mixed if s["drifted"]] == ["plan"], mixed
    assert mixed[0]["linf"] == pytest.approx(0.3, abs=0.05)


def test_a_category_the_baseline_never_saw_counts_as_other_and_drifts() -> None:
    stats = _stats()
    frame = _frame(1000, np.random.default_rng(3))
    frame.loc[: len(frame) // 2, "plan"] = "enterprise"
    [plan] = [s for s in _judge(stats, frame) if s["name"] == "plan"]
    assert plan["drifted"] and plan["linf"] > 0.4


def test_malformed_baselines_are_refused() -> None:
    with pytest.raises(drift.BaselineError):
        drift.feature_counts({"features": [{"name": "x", "string_statistics": {}}]})


def _line(payload: bytes, ctype: str, when: datetime) -> str:
    cfg = deploy.data_capture_config(100, f"s3://{BUCKET}/datacapture")
    assert cfg is not None
    rec = capture.capture_record(
        cfg,
        request=payload,
        request_type=ctype,
        response=b"{}",
        response_type="application/json",
        when=when,
        event_id="e",
    )
    return json.dumps(rec)


def test_captured_records_of_every_encoding_and_only_inside_the_window() -> None:
    start = NOW - timedelta(hours=1)
    lines = [
        _line(
            json.dumps({"instances": [{"tenure": 1, "plan": "pro"}, {"tenure": 2}]}).encode(), "application/json", NOW
        ),
        _line(b"3,basic\n4,plus\n", "text/csv", NOW),
        _line(json.dumps({"instances": [{"tenure": 5}]}).encode(), "application/x-custom", NOW),  # base64
        _line(json.dumps({"instances": [{"tenure": 6}]}).encode(), "application/json", start - timedelta(seconds=1)),
        "not json",
        "",
    ]
    assert '"encoding": "BASE64"' in lines[2]
    rows = list(drift.captured_records(lines, ["tenure", "plan"], start))
    assert [r.get("tenure") for r in rows] == [1, 2, "3", "4", 5]
    assert rows[2] == {"tenure": "3", "plan": "basic"}


def test_capture_hours_cover_the_window() -> None:
    assert drift.capture_hours(NOW - timedelta(hours=2), NOW) == ["2026/12/04/10", "2026/12/04/11", "2026/12/04/12"]


def test_drift_settings_are_validated() -> None:
    assert parse_config({"drift": {"window_hours": 6, "retrain": True}}).drift.window_hours == 6
    with pytest.raises(Exception, match="psi_threshold"):
        parse_config({"drift": {"psi_threshold": 0}})
    with pytest.raises(Exception, match="window"):
        parse_config({"drift": {"window": 6}})  # unknown field


def test_only_a_capturing_deploy_records_its_drift_settings() -> None:
    from tests.unit.fakes import FakeSageMaker

    for capture_cfg, expected in ((None, False), (deploy.data_capture_config(10, "s3://b/dc"), True)):
        sm = FakeSageMaker()
        deploy.start_deployment(
            sm,
            endpoint_name="sagepipe-churn",
            model_name="churn-v1",
            endpoint_config_name="churn-v1",
            image="img",
            model_data_url="s3://b/models/churn/job/output/model.tar.gz",
            role_arn="arn:aws:iam::123456789012:role/r",
            instance_type="ml.m5.large",
            instance_count=1,
            alarm_names=[],
            region="us-east-1",
            data_capture=capture_cfg,
            drift={"retrain": True, "window_hours": 6},
        )
        env = sm.models["churn-v1"]["PrimaryContainer"]["Environment"]
        assert (deploy.DRIFT_ENV in env) is expected
        if expected:
            assert json.loads(env[deploy.DRIFT_ENV]) == {"retrain": True, "window_hours": 6}


def test_drift_detected_with_retrain_starts_a_retrain_and_without_it_nothing() -> None:
    def event(retrain: Any) -> dict[str, Any]:
        detail = {"model": "churn", "retrain": retrain}
        return {"source": "sagepipe", "detail-type": "Drift Detected", "id": "ev-1", "detail": detail}

    [item] = events.normalize(event(True), app_source="sagepipe", scheduled_model=None)
    assert item == events.RetrainRequest("churn", "drift", "ev-1")
    [skip] = events.normalize(event(False), app_source="sagepipe", scheduled_model=None)
    assert isinstance(skip, events.Skip)
    with pytest.raises(Exception, match="detail.model"):
        events.normalize({**event(True), "detail": {"retrain": True}}, app_source="sagepipe", scheduled_model=None)


# ------------------------------------------------------------------------------- the check, on moto S3
class _Events:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803 - the boto3 name
        self.sent += Entries
        return {"FailedEntryCount": 0, "Entries": [{"EventId": "x"}]}


def _model_tar(stats: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        raw = json.dumps(stats).encode()
        info = tarfile.TarInfo("./" + drift.STATISTICS_FILE)
        info.size = len(raw)
        tar.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


def _live(**drift_settings: Any) -> drift.LiveEndpoint:
    return drift.LiveEndpoint(
        endpoint="sagepipe-churn",
        endpoint_config="churn-v1",
        variant="AllTraffic",
        model_name="churn-v1",
        model_data_url=f"s3://{BUCKET}/models/churn/job-1/output/model.tar.gz",
        model="churn",
        training_job="job-1",
        capture_uri=f"s3://{BUCKET}/datacapture",
        live_since=NOW - timedelta(hours=3),
        drift=drift_settings,
    )


def _put_capture(s3: Any, frame: pd.DataFrame, when: datetime) -> None:
    rows = [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
        for r in frame.to_dict("records")
    ]
    lines = [
        _line(json.dumps({"instances": rows[i : i + 10]}).encode(), "application/json", when)
        for i in range(0, len(rows), 10)
    ]
    cfg = deploy.data_capture_config(100, f"s3://{BUCKET}/datacapture")
    assert cfg is not None
    bucket, key = capture.capture_location(cfg["DestinationS3Uri"], "sagepipe-churn", "AllTraffic", when, "f1")
    s3.put_object(Bucket=bucket, Key=key, Body="\n".join(lines).encode())


@pytest.fixture
def s3() -> Any:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.put_object(Bucket=BUCKET, Key="models/churn/job-1/output/model.tar.gz", Body=_model_tar(_stats()))
        yield client


def test_the_check_reports_drift_sends_the_event_and_claims_one_retrain(s3: Any) -> None:
    _put_capture(s3, _frame(800, np.random.default_rng(5), shift=10.0), NOW - timedelta(minutes=20))
    sent = _Events()
    settings = Settings(artifacts_bucket=BUCKET)
    live = _live(retrain=True)
    config = DriftConfig.model_validate(live.drift)
    result = drift.check_endpoint(live, s3=s3, events=sent, settings=settings, config=config, now=NOW)
    assert result["status"] == "drift" and result["drifted_features"] == ["tenure"] and result["samples"] == 800
    assert result["retrain"] is True
    [entry] = sent.sent
    detail = json.loads(entry["Detail"])
    assert entry["DetailType"] == "Drift Detected" and detail["retrain"] is True and detail["model"] == "churn"
    assert detail["features"][0]["name"] == "tenure" and detail["features"][0]["psi"] > 0.2
    report_key = result["report"].removeprefix(f"s3://{BUCKET}/")
    assert re.fullmatch(r"models/churn/job-1/drift/20261204T123000Z-[0-9a-f]{8}\.json", report_key), report_key
    report = json.loads(s3.get_object(Bucket=BUCKET, Key=report_key)["Body"].read())
    assert {f["name"] for f in report["features"]} == {"tenure", "plan"}  # every feature's scores
    # the next check of the same live version: drift again, but no second retrain
    again = drift.check_endpoint(
        live, s3=s3, events=sent, settings=settings, config=config, now=NOW + timedelta(hours=1)
    )
    assert again["status"] == "drift" and again["retrain"] is False
    assert "already requested for model version churn-v1" in again["retrain_skipped"]
    assert json.loads(sent.sent[1]["Detail"])["retrain"] is False


def test_too_few_records_or_records_before_the_version_went_live_are_not_judged(s3: Any) -> None:
    _put_capture(s3, _frame(300, np.random.default_rng(5), shift=10.0), NOW - timedelta(minutes=20))
    _put_capture(s3, _frame(900, np.random.default_rng(6), shift=10.0), NOW - timedelta(hours=4))  # before live
    sent = _Events()
    result = drift.check_endpoint(
        _live(), s3=s3, events=sent, settings=Settings(artifacts_bucket=BUCKET), config=DriftConfig(), now=NOW
    )
    assert result["status"] == "insufficient_data" and result["samples"] == 300 and not sent.sent


def test_unshifted_traffic_is_reported_without_an_event(s3: Any) -> None:
    _put_capture(s3, _frame(800, np.random.default_rng(8)), NOW - timedelta(minutes=5))
    sent = _Events()
    result = drift.check_endpoint(
        _live(), s3=s3, events=sent, settings=Settings(artifacts_bucket=BUCKET), config=DriftConfig(), now=NOW
    )
    assert result["status"] == "no_drift" and result["drifted_features"] == [] and not sent.sent
    assert s3.get_object(Bucket=BUCKET, Key=result["report"].removeprefix(f"s3://{BUCKET}/"))  # reported anyway


def test_a_model_trained_before_baselines_is_refused_with_its_reason(s3: Any) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("./schema.json")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
    s3.put_object(Bucket=BUCKET, Key="models/churn/job-1/output/model.tar.gz", Body=buf.getvalue())
    with pytest.raises(drift.BaselineError, match="trained before drift baselines"):
        drift.check_endpoint(
            _live(), s3=s3, events=_Events(), settings=Settings(artifacts_bucket=BUCKET), config=DriftConfig(), now=NOW
        )


def test_a_many_valued_categorical_on_a_small_unshifted_window_raises_no_alarm() -> None:
    """PSI grows with the buckets a small window spreads over: a 51-value column (churn's ``state``) scored
    ≈ 0.27 on 200 unshifted records, over the 0.2 threshold; the chance part (``psi_noise``) is taken off."""
    rng = np.random.default_rng(11)
    states = [f"S{i:02d}" for i in range(51)]
    feature = [{"name": "state", "type": "categorical"}]
    stats = baseline.statistics(pd.DataFrame({"state": rng.choice(states, 3000).astype(object)}), feature)
    alarms = 0
    for _ in range(20):
        [counts] = drift.feature_counts(stats)
        for value in rng.choice(states, 200):
            counts.add(str(value))
        [scored] = drift.judge([counts], psi_threshold=0.2, ks_threshold=0.15, linf_threshold=0.15)
        assert scored["psi"] > 0.15  # the raw PSI alone is near the threshold by chance
        alarms += scored["drifted"]
    assert alarms <= 1
