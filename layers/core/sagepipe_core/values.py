"""How a CSV cell is read: missing-value tokens, numbers, and a column's type (the core's copy).

The source is ``model/sagepipe_contract.py`` (``NA_TOKENS``, ``parse_number``, ``column_type`` and the
constants below); the core layer is deployed without ``model/`` and keeps this copy, which
``tests/unit/test_contract.py`` pins to it (same tokens, same patterns, same answers on a corpus of
columns). ValidateData (:mod:`.dataset`) and the predict Lambda (:mod:`.schema`) read cells with it, as
``model/train.py`` and ``model/inference.py`` do with the source. Standard library only.
"""

from __future__ import annotations

import math
import re

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
