"""The candidate models of a training job and their selection on the validation split.

``train.py``'s fit step calls :func:`fit_and_select`: every candidate is fitted on the train split and
scored on the validation split by the selection metric (the task's primary metric, ``auc`` / ``macro_f1``
/ ``r2``, unless the ``selection_metric`` hyperparameter names another of ``sagepipe_contract.METRIC_NAMES``).
The choice follows the one-standard-error rule (:func:`choose`): the simplest candidate that is not
significantly worse than the best one - its validation metric trails the best's by at most the bootstrap
standard error of that difference and, for classifiers, its validation log loss trails the best log loss
of the candidates by at most the standard error of that difference. On a small validation split a more
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
* ``blend``: the equal-weight average of the two others' predictions (probabilities or values;
  scikit-learn's ``VotingClassifier(voting="soft")`` / ``VotingRegressor`` over the fitted members, no
  extra fit). Averaging a linear model and a GBM, which err differently, reduces the variance of either;
  it is the GBM shrunk halfway towards the linear model, so it sits between them in the simplicity
  order. On small validation splits, where neither member wins by more than the noise, it is often
  better than both on test.
* ``gbm``: ``HistGradientBoosting*`` with native categorical splits (an ordinal code per category, at most
  :data:`MAX_GBM_CATEGORIES` per column, rarer ones grouped; unseen ones are missing) and native missing
  values (no imputation). Early stopping uses the **validation channel**: the model grows in steps
  (``warm_start``), the validation loss (log loss / squared error) is read after every iteration
  (``staged_predict_proba``), and it stops when that loss has not improved by more than :data:`ES_TOL`
  for ``n_iter_no_change`` iterations, or at ``max_iter``. As with scikit-learn's own early stopping, the model keeps the iterations grown after
  its best one.

**Refit.** Once chosen, the candidate is refitted on train + validation with the settings chosen on
train (the GBM with ``max_iter`` = the early-stopped best iteration, no early stopping; the linear model
with its strength; the blend's two members so; :func:`refit_candidate`), so the served model sees the
validation rows too (``GridSearchCV(refit=True)``'s practice); the test split stays unseen. Off by default
(hyperparameter ``refit: true``): on ``bench/model_quality.py`` it lifts diabetes but costs
seattle_weather and breast_cancer (``bench/model_quality.md``).

The training job's hyperparameters keep their meaning: ``max_iter`` (the GBM's upper bound),
``learning_rate``, ``max_depth``, ``max_leaf_nodes``, ``l2_regularization`` go to the GBM; ``model``
(``auto`` = every candidate, or a comma-separated subset such as ``gbm``; ``blend`` needs ``linear`` and
``gbm`` listed too) restricts the set, so a tuning job over GBM parameters can pin ``model: gbm``.

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
#: Candidate names, simplest first (the one-standard-error rule's order). The blend averages the
#: predictions of the linear model and the GBM: the GBM shrunk halfway towards the linear model.
CANDIDATES: tuple[str, ...] = ("linear", "blend", "gbm")
#: The candidates the blend averages, with equal weights.
BLEND_MEMBERS: tuple[str, ...] = ("linear", "gbm")
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
        CandidateError: an unknown name, an empty list, or ``blend`` without both of :data:`BLEND_MEMBERS`.
    """
    if raw is None or str(raw).strip().lower() in ("", "auto", "all"):
        return CANDIDATES
    names = [n.strip().lower() for n in str(raw).split(",") if n.strip()]
    unknown = sorted(set(names) - set(CANDIDATES))
    if unknown or not names:
        raise CandidateError(f"hyperparameter model must be auto or a list of {'|'.join(CANDIDATES)}, got {raw!r}")
    if "blend" in names and not set(BLEND_MEMBERS) <= set(names):
        raise CandidateError(f"hyperparameter model: blend averages {' and '.join(BLEND_MEMBERS)}, list them too")
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


