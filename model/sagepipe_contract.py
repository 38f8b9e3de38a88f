"""The sagepipe model contract: what ``train.py`` writes and ``inference.py`` and the pipeline read.

One source inside the code bundle. ``sagepipe.codebundle.build`` tars every file of ``model/`` into
``sourcedir.tar.gz``, so ``train.py`` imports this module as a sibling in the training container
(script mode runs the entry point from its directory), and ``train.py`` copies it next to
``inference.py`` into ``model.tar.gz`` ``code/``: serving imports ``inference.py`` from
``SAGEMAKER_SUBMIT_DIRECTORY`` (``/opt/ml/model/code``), which the container puts on ``sys.path``, so the
sibling import works there too. Standard library only, Python 3.10 syntax (the SageMaker scikit-learn
1.4-2 container's Python).

Copies that stay, and why: the core layer (``sagepipe_core``, Lambda python3.13) is deployed without
``model/`` and cannot import it; the twin's extraction of ``sourcedir.tar.gz`` emulates the SageMaker
platform, not this code. Each of those copies is pinned to this module by ``tests/unit/test_contract.py``
(the NA tokens, the metric table, the ``schema.json`` check and the tar-extraction policy must agree), so
a change here that the other side does not follow fails the unit tests.

Contents: the ``schema.json`` / ``evaluation.json`` versions and shapes, the artifact names of
``model.tar.gz``, the metric table per problem type, the missing-value tokens and the number and
column-type rules (:func:`is_missing`, :func:`parse_number`, :func:`column_type`: ValidateData, training
and inference read a cell alike), :func:`check_schema`, :func:`safe_extract`, and the row identity of the
split manifest (:func:`row_identity`, :func:`read_manifest`; the core's copy is ``sagepipe_core.dataset``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
import tarfile
from collections.abc import Sequence
from typing import Any

#: ``schema_version`` of ``schema.json`` and ``evaluation.json``.
SCHEMA_VERSION = 1
PROBLEM_TYPES: tuple[str, ...] = ("binary", "multiclass", "regression")
FEATURE_TYPES: tuple[str, ...] = ("numeric", "categorical")
#: The data channels, in report order.
SPLITS: tuple[str, ...] = ("train", "validation", "test")
#: Metrics ``train.py`` prints and writes per problem type (``[metric] <split>:<name>=<value>``).
METRIC_NAMES: dict[str, tuple[str, ...]] = {
    "binary": ("auc", "accuracy", "f1", "logloss"),
    "multiclass": ("macro_f1", "accuracy", "logloss"),
    "regression": ("rmse", "mae", "r2"),
}
#: The missing-value tokens: a cell whose stripped text is one of them is missing, in ValidateData, in
#: training and at inference. pandas.read_csv's default NA tokens (``pandas._libs.parsers.STR_NA_VALUES``)
#: plus ``?`` (the UCI repository's missing marker). ``train.py`` reads CSVs with ``na_filter=False`` and
#: applies exactly this set (:func:`is_missing`), so pandas' own list does not decide.
NA_TOKENS: frozenset[str] = frozenset(
    [
        "",
        "#N/A",
        "#N/A N/A",
        "#NA",
        "-1.#IND",
        "-1.#QNAN",
        "-NaN",
        "-nan",
        "1.#IND",
        "1.#QNAN",
        "<NA>",
        "?",
        "N/A",
        "NA",
        "NULL",
        "NaN",
        "None",
        "n/a",
        "nan",
        "null",
    ]
)
#: A plain decimal number (ASCII digits, optional sign, fraction and exponent): what ``float()`` reads,
#: without ``inf``/``nan`` words, ``_`` separators or non-ASCII digits.
NUMBER_PATTERN = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
#: A number with ``,`` thousands separators (``2,651.0``; groups of exactly three digits). In a
#: comma-delimited CSV such a value is one field only when quoted (``"2,651.0"``); unquoted, it splits into
#: two fields and the row is ragged. A decimal comma (``2,5``) does not match and stays a stray token.
GROUPED_NUMBER_PATTERN = r"[+-]?[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]*)?"
_NUMBER = re.compile(NUMBER_PATTERN)
_GROUPED = re.compile(GROUPED_NUMBER_PATTERN)
#: A column is numeric when its non-missing values are numbers, except at most this fraction of them (and
#: at most :data:`STRAY_MAX_DISTINCT` distinct other values): those stray tokens count as missing.
STRAY_MAX_FRACTION = 0.01
STRAY_MAX_DISTINCT = 5


def is_missing(value: object) -> bool:
    """True for ``None`` and for text whose stripped form is one of :data:`NA_TOKENS`."""
    return value is None or (isinstance(value, str) and value.strip() in NA_TOKENS)


def parse_number(text: str) -> float | None:
    """The finite number ``text`` spells, else None.

    ``text`` is stripped, then must match :data:`NUMBER_PATTERN` or :data:`GROUPED_NUMBER_PATTERN`
    (``"1e999"``, ``"inf"``, ``"2,5"`` and words are not numbers).
    """
    token = text.strip()
    if _NUMBER.fullmatch(token):
        value = float(token)
    elif _GROUPED.fullmatch(token):
        value = float(token.replace(",", ""))
    else:
        return None
    return value if math.isfinite(value) else None


def column_type(present: int, strays: int, distinct_strays: int) -> str:
    """The type of a feature column from its counts over every row of the data set.

    Args:
        present: non-missing cells.
        strays: those of them that are not numbers (:func:`parse_number`).
        distinct_strays: distinct stripped texts among the strays.

    Returns:
        ``"numeric"`` when no cell is a stray, or when some cells are numbers and the strays are at most
        :data:`STRAY_MAX_FRACTION` of ``present`` and at most :data:`STRAY_MAX_DISTINCT` distinct texts
        (they are then treated as missing); else ``"categorical"``.
    """
    if strays == 0:
        return "numeric"
    if strays < present and strays <= STRAY_MAX_FRACTION * present and distinct_strays <= STRAY_MAX_DISTINCT:
        return "numeric"
    return "categorical"


# Members of model.tar.gz (SageMaker tars SM_MODEL_DIR as is) and of its code/ directory.
MODEL_ARCHIVE = "model.tar.gz"
MODEL_FILE = "model.joblib"
SCHEMA_FILE = "schema.json"
EVALUATION_FILE = "evaluation.json"
CODE_DIR = "code"
#: The run's split manifest (written by ValidateData, ``sagepipe_core.dataset.manifest``), copied from the
#: ``manifest`` channel into ``model.tar.gz``: the identities of the rows that trained the model.
SPLIT_MANIFEST_FILE = "split_manifest.json"
#: ``manifest_version`` of the split manifests ValidateData writes now. Version 2: a field's canonical
#: text reads numbers as :func:`parse_number` does (``2,651.0`` is ``2651``; non-ASCII digits are text);
#: version 1 (before it) read them with ``float()``. :func:`read_manifest` reads both, and says which, so
#: a champion trained under version 1 has its rows found with the identity it was written with.
MANIFEST_VERSION = 2
MANIFEST_VERSIONS: tuple[int, ...] = (1, 2)
IDENTITY_BYTES = 16
#: What ``train.py`` copies into ``code/``: the inference program and the modules it imports.
CODE_FILES: tuple[str, ...] = ("inference.py", "sagepipe_contract.py")


class SchemaError(ValueError):
    """``schema.json`` is malformed or of an unknown ``schema_version``."""


class UnsafeArchiveError(ValueError):
    """A tar archive has a member that would land outside the destination, a link or a device."""


def check_schema(doc: object) -> dict[str, Any]:
    """Check a parsed ``schema.json`` document against the contract.

    The same checks as ``sagepipe_core.schema.ModelSchema.parse`` (pinned by a test): a dict with
    ``schema_version`` 1, ``problem_type``, ``features`` (each with a ``name`` and a ``type`` in
    :data:`FEATURE_TYPES`) and a ``feature_order`` naming exactly the features.

    Args:
        doc: the document, e.g. ``json.load`` of ``schema.json``.
    Returns:
        ``doc`` itself, now known to be a dict of that shape.
    Raises:
        SchemaError: what is wrong.
    """
    if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION:
        version = doc.get("schema_version") if isinstance(doc, dict) else doc
        raise SchemaError(f"unsupported schema_version {version!r}")
    try:
        names = set()
        for feature in doc["features"]:
            if feature["type"] not in FEATURE_TYPES:
                raise SchemaError(f"feature {feature['name']!r} has unknown type {feature['type']!r}")
            names.add(feature["name"])
        if set(doc["feature_order"]) != names:
            raise SchemaError("feature_order does not list the features")
        if "problem_type" not in doc:
            raise KeyError("problem_type")
    except (KeyError, TypeError) as exc:
        raise SchemaError(f"schema.json is malformed: {exc!r}") from exc
    return doc


def load_schema(model_dir: str) -> dict[str, Any]:
    """Read and check ``<model_dir>/schema.json``.

    Raises:
        FileNotFoundError: no schema.json; SchemaError: invalid JSON or shape.
    """
    with open(os.path.join(model_dir, SCHEMA_FILE), encoding="utf-8") as fh:
        try:
            doc = json.load(fh)
        except ValueError as exc:
            raise SchemaError(f"schema.json is not valid JSON: {exc}") from exc
    return check_schema(doc)


def _check_members(tar: tarfile.TarFile, dest: str) -> None:
    dest_real = os.path.realpath(dest)
    for member in tar.getmembers():
        target = os.path.realpath(os.path.join(dest, member.name))
        if not (target == dest_real or target.startswith(dest_real + os.sep)):
            raise UnsafeArchiveError(f"unsafe path in archive: {member.name!r}")
        if member.issym() or member.islnk() or member.isdev():
            raise UnsafeArchiveError(f"unsupported member type in archive: {member.name!r}")


def safe_extract(archive: str, dest: str) -> None:
    """Extract a (possibly compressed) tar archive into ``dest`` without leaving it.

    With Python's extraction filters (3.10.12+, PEP 706) this is ``extractall(filter="data")``, the
    policy the SageMaker Python SDK applies to model archives: no absolute or ``..`` paths, no links
    pointing outside ``dest``, no device files. Without them (older 3.10 builds) every member is checked
    first and links and devices are refused altogether (stricter, never looser).

    Args:
        archive: path of the ``.tar`` / ``.tar.gz``.
        dest: directory to extract into (created if missing).
    Raises:
        UnsafeArchiveError: a member breaks the policy (nothing is extracted in the fallback; with the
            filter, members before it may be).
        tarfile.ReadError: not a tar archive.
    """
    os.makedirs(dest, exist_ok=True)
    with tarfile.open(archive, "r:*") as tar:
        if hasattr(tarfile, "data_filter"):
            try:
                tar.extractall(dest, filter="data")
            except tarfile.FilterError as exc:
                raise UnsafeArchiveError(f"unsafe member in archive: {exc}") from exc
        else:  # Python < 3.10.12: no extraction filters
            _check_members(tar, dest)
            tar.extractall(dest)  # every member was checked by _check_members


# --------------------------------------------------------------------------------------
# Row identity and the split manifest
# --------------------------------------------------------------------------------------
def canonical_value(value: object, version: int = MANIFEST_VERSION) -> str:
    """A field's canonical text for :func:`row_identity` under identity ``version`` (:data:`MANIFEST_VERSIONS`).

    Surrounding whitespace is dropped; a missing value (None, a float NaN, an :data:`NA_TOKENS` token) is
    ``""``; a number is written one way (``129``, ``129.0``, ``1.29e2`` and ``+129`` are ``129``, and in
    version 2 ``1,290.0`` is ``1290``; others ``repr(float)``); other text is kept (case-sensitive).
    Version 2 (current) takes a number to be what :func:`parse_number` reads, so a row's identity comes
    from the values training parses; version 1 (manifests written before it) used ``float()``: ``2,651.0``
    stayed text and Arabic-Indic digits were numbers.
    """
    if value is None or (isinstance(value, float) and value != value):
        return ""
    text = str(value).strip()
    if text in NA_TOKENS:
        return ""
    if version == 1:
        return _canonical_v1(text)
    number = parse_number(text)
    if number is None:
        return text
    if number.is_integer() and abs(number) < 2**53:
        return str(int(number))
    return repr(number)


def _canonical_v1(text: str) -> str:
    """Version 1's canonical text of a stripped, non-missing field (``float()`` decides what a number is)."""
    if "_" in text:  # float() accepts "1_000"; a CSV writer never writes a number so
        return text
    try:
        number = float(text)
    except ValueError:
        return text
    if not math.isfinite(number):
        return text
    if number.is_integer() and abs(number) < 2**53:
        return str(int(number))
    return repr(number)


