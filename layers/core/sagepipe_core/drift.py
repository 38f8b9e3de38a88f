"""Input drift: the live model's training baseline against the endpoint's captured requests (issue 14).

SageMaker Model Monitor is closed to new customers (since 2026-07-30, per AWS's documentation), so the
check is sagepipe's own, run by DriftFunction on an EventBridge schedule. A Lambda, not a Processing job:
it streams the window's capture files and keeps only per-feature bucket counts (memory independent of the
window), and parses and counts ≈ 45,000 captured records a second on a 2-core machine (``bench/drift.py``;
S3 reads come on top), so one 15-minute invocation covers a window of millions of records; a model whose
window captures more should sample less (``data_capture_percentage``) or move the check to a Processing job.

For each feature of the baseline (``model/baseline.py``, ``baseline/statistics.json`` in ``model.tar.gz``):

- **PSI** (population stability index) over the baseline's buckets plus a *missing* bucket:
  ``Σ (a_i - e_i) · ln(a_i / e_i)`` with ``e``/``a`` the baseline/window shares, each count +0.5
  (so an empty bucket is finite);
- numeric features: the **KS** statistic ``max |F_baseline - F_window|`` of the present values, at the
  bucket edges (a lower bound of the exact two-sample statistic);
- categorical features: the **L∞** distance ``max |e_i - a_i|`` of the category shares (Model Monitor's
  ``LInfinity`` categorical method); values the baseline never saw count in its ``other`` bucket.

A feature drifts when its PSI, less the PSI chance alone gives a window of that size
(:func:`psi_noise`), reaches ``psi_threshold``, or its second score reaches ``ks_threshold`` /
``linf_threshold`` (per-model config ``drift``). A window with fewer than ``min_samples`` records is not judged.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import uuid
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .events import DRIFT_DETAIL_TYPE
from .values import is_missing, parse_number

__all__ = ["DRIFT_DETAIL_TYPE", "check_all", "check_endpoint", "feature_counts", "judge", "psi"]

#: ``model.tar.gz`` member written by the training script (``model/baseline.py``).
STATISTICS_FILE = "baseline/statistics.json"
#: Features listed in the event (all are in the report); keeps PutEvents far under its 256 KB.
MAX_EVENT_FEATURES = 50
#: Added to every bucket count before shares are taken (PSI of an empty bucket stays finite).
SMOOTHING = 0.5
OTHER = "__other__"
MISSING = "__missing__"


class BaselineError(ValueError):
    """The live model has no usable ``baseline/statistics.json`` (trained before baselines, or malformed)."""


@dataclass
class FeatureCounts:
    """Bucket counts of one feature: the baseline's and, filled by :meth:`add`, the window's.

    Numeric: ``edges`` (ascending upper bounds of all buckets but the last), ``expected`` the baseline's
    counts per bucket then missing. Categorical: ``categories`` (value → bucket index), then ``other``, then
    missing.
    """

    name: str
    kind: str  # "numeric" | "categorical"
    expected: list[int]
    edges: list[float] = field(default_factory=list)
    categories: dict[str, int] = field(default_factory=dict)
    actual: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.actual = [0] * len(self.expected)

    def add(self, value: Any) -> None:
        """Count one captured value (a JSON number or string; missing tokens and null are missing)."""
        missing = len(self.expected) - 1
        if value is None or (isinstance(value, str) and is_missing(value)):
            self.actual[missing] += 1
            return
        if self.kind == "numeric":
            number: float | None
            if isinstance(value, bool):
                number = None
            elif isinstance(value, int | float):
                number = float(value)
            else:
                number = parse_number(str(value))
            if number is None or math.isnan(number):
                self.actual[missing] += 1
            else:
                self.actual[bisect_left(self.edges, number)] += 1
        else:
            self.actual[self.categories.get(str(value), len(self.categories))] += 1


def feature_counts(statistics: Mapping[str, Any]) -> list[FeatureCounts]:
    """One :class:`FeatureCounts` per feature of a ``statistics.json`` document.

    Raises:
        BaselineError: a feature entry lacks its distribution, or the document is not the baseline's shape.
    """
    out = []
    try:
        for feat in statistics["features"]:
            if "numerical_statistics" in feat:
                stats = feat["numerical_statistics"]
                buckets = stats.get("distribution", {}).get("quantile", {}).get("buckets", [])
                if not buckets:  # a feature never present in training: only its missing share is compared
                    out.append(FeatureCounts(feat["name"], "numeric", [0, int(stats["common"]["num_missing"])]))
                    continue
                edges = [float(b["upper_bound"]) for b in buckets[:-1]]
                expected = [int(b["count"]) for b in buckets] + [int(stats["common"]["num_missing"])]
                out.append(FeatureCounts(feat["name"], "numeric", expected, edges=edges))
            else:
                stats = feat["string_statistics"]
                dist = stats["distribution"]["categorical"]
                categories = {str(b["value"]): i for i, b in enumerate(dist["buckets"])}
                expected = [int(b["count"]) for b in dist["buckets"]]
                expected += [int(dist.get("other_count", 0)), int(stats["common"]["num_missing"])]
                out.append(FeatureCounts(feat["name"], "categorical", expected, categories=categories))
    except (KeyError, TypeError, ValueError) as exc:
        raise BaselineError(f"baseline statistics are malformed: {exc!r}") from exc
    return out


def _shares(counts: list[int]) -> list[float]:
    total = sum(counts) + SMOOTHING * len(counts)
    return [(c + SMOOTHING) / total for c in counts]


def psi(expected: list[int], actual: list[int]) -> float:
    """Population stability index of two count vectors over the same buckets (counts + :data:`SMOOTHING`)."""
    e, a = _shares(expected), _shares(actual)
    return sum((ai - ei) * math.log(ai / ei) for ei, ai in zip(e, a, strict=True))


def ks_binned(expected: list[int], actual: list[int]) -> float:
    """``max |F_e - F_a|`` of the cumulative shares of two bucket count vectors.

    Missing values are excluded (the caller passes the present buckets only); 0 when either side has none.
    """
    te, ta = sum(expected), sum(actual)
    if not te or not ta:
        return 0.0
    ce = ca = 0
    best = 0.0
    for e, a in zip(expected, actual, strict=True):
        ce, ca = ce + e, ca + a
        best = max(best, abs(ce / te - ca / ta))
    return best


def linf(expected: list[int], actual: list[int]) -> float:
    """``max |e_i - a_i|`` of the raw shares (no smoothing); 0 when either side is empty."""
    te, ta = sum(expected), sum(actual)
    if not te or not ta:
        return 0.0
    return max(abs(e / te - a / ta) for e, a in zip(expected, actual, strict=True))


def psi_noise(expected: list[int], actual: list[int]) -> float:
    """The PSI two samples of one distribution show by chance: ``(k - 1) · (1/n + 1/N)``.

    For ``k`` buckets holding ``n`` window and ``N`` baseline values, PSI (a symmetric Kullback-Leibler
    divergence) is ≈ ``χ²(k-1) · (1/n + 1/N)`` when nothing changed, whose mean this is. Without it a
    51-value categorical (``state``) scored ≈ 0.27 on 200 unshifted records and every window alarmed
    (``bench/drift.py``). Buckets empty on both sides do not count.
    """
    n, big_n = sum(actual), sum(expected)
    if not n or not big_n:
        return 0.0
    k = sum(1 for e, a in zip(expected, actual, strict=True) if e or a)
    return max(k - 1, 0) * (1 / n + 1 / big_n)


def score(counts: FeatureCounts, *, psi_threshold: float, ks_threshold: float, linf_threshold: float) -> dict[str, Any]:
    """One feature's scores: ``{"name", "type", "psi", "psi_noise", "ks"|"linf", "samples", "drifted"}``.

    ``drifted``: ``psi - psi_noise`` ≥ ``psi_threshold`` (:func:`psi_noise`), or the KS (numeric) / L∞
    (categorical) score ≥ its threshold. Scores are rounded to 6 decimals.
    """
    value = psi(counts.expected, counts.actual)
    noise = psi_noise(counts.expected, counts.actual)
    out: dict[str, Any] = {
        "name": counts.name,
        "type": counts.kind,
        "psi": round(value, 6),
        "psi_noise": round(noise, 6),
        "samples": sum(counts.actual),
    }
    if counts.kind == "numeric":
        second = ks_binned(counts.expected[:-1], counts.actual[:-1])
        out["ks"] = round(second, 6)
        out["drifted"] = value - noise >= psi_threshold or second >= ks_threshold
    else:
        second = linf(counts.expected, counts.actual)
        out["linf"] = round(second, 6)
        out["drifted"] = value - noise >= psi_threshold or second >= linf_threshold
    return out


# ------------------------------------------------------------------------------------- capture files
def capture_hours(start: datetime, end: datetime) -> list[str]:
    """The ``yyyy/mm/dd/hh`` capture folders (UTC) that can hold records of ``[start, end]``."""
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    out = []
    while hour <= end:
        out.append(hour.strftime("%Y/%m/%d/%H"))
        hour += timedelta(hours=1)
    return out


def _instances(payload: dict[str, Any], feature_order: list[str]) -> list[dict[str, Any]]:
    """The records of one captured request body (``endpointInput``).

    JSON ``{"instances": [...]}`` (as the predict function sends) or headerless CSV rows in the schema's
    feature order (as the model server accepts). Unreadable bodies give no records.
    """
    data, encoding = payload.get("data", ""), payload.get("encoding", "")
    try:
        raw = base64.b64decode(data).decode("utf-8") if encoding == "BASE64" else str(data)
    except (ValueError, UnicodeDecodeError):
        return []
    media = str(payload.get("observedContentType", "")).split(";")[0].strip().lower()
    if media == "text/csv" or encoding == "CSV":
        return [dict(zip(feature_order, row, strict=False)) for row in csv.reader(io.StringIO(raw)) if row]
    try:
        doc = json.loads(raw)
    except ValueError:
        return []
    rows = doc.get("instances") if isinstance(doc, dict) else doc
    if not isinstance(rows, list):
        return []
    out: list[dict[str, Any]] = []
    for row in rows:
        if isinstance(row, dict):
            out.append(row)
        elif isinstance(row, list):
            out.append(dict(zip(feature_order, row, strict=False)))
    return out


def captured_records(lines: Iterable[str], feature_order: list[str], start: datetime) -> Iterator[dict[str, Any]]:
    """The input records of capture JSON lines whose ``eventMetadata.inferenceTime`` is at or after ``start``."""
    for line in lines:
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            when = datetime.fromisoformat(item["eventMetadata"]["inferenceTime"].replace("Z", "+00:00"))
            payload = item["captureData"]["endpointInput"]
        except (ValueError, KeyError, TypeError):
            continue
        if when >= start:
            yield from _instances(payload, feature_order)


def judge(
    counts: list[FeatureCounts], *, psi_threshold: float, ks_threshold: float, linf_threshold: float
) -> list[dict[str, Any]]:
    """Every feature's :func:`score`, drifted first, then by PSI (highest first)."""
    scores = [
        score(c, psi_threshold=psi_threshold, ks_threshold=ks_threshold, linf_threshold=linf_threshold) for c in counts
    ]
    return sorted(scores, key=lambda s: (not s["drifted"], -s["psi"]))


