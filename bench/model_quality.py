"""Model quality: the pipeline's model (``model/train.py``) against scikit-learn's defaults, on public data.

Run: ``.venv/bin/python bench/model_quality.py [--seeds N (5)] [--only NAME,...] [--refit]`` (about 10 minutes;
``--refit``: the pipeline with hyperparameter ``refit: true``, the chosen candidate refitted on train +
validation, which the defaults still do not see). For each data set and seed
the rows are split 70 / 15 / 15 (stratified for classifiers, ``sklearn.model_selection.train_test_split``),
written as the CSV channels a training job reads, and parsed by ``train.prepare`` (as in the job). Then:

* **pipeline**: ``train.fit`` - every candidate (linear, blend, GBM) fitted on train, one chosen on
  validation (``model/candidates.py``) - scored on test;
* **today**: the single model before this change (median imputation, dense one-hot,
  ``HistGradientBoosting*(max_iter=200)``, no early stopping), on train;
* **HGB default**: ``HistGradientBoosting*()`` with its defaults (native NaN; categorical columns as ordinal
  codes marked ``categorical_features``, except those with more than 255 categories, which native splits
  refuse: they stay plain ordinal codes), on train;
* **linear default**: ``SimpleImputer`` (median / most frequent) + ``StandardScaler`` + ``OneHotEncoder``
  + ``LogisticRegression()`` / ``Ridge()``, on train.

The defaults see the same train rows as the pipeline; only the pipeline uses the validation rows (to
choose and to stop). Test metric = the task's primary metric (binary auc, multiclass macro_f1,
regression r2), the mean over the seeds. Time = fit wall time (OpenMP and BLAS limited to one thread,
``threadpoolctl``, for every model: on shared cores multi-threaded timings are noise) (all candidates for the pipeline) over
today's single GBM's, the mean of the per-seed ratios (scikit-learn's modules imported before any timing). ``churn+zip`` adds a 2,000-value categorical
column of noise to churn and reports peak traced memory (tracemalloc) of the fit, pipeline vs today.

Data sets: scikit-learn's bundled loaders (breast_cancer, iris, wine, digits, diabetes); ``palmerpenguins``
(multiclass with missing cells and categorical columns) and ``vega_datasets`` (cars: regression with
missing cells; seattle-weather: multiclass), both shipping their data in the wheel; and
``/work/shared/data/churn.csv`` (or ``examples/data/churn.csv``). California housing is not bundled
(scikit-learn downloads it), so it is not run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table
from sklearn.model_selection import train_test_split

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "model"))

import train  # noqa: E402 - model/ is put on sys.path first, as the SageMaker container does

PRIMARY = {"binary": "auc", "multiclass": "macro_f1", "regression": "r2"}
REFIT = False  # --refit: the pipeline's ``refit`` hyperparameter (the chosen candidate refitted on train + validation)
CHURN = [Path("/work/shared/data/churn.csv"), ROOT / "examples" / "data" / "churn.csv"]


# --------------------------------------------------------------------------------------
# Data sets: name -> (DataFrame, target, problem_type)
# --------------------------------------------------------------------------------------
def _sklearn(loader: Callable[..., Any], problem_type: str) -> tuple[pd.DataFrame, str, str]:
    frame = loader(as_frame=True).frame
    if problem_type != "regression":
        frame["target"] = frame["target"].astype(str)
    return frame, "target", problem_type


def _churn(zip_values: int = 0) -> tuple[pd.DataFrame, str, str]:
    path = next(p for p in CHURN if p.exists())
    frame = pd.read_csv(path, dtype=str)
    if zip_values:
        rng = np.random.default_rng(7)
        frame.insert(1, "zip", [f"Z{v:05d}" for v in rng.integers(0, zip_values, len(frame))])
    return frame, "churn", "binary"


def _penguins() -> tuple[pd.DataFrame, str, str]:
    import palmerpenguins

    return palmerpenguins.load_penguins(), "species", "multiclass"


def _cars() -> tuple[pd.DataFrame, str, str]:
    from vega_datasets import data

    frame = data.cars().dropna(subset=["Miles_per_Gallon"]).drop(columns=["Name"])
    frame["Year"] = pd.to_datetime(frame["Year"]).dt.year
    return frame, "Miles_per_Gallon", "regression"


def _weather() -> tuple[pd.DataFrame, str, str]:
    from vega_datasets import data

    frame = data.seattle_weather()
    frame["month"] = pd.to_datetime(frame["date"]).dt.month
    return frame.drop(columns=["date"]), "weather", "multiclass"


def datasets() -> dict[str, Callable[[], tuple[pd.DataFrame, str, str]]]:
    from sklearn import datasets as skd

    return {
        "breast_cancer": lambda: _sklearn(skd.load_breast_cancer, "binary"),
        "churn": _churn,
        "iris": lambda: _sklearn(skd.load_iris, "multiclass"),
        "wine": lambda: _sklearn(skd.load_wine, "multiclass"),
        "digits": lambda: _sklearn(skd.load_digits, "multiclass"),
        "penguins": _penguins,
        "seattle_weather": _weather,
        "diabetes": lambda: _sklearn(skd.load_diabetes, "regression"),
        "cars": _cars,
        "churn+zip": lambda: _churn(zip_values=2000),
    }


# --------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------
def _cols(schema: dict[str, Any]) -> tuple[list[str], list[str]]:
    num = [f["name"] for f in schema["features"] if f["type"] == "numeric"]
    cat = [f["name"] for f in schema["features"] if f["type"] == "categorical"]
    return num, cat


def today_pipeline(schema: dict[str, Any], seed: int) -> Any:
    """``train.build_pipeline`` before the candidate set (git show 45efd5f:model/train.py)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    num, cat = _cols(schema)
    steps: list[Any] = []
    if num:
        steps.append(("num", SimpleImputer(strategy="median"), num))
    if cat:
        onehot = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        impute = SimpleImputer(strategy="constant", fill_value="__missing__")
        steps.append(("cat", Pipeline([("impute", impute), ("onehot", onehot)]), cat))
    params = dict(train.MODEL_PARAM_DEFAULTS, random_state=seed)
    est = HistGradientBoostingRegressor if schema["problem_type"] == "regression" else HistGradientBoostingClassifier
    return Pipeline([("preprocess", ColumnTransformer(steps)), ("model", est(**params))])