def build_blend(problem_type: str, members: Sequence[tuple[str, Any]], y_train: NDArray[Any]) -> Any:
    """The equal-weight average of fitted pipelines, as scikit-learn's soft-voting ensemble.

    ``VotingClassifier(voting="soft")`` / ``VotingRegressor`` over the members **as fitted** (scikit-learn
    1.4 has no prefit option, so the fitted attributes ``fit`` would set - ``estimators_``,
    ``named_estimators_`` and, for a classifier, ``le_`` / ``classes_`` - are set from the members instead of
    refitting them): ``predict_proba`` is the mean of the members' probabilities, ``predict`` its argmax
    (classifiers) or the mean prediction (regression). A plain scikit-learn object, so ``inference.py``
    loads and serves it like any pipeline.

    Args:
        problem_type: binary|multiclass|regression.
        members: ``(name, fitted pipeline)`` pairs; classifiers fitted on the same labels.
        y_train: the labels they were fitted on (classifiers: the class order, ``LabelEncoder``).
    Returns:
        the fitted ensemble.
    """
    import numpy as np
    from sklearn.ensemble import VotingClassifier, VotingRegressor
    from sklearn.preprocessing import LabelEncoder
    from sklearn.utils import Bunch

    blend: Any
    if problem_type == "regression":
        blend = VotingRegressor(list(members))
    else:
        blend = VotingClassifier(list(members), voting="soft")
        blend.le_ = LabelEncoder().fit(np.asarray(y_train).astype(str))
        blend.classes_ = blend.le_.classes_
        for name, member in members:
            if [str(c) for c in member.classes_] != [str(c) for c in blend.classes_]:
                raise ValueError(f"blend member {name} has classes {list(member.classes_)}, not {list(blend.classes_)}")
    blend.estimators_ = [member for _, member in members]
    blend.named_estimators_ = Bunch(**dict(members))
    return blend


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


