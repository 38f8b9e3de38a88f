"""SageMaker script-mode training entry point (scikit-learn framework container).

Runs unchanged in the SageMaker scikit-learn container
(``sagemaker-scikit-learn:1.4-2-cpu-py3``: scikit-learn 1.4.2, Python 3.10) and
locally (the sagepipe twin, or by hand with the ``SM_*`` variables set).

Contract followed (SageMaker training toolkit / "Use scikit-learn with Amazon
SageMaker" docs, https://docs.aws.amazon.com/sagemaker/latest/dg/sklearn.html and
https://github.com/aws/sagemaker-training-toolkit/blob/master/ENVIRONMENT_VARIABLES.md):

* hyperparameters arrive as ``--name value`` command-line arguments (values may be
  JSON encoded, e.g. ``"\\"churn\\""``) and as the JSON object in ``SM_HPS``;
  command-line values win when both are present;
* ``SM_CHANNEL_TRAIN`` (required), ``SM_CHANNEL_VALIDATION``, ``SM_CHANNEL_TEST``
  (optional) and ``SM_CHANNEL_CHAMPION`` (optional) are directories of CSV files with
  a header row; all CSV files of a channel are concatenated (sorted by path);
  ``SM_CHANNEL_MANIFEST`` (optional) holds the run's ``split_manifest.json``, copied into
  the artifact; the champion's own copy tells which test rows trained it (they are left out
  when it is scored, ``evaluation.json`` ``champion.overlap``);
* artifacts are written to ``SM_MODEL_DIR`` (``model.joblib``, ``schema.json``,
  ``evaluation.json``, ``code/inference.py`` and ``code/sagepipe_contract.py``, the shared contract
  module that inference.py imports); ``evaluation.json`` is also copied to
  ``SM_OUTPUT_DATA_DIR`` when that is set;
* on a fatal error the message is written to the failure file
  (``SM_OUTPUT_FAILURE`` or ``$SM_OUTPUT_DIR/failure``, default
  ``/opt/ml/output/failure`` when that directory exists) and the process exits 1.

Metric lines (one per metric, stdout) have the exact form::

    [metric] <split>:<name>=<repr(float)>      e.g.  [metric] validation:auc=0.912345

with ``nan`` for NaN; ``<split>`` is train, validation, test or champion_test. They
match MetricDefinitions regexes like ``\\[metric\\] validation:auc=([-+0-9.eE]+|nan)``.

Hyperparameters: ``target`` (required), ``problem_type`` (binary|multiclass|regression;
inferred when absent: numeric target with > 20 distinct values -> regression, 2 labels
-> binary, else multiclass), ``seed`` (int, 0); the model (``candidates.py``): ``model``
(``auto``: every candidate, chosen on the validation split; or a comma-separated subset of
``linear``, ``blend`` (their average; needs both), ``gbm``), ``selection_metric`` (default auc / macro_f1 / r2),
the GBM's ``max_iter`` (200, the upper bound of early stopping), ``learning_rate`` (0.1),
``max_depth`` (None), ``max_leaf_nodes`` (31), ``l2_regularization`` (0.0) and
``n_iter_no_change`` (20, early stopping's patience on the validation loss), ``refit`` (false; true: the
chosen candidate is refitted on train + validation with the settings chosen, ``candidates.refit_candidate``,
and its ``validation:*`` metric lines and ``evaluation.json`` ``metrics.validation`` are the chosen
candidate's as fitted on train, before the refit, so they stay held out).
``sagemaker_*`` hyperparameters are ignored; other unknown names are reported on
stderr and ignored.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

import baseline
import candidates
import diagnostics
from sagepipe_contract import (
    CODE_DIR,
    CODE_FILES,
    EVALUATION_FILE,
    GROUPED_NUMBER_PATTERN,
    METRIC_NAMES,
    MODEL_ARCHIVE,
    MODEL_FILE,
    NA_TOKENS,
    NUMBER_PATTERN,
    PROBLEM_TYPES,
    SCHEMA_FILE,
    SCHEMA_VERSION,
    SPLIT_MANIFEST_FILE,
    SPLITS,
    STRAY_MAX_DISTINCT,
    check_schema,
    column_type,
    read_manifest,
    row_identity,
    safe_extract,
)

if TYPE_CHECKING:  # pandas/numpy/sklearn are imported lazily: `import train` stays cheap
    import pandas as pd
    from numpy.typing import NDArray

MODEL_PARAM_DEFAULTS: dict[str, Any] = {
    "max_iter": 200,
    "learning_rate": 0.1,
    "max_depth": None,
    "max_leaf_nodes": 31,
    "l2_regularization": 0.0,
}
MISSING_POLICIES = ("impute", "reject")
KNOWN_HPS = {
    "target",
    "problem_type",
    "seed",
    "model",
    "selection_metric",
    "n_iter_no_change",
    "refit",
    "exclude_columns",
    "missing_features",
    *MODEL_PARAM_DEFAULTS,
}

Schema = dict[str, Any]  # schema.json (sagepipe_contract.check_schema)
Metrics = dict[str, float]  # metric name -> value (NaN when undefined)


class TrainingError(Exception):
    """A fatal, user-facing training error (bad hyperparameters or data).

    Its message is written verbatim to the SageMaker failure file, which SageMaker
    surfaces as the training job's ``FailureReason``.
    """


class TrainConfig(TypedDict):
    """What :func:`resolve_config` returns."""

    target: str
    problem_type: str | None  # None: infer from the train split
    seed: int
    model_params: dict[str, Any]  # HistGradientBoosting* keyword arguments
    candidates: tuple[str, ...]  # candidates.CANDIDATES subset to fit and choose from
    selection_metric: str | None  # None: candidates.PRIMARY_METRIC of the problem type
    n_iter_no_change: int  # the GBM's early-stopping patience (iterations) on the validation loss
    refit: bool  # refit the chosen candidate on train + validation (candidates.refit_candidate)
    exclude_columns: dict[str, str]  # column -> why it is not a feature (ValidateData's decision)
    missing_features: str  # the API's policy for a missing feature, recorded in schema.json


class ChampionResult(TypedDict):
    """``evaluation.json`` ``champion``: how the production model scored on this run's test split."""

    status: str  # absent | scored | incompatible | error
    reason: str | None
    metrics: dict[str, Any] | None  # {"test": {metric: float | None}} when scored
    curves: NotRequired[dict[str, Any] | None]  # diagnostics.model_curves on the test split; moved by evaluate()
    # the challenger on the same rows as the champion (the test rows that did not train the champion)
    challenger_metrics: NotRequired[dict[str, Any] | None]
    rows_scored: NotRequired[int | None]  # test rows the champion was scored on
    overlap: NotRequired[int | None]  # test rows left out: in the champion's split manifest (None: unknown)
    lineage: NotRequired[str]  # how the overlap was found, or why it is unknown
    schema_diff: NotRequired[dict[str, Any] | None]  # the feature-set change, champion -> challenger


