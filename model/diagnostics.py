"""Curve data for the run report, computed in the training job (``evaluation.json`` ``diagnostics``).

Why here: the training job is the only place that holds both fitted models (the challenger and the
champion from the ``champion`` channel) and the splits, with scikit-learn and numpy at hand (the
SageMaker scikit-learn 1.4-2 container). It writes numbers only - bounded lists of points - and the
pipeline draws them (``sagepipe_core.report``, pure Python SVG in a Lambda step), so the job needs no
plotting library and the report exists for every run that trains, without the CLI.

Size bound: every curve has at most ``MAX_POINTS`` points, scatter samples at most ``MAX_SAMPLES``,
at most ``MAX_CLASSES`` classes get one-vs-rest curves, importance keeps the ``TOP_FEATURES`` best and
the profile ``TOP_DISTRIBUTIONS`` features: a few tens of kB of JSON whatever the data size.

Time bound: permutation importance costs ``PERMUTATION_REPEATS`` x features predictions of at most
``PERMUTATION_ROWS`` rows (churn: 19 x 2 predictions of 500 rows, well under the fit's time on an idle
machine; on a contended 2-core machine HistGradientBoosting's OpenMP predictions slow down with the fit).

Functions take plain arrays (numpy) and fitted sklearn pipelines; they never raise for a degenerate
split (one class, no rows): the affected entry is ``None``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

MAX_POINTS = 101
MAX_SAMPLES = 300
MAX_CLASSES = 10
TOP_FEATURES = 15
TOP_DISTRIBUTIONS = 4
CALIBRATION_BINS = 10
HISTOGRAM_BINS = 20
PERMUTATION_ROWS = 500
PERMUTATION_REPEATS = 2


def _r(x: Any, digits: int = 4) -> float | None:
    """Rounded finite float, else None (strict JSON)."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return round(f, digits) if math.isfinite(f) else None


def _thin(xs: Any, ys: Any, max_points: int = MAX_POINTS) -> tuple[list[Any], list[Any]]:
    """At most ``max_points`` (x, y) pairs, keeping the first and last, as rounded lists."""
    import numpy as np

    n = len(xs)
    idx = np.unique(np.linspace(0, n - 1, num=min(n, max_points)).round().astype(int)) if n else []
    return [_r(xs[i]) for i in idx], [_r(ys[i]) for i in idx]


def _ovr_curves(y: Any, proba: Any, labels: list[str], classes: list[int]) -> tuple[list[Any], list[Any]]:
    from sklearn import metrics as skm

    roc, pr = [], []
    for k in classes:
        truth = (y == labels[k]).astype(int)
        if truth.min() == truth.max():
            continue  # one class only: no curve
        fpr, tpr, _ = skm.roc_curve(truth, proba[:, k])
        prec, rec, _ = skm.precision_recall_curve(truth, proba[:, k])
        fx, fy = _thin(fpr, tpr)
        rx, ry = _thin(rec[::-1], prec[::-1])
        roc.append({"label": labels[k], "fpr": fx, "tpr": fy, "auc": _r(skm.auc(fpr, tpr))})
        pr.append(
            {
                "label": labels[k],
                "recall": rx,
                "precision": ry,
                "average_precision": _r(skm.average_precision_score(truth, proba[:, k])),
                "prevalence": _r(truth.mean()),
            }
        )
    return roc, pr


def _calibration(confidence: Any, correct: Any) -> list[dict[str, Any]]:
    """Reliability bins: mean predicted probability vs observed frequency, with counts.

    Quantile bins (about equal row counts, like sklearn.calibration.calibration_curve
    ``strategy="quantile"``): uniform bins of a confident model hold a handful of rows and draw noise.
    """
    import numpy as np

    order = np.argsort(confidence, kind="stable")
    bins = []
    for chunk in np.array_split(order, min(CALIBRATION_BINS, len(order))):
        if len(chunk):
            bins.append(
                {
                    "mean_predicted": _r(confidence[chunk].mean()),
                    "observed": _r(correct[chunk].mean()),
                    "count": int(len(chunk)),
                }
            )
    return bins


