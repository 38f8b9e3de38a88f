"""The drift baseline: per-feature statistics of the training split, written next to the model (issue 14).

SageMaker Model Monitor is closed to new customers (AWS documentation, since 2026-07-30), so sagepipe
checks drift itself (``sagepipe_core.drift``); the baseline keeps the shape of Model Monitor's
``statistics.json`` where it fits (Model Monitor Developer Guide, "Schema for Statistics"): ``version``,
``dataset.item_count`` and one entry per feature with ``name``, ``inferred_type`` (``Fractional`` /
``String``) and ``numerical_statistics`` / ``string_statistics`` (``common.num_present``,
``common.num_missing``, ``mean``, ``sum``, ``std_dev``, ``min``, ``max``; ``distinct_count``). Where it
differs: a numeric feature's ``distribution`` is ``quantile`` buckets (equal-frequency, so PSI has enough
rows in each bucket) instead of a KLL sketch, and a categorical one lists its most frequent values with an
``other`` count.

A numeric bucket ``i`` holds the values ``v`` with ``edges[i-1] < v <= edges[i]`` (``edges`` are the
buckets' ``upper_bound`` but the last's; the first and last bucket are open-ended when the baseline is
applied to new data). The drift check applies exactly this rule (``bisect_left``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

#: File in ``SM_MODEL_DIR`` (so in ``model.tar.gz``).
STATISTICS_FILE = "baseline/statistics.json"
#: Equal-frequency buckets per numeric feature (deciles).
NUMERIC_BUCKETS = 10
#: Most frequent values kept per categorical feature; the rest are counted as ``other``.
MAX_CATEGORIES = 50


def _numeric(name: str, values: Sequence[float]) -> dict[str, Any]:
    import numpy as np

    arr = np.asarray(values, dtype="float64")
    present = arr[~np.isnan(arr)]
    common = {"num_present": int(present.size), "num_missing": int(arr.size - present.size)}
    stats: dict[str, Any] = {"common": common}
    if present.size:
        qs = np.quantile(present, [i / NUMERIC_BUCKETS for i in range(1, NUMERIC_BUCKETS)])
        edges = sorted({float(q) for q in qs if float(q) < float(present.max())})
        counts = np.bincount(np.searchsorted(edges, present, side="left"), minlength=len(edges) + 1)
        bounds = [float(present.min()), *edges, float(present.max())]
        stats |= {
            "mean": float(present.mean()),
            "sum": float(present.sum()),
            "std_dev": float(present.std()),
            "min": float(present.min()),
            "max": float(present.max()),
            "distribution": {
                "quantile": {
                    "buckets": [
                        {"lower_bound": bounds[i], "upper_bound": bounds[i + 1], "count": int(counts[i])}
                        for i in range(len(edges) + 1)
                    ]
                }
            },
        }
    return {"name": name, "inferred_type": "Fractional", "numerical_statistics": stats}


def _categorical(name: str, values: Sequence[object]) -> dict[str, Any]:
    from collections import Counter

    present = [str(v) for v in values if not (v is None or (isinstance(v, float) and math.isnan(v)))]
    counts = Counter(present)
    top = counts.most_common(MAX_CATEGORIES)
    other = len(present) - sum(c for _, c in top)
    return {
        "name": name,
        "inferred_type": "String",
        "string_statistics": {
            "common": {"num_present": len(present), "num_missing": len(values) - len(present)},
            "distinct_count": len(counts),
            "distribution": {
                "categorical": {"buckets": [{"value": v, "count": c} for v, c in top], "other_count": other}
            },
        },
    }


def statistics(frame: Any, schema_features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``statistics.json`` document of ``frame`` (the training split as the model sees it:
    :func:`train.prepare_features` output, numeric float64 with NaN, categorical str or NaN).

    Args:
        frame: pandas DataFrame with every schema feature column.
        schema_features: ``schema.json``'s ``features`` (``name``, ``type`` ``numeric`` | ``categorical``).
    Returns:
        ``{"version": 0.0, "dataset": {"item_count": rows}, "features": [...]}`` in schema order.
    """
    features = []
    for feat in schema_features:
        column = frame[feat["name"]].tolist()
        features.append(
            _numeric(feat["name"], column) if feat["type"] == "numeric" else _categorical(feat["name"], column)
        )
    return {"version": 0.0, "dataset": {"item_count": int(len(frame))}, "features": features}
