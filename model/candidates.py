"""The candidate models of a training job and their selection on the validation split.

``train.py``'s fit step calls :func:`fit_and_select`: every candidate is fitted on the train split and
scored on the validation split by the selection metric (the task's primary metric, ``auc`` / ``macro_f1``
/ ``r2``, unless the ``selection_metric`` hyperparameter names another of ``sagepipe_contract.METRIC_NAMES``).
The choice follows the one-standard-error rule (:func:`choose`): the simplest candidate that is not
significantly worse than the best one - its validation metric (and, for classifiers, its validation log
loss) trails the best's by at most the bootstrap standard error of that difference. On a small validation split a more
complex model must beat a simpler one by more than the split's noise; on a large one the best wins.
Without a validation channel there is nothing to choose on: the GBM alone is fitted, to ``max_iter``
(the model before candidates), and the selection record says so.

Candidates, simplest first (each a plain scikit-learn ``Pipeline``, so ``inference.py`` serves whichever wins
unchanged):

* ``linear``: a regularised linear model - ``LogisticRegression`` (L2, ``C`` = 1) for classifiers, ``Ridge``
  (``alpha`` = 1) for regression - on median-imputed numeric features with missing-value indicators,
  standardised, and a sparse one-hot encoding of the categorical ones (categories seen in fewer than
  :data:`MIN_CATEGORY_ROWS` training rows, and beyond the :data:`MAX_ONEHOT_CATEGORIES` most frequent, share
  one "infrequent" column; unseen ones encode as infrequent or all zeros), so a high-cardinality column
  costs memory per non-zero, not per category and row.
* ``gbm``: ``HistGradientBoosting*`` with native categorical splits (an ordinal code per category, at most
  :data:`MAX_GBM_CATEGORIES` per column, rarer ones grouped; unseen ones are missing) and native missing
  values (no imputation). Early stopping uses the **validation channel**: the model grows in steps
  (``warm_start``), the validation loss (log loss / squared error) is read after every iteration
  (``staged_predict_proba``), and it stops when that loss has not improved by more than :data:`ES_TOL`
  for ``n_iter_no_change`` iterations, or at ``max_iter``. As with scikit-learn's own early stopping, the model keeps the iterations grown after
  its best one.

The training job's hyperparameters keep their meaning: ``max_iter`` (the GBM's upper bound),
``learning_rate``, ``max_depth``, ``max_leaf_nodes``, ``l2_regularization`` go to the GBM; ``model``
(``auto`` = every candidate, or a comma-separated subset such as ``gbm``) restricts the set, so a tuning job
over GBM parameters can pin ``model: gbm``.

Standard library at import; scikit-learn, numpy and pandas are imported lazily. Python 3.10 syntax (the
SageMaker scikit-learn 1.4-2 container).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import pandas as pd
    from numpy.typing import NDArray

#: The selection metric per problem type when the job names none (the gate's default metrics).
PRIMARY_METRIC: dict[str, str] = {"binary": "auc", "multiclass": "macro_f1", "regression": "r2"}
#: Metrics where a smaller value is better (``sagepipe_core.config.HIGHER_IS_BETTER``; pinned by a test).
LOWER_IS_BETTER: frozenset[str] = frozenset({"logloss", "rmse", "mae"})
#: Candidate names, simplest first (the one-standard-error rule's order).
CANDIDATES: tuple[str, ...] = ("linear", "gbm")
#: The candidate fitted when there is no validation split to choose on.
DEFAULT_CANDIDATE = "gbm"
MISSING_CATEGORY = "__missing__"
MIN_CATEGORY_ROWS = 5
MAX_ONEHOT_CATEGORIES = 100
MAX_GBM_CATEGORIES = 255  # HistGradientBoosting's max_bins: a categorical column may have at most that many
ES_STEP = 5
ES_TOL = 1e-7
ES_DEFAULT_PATIENCE = 20
LINEAR_ALPHA = 1.0  # Ridge alpha; LogisticRegression C = 1 / alpha (scikit-learn's defaults)
BOOTSTRAP_ROUNDS = 100
#: The second metric of the one-standard-error rule for classifiers (a proper scoring rule).
GUARD_METRIC = "logloss"
BOOTSTRAP_MAX_ROWS = 20000

Metrics = dict[str, float]


class CandidateError(ValueError):
    """A bad ``model`` / ``selection_metric`` hyperparameter (train.py turns it into a TrainingError)."""


def parse_model_list(raw: Any) -> tuple[str, ...]:
    """The candidates the ``model`` hyperparameter asks for.

    Args:
        raw: None / ``"auto"`` / ``"all"`` (every candidate) or a comma-separated list of names.
    Returns:
        candidate names in :data:`CANDIDATES` order.
    Raises:
        CandidateError: an unknown name, or an empty list.
    """
    if raw is None or str(raw).strip().lower() in ("", "auto", "all"):
        return CANDIDATES
    names = [n.strip().lower() for n in str(raw).split(",") if n.strip()]
    unknown = sorted(set(names) - set(CANDIDATES))
    if unknown or not names:
        raise CandidateError(f"hyperparameter model must be auto or a list of {'|'.join(CANDIDATES)}, got {raw!r}")
    return tuple(n for n in CANDIDATES if n in names)


def higher_is_better(metric: str) -> bool:
    """True where a larger value of ``metric`` is better (auc, accuracy, f1, macro_f1, r2)."""
    return metric not in LOWER_IS_BETTER


# --------------------------------------------------------------------------------------
# Pipelines
# --------------------------------------------------------------------------------------
def _columns(schema: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    numeric = [f["name"] for f in schema["features"] if f["type"] == "numeric"]
    categorical = [f["name"] for f in schema["features"] if f["type"] == "categorical"]
    return numeric, categorical


def build_linear(schema: Mapping[str, Any], strength: float, seed: int) -> Any:
    """The unfitted linear pipeline (``preprocess`` + ``model``).

    Args:
        schema: schema.json dict (feature types, problem_type).
        strength: Ridge ``alpha``; LogisticRegression gets ``C = 1 / strength``.
        seed: random_state (LogisticRegression's solver is deterministic; kept for symmetry).
    Returns:
        sklearn.pipeline.Pipeline; its preprocess step outputs a sparse matrix when one-hot columns dominate.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric, categorical = _columns(schema)
    transformers: list[tuple[str, Any, list[str]]] = []
    if numeric:
        transformers.append(
            (
                "num",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)),
                        ("scale", StandardScaler()),
                    ]
                ),
                numeric,
            )
        )
    if categorical:
        onehot = OneHotEncoder(
            handle_unknown="infrequent_if_exist",
            min_frequency=MIN_CATEGORY_ROWS,
            max_categories=MAX_ONEHOT_CATEGORIES,
            sparse_output=True,
        )
        transformers.append(
            (
                "cat",
                Pipeline(
                    [("impute", SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY)), ("onehot", onehot)]
                ),
                categorical,
            )
        )
    preprocess = ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.3)
    if schema["problem_type"] == "regression":
        model: Any = Ridge(alpha=strength, random_state=seed)
    else:
        model = LogisticRegression(C=1.0 / strength, max_iter=2000, random_state=seed)
    return Pipeline([("preprocess", preprocess), ("model", model)])


