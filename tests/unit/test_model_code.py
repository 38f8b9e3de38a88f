"""model/train.py (run as a subprocess, SageMaker script-mode contract) and model/inference.py."""

from __future__ import annotations

import importlib.util
import io
import json
import math
import os
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import import_model_module

# every test here runs model/train.py in a subprocess (or needs its output): `pytest -m "not slow"` skips them
pytestmark = [pytest.mark.unit, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
TRAIN_PY = REPO / "model" / "train.py"
CHURN = REPO / "examples" / "data" / "churn.csv"
METRIC_LINE = re.compile(r"^\[metric\] (train|validation|test|champion_test):([a-z0-9_]+)=([-+0-9.eE]+|nan)$")


def stratified_split(df: pd.DataFrame, label: str, seed: int = 7):
    """Deterministic 70/15/15 stratified split (per-label shuffle with a fixed seed)."""
    parts = {"train": [], "validation": [], "test": []}
    for _, group in df.groupby(label, sort=True):
        group = group.sample(frac=1.0, random_state=seed)
        n = len(group)
        a, b = int(n * 0.70), int(n * 0.85)
        parts["train"].append(group.iloc[:a])
        parts["validation"].append(group.iloc[a:b])
        parts["test"].append(group.iloc[b:])
    return {k: pd.concat(v).sort_index() for k, v in parts.items()}


def write_splits(root: Path, splits: dict, drop: list[str] = ()) -> dict:
    dirs = {}
    for name, frame in splits.items():
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        frame = frame.drop(columns=list(drop))
        if name == "train":  # two files: the channel must be concatenated
            half = len(frame) // 2
            frame.iloc[:half].to_csv(d / "part-0.csv", index=False)
            frame.iloc[half:].to_csv(d / "part-1.csv", index=False)
        else:
            frame.to_csv(d / f"{name}.csv", index=False)
        dirs[name] = d
    return dirs


def run_train(tmp: Path, channels: dict, hp_args: list[str], champion: Path | None = None, sm_hps: dict | None = None):
    model_dir, out_dir = tmp / "model", tmp / "output"
    (out_dir / "data").mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        {
            "SM_MODEL_DIR": str(model_dir),
            "SM_OUTPUT_DIR": str(out_dir),
            "SM_OUTPUT_DATA_DIR": str(out_dir / "data"),
            "SM_HPS": json.dumps(sm_hps or {}),
        }
    )
    for name, d in channels.items():
        env[f"SM_CHANNEL_{name.upper()}"] = str(d)
    if champion is not None:
        env["SM_CHANNEL_CHAMPION"] = str(champion)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(TRAIN_PY), *hp_args], env=env, capture_output=True, text=True, timeout=120
    )
    return proc, model_dir, out_dir, time.monotonic() - started


def metric_lines(stdout: str) -> dict:
    out = {}
    for line in stdout.splitlines():
        m = METRIC_LINE.match(line)
        if m:
            out[(m.group(1), m.group(2))] = float(m.group(3))
    return out


def make_model_tar(model_dir: Path, dest_dir: Path) -> Path:
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(dest_dir / "model.tar.gz", "w:gz") as tar:
        for child in sorted(model_dir.iterdir()):
            tar.add(child, arcname=child.name)
    return dest_dir / "model.tar.gz"


@pytest.fixture(scope="module")
def data():
    df = pd.read_csv(CHURN, dtype=str, keep_default_na=False)
    return df, stratified_split(df, "churn")


@pytest.fixture(scope="module")
def base(tmp_path_factory, data):
    _, splits = data
    tmp = tmp_path_factory.mktemp("base")
    channels = write_splits(tmp / "data", splits)
    # JSON-encoded values as the SageMaker SDK sends them, plus ignored sagemaker_* ones
    args = [
        "--target",
        '"churn"',
        "--problem_type",
        '"binary"',
        "--seed",
        "0",
        "--sagemaker_program",
        '"train.py"',
        "--max_iter",
        "200",
    ]
    proc, model_dir, out_dir, seconds = run_train(tmp, channels, args, sm_hps={"target": "churn"})
    assert proc.returncode == 0, proc.stderr
    return {
        "tmp": tmp,
        "channels": channels,
        "proc": proc,
        "model_dir": model_dir,
        "out_dir": out_dir,
        "seconds": seconds,
        "splits": splits,
    }