# ------------------------------------------------------------------------------------- the scheduled check
@dataclass(frozen=True)
class LiveEndpoint:
    """What the check needs of one capturing endpoint.

    From DescribeEndpoint → DescribeEndpointConfig → DescribeModel.
    """

    endpoint: str
    endpoint_config: str
    variant: str
    model_name: str
    model_data_url: str
    model: str  # the sagepipe model (``models/<model>/<TrainingJobName>/output/model.tar.gz``)
    training_job: str
    capture_uri: str
    live_since: datetime
    drift: dict[str, Any]  # the version's drift settings (Model Environment SAGEPIPE_DRIFT; {} = defaults)


def _split_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key.rstrip("/")


def _drift_settings(environment: Mapping[str, str]) -> dict[str, Any]:
    from .deploy import DRIFT_ENV

    try:
        doc = json.loads(environment.get(DRIFT_ENV) or "{}")
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def capturing_endpoints(sm: Any, prefix: str, only_model: str | None = None) -> Iterator[LiveEndpoint | dict[str, Any]]:
    """Each InService endpoint named ``<prefix>-…`` (ListEndpoints, paginated).

    A :class:`LiveEndpoint` when it captures input, else ``{"endpoint", "status": "skipped", "reason"}``.
    """
    for page in sm.get_paginator("list_endpoints").paginate(NameContains=f"{prefix}-"):
        for item in page["Endpoints"]:
            name = item["EndpointName"]
            if not name.startswith(f"{prefix}-"):
                continue
            if item["EndpointStatus"] != "InService":
                yield {"endpoint": name, "status": "skipped", "reason": f"endpoint is {item['EndpointStatus']}"}
                continue
            ep = sm.describe_endpoint(EndpointName=name)
            cfg = sm.describe_endpoint_config(EndpointConfigName=ep["EndpointConfigName"])
            capture = cfg.get("DataCaptureConfig") or {}
            modes = {o.get("CaptureMode") for o in capture.get("CaptureOptions", [])}
            if not capture.get("EnableCapture") or "Input" not in modes:
                yield {"endpoint": name, "status": "skipped", "reason": "the endpoint does not capture its input"}
                continue
            variant = cfg["ProductionVariants"][0]
            container = sm.describe_model(ModelName=variant["ModelName"])["PrimaryContainer"]
            url = str(container.get("ModelDataUrl") or "")
            parts = _split_uri(url)[1].split("/")
            if len(parts) < 3 or parts[0] != "models":
                yield {"endpoint": name, "status": "skipped", "reason": f"model data {url!r} is not a sagepipe model"}
                continue
            if only_model is not None and parts[1] != only_model:
                continue
            yield LiveEndpoint(
                endpoint=name,
                endpoint_config=ep["EndpointConfigName"],
                variant=variant["VariantName"],
                model_name=variant["ModelName"],
                model_data_url=url,
                model=parts[1],
                training_job=parts[2],
                capture_uri=str(capture["DestinationS3Uri"]),
                live_since=ep["LastModifiedTime"],
                drift=_drift_settings(container.get("Environment") or {}),
            )