def build_gbm(schema: Mapping[str, Any], model_params: Mapping[str, Any], seed: int) -> Any:
    """The unfitted GBM pipeline: numeric columns as they are (NaN kept), categorical ones as ordinal codes.

    Args:
        schema: schema.json dict.
        model_params: HistGradientBoosting keyword arguments (``max_iter``, ``learning_rate``, ...).
        seed: random_state.
    Returns:
        sklearn.pipeline.Pipeline (``preprocess`` + ``model``); the model's ``categorical_features`` marks the
        ordinal columns, which follow the numeric ones in the preprocess output.
    """
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    numeric, categorical = _columns(schema)
    transformers: list[tuple[str, Any, list[str]]] = []
    if numeric:
        transformers.append(("num", "passthrough", numeric))
    if categorical:
        ordinal = OrdinalEncoder(
            handle_unknown="use_encoded_value",
            unknown_value=np.nan,
            encoded_missing_value=np.nan,
            min_frequency=MIN_CATEGORY_ROWS,
            max_categories=MAX_GBM_CATEGORIES,
            dtype=np.float64,
        )
        transformers.append(("cat", ordinal, categorical))
    preprocess = ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)
    mask = [False] * len(numeric) + [True] * len(categorical)
    kwargs: dict[str, Any] = {
        "random_state": seed,
        "categorical_features": mask if categorical else None,
        "early_stopping": False,
        **model_params,
    }
    model: Any
    if schema["problem_type"] == "regression":
        model = HistGradientBoostingRegressor(**kwargs)
    else:
        model = HistGradientBoostingClassifier(**kwargs)
    return Pipeline([("preprocess", preprocess), ("model", model)])