def refit_candidate(
    record: Mapping[str, Any],
    schema: Mapping[str, Any],
    model_params: Mapping[str, Any],
    seed: int,
    rows: tuple[pd.DataFrame, NDArray[Any]],
) -> tuple[Any, dict[str, Any]]:
    """Refit the chosen candidate on ``rows`` (train + validation) with the settings chosen on train.

    The linear model keeps its strength; the GBM is fitted to a fixed ``max_iter`` = the early-stopped
    ``best_iteration`` (its ``iterations`` when it had no validation loss), without early stopping (no rows are
    left to stop on); the blend refits both members that way and averages them (:func:`build_blend`). The
    standard "refit on all non-test rows after model selection" (as ``GridSearchCV(refit=True)`` refits on
    the rows it searched); the test split stays unseen.

    Args:
        record: the chosen candidate's record (:func:`fit_candidate`); a blend's (``family == "blend"``) also
            has ``"_members": {member name: its record}``.
        schema, model_params, seed: as for :func:`fit_candidate`.
        rows: ``(X, y)`` of train and validation concatenated.
    Returns:
        ``(fitted pipeline, info)``; info: ``{"splits": ["train", "validation"], "rows": int, "fit_seconds":
        float}`` plus ``"iterations": int`` when a GBM is in the model.
    """
    problem_type = str(schema["problem_type"])
    y = _fit_y(problem_type, rows[1])
    started = time.time()
    info: dict[str, Any] = {"splits": ["train", "validation"], "rows": len(y)}

    def member(name: str, source: Mapping[str, Any]) -> Any:
        if name == "gbm":
            best = source.get("best_iteration") or source.get("iterations") or model_params.get("max_iter", 100)
            info["iterations"] = max(1, int(best))
            pipeline = build_gbm(schema, {**model_params, "max_iter": info["iterations"]}, seed)
            pipeline.fit(rows[0], y)
            return pipeline
        pipeline = build_linear(schema, LINEAR_ALPHA, seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # as in fit_candidate
            pipeline.fit(rows[0], y)
        return pipeline

    if record["family"] == "blend":
        sources = record["_members"]
        model = build_blend(problem_type, [(m, member(m, sources[m])) for m in BLEND_MEMBERS], y)
    else:
        model = member(str(record["name"]), record)
    info["fit_seconds"] = round(time.time() - started, 4)
    return model, info


# --------------------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------------------
class Scoring(NamedTuple):
    """How candidates are scored: ``predict(pipeline, X) -> predictions`` (probabilities in label order, or
    values) and ``metrics(y, predictions, names=None) -> {metric: float}`` (train.predictions /
    metrics_from_predictions; ``names`` limits what is computed). With ``problem_type`` (and, for
    classifiers, ``labels``: the probability columns' order) the bootstrap computes :data:`FAST_METRICS`
    with numpy (:func:`resampled_metrics`) instead of calling ``metrics`` per resample."""

    predict: Callable[[Any, Any], Any]
    metrics: Callable[..., Metrics]
    problem_type: str | None = None
    labels: Sequence[str] | None = None


#: Metrics :func:`resampled_metrics` computes (the definitions of ``train.metrics_from_predictions``).
FAST_METRICS: dict[str, frozenset[str]] = {
    "binary": frozenset({"auc", "accuracy", "f1", "logloss"}),
    "multiclass": frozenset({"macro_f1", "accuracy", "logloss"}),
    "regression": frozenset({"r2", "rmse", "mae"}),
}


class _Encoded(NamedTuple):
    codes: NDArray[Any]  # true class index per row (classifiers) or the target (regression)
    predicted: NDArray[Any]  # argmax class index (classifiers) or the prediction (regression)
    true_loss: NDArray[Any]  # -log p(true class), clipped and renormalised as sklearn.metrics.log_loss
    score: NDArray[Any]  # binary: probability of labels[1]


def _encode(problem_type: str, labels: Sequence[str] | None, y: NDArray[Any], pred: NDArray[Any]) -> _Encoded:
    import numpy as np

    if problem_type == "regression":
        empty = np.zeros(0)
        return _Encoded(np.asarray(y, dtype=float), np.asarray(pred, dtype=float), empty, empty)
    index = {str(label): k for k, label in enumerate(labels or [])}
    codes = np.array([index[str(v)] for v in np.asarray(y)], dtype=int)
    proba = np.asarray(pred, dtype=float)
    eps = np.finfo(proba.dtype).eps
    clipped = np.clip(proba, eps, 1 - eps)
    clipped = clipped / clipped.sum(axis=1, keepdims=True)
    true_loss = -np.log(clipped[np.arange(len(codes)), codes])
    score = proba[:, 1] if problem_type == "binary" else np.zeros(0)
    return _Encoded(codes, proba.argmax(axis=1), true_loss, score)


def resampled_metrics(
    problem_type: str, n_labels: int, enc: _Encoded, idx: NDArray[Any], names: Sequence[str]
) -> Metrics:
    """:data:`FAST_METRICS` of the rows ``idx`` of an encoded split, as ``train.metrics_from_predictions``
    computes them with scikit-learn (``roc_auc_score`` by the rank statistic with average ranks for ties;
    ``f1_score`` with ``zero_division=0``, macro over every label; ``log_loss`` with its clipping;
    ``r2_score``; RMSE; MAE). NaN where undefined (AUC of one class, R^2 of a constant target)."""
    import numpy as np
    from scipy.stats import rankdata

    out: Metrics = {}
    y, pred = enc.codes[idx], enc.predicted[idx]
    if problem_type == "regression":
        residual = y - pred
        total = float(np.sum((y - y.mean()) ** 2))
        for name in names:
            if name == "r2":
                out[name] = 1.0 - float(np.sum(residual**2)) / total if total > 0 else float("nan")
            elif name == "rmse":
                out[name] = math.sqrt(float(np.mean(residual**2)))
            elif name == "mae":
                out[name] = float(np.mean(np.abs(residual)))
        return out
    hits = pred == y
    true_count = np.bincount(y, minlength=n_labels)
    pred_count = np.bincount(pred, minlength=n_labels)
    tp = np.bincount(y[hits], minlength=n_labels)
    denominator = true_count + pred_count
    f1 = np.divide(2.0 * tp, denominator, out=np.zeros(n_labels), where=denominator > 0)
    for name in names:
        if name == "accuracy":
            out[name] = float(np.mean(hits))
        elif name == "macro_f1":
            out[name] = float(np.mean(f1))
        elif name == "f1":
            out[name] = float(f1[1])
        elif name == "logloss":
            out[name] = float(np.mean(enc.true_loss[idx]))
        elif name == "auc":
            positives = int(true_count[1])
            negatives = len(y) - positives
            if positives == 0 or negatives == 0:
                out[name] = float("nan")
            else:
                ranks = rankdata(enc.score[idx])
                out[name] = float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))
    return out