# --------------------------------------------------------------------------------------
# Hyperparameters
# --------------------------------------------------------------------------------------
def decode_hp_value(raw: Any) -> Any:
    """Decode one hyperparameter value the way the SageMaker training toolkit does.

    Args:
        raw: the value as received (str from argv / SM_HPS, or an already-decoded
            JSON value from SM_HPS).
    Returns:
        ``json.loads(raw)`` when ``raw`` is a str holding valid JSON, else ``raw``.
    Raises:
        Nothing.
    """
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except (ValueError, TypeError):
        return raw


def _hps_from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    raw_hps = environ.get("SM_HPS")
    if not raw_hps:
        return {}
    try:
        loaded = json.loads(raw_hps)
    except ValueError as exc:
        raise TrainingError(f"SM_HPS is not valid JSON: {exc}") from exc
    if not isinstance(loaded, dict):
        raise TrainingError("SM_HPS must be a JSON object")
    return {str(key): decode_hp_value(value) for key, value in loaded.items()}


def parse_hyperparameters(argv: Sequence[str], environ: Mapping[str, str]) -> dict[str, Any]:
    """Merge hyperparameters from ``SM_HPS`` and ``--name value`` arguments.

    Args:
        argv: argument list without the program name, e.g. ``["--target", "churn"]``;
            ``--name=value`` is accepted too.
        environ: mapping of environment variables (``SM_HPS`` is a JSON object).
    Returns:
        dict name -> decoded value (argv wins over SM_HPS).
    Raises:
        TrainingError: malformed argv (a value without ``--name``) or SM_HPS not a
        JSON object.
    """
    hps = _hps_from_env(environ)
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--") or len(arg) <= 2:
            raise TrainingError(f"unexpected command-line argument {arg!r}")
        if "=" in arg:
            key, value = arg[2:].split("=", 1)
            i += 1
        else:
            key = arg[2:]
            if i + 1 >= len(argv):
                raise TrainingError(f"hyperparameter --{key} has no value")
            value = argv[i + 1]
            i += 2
        hps[key] = decode_hp_value(value)
    return hps


def _as_int(hps: Mapping[str, Any], name: str, default: int | None, minimum: int | None = None) -> int | None:
    value = hps.get(name, default)
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        return default
    try:
        if isinstance(value, bool):
            raise ValueError
        fvalue = float(value)
        if not fvalue.is_integer():
            raise ValueError
        ivalue = int(fvalue)
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"hyperparameter {name} must be an integer, got {value!r}") from exc
    if minimum is not None and ivalue < minimum:
        raise TrainingError(f"hyperparameter {name} must be >= {minimum}, got {ivalue}")
    return ivalue


def _as_bool(hps: Mapping[str, Any], name: str, default: bool) -> bool:
    """A true|false hyperparameter (JSON ``true``/``false`` or the strings, any case; SageMaker passes strings).

    Raises:
        TrainingError: any other value.
    """
    value = hps.get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "false"):
        return text == "true"
    raise TrainingError(f"hyperparameter {name} must be true or false, got {value!r}")


def _as_float(
    hps: Mapping[str, Any],
    name: str,
    default: float,
    minimum: float | None = None,
    strictly_positive: bool = False,
) -> float:
    value = hps.get(name, default)
    try:
        if isinstance(value, bool):
            raise ValueError
        fvalue = float(value)
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"hyperparameter {name} must be a number, got {value!r}") from exc
    if math.isnan(fvalue) or math.isinf(fvalue):
        raise TrainingError(f"hyperparameter {name} must be finite, got {value!r}")
    if strictly_positive and fvalue <= 0:
        raise TrainingError(f"hyperparameter {name} must be > 0, got {value!r}")
    if minimum is not None and fvalue < minimum:
        raise TrainingError(f"hyperparameter {name} must be >= {minimum}, got {value!r}")
    return fvalue


def _problem_type(hps: Mapping[str, Any]) -> str | None:
    raw = hps.get("problem_type")
    if raw is None:
        return None
    problem_type = str(raw).strip().lower()
    if problem_type in ("", "auto", "none"):
        return None
    if problem_type not in PROBLEM_TYPES:
        raise TrainingError(f"hyperparameter problem_type must be one of {'|'.join(PROBLEM_TYPES)}, got {raw!r}")
    return problem_type


def resolve_config(hps: Mapping[str, Any]) -> TrainConfig:
    """Validate hyperparameters and return the training configuration.

    Args:
        hps: dict from :func:`parse_hyperparameters`.
    Returns:
        :class:`TrainConfig`: ``target``, ``problem_type`` (None = infer), ``seed``,
        ``model_params`` (kwargs for HistGradientBoosting*), ``exclude_columns`` (columns that are not
        features, ``{name: reason}``) and ``missing_features`` (``impute`` | ``reject``).
    Raises:
        TrainingError: missing ``target``, bad ``problem_type`` or bad model params.
    """
    target = hps.get("target")
    if target is None or str(target).strip() == "":
        raise TrainingError("hyperparameter 'target' (label column name) is required")
    problem_type = _problem_type(hps)
    unknown = sorted(k for k in hps if k not in KNOWN_HPS and not k.startswith("sagemaker_"))
    if unknown:
        print("warning: ignoring unknown hyperparameters: {}".format(", ".join(unknown)), file=sys.stderr)
    params = {
        "max_iter": _as_int(hps, "max_iter", 200, minimum=1),
        "learning_rate": _as_float(hps, "learning_rate", 0.1, strictly_positive=True),
        "max_depth": _as_int(hps, "max_depth", None, minimum=1),
        "max_leaf_nodes": _as_int(hps, "max_leaf_nodes", 31, minimum=2),
        "l2_regularization": _as_float(hps, "l2_regularization", 0.0, minimum=0.0),
    }
    try:
        names = candidates.parse_model_list(hps.get("model"))
    except candidates.CandidateError as exc:
        raise TrainingError(str(exc)) from exc
    metric = hps.get("selection_metric")
    metric = None if metric is None or str(metric).strip().lower() in ("", "auto", "none") else str(metric).strip()
    known = sorted({m for names_ in METRIC_NAMES.values() for m in names_})
    if metric is not None and metric not in known:
        raise TrainingError(f"hyperparameter selection_metric must be one of {'|'.join(known)}, got {metric!r}")
    if metric is not None and problem_type is not None and metric not in METRIC_NAMES[problem_type]:
        raise TrainingError(f"hyperparameter selection_metric {metric!r} is not reported for {problem_type}")
    patience = _as_int(hps, "n_iter_no_change", candidates.ES_DEFAULT_PATIENCE, minimum=1)
    missing = str(hps.get("missing_features", "impute"))
    if missing not in MISSING_POLICIES:
        raise TrainingError(f"hyperparameter missing_features must be impute or reject, got {missing!r}")
    return {
        "target": str(target),
        "problem_type": problem_type,
        "seed": _as_int(hps, "seed", 0) or 0,
        "model_params": params,
        "candidates": names,
        "selection_metric": metric,
        "n_iter_no_change": patience or candidates.ES_DEFAULT_PATIENCE,
        "refit": _as_bool(hps, "refit", False),
        "exclude_columns": _exclude_columns(hps.get("exclude_columns")),
        "missing_features": missing,
    }


