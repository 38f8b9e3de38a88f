"""Record validation against a model's ``schema.json`` (the contract written by ``model/train.py``).

``schema.json`` shape (``schema_version`` 1)::

    {"schema_version": 1, "target": str, "problem_type": "binary"|"multiclass"|"regression",
     "labels": [str] | null,
     "features": [{"name", "type": "numeric"|"categorical", "nullable": bool,
                   "min", "max" (numeric), "categories": [str] (categorical)}],
     "feature_order": [str],
     "excluded": [{"name", "reason"}] (optional: columns of the data set that are not features),
     "missing_features": "impute"|"reject" (optional, default impute)}

:func:`validate_records` checks every record of a request and returns the records normalised for the
inference container (``model/inference.py``: numeric → float, categorical → str, missing → ``None``;
a cell is missing, and a numeric string is read, as in training: :mod:`.values`),
or raises :class:`RecordErrors` naming the record index and the field of each problem. Pure stdlib:
the predict Lambda imports this on its cold start.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from typing import Any

from .values import NA_TOKENS, is_missing, parse_number

__all__ = [
    "NA_TOKENS",
    "CheckedRecords",
    "Feature",
    "ModelSchema",
    "RecordErrors",
    "SchemaError",
    "check_records",
    "parse_csv",
    "validate_records",
]

MAX_REPORTED_ERRORS = 50
UNSEEN_REJECT = "reject"
UNSEEN_MAP = "map_to_unknown"
MISSING_IMPUTE = "impute"
MISSING_REJECT = "reject"


class SchemaError(ValueError):
    """``schema.json`` is missing fields or has an unknown ``schema_version``."""


@dataclass(frozen=True)
class Feature:
    """One feature of the schema.

    ``type`` is ``numeric`` or ``categorical``; ``categories`` is a frozenset of the training values
    (categorical only).
    """

    name: str
    type: str
    nullable: bool
    categories: frozenset[str] = frozenset()
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class ModelSchema:
    """A parsed ``schema.json``. ``raw`` is the document as read (returned by ``GET /models/{model}``)."""

    target: str | None
    problem_type: str
    labels: tuple[str, ...] | None
    features: dict[str, Feature]
    feature_order: tuple[str, ...]
    raw: dict[str, Any] = field(compare=False, repr=False)
    excluded: frozenset[str] = frozenset()
    missing_features: str = MISSING_IMPUTE

    @classmethod
    def parse(cls, doc: Any) -> ModelSchema:
        """Parse a ``schema.json`` document. Raises :class:`SchemaError`."""
        if not isinstance(doc, dict) or doc.get("schema_version") != 1:
            raise SchemaError(
                f"unsupported schema_version {doc.get('schema_version') if isinstance(doc, dict) else doc!r}"
            )
        try:
            feats = {}
            for f in doc["features"]:
                if f["type"] not in ("numeric", "categorical"):
                    raise SchemaError(f"feature {f['name']!r} has unknown type {f['type']!r}")
                feats[f["name"]] = Feature(
                    name=f["name"],
                    type=f["type"],
                    nullable=bool(f.get("nullable", False)),
                    categories=frozenset(str(c) for c in f.get("categories") or ()),
                    min=f.get("min"),
                    max=f.get("max"),
                )
            order = tuple(doc["feature_order"])
            if set(order) != set(feats):
                raise SchemaError("feature_order does not list the features")
            labels = doc.get("labels")
            missing = doc.get("missing_features", MISSING_IMPUTE)
            if missing not in (MISSING_IMPUTE, MISSING_REJECT):
                raise SchemaError(f"unknown missing_features policy {missing!r}")
            return cls(
                target=doc.get("target"),
                problem_type=doc["problem_type"],
                labels=tuple(str(x) for x in labels) if labels else None,
                features=feats,
                feature_order=order,
                raw=doc,
                excluded=frozenset(str(e["name"]) for e in doc.get("excluded") or ()),
                missing_features=missing,
            )
        except (KeyError, TypeError) as exc:
            raise SchemaError(f"schema.json is malformed: {exc!r}") from exc


@dataclass
class RecordErrors(Exception):
    """Records that break the schema.

    ``errors``: ``[{"index": int (0-based record), "field": str | None,
    "code": str, "message": str}]`` (at most :data:`MAX_REPORTED_ERRORS`); ``total``: how many in all.

    Codes: ``unknown_feature``, ``missing_feature``, ``wrong_type``, ``non_finite``, ``unseen_category``,
    ``not_an_object``, ``wrong_value_count``.
    """

    errors: list[dict[str, Any]]
    total: int

    def __str__(self) -> str:
        return f"{self.total} schema violation(s)"


class _Collector:
    def __init__(self) -> None:
        self.errors: list[dict[str, Any]] = []
        self.total = 0
        self.bad: set[int] = set()  # every record with an error (not capped)

    def add(self, index: int, name: str | None, code: str, message: str) -> None:
        self.total += 1
        self.bad.add(index)
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append({"index": index, "field": name, "code": code, "message": message})


def _spells_non_finite(text: str) -> bool:
    try:
        return not math.isfinite(float(text))
    except ValueError:
        return False


def _check_value(
    feat: Feature,
    value: Any,
    index: int,
    out: _Collector,
    unseen: str,
    warnings: list[dict[str, Any]],
    imputed: list[str],
    missing: str,
) -> Any:
    """One field → its normalised value (or ``None`` after recording an error).

    A missing value of a feature training never saw missing is an error under ``missing="reject"``, and
    is added to ``imputed`` under ``"impute"``. No value is echoed in messages (feature values are not
    logged or reflected by default).
    """
    name = feat.name
    if is_missing(value):
        if not feat.nullable:
            if missing == MISSING_REJECT:
                out.add(
                    index, name, "missing_feature", f"feature {name!r} is required (training saw no missing values)"
                )
            else:
                imputed.append(name)
        return None
    if feat.type == "numeric":
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            out.add(index, name, "wrong_type", f"feature {name!r} must be a number, got {type(value).__name__}")
            return None
        if isinstance(value, str):
            parsed = parse_number(value)  # as training read the column (thousands separators included)
            if parsed is None:
                if _spells_non_finite(value):
                    out.add(index, name, "non_finite", f"feature {name!r} must be a finite number")
                else:
                    out.add(index, name, "wrong_type", f"feature {name!r} must be a number, got a non-numeric string")
                return None
            value = parsed
        number = float(value)
        if not math.isfinite(number):
            out.add(index, name, "non_finite", f"feature {name!r} must be a finite number")
            return None
        return number
    if isinstance(value, (dict, list)) or isinstance(value, bool):
        out.add(index, name, "wrong_type", f"feature {name!r} must be a string category, got {type(value).__name__}")
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            out.add(index, name, "non_finite", f"feature {name!r} must be a category, got a non-finite number")
            return None
        text = str(int(value)) if value.is_integer() and str(int(value)) in feat.categories else str(value)
    else:
        text = str(value).strip()  # training stripped every cell
    if feat.categories and text not in feat.categories:
        if unseen == UNSEEN_REJECT:
            out.add(index, name, "unseen_category", f"feature {name!r} has a category not seen in training")
            return None
        warnings.append({"index": index, "field": name, "code": "unseen_category_mapped_to_unknown"})
    return text


@dataclass
class CheckedRecords:
    """Every record of a request, checked (:func:`check_records`).

    ``records``: the normalised record, or ``None`` where the record has an error; ``errors`` (at most
    :data:`MAX_REPORTED_ERRORS`) and ``total`` as in :class:`RecordErrors`; ``bad``: the indexes of the
    records with an error (all of them); ``warnings``: ``[{"index", "field", "code":
    "unseen_category_mapped_to_unknown"}]`` and ``[{"index", "fields", "code": "missing_feature_imputed"}]``
    (one per record).
    """

    records: list[dict[str, Any] | None]
    errors: list[dict[str, Any]]
    total: int
    bad: set[int]
    warnings: list[dict[str, Any]]


def check_records(
    schema: ModelSchema, records: list[Any], *, unseen: str = UNSEEN_REJECT, missing: str | None = None
) -> CheckedRecords:
    """Check each of ``records`` (JSON objects, or lists of values in ``feature_order``) against ``schema``.

    Each good record becomes ``{feature: float | str | None}`` in feature order (the target column and the
    schema's ``excluded`` columns, if present, are dropped). ``unseen``: ``reject`` or ``map_to_unknown``
    (the model's encoder ignores unknown categories; a warning says so). ``missing``: ``impute`` or
    ``reject`` for a missing feature that training never saw missing; default the schema's
    ``missing_features`` (the per-model config's, recorded at training). Under ``impute`` the record goes on
    with ``None`` (the model pipeline imputes it) and a ``missing_feature_imputed`` warning.
    """
    policy = missing or schema.missing_features
    out = _Collector()
    warnings: list[dict[str, Any]] = []
    normalised: list[dict[str, Any] | None] = []
    order, feats, target = schema.feature_order, schema.features, schema.target
    for i, rec in enumerate(records):
        if isinstance(rec, list):
            if len(rec) != len(order):
                out.add(
                    i,
                    None,
                    "wrong_value_count",
                    f"record has {len(rec)} values, expected {len(order)} in feature_order",
                )
                normalised.append(None)
                continue
            rec = dict(zip(order, rec, strict=True))
        elif not isinstance(rec, dict):
            out.add(i, None, "not_an_object", "each instance must be an object {feature: value}")
            normalised.append(None)
            continue
        for key in rec:
            if key not in feats and key != target and key not in schema.excluded:
                out.add(i, str(key), "unknown_feature", f"{str(key)[:64]!r} is not a feature of this model version")
        imputed: list[str] = []
        values = {n: _check_value(feats[n], rec.get(n), i, out, unseen, warnings, imputed, policy) for n in order}
        if imputed and i not in out.bad:
            warnings.append({"index": i, "fields": imputed, "code": "missing_feature_imputed"})
        normalised.append(None if i in out.bad else values)
    return CheckedRecords(normalised, out.errors, out.total, out.bad, warnings)


def validate_records(
    schema: ModelSchema, records: list[Any], *, unseen: str = UNSEEN_REJECT, missing: str | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """All-or-nothing :func:`check_records`: ``(normalised_records, warnings)``.

    Raises :class:`RecordErrors` if any record breaks the schema.
    """
    checked = check_records(schema, records, unseen=unseen, missing=missing)
    if checked.total:
        raise RecordErrors(checked.errors, checked.total)
    return [r for r in checked.records if r is not None], checked.warnings


def parse_csv(schema: ModelSchema, text: str) -> list[Any]:
    """CSV body → records.

    The first row is a header if it names exactly the schema's features (any order,
    the target column and the ``excluded`` columns allowed); otherwise every row is values in ``feature_order``. Blank lines are
    skipped. Returns dicts (with a header) or lists (without). Raises ``ValueError`` (malformed CSV).
    """
    rows = [r for r in csv.reader(io.StringIO(text), strict=True) if r and any(c.strip() for c in r)]
    if not rows:
        return []
    first = [c.strip() for c in rows[0]]
    names = set(schema.feature_order) | schema.excluded | ({schema.target} if schema.target else set())
    if set(first) >= set(schema.feature_order) and set(first) <= names and len(set(first)) == len(first):
        return [dict(zip(first, r, strict=True)) if len(r) == len(first) else r for r in rows[1:]]
    return rows
