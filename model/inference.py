"""SageMaker inference handler for the sagepipe tabular model (scikit-learn container).

Implements the four handler functions of the SageMaker scikit-learn / inference
toolkit contract ("Deploy a model", https://sagemaker.readthedocs.io/en/stable/frameworks/sklearn/using_sklearn.html#deploy-a-scikit-learn-model
and https://github.com/aws/sagemaker-inference-toolkit):

    model = model_fn(model_dir)
    data = input_fn(request_body, request_content_type)
    prediction = predict_fn(data, model)
    body, content_type = output_fn(prediction, accept)

Request formats:

* ``text/csv``: one row per line, values in ``schema.json`` ``feature_order``, no
  header; a first line equal to the feature names (or a permutation of them, in which
  case columns are re-ordered; the target and ``excluded`` columns may be in it too) is detected and
  treated as a header. Empty cells and the missing-value tokens of ``sagepipe_contract.NA_TOKENS``
  (``NA``, ``nan``, ``null``, ``?`` ...) are missing values.
* ``application/json``: ``{"instances": [{feature: value, ...}, ...]}``; an instance may
  also be a list of values in ``feature_order``. Absent keys / ``null`` are missing
  values; unknown keys are an error (the target column is tolerated and ignored).

Responses (``accept``; ``*/*``/empty -> ``application/json``):

* ``application/json``: classifiers ``{"predictions": [{"label": str, "probabilities":
  {label: float}}]}``, regression ``{"predictions": [{"value": float}]}``;
* ``text/csv``: one label (or value) per line.

Errors: :class:`InputError` (bad request body -> HTTP 400) and
:class:`UnsupportedContentType` (content type / accept not supported -> HTTP 415), both
``ValueError`` subclasses, as the inference toolkit maps them.

Import is cheap: numpy/pandas/joblib are imported lazily inside the functions. The NA tokens and the
``schema.json`` check come from ``sagepipe_contract`` (the sibling module train.py copies into
``code/`` with this file).
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sagepipe_contract import MODEL_FILE, is_missing, load_schema, parse_number

if TYPE_CHECKING:  # pandas is imported lazily: importing this module stays cheap
    import pandas as pd

JSON = "application/json"
CSV = "text/csv"

Prediction = dict[str, Any]  # {"label": str, "probabilities": {label: float}} or {"value": float}


class InputError(ValueError):
    """The request body cannot be turned into model input (HTTP 400 in the server)."""


class UnsupportedContentType(ValueError):
    """The request Content-Type or the Accept type is not supported (HTTP 415)."""


class LoadedModel:
    """What :func:`model_fn` returns: the fitted pipeline and its schema.

    Attributes:
        pipeline: fitted sklearn Pipeline (``predict`` / ``predict_proba``).
        schema: parsed ``schema.json`` dict (see model/train.py).
        feature_order: list of feature names, in request CSV column order.
        labels: list of str labels (classifiers) or None (regression).
        problem_type: ``binary`` | ``multiclass`` | ``regression``.
    """

    def __init__(self, pipeline: Any, schema: Mapping[str, Any]) -> None:
        self.pipeline = pipeline
        self.schema = schema
        self.feature_order: list[str] = list(schema["feature_order"])
        self.types: dict[str, str] = {f["name"]: f["type"] for f in schema["features"]}
        self.labels: list[str] | None = schema.get("labels")
        self.problem_type: str = schema["problem_type"]
        #: columns a request may carry that are not features: the target and the excluded columns
        self.ignored: frozenset[str] = frozenset(
            [*([schema["target"]] if schema.get("target") else []), *(e["name"] for e in schema.get("excluded") or ())]
        )

    def __repr__(self) -> str:
        return f"LoadedModel(problem_type={self.problem_type!r}, features={len(self.feature_order)})"


class ParsedInput:
    """What :func:`input_fn` returns (validation against the schema is in predict_fn).

    Attributes:
        kind: ``"rows"`` (lists of values; CSV or JSON lists) or ``"records"``
            (JSON objects).
        items: list of rows (list) or records (dict).
        may_have_header: True for CSV, whose first row may be a header.
    """

    def __init__(self, kind: str, items: list[Any], may_have_header: bool = False) -> None:
        self.kind = kind
        self.items = items
        self.may_have_header = may_have_header

    def __len__(self) -> int:
        return len(self.items)


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _text(body: object) -> str:
    if isinstance(body, (bytes, bytearray, memoryview)):
        try:
            return bytes(body).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InputError(f"request body is not valid UTF-8: {exc}") from exc
    if isinstance(body, str):
        return body
    raise InputError(f"request body must be bytes or str, got {type(body).__name__}")


def model_fn(model_dir: str) -> LoadedModel:
    """Load the model artifacts written by train.py.

    Args:
        model_dir: directory holding ``model.joblib`` and ``schema.json`` (SageMaker
            extracts model.tar.gz to /opt/ml/model).
    Returns:
        :class:`LoadedModel`.
    Raises:
        FileNotFoundError: an artifact is missing; ValueError (``sagepipe_contract.SchemaError``):
        schema.json invalid or of an unknown schema_version.
    """
    import joblib

    schema = load_schema(model_dir)
    pipeline = joblib.load(os.path.join(model_dir, MODEL_FILE))
    return LoadedModel(pipeline, schema)


def _parse_csv(text: str) -> ParsedInput:
    try:
        rows = [row for row in csv.reader(io.StringIO(text)) if row and any(c.strip() for c in row)]
    except csv.Error as exc:
        raise InputError(f"malformed CSV: {exc}") from exc
    if not rows:
        raise InputError("empty CSV request body")
    return ParsedInput("rows", rows, may_have_header=True)


def _parse_json(text: str) -> ParsedInput:
    if not text.strip():
        raise InputError("empty JSON request body")
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise InputError(f"malformed JSON: {exc}") from exc
    if not isinstance(doc, dict) or "instances" not in doc:
        raise InputError('JSON body must be an object {"instances": [...]}')
    instances = doc["instances"]
    if not isinstance(instances, list) or not instances:
        raise InputError('"instances" must be a non-empty list')
    if all(isinstance(i, dict) for i in instances):
        return ParsedInput("records", instances)
    if all(isinstance(i, list) for i in instances):
        return ParsedInput("rows", instances)
    raise InputError('"instances" must be a list of objects (or a list of lists), not mixed/scalars')


def input_fn(request_body: bytes | str, request_content_type: str | None) -> ParsedInput:
    """Deserialize a request body.

    Args:
        request_body: bytes or str.
        request_content_type: e.g. ``text/csv``, ``application/json; charset=utf-8``.
    Returns:
        :class:`ParsedInput` (checked against the schema later by predict_fn).
    Raises:
        UnsupportedContentType: content type other than text/csv / application/json.
        InputError: empty body, malformed CSV / JSON, or JSON without a non-empty
        ``instances`` list.
    """
    ctype = _media_type(request_content_type) or JSON
    if ctype == CSV:
        return _parse_csv(_text(request_body))
    if ctype == JSON:
        return _parse_json(_text(request_body))
    raise UnsupportedContentType(f"unsupported content type {request_content_type!r}: use text/csv or application/json")


def _numeric(value: object, where: str) -> float:
    if value is None:
        return float("nan")
    if isinstance(value, bool):
        raise InputError(f"{where}: expected a number, got boolean {value!r}")
    if isinstance(value, numbers.Real):  # int, float, numpy scalars
        result = float(value)
    elif isinstance(value, str):
        if is_missing(value):
            return float("nan")
        parsed = parse_number(value)  # as train.py read the column: "2,651.0" is 2651.0
        if parsed is None:
            try:
                result = float(value)
            except ValueError as exc:
                raise InputError(f"{where}: expected a number, got {value!r}") from exc
            if math.isfinite(result):  # float() reads it ("1_000"), training did not
                raise InputError(f"{where}: expected a number, got {value!r}")
        else:
            result = parsed
    else:
        raise InputError(f"{where}: expected a number, got {type(value).__name__}")
    if math.isinf(result):
        raise InputError(f"{where}: infinite values are not allowed")
    return result


def _categorical(value: object, where: str) -> float | str:
    if value is None:
        return float("nan")
    if isinstance(value, (dict, list)):
        raise InputError(f"{where}: expected a scalar, got {type(value).__name__}")
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral) and math.isnan(value):
        return float("nan")
    if is_missing(value):
        return float("nan")
    return str(value).strip()


def _strip_header(items: list[Any], order: Sequence[str], extra: frozenset[str] = frozenset()) -> tuple[str, list[Any]]:
    """CSV: drop a first row equal to the feature names; a permutation of them (plus any of ``extra``: the
    target and the excluded columns) turns the rows into records keyed by that header.

    Returns ``(kind, items)``.
    """
    kind = "rows"
    first = [str(c).strip() for c in items[0]]
    if first == list(order):
        items = items[1:]
    elif set(first) >= set(order) and set(first) <= set(order) | extra and len(set(first)) == len(first):
        header = first
        records = [dict(zip(header, row, strict=True)) if len(row) == len(header) else row for row in items[1:]]
        bad = [i for i, r in enumerate(records) if not isinstance(r, dict)]
        if bad:
            raise InputError(f"row {bad[0] + 2} has a different number of values than the header ({len(header)})")
        kind, items = "records", records
    if not items:
        raise InputError("CSV body has a header row but no data rows")
    return kind, items


def _items(data: object, order: Sequence[str], extra: frozenset[str] = frozenset()) -> tuple[str, list[Any]]:
    """The ``(kind, items)`` of a :class:`ParsedInput` or a DataFrame holding the feature columns."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        missing = [c for c in order if c not in data.columns]
        if missing:
            raise InputError("input is missing features: {}".format(", ".join(missing)))
        return "records", data[list(order)].to_dict("records")
    if isinstance(data, ParsedInput):
        if data.kind == "rows" and data.may_have_header and data.items:
            return _strip_header(list(data.items), order, extra)
        return data.kind, list(data.items)
    raise InputError(f"unsupported input object {type(data).__name__}")