def row_identity(names: Sequence[str], values: Sequence[object], version: int = MANIFEST_VERSION) -> bytes:
    r"""A row's identity: SHA-256 (first :data:`IDENTITY_BYTES` bytes) of its canonical values by column name.

    ``names`` sorted, ``values`` in that order; the text hashed is ``name \x1f canonical value`` per
    column (:func:`canonical_value` of identity ``version``), joined by ``\x1e``. Column order, number
    formatting (thousands separators included) and quoting do not change it.
    """
    text = "\x1e".join(f"{n}\x1f{canonical_value(v, version)}" for n, v in zip(names, values, strict=True))
    return hashlib.sha256(text.encode("utf-8")).digest()[:IDENTITY_BYTES]


def read_manifest(path: str) -> tuple[list[str], set[bytes], int]:
    """Read a split manifest: ``(columns, identities of its train and validation rows, version)``.

    ``version`` is its ``manifest_version`` (one of :data:`MANIFEST_VERSIONS`): compute the rows to look
    up with ``row_identity(names, values, version)``, the identity the manifest was written with.

    Raises:
        ValueError: not a manifest of a version in :data:`MANIFEST_VERSIONS` (bad JSON, shape or base64).
        OSError: the file cannot be read.
    """
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    version = doc.get("manifest_version") if isinstance(doc, dict) else None
    if isinstance(version, bool) or version not in MANIFEST_VERSIONS:
        raise ValueError(f"not a split manifest of version {' or '.join(map(str, MANIFEST_VERSIONS))}")
    size = int(doc.get("identity_bytes", IDENTITY_BYTES))
    columns = [str(c) for c in doc["columns"]]
    ids: set[bytes] = set()
    for split in ("train", "validation"):
        raw = base64.b64decode(doc.get(split) or "", validate=True)
        if len(raw) % size:
            raise ValueError(f"manifest {split} is not a whole number of {size}-byte identities")
        ids.update(raw[i : i + size] for i in range(0, len(raw), size))
    return columns, ids, int(version)