def _exclude_columns(raw: Any) -> dict[str, str]:
    """``exclude_columns``: ``{column: reason}`` (ValidateData's) or a list of names (reason ``config``)."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, list) and all(isinstance(n, str) for n in raw):
        return dict.fromkeys(raw, "config")
    if isinstance(raw, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        return dict(raw)
    raise TrainingError("hyperparameter exclude_columns must be a JSON object {column: reason} or a list of names")


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------
def list_channel_files(channel_dir: str) -> list[str]:
    """List the data files of a channel directory.

    Args:
        channel_dir: path of ``/opt/ml/input/data/<channel>``.
    Returns:
        sorted list of file paths (recursive; hidden files and ``_SUCCESS``-style
        markers skipped).
    Raises:
        TrainingError: the directory does not exist or has no data files.
    """
    if not os.path.isdir(channel_dir):
        raise TrainingError(f"channel directory {channel_dir} does not exist")
    files = []
    for root, dirs, names in os.walk(channel_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in names:
            if name.startswith(".") or name.startswith("_"):
                continue
            path = os.path.join(root, name)
            if os.path.getsize(path) > 0:
                files.append(path)
    if not files:
        raise TrainingError(f"channel directory {channel_dir} has no data files")
    return sorted(files)


def read_channel(channel_dir: str, split: str) -> pd.DataFrame:
    """Read and concatenate every CSV (with header) of a channel as strings.

    Every cell is stripped; a cell that is one of ``sagepipe_contract.NA_TOKENS`` is missing (NaN). pandas'
    own NA list is switched off (``na_filter=False``), so ValidateData, training and inference read a cell
    alike.

    Args:
        channel_dir: channel directory.
        split: split name, used in error messages.
    Returns:
        pandas.DataFrame of stripped ``str``/NaN values, columns as in the first file's header.
    Raises:
        TrainingError: unreadable CSV or files whose headers differ.
    """
    import pandas as pd

    frames = []
    columns: list[str] | None = None
    for path in list_channel_files(channel_dir):
        try:
            frame = pd.read_csv(path, dtype=str, na_filter=False, keep_default_na=False)
        except Exception as exc:  # pandas raises several parser error types
            raise TrainingError(f"cannot read {split} CSV {path}: {exc}") from exc
        frame.columns = [str(c).strip() for c in frame.columns]
        if columns is None:
            columns = list(frame.columns)
        elif list(frame.columns) != columns:
            raise TrainingError(f"{split} CSV {path} has header {list(frame.columns)}, expected {columns}")
        frames.append(frame)
    data = pd.concat(frames, ignore_index=True)
    if columns is not None and len(set(columns)) != len(columns):
        raise TrainingError(f"{split} data has duplicate column names")
    return apply_missing_tokens(data)


def apply_missing_tokens(frame: pd.DataFrame) -> pd.DataFrame:
    """Strip every cell and turn the missing-value tokens (``NA_TOKENS``) into NaN (a new frame)."""
    tokens = sorted(NA_TOKENS)
    out = frame.copy()
    for name in out.columns:
        col = out[name].astype(object).str.strip()
        out[name] = col.mask(col.isin(tokens) | col.isna())
    return out


def read_splits(environ: Mapping[str, str]) -> dict[str, pd.DataFrame | None]:
    """Read the ``train`` (required), ``validation`` and ``test`` channels.

    Returns:
        split -> DataFrame of strings, or None for an absent optional channel.
    Raises:
        TrainingError: ``SM_CHANNEL_TRAIN`` is not set, or a channel cannot be read.
    """
    if not environ.get("SM_CHANNEL_TRAIN"):
        raise TrainingError("SM_CHANNEL_TRAIN is not set: a 'train' channel is required")
    frames: dict[str, pd.DataFrame | None] = {"train": read_channel(environ["SM_CHANNEL_TRAIN"], "train")}
    for split in ("validation", "test"):
        path = environ.get("SM_CHANNEL_" + split.upper())
        frames[split] = read_channel(path, split) if path else None
    return frames


def _parse_numeric(series: pd.Series) -> pd.Series:
    """float64: the finite number each cell spells (``sagepipe_contract.parse_number``, vectorised), else NaN."""
    import numpy as np
    import pandas as pd

    if series.dtype != object:
        values = pd.to_numeric(series, errors="coerce").astype("float64")
        return values.where(np.isfinite(values))
    text = series.str.strip()
    plain = text.str.fullmatch(NUMBER_PATTERN, na=False)
    grouped = ~plain & text.str.fullmatch(GROUPED_NUMBER_PATTERN, na=False)
    out = pd.Series(np.nan, index=series.index, dtype="float64")
    out[plain] = text[plain].astype("float64")
    out[grouped] = text[grouped].str.replace(",", "", regex=False).astype("float64")
    return out.where(np.isfinite(out))


def infer_feature_types(frame: pd.DataFrame, feature_order: Sequence[str]) -> dict[str, str]:
    """Type each feature column with ``sagepipe_contract.column_type`` (as ValidateData types it).

    Numeric when every non-missing value is a number, or all but a few stray texts (at most 1% of the
    values and 5 distinct texts: they are then read as missing); else categorical.

    Args:
        frame: DataFrame of strings (:func:`read_channel`), every split of the job (the rows ValidateData
            typed).
        feature_order: feature column names.
    Returns:
        dict name -> "numeric" | "categorical".
    """
    types = {}
    for name in feature_order:
        col = frame[name]
        present = col.notna()
        stray = present & _parse_numeric(col).isna()
        distinct = int(col[stray].nunique()) if stray.any() else 0
        types[name] = column_type(int(present.sum()), int(stray.sum()), min(distinct, STRAY_MAX_DISTINCT + 1))
    return types


def _as_category(value: object) -> object:
    """str for present values, NaN for missing ones (what the categorical imputer expects)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return float("nan")
    return str(value)


def prepare_features(frame: pd.DataFrame, schema_features: Sequence[Mapping[str, Any]], split: str) -> pd.DataFrame:
    """Convert a string DataFrame to the model's input frame (numeric -> float64).

    Args:
        frame: DataFrame holding at least the schema's feature columns.
        schema_features: ``schema["features"]`` list.
        split: split name for error messages.
    Returns:
        DataFrame with the features in schema order: numeric float64 (unparseable ->
        NaN), categorical object dtype (str or NaN).
    Raises:
        TrainingError: a feature column is missing.
    """
    import pandas as pd

    missing = [f["name"] for f in schema_features if f["name"] not in frame.columns]
    if missing:
        raise TrainingError("{} data is missing feature columns: {}".format(split, ", ".join(missing)))
    out = {}
    for feat in schema_features:
        col = frame[feat["name"]]
        if feat["type"] == "numeric":
            out[feat["name"]] = _parse_numeric(col).astype("float64")
        else:
            out[feat["name"]] = col.map(_as_category).astype(object)
    return pd.DataFrame(out, columns=[f["name"] for f in schema_features])