def test_metric_lines_exact_format(base):
    lines = [line for line in base["proc"].stdout.splitlines() if line.startswith("[metric]")]
    assert len(lines) == 12  # 3 splits x (auc, accuracy, f1, logloss)
    for line in lines:
        assert METRIC_LINE.match(line), line
    metrics = metric_lines(base["proc"].stdout)
    assert set(metrics) == {
        (s, n) for s in ("train", "validation", "test") for n in ("auc", "accuracy", "f1", "logloss")
    }
    # the MetricDefinitions regex the pipeline registers
    m = re.search(r"\[metric\] validation:auc=([-+0-9.eE]+|nan)", base["proc"].stdout)
    assert m and float(m.group(1)) == metrics[("validation", "auc")]
    # value is repr(float): round-trips exactly to evaluation.json
    evaluation = json.loads((base["model_dir"] / "evaluation.json").read_text())
    assert metrics[("test", "auc")] == evaluation["metrics"]["test"]["auc"]


def test_artifacts_and_schema(base):
    model_dir = base["model_dir"]
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "baseline",
        "code",
        "evaluation.json",
        "model.joblib",
        "schema.json",
    ]
    code = model_dir / "code"
    assert sorted(p.name for p in code.iterdir()) == ["inference.py", "sagepipe_contract.py"]
    for name in ("inference.py", "sagepipe_contract.py"):  # the serving program and the module it imports
        assert (code / name).read_bytes() == (REPO / "model" / name).read_bytes()
    schema = json.loads((model_dir / "schema.json").read_text())
    assert schema["schema_version"] == 1 and schema["target"] == "churn" and schema["problem_type"] == "binary"
    assert schema["labels"] == ["no", "yes"]
    header = CHURN.read_text().splitlines()[0].split(",")
    assert schema["feature_order"] == [c for c in header if c != "churn"]
    feats = {f["name"]: f for f in schema["features"]}
    assert feats["state"]["type"] == "categorical" and "KS" in feats["state"]["categories"]
    assert feats["state"]["categories"] == sorted(feats["state"]["categories"])
    assert feats["area_code"]["type"] == "categorical"
    assert feats["international_plan"]["categories"] == ["no", "yes"]
    acc = feats["account_length"]
    assert acc["type"] == "numeric" and acc["nullable"] is False
    train = base["splits"]["train"]["account_length"].astype(float)
    assert acc["min"] == train.min() and acc["max"] == train.max()
    assert sum(f["type"] == "numeric" for f in schema["features"]) == 15
    # copy in SM_OUTPUT_DATA_DIR too
    assert json.loads((base["out_dir"] / "data" / "evaluation.json").read_text())["target"] == "churn"


def test_evaluation_json(base):
    ev = json.loads((base["model_dir"] / "evaluation.json").read_text())
    assert ev["schema_version"] == 1 and ev["problem_type"] == "binary" and ev["labels"] == ["no", "yes"]
    assert ev["rows"] == {k: len(v) for k, v in base["splits"].items()}
    assert sum(ev["rows"].values()) == 5000
    test = ev["metrics"]["test"]
    assert test["auc"] > 0.8 and 0.85 < test["accuracy"] <= 1.0 and 0 < test["f1"] <= 1 and test["logloss"] < 0.5
    assert ev["metrics"]["validation"]["auc"] > 0.8
    assert ev["champion"] == {"status": "absent", "reason": None, "metrics": None}


