"""The data-set contract: CSV checks, deterministic stratified splits, quarantine.

Pure Python (``csv`` module), streaming: the CSV is read row by row, twice (checks and split keys, then
the split files), and no row is kept as a Python list, so the peak memory is the object's bytes plus
about 40 bytes per row (``bench/validate_memory.py`` prints peak MiB per input MiB). A failing check
raises :class:`InvalidDatasetError` whose details name the check, the column and the row counts (bounded
in size: a message names at most :data:`MAX_LISTED` items); :func:`quarantine` copies the object and
writes that reason next to it. Nothing is ever deleted.
"""

from __future__ import annotations

import base64
import codecs
import csv
import hashlib
import io
import json
import math
import re
import tempfile
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from .config import COLUMN_NAME_MAX, HYPERPARAMETER_VALUE_MAX, ModelConfig
from .errors import InvalidDatasetError
from .values import NA_TOKENS, STRAY_MAX_DISTINCT, column_type, parse_number

_OTHER_DELIMITERS = (";", "\t", "|")
_BOM = codecs.BOM_UTF8
_NON_SPACE = re.compile(rb"\S")
_DECODE_CHUNK = 1 << 20
SPLIT_NAMES = ("train", "validation", "test")
MAX_LISTED = 20  # classes / lines named in a message or a summary; the full lists are in S3
SPOOL_BYTES = 8 << 20  # a split file above this spills from memory to a temporary file (Lambda: /tmp)
IDENTITY_BYTES = 16  # a row identity: the first 128 bits of a SHA-256 (copy of sagepipe_contract's)
#: The split manifest's ``manifest_version`` (``sagepipe_contract.MANIFEST_VERSION``): version 2's row
#: identity reads numbers as :func:`.values.parse_number` does (version 1, before: ``float()``).
MANIFEST_VERSION = 2
CANONICAL_CACHE = 4096  # distinct raw values per column whose canonical text is remembered while scanning
MANIFEST_FILE = "split_manifest.json"  # also its name inside model.tar.gz (sagepipe_contract.SPLIT_MANIFEST_FILE)


@dataclass
class Dataset:
    """A validated CSV: ``header`` (column names), ``target``, per-class row counts, and its source bytes.

    Rows are not held: :meth:`iter_rows` streams them from ``body`` (UTF-8, BOM allowed). ``identities``
    holds each row's 16-byte identity (:func:`row_identity`: its parsed values by column name, so
    column order, number formatting and quoting do not change it) and ``labels`` each row's class index
    into ``sorted(class_counts)`` (classification only). ``excluded`` maps the columns that
    are not features to why (``config``, ``unique_text``, ``row_number``); ``columns`` is the per-column
    report of the feature columns (:meth:`_Column.report`: type, missing count, missing-value tokens and
    the stray texts of a numeric column, which count as missing).
    """

    header: list[str]
    target: str
    body: bytes
    n_rows: int
    class_counts: dict[str, int] = field(default_factory=dict)
    identities: bytearray = field(default_factory=bytearray, repr=False)
    labels: array[int] = field(default_factory=lambda: array("I"), repr=False)
    excluded: dict[str, str] = field(default_factory=dict)
    columns: dict[str, dict[str, Any]] = field(default_factory=dict)

    def identity(self, i: int) -> bytes:
        """The identity of row ``i`` (0-based data row): :data:`IDENTITY_BYTES` bytes."""
        return bytes(self.identities[IDENTITY_BYTES * i : IDENTITY_BYTES * (i + 1)])

    @property
    def target_index(self) -> int:
        """Column index of the target."""
        return self.header.index(self.target)

    def iter_rows(self) -> Iterator[list[str]]:
        """The data rows (lists of str), in file order; blank lines skipped as by the checks."""
        records = _records(self.body)
        next(records, None)  # the header
        yield from records

    @property
    def rows(self) -> list[list[str]]:
        """Every data row as a list (materialises the whole file: for tests and small data only)."""
        return list(self.iter_rows())

    def summary(self, max_classes: int = MAX_LISTED) -> dict[str, Any]:
        """The run record's bounded summary of the data set.

        ``{"rows", "columns", "target", "classes", "class_counts", "excluded"?, "stray_values"?}``
        (``excluded``: column → reason; ``stray_values``: numeric column → how many of its cells were stray
        texts read as missing).

        ``class_counts`` holds at most ``max_classes`` classes (the largest; ``class_counts_truncated``
        says when some were left out): a state's output must stay far below Step Functions' 256 KB. The
        full counts go to S3 (:meth:`profile`).
        """
        counts = self.class_counts
        shown = dict(sorted(sorted(counts.items()), key=lambda kv: -kv[1])[:max_classes])
        out: dict[str, Any] = {
            "rows": self.n_rows,
            "columns": len(self.header),
            "target": self.target,
            "classes": len(counts),
            "class_counts": dict(sorted(shown.items())),
        }
        if len(shown) < len(counts):
            out["class_counts_truncated"] = True
        if self.excluded:
            out["excluded"] = dict(list(self.excluded.items())[:max_classes])
        strays = {n: sum(c["stray_values"].values()) for n, c in self.columns.items() if "stray_values" in c}
        if strays:
            out["stray_values"] = dict(list(strays.items())[:max_classes])
        return out

    def profile(self) -> dict[str, Any]:
        """The full description written next to the splits as ``dataset.json``.

        Header, every class count, the excluded columns and the per-column report (type, missing,
        missing-value tokens, stray texts).
        """
        return {
            "rows": self.n_rows,
            "columns": len(self.header),
            "header": self.header,
            "target": self.target,
            "class_counts": self.class_counts,
            "excluded": self.excluded,
            "column_report": self.columns,
        }