def classifier_curves(labels: list[str], y_true: Any, proba: Any) -> dict[str, Any] | None:
    """Curves of one classifier on one split.

    Args:
        labels: the schema's sorted string labels (binary: ``labels[1]`` is the positive class).
        y_true: array of str labels, length n.
        proba: array (n, len(labels)) of probabilities in ``labels`` order.
    Returns:
        ``{"roc": [{"label", "fpr", "tpr", "auc"}], "pr": [{"label", "recall", "precision",
        "average_precision", "prevalence"}], "confusion": {"labels", "matrix"} (rows = actual),
        "calibration": {"kind": "positive_class"|"top_class", "bins": [...]},
        "per_class": [{"label", "precision", "recall", "f1", "support"}]}``, or None with no rows.
    """
    import numpy as np
    from sklearn import metrics as skm

    y = np.asarray(y_true, dtype=object).astype(str)
    if len(y) == 0:
        return None
    proba = np.asarray(proba, dtype=float)
    pred = np.asarray(labels, dtype=object)[proba.argmax(axis=1)].astype(str)
    binary = len(labels) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        classes = [1] if binary else list(range(min(len(labels), MAX_CLASSES)))
        roc, pr = _ovr_curves(y, proba, labels, classes)
        matrix = skm.confusion_matrix(y, pred, labels=labels)
        p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    if binary:
        calibration = {
            "kind": "positive_class",
            "bins": _calibration(proba[:, 1], (y == labels[1]).astype(float)),
        }
    else:
        calibration = {"kind": "top_class", "bins": _calibration(proba.max(axis=1), (pred == y).astype(float))}
    return {
        "roc": roc,
        "pr": pr,
        "confusion": {"labels": list(labels), "matrix": matrix.astype(int).tolist()},
        "calibration": calibration,
        "per_class": [
            {"label": lbl, "precision": _r(p[i]), "recall": _r(r[i]), "f1": _r(f[i]), "support": int(s[i])}
            for i, lbl in enumerate(labels)
        ],
    }


def regression_curves(y_true: Any, predicted: Any, seed: int = 0) -> dict[str, Any] | None:
    """Predicted vs actual of one regressor on one split.

    Args:
        y_true, predicted: float arrays of length n.
        seed: the sample's seed (deterministic report).
    Returns:
        ``{"sample": {"actual", "predicted"} (at most MAX_SAMPLES points), "residual_histogram":
        {"edges", "counts"} (residual = actual - predicted, all rows), "range": [lo, hi]}``, or None.
    """
    import numpy as np

    y = np.asarray(y_true, dtype=float)
    pred = np.asarray(predicted, dtype=float)
    if len(y) == 0:
        return None
    idx = np.arange(len(y))
    if len(idx) > MAX_SAMPLES:
        idx = np.sort(np.random.default_rng(seed).choice(idx, size=MAX_SAMPLES, replace=False))
    resid = y - pred
    counts, edges = np.histogram(resid[np.isfinite(resid)], bins=HISTOGRAM_BINS)
    both = np.concatenate([y, pred])
    both = both[np.isfinite(both)]
    return {
        "sample": {"actual": [_r(v) for v in y[idx]], "predicted": [_r(v) for v in pred[idx]]},
        "residual_histogram": {"edges": [_r(e) for e in edges], "counts": counts.astype(int).tolist()},
        "range": [_r(both.min()), _r(both.max())] if len(both) else None,
    }


def model_curves(problem_type: str, labels: list[str] | None, y_true: Any, model: Any, X: Any) -> dict[str, Any] | None:
    """:func:`classifier_curves` or :func:`regression_curves` of a fitted pipeline on ``X``; never raises
    (an error becomes ``{"error": "..."}``)."""
    import numpy as np

    try:
        if problem_type == "regression":
            return regression_curves(y_true, model.predict(X))
        order = list(labels or [])
        classes = [str(c) for c in model.classes_]
        proba = model.predict_proba(X)[:, [classes.index(lbl) for lbl in order]]
        return classifier_curves(order, np.asarray(y_true), proba)
    except Exception as exc:  # a report must never fail the training job
        return {"error": f"{type(exc).__name__}: {exc}"}


_SCORING = {"binary": "roc_auc", "multiclass": "f1_macro", "regression": "r2"}


