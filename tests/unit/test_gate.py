"""sagepipe_core.gate: the deploy decision (threshold, champion, fail closed)."""

from __future__ import annotations

import json
import math

import pytest

from sagepipe_core.config import parse_config
from sagepipe_core.gate import decide, final_metric

pytestmark = pytest.mark.unit


def cfg(**overrides):
    return parse_config(overrides).resolved("churn")


def report(value, champion=None, metric="auc"):
    doc = {"metrics": {"train": {metric: 0.99}, "test": {metric: value} if value is not ... else {}}}
    if champion is not None:
        doc["champion"] = champion
    return doc


def job(value, metric="auc"):
    return [{"MetricName": f"train:{metric}", "Value": 0.99}, {"MetricName": f"test:{metric}", "Value": value}]


def scored(value, metric="auc"):
    return {"status": "scored", "metrics": {"test": {metric: value}}}


def run(config, value, champion=None, job_value=None, metric="auc"):
    job_value = value if job_value is None else job_value
    return decide(config=config, evaluation=report(value, champion, metric), final_metrics=job(job_value, metric))


def assert_reject(d, rule):
    assert d["deploy"] is False and d["decision"] == "reject" and d["rule"] == rule, d


def assert_deploy(d, rule):
    assert d["deploy"] is True and d["decision"] == "deploy" and d["rule"] == rule, d


def test_no_champion_deploys():
    d = run(cfg(), 0.9)
    assert_deploy(d, "threshold")
    assert d["challenger"] == 0.9 and d["champion"] is None and d["champion_status"] == "absent"
    assert d["metric"] == "auc" and d["threshold"] == 0.75 and d["higher_is_better"] is True
    json.dumps(d, allow_nan=False)


def test_absent_report_rejects_fail_closed():
    d = decide(config=cfg(), evaluation=None, final_metrics=job(0.9), evaluation_error="NoSuchKey: gone")
    assert_reject(d, "fail_closed")
    assert "NoSuchKey" in d["reason"]


def test_absent_metric_in_report_rejects():
    d = decide(config=cfg(), evaluation=report(...), final_metrics=job(0.9))
    assert_reject(d, "fail_closed")
    assert d["challenger"] is None


@pytest.mark.parametrize("bad", [float("nan"), "NaN", "nan", float("inf"), "-Infinity", None, "high", [0.9]])
def test_non_finite_metric_in_report_rejects(bad):
    d = decide(config=cfg(), evaluation=report(bad), final_metrics=job(0.9))
    assert_reject(d, "fail_closed")
    json.dumps(d, allow_nan=False)


@pytest.mark.parametrize(
    "final",
    [
        [],
        None,
        [{"MetricName": "test:auc", "Value": float("nan")}],
        [{"MetricName": "validation:auc", "Value": 0.9}],
        [{"MetricName": "test:auc"}],
        [{"MetricName": "test:auc", "Value": float("inf")}],
    ],
)
def test_nan_or_absent_final_metric_rejects(final):
    d = decide(config=cfg(), evaluation=report(0.9), final_metrics=final)
    assert_reject(d, "fail_closed")
    assert "FinalMetricDataList" in d["reason"]


def test_disagreement_between_report_and_job_rejects():
    d = run(cfg(), 0.9, job_value=0.8)
    assert_reject(d, "fail_closed")
    assert "disagrees" in d["reason"]


def test_tiny_rounding_difference_is_agreement():
    assert_deploy(run(cfg(), 0.912345, job_value=0.91235), "threshold")


def test_below_threshold_rejects():
    d = run(cfg(), 0.7)
    assert_reject(d, "threshold")
    assert_deploy(run(cfg(), 0.75), "threshold")  # the bar itself passes
    assert_reject(run(cfg(threshold=0.95), 0.9), "threshold")


def test_below_threshold_rejects_even_if_champion_worse():
    assert_reject(run(cfg(), 0.7, champion=scored(0.5)), "threshold")


