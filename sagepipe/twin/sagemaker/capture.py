"""Endpoint data capture, written as SageMaker writes it (issue 14).

An EndpointConfig with ``DataCaptureConfig`` (``EnableCapture``, ``InitialSamplingPercentage``,
``DestinationS3Uri``, ``CaptureOptions``, ``CaptureContentTypeHeader``) makes SageMaker record a sample of the
endpoint's requests and responses in S3 as JSON lines, one object per record (SageMaker Developer Guide,
"Capture data from real-time endpoint" and "View collected data"; API Reference ``DataCaptureConfig``)::

    {"captureData": {"endpointInput": {"observedContentType": "text/csv", "mode": "INPUT",
                                       "data": "...", "encoding": "CSV"},
                     "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT",
                                        "data": "...", "encoding": "JSON"}},
     "eventMetadata": {"eventId": "<uuid>", "inferenceId": "<InferenceId, when sent>",
                       "inferenceTime": "2026-12-04T19:00:00Z"},
     "eventVersion": "0"}

under ``<DestinationS3Uri>/<EndpointName>/<VariantName>/yyyy/mm/dd/hh/<mm>-<ss>-<mmm>-<uuid>.jsonl`` (the
hour of the first record in the file, UTC). ``encoding`` is ``CSV`` / ``JSON`` for a content type listed in
``CaptureContentTypeHeader``'s ``CsvContentTypes`` / ``JsonContentTypes`` (text as sent), else ``BASE64``
(so is everything when the header is absent, as SageMaker does).

SageMaker buffers records and writes a file every few minutes; the twin writes its buffer every
:data:`FLUSH_INTERVAL_S` seconds and when it stops, with the model's execution role (the role then needs
``s3:PutObject`` on the destination, as on AWS). A capture that cannot be written never fails the
invocation: the endpoint's log says why and how many records were dropped.
"""

from __future__ import annotations

import base64
import json
import random
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

#: Seconds between the writer's flushes (SageMaker: minutes; the twin is quick so tests can read it).
FLUSH_INTERVAL_S = 1.0


def encode(body: bytes, content_type: str | None, header: dict[str, Any] | None) -> tuple[str, str]:
    """``(encoding, data)`` of one captured body: ``("CSV"|"JSON", text)`` when ``content_type`` (its media
    type, parameters ignored, case-insensitive) is in ``header``'s ``CsvContentTypes``/``JsonContentTypes`` and
    the body is UTF-8; else ``("BASE64", base64 text)``."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    for encoding, key in (("CSV", "CsvContentTypes"), ("JSON", "JsonContentTypes")):
        if media and media in {c.lower() for c in (header or {}).get(key, [])}:
            try:
                return encoding, body.decode("utf-8")
            except UnicodeDecodeError:
                break
    return "BASE64", base64.b64encode(body).decode("ascii")


def capture_record(
    config: dict[str, Any],
    *,
    request: bytes,
    request_type: str | None,
    response: bytes,
    response_type: str | None,
    when: datetime,
    event_id: str,
    inference_id: str | None = None,
) -> dict[str, Any]:
    """One captured invocation in SageMaker's record shape (module docstring), for the
    ``CaptureOptions`` modes of ``config`` (a DataCaptureConfig): ``Input`` → ``endpointInput``, ``Output``
    → ``endpointOutput``. ``when`` is the inference time (UTC)."""
    modes = {option.get("CaptureMode") for option in config.get("CaptureOptions", [])}
    header = config.get("CaptureContentTypeHeader")
    data: dict[str, Any] = {}
    for mode, key, body, ctype in (
        ("Input", "endpointInput", request, request_type),
        ("Output", "endpointOutput", response, response_type),
    ):
        if mode in modes:
            encoding, text = encode(body, ctype, header)
            data[key] = {
                "observedContentType": ctype or "application/octet-stream",
                "mode": mode.upper(),
                "data": text,
                "encoding": encoding,
            }
    metadata = {"eventId": event_id, "inferenceTime": when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    if inference_id:
        metadata["inferenceId"] = inference_id
    return {"captureData": data, "eventMetadata": metadata, "eventVersion": "0"}


def capture_location(destination: str, endpoint: str, variant: str, when: datetime, file_id: str) -> tuple[str, str]:
    """``(bucket, key)`` of a capture file: ``<destination>/<endpoint>/<variant>/yyyy/mm/dd/hh/<mm>-<ss>-<mmm>-
    <file_id>.jsonl`` (UTC). Raises ValueError for a destination that is not ``s3://bucket[/prefix]``."""
    if not destination.startswith("s3://") or not destination[5:].split("/", 1)[0]:
        raise ValueError(f"DestinationS3Uri must be s3://bucket[/prefix], got {destination!r}")
    bucket, _, prefix = destination[5:].partition("/")
    t = when.astimezone(UTC)
    name = f"{t:%M-%S}-{t.microsecond // 1000:03d}-{file_id}.jsonl"
    parts = [p for p in (prefix.strip("/"), endpoint, variant, f"{t:%Y/%m/%d/%H}", name) if p]
    return bucket, "/".join(parts)