def read_window(
    s3: Any, live: LiveEndpoint, counts: list[FeatureCounts], start: datetime, end: datetime
) -> tuple[int, int]:
    """Count the window's captured records into ``counts``; ``(records, files)``.

    Lists ``<DestinationS3Uri>/<EndpointName>/<VariantName>/yyyy/mm/dd/hh/`` for each hour of the window
    (ListObjectsV2, paginated) and streams each file (GetObject).
    """
    bucket, prefix = _split_uri(live.capture_uri)
    order = [c.name for c in counts]
    records = files = 0
    paginator = s3.get_paginator("list_objects_v2")
    for hour in capture_hours(start, end):
        folder = f"{prefix}/{live.endpoint}/{live.variant}/{hour}/".lstrip("/")
        for page in paginator.paginate(Bucket=bucket, Prefix=folder):
            for obj in page.get("Contents", []):
                body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"]
                files += 1
                lines = (line.decode("utf-8", "replace") for line in body.iter_lines())
                for row in captured_records(lines, order, start):
                    records += 1
                    for c in counts:
                        c.add(row.get(c.name))
    return records, files


def _retrain_once(s3: Any, bucket: str, live: LiveEndpoint, now: datetime) -> tuple[bool, str | None]:
    """Claim the one retrain of this live version: ``(claimed, why not)``.

    PutObject ``…/drift/retrain-requested.json`` with ``IfNoneMatch: *`` (S3 conditional write; 412
    PreconditionFailed when it exists).
    """
    from botocore.exceptions import ClientError

    key = f"models/{live.model}/{live.training_job}/drift/retrain-requested.json"
    try:
        s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=json.dumps({"requested_at": now.isoformat(), "model_name": live.model_name}).encode(),
            ContentType="application/json",
            IfNoneMatch="*",
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"PreconditionFailed", "412"}:
            return False, f"a retrain was already requested for model version {live.model_name} (s3://{bucket}/{key})"
        raise
    return True, None


