"""Trigger normalisation: every event that can start a run becomes :class:`DataVersion` items.

An event that is ignored becomes a :class:`Skip` with the reason.

Accepted shapes:
- S3 "Object Created" via EventBridge (``source: aws.s3``; S3 User Guide, "EventBridge event message
  structure"); ``detail.object.key`` is URL-encoded like classic notifications.
- A classic S3 event notification (``Records[].s3``; S3 User Guide, "Event message structure"), whose
  ``object.key`` is URL-encoded (``+`` is a space, a literal ``+`` is ``%2B``).
- A scheduled event (``source: aws.events``, ``detail-type: Scheduled Event``): retrain the model named
  by the function's ``SCHEDULED_MODEL_NAME``.
- A custom event (``source: <app source>``, ``detail-type: Retrain Requested``, ``detail.model``).
Retrains resolve to the newest ``.csv`` under ``datasets/<model>/``, ties within one second broken by
key (see :func:`latest_data_object`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import unquote_plus

from .errors import DatasetNotFoundError, InvalidEventError
from .naming import execution_name

DATASETS_PREFIX = "datasets/"
OUTPUT_PREFIXES = ("quarantine/", "runs/", "models/", "code/", "reports/")
RETRAIN_DETAIL_TYPE = "Retrain Requested"
#: DriftFunction's alarm (:data:`sagepipe_core.drift.DRIFT_DETAIL_TYPE`); with ``detail.retrain`` true the
#: DriftRetrain rule sends it here and it retrains the model on its latest data.
DRIFT_DETAIL_TYPE = "Drift Detected"
log = logging.getLogger("sagepipe")


@dataclass(frozen=True)
class DataVersion:
    """The identity of one data set version, and what triggered it.

    ``identity`` is the ETag for uploads (so a byte-identical re-upload is the same version) or the
    trigger's event id for retrains (so each firing is one run, and its redeliveries are not).
    """

    bucket: str
    key: str
    etag: str
    version_id: str | None
    size: int | None
    model: str
    trigger: str
    identity: str

    @property
    def execution_name(self) -> str:
        """Deterministic StartExecution ``name`` for this version (see :func:`naming.execution_name`)."""
        return execution_name(self.model, self.key, self.identity)

    def execution_input(self, **extra: Any) -> str:
        """The StartExecution ``input``: canonical JSON (sorted keys).

        No timestamps or request ids, so redeliveries produce byte-identical input.
        """
        doc = {
            "dataset": {k: v for k, v in asdict(self).items() if k not in {"model", "trigger", "identity"}},
            "model": self.model,
            "trigger": self.trigger,
            **extra,
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Skip:
    """An event that is deliberately not run; ``reason`` is logged."""

    reason: str
    key: str | None = None


@dataclass(frozen=True)
class Malformed:
    """One record of a multi-record event that cannot be read; the start function dead-letters it.

    ``record`` is the record as received (JSON), ``reason`` what is wrong with it.
    """

    reason: str
    record: Any


@dataclass(frozen=True)
class RetrainRequest:
    """A request to retrain ``model`` on its latest data; ``request_id`` is the trigger's event id."""

    model: str
    trigger: str
    request_id: str


def decode_key(raw: str) -> str:
    """Decode an S3 event object key exactly once (``unquote_plus``): ``a+b%2B.csv`` → ``a b+.csv``."""
    return unquote_plus(raw)