# --------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------
def _staged_losses(problem_type: str, model: Any, X: Any, y: NDArray[Any], start: int) -> list[float]:
    """The validation loss after each iteration ``start + 1 .. n_iter_`` (``staged_predict[_proba]``):
    mean log loss of the true class (probabilities clipped like ``sklearn.metrics.log_loss``) or mean
    squared error."""
    import numpy as np

    losses = []
    if problem_type == "regression":
        target = np.asarray(y, dtype=float)
        for i, pred in enumerate(model.staged_predict(X)):
            if i >= start:
                losses.append(float(np.mean((target - pred) ** 2)))
        return losses
    classes = [str(c) for c in model.classes_]
    index = {c: k for k, c in enumerate(classes)}
    codes = np.array([index.get(str(v), -1) for v in y])
    rows = np.arange(len(codes))
    eps = np.finfo(float).eps
    for i, proba in enumerate(model.staged_predict_proba(X)):
        if i >= start:
            p = np.where(codes >= 0, proba[rows, np.maximum(codes, 0)], 0.0)
            losses.append(float(-np.mean(np.log(np.clip(p, eps, 1.0)))))
    return losses


def fit_gbm_early_stopping(
    pipeline: Any,
    problem_type: str,
    train: tuple[pd.DataFrame, NDArray[Any]],
    validation: tuple[pd.DataFrame, NDArray[Any]] | None,
    patience: int,
) -> dict[str, Any]:
    """Fit the GBM pipeline, stopping on the validation split's loss.

    The preprocess step is fitted on train only; the model then grows ``max(patience, ES_STEP)``
    iterations at a time (``warm_start``) up to its ``max_iter``. After each step the validation loss of
    every new iteration is computed (``staged_predict_proba`` / ``staged_predict``); the fit stops once
    ``patience`` iterations have passed without an improvement of more than :data:`ES_TOL`.

    Args:
        pipeline: unfitted :func:`build_gbm` pipeline (fitted in place).
        problem_type: binary|multiclass|regression.
        train: ``(X, y)`` of the train split.
        validation: ``(X, y)`` of the validation split, or None (plain fit to ``max_iter``).
        patience: iterations without improvement before stopping (``n_iter_no_change``).
    Returns:
        ``{"iterations": int (grown), "best_iteration": int | None, "validation_loss": float | None}`` (the
        loss at ``best_iteration``; None without a validation split).
    """
    preprocess, model = pipeline.named_steps["preprocess"], pipeline.named_steps["model"]
    X_train = preprocess.fit_transform(train[0])
    max_iter = int(model.max_iter)
    if validation is None:
        model.fit(X_train, train[1])
        return {"iterations": int(model.n_iter_), "best_iteration": None, "validation_loss": None}
    X_val = preprocess.transform(validation[0])
    model.set_params(warm_start=True)
    step = max(patience, ES_STEP)
    best_loss, best_iter, grown = math.inf, 0, 0
    while grown < max_iter and grown - best_iter < patience:
        start = grown
        model.set_params(max_iter=min(grown + step, max_iter))
        model.fit(X_train, train[1])
        grown = int(model.n_iter_)
        for offset, loss in enumerate(_staged_losses(problem_type, model, X_val, validation[1], start)):
            if loss < best_loss - ES_TOL:
                best_loss, best_iter = loss, start + offset + 1
    model.set_params(warm_start=False, max_iter=max_iter)  # the hyperparameter as given; n_iter_ says what grew
    return {"iterations": int(model.n_iter_), "best_iteration": best_iter, "validation_loss": _finite(best_loss)}


def _fit_y(problem_type: str, y: NDArray[Any]) -> NDArray[Any]:
    import numpy as np

    result: NDArray[Any] = np.asarray(y, dtype=float) if problem_type == "regression" else np.asarray(y).astype(str)
    return result


