"""The model contract (``model/sagepipe_contract.py``) and the copies that cannot import it agree.

The core layer runs on Lambda without ``model/``, and the twin's extraction of ``sourcedir.tar.gz``
emulates the SageMaker platform: each keeps its own copy, and these tests fail when a copy drifts.
"""

from __future__ import annotations

import io
import json
import tarfile
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pandas._libs.parsers import STR_NA_VALUES

from sagepipe.twin.sagemaker import training as twin_training
from sagepipe_core import config, dataset, schema, values
from tests.conftest import import_model_module, tar_gz

pytestmark = pytest.mark.unit

contract = import_model_module("sagepipe_contract")


def test_na_tokens_are_pandas_defaults_plus_question_mark_and_the_cores() -> None:
    # one list for ValidateData, training and inference (and the predict Lambda)
    assert contract.NA_TOKENS == frozenset(STR_NA_VALUES) | {"?"}
    assert values.NA_TOKENS == contract.NA_TOKENS
    assert schema.NA_TOKENS is values.NA_TOKENS and dataset.NA_TOKENS is values.NA_TOKENS
    assert import_model_module("inference").is_missing is contract.is_missing
    assert import_model_module("train").NA_TOKENS is contract.NA_TOKENS


def test_number_and_column_type_rules_are_the_cores() -> None:
    assert values.NUMBER_PATTERN == contract.NUMBER_PATTERN
    assert values.GROUPED_NUMBER_PATTERN == contract.GROUPED_NUMBER_PATTERN
    assert values.STRAY_MAX_FRACTION == contract.STRAY_MAX_FRACTION
    assert values.STRAY_MAX_DISTINCT == contract.STRAY_MAX_DISTINCT
    texts = ["1", " 2.5 ", "-3e2", "2,651.0", "2,5", "inf", "1e999", "NA", "", "abc", "1_0", ".5", "5."]
    assert [values.parse_number(t) for t in texts] == [contract.parse_number(t) for t in texts]
    for present in (0, 1, 50, 100, 1000):
        for strays in (0, 1, 2, 10, 50):
            for distinct in (1, 5, 6):
                args = (present, min(strays, present), distinct)
                assert values.column_type(*args) == contract.column_type(*args), args


@pytest.mark.parametrize(
    "cells",
    [
        ["1", "2", "3", "?"],
        [str(i) for i in range(200)] + ["x"],
        [str(i) for i in range(200)] + ["x", "y", "z"],
        [str(i) for i in range(1000)] + list("abcdef"),
        [str(i) for i in range(1000)] + list("abcde") * 2,
        ["NA", "", " n/a ", "4"],
        ["2,651.0", "12", "3,000"],
        ["9" * 400, "1", "2"],  # digits too long for a finite float: a stray, as parse_number says
        ["a", "b"],
        ["", "NA"],
    ],
)
def test_column_types_agree_with_train(cells: list[str]) -> None:
    import pandas as pd

    train = import_model_module("train")
    column = dataset._Column(dup_limit=0)
    for cell in cells:
        column.add(cell)
    frame = train.apply_missing_tokens(pd.DataFrame({"c": cells}, dtype=object))
    assert train.infer_feature_types(frame, ["c"]) == {"c": column.type}


def test_metric_table_and_problem_types_are_the_cores() -> None:
    assert config.METRICS == contract.METRIC_NAMES
    assert typing.get_args(config.ProblemType) == contract.PROBLEM_TYPES == tuple(contract.METRIC_NAMES)
    assert set(config.HIGHER_IS_BETTER) == {m for names in contract.METRIC_NAMES.values() for m in names}
    assert import_model_module("train").METRIC_NAMES is contract.METRIC_NAMES


VALID_SCHEMA: dict[str, Any] = {
    "schema_version": 1,
    "target": "churn",
    "problem_type": "binary",
    "labels": ["no", "yes"],
    "features": [
        {"name": "state", "type": "categorical", "nullable": False, "categories": ["KS", "OH"]},
        {"name": "minutes", "type": "numeric", "nullable": True, "min": 0.0, "max": 9.5},
    ],
    "feature_order": ["state", "minutes"],
}


def _variant(**changes: Any) -> dict[str, Any]:
    doc = json.loads(json.dumps(VALID_SCHEMA))
    for key, value in changes.items():
        if value is KeyError:
            del doc[key]
        else:
            doc[key] = value
    return doc