def build_schema(
    train: pd.DataFrame,
    target: str,
    problem_type: str,
    labels: list[str] | None,
    *,
    typed: pd.DataFrame | None = None,
    exclude: Mapping[str, str] | None = None,
    missing_features: str = "impute",
) -> Schema:
    """Build the schema.json document from the training split.

    Args:
        train: training DataFrame of strings (features + target).
        target: label column name.
        problem_type: binary|multiclass|regression.
        labels: sorted string labels (classifiers) or None.
        typed: the rows the feature types are decided on (every split of the job, as ValidateData
            decided them on the whole file); default ``train``.
        exclude: columns that are not features, ``{name: reason}`` (recorded as ``excluded``).
        missing_features: the API's policy for a missing feature (``impute`` | ``reject``).
    Returns:
        dict ``{"schema_version", "target", "problem_type", "labels", "features",
        "feature_order", "excluded", "missing_features"}`` (see ``sagepipe_core.schema`` for the shape).
        ``nullable``: the train split has a missing value (or a stray text, read as missing) there.
    Raises:
        TrainingError: an excluded column is not in the data.
    """
    exclude = dict(exclude or {})
    absent = sorted(set(exclude) - set(train.columns))
    if absent:
        raise TrainingError("exclude_columns names columns the data does not have: {}".format(", ".join(absent)))
    feature_order = [c for c in train.columns if c != target and c not in exclude]
    types = infer_feature_types(train if typed is None else typed, feature_order)
    features = []
    for name in feature_order:
        col = train[name]
        entry: dict[str, Any] = {"name": name, "type": types[name], "nullable": bool(col.isna().any())}
        if types[name] == "numeric":
            parsed = _parse_numeric(col)
            entry["nullable"] = bool(parsed.isna().any())
            entry["min"] = None if parsed.notna().sum() == 0 else float(parsed.min())
            entry["max"] = None if parsed.notna().sum() == 0 else float(parsed.max())
        else:
            entry["categories"] = sorted({str(v) for v in col.dropna()})
        features.append(entry)
    return {
        "schema_version": SCHEMA_VERSION,
        "target": target,
        "problem_type": problem_type,
        "labels": labels,
        "features": features,
        "feature_order": feature_order,
        "excluded": [{"name": name, "reason": reason} for name, reason in exclude.items()],
        "missing_features": missing_features,
    }


def _target_values(frame: pd.DataFrame, target: str, problem_type: str, split: str) -> NDArray[Any]:
    if target not in frame.columns:
        raise TrainingError(f"{split} data has no target column {target!r} (columns: {list(frame.columns)})")
    col = frame[target]
    missing = int(col.isna().sum() + (col.dropna().str.strip() == "").sum())
    if missing:
        raise TrainingError(
            f"{split} data has {missing} rows with a missing label in column {target!r} "
            "(empty or a missing-value token such as NA)"
        )
    if problem_type == "regression":
        parsed = _parse_numeric(col)
        bad = col[parsed.isna()]
        if len(bad):
            raise TrainingError(f"{split} target {target!r} is not numeric for regression (e.g. {bad.iloc[0]!r})")
        result: NDArray[Any] = parsed.to_numpy(dtype=float)
        return result
    labels: NDArray[Any] = col.str.strip().to_numpy(dtype=object)
    return labels


def _infer_problem_type(train: pd.DataFrame, target: str) -> str:
    col = train[target].dropna().str.strip()
    parsed = _parse_numeric(col)
    n_unique = col.nunique()
    if parsed.notna().all() and n_unique > 20:
        return "regression"
    return "binary" if n_unique == 2 else "multiclass"


def resolve_labels(problem_type: str, ys: Mapping[str, NDArray[Any]]) -> list[str] | None:
    """The sorted class labels of the train split (None for regression).

    Raises:
        TrainingError: a binary problem without exactly 2 labels, a multiclass one with fewer than 2, or
            validation/test labels that train does not have.
    """
    if problem_type == "regression":
        return None
    labels = sorted({str(v) for v in ys["train"]})
    if problem_type == "binary" and len(labels) != 2:
        raise TrainingError(f"binary problem needs exactly 2 labels in train, found {len(labels)}: {labels}")
    if problem_type == "multiclass" and len(labels) < 2:
        raise TrainingError(f"multiclass problem needs at least 2 labels in train, found {labels}")
    for split in ("validation", "test"):
        if split in ys:
            unseen = sorted({str(v) for v in ys[split]} - set(labels))
            if unseen:
                raise TrainingError(f"{split} data has labels not present in train: {unseen}")
    return labels


# --------------------------------------------------------------------------------------
# Model and metrics
# --------------------------------------------------------------------------------------
def _safe(fn: Callable[[], Any]) -> float:
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(fn())
    except Exception:
        return float("nan")


def _regression_metrics(y_true: NDArray[Any], predicted: NDArray[Any]) -> dict[str, Callable[[], float]]:
    import numpy as np
    from sklearn import metrics as skm

    pred = np.asarray(predicted, dtype=float)
    y = np.asarray(y_true, dtype=float)
    return {
        "rmse": lambda: math.sqrt(skm.mean_squared_error(y, pred)),
        "mae": lambda: skm.mean_absolute_error(y, pred),
        "r2": lambda: skm.r2_score(y, pred) if len(y) > 1 else float("nan"),
    }


def _classifier_metrics(
    problem_type: str, labels: list[str], y_true: NDArray[Any], proba: NDArray[Any]
) -> dict[str, Callable[[], float]]:
    import numpy as np
    from sklearn import metrics as skm

    y = np.asarray(y_true, dtype=object).astype(str)
    pred = np.asarray(labels, dtype=object)[proba.argmax(axis=1)].astype(str)
    out: dict[str, Callable[[], float]] = {}
    if problem_type == "binary":
        pos = labels[1]
        out["auc"] = lambda: skm.roc_auc_score((y == pos).astype(int), proba[:, 1])
        out["accuracy"] = lambda: skm.accuracy_score(y, pred)
        out["f1"] = lambda: skm.f1_score(y, pred, pos_label=pos, average="binary", zero_division=0)
    else:
        out["macro_f1"] = lambda: skm.f1_score(y, pred, labels=labels, average="macro", zero_division=0)
        out["accuracy"] = lambda: skm.accuracy_score(y, pred)
    out["logloss"] = lambda: skm.log_loss(y, proba, labels=labels)
    return out


def predictions(problem_type: str, labels: list[str] | None, model: Any, X: pd.DataFrame) -> NDArray[Any]:
    """What the metrics are computed from: ``predict_proba`` with columns in ``labels`` order (classifiers)
    or ``predict`` as floats (regression); shape (n, len(labels)) or (n,)."""
    import numpy as np

    if problem_type == "regression":
        values: NDArray[Any] = np.asarray(model.predict(X), dtype=float)
        return values
    classes = [str(c) for c in model.classes_]
    order = [classes.index(lbl) for lbl in labels or []]  # align probability columns to the schema label order
    proba: NDArray[Any] = np.asarray(model.predict_proba(X), dtype=float)[:, order]
    return proba