def classify_key(
    bucket: str,
    key: str,
    size: int | None,
    etag: str,
    version_id: str | None,
    trigger: str,
    *,
    data_bucket: str | None = None,
) -> DataVersion | Skip:
    """Turn one created object into a :class:`DataVersion`, or a :class:`Skip` saying why not.

    Skips: an object in a bucket other than ``data_bucket`` (the stack's ``DATA_BUCKET``, when given),
    keys under the stack's output prefixes, keys outside ``datasets/<model>/``, "folder" keys
    (ending in ``/``, which the S3 console creates as zero-byte objects), and non-``.csv`` keys. A
    zero-byte ``.csv`` is an upload, not a folder: it runs, and ValidateData quarantines it as ``empty``.
    The model name is not checked here (ValidateData quarantines an invalid one, so nothing is lost).
    """
    if data_bucket and bucket != data_bucket:
        return Skip(f"bucket {bucket!r} is not the data bucket {data_bucket!r}", key)
    if key.startswith(OUTPUT_PREFIXES):
        return Skip("key is under an output prefix written by the stack (no recursive triggers)", key)
    if not key.startswith(DATASETS_PREFIX):
        return Skip("key is outside datasets/", key)
    parts = key[len(DATASETS_PREFIX) :].split("/", 1)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        return Skip("key is not of the form datasets/<model>/<file>.csv", key)
    if key.endswith("/"):
        return Skip("zero-byte folder placeholder (key ends in /)", key)
    if not key.lower().endswith(".csv"):
        return Skip("not a .csv object", key)
    return DataVersion(
        bucket=bucket,
        key=key,
        etag=etag.strip('"'),
        version_id=version_id or None,
        size=size,
        model=parts[0],
        trigger=trigger,
        identity=etag.strip('"'),
    )


def _classic_record(rec: Any, data_bucket: str | None) -> DataVersion | Skip | Malformed:
    """One ``Records[]`` entry of a classic S3 notification; a record that cannot be read is :class:`Malformed`."""
    try:
        s3 = rec["s3"]
        name = rec.get("eventName", "ObjectCreated:Put")
        if not isinstance(name, str) or not name.startswith("ObjectCreated"):
            return Skip(f"event {name} is not an object creation")
        obj = s3["object"]
        return classify_key(
            s3["bucket"]["name"],
            decode_key(obj["key"]),
            obj.get("size"),
            obj.get("eTag", ""),
            obj.get("versionId"),
            f"s3:{name}",
            data_bucket=data_bucket,
        )
    except (KeyError, TypeError, AttributeError) as exc:
        return Malformed(f"S3 notification record lacks or mistypes {exc}", rec)


def normalize(
    event: dict[str, Any], *, app_source: str, scheduled_model: str | None, data_bucket: str | None = None
) -> list[DataVersion | Skip | RetrainRequest | Malformed]:
    """Normalise any accepted trigger event into a list of items (classic S3 events may hold several records).

    Each record of a classic S3 notification is read on its own: one that cannot be read becomes a
    :class:`Malformed` item (the others still run). Objects outside ``data_bucket`` are skipped.
    Raises :class:`InvalidEventError` for shapes that are none of the accepted ones.
    """
    if not isinstance(event, dict):
        raise InvalidEventError("event is not a JSON object")
    if "Records" in event:
        if not isinstance(event["Records"], list):
            raise InvalidEventError("Records is not a list")
        return [_classic_record(rec, data_bucket) for rec in event["Records"]]
    source, detail_type = event.get("source"), event.get("detail-type")
    detail = event.get("detail") or {}
    if source == "aws.s3":
        if detail_type != "Object Created":
            return [Skip(f"detail-type {detail_type!r} is not Object Created")]
        try:
            obj = detail["object"]
            return [
                classify_key(
                    detail["bucket"]["name"],
                    decode_key(obj["key"]),
                    obj.get("size"),
                    obj.get("etag") or obj.get("eTag", ""),
                    obj.get("version-id"),
                    f"s3:ObjectCreated:{detail.get('reason', 'PutObject')}",
                    data_bucket=data_bucket,
                )
            ]
        except (KeyError, TypeError) as exc:
            raise InvalidEventError(f"S3 EventBridge event lacks {exc}") from exc
    if source == "aws.events" and detail_type == "Scheduled Event":
        if not scheduled_model:
            raise InvalidEventError("scheduled event received but SCHEDULED_MODEL_NAME is not set")
        return [RetrainRequest(scheduled_model, "schedule", str(event.get("id", "")))]
    if source == app_source and detail_type == RETRAIN_DETAIL_TYPE:
        model = detail.get("model")
        if not isinstance(model, str) or not model or "/" in model:
            raise InvalidEventError("Retrain Requested needs detail.model (a model name)")
        return [RetrainRequest(model, "retrain-request", str(event.get("id", "")))]
    if source == app_source and detail_type == DRIFT_DETAIL_TYPE:
        model = detail.get("model")
        if not isinstance(model, str) or not model or "/" in model:
            raise InvalidEventError("Drift Detected needs detail.model (a model name)")
        if detail.get("retrain") is not True:
            return [Skip(f"Drift Detected for {model} does not request a retrain (drift.retrain is off or used)")]
        return [RetrainRequest(model, "drift", str(event.get("id", "")))]
    raise InvalidEventError(f"unsupported event: source={source!r} detail-type={detail_type!r}")


