"""Issue 11 items 3-5: the data contract fits real CSVs, and ValidateData and model/train.py read them alike.

Each CSV goes through ValidateData's parser (``sagepipe_core.dataset``), its split files are written as the
pipeline writes them, and ``model/train.py`` reads those channels in-process (``prepare``): the column
types, the missing values, the excluded columns and the labels must agree.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from sagepipe_core import dataset as ds
from sagepipe_core import training
from sagepipe_core.config import parse_config
from sagepipe_core.errors import InvalidDatasetError
from tests.conftest import import_model_module

pytestmark = pytest.mark.unit

train = import_model_module("train")


def _csv(header: list[str], rows: list[list[Any]]) -> bytes:
    return ds.to_csv(header, [[str(v) for v in r] for r in rows])


def _credit(n: int = 400, *, id_column: bool = True, stray: str = "?", seed: int = 3) -> bytes:
    """A credit-scoring-like CSV: an ID, an income with stray tokens and thousands separators, a plan."""
    rng = random.Random(seed)
    header = (
        ["customer_id", "row", "income", "balance", "plan", "default"] if id_column else ["income", "plan", "default"]
    )
    rows = []
    for i in range(n):
        income = rng.randint(800, 9000)
        text = f"{income:,}.0" if i % 7 == 0 else str(income)  # "2,651.0" (quoted by the CSV writer)
        if i in (5, 105):
            text = stray
        if i == 205:
            text = "N/A"
        plan = rng.choice(["basic", "pro", "gold"])
        label = "yes" if income > 5000 else "no"
        if id_column:
            rows.append([f"C{100900 + i * 13}", i + 1, text, round(rng.uniform(-5, 5), 2), plan, label])
        else:
            rows.append([text, plan, label])
    return _csv(header, rows)


def _channels(tmp: Path, data: ds.Dataset, config: Any) -> dict[str, str]:
    env = {}
    for name, (fh, _) in ds.write_splits(data, config).items():
        with fh:
            (tmp / name).mkdir(parents=True)
            (tmp / name / f"{name}.csv").write_bytes(fh.read())
        env[f"SM_CHANNEL_{name.upper()}"] = str(tmp / name)
    return env


def _train_config(config: Any, data: ds.Dataset) -> Any:
    """The hyperparameters ValidateData sends (training.hyperparameters), decoded as train.py decodes them."""
    resolved = {**config.resolved(data.target), "exclude_columns": data.excluded}
    hps = training.hyperparameters(resolved, code_uri="s3://b/code.tar.gz", region="us-east-1")
    return train.resolve_config(train.parse_hyperparameters([], {"SM_HPS": json.dumps(hps)}))


# ----------------------------------------------------------------------------------------- item 3
def test_identifier_columns_are_excluded_and_recorded(tmp_path: Path) -> None:
    config = parse_config({"target": "default"})
    data = ds.parse_and_validate(_credit(), config)
    assert data.excluded == {"customer_id": "unique_text", "row": "row_number"}
    assert data.summary()["excluded"] == {"customer_id": "unique_text", "row": "row_number"}
    assert data.profile()["excluded"] == data.excluded
    prepared = train.prepare(_train_config(config, data), _channels(tmp_path, data, config))
    schema = prepared.schema
    assert schema["feature_order"] == ["income", "balance", "plan"]
    assert schema["excluded"] == [
        {"name": "customer_id", "reason": "unique_text"},
        {"name": "row", "reason": "row_number"},
    ]
    assert list(prepared.Xs["train"].columns) == ["income", "balance", "plan"]


def test_a_row_number_is_found_in_a_shuffled_export() -> None:
    """Issue 11: a row-number column is an identifier whatever the row order. Before, only a column
    increasing or decreasing in file order was; the same data shuffled kept ``row`` as a feature."""
    import csv
    import io

    header, *rows = list(csv.reader(io.StringIO(_credit().decode())))
    random.Random(11).shuffle(rows)
    data = ds.parse_and_validate(ds.to_csv(header, rows), parse_config({"target": "default"}))
    assert data.excluded == {"customer_id": "unique_text", "row": "row_number"}


def test_config_include_keeps_and_exclude_drops_columns() -> None:
    config = parse_config({"target": "default", "include": ["row"], "exclude": ["plan"]})
    data = ds.parse_and_validate(_credit(), config)
    assert data.excluded == {"customer_id": "unique_text", "plan": "config"}


def test_unknown_or_conflicting_column_names_in_the_config() -> None:
    with pytest.raises(InvalidDatasetError) as info:
        ds.parse_and_validate(_credit(), parse_config({"target": "default", "exclude": ["nope"]}))
    assert info.value.reason == "unknown_columns" and info.value.details["columns"] == ["nope"]
    with pytest.raises(InvalidDatasetError) as info:
        ds.parse_and_validate(_credit(), parse_config({"target": "default", "exclude": ["default"]}))
    assert info.value.reason == "excluded_target"
    with pytest.raises(Exception, match="both excluded and included"):
        parse_config({"exclude": ["a"], "include": ["a"]})
    with pytest.raises(Exception, match="reserved"):
        parse_config({"hyperparameters": {"exclude_columns": "[]"}})


def test_nothing_but_identifiers_is_rejected() -> None:
    body = _csv(["id", "y"], [[f"K{i}", "ab"[i % 2]] for i in range(60)])
    with pytest.raises(InvalidDatasetError) as info:
        ds.parse_and_validate(body, parse_config(None))
    assert info.value.reason == "no_features" and info.value.details["excluded"] == {"id": "unique_text"}


@pytest.mark.parametrize(
    "values, excluded",
    [
        ([f"C{i}" for i in range(60)], "unique_text"),
        ([f"C{i % 58}" for i in range(60)], "unique_text"),  # 58 distinct of 60: near-unique
        ([f"C{i % 50}" for i in range(60)], None),  # 50 distinct of 60: a high-cardinality category
        ([str(1000 + 3 * i) for i in range(60)], "row_number"),  # increasing integers
        ([str(60 - i) for i in range(60)], "row_number"),  # decreasing integers
        ([str((i * 37) % 60) for i in range(60)], "row_number"),  # 0..59 shuffled: a row number
        ([str(5000 - (i * 37) % 60) for i in range(60)], "row_number"),  # 4941..5000 shuffled
        ([str(2 * ((i * 37) % 60)) for i in range(60)], None),  # unique integers with gaps, shuffled: a feature
        ([str((i * 37) % 60) if i != 7 else "0" for i in range(60)], None),  # a duplicate and a gap
        ([str((i * 37) % 61) for i in range(60)], None),  # 60 distinct of 0..60: one is skipped
        ([str((i * 337) % 1000) for i in range(1000)], "row_number"),  # longer than ds.ID_PROBE
        ([str((i * 337) % 1000 if i != 900 else 1000) for i in range(1000)], None),  # a late gap
        ([f"{i * 0.5}" for i in range(60)], None),  # increasing, not integers
        ([str(i) if i != 9 else "" for i in range(60)], None),  # a row number is never missing
        ([f"C{i}" if i < 19 else "" for i in range(60)], None),  # too few values to judge
    ],
)
def test_identifier_rule(values: list[str], excluded: str | None) -> None:
    body = _csv(["c", "x", "y"], [[v, i % 7, "ab"[i % 2]] for i, v in enumerate(values)])
    data = ds.parse_and_validate(body, parse_config(None))
    assert data.excluded == ({"c": excluded} if excluded else {})


# ----------------------------------------------------------------------------------------- item 4
@pytest.mark.parametrize("stray", ["?", "N/A", " NA ", "n.a.", "-"])
def test_mostly_numeric_column_stays_numeric(stray: str, tmp_path: Path) -> None:
    config = parse_config({"target": "default"})
    data = ds.parse_and_validate(_credit(stray=stray), config)
    report = data.columns["income"]
    assert report["type"] == "numeric"
    token = stray.strip()
    if token in ("?", "N/A", "NA"):  # missing-value tokens: counted as such
        assert report["missing_tokens"] == ({token: 2, "N/A": 1} if token != "N/A" else {"N/A": 3})
        assert report["missing"] == 3 and "stray_values" not in report
    else:  # a stray text: read as missing, counted, reported
        assert report["stray_values"] == {token: 2} and report["missing"] == 3
        assert data.summary()["stray_values"] == {"income": 2}
    prepared = train.prepare(_train_config(config, data), _channels(tmp_path, data, config))
    feature = {f["name"]: f for f in prepared.schema["features"]}["income"]
    assert feature["type"] == "numeric"
    incomes = [prepared.Xs[split]["income"] for split in ("train", "validation", "test")]
    assert sum(int(x.isna().sum()) for x in incomes) == 3  # "2,651.0" was read as 2651, not as missing
    assert all(x.dropna().between(800, 9000).all() for x in incomes)


def test_thousands_separators_are_numbers_in_both_parsers() -> None:
    values = ["2,651.0", "1,234", "-12,345,678.5", "+1,000", "12", "1.5e3", ".5", "7."]
    not_numbers = ["2,5", "12,34", "1,2345", ",123", "1_000", "inf", "nan1", "1e999", "١٢", "0x10"]
    core = import_model_module("sagepipe_contract")
    from sagepipe_core import values as core_values

    for text in values:
        assert core_values.parse_number(text) == core.parse_number(text) == float(text.replace(",", ""))
    for text in not_numbers:
        assert core_values.parse_number(text) is None and core.parse_number(text) is None, text
    import pandas as pd

    parsed = train._parse_numeric(pd.Series(values + not_numbers, dtype=object))
    assert parsed[: len(values)].tolist() == [float(v.replace(",", "")) for v in values]
    assert parsed[len(values) :].isna().all()


def test_a_column_of_words_stays_categorical() -> None:
    # more than 1% strays, or more than 5 distinct ones: categorical
    body = _csv(["c", "x", "y"], [[i if i % 10 else "low", i % 7, "ab"[i % 2]] for i in range(200)])
    assert ds.parse_and_validate(body, parse_config(None)).columns["c"]["type"] == "categorical"


# ----------------------------------------------------------------------------------------- item 5
@pytest.mark.parametrize("token", ["NA", "null", "?", " None "])
def test_a_class_named_like_a_missing_token_is_missing_in_both(token: str, tmp_path: Path) -> None:
    rows = [[i % 9, "abc"[i % 3], token if i % 4 == 0 else "yes"] for i in range(120)]
    body = _csv(["x", "plan", "y"], rows)
    with pytest.raises(InvalidDatasetError) as info:  # ValidateData: before any training job starts
        ds.parse_and_validate(body, parse_config(None))
    err = info.value
    assert err.reason == "missing_labels" and err.details["rows"] == 30
    assert err.details["tokens"] == {token.strip(): 30} and "rename" in err.message
    # train.py reads the same CSV the same way: those labels are missing
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "train.csv").write_bytes(body)
    cfg = train.resolve_config({"target": "y", "problem_type": "binary"})
    with pytest.raises(train.TrainingError, match="30 rows with a missing label"):
        train.prepare(cfg, {"SM_CHANNEL_TRAIN": str(tmp_path / "train")})


def test_validate_and_train_agree_on_every_column(tmp_path: Path) -> None:
    """One CSV with every kind of cell through both parsers: types, missing counts, labels agree."""
    rng = random.Random(5)
    header = ["num", "strays", "grouped", "tokens", "cat", "codes", "spaces", "y"]
    rows = []
    for i in range(300):
        rows.append(
            [
                round(rng.uniform(0, 100), 3),
                "n.a." if i in (3, 4) else rng.randint(0, 50),
                f"{rng.randint(1000, 99999):,}",
                ["NA", "", "null", "#N/A", str(i)][i % 5],
                rng.choice(["red", "blue", "NA", "?"]),
                rng.choice(["001", "002", "A1"]),
                rng.choice([" x ", "x", " y"]),
                "NA_class" if i % 3 == 0 else "other",
            ]
        )
    body = _csv(header, rows)
    config = parse_config({"target": "y"})
    data = ds.parse_and_validate(body, config)
    prepared = train.prepare(_train_config(config, data), _channels(tmp_path, data, config))
    schema_types = {f["name"]: f["type"] for f in prepared.schema["features"]}
    assert schema_types == {name: c["type"] for name, c in data.columns.items()}
    assert schema_types == {
        "num": "numeric",
        "strays": "numeric",
        "grouped": "numeric",
        "tokens": "numeric",
        "cat": "categorical",
        "codes": "categorical",
        "spaces": "categorical",
    }
    every = dict.fromkeys(schema_types, 0)
    for split in ("train", "validation", "test"):
        for name in schema_types:
            every[name] += int(prepared.Xs[split][name].isna().sum())
    assert every == {name: c["missing"] for name, c in data.columns.items()}
    labels = sorted({*prepared.ys["train"], *prepared.ys["validation"], *prepared.ys["test"]})
    assert labels == sorted(data.class_counts) == ["NA_class", "other"]
    categories = {f["name"]: f.get("categories") for f in prepared.schema["features"]}
    assert categories["spaces"] == ["x", "y"]  # stripped in both parsers


def test_inference_reads_requests_as_training_read_the_data() -> None:
    inference = import_model_module("inference")
    schema = {
        "schema_version": 1,
        "target": "default",
        "problem_type": "binary",
        "labels": ["no", "yes"],
        "features": [
            {"name": "income", "type": "numeric", "nullable": True},
            {"name": "plan", "type": "categorical", "nullable": False, "categories": ["basic", "pro"]},
        ],
        "feature_order": ["income", "plan"],
        "excluded": [{"name": "customer_id", "reason": "unique_text"}],
        "missing_features": "impute",
    }
    model = inference.LoadedModel(None, schema)
    records = inference.ParsedInput(
        "records",
        [
            {"customer_id": "C999999", "income": "2,651.0", "plan": " pro "},  # an identifier is ignored
            {"income": 1200, "plan": "?"},
            {"income": " NA ", "plan": "basic"},
        ],
    )
    frame = inference._to_frame(records, model)
    assert frame["income"].tolist()[:2] == [2651.0, 1200.0] and frame["income"].isna().tolist()[2]
    assert frame["plan"].tolist()[0] == "pro" and frame["plan"].isna().tolist() == [False, True, False]
    csv_rows = inference.input_fn("customer_id,plan,income\nC1,basic,7\n", "text/csv")
    assert inference._to_frame(csv_rows, model)["income"].tolist() == [7.0]
    with pytest.raises(inference.InputError, match="unknown features: other"):
        inference._to_frame(inference.ParsedInput("records", [{"income": 1, "plan": "pro", "other": 1}]), model)


def test_the_predict_lambda_ignores_excluded_columns_and_reads_numbers_as_training() -> None:
    from sagepipe_core.schema import ModelSchema, RecordErrors, parse_csv, validate_records

    doc = {
        "schema_version": 1,
        "target": "default",
        "problem_type": "binary",
        "labels": ["no", "yes"],
        "features": [
            {"name": "income", "type": "numeric", "nullable": True},
            {"name": "plan", "type": "categorical", "nullable": False, "categories": ["basic", "pro"]},
        ],
        "feature_order": ["income", "plan"],
        "excluded": [{"name": "customer_id", "reason": "unique_text"}],
    }
    schema = ModelSchema.parse(doc)
    records, _ = validate_records(
        schema,
        [{"customer_id": "C1", "income": "2,651.0", "plan": " pro "}, {"income": 12, "plan": "basic"}],
    )
    assert records == [{"income": 2651.0, "plan": "pro"}, {"income": 12.0, "plan": "basic"}]
    assert parse_csv(schema, "customer_id,income,plan\nC1,3,pro\n") == [
        {"customer_id": "C1", "income": "3", "plan": "pro"}
    ]
    with pytest.raises(RecordErrors) as info:
        validate_records(schema, [{"income": "1_000", "plan": "pro"}, {"income": "inf", "plan": "pro"}])
    assert [e["code"] for e in info.value.errors] == ["wrong_type", "non_finite"]
