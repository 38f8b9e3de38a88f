"""model/candidates.py: the candidate set, its selection on the validation split and the GBM's early stopping
on the validation channel (issue 11 item 8). The quality table against scikit-learn's defaults is
``bench/model_quality.py`` (not a test)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sagepipe_core.config import HIGHER_IS_BETTER
from tests.conftest import import_model_module

pytestmark = pytest.mark.unit

train = import_model_module("train")
inference = import_model_module("inference")
candidates = import_model_module("candidates")
contract = import_model_module("sagepipe_contract")


def _record(name: str, value: float | None, gap_se: float, metric: str = "auc") -> dict[str, Any]:
    return {"name": name, "validation": {metric: value}, "gap_se": gap_se}


def test_choose_takes_the_better_model_when_it_wins_by_more_than_the_noise() -> None:
    records = [_record("linear", 0.80, 0.01), _record("gbm", 0.90, 0.0)]
    assert candidates.choose(records, "auc") == {"chosen": 1, "best": 1, "runner_up": 0}


def test_choose_keeps_the_simpler_model_within_one_standard_error() -> None:
    records = [_record("linear", 0.89, 0.02), _record("gbm", 0.90, 0.0)]
    assert candidates.choose(records, "auc") == {"chosen": 0, "best": 1, "runner_up": 1}
    # just outside the standard error of the difference: the better one
    assert candidates.choose([_record("linear", 0.879, 0.02), _record("gbm", 0.90, 0.0)], "auc")["chosen"] == 1


def test_choose_follows_the_metric_direction_and_skips_undefined_scores() -> None:
    rmse = [_record("linear", 12.0, 0.5, "rmse"), _record("gbm", 10.0, 0.1, "rmse"), _record("x", 9.95, 0.0, "rmse")]
    assert candidates.choose(rmse, "rmse") == {"chosen": 1, "best": 2, "runner_up": 2}  # gbm: 0.05 behind, se 0.1
    nan = [_record("linear", float("nan"), 0.0), _record("gbm", 0.7, 0.0)]
    assert candidates.choose(nan, "auc")["chosen"] == 1
    none = [_record("linear", None, 0.0), _record("gbm", None, 0.0)]
    assert candidates.choose(none, "auc") == {"chosen": 0, "best": None, "runner_up": 1}


def test_choose_takes_the_better_model_when_the_guard_says_the_simpler_one_is_clearly_worse() -> None:
    def rec(name: str, auc: float, logloss: float, gap_se: float, guard_se: float) -> dict[str, Any]:
        return {
            "name": name,
            "validation": {"auc": auc, "logloss": logloss},
            "gap_se": gap_se,
            "guard_gap_se": guard_se,
        }

    # within the AUC's noise and within the log loss's: the simpler one
    close = [rec("linear", 0.89, 0.30, 0.02, 0.05), rec("gbm", 0.90, 0.28, 0.0, 0.0)]
    assert candidates.choose(close, "auc", "logloss")["chosen"] == 0
    # within the AUC's noise but clearly worse log loss: the better one
    worse = [rec("linear", 0.89, 0.40, 0.02, 0.05), rec("gbm", 0.90, 0.28, 0.0, 0.0)]
    assert candidates.choose(worse, "auc", "logloss") == {"chosen": 1, "best": 1, "runner_up": 0}
    assert candidates.choose(worse, "auc")["chosen"] == 0  # without the guard: the simpler one


def test_the_guard_compares_with_the_candidate_best_on_the_guard() -> None:
    def rec(name: str, f1: float, logloss: float, gap_se: float, guard_se: float) -> dict[str, Any]:
        return {
            "name": name,
            "validation": {"macro_f1": f1, "logloss": logloss},
            "gap_se": gap_se,
            "guard_gap_se": guard_se,
        }

    # linear is within the macro-F1 noise of the gbm and better calibrated than it, but clearly worse
    # calibrated than the blend: the blend (also within the noise of the gbm) is chosen, not linear
    records = [
        rec("linear", 0.52, 0.87, 0.06, 0.01),
        rec("blend", 0.56, 0.82, 0.04, 0.0),
        rec("gbm", 0.58, 0.91, 0.0, 0.02),
    ]
    assert candidates.choose(records, "macro_f1", "logloss") == {"chosen": 1, "best": 2, "runner_up": 2}
    # linear within the log loss noise of the blend as well: the simplest
    records[0]["guard_gap_se"] = 0.06
    assert candidates.choose(records, "macro_f1", "logloss")["chosen"] == 0


def test_resampled_metrics_are_scikit_learns(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for problem_type, labels in (("binary", ["a", "b"]), ("multiclass", ["a", "b", "c", "d"]), ("regression", None)):
        names = sorted(candidates.FAST_METRICS[problem_type])
        assert set(names) <= set(contract.METRIC_NAMES[problem_type])
        for _ in range(10):
            n = 40
            if labels is None:
                y: Any = rng.normal(size=n)
                pred = y + rng.normal(size=n)
            else:  # rounded probabilities: ties in the AUC's ranks and in argmax
                y = rng.choice(labels, n)
                pred = rng.dirichlet(np.ones(len(labels)), n).round(1) + 1e-3
                pred = pred / pred.sum(axis=1, keepdims=True)
            idx = rng.integers(0, n, n)
            expected = train.metrics_from_predictions(problem_type, labels, y[idx], pred[idx], names)
            encoded = candidates._encode(problem_type, labels, y, pred)
            got = candidates.resampled_metrics(problem_type, len(labels or []), encoded, idx, names)
            assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)
    # undefined where scikit-learn's is: one class in the resample
    encoded = candidates._encode("binary", ["a", "b"], np.array(["a", "b"]), np.array([[0.6, 0.4], [0.3, 0.7]]))
    assert math.isnan(candidates.resampled_metrics("binary", 2, encoded, np.array([0, 0]), ["auc"])["auc"])


def test_the_blend_averages_its_members_and_is_served(tmp_path: Path) -> None:
    import joblib

    environ = _job(tmp_path, _xor_rows, sizes=(300, 100, 100))
    train.train(["--target", "y", "--model", "linear,gbm"], environ)
    data = _prepared(tmp_path / "again", *(_xor_rows(np.random.default_rng(0), n) for n in (300, 100)))
    X, y = data.Xs["train"], data.ys["train"]
    members = [
        (
            name,
            candidates.fit_candidate(name, data.schema, dict(train.MODEL_PARAM_DEFAULTS, max_iter=30), 0, (X, y), None)[
                0
            ],
        )
        for name in candidates.BLEND_MEMBERS
    ]
    blend = candidates.build_blend("binary", members, y)
    mean = (members[0][1].predict_proba(X) + members[1][1].predict_proba(X)) / 2
    assert np.allclose(blend.predict_proba(X), mean) and list(blend.classes_) == ["no", "yes"]
    assert list(blend.predict(X)) == list(np.array(["no", "yes"])[mean.argmax(axis=1)])
    # scikit-learn's VotingClassifier: model.joblib holds it, inference.py serves it like any pipeline
    joblib.dump(blend, Path(environ["SM_MODEL_DIR"]) / contract.MODEL_FILE)
    loaded = inference.model_fn(environ["SM_MODEL_DIR"])
    body = "a,b,noise\n2,2,0\n2,-2,0\n"
    preds = inference.predict_fn(inference.input_fn(body.encode(), "text/csv"), loaded)
    frame = pd.DataFrame({"a": [2.0, 2.0], "b": [2.0, -2.0], "noise": [0.0, 0.0]})
    expected = blend.predict_proba(frame)
    assert [p["label"] for p in preds] == list(np.array(["no", "yes"])[expected.argmax(axis=1)])
    assert [p["probabilities"]["yes"] for p in preds] == pytest.approx(expected[:, 1].tolist())
    regression = [
        (n, type("Const", (), {"predict": lambda self, X, v=v: np.full(len(X), v)})())
        for n, v in (("linear", 1.0), ("gbm", 3.0))
    ]
    assert candidates.build_blend("regression", regression, np.zeros(2)).predict(X[:2]).tolist() == [2.0, 2.0]


def test_paired_standard_error_is_the_noise_of_the_difference() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(0.8, 0.05, size=(200, 1))
    paired = np.hstack([scores, scores + 0.01 + rng.normal(0, 0.001, size=(200, 1))])  # same rows, same errors
    own, gap = candidates.standard_errors(paired, best=1, n=500)
    assert 0.04 < own[0] < 0.06 and gap[1] == 0.0 and gap[0] < 0.002
    assert candidates.standard_errors(paired[:5], best=1, n=500) == ([0.0, 0.0], [0.0, 0.0])


def test_lower_is_better_agrees_with_the_gate() -> None:
    assert {m for m, higher in HIGHER_IS_BETTER.items() if not higher} == candidates.LOWER_IS_BETTER
    assert set(candidates.PRIMARY_METRIC) == set(contract.METRIC_NAMES)
    for problem_type, metric in candidates.PRIMARY_METRIC.items():
        assert metric in contract.METRIC_NAMES[problem_type]


def _write(directory: Path, frame: pd.DataFrame) -> str:
    directory.mkdir(parents=True)
    frame.to_csv(directory / "part.csv", index=False)
    return str(directory)


def _job(tmp_path: Path, make: Any, sizes: tuple[int, int, int] = (600, 300, 300)) -> dict[str, str]:
    rng = np.random.default_rng(0)
    environ = {"SM_MODEL_DIR": str(tmp_path / "model")}
    for split, n in zip(("train", "validation", "test"), sizes, strict=True):
        environ["SM_CHANNEL_" + split.upper()] = _write(tmp_path / split, make(rng, n))
    return environ


def _linear_rows(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """A linear boundary on 6 features with label noise: logistic regression's home ground."""
    X = rng.normal(size=(n, 6))
    logit = X @ np.array([1.5, -1.0, 0.8, 0.6, -0.4, 0.3])
    y = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    return pd.DataFrame({**{f"x{i}": X[:, i].round(4) for i in range(6)}, "y": y})