def check_endpoint(
    live: LiveEndpoint,
    *,
    s3: Any,
    events: Any,
    settings: Any,
    config: Any,
    now: datetime,
) -> dict[str, Any]:
    """Judge one endpoint's window against its live model's baseline; report, and alarm on drift.

    ``config`` is the model's :class:`~sagepipe_core.config.DriftConfig`. Writes the report to
    ``s3://<artifacts>/models/<model>/<TrainingJobName>/drift/<yyyymmddTHHMMSSZ>-<8 hex>.json`` (next to the run
    report) whenever the window is judged, and sends "Drift Detected" (PutEvents) when a feature drifts.
    Returns ``{"endpoint", "model", "status": "drift"|"no_drift"|"insufficient_data", "samples", ...}``.
    Raises :class:`BaselineError` when the model has no baseline, ``ClientError`` from AWS.
    """
    from .aws import read_artifact_members

    raw = read_artifact_members(s3, live.model_data_url, (STATISTICS_FILE,)).get(STATISTICS_FILE)
    if raw is None:
        raise BaselineError(f"{live.model_data_url} has no {STATISTICS_FILE} (trained before drift baselines)")
    try:
        statistics = json.loads(raw)
    except ValueError as exc:
        raise BaselineError(f"{STATISTICS_FILE} is not JSON: {exc}") from exc
    counts = feature_counts(statistics)
    start = max(now - timedelta(hours=config.window_hours), live.live_since.astimezone(UTC))
    samples, files = read_window(s3, live, counts, start, now)
    base = {
        "endpoint": live.endpoint,
        "model": live.model,
        "model_name": live.model_name,
        "endpoint_config": live.endpoint_config,
        "window": {"start": start.isoformat(), "end": now.isoformat(), "files": files},
        "samples": samples,
        "min_samples": config.min_samples,
        "baseline_rows": statistics.get("dataset", {}).get("item_count"),
    }
    if samples < config.min_samples:
        return {**base, "status": "insufficient_data"}
    scores = judge(
        counts,
        psi_threshold=config.psi_threshold,
        ks_threshold=config.ks_threshold,
        linf_threshold=config.linf_threshold,
    )
    drifted = [s for s in scores if s["drifted"]]
    thresholds = {k: getattr(config, k) for k in ("psi_threshold", "ks_threshold", "linf_threshold")}
    # the check's time, then a random suffix: two checks in one second never overwrite each other's report
    key = f"models/{live.model}/{live.training_job}/drift/{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}.json"
    report_uri = f"s3://{settings.artifacts_bucket}/{key}"
    result = {
        **base,
        "status": "drift" if drifted else "no_drift",
        "thresholds": thresholds,
        "drifted_features": [s["name"] for s in drifted],
        "report": report_uri,
    }
    if drifted:
        retrain, skipped = (False, None)
        if config.retrain:
            retrain, skipped = _retrain_once(s3, settings.artifacts_bucket, live, now)
        result |= {"retrain": retrain, **({"retrain_skipped": skipped} if skipped else {})}
    s3.put_object(
        Bucket=settings.artifacts_bucket,
        Key=key,
        Body=json.dumps({**result, "features": scores}, indent=2).encode(),
        ContentType="application/json",
    )
    if drifted:
        detail = {**result, "features": drifted[:MAX_EVENT_FEATURES]}
        resp = events.put_events(
            Entries=[
                {
                    "Source": settings.app_source,
                    "DetailType": DRIFT_DETAIL_TYPE,
                    "Detail": json.dumps(detail, default=str),
                    "EventBusName": settings.event_bus,
                }
            ]
        )
        if resp.get("FailedEntryCount"):
            raise RuntimeError(f"PutEvents refused {DRIFT_DETAIL_TYPE}: {resp.get('Entries')}")
    return result