def bootstrap_scores(
    scoring: Scoring, y: Any, predicted: Sequence[Any], metrics: Sequence[str], seed: int
) -> dict[str, NDArray[Any]]:
    """``metrics`` of every candidate on the same :data:`BOOTSTRAP_ROUNDS` resamples of the validation rows.

    Paired resamples: the spread of one candidate's score minus another's is the noise of their
    *difference*, much smaller than either's own when both err on the same rows. Splits larger than
    :data:`BOOTSTRAP_MAX_ROWS` are resampled from a subsample of that size (the caller scales the spread by
    sqrt(m / n)). Resamples where some candidate's metric is undefined (one class: AUC) are dropped.
    Metrics of :data:`FAST_METRICS` are computed by :func:`resampled_metrics` when ``scoring`` names its
    problem type (the same values; scikit-learn's per-call input validation cost more than the fits on
    small data), others by ``scoring.metrics``.

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
    problem_type = scoring.problem_type
    fast = problem_type is not None and set(metrics) <= FAST_METRICS.get(problem_type, frozenset())
    n_labels = len(scoring.labels or [])
    encoded = [_encode(problem_type, scoring.labels, y, p) for p in preds] if fast and problem_type else []
    rows: dict[str, list[list[float]]] = {name: [] for name in metrics}
    for _ in range(BOOTSTRAP_ROUNDS):
        idx = base[rng.integers(0, m, size=m)]
        if fast and problem_type:
            scores = [resampled_metrics(problem_type, n_labels, e, idx, tuple(metrics)) for e in encoded]
        else:
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
    by at most ``gap_se`` on ``metric`` and, with a ``guard`` metric, trails the candidate best on the
    guard by at most ``guard_gap_se`` (``gap_se`` / ``guard_gap_se`` = the standard error of the
    difference of the two scores, paired bootstrap; the best by ``metric`` is always eligible). So a
    more complex model must beat a simpler one by more than the validation split's noise (Hastie,
    Tibshirani & Friedman, *The Elements of Statistical Learning*, 2nd ed., section 7.10, applied to a
    paired difference). The guard is the log loss for classifiers: a proper scoring rule, far less noisy
    than AUC or macro-F1 on a small split, so a model that is clearly better calibrated and ahead on the
    metric is not discarded for the metric's noise alone. With every ``gap_se`` 0 this is the plain best
    (exact ties go to the simpler candidate).

    Args:
        records: candidates in simplicity order, each with ``validation``: ``{metric: float | None}``,
            ``gap_se`` and (with a guard) ``guard_gap_se``: float, the standard errors of the difference to
            the best by ``metric`` and to the best by ``guard`` (a NaN / None metric is not eligible).
        metric: the selection metric.
        guard: a second metric the simpler model must not be significantly worse on, or None.
    Returns:
        ``{"chosen": index, "best": index | None, "runner_up": index | None}``; runner-up = the best of the
        others by the metric. Without any finite metric the first record is chosen and ``best`` is None.
    """
    best = best_index(records, metric)
    if best is None:
        return {"chosen": 0, "best": None, "runner_up": 1 if len(records) > 1 else None}

    guard_best = best_index(records, guard) if guard else None

    def close(i: int, name: str, se_key: str) -> bool:
        se = records[i].get(se_key) or 0.0
        reference = best if name == metric or guard_best is None else guard_best
        top = _oriented(records[reference], name)
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
    refit: bool = False,
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
        refit: with a validation split, refit the chosen candidate on train + validation
            (:func:`refit_candidate`) and return that model; the candidates' validation metrics stay those of
            the train-only fits (the refit model has seen the validation rows).
    Returns:
        ``(chosen fitted pipeline, selection)``; selection (``evaluation.json`` ``model_selection``):
        ``{"metric": "validation:<name>", "higher_is_better", "rule": "one_standard_error", "guard":
        "validation:logloss" | None, "chosen",
        "runner_up": name | None, "best": name | None, "reason": str, "candidates": [{"name", "family",
        "params", "fit_seconds", ["iterations", "best_iteration", "validation_loss"], "validation":
        {metric: float}, "validation_se", "gap_se", ["guard_gap_se"]}]}`` (candidates in simplicity order;
        ``validation_se`` / ``gap_se`` / ``guard_gap_se``: the bootstrap standard error of the metric, of
        its difference to the best's, and of the guard metric's difference to the best on the guard,
        computed only when the best is not the simplest candidate; the blend's ``family`` is ``blend``,
        its ``params`` ``{"members": [...], "weights": "equal"}``; metrics may be NaN: train.py makes
        them JSON-safe; ``refit``: :func:`refit_candidate`'s info, or None when the returned model is the
        train-only fit).
    Raises:
        CandidateError: ``selection_metric`` is not reported for the problem type.
    """
    problem_type = str(schema["problem_type"])
    metric = selection_metric or PRIMARY_METRIC[problem_type]
    guard = GUARD_METRIC if problem_type != "regression" and metric != GUARD_METRIC else None
    validation = data.get("validation")
    if validation is None or len(validation[1]) == 0:
        names, validation = (DEFAULT_CANDIDATE,), None
    by_name: dict[str, tuple[Any, dict[str, Any]]] = {}
    for name in (n for n in names if n != "blend"):  # the blend's members first; it is fitted from them
        by_name[name] = fit_candidate(name, schema, model_params, seed, data["train"], validation, patience)
    if "blend" in names:
        started = time.time()
        members = [(member, by_name[member][0]) for member in BLEND_MEMBERS]
        blend = build_blend(problem_type, members, _fit_y(problem_type, data["train"][1]))
        params: dict[str, Any] = {"members": list(BLEND_MEMBERS), "weights": "equal"}
        blend_record: dict[str, Any] = {"name": "blend", "family": "blend", "params": params}
        by_name["blend"] = blend, {**blend_record, "fit_seconds": round(time.time() - started, 4)}
    records, predicted = [], []
    on_validation: dict[str, Any] = {}
    if validation is not None:  # the blend's validation predictions are its members' mean (build_blend)
        import numpy as np

        for name in names:
            if name != "blend":
                on_validation[name] = scoring.predict(by_name[name][0], validation[0])
        if "blend" in names:
            on_validation["blend"] = np.mean([on_validation[member] for member in BLEND_MEMBERS], axis=0)
    for name in names:
        pipeline, record = by_name[name]
        if validation is not None:
            predicted.append(on_validation[name])
            record["validation"] = scoring.metrics(validation[1], predicted[-1])
            if metric not in record["validation"]:
                raise CandidateError(f"selection metric {metric!r} is not reported for {problem_type}")
        records.append(record)
    pick: dict[str, Any] = {"chosen": 0, "best": None, "runner_up": None}
    if validation is not None:
        best = best_index(records, metric)
        if best is not None and best > 0:  # the simplest is the best: no noise estimate needed
            names = (metric, guard) if guard and guard != metric else (metric,)
            scores = bootstrap_scores(scoring, validation[1], predicted, names, seed)
            own, gap = standard_errors(scores[metric], best, len(validation[1]))
            guard_best = best_index(records, guard) if guard else None
            guard_gap = (
                standard_errors(scores[guard], guard_best, len(validation[1]))[1]
                if guard and guard_best is not None and scores[guard].size
                else gap
            )
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
        "refit": None,
    }
    chosen = dict(records[pick["chosen"]])
    return _refit(chosen, by_name, schema, model_params, seed, data["train"], validation if refit else None, selection)


def _refit(
    chosen: dict[str, Any],
    by_name: Mapping[str, tuple[Any, dict[str, Any]]],
    schema: Mapping[str, Any],
    model_params: Mapping[str, Any],
    seed: int,
    train: tuple[pd.DataFrame, NDArray[Any]],
    validation: tuple[pd.DataFrame, NDArray[Any]] | None,
    selection: dict[str, Any],
) -> tuple[Any, dict[str, Any]]:
    """:func:`refit_candidate` on train's rows then validation's (``pandas.concat``, fresh index); sets
    ``selection["refit"]``. Without a validation split (or ``refit=False``): the train-only fit, ``refit`` None."""
    import numpy as np
    import pandas as pd

    if validation is None:
        return by_name[chosen["name"]][0], selection
    chosen["_members"] = {name: record for name, (_, record) in by_name.items()}
    X = pd.concat([train[0], validation[0]], axis=0, ignore_index=True)
    y = np.concatenate([np.asarray(train[1]), np.asarray(validation[1])])
    model, selection["refit"] = refit_candidate(chosen, schema, model_params, seed, (X, y))
    return model, selection


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
