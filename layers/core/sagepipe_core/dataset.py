"""The data-set contract: CSV checks, deterministic stratified splits, quarantine.

Pure Python (``csv`` module). A failing check raises :class:`InvalidDatasetError` whose details name
the check, the column and the row counts; :func:`quarantine` copies the object and writes that reason
next to it. Nothing is ever deleted.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .config import ModelConfig
from .errors import InvalidDatasetError

_OTHER_DELIMITERS = (";", "\t", "|")


@dataclass
class Dataset:
    """A parsed, validated CSV: ``header`` (column names), ``rows`` (lists of str), ``target``."""

    header: list[str]
    rows: list[list[str]]
    target: str
    class_counts: dict[str, int] = field(default_factory=dict)

    @property
    def target_index(self) -> int:
        """Column index of the target."""
        return self.header.index(self.target)

    def summary(self) -> dict[str, Any]:
        """``{"rows", "columns", "target", "class_counts"}`` for the run record."""
        return {
            "rows": len(self.rows),
            "columns": len(self.header),
            "target": self.target,
            "class_counts": self.class_counts,
        }


def _fail(check: str, message: str, **details: Any) -> InvalidDatasetError:
    return InvalidDatasetError(message, reason=check, check=check, **details)


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def parse_and_validate(body: bytes, config: ModelConfig) -> Dataset:  # noqa: C901 - split pending (issue 8; the streaming parse of issue 9 item 7 replaces it)
    """Parse ``body`` as a comma-separated UTF-8 CSV with a header row and check it against ``config``.

    Checks, in order (the ``check`` name is the quarantine reason): ``encoding`` (UTF-8, BOM allowed),
    ``empty``, ``delimiter`` (must be ``,``), ``header`` (blank names), ``duplicate_columns``,
    ``ragged_rows`` (field count differs from the header), ``missing_target_column``,
    ``missing_labels``, ``too_few_rows``, ``too_few_classes`` / ``too_few_rows_per_class``
    (classification), ``non_numeric_target`` (regression), ``empty_column``, ``constant_column``.
    Raises :class:`InvalidDatasetError`; returns the :class:`Dataset` otherwise.
    """
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _fail("encoding", f"file is not UTF-8: byte {exc.start} is invalid", byte_offset=exc.start) from exc
    if not text.strip():
        raise _fail("empty", "file is empty")
    first_line = text.split("\n", 1)[0]
    if "," not in first_line:
        found = [d for d in _OTHER_DELIMITERS if d in first_line]
        if found:
            raise _fail("delimiter", f"header uses {found[0]!r} as delimiter; sagepipe expects ','", delimiter=found[0])
    try:
        records = [r for r in csv.reader(io.StringIO(text, newline="")) if r]
    except csv.Error as exc:
        raise _fail("parse", f"CSV does not parse: {exc}") from exc
    header = [h.strip() for h in records[0]]
    rows = records[1:]
    blank = [i for i, h in enumerate(header) if not h]
    if blank:
        raise _fail("header", f"header has {len(blank)} blank column name(s)", column_indexes=blank)
    dupes = sorted(name for name, n in Counter(header).items() if n > 1)
    if dupes:
        raise _fail("duplicate_columns", f"duplicate column names: {dupes}", columns=dupes)
    ragged = [i + 2 for i, r in enumerate(rows) if len(r) != len(header)]
    if ragged:
        raise _fail(
            "ragged_rows",
            f"{len(ragged)} row(s) do not have {len(header)} fields",
            rows=len(ragged),
            first_lines=ragged[:10],
        )
    target = config.target or header[-1]
    if target not in header:
        raise _fail(
            "missing_target_column", f"target column {target!r} is not in the header", column=target, header=header
        )
    t = header.index(target)
    missing = sum(1 for r in rows if not r[t].strip())
    if missing:
        raise _fail(
            "missing_labels", f"{missing} row(s) have no value in target column {target!r}", column=target, rows=missing
        )
    if len(rows) < config.min_rows:
        raise _fail(
            "too_few_rows",
            f"{len(rows)} data rows; at least {config.min_rows} are required",
            rows=len(rows),
            min_rows=config.min_rows,
        )
    counts: dict[str, int] = {}
    if config.problem_type == "regression":
        bad = sum(1 for r in rows if not _is_number(r[t]))
        if bad:
            raise _fail("non_numeric_target", f"{bad} target value(s) are not finite numbers", column=target, rows=bad)
    else:
        counts = dict(sorted(Counter(r[t].strip() for r in rows).items()))
        need = 2 if config.problem_type == "binary" else 3
        if len(counts) < need or (config.problem_type == "binary" and len(counts) > 2):
            raise _fail(
                "too_few_classes" if len(counts) < need else "too_many_classes",
                f"{config.problem_type} needs {'exactly 2' if need == 2 else 'at least 3'} classes; "
                f"found {len(counts)}",
                column=target,
                class_counts=counts,
            )
        small = {k: v for k, v in counts.items() if v < config.min_rows_per_class}
        if small:
            raise _fail(
                "too_few_rows_per_class",
                f"classes below {config.min_rows_per_class} rows: {small}",
                column=target,
                class_counts=counts,
                min_rows_per_class=config.min_rows_per_class,
            )
    for i, name in enumerate(header):
        if i == t:
            continue
        values = {r[i].strip() for r in rows}
        if values == {""}:
            raise _fail("empty_column", f"column {name!r} is empty in every row", column=name, rows=len(rows))
        if len(values - {""}) == 1 and "" not in values:
            raise _fail(
                "constant_column",
                f"column {name!r} has the same value in every row",
                column=name,
                rows=len(rows),
                value=next(iter(values)),
            )
    return Dataset(header=header, rows=rows, target=target, class_counts=counts)


def _row_key(seed: int, row: list[str]) -> str:
    return hashlib.sha256(f"{seed}\0".encode() + "\x1f".join(row).encode("utf-8")).hexdigest()


def split(dataset: Dataset, config: ModelConfig) -> dict[str, list[list[str]]]:
    """Deterministic split into ``{"train", "validation", "test"}`` row lists.

    Each row's place is decided by a seeded SHA-256 of its content (``split.seed``); within each class
    (classification: stratified) rows are ordered by that hash and cut at the configured fractions
    (every class with 3+ rows gets at least one row in each split). Consequences:

    - same data + same config → same split;
    - stable across data versions: a row keeps its split when rows are added, except near the cut
      points, so rows that trained the champion almost never land in the new test split (the champion
      comparison is not flattered by leakage);
    - identical rows always land in the same split.
    Rows keep their original order inside each split.
    """
    t = dataset.target_index
    seed = config.split.seed
    if config.problem_type == "regression":
        groups = [list(range(len(dataset.rows)))]
    else:
        by_class: dict[str, list[int]] = {}
        for i, r in enumerate(dataset.rows):
            by_class.setdefault(r[t].strip(), []).append(i)
        groups = [by_class[k] for k in sorted(by_class)]
    out: dict[str, list[int]] = {"train": [], "validation": [], "test": []}
    for idx in groups:
        keys = {i: _row_key(seed, dataset.rows[i]) for i in idx}
        idx = sorted(idx, key=lambda i: (keys[i], i))
        n = len(idx)
        n_test = max(1, round(n * config.split.test)) if n >= 3 else 0
        n_val = max(1, round(n * config.split.validation)) if n >= 3 else 0
        group_start: dict[str, int] = {}
        for pos, i in enumerate(idx):  # identical rows follow the first of them: no cut splits them
            start = group_start.setdefault(keys[i], pos)
            name = "test" if start < n_test else "validation" if start < n_test + n_val else "train"
            out[name].append(i)
    return {name: [dataset.rows[i] for i in sorted(ix)] for name, ix in out.items()}


def to_csv(header: list[str], rows: list[list[str]]) -> bytes:
    """Serialise ``header`` + ``rows`` as RFC 4180 CSV bytes (UTF-8, LF line ends)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def quarantine(
    s3: Any,
    *,
    source_bucket: str,
    key: str,
    version_id: str | None,
    artifacts_bucket: str,
    prefix: str,
    error: InvalidDatasetError | Any,
) -> dict[str, str]:
    """Copy the rejected object to ``s3://<artifacts>/<prefix>/<file>`` and write ``reason.json`` beside it.

    ``prefix`` is ``quarantine/<model>/<execution name>``. Uses S3 CopyObject (with the exact
    ``VersionId``) and PutObject; the source object is left in place. Returns the two S3 URIs
    ``{"object": ..., "reason": ...}``. ``error`` is anything with ``to_dict()``.
    """
    source: dict[str, str] = {"Bucket": source_bucket, "Key": key}
    if version_id:
        source["VersionId"] = version_id
    dest_key = f"{prefix}/{key.rsplit('/', 1)[-1]}"
    s3.copy_object(Bucket=artifacts_bucket, Key=dest_key, CopySource=source)
    reason = {"source": {"bucket": source_bucket, "key": key, "version_id": version_id}, **error.to_dict()}
    s3.put_object(
        Bucket=artifacts_bucket,
        Key=f"{prefix}/reason.json",
        Body=json.dumps(reason, indent=2, sort_keys=True).encode(),
        ContentType="application/json",
    )
    return {"object": f"s3://{artifacts_bucket}/{dest_key}", "reason": f"s3://{artifacts_bucket}/{prefix}/reason.json"}