def check_all(
    *, sm: Any, s3: Any, events: Any, settings: Any, now: datetime | None = None, only_model: str | None = None
) -> list[dict[str, Any]]:
    """DriftFunction: :func:`check_endpoint` for every capturing endpoint of the stack (or ``only_model``'s).

    Each endpoint is judged by its live version's drift settings (the config's ``drift`` when it was
    deployed: Model Environment ``SAGEPIPE_DRIFT``; defaults when absent). An endpoint that cannot be
    checked (no baseline, invalid settings) is reported ``{"status": "error", "reason"}`` and the others are
    still checked; AWS errors are raised (Lambda retries the scheduled invocation).
    """
    from pydantic import ValidationError

    from .aws import ArtifactError
    from .config import DriftConfig

    now = now or datetime.now(UTC)
    out: list[dict[str, Any]] = []
    for live in capturing_endpoints(sm, settings.resource_prefix, only_model):
        if isinstance(live, dict):
            out.append(live)
            continue
        try:
            config = DriftConfig.model_validate(live.drift)
            out.append(check_endpoint(live, s3=s3, events=events, settings=settings, config=config, now=now))
        except (BaselineError, ValidationError, ArtifactError) as exc:
            out.append({"endpoint": live.endpoint, "model": live.model, "status": "error", "reason": str(exc)})
    return out
