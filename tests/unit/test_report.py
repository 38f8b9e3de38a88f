"""The run report: curve data from model/diagnostics.py (real sklearn models on generated data) drawn by
sagepipe_core.report into one self-contained HTML page."""

from __future__ import annotations

import copy
import functools
import html
import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from sagepipe_core import report

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def _diagnostics() -> ModuleType:
    spec = importlib.util.spec_from_file_location("diagnostics", REPO / "model" / "diagnostics.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


D = _diagnostics()


def _frames(X: np.ndarray, y: np.ndarray, target: str) -> dict[str, pd.DataFrame]:
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])]).astype(str)
    df[target] = [str(v) for v in y]
    df.loc[::17, "f0"] = np.nan  # some missing cells for the profile
    n = len(df)
    return {
        "train": df.iloc[: n * 6 // 10],
        "validation": df.iloc[n * 6 // 10 : n * 8 // 10],
        "test": df.iloc[n * 8 // 10 :],
    }


def _schema(frames: dict[str, pd.DataFrame], target: str, problem_type: str, labels: list[str] | None) -> dict:
    names = [c for c in frames["train"].columns if c != target]
    return {
        "target": target,
        "problem_type": problem_type,
        "labels": labels,
        "feature_order": names,
        "features": [{"name": n, "type": "numeric"} for n in names],
    }


def _evaluation(problem_type: str, n_classes: int = 2, champion: bool = True) -> dict:
    """evaluation.json as train.py writes it, with diagnostics for a fitted challenger and a weaker champion."""
    return copy.deepcopy(_fitted_evaluation(problem_type, n_classes, champion))


@functools.cache
def _fitted_evaluation(problem_type: str, n_classes: int, champion: bool) -> dict:
    if problem_type == "regression":
        X, y = make_regression(n_samples=900, n_features=6, noise=10.0, random_state=0)
        labels = None
    else:
        X, y = make_classification(
            n_samples=900, n_features=6, n_informative=4, n_classes=n_classes, weights=None, random_state=0
        )
        labels = [f"class_{i}" for i in range(n_classes)]
        y = np.array(labels, dtype=object)[y]
    frames = _frames(X, y, "label")
    schema = _schema(frames, "label", problem_type, labels)

    def xy(split: str) -> tuple[pd.DataFrame, np.ndarray]:
        f = frames[split]
        X_ = f[schema["feature_order"]].astype(float)
        y_ = f["label"].to_numpy(dtype=float) if problem_type == "regression" else f["label"].to_numpy(dtype=object)
        return X_, y_

    est = HistGradientBoostingRegressor if problem_type == "regression" else HistGradientBoostingClassifier
    Xtr, ytr = xy("train")
    challenger = est(max_iter=60, random_state=0).fit(Xtr, ytr)
    weak = est(max_iter=2, random_state=0).fit(Xtr, ytr)
    Xte, yte = xy("test")
    Xva, yva = xy("validation")
    importance = D.permutation(problem_type, challenger, Xva, yva)
    diagnostics = {
        "challenger": D.model_curves(problem_type, labels, yte, challenger, Xte),
        "champion": D.model_curves(problem_type, labels, yte, weak, Xte) if champion else None,
        "importance": importance,
        "profile": D.profile(frames, schema, [f["feature"] for f in importance["features"]]),
    }
    return {
        "problem_type": problem_type,
        "target": "label",
        "labels": labels,
        "metrics": {"train": {"auc": 0.99}, "validation": {"auc": 0.93}, "test": {"auc": 0.92}},
        "champion": {"status": "scored", "reason": None, "metrics": {"test": {"auc": 0.81}}}
        if champion
        else {"status": "absent"},
        "diagnostics": diagnostics,
    }


DECISION_DEPLOY = {
    "decision": "deploy",
    "deploy": True,
    "rule": "champion",
    "reason": "challenger 0.9200 vs champion 0.8100: gain +0.1100 within rules",
    "metric": "auc",
    "higher_is_better": True,
    "threshold": 0.75,
    "challenger": 0.92,
    "champion": 0.81,
    "champion_status": "scored",
}
LINEAGE = {"data": "s3://data/datasets/m/m.csv", "TrainingJobName": "m-0123456789", "EndpointConfigName": "m-01"}


def _render(evaluation: dict | None, decision: dict = DECISION_DEPLOY) -> str:
    return report.render(
        evaluation, decision=decision, lineage=LINEAGE, model="m", execution="m-m-0123456789", generated_at="t0"
    )


def _assert_self_contained(page: str) -> None:
    """Opens offline: no script, stylesheet link, image source or URL other than the SVG namespace."""
    assert "<script" not in page.lower() and "<link" not in page.lower() and " src=" not in page.lower()
    urls = set(re.findall(r"https?://[^\"' )]+", page))
    assert urls <= {"http://www.w3.org/2000/svg"}, urls


@pytest.mark.parametrize(("problem_type", "n_classes"), [("binary", 2), ("multiclass", 4)])
def test_classifier_report_has_every_chart_for_both_models(problem_type: str, n_classes: int) -> None:
    evaluation = _evaluation(problem_type, n_classes)
    json.dumps(evaluation, allow_nan=False)  # evaluation.json stays strict JSON
    page = _render(evaluation)
    _assert_self_contained(page)
    for label in ("ROC", "Precision-recall", "Calibration", "confusion matrix challenger", "confusion matrix champion"):
        assert f'aria-label="{label}"' in page, label
    assert page.count("<svg") >= 5 + 4  # + importance + distributions of the top features
    if n_classes == 2:  # one curve per model, colored by model
        assert "challenger class_1: AUC" in page and "champion class_1: AUC" in page
    else:  # one-vs-rest: colored by class, both models' values per class
        assert page.count("AUC challenger / champion") == 1
        assert all(re.search(rf"class_{k}: [0-9.]+ / [0-9.]+", page) for k in range(n_classes))
    # the labels' shared prefix is said once under the matrix, not repeated (and cut) on every cell
    assert "predicted (labels class_…)" in page
    assert "Per-class metrics" in page and page.count("<td>champion</td>") == n_classes
    assert "Permutation importance on the validation split" in page
    assert DECISION_DEPLOY["reason"] in page and "m-0123456789" in page
    assert "Missing values per column" in page  # f0 has missing cells in every split
    assert len(page.encode()) < 200_000


def test_regression_report_has_predicted_actual_residuals_and_histogram() -> None:
    page = _render(_evaluation("regression"))
    _assert_self_contained(page)
    for label in ("Predicted vs actual", "Residuals", "Residual distribution"):
        assert f'aria-label="{label}"' in page, label
    assert 'aria-label="ROC"' not in page
    assert "target train" in page  # target summary instead of class balance


def test_rejected_run_says_why_with_the_same_charts_for_both_models() -> None:
    decision = {
        **DECISION_DEPLOY,
        "decision": "reject",
        "deploy": False,
        "rule": "champion:tolerance",
        "reason": "challenger 0.8000 is worse than champion 0.8100 by 0.0100 > tolerance 0",
    }
    page = _render(_evaluation("binary"), decision)
    assert "badge reject" in page and "rejected by the gate" in page and html.escape(decision["reason"]) in page
    assert 'aria-label="confusion matrix champion"' in page and "champion class_1: AUC" in page


def test_first_model_and_unreadable_evaluation() -> None:
    first = _render(_evaluation("binary", champion=False))
    assert "no champion (first model of this name)" in first and 'aria-label="confusion matrix champion"' not in first
    broken = _render(None, {**DECISION_DEPLOY, "decision": "reject", "reason": "evaluation report unavailable"})
    assert "evaluation.json could not be read" in broken and "badge reject" in broken
    _assert_self_contained(broken)


def test_model_selection_shows_every_candidate_the_choice_and_the_runner_up() -> None:
    evaluation = _evaluation("binary")
    evaluation["model_selection"] = {
        "metric": "validation:auc",
        "rule": "one_standard_error",
        "chosen": "linear",
        "runner_up": "gbm",
        "reason": "validation auc: linear 0.9012 ± 0.0100, gbm 0.9050 ± 0.0110; chose linear (within one ...)",
        "candidates": [
            {"name": "linear", "params": {"C": 1.0}, "validation": {"auc": 0.9012}, "validation_se": 0.01},
            {
                "name": "gbm",
                "iterations": 45,
                "best_iteration": 25,
                "validation": {"auc": 0.905},
                "validation_se": 0.011,
            },
        ],
    }
    page = _render(evaluation)
    section = page.split("<h2>Model selection</h2>", 1)[1].split("<h2>", 1)[0]
    assert "<td>linear</td><td>chosen</td><td>0.9012</td>" in section
    assert "<td>gbm</td><td>runner-up</td><td>0.9050</td>" in section and "45 (best 25)" in section
    assert "one_standard_error" in section and "validation:auc" in section
    old = _render(_evaluation("binary"))
    assert "No model selection in evaluation.json" in old


def test_text_from_the_data_is_escaped() -> None:
    evaluation = _evaluation("binary")
    evaluation["diagnostics"]["importance"]["features"][0]["feature"] = "<img src=x onerror=alert(1)>"
    page = _render(evaluation, {**DECISION_DEPLOY, "reason": "<script>alert(1)</script>"})
    assert "<script>alert" not in page and "&lt;script&gt;" in page and "<img" not in page


def test_diagnostics_are_bounded_whatever_the_data_size() -> None:
    rng = np.random.default_rng(0)
    y = np.where(rng.random(50_000) < 0.3, "yes", "no").astype(object)
    proba1 = np.clip(rng.random(50_000) * 0.6 + (y == "yes") * 0.4, 0, 1)
    curves = D.classifier_curves(["no", "yes"], y, np.column_stack([1 - proba1, proba1]))
    assert len(curves["roc"][0]["fpr"]) <= D.MAX_POINTS and len(curves["pr"][0]["recall"]) <= D.MAX_POINTS
    assert sum(b["count"] for b in curves["calibration"]["bins"]) == 50_000
    reg = D.regression_curves(rng.normal(size=50_000), rng.normal(size=50_000))
    assert len(reg["sample"]["actual"]) == D.MAX_SAMPLES and sum(reg["residual_histogram"]["counts"]) == 50_000
    assert len(json.dumps({"c": curves, "r": reg}, allow_nan=False)) < 30_000
    assert D.classifier_curves(["no", "yes"], np.array([], dtype=object), np.zeros((0, 2))) is None


def test_report_uri_is_next_to_the_model_artifact() -> None:
    url = "s3://artifacts/models/churn/churn-0123456789/output/model.tar.gz"
    assert report.report_uri(url) == "s3://artifacts/models/churn/churn-0123456789/report.html"
    assert report.report_uri(url) == f"s3://artifacts/{report.report_key('churn', 'churn-0123456789')}"
    assert report.report_uri("s3://elsewhere/model.tar.gz") is None


def test_confusion_shares_are_not_rounded_to_a_misleading_100_or_0_percent() -> None:
    """639 of 642 right is 99.5%, not "100%" beside 3 errors; 3 of 642 is 0.5%, not "0%"."""
    from sagepipe_core.report import _row_share

    assert (_row_share(639, 642), _row_share(3, 642)) == ("99.5%", "0.5%")
    assert (_row_share(642, 642), _row_share(0, 642), _row_share(78, 105)) == ("100%", "0%", "74%")
    assert (_row_share(99999, 100000), _row_share(1, 100000)) == (">99.9%", "<0.1%")


def test_report_shows_the_rows_compared_and_the_schema_change():
    """Issue 11 items 1, 2: the page says on which rows the two models were compared and how the API changed."""
    from sagepipe_core import report

    diff = {"added": ["noise"], "removed": [], "retyped": [], "counts": {"added": 1, "removed": 0, "retyped": 0}}
    evaluation = {
        "metrics": {"test": {"auc": 0.82}},
        "champion": {
            "status": "scored",
            "metrics": {"test": {"auc": 0.81}},
            "challenger_metrics": {"test": {"auc": 0.8345}},
            "rows_scored": 258,
            "overlap": 492,
            "schema_diff": diff,
        },
    }
    decision = {
        "decision": "deploy",
        "rule": "champion",
        "reason": "r",
        "metric": "auc",
        "schema_change": diff,
        "approval_required": True,
    }
    page = report.render(evaluation, decision=decision, lineage={}, model="m", execution="e", generated_at="now")
    assert "the 258 test rows the champion never trained on (492 left out)" in page
    assert "challenger · test, champion's rows" in page and "0.8345" in page
    assert "feature set changed: added noise (manual approval required)" in page