def _values(kind: str, item: Any, i: int, model: LoadedModel) -> Mapping[str, Any]:
    """One row or record as ``{feature: raw value}``; raises InputError for a wrong length or unknown keys."""
    order = model.feature_order
    if kind == "rows":
        if not isinstance(item, list) or len(item) != len(order):
            count = len(item) if isinstance(item, list) else 0
            raise InputError(f"row {i} has {count} values, expected {len(order)} (in order: {','.join(order)})")
        return dict(zip(order, item, strict=True))
    unknown = sorted(k for k in item if k not in model.types and k not in model.ignored)
    if unknown:
        raise InputError("instance {} has unknown features: {}".format(i, ", ".join(map(str, unknown))))
    values: Mapping[str, Any] = item
    return values


def _to_frame(data: object, model: LoadedModel) -> pd.DataFrame:
    import pandas as pd

    order = model.feature_order
    kind, items = _items(data, order, model.ignored)
    columns: dict[str, list[float | str]] = {name: [] for name in order}
    for i, item in enumerate(items, start=1):
        values = _values(kind, item, i, model)
        for name in order:
            where = f"row {i}, feature {name!r}"
            raw = values.get(name)
            if model.types[name] == "numeric":
                columns[name].append(_numeric(raw, where))
            else:
                columns[name].append(_categorical(raw, where))
    frame = pd.DataFrame(columns, columns=order)
    for name in order:
        frame[name] = frame[name].astype("float64" if model.types[name] == "numeric" else object)
    return frame