@dataclass
class _Buffer:
    role_arn: str | None
    records: list[dict[str, Any]] = field(default_factory=list)
    first: datetime | None = None


class CaptureWriter:
    """Samples an endpoint's answered invocations and writes them in batches (module docstring).

    Args:
        config_for: ``EndpointConfigName`` → ``(DataCaptureConfig or None, VariantName)`` (the twin reads
            moto's EndpointConfig).
        s3_factory: ``role_arn`` → an S3 client signed as that role.
        log_sink: ``(prefix, line)`` for the endpoint's log.
        sample: a uniform random number in [0, 1) per invocation (``random.random``; tests pass their own).
    """

    def __init__(
        self,
        config_for: Callable[[str], tuple[dict[str, Any] | None, str]],
        s3_factory: Callable[[str | None], Any],
        log_sink: Callable[[str, str], None],
        sample: Callable[[], float] = random.random,
    ) -> None:
        self.config_for, self.s3_factory, self.log_sink, self.sample = config_for, s3_factory, log_sink, sample
        self._lock = threading.Lock()
        self._buffers: dict[tuple[str, str, str], _Buffer] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.written = 0  # records written to S3
        self.dropped = 0  # records that could not be written

    def capture(
        self,
        *,
        endpoint: str,
        endpoint_config: str,
        role_arn: str | None,
        request: bytes,
        request_type: str | None,
        response: bytes,
        response_type: str | None,
        inference_id: str | None = None,
    ) -> bool:
        """Record one answered invocation when ``endpoint_config`` captures and the sample says so
        (``sample() * 100 < InitialSamplingPercentage``). Returns whether it was recorded. Never raises for a
        missing or disabled configuration."""
        config, variant = self.config_for(endpoint_config)
        if not config or not config.get("EnableCapture", False):
            return False
        if self.sample() * 100 >= float(config.get("InitialSamplingPercentage", 0)):
            return False
        when = datetime.now(UTC)
        record = capture_record(
            config,
            request=request,
            request_type=request_type,
            response=response,
            response_type=response_type,
            when=when,
            event_id=str(uuid.uuid4()),
            inference_id=inference_id,
        )
        with self._lock:
            buffer = self._buffers.setdefault((config["DestinationS3Uri"], endpoint, variant), _Buffer(role_arn))
            buffer.records.append(record)
            buffer.first = buffer.first or when
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="data-capture", daemon=True)
                self._thread.start()
        return True

    def _run(self) -> None:
        while not self._stop.wait(FLUSH_INTERVAL_S):
            self.flush()

    def flush(self) -> int:
        """Write every buffered record (one object per destination, endpoint and variant). Returns the
        number written; a failed write is logged to the endpoint's log and its records dropped."""
        with self._lock:
            buffers, self._buffers = self._buffers, {}
        written = 0
        for (destination, endpoint, variant), buffer in buffers.items():
            if not buffer.records or buffer.first is None:
                continue
            body = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in buffer.records).encode()
            try:
                bucket, key = capture_location(destination, endpoint, variant, buffer.first, uuid.uuid4().hex)
                self.s3_factory(buffer.role_arn).put_object(
                    Bucket=bucket, Key=key, Body=body, ContentType="application/jsonlines"
                )
            except Exception as exc:  # noqa: BLE001 - capture never fails an invocation; the log says why
                self.dropped += len(buffer.records)
                self.log_sink(
                    f"endpoint:{endpoint}",
                    f"data capture: {len(buffer.records)} records not written to {destination}: {exc}",
                )
                continue
            written += len(buffer.records)
        self.written += written
        return written

    def close(self) -> None:
        """Stop the flushing thread and write what is buffered."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()