def test_champion_scored_on_same_test_split(base, tmp_path):
    champion = make_model_tar(base["model_dir"], tmp_path / "champion")
    args = ["--target", "churn", "--problem_type", "binary"]
    proc, model_dir, _, _ = run_train(tmp_path, base["channels"], args, champion=champion.parent)
    assert proc.returncode == 0, proc.stderr
    ev = json.loads((model_dir / "evaluation.json").read_text())
    assert ev["champion"]["status"] == "scored" and ev["champion"]["reason"] is None
    base_ev = json.loads((base["model_dir"] / "evaluation.json").read_text())
    # same data, same seed -> the champion (previous model) scores exactly like the base run
    assert ev["champion"]["metrics"]["test"] == pytest.approx(base_ev["metrics"]["test"], rel=1e-12)
    lines = metric_lines(proc.stdout)
    assert lines[("champion_test", "auc")] == ev["champion"]["metrics"]["test"]["auc"]
    # the report's curve data: both models on the same test split (the same model here: equal curves)
    diag = ev["diagnostics"]
    assert "curves" not in ev["champion"]
    assert diag["champion"]["roc"] == diag["challenger"]["roc"] and diag["challenger"]["roc"][0]["label"] == "yes"
    assert sum(map(sum, diag["challenger"]["confusion"]["matrix"])) == ev["rows"]["test"]
    assert diag["importance"]["split"] == "validation" and diag["importance"]["features"]
    assert diag["profile"]["rows"] == ev["rows"] and diag["profile"]["distributions"]
    assert len(json.dumps(diag)) < 60_000


def test_champion_incompatible_when_feature_dropped(base, data, tmp_path):
    champion = make_model_tar(base["model_dir"], tmp_path / "champion")
    channels = write_splits(tmp_path / "data", data[1], drop=["state"])
    proc, model_dir, _, _ = run_train(tmp_path, channels, ["--target", "churn"], champion=champion.parent)
    assert proc.returncode == 0, proc.stderr
    ev = json.loads((model_dir / "evaluation.json").read_text())
    assert ev["problem_type"] == "binary"  # inferred: 2 labels
    assert ev["champion"]["status"] == "incompatible" and ev["champion"]["metrics"] is None
    assert "state" in ev["champion"]["reason"] and "only in champion" in ev["champion"]["reason"]
    assert not any(k[0] == "champion_test" for k in metric_lines(proc.stdout))


def test_champion_error_on_corrupt_archive(base, tmp_path):
    (tmp_path / "champion").mkdir()
    (tmp_path / "champion" / "model.tar.gz").write_bytes(b"not a tarball")
    proc, model_dir, _, _ = run_train(
        tmp_path, base["channels"], ["--target", "churn", "--max_iter", "20"], champion=tmp_path / "champion"
    )
    assert proc.returncode == 0, proc.stderr
    champ = json.loads((model_dir / "evaluation.json").read_text())["champion"]
    assert champ["status"] == "error" and "ReadError" in champ["reason"]


def test_missing_label_fails_with_failure_file(base, data, tmp_path):
    splits = dict(data[1])
    test = splits["test"].copy()
    test.iloc[3, test.columns.get_loc("churn")] = ""
    splits["test"] = test
    channels = write_splits(tmp_path / "data", splits)
    proc, model_dir, out_dir, _ = run_train(tmp_path, channels, ["--target", "churn"])
    assert proc.returncode == 1
    failure = (out_dir / "failure").read_text()
    assert "test data has 1 rows with a missing label" in failure and "churn" in failure
    assert failure in proc.stderr
    assert not (model_dir / "model.joblib").exists()