def predict_fn(input_data: object, model: LoadedModel) -> list[Prediction]:
    """Predict for every input row.

    Args:
        input_data: :class:`ParsedInput` from input_fn (or a pandas DataFrame holding
            the feature columns).
        model: :class:`LoadedModel` from model_fn.
    Returns:
        list (one per row) of ``{"label": str, "probabilities": {label: float}}``
        (classifiers; probabilities sum to 1) or ``{"value": float}`` (regression).
    Raises:
        InputError: wrong number of CSV values, unknown JSON keys, non-numeric value for
        a numeric feature, infinite values.
    """
    frame = _to_frame(input_data, model)
    if model.problem_type == "regression":
        return [{"value": float(v)} for v in model.pipeline.predict(frame)]
    proba = model.pipeline.predict_proba(frame)
    classes = [str(c) for c in model.pipeline.classes_]
    out = []
    for row in proba:
        probs = {label: float(p) for label, p in zip(classes, row, strict=True)}
        best = max(range(len(classes)), key=lambda j: float(row[j]))
        out.append({"label": classes[best], "probabilities": probs})
    return out


def _choose_accept(accept: str | None) -> str | None:
    if not accept:
        return JSON
    for part in str(accept).split(","):
        media = _media_type(part)
        if media in (JSON, CSV):
            return media
        if media in ("*/*", "application/*", ""):
            return JSON
        if media == "text/*":
            return CSV
    return None


def output_fn(prediction: Sequence[Prediction], accept: str | None) -> tuple[str, str]:
    """Serialize predictions.

    Args:
        prediction: list from predict_fn.
        accept: Accept header value (may list several types, may be ``*/*`` or None).
    Returns:
        ``(body: str, content_type: str)`` — the tuple form both the scikit-learn
        container and the inference toolkit accept.
    Raises:
        UnsupportedContentType: accept is neither application/json nor text/csv.
    """
    media = _choose_accept(accept)
    if media is None:
        raise UnsupportedContentType(f"unsupported accept type {accept!r}: use application/json or text/csv")
    if media == JSON:
        return json.dumps({"predictions": list(prediction)}), JSON
    lines = []
    for item in prediction:
        lines.append(item["label"] if "label" in item else repr(float(item["value"])))
    return "\n".join(lines) + "\n", CSV