def fit_candidate(
    name: str,
    schema: Mapping[str, Any],
    model_params: Mapping[str, Any],
    seed: int,
    train: tuple[pd.DataFrame, NDArray[Any]],
    validation: tuple[pd.DataFrame, NDArray[Any]] | None,
    patience: int = ES_DEFAULT_PATIENCE,
) -> tuple[Any, dict[str, Any]]:
    """Fit one candidate on the train split.

    Returns:
        ``(fitted pipeline, record)``; record: ``{"name", "family": "linear"|"gbm", "params": {...},
        "fit_seconds": float}`` plus, for the GBM, ``iterations``, ``best_iteration`` and
        ``validation_loss`` (:func:`fit_gbm_early_stopping`).
    """
    problem_type = str(schema["problem_type"])
    y_train = _fit_y(problem_type, train[1])
    started = time.time()
    record: dict[str, Any] = {"name": name}
    if name == "gbm":
        pipeline = build_gbm(schema, model_params, seed)
        record.update(family="gbm", params=dict(model_params, n_iter_no_change=patience))
        val = None if validation is None else (validation[0], _fit_y(problem_type, validation[1]))
        record.update(fit_gbm_early_stopping(pipeline, problem_type, (train[0], y_train), val, patience))
    else:
        strength = LINEAR_ALPHA
        pipeline = build_linear(schema, strength, seed)
        if problem_type == "regression":
            record.update(family="linear", params={"estimator": "Ridge", "alpha": strength})
        else:
            record.update(family="linear", params={"estimator": "LogisticRegression", "C": 1.0 / strength})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lbfgs ConvergenceWarning on unscaled one-hot edges: still a model
            pipeline.fit(train[0], y_train)
    record["fit_seconds"] = round(time.time() - started, 4)
    return pipeline, record


# --------------------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------------------
class Scoring(NamedTuple):
    """How candidates are scored: ``predict(pipeline, X) -> predictions`` (probabilities in label order, or
    values) and ``metrics(y, predictions, names=None) -> {metric: float}`` (train.predictions /
    metrics_from_predictions; ``names`` limits what is computed)."""

    predict: Callable[[Any, Any], Any]
    metrics: Callable[..., Metrics]