def _xor_rows(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """An interaction no linear model can express (XOR of two signs)."""
    X = rng.normal(size=(n, 3))
    y = np.where((X[:, 0] > 0) ^ (X[:, 1] > 0), "yes", "no")
    return pd.DataFrame({"a": X[:, 0].round(4), "b": X[:, 1].round(4), "noise": X[:, 2].round(4), "y": y})


@pytest.mark.parametrize("make, winner, loser", [(_xor_rows, "gbm", "linear"), (_linear_rows, "linear", "gbm")])
def test_the_job_chooses_on_validation_and_records_the_runner_up(
    tmp_path: Path, make: Any, winner: str, loser: str
) -> None:
    evaluation = train.train(["--target", "y"], _job(tmp_path, make))
    selection = evaluation["model_selection"]
    assert selection["metric"] == "validation:auc" and selection["rule"] == "one_standard_error"
    assert selection["chosen"] == winner
    by_name = {c["name"]: c for c in selection["candidates"]}
    assert list(by_name) == list(candidates.CANDIDATES)
    assert by_name["blend"]["family"] == "blend" and by_name["blend"]["params"]["members"] == ["linear", "gbm"]
    # the runner-up: the best of the others by the selection metric
    others = [c for c in selection["candidates"] if c["name"] != winner]
    assert selection["runner_up"] == max(others, key=lambda c: c["validation"]["auc"])["name"]
    assert set(by_name[winner]["validation"]) == set(contract.METRIC_NAMES["binary"])
    gap_se = by_name[winner].get("gap_se", 0.0)
    assert by_name[winner]["validation"]["auc"] >= by_name[loser]["validation"]["auc"] - gap_se
    assert by_name[winner]["validation"]["auc"] > by_name[loser]["validation"]["auc"]
    if selection["best"] == "linear":  # the simplest is the best: no noise estimate needed
        assert "gap_se" not in by_name["linear"]
    else:  # standard errors of the bootstrap: the best's own, the others' differences to it
        assert by_name[selection["best"]]["gap_se"] == 0.0 and by_name["linear"]["gap_se"] > 0
        assert by_name["linear"]["validation_se"] > 0 and by_name["linear"]["guard_gap_se"] > 0
    # the chosen pipeline is the one in model.joblib: its validation metrics are the job's
    assert evaluation["metrics"]["validation"] == by_name[winner]["validation"]
    on_disk = json.loads((Path(tmp_path / "model" / "evaluation.json")).read_text())
    assert on_disk["model_selection"] == selection


def test_the_model_hyperparameter_restricts_the_candidates(tmp_path: Path) -> None:
    evaluation = train.train(["--target", "y", "--model", "gbm"], _job(tmp_path, _linear_rows))
    selection = evaluation["model_selection"]
    assert [c["name"] for c in selection["candidates"]] == ["gbm"]
    assert selection["chosen"] == "gbm" and selection["runner_up"] is None


@pytest.mark.parametrize(
    "hps, message",
    [
        ({"model": "xgboost"}, "hyperparameter model must be auto or a list of linear|blend|gbm"),
        ({"model": "blend,gbm"}, "blend averages linear and gbm, list them too"),
        ({"selection_metric": "gini"}, "selection_metric must be one of"),
        ({"selection_metric": "r2", "problem_type": "binary"}, "selection_metric 'r2' is not reported for binary"),
        ({"n_iter_no_change": 0}, "n_iter_no_change must be >= 1"),
        ({"refit": "maybe"}, "refit must be true or false"),
    ],
)
def test_bad_model_hyperparameters(hps: dict[str, Any], message: str) -> None:
    with pytest.raises(train.TrainingError, match=message):
        train.resolve_config({"target": "y", **hps})


def _prepared(tmp_path: Path, train_rows: pd.DataFrame, validation_rows: pd.DataFrame) -> Any:
    environ = {
        "SM_CHANNEL_TRAIN": _write(tmp_path / "train", train_rows),
        "SM_CHANNEL_VALIDATION": _write(tmp_path / "validation", validation_rows),
    }
    return train.prepare(train.resolve_config({"target": "y", "problem_type": "binary"}), environ)


def test_early_stopping_watches_the_validation_channel(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rows = _xor_rows(rng, 800)
    honest = _xor_rows(rng, 400)
    flipped = honest.assign(y=np.where(honest["y"] == "yes", "no", "yes"))  # validation contradicts train
    params = dict(train.MODEL_PARAM_DEFAULTS)
    patience = 10

    def grown(validation_rows: pd.DataFrame, where: str) -> dict[str, Any]:
        data = _prepared(tmp_path / where, rows, validation_rows)
        _, record = candidates.fit_candidate(
            "gbm",
            data.schema,
            params,
            0,
            (data.Xs["train"], data.ys["train"]),
            (data.Xs["validation"], data.ys["validation"]),
            patience,
        )
        return record

    contradicted = grown(flipped, "flipped")
    assert contradicted["best_iteration"] <= 2  # the validation loss rises from the first iterations on
    assert contradicted["iterations"] == 2 * patience  # grown in steps of `patience`, stopped after the second
    agreeing = grown(honest, "honest")
    assert agreeing["best_iteration"] > 3 * patience
    assert agreeing["iterations"] - agreeing["best_iteration"] < 2 * patience
    assert agreeing["iterations"] < params["max_iter"] or agreeing["best_iteration"] == params["max_iter"]


def test_without_a_validation_channel_the_gbm_grows_to_max_iter(tmp_path: Path) -> None:
    environ = {"SM_CHANNEL_TRAIN": _write(tmp_path / "train", _xor_rows(np.random.default_rng(2), 300))}
    environ["SM_MODEL_DIR"] = str(tmp_path / "model")
    evaluation = train.train(["--target", "y", "--max_iter", "30"], environ)
    selection = evaluation["model_selection"]
    assert selection["chosen"] == "gbm" and selection["best"] is None
    assert selection["reason"] == "no validation split: gbm fitted without a comparison"
    assert selection["candidates"][0]["iterations"] == 30


def _mixed(rng: np.random.Generator, n: int, zips: int) -> pd.DataFrame:
    x = rng.normal(size=n)
    return pd.DataFrame(
        {
            "x": np.where(rng.random(n) < 0.2, np.nan, x.round(3)),
            "zip": [f"Z{v}" for v in rng.integers(0, zips, n)],
            "colour": rng.choice(["red", "blue", "green"], n),
            "y": np.where(x > 0, "yes", "no"),
        }
    )


def test_encodings_stay_small_for_a_high_cardinality_column_and_handle_missing_and_unseen(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    data = _prepared(tmp_path, _mixed(rng, 3000, zips=2500), _mixed(rng, 300, zips=2500))
    schema, X, y = data.schema, data.Xs["train"], data.ys["train"]
    assert len(next(f for f in schema["features"] if f["name"] == "zip")["categories"]) > 1500
    linear, _ = candidates.fit_candidate("linear", schema, {}, 0, (X, y), None)
    encoded = linear.named_steps["preprocess"].transform(X)
    assert hasattr(encoded, "nnz")  # sparse, not a dense rows x categories block
    # x (imputed + indicator) + zip (<= MAX_ONEHOT_CATEGORIES incl. "infrequent") + colour (3)
    assert encoded.shape[1] <= 2 + candidates.MAX_ONEHOT_CATEGORIES + 3
    gbm, _ = candidates.fit_candidate("gbm", schema, dict(train.MODEL_PARAM_DEFAULTS, max_iter=20), 0, (X, y), None)
    assert gbm.named_steps["model"].is_categorical_.tolist() == [False, True, True]
    odd = pd.DataFrame({"x": [np.nan, 1.0], "zip": ["never-seen", np.nan], "colour": [np.nan, "purple"]})
    odd = odd.astype({"zip": object, "colour": object})
    for model in (linear, gbm):
        proba = model.predict_proba(odd)
        assert proba.shape == (2, 2) and np.isfinite(proba).all()


@pytest.mark.parametrize("model", ["linear", "gbm"])
def test_inference_serves_whichever_candidate_won(tmp_path: Path, model: str) -> None:
    environ = _job(tmp_path, _linear_rows, sizes=(300, 100, 100))
    evaluation = train.train(["--target", "y", "--model", model], environ)
    assert evaluation["model_selection"]["chosen"] == model
    loaded = inference.model_fn(environ["SM_MODEL_DIR"])
    body = "x0,x1,x2,x3,x4,x5\n3,-3,1,1,0,0\n-3,3,-1,-1,0,0\n"
    preds = inference.predict_fn(inference.input_fn(body.encode(), "text/csv"), loaded)
    assert [p["label"] for p in preds] == ["yes", "no"]
    assert all(math.isclose(sum(p["probabilities"].values()), 1.0) for p in preds)


def _scaled_rows(pipeline: Any) -> int:
    """Rows the linear pipeline's StandardScaler was fitted on."""
    scaler = pipeline.named_steps["preprocess"].named_transformers_["num"].named_steps["scale"]
    return int(scaler.n_samples_seen_)


@pytest.mark.parametrize("model", ["linear", "gbm"])
def test_the_chosen_candidate_is_refit_on_train_and_validation(tmp_path: Path, model: str) -> None:
    import joblib

    sizes = (300, 200, 100)
    environ = _job(tmp_path, _xor_rows, sizes=sizes)
    evaluation = train.train(["--target", "y", "--model", model, "--refit", "true"], environ)
    selection = evaluation["model_selection"]
    by_name = {c["name"]: c for c in selection["candidates"]}
    refit = selection["refit"]
    assert refit["splits"] == ["train", "validation"] and refit["rows"] == sizes[0] + sizes[1]
    served = joblib.load(Path(environ["SM_MODEL_DIR"]) / "model.joblib")
    members = {selection["chosen"]: served}
    if "gbm" in members:  # a fixed number of iterations: the early-stopped best, on all 500 rows
        gbm = members["gbm"]
        assert gbm.named_steps["model"].n_iter_ == by_name["gbm"]["best_iteration"] == refit["iterations"]
        assert gbm.named_steps["model"].n_iter_ < by_name["gbm"]["iterations"]  # not the grown count
        data = train.prepare(train.resolve_config({"target": "y", "problem_type": "binary"}), environ)
        again = candidates.build_gbm(data.schema, {**train.MODEL_PARAM_DEFAULTS, "max_iter": refit["iterations"]}, 0)
        X = pd.concat([data.Xs["train"], data.Xs["validation"]], ignore_index=True)
        again.fit(X, np.concatenate([data.ys["train"], data.ys["validation"]]).astype(str))
        np.testing.assert_allclose(gbm.predict_proba(data.Xs["test"]), again.predict_proba(data.Xs["test"]))
    if "linear" in members:
        assert _scaled_rows(members["linear"]) == sizes[0] + sizes[1]
    # the validation metrics stay held out: the chosen candidate's before the refit, not the refit model's
    assert evaluation["metrics"]["validation"] == by_name[selection["chosen"]]["validation"]
    loaded = inference.model_fn(environ["SM_MODEL_DIR"])
    preds = inference.predict_fn(inference.input_fn(b"a,b,noise\n1,1,0\n1,-1,0\n", "text/csv"), loaded)
    assert len(preds) == 2 and all(math.isclose(sum(p["probabilities"].values()), 1.0) for p in preds)


@pytest.mark.parametrize("flag", [[], ["--refit", "False"]])
def test_without_refit_the_train_only_fit_is_served(tmp_path: Path, flag: list[str]) -> None:
    import joblib

    environ = _job(tmp_path, _linear_rows, sizes=(300, 200, 100))
    evaluation = train.train(["--target", "y", "--model", "linear", *flag], environ)
    assert evaluation["model_selection"]["refit"] is None
    served = joblib.load(Path(environ["SM_MODEL_DIR"]) / "model.joblib")
    assert _scaled_rows(served) == 300


def test_a_chosen_blend_refits_both_members(tmp_path: Path) -> None:
    data = _prepared(tmp_path, _xor_rows(np.random.default_rng(3), 300), _xor_rows(np.random.default_rng(4), 200))
    params = dict(train.MODEL_PARAM_DEFAULTS)
    split = {s: (data.Xs[s], data.ys[s]) for s in ("train", "validation")}
    records = {
        n: candidates.fit_candidate(n, data.schema, params, 0, split["train"], split["validation"])[1]
        for n in ("linear", "gbm")
    }
    blend = {"name": "blend", "family": "blend", "_members": records}
    X = pd.concat([data.Xs["train"], data.Xs["validation"]], ignore_index=True)
    y = np.concatenate([data.ys["train"], data.ys["validation"]])
    model, info = candidates.refit_candidate(blend, data.schema, params, 0, (X, y))
    assert info["rows"] == 500 and info["iterations"] == records["gbm"]["best_iteration"]
    assert _scaled_rows(model.named_estimators_["linear"]) == 500
    assert model.named_estimators_["gbm"].named_steps["model"].n_iter_ == records["gbm"]["best_iteration"]
    expected = np.mean([m.predict_proba(X) for m in model.estimators_], axis=0)
    np.testing.assert_allclose(model.predict_proba(X), expected)