def hgb_default(schema: dict[str, Any], seed: int) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    num, cat = _cols(schema)
    steps: list[Any] = [("num", "passthrough", num)] if num else []
    if cat:
        enc = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan)
        steps.append(("cat", enc, cat))
    # native categorical splits take at most max_bins (255) categories: wider columns stay ordinal codes
    small = {f["name"] for f in schema["features"] if f["type"] == "categorical" and len(f["categories"]) <= 255}
    mask = [False] * len(num) + [c in small for c in cat]
    est = HistGradientBoostingRegressor if schema["problem_type"] == "regression" else HistGradientBoostingClassifier
    model = est(random_state=seed, categorical_features=mask if any(mask) else None)
    return Pipeline([("preprocess", ColumnTransformer(steps)), ("model", model)])


def linear_default(schema: dict[str, Any], seed: int) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    num, cat = _cols(schema)
    steps: list[Any] = []
    if num:
        steps.append(("num", Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())]), num))
    if cat:
        impute = SimpleImputer(strategy="most_frequent")
        steps.append(("cat", Pipeline([("impute", impute), ("onehot", OneHotEncoder(handle_unknown="ignore"))]), cat))
    model = Ridge() if schema["problem_type"] == "regression" else LogisticRegression(random_state=seed)
    return Pipeline([("preprocess", ColumnTransformer(steps)), ("model", model)])


# --------------------------------------------------------------------------------------
# One data set, one seed
# --------------------------------------------------------------------------------------
def _write(frame: pd.DataFrame, directory: Path) -> str:
    directory.mkdir(parents=True)
    frame.to_csv(directory / "part.csv", index=False)
    return str(directory)


def split_channels(frame: pd.DataFrame, target: str, problem_type: str, seed: int, tmp: Path) -> dict[str, str]:
    strat = frame[target] if problem_type != "regression" else None
    rest, test = train_test_split(frame, test_size=0.15, random_state=seed, stratify=strat)
    strat = rest[target] if problem_type != "regression" else None
    tr, val = train_test_split(rest, test_size=0.15 / 0.85, random_state=seed, stratify=strat)
    return {
        "SM_CHANNEL_TRAIN": _write(tr, tmp / "train"),
        "SM_CHANNEL_VALIDATION": _write(val, tmp / "validation"),
        "SM_CHANNEL_TEST": _write(test, tmp / "test"),
    }


def _test_metric(data: Any, pipeline: Any) -> float:
    metrics = train.compute_metrics(data.problem_type, data.labels, data.ys["test"], pipeline, data.Xs["test"])
    return float(metrics[PRIMARY[data.problem_type]])


def _fit(pipeline: Any, data: Any) -> tuple[Any, float]:
    y = data.ys["train"]
    y = np.asarray(y, dtype=float) if data.problem_type == "regression" else np.asarray(y).astype(str)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline.fit(data.Xs["train"], y)
    return pipeline, time.perf_counter() - started