def metrics_from_predictions(
    problem_type: str,
    labels: list[str] | None,
    y_true: NDArray[Any],
    predicted: NDArray[Any],
    names: Sequence[str] | None = None,
) -> Metrics:
    """:func:`compute_metrics` from :func:`predictions`; ``names`` limits the metrics computed (the
    candidates' bootstrap re-scores one metric many times). Undefined metrics are NaN."""
    if len(y_true) == 0:
        return {name: float("nan") for name in METRIC_NAMES[problem_type]}
    if problem_type == "regression":
        table = _regression_metrics(y_true, predicted)
    elif labels is None:
        raise TrainingError(f"{problem_type} metrics need the class labels")
    else:
        table = _classifier_metrics(problem_type, labels, y_true, predicted)
    return {name: _safe(fn) for name, fn in table.items() if names is None or name in names}


def compute_metrics(
    problem_type: str, labels: list[str] | None, y_true: NDArray[Any], model: Any, X: pd.DataFrame
) -> Metrics:
    """Score a fitted pipeline on one split.

    Args:
        problem_type: binary|multiclass|regression.
        labels: sorted string labels (classifiers) or None.
        y_true: array of str labels (classifiers) or floats (regression).
        model: fitted pipeline (predict / predict_proba).
        X: prepared feature DataFrame.
    Returns:
        dict metric name -> float (NaN when undefined, e.g. AUC with one class), the names of
        ``sagepipe_contract.METRIC_NAMES[problem_type]``.
        binary: auc, accuracy, f1 (positive class ``labels[1]``), logloss;
        multiclass: macro_f1, accuracy, logloss; regression: rmse, mae, r2.
    """
    if len(y_true) == 0:
        return {name: float("nan") for name in METRIC_NAMES[problem_type]}
    if problem_type != "regression" and labels is None:
        raise TrainingError(f"{problem_type} metrics need the class labels")
    return metrics_from_predictions(problem_type, labels, y_true, predictions(problem_type, labels, model, X))


def format_metric_line(split: str, name: str, value: float) -> str:
    """Return the exact metric log line ``[metric] <split>:<name>=<repr(float)>``.

    NaN is rendered as ``nan`` (``repr(float('nan'))``).
    """
    return f"[metric] {split}:{name}={float(value)!r}"


def _json_metrics(metrics: Mapping[str, float]) -> dict[str, float | None]:
    """NaN/inf -> None so evaluation.json stays strict JSON."""
    return {k: (v if isinstance(v, float) and math.isfinite(v) else None) for k, v in metrics.items()}


# --------------------------------------------------------------------------------------
# Champion
# --------------------------------------------------------------------------------------
def _find_champion_archive(channel_dir: str) -> str | None:
    for root, _dirs, names in os.walk(channel_dir):
        if MODEL_ARCHIVE in names:
            return os.path.join(root, MODEL_ARCHIVE)
    return None


def compare_schemas(champion: Mapping[str, Any], challenger: Mapping[str, Any]) -> list[str]:
    """List incompatibilities between a champion schema and the challenger's.

    Args:
        champion, challenger: schema.json dicts.
    Returns:
        list of human-readable differences (empty = compatible). Compared:
        schema_version, target, problem_type, labels, feature names and types.
    """
    diffs = []
    if champion.get("schema_version") != challenger["schema_version"]:
        diffs.append("schema_version {!r} != {!r}".format(champion.get("schema_version"), challenger["schema_version"]))
    for key in ("target", "problem_type", "labels"):
        if champion.get(key) != challenger[key]:
            diffs.append(f"{key} differs: champion {champion.get(key)!r}, challenger {challenger[key]!r}")
    champ_types = {f["name"]: f["type"] for f in champion.get("features", [])}
    chall_types = {f["name"]: f["type"] for f in challenger["features"]}
    only_champ = sorted(set(champ_types) - set(chall_types))
    only_chall = sorted(set(chall_types) - set(champ_types))
    if only_champ:
        diffs.append("features only in champion: {}".format(", ".join(only_champ)))
    if only_chall:
        diffs.append("features only in challenger: {}".format(", ".join(only_chall)))
    for name in sorted(set(champ_types) & set(chall_types)):
        if champ_types[name] != chall_types[name]:
            diffs.append(f"feature {name} type differs: champion {champ_types[name]}, challenger {chall_types[name]}")
    return diffs


DIFF_LISTED = 50  # feature names per list in schema_diff (evaluation.json travels in the pipeline's state)


def schema_diff(champion: Mapping[str, Any], challenger: Mapping[str, Any]) -> dict[str, Any] | None:
    """The change of the feature set from the champion to the challenger: a change of the API contract.

    Args:
        champion, challenger: schema.json dicts.
    Returns:
        None when the features (names and types) are the same; else ``{"added": [name], "removed":
        [name], "retyped": [{"name", "champion", "challenger"}], "counts": {"added", "removed",
        "retyped"}}`` (sorted; each list at most :data:`DIFF_LISTED` long, ``counts`` has the totals).
        Clients that send the champion's features get ``missing_feature`` for an added one (unless
        training saw it missing), ``unknown_feature`` for a removed one, ``wrong_type`` for a retyped one.
    """
    champ_types = {f["name"]: f["type"] for f in champion.get("features", [])}
    chall_types = {f["name"]: f["type"] for f in challenger["features"]}
    added = sorted(set(chall_types) - set(champ_types))
    removed = sorted(set(champ_types) - set(chall_types))
    retyped = [
        {"name": n, "champion": champ_types[n], "challenger": chall_types[n]}
        for n in sorted(set(champ_types) & set(chall_types))
        if champ_types[n] != chall_types[n]
    ]
    if not (added or removed or retyped):
        return None
    return {
        "added": added[:DIFF_LISTED],
        "removed": removed[:DIFF_LISTED],
        "retyped": retyped[:DIFF_LISTED],
        "counts": {"added": len(added), "removed": len(removed), "retyped": len(retyped)},
    }


def scoring_blockers(
    champion: Mapping[str, Any], challenger: Mapping[str, Any], test_columns: Sequence[str]
) -> list[str]:
    """Why the champion cannot be scored on the challenger's test split (empty: it can).

    The champion is scored whenever the test split holds its features (a superset: new columns are
    fine) and the prediction task is the same: ``schema_version``, ``target``, ``problem_type`` and
    ``labels`` equal. A feature whose type changed is still scored (the champion parses the column its
    own way, as its API does).
    """
    diffs = [d for d in compare_schemas(champion, challenger) if not d.startswith(("features only", "feature "))]
    missing = sorted({f["name"] for f in champion.get("features", [])} - set(test_columns))
    if missing:
        diffs.append("features only in champion: {} (not in the new test split)".format(", ".join(missing)))
    return diffs