def bootstrap_scores(
    scoring: Scoring, y: Any, predicted: Sequence[Any], metrics: Sequence[str], seed: int
) -> dict[str, NDArray[Any]]:
    """``metrics`` of every candidate on the same :data:`BOOTSTRAP_ROUNDS` resamples of the validation rows.

    Paired resamples: the spread of one candidate's score minus another's is the noise of their
    *difference*, much smaller than either's own when both err on the same rows. Splits larger than
    :data:`BOOTSTRAP_MAX_ROWS` are resampled from a subsample of that size (the caller scales the spread by
    sqrt(m / n)). Resamples where some candidate's metric is undefined (one class: AUC) are dropped.

    Returns:
        metric -> array (rounds kept, candidates).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    y = np.asarray(y)
    preds = [np.asarray(p) for p in predicted]
    n = len(y)
    m = min(n, BOOTSTRAP_MAX_ROWS)
    base = np.sort(rng.choice(n, size=m, replace=False)) if m < n else np.arange(n)
    rows: dict[str, list[list[float]]] = {name: [] for name in metrics}
    for _ in range(BOOTSTRAP_ROUNDS):
        idx = base[rng.integers(0, m, size=m)]
        scores = [scoring.metrics(y[idx], p[idx], tuple(metrics)) for p in preds]
        for name in metrics:
            values = [s.get(name, float("nan")) for s in scores]
            if all(v is not None and math.isfinite(v) for v in values):
                rows[name].append(values)
    return {name: np.asarray(r, dtype=float).reshape(len(r), len(preds)) for name, r in rows.items()}


def standard_errors(scores: NDArray[Any], best: int, n: int) -> tuple[list[float], list[float]]:
    """``(own, gap)``: each candidate's bootstrap standard error and that of its difference to ``best``
    (0 for ``best`` itself), scaled by sqrt(m / n) for a subsampled split; all 0.0 with fewer than 10 rounds."""
    import numpy as np

    k = scores.shape[1]
    if scores.shape[0] < 10:
        return [0.0] * k, [0.0] * k
    scale = math.sqrt(min(n, BOOTSTRAP_MAX_ROWS) / n) if n else 1.0
    own = [float(np.std(scores[:, i], ddof=1) * scale) for i in range(k)]
    gap = [float(np.std(scores[:, best] - scores[:, i], ddof=1) * scale) for i in range(k)]
    return own, gap


def _oriented(record: Mapping[str, Any], metric: str) -> float:
    value = (record.get("validation") or {}).get(metric)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return -math.inf
    return float(value) if higher_is_better(metric) else -float(value)


def best_index(records: Sequence[Mapping[str, Any]], metric: str) -> int | None:
    """The record with the best validation ``metric`` (the first of equals), None when none is finite."""
    eligible = [i for i in range(len(records)) if _oriented(records[i], metric) > -math.inf]
    return max(eligible, key=lambda i: (_oriented(records[i], metric), -i)) if eligible else None


def choose(records: Sequence[Mapping[str, Any]], metric: str, guard: str | None = None) -> dict[str, Any]:
    """The one-standard-error rule over candidates in simplicity order.

    The best candidate has the best validation ``metric``. The chosen one is the **first** record (the
    simplest; :data:`CANDIDATES` order) that is not significantly worse than the best: it trails the best
    by at most ``gap_se`` on ``metric`` and, with a ``guard`` metric, by at most ``guard_gap_se`` on that
    one too (``gap_se`` = the standard error of the difference of the two scores, paired bootstrap). So a
    more complex model must beat a simpler one by more than the validation split's noise (Hastie,
    Tibshirani & Friedman, *The Elements of Statistical Learning*, 2nd ed., section 7.10, applied to a
    paired difference). The guard is the log loss for classifiers: a proper scoring rule, far less noisy
    than AUC or macro-F1 on a small split, so a model that is clearly better calibrated and ahead on the
    metric is not discarded for the metric's noise alone. With every ``gap_se`` 0 this is the plain best
    (exact ties go to the simpler candidate).

    Args:
        records: candidates in simplicity order, each with ``validation``: ``{metric: float | None}``,
            ``gap_se`` and (with a guard) ``guard_gap_se``: float (a NaN / None metric is not eligible).
        metric: the selection metric.
        guard: a second metric the simpler model must not be significantly worse on, or None.
    Returns:
        ``{"chosen": index, "best": index | None, "runner_up": index | None}``; runner-up = the best of the
        others by the metric. Without any finite metric the first record is chosen and ``best`` is None.
    """
    best = best_index(records, metric)
    if best is None:
        return {"chosen": 0, "best": None, "runner_up": 1 if len(records) > 1 else None}

    def close(i: int, name: str, se_key: str) -> bool:
        se = records[i].get(se_key) or 0.0
        top = _oriented(records[best], name)
        if top == -math.inf:
            return True  # the guard is undefined for the best: no evidence against the simpler model
        return _oriented(records[i], name) >= top - (se if math.isfinite(se) else 0.0) - 1e-12

    def kept(i: int) -> bool:
        if _oriented(records[i], metric) == -math.inf:
            return False
        return close(i, metric, "gap_se") and (guard is None or close(i, guard, "guard_gap_se"))

    chosen = next(i for i in range(len(records)) if i == best or kept(i))
    others = sorted((i for i in range(len(records)) if i != chosen), key=lambda i: (-_oriented(records[i], metric), i))
    return {"chosen": chosen, "best": best, "runner_up": others[0] if others else None}


def fit_and_select(
    schema: Mapping[str, Any],
    model_params: Mapping[str, Any],
    seed: int,
    data: Mapping[str, tuple[pd.DataFrame, NDArray[Any]]],
    scoring: Scoring,
    names: Sequence[str] = CANDIDATES,
    selection_metric: str | None = None,
    patience: int = ES_DEFAULT_PATIENCE,
) -> tuple[Any, dict[str, Any]]:
    """Fit the candidates on ``data["train"]`` and choose one on ``data["validation"]`` (:func:`choose`).

    Args:
        schema: schema.json dict.
        model_params: the GBM's keyword arguments.
        seed: random_state of every candidate and of the bootstrap.
        data: split -> ``(X, y)``; ``train`` required, ``validation`` optional.
        scoring: :class:`Scoring` for the schema's problem type and labels.
        names: candidates to fit (:func:`parse_model_list`), simplest first.
        selection_metric: metric to choose by (default :data:`PRIMARY_METRIC`).
        patience: the GBM's ``n_iter_no_change``.
    Returns:
        ``(chosen fitted pipeline, selection)``; selection (``evaluation.json`` ``model_selection``):
        ``{"metric": "validation:<name>", "higher_is_better", "rule": "one_standard_error", "guard":
        "validation:logloss" | None, "chosen",
        "runner_up": name | None, "best": name | None, "reason": str, "candidates": [{"name", "family",
        "params", "fit_seconds", ["iterations", "best_iteration", "validation_loss"], "validation":
        {metric: float}, "validation_se", "gap_se", ["guard_gap_se"]}]}`` (candidates in simplicity order;
        ``validation_se`` / ``gap_se`` / ``guard_gap_se``: the bootstrap standard error of the metric, of
        its difference to the best's, and of the guard metric's difference, computed only when the best
        is not the simplest candidate; metrics may be NaN: train.py makes them JSON-safe).
    Raises:
        CandidateError: ``selection_metric`` is not reported for the problem type.
    """
    problem_type = str(schema["problem_type"])
    metric = selection_metric or PRIMARY_METRIC[problem_type]
    guard = GUARD_METRIC if problem_type != "regression" and metric != GUARD_METRIC else None
    validation = data.get("validation")
    if validation is None or len(validation[1]) == 0:
        names, validation = (DEFAULT_CANDIDATE,), None
    fitted, records, predicted = [], [], []
    for name in names:
        pipeline, record = fit_candidate(name, schema, model_params, seed, data["train"], validation, patience)
        if validation is not None:
            predicted.append(scoring.predict(pipeline, validation[0]))
            record["validation"] = scoring.metrics(validation[1], predicted[-1])
            if metric not in record["validation"]:
                raise CandidateError(f"selection metric {metric!r} is not reported for {problem_type}")
        fitted.append(pipeline)
        records.append(record)
    pick: dict[str, Any] = {"chosen": 0, "best": None, "runner_up": None}
    if validation is not None:
        best = best_index(records, metric)
        if best is not None and best > 0:  # the simplest is the best: no noise estimate needed
            names = (metric, guard) if guard and guard != metric else (metric,)
            scores = bootstrap_scores(scoring, validation[1], predicted, names, seed)
            own, gap = standard_errors(scores[metric], best, len(validation[1]))
            guard_gap = standard_errors(scores[guard], best, len(validation[1]))[1] if guard else gap
            for record, own_se, gap_se, guard_se in zip(records, own, gap, guard_gap, strict=True):
                record["validation_se"], record["gap_se"] = round(own_se, 6), round(gap_se, 6)
                if guard:
                    record["guard_gap_se"] = round(guard_se, 6)
        pick = choose(records, metric, guard)
    selection = {
        "metric": f"validation:{metric}",
        "higher_is_better": higher_is_better(metric),
        "rule": "one_standard_error",
        "guard": f"validation:{guard}" if guard else None,
        "chosen": records[pick["chosen"]]["name"],
        "runner_up": records[pick["runner_up"]]["name"] if pick["runner_up"] is not None else None,
        "best": records[pick["best"]]["name"] if pick["best"] is not None else None,
        "reason": _reason(records, pick, metric, validation is not None),
        "candidates": records,
    }
    return fitted[pick["chosen"]], selection


def _reason(records: Sequence[Mapping[str, Any]], pick: Mapping[str, Any], metric: str, validated: bool) -> str:
    chosen = records[pick["chosen"]]
    if not validated:
        return f"no validation split: {chosen['name']} fitted without a comparison"
    if pick["best"] is None:
        return f"no candidate has a finite validation {metric}: {chosen['name']} (the simplest)"

    def shown(record: Mapping[str, Any]) -> str:
        return f"{record['name']} {_fmt(record['validation'].get(metric))}"

    text = f"validation {metric}: " + ", ".join(shown(r) for r in records) + f"; chose {chosen['name']}"
    best = records[pick["best"]]
    if best is chosen:
        simpler = records[: pick["best"]]
        noisy = [r["name"] for r in simpler if "guard_gap_se" in r and _within(r, best, metric, "gap_se")]
        if noisy:
            return (
                text + f" (the best; {', '.join(noisy)} within the {metric} noise but significantly worse on logloss)"
            )
        return text + " (the best)"
    return text + (
        f" (behind {best['name']} by less than the standard error of the difference, "
        f"{_fmt(chosen.get('gap_se'))}: the simpler model)"
    )


def _within(record: Mapping[str, Any], best: Mapping[str, Any], metric: str, se_key: str) -> bool:
    se = record.get(se_key) or 0.0
    return _oriented(record, metric) >= _oriented(best, metric) - se - 1e-12


def _finite(value: float) -> float | None:
    return round(value, 6) if math.isfinite(value) else None


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) and math.isfinite(value) else "n/a"