def _peak_mib(fn: Callable[[], Any]) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def run_one(name: str, frame: pd.DataFrame, target: str, problem_type: str, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"mq-{name}-") as tmp:
        environ = split_channels(frame, target, problem_type, seed, Path(tmp))
        hps = {"target": target, "problem_type": problem_type, "seed": seed, "refit": REFIT}
        cfg = train.resolve_config(hps)
        data = train.prepare(cfg, environ)
    started = time.perf_counter()
    chosen, _, selection = train.fit(data, cfg)
    pipeline_seconds = time.perf_counter() - started
    today, today_seconds = _fit(today_pipeline(data.schema, seed), data)
    result = {
        "pipeline": _test_metric(data, chosen),
        "chosen": selection["chosen"],
        "today": _test_metric(data, today),
        "hgb": _test_metric(data, _fit(hgb_default(data.schema, seed), data)[0]),
        "linear": _test_metric(data, _fit(linear_default(data.schema, seed), data)[0]),
        "ratio": pipeline_seconds / today_seconds,
        "seconds": pipeline_seconds,
        "today_seconds": today_seconds,
        "rows": len(frame),
    }
    if name == "churn+zip" and seed == 0:  # tracemalloc slows the fit: once
        result["peak_mib"] = _peak_mib(lambda: train.fit(data, cfg))
        result["today_peak_mib"] = _peak_mib(lambda: _fit(today_pipeline(data.schema, seed), data))
    return result


def main() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # OpenMP/BLAS on 1 thread for both sides: shared cores make multi-threaded timings noise
    # the model code imports scikit-learn's modules lazily: import them before anything is timed, so the
    # first pipeline fit does not pay the imports that the "today" fit after it would get for free
    import sklearn.compose
    import sklearn.ensemble
    import sklearn.impute
    import sklearn.linear_model
    import sklearn.preprocessing  # noqa: F401

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="splits per data set (seeds 0..N-1)")
    parser.add_argument("--only", default="", help="comma-separated data set names")
    parser.add_argument("--refit", action="store_true", help="pipeline with refit=true (train + validation)")
    args = parser.parse_args()
    global REFIT
    REFIT = args.refit
    sets = datasets()
    names = [n for n in args.only.split(",") if n] or list(sets)
    table = Table(title=f"test metric, mean of {args.seeds} splits (70/15/15); time = fit, pipeline / today")
    for col in ("data set", "task", "rows", "metric", "pipeline", "chosen", "today", "HGB default", "linear default"):
        table.add_column(col, justify="left" if col in ("data set", "task", "metric", "chosen") else "right")
    for col in ("Δ vs best default", "time ratio"):
        table.add_column(col, justify="right")
    notes: list[str] = []
    met = fast = 0
    for name in names:
        frame, target, problem_type = sets[name]()
        runs = [run_one(name, frame, target, problem_type, seed) for seed in range(args.seeds)]

        def mean(key: str, runs: list[dict[str, Any]] = runs) -> float:
            return statistics.fmean(r[key] for r in runs)

        best_default = max(mean("hgb"), mean("linear"))
        met += mean("pipeline") >= best_default - 1e-12
        fast += mean("ratio") <= 2.0
        chosen = ",".join(sorted({r["chosen"] for r in runs}))
        table.add_row(
            name,
            problem_type,
            str(runs[0]["rows"]),
            PRIMARY[problem_type],
            f"{mean('pipeline'):.4f}",
            chosen,
            f"{mean('today'):.4f}",
            f"{mean('hgb'):.4f}",
            f"{mean('linear'):.4f}",
            f"{mean('pipeline') - best_default:+.4f}",
            f"{mean('ratio'):.2f}",
        )
        if "peak_mib" in runs[0]:
            notes.append(
                f"{name}: peak traced memory of the fit {runs[0]['peak_mib']:.1f} MiB (pipeline, all candidates) vs "
                f"{runs[0]['today_peak_mib']:.1f} MiB (today), seed 0"
            )
        notes.append(
            f"{name}: fit {mean('seconds'):.2f}s (pipeline) vs {mean('today_seconds'):.2f}s (today); "
            f"per-seed Δ vs best default "
            + " ".join(f"{r['pipeline'] - max(r['hgb'], r['linear']):+.4f}" for r in runs)
        )
    console = Console(width=200)
    console.print(table)
    console.print(
        f"pipeline >= best default on {met} of {len(names)} data sets; fit time <= 2x today's on {fast} of {len(names)}"
    )
    for note in notes:
        console.print(note)


if __name__ == "__main__":
    main()