def _whole_second(value: Any) -> Any:
    """``LastModified`` cut to whole seconds (a ``datetime``; other values as they are)."""
    return value.replace(microsecond=0) if hasattr(value, "replace") and hasattr(value, "microsecond") else value


def latest_data_object(s3: Any, bucket: str, model: str) -> tuple[dict[str, Any] | None, list[str]]:
    """The newest non-empty ``.csv`` under ``datasets/<model>/`` (ListObjectsV2 paginator), chosen deterministically.

    Order: ``LastModified`` cut to whole seconds, then the key (the greatest wins). S3 keeps
    ``LastModified`` to the second (ListObjectsV2 returns ``…T12:00:00.000Z``; moto keeps microseconds,
    so without the cut the twin would order uploads of the same second that AWS cannot), and it records no
    order between two keys written in the same second; ``VersionId`` is an opaque string, not ordered
    (S3 User Guide, "How S3 Versioning works"), so it cannot break the tie meaningfully, while the key is
    stable and chosen by the user (``2026-12-03.csv`` after ``2026-12-02.csv``). The result does not depend
    on the listing order.

    Returns:
        ``(object, tied)``: the ListObjectsV2 ``Contents`` entry (None when there is none) and the other
        keys with the same whole-second ``LastModified`` that lost the tie (sorted).
    """
    candidates: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{DATASETS_PREFIX}{model}/"):
        candidates.extend(o for o in page.get("Contents", []) if o["Key"].lower().endswith(".csv") and o["Size"] > 0)
    if not candidates:
        return None, []
    newest = max(candidates, key=lambda o: (_whole_second(o["LastModified"]), o["Key"]))
    second = _whole_second(newest["LastModified"])
    tied = sorted(o["Key"] for o in candidates if o is not newest and _whole_second(o["LastModified"]) == second)
    return newest, tied


def latest_data_version(s3: Any, bucket: str, request: RetrainRequest) -> DataVersion:
    """Resolve a retrain to the newest ``.csv`` object under ``datasets/<model>/`` (:func:`latest_data_object`).

    The ETag, VersionId and size are HeadObject's (one answer, even if the key was overwritten since the
    listing). The identity is ``<trigger>:<request_id>`` so every firing runs once. Raises
    :class:`DatasetNotFoundError`.
    """
    newest, tied = latest_data_object(s3, bucket, request.model)
    if newest is None:
        raise DatasetNotFoundError(
            f"no .csv data set under s3://{bucket}/{DATASETS_PREFIX}{request.model}/", model=request.model
        )
    if tied:
        log.info(
            "retrain of %s: %s and %d other key(s) share the newest LastModified second; chose %s by key order",
            request.model,
            newest["Key"],
            len(tied),
            newest["Key"],
            extra={"tied_keys": tied[:20]},
        )
    head = s3.head_object(Bucket=bucket, Key=newest["Key"])
    return DataVersion(
        bucket=bucket,
        key=newest["Key"],
        etag=str(head.get("ETag") or newest["ETag"]).strip('"'),
        version_id=head.get("VersionId"),
        size=int(head.get("ContentLength", newest["Size"])),
        model=request.model,
        trigger=request.trigger,
        identity=f"{request.trigger}:{request.request_id}",
    )
