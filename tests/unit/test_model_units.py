"""model/train.py and model/inference.py in-process on small data: the quick counterpart of
test_model_code.py (which runs train.py as SageMaker does, in a subprocess, and is marked ``slow``)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import import_model_module, tar_gz

pytestmark = pytest.mark.unit

train = import_model_module("train")
inference = import_model_module("inference")
contract = import_model_module("sagepipe_contract")


def _write_csv(directory: Path, rows: list[dict[str, Any]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    header = list(rows[0])
    lines = [",".join(header)] + [",".join(str(r[h]) for h in header) for r in rows]
    (directory / "part.csv").write_text("\n".join(lines) + "\n")
    return directory


def _rows(n: int, offset: int = 0) -> list[dict[str, Any]]:
    """A learnable binary problem: label is "yes" when x > 5 (and colour is noise)."""
    return [
        {
            "x": (i * 7 + offset) % 11,
            "colour": ("red", "blue", "green")[i % 3],
            "y": "yes" if (i * 7 + offset) % 11 > 5 else "no",
        }
        for i in range(n)
    ]


@pytest.fixture()
def job(tmp_path: Path) -> dict[str, str]:
    environ = {
        "SM_CHANNEL_TRAIN": str(_write_csv(tmp_path / "train", _rows(120))),
        "SM_CHANNEL_VALIDATION": str(_write_csv(tmp_path / "validation", _rows(30, 1))),
        "SM_CHANNEL_TEST": str(_write_csv(tmp_path / "test", _rows(30, 2))),
        "SM_MODEL_DIR": str(tmp_path / "model"),
        "SM_OUTPUT_DATA_DIR": str(tmp_path / "output" / "data"),
        "SM_OUTPUT_DIR": str(tmp_path / "output"),
    }
    (tmp_path / "output").mkdir()
    return environ


def test_parse_hyperparameters_argv_wins_over_sm_hps() -> None:
    environ = {"SM_HPS": json.dumps({"target": "a", "seed": 3, "max_depth": "4"})}
    hps = train.parse_hyperparameters(["--target", '"b"', "--max_iter=10"], environ)
    assert hps == {"target": "b", "seed": 3, "max_depth": 4, "max_iter": 10}


@pytest.mark.parametrize(
    "argv, environ, message",
    [
        (["target"], {}, "unexpected command-line argument"),
        (["--target"], {}, "--target has no value"),
        ([], {"SM_HPS": "{nope"}, "SM_HPS is not valid JSON"),
        ([], {"SM_HPS": "[1]"}, "SM_HPS must be a JSON object"),
    ],
)
def test_parse_hyperparameters_errors(argv: list[str], environ: dict[str, str], message: str) -> None:
    with pytest.raises(train.TrainingError, match=message):
        train.parse_hyperparameters(argv, environ)


def test_resolve_config_defaults_and_inference_of_problem_type() -> None:
    cfg = train.resolve_config({"target": "y", "problem_type": "auto", "sagemaker_program": "train.py"})
    assert cfg == {
        "target": "y",
        "problem_type": None,
        "seed": 0,
        "model_params": dict(train.MODEL_PARAM_DEFAULTS),
        "candidates": ("linear", "blend", "gbm"),
        "selection_metric": None,
        "n_iter_no_change": 20,
        "refit": False,
        "exclude_columns": {},
        "missing_features": "impute",
    }


@pytest.mark.parametrize(
    "hps, message",
    [
        ({}, "'target'"),
        ({"target": "y", "problem_type": "ranking"}, "problem_type must be one of binary|multiclass|regression"),
        ({"target": "y", "max_iter": 0}, "max_iter must be >= 1, got 0"),
        ({"target": "y", "max_iter": 2.5}, "max_iter must be an integer"),
        ({"target": "y", "max_leaf_nodes": True}, "max_leaf_nodes must be an integer"),
        ({"target": "y", "learning_rate": 0}, "learning_rate must be > 0"),
        ({"target": "y", "learning_rate": "nan"}, "learning_rate must be finite"),
        ({"target": "y", "l2_regularization": -1}, "l2_regularization must be >= 0.0"),
    ],
)
def test_resolve_config_errors(hps: dict[str, Any], message: str) -> None:
    with pytest.raises(train.TrainingError, match=message):
        train.resolve_config(hps)


def test_compare_schemas_lists_every_difference() -> None:
    base = {
        "schema_version": 1,
        "target": "y",
        "problem_type": "binary",
        "labels": ["no", "yes"],
        "features": [{"name": "a", "type": "numeric"}, {"name": "b", "type": "categorical"}],
    }
    other = {
        **base,
        "labels": ["0", "1"],
        "features": [{"name": "a", "type": "categorical"}, {"name": "c", "type": "numeric"}],
    }
    assert train.compare_schemas(base, base) == []
    assert train.compare_schemas(base, other) == [
        "labels differs: champion ['no', 'yes'], challenger ['0', '1']",
        "features only in champion: b",
        "features only in challenger: c",
        "feature a type differs: champion numeric, challenger categorical",
    ]


def test_train_in_process_writes_the_contracts_artifacts(
    job: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    evaluation = train.train(["--target", "y", "--max_iter", "20"], job)
    model_dir = Path(job["SM_MODEL_DIR"])
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "baseline",
        "code",
        "evaluation.json",
        "model.joblib",
        "schema.json",
    ]
    stats = json.loads((model_dir / "baseline" / "statistics.json").read_text())  # the drift baseline
    assert stats["dataset"]["item_count"] > 0 and stats["features"], stats
    assert sorted(p.name for p in (model_dir / "code").iterdir()) == sorted(contract.CODE_FILES)
    assert json.loads((model_dir / "evaluation.json").read_text()) == evaluation
    assert json.loads((Path(job["SM_OUTPUT_DATA_DIR"]) / "evaluation.json").read_text()) == evaluation
    assert evaluation["problem_type"] == "binary" and evaluation["labels"] == ["no", "yes"]  # inferred
    assert evaluation["rows"] == {"train": 120, "validation": 30, "test": 30}
    for split in contract.SPLITS:
        assert tuple(evaluation["metrics"][split]) == contract.METRIC_NAMES["binary"]
    assert evaluation["metrics"]["test"]["accuracy"] == 1.0  # x > 5 is learnable exactly
    assert evaluation["champion"] == {"status": "absent", "reason": None, "metrics": None}
    schema = contract.load_schema(str(model_dir))
    assert {f["name"]: f["type"] for f in schema["features"]} == {"x": "numeric", "colour": "categorical"}
    out = capsys.readouterr().out
    assert f"[metric] test:accuracy={1.0!r}" in out.splitlines()
    assert "champion: absent" in out


def test_train_scores_the_champion_from_its_archive(job: dict[str, str], tmp_path: Path) -> None:
    train.train(["--target", "y", "--max_iter", "20"], job)
    model_dir = Path(job["SM_MODEL_DIR"])
    files = {p.name: p.read_bytes() for p in model_dir.iterdir() if p.is_file()}
    (tmp_path / "champion").mkdir()
    (tmp_path / "champion" / "model.tar.gz").write_bytes(tar_gz(files))
    again = dict(job, SM_CHANNEL_CHAMPION=str(tmp_path / "champion"), SM_MODEL_DIR=str(tmp_path / "model2"))
    evaluation = train.train(["--target", "y", "--max_iter", "20"], again)
    assert evaluation["champion"]["status"] == "scored"
    assert evaluation["champion"]["metrics"]["test"] == evaluation["metrics"]["test"]  # same data, same seed


def test_train_refuses_a_champion_archive_that_escapes(job: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "champion").mkdir()
    (tmp_path / "champion" / "model.tar.gz").write_bytes(tar_gz({"../../escape.json": b"{}"}))
    evaluation = train.train(
        ["--target", "y", "--max_iter", "5"], dict(job, SM_CHANNEL_CHAMPION=str(tmp_path / "champion"))
    )
    assert evaluation["champion"]["status"] == "error"
    assert evaluation["champion"]["reason"].startswith("UnsafeArchiveError: unsafe member")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"SM_CHANNEL_TRAIN": ""}, "SM_CHANNEL_TRAIN is not set"),
        ({"SM_CHANNEL_TEST": "/nonexistent/sagepipe"}, "channel directory /nonexistent/sagepipe does not exist"),
    ],
)
def test_main_writes_the_failure_file(job: dict[str, str], change: dict[str, str], message: str) -> None:
    assert train.main(["--target", "y"], {**job, **change}) == 1
    assert message in (Path(job["SM_OUTPUT_DIR"]) / "failure").read_text()
    assert not (Path(job["SM_MODEL_DIR"]) / "model.joblib").exists()


def test_unseen_validation_label_is_a_training_error(job: dict[str, str], tmp_path: Path) -> None:
    rows = _rows(30, 1)
    rows[0]["y"] = "maybe"
    _write_csv(tmp_path / "validation", rows)
    with pytest.raises(train.TrainingError, match=r"validation data has labels not present in train: \['maybe'\]"):
        train.train(["--target", "y", "--problem_type", "binary"], job)


def test_regression_metrics_are_the_contracts(tmp_path: Path) -> None:
    rows = [{"x": i, "z": ("a", "b")[i % 2], "v": 2.0 * i + 1} for i in range(60)]
    environ = {"SM_CHANNEL_TRAIN": str(_write_csv(tmp_path / "train", rows)), "SM_MODEL_DIR": str(tmp_path / "m")}
    evaluation = train.train(["--target", "v", "--max_iter", "30"], environ)
    assert evaluation["problem_type"] == "regression" and evaluation["labels"] is None  # > 20 numeric values
    assert tuple(evaluation["metrics"]["train"]) == contract.METRIC_NAMES["regression"]
    assert evaluation["metrics"]["train"]["r2"] > 0.9
    assert evaluation["metrics"]["test"] == {} and evaluation["rows"]["test"] == 0


def test_inference_round_trip_in_process(job: dict[str, str]) -> None:
    train.train(["--target", "y", "--max_iter", "20"], job)
    model = inference.model_fn(job["SM_MODEL_DIR"])
    body = "x,colour\n9,red\n1,NA\n"  # header detected; NA is missing (a pandas default NA token)
    preds = inference.predict_fn(inference.input_fn(body.encode(), "text/csv"), model)
    assert [p["label"] for p in preds] == ["yes", "no"]
    assert all(math.isclose(sum(p["probabilities"].values()), 1.0) for p in preds)
    records = inference.input_fn(json.dumps({"instances": [{"colour": "blue", "x": "7"}]}), "application/json")
    assert inference.predict_fn(records, model)[0]["label"] == "yes"
    assert inference.output_fn(preds, "text/csv") == ("yes\nno\n", "text/csv")


def test_model_fn_rejects_an_unknown_schema_version(job: dict[str, str]) -> None:
    train.train(["--target", "y", "--max_iter", "5"], job)
    path = Path(job["SM_MODEL_DIR"]) / "schema.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "schema_version": 2}))
    with pytest.raises(ValueError, match="unsupported schema_version 2"):
        inference.model_fn(job["SM_MODEL_DIR"])


@pytest.mark.parametrize(
    "value, expected",
    [(None, "nan"), ("NA", "nan"), (" 2.5 ", 2.5), (3, 3.0), ("null", "nan")],
)
def test_numeric_values(value: object, expected: object) -> None:
    result = inference._numeric(value, "row 1")
    assert math.isnan(result) if expected == "nan" else result == expected


@pytest.mark.parametrize("value, message", [(True, "boolean"), ("abc", "expected a number"), ("inf", "infinite")])
def test_numeric_errors(value: object, message: str) -> None:
    with pytest.raises(inference.InputError, match=message):
        inference._numeric(value, "row 1")