def permutation(problem_type: str, model: Any, X: Any, y: Any, seed: int = 0) -> dict[str, Any] | None:
    """Permutation importance of each raw feature on ``X`` (the validation split).

    sklearn.inspection.permutation_importance with scoring roc_auc (binary), f1_macro (multiclass) or r2
    (regression), ``PERMUTATION_REPEATS`` repeats, at most ``PERMUTATION_ROWS`` rows.
    Returns ``{"scoring", "split": "validation", "rows", "features": [{"feature", "mean", "std"}]}``
    (the ``TOP_FEATURES`` largest means, descending), or None when it cannot be computed.
    """
    import numpy as np
    from sklearn.inspection import permutation_importance

    if X is None or len(X) < 2:
        return None
    if len(X) > PERMUTATION_ROWS:
        keep = np.sort(np.random.default_rng(seed).choice(len(X), size=PERMUTATION_ROWS, replace=False))
        X, y = X.iloc[keep], np.asarray(y)[keep]
    target = np.asarray(y, dtype=float) if problem_type == "regression" else np.asarray(y).astype(str)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = permutation_importance(
                model, X, target, scoring=_SCORING[problem_type], n_repeats=PERMUTATION_REPEATS, random_state=seed
            )
    except Exception as exc:  # e.g. one class in the validation split: roc_auc undefined
        return {"scoring": _SCORING[problem_type], "error": f"{type(exc).__name__}: {exc}"}
    order = np.argsort(-res.importances_mean)[:TOP_FEATURES]
    return {
        "scoring": _SCORING[problem_type],
        "split": "validation",
        "rows": int(len(X)),
        "features": [
            {"feature": str(X.columns[i]), "mean": _r(res.importances_mean[i]), "std": _r(res.importances_std[i])}
            for i in order
        ],
    }


def _distribution(feature: dict[str, Any], train_col: Any, test_col: Any) -> dict[str, Any] | None:
    import numpy as np
    import pandas as pd

    if feature["type"] == "numeric":
        a = pd.to_numeric(train_col, errors="coerce").dropna().to_numpy(dtype=float)
        b = pd.to_numeric(test_col, errors="coerce").dropna().to_numpy(dtype=float)
        both = np.concatenate([a, b])
        if len(both) == 0:
            return None
        lo, hi = float(np.min(both)), float(np.max(both))
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, 13)
        ca = np.histogram(a, bins=edges)[0]
        cb = np.histogram(b, bins=edges)[0]
        return {
            "feature": feature["name"],
            "type": "numeric",
            "edges": [_r(e) for e in edges],
            "train": [_r(c / max(len(a), 1)) for c in ca],
            "test": [_r(c / max(len(b), 1)) for c in cb],
        }
    ta = train_col.fillna("(missing)").astype(str)
    tb = test_col.fillna("(missing)").astype(str)
    top = list(ta.value_counts().index[:8])
    fa = ta.where(ta.isin(top), "(other)").value_counts(normalize=True)
    fb = tb.where(tb.isin(top), "(other)").value_counts(normalize=True)
    cats = top + (["(other)"] if ("(other)" in fa.index or "(other)" in fb.index) else [])
    return {
        "feature": feature["name"],
        "type": "categorical",
        "categories": cats,
        "train": [_r(fa.get(c, 0.0)) for c in cats],
        "test": [_r(fb.get(c, 0.0)) for c in cats],
    }


def profile(frames: dict[str, Any], schema: dict[str, Any], ranked_features: list[str] | None = None) -> dict[str, Any]:
    """The data profile: rows and missing cells per split, class balance, train vs test distributions.

    Args:
        frames: ``{"train": DataFrame, "validation": DataFrame|None, "test": DataFrame|None}`` of strings.
        schema: schema.json dict (``target``, ``problem_type``, ``features``).
        ranked_features: feature names, most important first (the distributions shown); default schema order.
    Returns:
        ``{"rows": {split: n}, "missing": {column: {split: n}}, "class_balance": {split: {label: n}} | None,
        "target_summary": {split: {"mean", "min", "max"}} | None, "distributions": [...]}``.
    """
    present = {s: f for s, f in frames.items() if f is not None}
    columns = schema["feature_order"] + [schema["target"]]
    missing = {c: {s: int(f[c].isna().sum()) for s, f in present.items() if c in f.columns} for c in columns}
    target = schema["target"]
    balance = summary = None
    if schema["problem_type"] != "regression":
        balance = {
            s: {str(k): int(v) for k, v in f[target].str.strip().value_counts().sort_index().items()}
            for s, f in present.items()
        }
    else:
        import pandas as pd

        summary = {}
        for s, f in present.items():
            v = pd.to_numeric(f[target], errors="coerce")
            summary[s] = {"mean": _r(v.mean()), "min": _r(v.min()), "max": _r(v.max())}
    by_name = {f["name"]: f for f in schema["features"]}
    names = [n for n in (ranked_features or schema["feature_order"]) if n in by_name][:TOP_DISTRIBUTIONS]
    dists = []
    if "test" in present:
        for n in names:
            d = _distribution(by_name[n], present["train"][n], present["test"][n])
            if d:
                dists.append(d)
    return {
        "rows": {s: int(len(f)) for s, f in present.items()},
        "missing": missing,
        "class_balance": balance,
        "target_summary": summary,
        "distributions": dists,
    }