def test_missing_target_hyperparameter_fails(base, tmp_path):
    failure = tmp_path / "custom-failure"
    env_extra = {"SM_OUTPUT_FAILURE": str(failure)}
    proc = subprocess.run(
        [sys.executable, str(TRAIN_PY), "--seed", "1"],
        env={
            **os.environ,
            **env_extra,
            "SM_CHANNEL_TRAIN": str(base["channels"]["train"]),
            "SM_MODEL_DIR": str(tmp_path / "m"),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "'target'" in failure.read_text()


def test_regression_and_multiclass(data, tmp_path):
    _, splits = data
    channels = write_splits(tmp_path / "data", splits)
    proc, model_dir, _, _ = run_train(
        tmp_path / "reg",
        channels,
        ["--target", "total_day_charge", "--problem_type", "regression", "--max_iter", "50"],
    )
    assert proc.returncode == 0, proc.stderr
    ev = json.loads((model_dir / "evaluation.json").read_text())
    assert ev["labels"] is None and set(ev["metrics"]["test"]) == {"rmse", "mae", "r2"}
    assert ev["metrics"]["test"]["r2"] > 0.9  # charge is linear in minutes
    assert ("validation", "rmse") in metric_lines(proc.stdout)

    proc, model_dir, _, _ = run_train(
        tmp_path / "mc", channels, ["--target", "area_code", "--problem_type", "multiclass", "--max_iter", "20"]
    )
    assert proc.returncode == 0, proc.stderr
    ev = json.loads((model_dir / "evaluation.json").read_text())
    assert ev["labels"] == ["area_code_408", "area_code_415", "area_code_510"]
    assert set(ev["metrics"]["test"]) == {"macro_f1", "accuracy", "logloss"}


# ------------------------------------------------------------------------------------------
# inference.py
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def inference(base):
    """code/inference.py of the trained model, imported as the container does: with code/ on sys.path, so
    its sibling sagepipe_contract (copied there by train.py) is the one it imports."""
    code_dir = str(base["model_dir"] / "code")
    sys.path.insert(0, code_dir)
    saved = sys.modules.pop("sagepipe_contract", None)
    try:
        spec = importlib.util.spec_from_file_location("sagepipe_test_inference", Path(code_dir) / "inference.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert Path(sys.modules["sagepipe_contract"].__file__).parent == Path(code_dir)
        yield module, module.model_fn(str(base["model_dir"]))
    finally:
        sys.path.remove(code_dir)
        sys.modules.pop("sagepipe_contract", None)
        if saved is not None:
            sys.modules["sagepipe_contract"] = saved


def _csv_rows(frame: pd.DataFrame, header: bool) -> str:
    buf = io.StringIO()
    frame.to_csv(buf, index=False, header=header)
    return buf.getvalue()


def test_inference_csv_matches_training_evaluation(base, inference):
    mod, model = inference
    test = base["splits"]["test"]
    features = test.drop(columns=["churn"])
    body = _csv_rows(features, header=False).encode()
    preds = mod.predict_fn(mod.input_fn(body, "text/csv"), model)
    assert len(preds) == len(test)
    for p in preds[:20]:
        assert p["label"] in ("no", "yes") and set(p["probabilities"]) == {"no", "yes"}
        assert math.isclose(sum(p["probabilities"].values()), 1.0, rel_tol=1e-9)
        assert p["label"] == max(p["probabilities"], key=p["probabilities"].get)
    accuracy = sum(p["label"] == y for p, y in zip(preds, test["churn"], strict=True)) / len(test)
    ev = json.loads((base["model_dir"] / "evaluation.json").read_text())
    assert accuracy == pytest.approx(ev["metrics"]["test"]["accuracy"], abs=1e-12)

    # header row detected, also when columns are permuted
    with_header = mod.predict_fn(mod.input_fn(_csv_rows(features.iloc[:5], True), "text/csv; charset=utf-8"), model)
    assert with_header == preds[:5]
    permuted = features.iloc[:5][list(reversed(features.columns))]
    assert mod.predict_fn(mod.input_fn(_csv_rows(permuted, True), "text/csv"), model) == preds[:5]

    body, ctype = mod.output_fn(preds[:3], "text/csv")
    assert ctype == "text/csv" and body.splitlines() == [p["label"] for p in preds[:3]]


def test_inference_json(base, inference):
    mod, model = inference
    features = base["splits"]["test"].drop(columns=["churn"]).iloc[:4]
    csv_preds = mod.predict_fn(mod.input_fn(_csv_rows(features, False), "text/csv"), model)
    records = []
    for rec in features.to_dict("records"):
        rec = dict(rec)
        rec["account_length"] = int(rec["account_length"])  # JSON numbers and numeric strings both accepted
        records.append(rec)
    data = mod.input_fn(json.dumps({"instances": records}).encode(), "application/json")
    preds = mod.predict_fn(data, model)
    assert [p["label"] for p in preds] == [p["label"] for p in csv_preds]
    for a, b in zip(preds, csv_preds, strict=True):
        assert a["probabilities"]["yes"] == pytest.approx(b["probabilities"]["yes"], rel=1e-12)
    body, ctype = mod.output_fn(preds, "*/*")
    assert ctype == "application/json" and json.loads(body) == {"predictions": preds}
    # missing values are imputed, not rejected
    partial = {"instances": [{"state": "KS", "account_length": None, "total_day_minutes": "120.5"}]}
    out = mod.predict_fn(mod.input_fn(json.dumps(partial), "application/json"), model)
    assert out[0]["label"] in ("no", "yes")


@pytest.mark.parametrize(
    "body, ctype, message",
    [
        ("", "text/csv", "empty CSV"),
        ("1,2,3\n", "text/csv", "row 1 has 3 values, expected 19"),
        ("{not json", "application/json", "malformed JSON"),
        ('{"rows": []}', "application/json", "instances"),
        ('{"instances": []}', "application/json", "non-empty"),
        ('{"instances": [{"bogus": 1}]}', "application/json", "unknown features: bogus"),
        (
            '{"instances": [{"account_length": "abc"}]}',
            "application/json",
            "feature 'account_length': expected a number",
        ),
        (b"\xff\xfe", "text/csv", "UTF-8"),
    ],
)
def test_inference_bad_input(inference, body, ctype, message):
    mod, model = inference
    with pytest.raises(mod.InputError) as err:
        mod.predict_fn(mod.input_fn(body, ctype), model)
    assert message in str(err.value)
    assert isinstance(err.value, ValueError) and not isinstance(err.value, mod.UnsupportedContentType)


def test_inference_unsupported_types(inference):
    mod, _ = inference
    with pytest.raises(mod.UnsupportedContentType, match="text/plain"):
        mod.input_fn(b"x", "text/plain")
    with pytest.raises(mod.UnsupportedContentType, match="application/xml"):
        mod.output_fn([{"label": "no", "probabilities": {}}], "application/xml")
    assert issubclass(mod.UnsupportedContentType, ValueError)
    assert mod.output_fn([{"value": 1.5}], "text/csv") == ("1.5\n", "text/csv")


# ------------------------------------------- issue 11: the champion's lineage and a superset schema
def core_channels(root: Path, body: bytes) -> tuple:
    """ValidateData's outputs for ``body``: the split files and the split manifest (sagepipe_core.dataset),
    as the training job's channels. Returns ``(where, channel dirs)``."""
    from sagepipe_core import dataset as ds
    from sagepipe_core.config import parse_config

    cfg = parse_config({"target": "churn"})
    data = ds.parse_and_validate(body, cfg)
    where = ds.assign_splits(data, cfg)
    dirs = {}
    for name, (fh, _) in ds.write_splits(data, cfg, where).items():
        (root / name).mkdir(parents=True)
        with fh:
            (root / name / f"{name}.csv").write_bytes(fh.read())
        dirs[name] = root / name
    (root / "manifest").mkdir()
    (root / "manifest" / ds.MANIFEST_FILE).write_text(json.dumps(ds.manifest(data, where)))
    dirs["manifest"] = root / "manifest"
    return where, dirs


@pytest.fixture(scope="module")
def lineage(tmp_path_factory):
    """The champion trained on the first 4,000 churn rows (with its manifest); then all 5,000 rows come back
    re-exported by another tool with a new column of noise, every field quoted and the columns reordered."""
    import csv
    import random

    tmp = tmp_path_factory.mktemp("lineage")
    text = CHURN.read_text().splitlines()
    header, rows = text[0].split(","), [line.split(",") for line in text[1:]]
    assert len({tuple(r) for r in rows}) == len(rows) == 5000  # no duplicate rows: indices identify rows
    first = ("\n".join(text[:4001]) + "\n").encode()
    where_first, channels = core_channels(tmp / "first", first)
    proc, champ_dir, _, _ = run_train(tmp / "champ", channels, ["--target", "churn", "--max_iter", "50"])
    assert proc.returncode == 0, proc.stderr
    assert (champ_dir / "split_manifest.json").read_bytes() == (
        channels["manifest"] / "split_manifest.json"
    ).read_bytes()
    rng = random.Random(5)
    order = [*range(len(header))]
    rng.shuffle(order)
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_ALL)
    writer.writerow([header[j] for j in order] + ["noise"])
    for r in rows:
        writer.writerow([r[j] for j in order] + [f"{rng.random():.6f}"])
    where_new, new_channels = core_channels(tmp / "new", buf.getvalue().encode())
    champion = make_model_tar(champ_dir, tmp / "champion")
    proc, model_dir, _, _ = run_train(
        tmp / "chall", new_channels, ["--target", "churn", "--max_iter", "50"], champion.parent
    )
    assert proc.returncode == 0, proc.stderr
    trained = {i for i in range(4000) if where_first[i] in (0, 1)}  # the champion's train + validation rows
    test_rows = [i for i in range(5000) if where_new[i] == 2]  # the new test split, in file order
    return {
        "ev": json.loads((model_dir / "evaluation.json").read_text()),
        "stdout": proc.stdout,
        "champ_dir": champ_dir,
        "test_csv": new_channels["test"] / "test.csv",
        "trained": trained,
        "test_rows": test_rows,
    }


def test_champion_is_never_scored_on_its_training_rows(lineage):
    """Issue 11 item 1: the new test split holds hundreds of rows that trained the champion (the new column
    reshuffled the splits); the champion is scored on the others only, and says how many it left out."""
    from sagepipe_core import dataset as ds

    ev, trained, test_rows = lineage["ev"], lineage["trained"], lineage["test_rows"]
    overlap = [i for i in test_rows if i in trained]
    assert len(overlap) > 300  # the leak is real: most new test rows trained the champion
    champ = ev["champion"]
    assert champ["status"] == "scored", champ
    assert champ["overlap"] == len(overlap) and champ["rows_scored"] == len(test_rows) - len(overlap)
    assert ev["rows"]["test"] == len(test_rows)
    # the champion's metrics are those of exactly the rows it never saw; the challenger's on the same rows too
    train_mod = import_model_module("train")
    import joblib

    frame = pd.read_csv(lineage["test_csv"], dtype=str)
    unseen = frame[[i not in trained for i in test_rows]]
    schema = json.loads((lineage["champ_dir"] / "schema.json").read_text())
    model = joblib.load(lineage["champ_dir"] / "model.joblib")
    y = unseen["churn"].str.strip().to_numpy(dtype=object)
    X = train_mod.prepare_features(unseen, schema["features"], "test")
    expected = train_mod.compute_metrics("binary", schema["labels"], y, model, X)
    assert champ["metrics"]["test"] == pytest.approx(expected, rel=1e-9)
    assert set(champ["challenger_metrics"]["test"]) == set(expected)
    assert "left out" in lineage["stdout"] and ds.MANIFEST_FILE == "split_manifest.json"


def test_champion_is_scored_when_the_new_data_adds_a_column(lineage):
    """Issue 11 item 2: a new column no longer makes the champion "incompatible"; the diff is recorded."""
    champ = lineage["ev"]["champion"]
    assert champ["status"] == "scored" and champ["metrics"]["test"]["auc"] is not None
    assert champ["schema_diff"] == {
        "added": ["noise"],
        "removed": [],
        "retyped": [],
        "counts": {"added": 1, "removed": 0, "retyped": 0},
    }
    assert ("champion_test", "auc") in metric_lines(lineage["stdout"])