def test_better_champion_rejects():
    d = run(cfg(), 0.80, champion=scored(0.85))
    assert_reject(d, "champion:tolerance")
    assert d["champion"] == 0.85 and d["champion_status"] == "scored"


def test_equal_champion_deploys():
    assert_deploy(run(cfg(), 0.85, champion=scored(0.85)), "champion")


def test_worse_within_tolerance_deploys():
    assert_deploy(run(cfg(tolerance=0.02), 0.84, champion=scored(0.85)), "champion")


def test_worse_beyond_tolerance_rejects():
    assert_reject(run(cfg(tolerance=0.02), 0.82, champion=scored(0.85)), "champion:tolerance")


def test_min_improvement():
    c = cfg(min_improvement=0.01)
    assert_reject(run(c, 0.855, champion=scored(0.85)), "champion:min_improvement")
    assert_deploy(run(c, 0.87, champion=scored(0.85)), "champion")
    assert_reject(run(c, 0.84, champion=scored(0.85)), "champion:min_improvement")


@pytest.mark.parametrize("policy, deploy", [("threshold_only", True), ("reject", False)])
def test_incompatible_champion_policies(policy, deploy):
    champ = {"status": "incompatible", "reason": "column total_day_minutes missing"}
    d = run(cfg(incompatible_champion=policy), 0.9, champion=champ)
    assert d["deploy"] is deploy
    assert d["rule"] == f"incompatible_champion:{policy}"
    assert "total_day_minutes" in d["reason"]
    assert d["champion_status"] == "incompatible"


def test_incompatible_champion_threshold_only_still_needs_threshold():
    d = run(cfg(incompatible_champion="threshold_only"), 0.6, champion={"status": "incompatible"})
    assert_reject(d, "threshold")


@pytest.mark.parametrize(
    "champ",
    [
        {"status": "error", "reason": "model.tar.gz unreadable"},
        {"status": "weird"},
        {"status": "scored", "metrics": {"test": {"auc": float("nan")}}},
        {"status": "scored", "metrics": {}},
        {"status": "scored"},
    ],
)
def test_champion_error_rejects(champ):
    assert_reject(run(cfg(), 0.9, champion=champ), "fail_closed")


def test_minimize_metric_rmse():
    c = cfg(problem_type="regression", metric="rmse", threshold=5.0)
    assert c["higher_is_better"] is False
    assert_deploy(run(c, 4.0, metric="rmse"), "threshold")
    assert_reject(run(c, 6.0, metric="rmse"), "threshold")
    # lower than the champion is better
    assert_deploy(run(c, 3.0, champion=scored(3.5, "rmse"), metric="rmse"), "champion")
    assert_reject(run(c, 3.5, champion=scored(3.0, "rmse"), metric="rmse"), "champion:tolerance")
    ct = cfg(problem_type="regression", metric="rmse", threshold=5.0, tolerance=0.6)
    assert_deploy(run(ct, 3.5, champion=scored(3.0, "rmse"), metric="rmse"), "champion")
    cm = cfg(problem_type="regression", metric="rmse", threshold=5.0, min_improvement=0.5)
    assert_reject(run(cm, 3.2, champion=scored(3.5, "rmse"), metric="rmse"), "champion:min_improvement")
    assert_deploy(run(cm, 2.9, champion=scored(3.5, "rmse"), metric="rmse"), "champion")


def test_final_metric_lookup():
    data = [{"MetricName": "test:auc", "Value": 0.8}, {"MetricName": "test:f1", "Value": "0.5"}]
    assert final_metric(data, "test:auc") == 0.8
    assert final_metric(data, "test:f1") == 0.5
    assert final_metric(data, "test:logloss") is None
    assert final_metric(None, "test:auc") is None
    assert final_metric([{"MetricName": "test:auc", "Value": math.nan}], "test:auc") is None