def training_rows(manifest_path: str | None, test_frame: pd.DataFrame) -> tuple[NDArray[Any] | None, str]:
    """Which test rows trained the champion, from its split manifest (``split_manifest.json``).

    Args:
        manifest_path: the manifest inside the champion's artifact, or None (it has none).
        test_frame: the test DataFrame of strings.
    Returns:
        ``(mask, lineage)``: ``mask[i]`` is True where test row ``i``'s identity over the manifest's
        columns (``sagepipe_contract.row_identity`` of the manifest's version) is one of the champion's train or validation rows
        (None when that cannot be known), and a sentence saying how it was found or why not.
    """
    import numpy as np

    if manifest_path is None:
        return None, "unknown: the champion's artifact has no split manifest (trained before manifests)"
    try:
        columns, ids, version = read_manifest(manifest_path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"unknown: the champion's split manifest is unreadable ({type(exc).__name__}: {exc})"
    absent = [c for c in columns if c not in test_frame.columns]
    if absent:
        return None, "unknown: the new data lacks the champion's column(s) {}".format(", ".join(absent[:10]))
    names = sorted(columns)
    rows = test_frame[names].itertuples(index=False, name=None)
    found = (row_identity(names, values, version) in ids for values in rows)  # the manifest's own identity
    mask = np.fromiter(found, dtype=bool, count=len(test_frame))
    return mask, f"the champion's split manifest ({len(ids)} train/validation row identities)"


def score_champion(
    channel_dir: str | None, schema: Schema, test_frame: pd.DataFrame | None, challenger: Any = None
) -> ChampionResult:
    """Score the current champion model on the challenger's test split, minus the rows it trained on.

    Args:
        channel_dir: ``SM_CHANNEL_CHAMPION`` or None.
        schema: the challenger's schema dict.
        test_frame: test DataFrame of strings (or None when there is no test split).
        challenger: the fitted challenger pipeline; when given it is scored on the same rows as the
            champion (``challenger_metrics``), so the gate compares the two on one set of rows.
    Returns:
        :class:`ChampionResult`: ``{"status": "absent"|"scored"|"incompatible"|"error", "reason": str|None,
        "metrics": {"test": {...}} | None}`` (metrics as floats, NaN kept); with a champion also
        ``schema_diff`` (:func:`schema_diff`), and when scored ``rows_scored``, ``overlap`` (test rows left
        out because the champion's split manifest lists them; None when unknown), ``lineage`` and
        ``challenger_metrics``. Never raises.
    """
    if not channel_dir:
        return {"status": "absent", "reason": None, "metrics": None}
    try:
        archive = _find_champion_archive(channel_dir) if os.path.isdir(channel_dir) else None
        if archive is None:
            return {
                "status": "absent",
                "reason": f"champion channel {channel_dir} has no {MODEL_ARCHIVE}",
                "metrics": None,
            }
        import joblib

        with tempfile.TemporaryDirectory(prefix="champion-") as tmp:
            safe_extract(archive, tmp)
            with open(os.path.join(tmp, SCHEMA_FILE)) as fh:
                champ_schema = check_schema(json.load(fh))
            diff = schema_diff(champ_schema, schema)
            columns = list(test_frame.columns) if test_frame is not None else []
            blockers = scoring_blockers(champ_schema, schema, columns)
            if blockers:
                return {"status": "incompatible", "reason": "; ".join(blockers), "metrics": None, "schema_diff": diff}
            if test_frame is None:
                return {
                    "status": "error",
                    "reason": "no test split to score the champion on",
                    "metrics": None,
                    "schema_diff": diff,
                }
            manifest = os.path.join(tmp, SPLIT_MANIFEST_FILE)
            trained, lineage = training_rows(manifest if os.path.isfile(manifest) else None, test_frame)
            champ_model = joblib.load(os.path.join(tmp, MODEL_FILE))
        frame = test_frame if trained is None else test_frame[~trained]
        overlap = None if trained is None else int(trained.sum())
        if len(frame) == 0:
            return {
                "status": "error",
                "reason": f"all {len(test_frame)} test rows trained the champion ({lineage}): nothing to score it on",
                "metrics": None,
                "rows_scored": 0,
                "overlap": overlap,
                "lineage": lineage,
                "schema_diff": diff,
            }
        y = _target_values(frame, schema["target"], schema["problem_type"], "test")
        X = prepare_features(frame, champ_schema["features"], "test")
        metrics = compute_metrics(schema["problem_type"], schema["labels"], y, champ_model, X)
        curves = diagnostics.model_curves(schema["problem_type"], schema["labels"], y, champ_model, X)
        same_rows = None
        if challenger is not None:
            X_new = prepare_features(frame, schema["features"], "test")
            same_rows = {"test": compute_metrics(schema["problem_type"], schema["labels"], y, challenger, X_new)}
        return {
            "status": "scored",
            "reason": None,
            "metrics": {"test": metrics},
            "curves": curves,
            "challenger_metrics": same_rows,
            "rows_scored": len(frame),
            "overlap": overlap,
            "lineage": lineage,
            "schema_diff": diff,
        }
    except Exception as exc:
        return {"status": "error", "reason": f"{type(exc).__name__}: {exc}", "metrics": None}


# --------------------------------------------------------------------------------------
# The job's steps: prepare -> fit -> evaluate -> write artifacts
# --------------------------------------------------------------------------------------
class PreparedData:
    """The splits of one job, checked and converted for the model (what :func:`prepare` returns).

    Attributes:
        frames: split -> DataFrame of strings as read (None for an absent optional channel).
        ys: split -> target values (str labels or floats) of each present split.
        Xs: split -> feature DataFrame (:func:`prepare_features`) of each present split.
        schema: the ``schema.json`` document inferred from the train split.
    """

    def __init__(
        self,
        frames: dict[str, pd.DataFrame | None],
        ys: dict[str, NDArray[Any]],
        Xs: dict[str, pd.DataFrame],
        schema: Schema,
    ) -> None:
        self.frames = frames
        self.ys = ys
        self.Xs = Xs
        self.schema = schema

    @property
    def problem_type(self) -> str:
        return str(self.schema["problem_type"])

    @property
    def labels(self) -> list[str] | None:
        labels: list[str] | None = self.schema["labels"]
        return labels


def prepare(cfg: TrainConfig, environ: Mapping[str, str]) -> PreparedData:
    """Read the channels, settle the problem type and labels, infer the schema, build the model inputs.

    Raises:
        TrainingError: missing channel, target column or labels, no rows, unseen labels, bad values.
    """
    import pandas as pd

    target = cfg["target"]
    frames = read_splits(environ)
    train_df = frames["train"]
    if train_df is None:  # read_splits always reads train; this keeps the type checker informed
        raise TrainingError("train data is missing")
    if target not in train_df.columns:
        raise TrainingError(f"train data has no target column {target!r} (columns: {list(train_df.columns)})")
    if len(train_df) == 0:
        raise TrainingError("train data has no rows")
    problem_type = cfg["problem_type"] or _infer_problem_type(train_df, target)
    present = {split: frame for split, frame in frames.items() if frame is not None}
    ys = {split: _target_values(frame, target, problem_type, split) for split, frame in present.items()}
    labels = resolve_labels(problem_type, ys)
    typed = pd.concat(list(present.values()), ignore_index=True) if len(present) > 1 else train_df
    schema = build_schema(
        train_df,
        target,
        problem_type,
        labels,
        typed=typed,
        exclude=cfg["exclude_columns"],
        missing_features=cfg["missing_features"],
    )
    Xs = {split: prepare_features(frame, schema["features"], split) for split, frame in present.items()}
    return PreparedData(frames, ys, Xs, schema)


def fit(data: PreparedData, cfg: TrainConfig) -> tuple[Any, float, dict[str, Any]]:
    """Fit the candidates on the train split and choose one on the validation split (``candidates.py``).

    Returns:
        ``(chosen fitted pipeline, fit seconds of all candidates, selection)``; selection is
        ``evaluation.json`` ``model_selection`` (:func:`candidates.fit_and_select`), metrics JSON-safe.
    Raises:
        TrainingError: a ``selection_metric`` the problem type does not report, or no feature columns.
    """
    schema = data.schema
    numeric = sum(f["type"] == "numeric" for f in schema["features"])
    if not schema["features"]:
        raise TrainingError("no feature columns besides the target")
    print(
        f"training {data.problem_type} model on {len(data.Xs['train'])} rows, {len(schema['features'])} features "
        f"({numeric} numeric, {len(schema['features']) - numeric} categorical), candidates={','.join(cfg['candidates'])} "
        f"gbm params={json.dumps(cfg['model_params'])} seed={cfg['seed']}",
        flush=True,
    )
    problem_type, labels = data.problem_type, data.labels

    scoring = candidates.Scoring(
        predict=lambda pipeline, X: predictions(problem_type, labels, pipeline, X),
        metrics=lambda y, predicted, names=None: metrics_from_predictions(problem_type, labels, y, predicted, names),
        problem_type=problem_type,
        labels=labels,
    )

    splits: dict[str, tuple[pd.DataFrame, NDArray[Any]]] = {
        s: (data.Xs[s], data.ys[s]) for s in ("train", "validation") if s in data.Xs
    }
    fit_start = time.time()
    try:
        pipeline, selection = candidates.fit_and_select(
            schema,
            cfg["model_params"],
            cfg["seed"],
            splits,
            scoring,
            names=cfg["candidates"],
            selection_metric=cfg["selection_metric"],
            patience=cfg["n_iter_no_change"],
            refit=cfg["refit"],
        )
    except candidates.CandidateError as exc:
        raise TrainingError(str(exc)) from exc
    fit_seconds = time.time() - fit_start
    for record in selection["candidates"]:
        if "validation" in record:
            record["validation"] = _json_metrics(record["validation"])
        shown = {k: record.get(k) for k in ("fit_seconds", "iterations", "best_iteration") if k in record}
        print(f"candidate {record['name']}: validation={json.dumps(record.get('validation'))} {shown}", flush=True)
    print(f"model selection: {selection['reason']}", flush=True)
    if selection.get("refit"):
        refit = selection["refit"]
        shown = {k: refit[k] for k in ("rows", "iterations", "fit_seconds") if k in refit}
        print(f"refit {selection['chosen']} on train + validation: {shown}", flush=True)
    return pipeline, fit_seconds, selection


def split_metrics(
    data: PreparedData, pipeline: Any, held_out: Mapping[str, Metrics] | None = None
) -> dict[str, Metrics]:
    """Score the fitted pipeline on every split and print the metric lines; absent splits get ``{}``.

    ``held_out``: split -> metrics to report instead of scoring ``pipeline`` on it (the validation
    metrics of the chosen candidate before its refit on train + validation, which has seen those rows).
    """
    metrics: dict[str, Metrics] = {}
    for split in SPLITS:
        if split not in data.Xs:
            metrics[split] = {}
            continue
        if held_out and split in held_out:
            metrics[split] = {k: float("nan") if v is None else float(v) for k, v in held_out[split].items()}
        else:
            metrics[split] = compute_metrics(data.problem_type, data.labels, data.ys[split], pipeline, data.Xs[split])
        for name, value in metrics[split].items():
            print(format_metric_line(split, name, value), flush=True)
    return metrics


def champion_metrics(data: PreparedData, channel_dir: str | None, pipeline: Any = None) -> ChampionResult:
    """Score the champion (``SM_CHANNEL_CHAMPION``) and the challenger ``pipeline`` on the same rows, print the
    champion's ``champion_test`` metric lines and return the result with JSON-safe metrics."""
    champion = score_champion(channel_dir, data.schema, data.frames["test"], pipeline)
    if champion["status"] == "scored" and champion["metrics"] is not None:
        test_metrics = champion["metrics"]["test"]
        for name, value in test_metrics.items():
            print(format_metric_line("champion_test", name, value), flush=True)
        champion["metrics"] = {"test": _json_metrics(test_metrics)}
        same_rows = champion.get("challenger_metrics")
        if same_rows:
            champion["challenger_metrics"] = {"test": _json_metrics(same_rows["test"])}
    reason = f" ({champion['reason']})" if champion["reason"] else ""
    scored = (
        f" on {champion['rows_scored']} test rows, {champion.get('overlap')} left out; lineage: {champion.get('lineage')}"
        if champion["status"] == "scored"
        else ""
    )
    print(f"champion: {champion['status']}{reason}{scored}", flush=True)
    return champion


def evaluate(
    data: PreparedData, pipeline: Any, champion_channel: str | None, selection: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The evaluation step: metrics of every split and of the champion, as the ``evaluation.json`` document.

    Returns:
        ``{"schema_version", "problem_type", "target", "labels", "rows": {split: int},
        "metrics": {split: {name: float | None}}, "champion": ChampionResult,
        "model_selection": selection | None, "diagnostics": {...}}``.
    """
    metrics = split_metrics(data, pipeline, _held_out(selection))
    champion = champion_metrics(data, champion_channel, pipeline)
    champion_curves = champion.pop("curves", None)
    return {
        "schema_version": SCHEMA_VERSION,
        "problem_type": data.problem_type,
        "target": data.schema["target"],
        "labels": data.labels,
        "rows": {s: len(data.Xs[s]) if s in data.Xs else 0 for s in SPLITS},
        "metrics": {s: _json_metrics(metrics[s]) for s in SPLITS},
        "champion": champion,
        "model_selection": selection,
        "diagnostics": report_data(data, pipeline, champion_curves),
    }


def _held_out(selection: Mapping[str, Any] | None) -> dict[str, Metrics] | None:
    """After a refit on train + validation: ``{"validation": the chosen candidate's pre-refit validation
    metrics}`` (``model_selection``); otherwise None (every split scored with the final model)."""
    if not selection or not selection.get("refit"):
        return None
    chosen = next(r for r in selection["candidates"] if r["name"] == selection["chosen"])
    return {"validation": chosen["validation"]} if "validation" in chosen else None


def report_data(data: PreparedData, pipeline: Any, champion_curves: dict[str, Any] | None) -> dict[str, Any]:
    """``evaluation.json`` ``diagnostics``: the run report's curve data (``diagnostics.py``, bounded size).

    Challenger and champion curves on the test split, permutation importance on the validation split, and
    the data profile (its distributions for the most important features).
    """
    started = time.time()
    problem_type, labels = data.problem_type, data.labels
    challenger = (
        diagnostics.model_curves(problem_type, labels, data.ys["test"], pipeline, data.Xs["test"])
        if "test" in data.Xs
        else None
    )
    importance = (
        diagnostics.permutation(problem_type, pipeline, data.Xs["validation"], data.ys["validation"])
        if "validation" in data.Xs
        else None
    )
    ranked = [f["feature"] for f in (importance or {}).get("features") or []]
    doc = {
        "challenger": challenger,
        "champion": champion_curves,
        "importance": importance,
        "profile": diagnostics.profile(data.frames, dict(data.schema), ranked or None),
    }
    print(f"report data: {time.time() - started:.3f}s", flush=True)
    return doc


def _write_json(path: str, doc: Mapping[str, Any]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(doc, fh, indent=2, sort_keys=False, allow_nan=False)
        fh.write("\n")
    os.replace(tmp, path)


def code_files() -> list[str]:
    """Paths of :data:`sagepipe_contract.CODE_FILES` next to this script (copied into ``code/``).

    Raises:
        TrainingError: one is missing (an incomplete code bundle).
    """
    here = os.path.dirname(os.path.abspath(__file__))
    paths = [os.path.join(here, name) for name in CODE_FILES]
    missing = [os.path.basename(p) for p in paths if not os.path.isfile(p)]
    if missing:
        raise TrainingError(f"{', '.join(missing)} not found next to train.py ({here})")
    return paths


def write_artifacts(
    model_dir: str,
    pipeline: Any,
    schema: Schema,
    evaluation: Mapping[str, Any],
    output_data_dir: str | None,
    manifest_dir: str | None = None,
    statistics: Mapping[str, Any] | None = None,
) -> None:
    """Write ``model.joblib``, ``schema.json``, ``evaluation.json`` and ``code/`` to ``SM_MODEL_DIR``
    (SageMaker tars it to model.tar.gz) and ``evaluation.json`` to ``SM_OUTPUT_DATA_DIR`` when set.

    ``statistics``: the drift baseline (:func:`baseline.statistics`), written as
    ``baseline/statistics.json``.

    ``manifest_dir`` (``SM_CHANNEL_MANIFEST``) holds this run's split manifest: it is copied as
    ``split_manifest.json``, so that this model, once it is the champion, is never scored on its own
    training rows."""
    import joblib

    sources = code_files()
    os.makedirs(model_dir, exist_ok=True)
    joblib.dump(pipeline, os.path.join(model_dir, MODEL_FILE))
    _write_json(os.path.join(model_dir, SCHEMA_FILE), schema)
    _write_json(os.path.join(model_dir, EVALUATION_FILE), evaluation)
    if statistics is not None:
        os.makedirs(os.path.join(model_dir, os.path.dirname(baseline.STATISTICS_FILE)), exist_ok=True)
        _write_json(os.path.join(model_dir, baseline.STATISTICS_FILE), statistics)
    os.makedirs(os.path.join(model_dir, CODE_DIR), exist_ok=True)
    for src in sources:
        shutil.copyfile(src, os.path.join(model_dir, CODE_DIR, os.path.basename(src)))
    if manifest_dir:
        manifest = os.path.join(manifest_dir, SPLIT_MANIFEST_FILE)
        if not os.path.isfile(manifest):
            raise TrainingError(f"manifest channel {manifest_dir} has no {SPLIT_MANIFEST_FILE}")
        shutil.copyfile(manifest, os.path.join(model_dir, SPLIT_MANIFEST_FILE))
    if output_data_dir:
        os.makedirs(output_data_dir, exist_ok=True)
        _write_json(os.path.join(output_data_dir, EVALUATION_FILE), evaluation)


def train(argv: Sequence[str], environ: Mapping[str, str]) -> dict[str, Any]:
    """Run one training job: read channels, fit, evaluate, score champion, write artifacts.

    Args:
        argv: hyperparameter arguments (``sys.argv[1:]``).
        environ: environment mapping with the SM_* variables.
    Returns:
        the evaluation.json dict.
    Raises:
        TrainingError: user-facing problem (bad hyperparameters / data / channels).
        Exception: anything unexpected (main() converts it into a failure file).
    """
    started = time.time()
    cfg = resolve_config(parse_hyperparameters(argv, environ))
    model_dir = environ.get("SM_MODEL_DIR", "/opt/ml/model")
    code_files()  # an incomplete code bundle fails before the fit, not after
    data = prepare(cfg, environ)
    pipeline, fit_seconds, selection = fit(data, cfg)
    evaluation = evaluate(data, pipeline, environ.get("SM_CHANNEL_CHAMPION"), selection)
    write_artifacts(
        model_dir,
        pipeline,
        data.schema,
        evaluation,
        environ.get("SM_OUTPUT_DATA_DIR"),
        environ.get("SM_CHANNEL_MANIFEST"),
        baseline.statistics(data.Xs["train"], data.schema["features"]),
    )
    print(
        f"done: fit {fit_seconds:.3f}s, total {time.time() - started:.3f}s, artifacts in {model_dir}",
        flush=True,
    )
    return evaluation


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------
def failure_path(environ: Mapping[str, str]) -> str | None:
    """Where to write the SageMaker failure message.

    Returns ``SM_OUTPUT_FAILURE`` if set, else ``<SM_OUTPUT_DIR or /opt/ml/output>/failure``
    when that directory exists, else None. (SageMaker reads /opt/ml/output/failure as
    the job's FailureReason: https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo-output.html)
    """
    if environ.get("SM_OUTPUT_FAILURE"):
        return environ["SM_OUTPUT_FAILURE"]
    out_dir = environ.get("SM_OUTPUT_DIR", "/opt/ml/output")
    if os.path.isdir(out_dir):
        return os.path.join(out_dir, "failure")
    return None


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Process entry point. Returns the exit code (0 ok, 1 failure).

    On failure writes the message to :func:`failure_path` and to stderr.
    """
    argv = sys.argv[1:] if argv is None else argv
    environ = os.environ if environ is None else environ
    try:
        train(argv, environ)
        return 0
    except Exception as exc:
        if isinstance(exc, TrainingError):
            message = str(exc)
        else:
            message = f"{type(exc).__name__}: {exc}"
            traceback.print_exc(file=sys.stderr)
        print("ERROR: " + message, file=sys.stderr, flush=True)
        path = failure_path(environ)
        if path:
            try:
                with open(path, "w") as fh:
                    fh.write(message)
            except OSError as write_exc:
                print(f"could not write failure file {path}: {write_exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