def _fail(check: str, message: str, **details: Any) -> InvalidDatasetError:
    return InvalidDatasetError(message, reason=check, check=check, **details)


def _records(body: bytes) -> Iterator[list[str]]:
    """CSV records of ``body`` (UTF-8, BOM dropped), blank lines skipped, decoded incrementally."""
    text = io.TextIOWrapper(io.BytesIO(body), encoding="utf-8-sig", newline="")
    return (r for r in csv.reader(text) if r)


def _listed(items: dict[str, int]) -> str:
    """``items`` for a message: at most :data:`MAX_LISTED` of them, saying how many there are."""
    if len(items) <= MAX_LISTED:
        return str(items)
    return f"{len(items)} classes, e.g. {dict(list(items.items())[:MAX_LISTED])}"


# ------------------------------------------------------------------------------------ the checks
def _check_encoding(body: bytes) -> None:
    """UTF-8 (BOM allowed), checked in 1 MiB chunks: no decoded copy of the file is made."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    for offset in range(0, len(body), _DECODE_CHUNK):
        pending = len(decoder.getstate()[0])
        try:
            decoder.decode(body[offset : offset + _DECODE_CHUNK], final=offset + _DECODE_CHUNK >= len(body))
        except UnicodeDecodeError as exc:
            at = offset - pending + exc.start
            raise _fail("encoding", f"file is not UTF-8: byte {at} is invalid", byte_offset=at) from exc


def _check_shape(body: bytes) -> None:
    """``empty`` (nothing but whitespace and a BOM) and ``delimiter`` (the header must use ``,``)."""
    start = len(_BOM) if body.startswith(_BOM) else 0
    if not _NON_SPACE.search(body, start):
        raise _fail("empty", "file is empty")
    end = body.find(b"\n", start)
    first_line = body[start : end if end >= 0 else len(body)].decode("utf-8")
    if "," not in first_line:
        found = [d for d in _OTHER_DELIMITERS if d in first_line]
        if found:
            raise _fail("delimiter", f"header uses {found[0]!r} as delimiter; sagepipe expects ','", delimiter=found[0])


def _check_header(header: list[str]) -> None:
    """Checks ``header`` (blank names, names over ``COLUMN_NAME_MAX`` characters), ``duplicate_columns``.

    ``header`` holds the stripped names; :data:`.config.COLUMN_NAME_MAX` is also what a config may name.
    """
    blank = [i for i, h in enumerate(header) if not h]
    if blank:
        raise _fail("header", f"header has {len(blank)} blank column name(s)", column_indexes=blank[:MAX_LISTED])
    long = [i for i, h in enumerate(header) if len(h) > COLUMN_NAME_MAX]
    if long:
        raise _fail(
            "header",
            f"header has {len(long)} column name(s) longer than {COLUMN_NAME_MAX} characters "
            f"(the first: column {long[0] + 1}, {len(header[long[0]])} characters)",
            column_indexes=long[:MAX_LISTED],
        )
    dupes = sorted(name for name, n in Counter(header).items() if n > 1)
    if dupes:
        raise _fail("duplicate_columns", f"duplicate column names: {dupes[:MAX_LISTED]}", columns=dupes[:MAX_LISTED])


#: Identifier detection (README "Data validation"): a column is an identifier when it has at least
#: ``ID_MIN_ROWS`` non-missing values and its distinct non-numeric texts are at least ``ID_UNIQUE_FRACTION``
#: of them (``C100900``, ...), or when it is a row-number-like integer column: no missing value, only
#: integers, and either strictly increasing or strictly decreasing in file order, or - in any order (a
#: shuffled or re-sorted export) - the integers of a consecutive range, each once (``_Column.consecutive``:
#: judged from the count, minimum, maximum, sum and sum of squares, O(1) memory per column).
ID_MIN_ROWS = 20
ID_UNIQUE_FRACTION = 0.95
ID_PROBE = 256  # integers per column kept to see an early repeat (which rules a range of distinct ones out)


@dataclass
class _Column:
    """One column's statistics from one pass: counts, a few stray texts, and identifier evidence.

    O(1) memory per column, except ``texts`` (the distinct non-numeric values): it is dropped (``None``)
    once the duplicates exceed what an identifier allows in a file of ``lines`` lines, so only
    near-unique text columns keep theirs to the end; and ``probe``, at most :data:`ID_PROBE` integers.
    """

    dup_limit: float
    present: int = 0
    missing: int = 0
    tokens: Counter[str] = field(default_factory=Counter)  # missing-value tokens other than blank
    strays: int = 0
    stray_values: Counter[str] = field(default_factory=Counter)  # at most STRAY_MAX_DISTINCT + 1 texts
    first: str | None = None
    varied: bool = False
    integers: bool = True
    increasing: bool = True
    decreasing: bool = True
    last: float | None = None
    ranged: bool = True  # still possibly the distinct integers of a consecutive range (:meth:`consecutive`)
    probe: set[int] | None = field(default_factory=set)  # the first ID_PROBE integers, to see a repeat early
    low: float = math.inf  # the integers' minimum, maximum, sum and sum of squares (exact: Python ints)
    high: float = -math.inf
    total: int = 0
    squares: int = 0
    texts: set[str] | None = field(default_factory=set)
    duplicates: int = 0

    def add(self, value: str) -> None:
        v = value.strip()
        if v in NA_TOKENS:
            self.missing += 1
            if v:
                self.tokens[v] += 1
            return
        self.present += 1
        if self.first is None:
            self.first = v
        elif not self.varied and v != self.first:
            self.varied = True
        # plain ASCII digits (the common case) need no pattern: the same answer as parse_number
        number = float(v) if v.isdigit() and v.isascii() and len(v) < 300 else parse_number(v)
        if number is None:
            self.strays += 1
            if v in self.stray_values or len(self.stray_values) <= STRAY_MAX_DISTINCT:
                self.stray_values[v] += 1
            if self.texts is not None:
                if v in self.texts:
                    self.duplicates += 1
                    if self.duplicates > self.dup_limit:
                        self.texts = None
                else:
                    self.texts.add(v)
            return
        if self.integers:
            if not number.is_integer():
                self.integers = False
            elif self.ranged:
                self._add_integer(int(number))
        if self.last is not None:
            self.increasing = self.increasing and number > self.last
            self.decreasing = self.decreasing and number < self.last
        self.last = number

    def _add_integer(self, k: int) -> None:
        """Count ``k`` into the range evidence of :meth:`consecutive` (while it is still possible)."""
        if self.probe is not None:  # a repeat among the first values: not a range of distinct integers
            if k in self.probe:
                self.ranged, self.probe = False, None
                return
            self.probe.add(k)
            if len(self.probe) >= ID_PROBE:
                self.probe = None
        self.total += k
        self.squares += k * k
        if k < self.low:
            self.low = k
        if k > self.high:
            self.high = k

    @property
    def type(self) -> str:
        """``numeric`` or ``categorical`` (:func:`.values.column_type`, as ``model/train.py`` types it)."""
        return column_type(self.present, self.strays, len(self.stray_values))

    def identifier(self) -> str | None:
        """Why this column looks like an identifier (``unique_text`` / ``row_number``), or None."""
        if self.present < ID_MIN_ROWS:
            return None
        if (
            self.type == "categorical"
            and self.texts is not None
            and len(self.texts) >= ID_UNIQUE_FRACTION * self.present
        ):
            return "unique_text"
        if (
            self.strays == 0
            and self.missing == 0
            and self.integers
            and (self.increasing or self.decreasing or self.consecutive())
        ):
            return "row_number"
        return None

    def consecutive(self) -> bool:
        """Whether the column's integers look like a consecutive range, each once, in any order.

        Exact necessary conditions for the ``n`` values to be a permutation of ``low .. high``: ``high -
        low + 1 == n``, and their sum and sum of squares equal the range's (``n·low + n(n-1)/2`` and
        ``Σ (low+i)²``). Deciding "a permutation" exactly needs O(n) memory; these O(1) sums can be
        fooled only by values that repeat some integers of the range and skip others while keeping both
        sums, e.g. ``2, 3, 7`` in place of ``1, 5, 6`` (same sum 12 and sum of squares 62): a chance
        coincidence of two exact equalities, which real measurements essentially never hit. The first
        :data:`ID_PROBE` values are also checked exactly for a repeat (``probe``, a bounded set), which
        rules most low-cardinality integer columns out early and cheaply; a false positive needs its
        repeats after them. Such a column is then excluded as ``row_number``; config ``include`` keeps it.
        """
        n = self.present
        if not (self.integers and self.ranged) or n == 0 or self.high - self.low + 1 != n:
            return False
        low = int(self.low)
        total = n * low + n * (n - 1) // 2
        squares = n * low * low + low * n * (n - 1) + (n - 1) * n * (2 * n - 1) // 6
        return self.total == total and self.squares == squares

    def report(self) -> dict[str, Any]:
        """``{"type", "missing", "missing_tokens"?, "stray_values"?}`` for ``dataset.json`` (bounded)."""
        out: dict[str, Any] = {"type": self.type, "missing": self.missing}
        if self.tokens:
            out["missing_tokens"] = dict(sorted(self.tokens.items()))
        if self.strays and self.type == "numeric":
            out["stray_values"] = dict(sorted(self.stray_values.items()))
            out["missing"] = self.missing + self.strays
        return out


@dataclass
class _Scan:
    """What one pass over the rows gathers for the checks (O(columns + classes) memory, plus the keys)."""

    width: int
    target: int | None
    header: list[str]
    lines: int = 0  # newline count + 1: at least the number of rows (bounds an identifier's duplicates)
    rows: int = 0
    ragged: int = 0
    first_ragged: list[int] = field(default_factory=list)
    missing_labels: int = 0
    label_tokens: Counter[str] = field(default_factory=Counter)  # missing-value tokens in the target
    non_numeric: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    columns: list[_Column] = field(default_factory=list)
    identities: bytearray = field(default_factory=bytearray)
    identity_of: Any = None  # row -> identity, :func:`identity_function` of the header
    class_ids: dict[str, int] = field(default_factory=dict)
    labels: array[int] = field(default_factory=lambda: array("I"))

    def __post_init__(self) -> None:
        limit = (1 - ID_UNIQUE_FRACTION) * max(self.lines, 1)
        self.columns = [_Column(dup_limit=limit) for _ in range(self.width)]
        self.identity_of = identity_function(self.header)

    def add(self, row: list[str], regression: bool) -> None:
        self.rows += 1
        if len(row) != self.width:
            self.ragged += 1
            if len(self.first_ragged) < 10:
                self.first_ragged.append(self.rows + 1)
            return
        self.identities += self.identity_of(row)
        for column, value in zip(self.columns, row, strict=True):
            column.add(value)
        if self.target is None:
            return
        label = row[self.target].strip()
        if label in NA_TOKENS:  # the same tokens model/train.py reads as missing
            self.missing_labels += 1
            if label:
                self.label_tokens[label] += 1
            return
        if regression:
            self.non_numeric += 0 if parse_number(label) is not None else 1
            return
        self.counts[label] += 1
        self.labels.append(self.class_ids.setdefault(label, len(self.class_ids)))


def _scan(body: bytes, config: ModelConfig) -> tuple[list[str], str, _Scan]:
    """One streaming pass: the header, the target, and the row statistics the checks need."""
    records = _records(body)
    try:
        header = [h.strip() for h in next(records)]
        _check_header(header)
        target = config.target or header[-1]
        scan = _Scan(len(header), header.index(target) if target in header else None, header, body.count(b"\n") + 1)
        regression = config.problem_type == "regression"
        for row in records:
            scan.add(row, regression)
    except csv.Error as exc:
        raise _fail("parse", f"CSV does not parse: {exc}") from exc
    return header, target, scan


def _check_rows(header: list[str], target: str, scan: _Scan, config: ModelConfig) -> None:
    """``ragged_rows``, ``missing_target_column``, ``missing_labels``, ``too_few_rows``."""
    if scan.ragged:
        raise _fail(
            "ragged_rows",
            f"{scan.ragged} row(s) do not have {len(header)} fields",
            rows=scan.ragged,
            first_lines=scan.first_ragged,
        )
    if scan.target is None:
        raise _fail(
            "missing_target_column",
            f"target column {target!r} is not in the header",
            column=target,
            header=header[:200],
        )
    if scan.missing_labels:
        tokens = dict(scan.label_tokens.most_common(MAX_LISTED))
        said = f" (missing-value tokens: {tokens}; rename such a class, e.g. 'NA' -> 'N_A')" if tokens else ""
        raise _fail(
            "missing_labels",
            f"{scan.missing_labels} row(s) have no value in target column {target!r}{said}",
            column=target,
            rows=scan.missing_labels,
            tokens=tokens,
        )
    if scan.rows < config.min_rows:
        raise _fail(
            "too_few_rows",
            f"{scan.rows} data rows; at least {config.min_rows} are required",
            rows=scan.rows,
            min_rows=config.min_rows,
        )


def _check_target(target: str, scan: _Scan, config: ModelConfig) -> dict[str, int]:
    """The target checks; returns the class counts (sorted by class; ``{}`` for regression).

    ``non_numeric_target`` (regression), ``too_few_classes`` / ``too_many_classes`` /
    ``too_few_rows_per_class`` (classification).
    """
    if config.problem_type == "regression":
        if scan.non_numeric:
            raise _fail(
                "non_numeric_target",
                f"{scan.non_numeric} target value(s) are not finite numbers",
                column=target,
                rows=scan.non_numeric,
            )
        return {}
    counts = dict(sorted(scan.counts.items()))
    need = 2 if config.problem_type == "binary" else 3
    if len(counts) < need or (config.problem_type == "binary" and len(counts) > 2):
        raise _fail(
            "too_few_classes" if len(counts) < need else "too_many_classes",
            f"{config.problem_type} needs {'exactly 2' if need == 2 else 'at least 3'} classes; found {len(counts)}",
            column=target,
            classes=len(counts),
            class_counts=dict(list(counts.items())[:MAX_LISTED]),
        )
    small = {k: v for k, v in counts.items() if v < config.min_rows_per_class}
    if small:
        raise _fail(
            "too_few_rows_per_class",
            f"classes below {config.min_rows_per_class} rows: {_listed(small)}",
            column=target,
            classes=len(counts),
            class_counts=dict(list(counts.items())[:MAX_LISTED]),
            below=dict(list(small.items())[:MAX_LISTED]),
            min_rows_per_class=config.min_rows_per_class,
        )
    return counts


def _check_columns(header: list[str], scan: _Scan, excluded: dict[str, str]) -> None:
    """``empty_column`` (missing in every row) and ``constant_column`` (one value, nothing missing).

    Missing: blank or a missing-value token. Columns excluded from the features are not checked.
    """
    for i, name in enumerate(header):
        if i == scan.target or name in excluded:
            continue
        column = scan.columns[i]
        if column.first is None:
            raise _fail(
                "empty_column",
                f"column {name!r} is empty (or a missing-value token) in every row",
                column=name,
                rows=scan.rows,
            )
        if not column.varied and not column.missing:
            raise _fail(
                "constant_column",
                f"column {name!r} has the same value in every row",
                column=name,
                rows=scan.rows,
                value=column.first,
            )


def _exclusions(header: list[str], scan: _Scan, config: ModelConfig) -> dict[str, str]:
    """The columns that are not features: ``{name: reason}``.

    Reason ``config`` (``exclude``), ``unique_text`` or ``row_number`` (:meth:`_Column.identifier`;
    ``include`` keeps such a column). Checks:

    ``unknown_columns`` (``exclude`` / ``include`` names a column the header lacks), ``excluded_target``,
    ``no_features`` (nothing left), ``too_many_excluded_columns`` (the list does not fit the 2,500-character
    hyperparameter value CreateTrainingJob allows, botocore's ``HyperParameterValue``).
    """
    named = [*config.exclude, *config.include]
    unknown = sorted(set(named) - set(header))
    if unknown:
        raise _fail(
            "unknown_columns",
            f"config exclude/include name columns the header does not have: {unknown[:MAX_LISTED]}",
            columns=unknown[:MAX_LISTED],
        )
    target = header[scan.target] if scan.target is not None else None
    if target in config.exclude:
        raise _fail("excluded_target", f"config excludes the target column {target!r}", column=target)
    out: dict[str, str] = {}
    for i, name in enumerate(header):
        if i == scan.target:
            continue
        if name in config.exclude:
            out[name] = "config"
        elif name not in config.include and (why := scan.columns[i].identifier()):
            out[name] = why
    if len(out) >= len(header) - 1:
        raise _fail(
            "no_features",
            "no feature column is left once identifiers and excluded columns are set aside",
            excluded=dict(list(out.items())[:MAX_LISTED]),
        )
    if len(json.dumps(out)) > HYPERPARAMETER_VALUE_MAX:
        raise _fail(
            "too_many_excluded_columns",
            f"{len(out)} excluded columns do not fit the training job's hyperparameter "
            f"({HYPERPARAMETER_VALUE_MAX} characters); drop them from the CSV instead",
            columns=len(out),
        )
    return out


def parse_and_validate(body: bytes, config: ModelConfig) -> Dataset:
    """Parse ``body`` as a comma-separated UTF-8 CSV with a header row and check it against ``config``.

    Checks, in order (the ``check`` name is the quarantine reason): ``encoding`` (UTF-8, BOM allowed),
    ``empty``, ``delimiter`` (must be ``,``), ``parse``, ``header`` (blank names), ``duplicate_columns``,
    ``ragged_rows`` (field count differs from the header), ``missing_target_column``,
    ``missing_labels``, ``too_few_rows``, ``too_few_classes`` / ``too_many_classes`` /
    ``too_few_rows_per_class`` (classification), ``non_numeric_target`` (regression), then the column
    roles (:func:`_exclusions`: ``unknown_columns``, ``excluded_target``, ``no_features``,
    ``too_many_excluded_columns``), ``empty_column``, ``constant_column``. A cell is missing when its
    stripped text is one of :data:`.values.NA_TOKENS` (as in ``model/train.py``): a target cell so is a
    missing label. The rows are streamed (one pass), never held.

    Raises:
        InvalidDatasetError: the first check that fails (``details["check"]``).

    Returns:
        The :class:`Dataset` (header, target, class counts, row identities, the excluded columns and the
        per-column report; its rows stay in ``body``).
    """
    _check_encoding(body)
    _check_shape(body)
    header, target, scan = _scan(body, config)
    _check_rows(header, target, scan, config)
    counts = _check_target(target, scan, config)
    excluded = _exclusions(header, scan, config)
    _check_columns(header, scan, excluded)
    labels = scan.labels
    if counts:  # class ids in order of first appearance -> index into sorted(counts)
        rank = {name: i for i, name in enumerate(counts)}
        order = [rank[name] for name in scan.class_ids]
        labels = array("I", (order[c] for c in scan.labels))
    return Dataset(
        header=header,
        target=target,
        body=body,
        n_rows=scan.rows,
        class_counts=counts,
        identities=scan.identities,
        labels=labels,
        excluded=excluded,
        columns={
            name: c.report() for i, (name, c) in enumerate(zip(header, scan.columns, strict=True)) if i != scan.target
        },
    )


# ---------------------------------------------------------------------------------------- split
def canonical_value(value: object) -> str:
    """A field's canonical text for :func:`row_identity` (a copy of ``sagepipe_contract.canonical_value``).

    Surrounding whitespace is dropped; a missing value (None, a float NaN, or an NA token of
    :data:`.values.NA_TOKENS`) is ``""``; a number - what :func:`.values.parse_number` reads, as training
    does: ASCII decimal, optionally with ``,`` thousands separators - is written one way (``129``,
    ``129.0``, ``1.29e2`` and ``+129`` are ``129``, ``1,290.0`` is ``1290``; others ``repr(float)``,
    ``0.1``); any other text (``1_000``, ``inf``, ``2,5``, non-ASCII digits) is kept as is
    (case-sensitive). Quoting is gone already: the CSV parser removed it. Identity version
    :data:`MANIFEST_VERSION` (version 1 read numbers with ``float()``).
    """
    if value is None or (isinstance(value, float) and value != value):
        return ""
    text = str(value).strip()
    if text in NA_TOKENS:
        return ""
    number = parse_number(text)
    if number is None:
        return text
    if number.is_integer() and abs(number) < 2**53:
        return str(int(number))
    return repr(number)


def _canonical_fast(value: str) -> str:
    """:func:`canonical_value` of a CSV field: the same text, with fewer steps for the common cases.

    Plain ASCII integers of fewer than 16 digits without a leading zero are their own canonical text.
    Otherwise ``float()`` (C) answers first: for stripped ASCII text without ``_``, ``float()`` gives a
    finite number exactly when :data:`.values.NUMBER_PATTERN` matches and the number is finite (its
    other spellings are ``inf``/``nan`` words), so :func:`.values.parse_number`'s pattern is needed only
    for text with a ``,`` (thousands separators). ``tests/unit/test_contract.py`` checks the two agree.
    """
    text = value.strip()
    if text.isascii() and text.isdigit() and len(text) < 16 and (text[0] != "0" or len(text) == 1):
        return text  # "129": float() and back give the same text
    if text in NA_TOKENS:
        return ""
    try:
        number = float(text)
    except ValueError:
        if "," not in text:
            return text
        parsed = parse_number(text)
        if parsed is None:
            return text
        number = parsed
    else:
        if not (math.isfinite(number) and text.isascii()) or "_" in text:
            return text
    if number.is_integer() and abs(number) < 2**53:
        return str(int(number))
    return repr(number)


def identity_function(header: list[str]) -> Any:
    """``row -> identity`` for rows of ``header``: :func:`row_identity` with the column order fixed once.

    The same bytes as :func:`row_identity`, faster: each column remembers the canonical text of up to
    :data:`CANONICAL_CACHE` distinct raw values (repeated values are the common case).
    """
    order = sorted(range(len(header)), key=header.__getitem__)
    prefixes = [header[i] + "\x1f" for i in order]
    caches: list[dict[str, str]] = [{} for _ in order]
    columns = list(zip(order, prefixes, caches, strict=True))

    def identity(row: list[str]) -> bytes:
        parts = []
        for i, prefix, cache in columns:
            raw = row[i]
            text = cache.get(raw)
            if text is None:
                text = _canonical_fast(raw)
                if len(cache) < CANONICAL_CACHE:
                    cache[raw] = text
            parts.append(prefix + text)
        return hashlib.sha256("\x1e".join(parts).encode("utf-8")).digest()[:IDENTITY_BYTES]

    return identity


def row_identity(names: list[str], values: list[Any]) -> bytes:
    r"""A row's identity: SHA-256 (first :data:`IDENTITY_BYTES` bytes) of its canonical values by column name.

    ``names`` must be sorted (:func:`identity_function` sorts them): the text hashed is
    ``name \x1f canonical value`` per column, joined by ``\x1e``, so the same data re-exported with
    another column order, number formatting (``129.0`` / ``129``) or quoting has the same identity.
    A copy of ``sagepipe_contract.row_identity`` (the training job computes the test rows' identities
    with it); ``tests/unit/test_contract.py`` pins the two together.
    """
    text = "\x1e".join(f"{n}\x1f{canonical_value(v)}" for n, v in zip(names, values, strict=True))
    return hashlib.sha256(text.encode("utf-8")).digest()[:IDENTITY_BYTES]


def split_keys(dataset: Dataset, seed: int) -> bytes:
    """Each row's 32-byte split key: SHA-256 of the seed and the row's identity, concatenated in row order."""
    prefix = f"{seed}\0".encode()
    ids = dataset.identities
    return b"".join(
        hashlib.sha256(prefix + ids[i : i + IDENTITY_BYTES]).digest() for i in range(0, len(ids), IDENTITY_BYTES)
    )


def assign_splits(dataset: Dataset, config: ModelConfig) -> bytearray:
    """The split of every row: ``0`` train, ``1`` validation, ``2`` test (index into :data:`SPLIT_NAMES`).

    Each row's place is decided by a seeded SHA-256 of its identity (``split.seed``,
    :func:`split_keys`; the identity is of its parsed values, :func:`row_identity`); within each class
    (classification: stratified) rows are ordered by that hash and cut at the configured fractions
    (every class with 3+ rows gets at least one row in each split). Consequences:

    - same data + same config → same split, also when the file is re-exported with another column
      order, number formatting or quoting;
    - stable across data versions: a row keeps its split when rows are added, except near the cut
      points (the champion is not scored on the rows it trained on anyway: its split manifest,
      :func:`manifest`, lets the training job leave them out);
    - identical rows always land in the same split.
    """
    keys = split_keys(dataset, config.split.seed)
    n = dataset.n_rows
    if config.problem_type == "regression" or not dataset.class_counts:
        groups = [list(range(n))]
    else:
        by_class: list[list[int]] = [[] for _ in dataset.class_counts]
        for i, label in enumerate(dataset.labels):
            by_class[label].append(i)
        groups = by_class
    out = bytearray(n)
    for idx in groups:
        idx.sort(key=lambda i: (keys[32 * i : 32 * i + 32], i))
        size = len(idx)
        n_test = max(1, round(size * config.split.test)) if size >= 3 else 0
        n_val = max(1, round(size * config.split.validation)) if size >= 3 else 0
        start, previous = 0, b""
        for pos, i in enumerate(idx):  # identical rows follow the first of them: no cut splits them
            key = keys[32 * i : 32 * i + 32]
            if key != previous:
                start, previous = pos, key
            out[i] = 2 if start < n_test else 1 if start < n_test + n_val else 0
    return out


def manifest(dataset: Dataset, where: bytearray) -> dict[str, Any]:
    """The split manifest: which rows (by identity) trained a model, written next to the splits.

    ``{"manifest_version": 2, "identity": "...", "identity_bytes": 16, "columns": [sorted header],
    "rows": {"train", "validation", "test"}, "train": base64, "validation": base64}``: the base64 of the
    sorted, distinct identities (:func:`row_identity`, 16 bytes each) of the train and validation rows
    (``where`` is :func:`assign_splits`). The training job copies it into ``model.tar.gz``; when that
    model is the champion, the next job scores it only on test rows whose identity (over ``columns``) is
    in neither list. About 22 bytes per training row.
    """
    parts: dict[int, set[bytes]] = {0: set(), 1: set()}
    rows = dict.fromkeys(SPLIT_NAMES, 0)
    for i, split_index in enumerate(where):
        rows[SPLIT_NAMES[split_index]] += 1
        if split_index in parts:
            parts[split_index].add(dataset.identity(i))
    return {
        "manifest_version": MANIFEST_VERSION,
        "identity": (
            "sha256(name \\x1f canonical value (numbers as parse_number reads them), joined by \\x1e, "
            "columns sorted by name)[:16]"
        ),
        "identity_bytes": IDENTITY_BYTES,
        "columns": sorted(dataset.header),
        "rows": rows,
        "train": base64.b64encode(b"".join(sorted(parts[0]))).decode("ascii"),
        "validation": base64.b64encode(b"".join(sorted(parts[1]))).decode("ascii"),
    }


def split(dataset: Dataset, config: ModelConfig) -> dict[str, list[list[str]]]:
    """:func:`assign_splits` as ``{"train", "validation", "test"}`` row lists, rows in file order.

    Materialises every row: for tests and small data. The pipeline uses :func:`write_splits`.
    """
    where = assign_splits(dataset, config)
    out: dict[str, list[list[str]]] = {name: [] for name in SPLIT_NAMES}
    for i, row in enumerate(dataset.iter_rows()):
        out[SPLIT_NAMES[where[i]]].append(row)
    return out


def write_splits(
    dataset: Dataset, config: ModelConfig, where: bytearray | None = None
) -> dict[str, tuple[IO[bytes], int]]:
    r"""Stream the rows into one CSV file per split (header first); ``{name: (file, rows)}``.

    ``where`` is :func:`assign_splits` (computed when not given).

    Each file is a ``SpooledTemporaryFile`` (in memory up to 8 MiB, then a temporary file: Lambda's
    ``/tmp``), rewound for reading (S3 PutObject ``Body``); the caller closes it. Rows keep their
    file order. RFC 4180 CSV, UTF-8, ``\n`` line ends, as :func:`to_csv`.
    """
    where = assign_splits(dataset, config) if where is None else where
    files: dict[str, tuple[IO[bytes], Any]] = {}
    for name in SPLIT_NAMES:
        fh: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - returned open to the caller
        text = io.TextIOWrapper(fh, encoding="utf-8", newline="", write_through=True)
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(dataset.header)
        files[name] = (fh, (text, writer))
    counts = dict.fromkeys(SPLIT_NAMES, 0)
    for i, row in enumerate(dataset.iter_rows()):
        name = SPLIT_NAMES[where[i]]
        files[name][1][1].writerow(row)
        counts[name] += 1
    out: dict[str, tuple[IO[bytes], int]] = {}
    for name, (fh, (text, _)) in files.items():
        text.flush()
        text.detach()  # leave fh open
        fh.seek(0)
        out[name] = (fh, counts[name])
    return out


def to_csv(header: list[str], rows: list[list[str]]) -> bytes:
    r"""Serialise ``header`` + ``rows`` as RFC 4180 CSV bytes (UTF-8, ``\n`` line ends)."""
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