# ------------------------------------------------ issue 11: lineage (overlap) and feature-set changes
def scored_on_unseen_rows(champion, challenger_same_rows, rows=500, overlap=165, diff=None, metric="auc"):
    """A champion scored on the test rows that did not train it, with the challenger on the same rows."""
    return {
        "status": "scored",
        "metrics": {"test": {metric: champion}},
        "challenger_metrics": {"test": {metric: challenger_same_rows}},
        "rows_scored": rows,
        "overlap": overlap,
        "lineage": "the champion's split manifest",
        "schema_diff": diff,
    }


def test_decision_carries_the_overlap_and_compares_on_the_same_rows():
    # full test split: challenger 0.82; on the 500 rows the champion never saw: challenger 0.84, champion 0.83
    d = run(cfg(), 0.82, scored_on_unseen_rows(0.83, 0.84))
    assert_deploy(d, "champion")
    assert d["champion_overlap"] == 165 and d["champion_rows_scored"] == 500
    assert d["challenger"] == 0.82 and d["challenger_compared"] == 0.84 and d["champion"] == 0.83
    assert "on 500 test rows (165 left out: they trained the champion)" in d["reason"]
    # the full-split value (0.82 < 0.83) would have rejected: the comparison is on the same rows
    worse = run(cfg(), 0.86, scored_on_unseen_rows(0.83, 0.80))
    assert_reject(worse, "champion:tolerance")
    assert worse["challenger_compared"] == 0.80
    json.dumps(d, allow_nan=False)


def test_champion_without_lineage_says_so():
    champ = {**scored_on_unseen_rows(0.8, 0.9, rows=700, overlap=None), "challenger_metrics": None}
    d = run(cfg(), 0.9, champ)
    assert_deploy(d, "champion")
    assert d["champion_overlap"] is None and d["champion_rows_scored"] == 700
    assert "lineage unknown" in d["reason"]


def test_challenger_on_the_champions_rows_not_finite_fails_closed():
    d = run(cfg(), 0.9, scored_on_unseen_rows(0.8, float("nan")))
    assert_reject(d, "fail_closed")


ADDED = {"added": ["noise"], "removed": [], "retyped": [], "counts": {"added": 1, "removed": 0, "retyped": 0}}


def test_feature_set_change_needs_manual_approval_by_default():
    d = run(cfg(), 0.84, scored_on_unseen_rows(0.82, 0.84, diff=ADDED))
    assert_deploy(d, "champion")
    assert d["approval_required"] is True and d["schema_change"] == ADDED
    assert "feature set changed: added noise" in d["reason"] and "manual approval required" in d["reason"]
    same = run(cfg(), 0.84, scored_on_unseen_rows(0.82, 0.84))
    assert same["approval_required"] is False and same["schema_change"] is None


def test_feature_set_change_policies_auto_and_reject():
    champ = scored_on_unseen_rows(0.82, 0.84, diff=ADDED)
    auto = run(cfg(schema_change="auto"), 0.84, champ)
    assert_deploy(auto, "champion")
    assert auto["approval_required"] is False and auto["schema_change"] == ADDED
    rejected = run(cfg(schema_change="reject"), 0.84, champ)
    assert_reject(rejected, "schema_change:reject")
    assert "added noise" in rejected["reason"]
    # a candidate the gate rejects anyway keeps its own rule
    assert_reject(run(cfg(schema_change="reject"), 0.70, champ), "threshold")


def test_removed_feature_incompatible_champion_still_needs_approval():
    diff = {"added": [], "removed": ["state"], "retyped": [], "counts": {"added": 0, "removed": 1, "retyped": 0}}
    champ = {
        "status": "incompatible",
        "reason": "features only in champion: state",
        "metrics": None,
        "schema_diff": diff,
    }
    d = run(cfg(), 0.9, champ)
    assert_deploy(d, "incompatible_champion:threshold_only")
    assert d["approval_required"] is True and "removed state" in d["reason"]


def test_schema_change_config_values():
    assert parse_config(None).schema_change == "manual"
    with pytest.raises(Exception, match="schema_change"):
        parse_config({"schema_change": "approve"})