SCHEMA_DOCS = {
    "valid": VALID_SCHEMA,
    "no labels (regression)": _variant(problem_type="regression", labels=None),
    "not a dict": ["schema_version", 1],
    "version 2": _variant(schema_version=2),
    "no version": _variant(schema_version=KeyError),
    "no problem_type": _variant(problem_type=KeyError),
    "no features": _variant(features=KeyError),
    "no feature_order": _variant(feature_order=KeyError),
    "features not a list": _variant(features=7),
    "feature without type": _variant(features=[{"name": "state"}, VALID_SCHEMA["features"][1]]),
    "unknown feature type": _variant(features=[{"name": "state", "type": "text"}, VALID_SCHEMA["features"][1]]),
    "feature_order misses one": _variant(feature_order=["state"]),
    "feature_order adds one": _variant(feature_order=["state", "minutes", "extra"]),
}


@pytest.mark.parametrize("name", list(SCHEMA_DOCS))
def test_schema_check_agrees_with_the_core(name: str) -> None:
    doc = SCHEMA_DOCS[name]
    try:
        schema.ModelSchema.parse(doc)
        core_ok = True
    except schema.SchemaError:
        core_ok = False
    try:
        contract.check_schema(doc)
        contract_ok = True
    except contract.SchemaError:
        contract_ok = False
    assert core_ok == contract_ok == name.startswith(("valid", "no labels"))
    assert issubclass(contract.SchemaError, ValueError) and issubclass(schema.SchemaError, ValueError)


def test_schema_check_accepts_what_train_writes(tmp_path: Path) -> None:
    import pandas as pd

    train = import_model_module("train")
    frame = pd.DataFrame({"a": ["1", "2", None], "b": ["x", "y", "x"], "y": ["0", "1", "0"]})
    doc = json.loads(json.dumps(train.build_schema(frame, "y", "binary", ["0", "1"])))
    (tmp_path / contract.SCHEMA_FILE).write_text(json.dumps(doc))
    assert contract.load_schema(str(tmp_path)) == doc
    parsed = schema.ModelSchema.parse(doc)
    assert parsed.feature_order == ("a", "b") and parsed.features["b"].categories == frozenset({"x", "y"})
    (tmp_path / contract.SCHEMA_FILE).write_text("{not json")
    with pytest.raises(contract.SchemaError, match="not valid JSON"):
        contract.load_schema(str(tmp_path))


# ------------------------------------------------------------------------------------------ tar extraction
def _member_tar(build: Callable[[tarfile.TarFile], None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        build(tar)
    return buf.getvalue()


def _link(name: str, target: str, kind: bytes) -> Callable[[tarfile.TarFile], None]:
    def build(tar: tarfile.TarFile) -> None:
        data = b"payload"
        info = tarfile.TarInfo("inside.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo(name)
        link.type, link.linkname = kind, target
        tar.addfile(link)

    return build


def _device(tar: tarfile.TarFile) -> None:
    dev = tarfile.TarInfo("null")
    dev.type = tarfile.CHRTYPE
    dev.devmajor, dev.devminor = 1, 3
    tar.addfile(dev)


# name -> (archive, extracted with the filters (twin and model), extracted by the fallback check)
ARCHIVES: dict[str, tuple[bytes, bool, bool]] = {
    "plain files": (tar_gz({"schema.json": b"{}", "code/inference.py": b"x = 1\n"}), True, True),
    "parent path": (tar_gz({"../escape.txt": b"x"}), False, False),
    "nested parent path": (tar_gz({"code/../../escape.txt": b"x"}), False, False),
    # the data filter strips the leading "/" (the member lands inside dest); the fallback refuses it
    "absolute path": (tar_gz({"/tmp/sagepipe-contract-escape.txt": b"x"}), True, False),
    "symlink inside": (_member_tar(_link("alias.txt", "inside.txt", tarfile.SYMTYPE)), True, False),
    "symlink outside": (_member_tar(_link("evil", "/etc/passwd", tarfile.SYMTYPE)), False, False),
    "relative symlink outside": (_member_tar(_link("evil", "../../etc/passwd", tarfile.SYMTYPE)), False, False),
    "hardlink outside": (_member_tar(_link("evil", "/etc/passwd", tarfile.LNKTYPE)), False, False),
    "device file": (_member_tar(_device), False, False),
}


def _extracts(extract: Callable[[Path, Path], None], data: bytes, root: Path) -> bool:
    root.mkdir()
    archive = root / "archive.tar.gz"
    archive.write_bytes(data)
    try:
        extract(archive, root / "dest")
    except Exception:
        return False
    return True


@pytest.mark.parametrize("name", list(ARCHIVES))
def test_safe_extract_agrees_with_the_twins(name: str, tmp_path: Path) -> None:
    data, safe, _ = ARCHIVES[name]
    model_ok = _extracts(lambda a, d: contract.safe_extract(str(a), str(d)), data, tmp_path / "model")
    twin_ok = _extracts(twin_training._safe_extract, data, tmp_path / "twin")
    assert model_ok == twin_ok == safe
    assert not (tmp_path / "model" / "escape.txt").exists() and not (tmp_path / "twin" / "escape.txt").exists()
    assert not Path("/tmp/sagepipe-contract-escape.txt").exists()
    if name == "plain files":
        assert (tmp_path / "model" / "dest" / "code" / "inference.py").read_bytes() == b"x = 1\n"


@pytest.mark.parametrize("name", list(ARCHIVES))
def test_safe_extract_without_extraction_filters(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Python < 3.10.12 (no PEP 706 filters): the fallback refuses at least what the filter refuses, and
    links and absolute paths too, before extracting anything."""
    monkeypatch.delattr(tarfile, "data_filter")
    data, _, safe = ARCHIVES[name]
    archive = tmp_path / "archive.tar.gz"
    archive.write_bytes(data)
    if safe:
        contract.safe_extract(str(archive), str(tmp_path / "dest"))
        assert (tmp_path / "dest" / "schema.json").read_bytes() == b"{}"
    else:
        with pytest.raises(contract.UnsafeArchiveError):
            contract.safe_extract(str(archive), str(tmp_path / "dest"))
        assert list((tmp_path / "dest").iterdir()) == []
    assert not Path("/tmp/sagepipe-contract-escape.txt").exists()


def test_safe_extract_reports_unsafe_members_as_its_error(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(ARCHIVES["parent path"][0])
    with pytest.raises(contract.UnsafeArchiveError, match="unsafe member") as info:
        contract.safe_extract(str(archive), str(tmp_path / "dest"))
    assert isinstance(info.value.__cause__, tarfile.FilterError)


ROW_VALUES = [
    "129",
    "129.0",
    " 129 ",
    "+1.29e2",
    "-0",
    "007",
    "0",
    "1234567890123456789",
    "\u0661\u0662",  # Arabic-Indic digits: float() reads them
    "0.1",
    "0.10",
    "1e400",
    "+nan",
    "1_000",
    "NA",
    " NA ",
    "",
    "N/A",
    "x",
    " X ",
    "2,651.0",  # thousands separators: a number to the contract (parse_number)
    " -1,234,567.50 ",
    "1,000",
    "2,5",  # a decimal comma: text
    "12,34",
    "1,0000",
]


def test_row_identity_is_the_cores() -> None:
    """train.py finds the champion's training rows among the test rows with the contract's row identity; it
    must be the one ValidateData wrote into the split manifest (sagepipe_core.dataset)."""
    from sagepipe_core import dataset

    assert contract.IDENTITY_BYTES == dataset.IDENTITY_BYTES
    assert contract.MANIFEST_VERSION == dataset.MANIFEST_VERSION
    assert contract.SPLIT_MANIFEST_FILE == dataset.MANIFEST_FILE
    for value in [*ROW_VALUES, None, float("nan"), 3.0, 2.5]:
        assert contract.canonical_value(value) == dataset.canonical_value(value), value
    for text in ROW_VALUES:  # the core's shortcut for CSV fields
        assert dataset._canonical_fast(text) == contract.canonical_value(text), text
    header = ["b", "a", "label"]
    for i in range(len(ROW_VALUES) - 2):
        row = ROW_VALUES[i : i + 3]
        names = sorted(header)
        assert dataset.identity_function(header)(row) == contract.row_identity(
            names, [row[header.index(n)] for n in names]
        )


def test_read_manifest_reads_what_the_core_writes(tmp_path: Path) -> None:
    from sagepipe_core import dataset

    data = dataset.parse_and_validate(
        b"a,b,label\n" + b"".join(f"{i},{i % 3},{'yes' if i % 2 else 'no'}\n".encode() for i in range(60)),
        config.parse_config(None),
    )
    where = dataset.assign_splits(data, config.parse_config(None))
    path = tmp_path / "split_manifest.json"
    path.write_text(json.dumps(dataset.manifest(data, where)))
    columns, ids, version = contract.read_manifest(str(path))
    assert columns == ["a", "b", "label"] and version == contract.MANIFEST_VERSION == 2
    assert ids == {data.identity(i) for i in range(data.n_rows) if where[i] in (0, 1)}
    for version in (3, True, "2"):
        path.write_text(json.dumps({"manifest_version": version}))
        with pytest.raises(ValueError, match="version 1 or 2"):
            contract.read_manifest(str(path))


def test_identity_reads_numbers_as_the_contract_does() -> None:
    """Issue 11 finding 1: a row's split identity comes from its parsed, canonical values. A value is a
    number to the identity exactly when ``parse_number`` (ValidateData, training, inference) reads one, so
    ``2,651.0`` and ``2651`` are one value; text the contract does not read as a number stays text."""
    for value in ROW_VALUES:
        number = values.parse_number(value)
        for canonical in (contract.canonical_value, dataset.canonical_value, dataset._canonical_fast):
            expected = value.strip() if number is None else contract.canonical_value(repr(number))
            if values.is_missing(value):
                expected = ""
            assert canonical(value) == expected, (canonical, value)
    assert dataset.canonical_value("2,651.0") == dataset.canonical_value("2651") == "2651"
    assert dataset.canonical_value("-1,234,567.50") == "-1234567.5"
    assert dataset.canonical_value("\u0661\u0662") == "\u0661\u0662"  # float() reads it; the contract does not


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet="0123456789+-.,eE_ \u0661\u00a0infaNA/", max_size=14))
def test_the_fast_canonical_text_is_the_contracts(text: str) -> None:
    """The core's shortcut (``_canonical_fast``, float() first) agrees with the contract on number-like
    text: signs, points, exponents, thousands separators, ``_``, non-ASCII digits and spaces, inf/nan."""
    assert dataset._canonical_fast(text) == dataset.canonical_value(text) == contract.canonical_value(text)
    number = values.parse_number(text)
    if number is not None:
        assert contract.canonical_value(text) == contract.canonical_value(repr(number))


#: Identities written by the version-1 code (float() canonical values; commit df73aed), of rows over the
#: columns a, b, label: a manifest inside a champion trained before version 2 holds such bytes.
V1_IDENTITIES = {
    ("2,651.0", "1.5", "yes"): "8ff6c461d9d6b6563580bff8dd021f17",
    ("2651", "1.5", "yes"): "624dcbd0f145a0a4e24d38693d278a67",
    ("129.0", " x ", "no"): "dff314ed6fa965872ca965cb756e2209",
}


def test_a_version_1_manifest_is_read_with_its_own_identity(tmp_path: Path) -> None:
    """The identity changed with manifest version 2; a champion's version-1 manifest still finds the rows
    that trained it, because read_manifest says the version and row_identity computes that version's."""
    import base64

    names = ["a", "b", "label"]
    for row, digest in V1_IDENTITIES.items():
        assert contract.row_identity(names, row, 1).hex() == digest, row
    assert contract.row_identity(names, ["2,651.0", "1.5", "yes"]) == contract.row_identity(
        names, ["2651", "1.5", "yes"]
    )
    assert contract.row_identity(names, ["2,651.0", "1.5", "yes"]).hex() != V1_IDENTITIES[("2,651.0", "1.5", "yes")]
    trained = b"".join(sorted(bytes.fromhex(d) for d in list(V1_IDENTITIES.values())[:2]))
    doc = {"manifest_version": 1, "identity_bytes": 16, "columns": names, "train": base64.b64encode(trained).decode()}
    path = tmp_path / "split_manifest.json"
    path.write_text(json.dumps(doc))
    columns, ids, version = contract.read_manifest(str(path))
    assert (columns, version) == (names, 1) and len(ids) == 2
    train = import_model_module("train")
    rows = [["2,651.0", "1.5", "yes"], ["2651.0", "1.50", "yes"], ["129.0", " x ", "no"], ["7", "1.5", "yes"]]
    frame = pd.DataFrame(rows, columns=names, dtype=str)
    mask, lineage = train.training_rows(str(path), frame)
    assert mask is not None and list(mask) == [True, True, False, False], lineage
