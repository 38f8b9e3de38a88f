"""moto's S3 → EventBridge notifications, shaped as AWS sends them (the ``s3_eventbridge`` patch, registered
in :mod:`sagepipe.twin.patches`): URL-encoded key, unique id and sequencer, ISO time, ``reason`` named by the
API that caused it (``PutObject``, ``CompleteMultipartUpload``...: S3 User Guide, "EventBridge event message
structure"), and each default-bus rule's delivery failure logged without failing the PutObject.

One request, one event: CompleteMultipartUpload sends only its "Object Created" (moto's completion stores
the object through ``put_object``, which sent a second one with reason Put), and "Object Tags Added" comes
from PutObjectTagging only (moto sent one for every PutObject and completion, tagged or not).  This applies
to EventBridge; moto's bucket notifications to Lambda/SQS/SNS are not used by the template.
"""

from __future__ import annotations

import functools
import inspect
import threading
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

from .patches import _APPLIED, MotoInternalsChanged, Patch, _install, _require, twin

if TYPE_CHECKING:
    from moto.events.utils import EventMessageType


#: moto's event name -> the ``reason`` AWS gives (the API that caused the event)
REASONS = {
    "s3:ObjectCreated:Put": "PutObject",
    "s3:ObjectCreated:Post": "POST Object",
    "s3:ObjectCreated:Copy": "CopyObject",
    "s3:ObjectCreated:CompleteMultipartUpload": "CompleteMultipartUpload",
    "s3:ObjectRemoved:Delete": "DeleteObject",
    "s3:ObjectRemoved:DeleteMarkerCreated": "DeleteObject",
    "s3:ObjectTagging:Put": "PutObjectTagging",
    "s3:ObjectTagging:Delete": "DeleteObjectTagging",
    "s3:ObjectAcl:Put": "PutObjectAcl",
    "s3:ObjectRestore:Post": "RestoreObject",
}

_TAGGING_PUT = "s3:ObjectTagging:Put"
_CREATED_PUT = "s3:ObjectCreated:Put"
_REQUEST = threading.local()  # per moto request thread: .completing (bool), .tagging_api (bool)


def _suppressed(event_name: str) -> bool:
    """Whether moto's ``event_name`` is a by-product of another request's event (see module docstring)."""
    if event_name == _TAGGING_PUT:
        return not getattr(_REQUEST, "tagging_api", False)
    return event_name == _CREATED_PUT and getattr(_REQUEST, "completing", False)


def _check_s3_eventbridge() -> None:
    import moto.s3.notifications as notifications
    from moto.s3.models import S3Backend
    from moto.s3.responses import S3Response

    _require(notifications, "_send_event_bridge_message", ["account_id", "bucket", "event_name", "key"])
    _require(S3Backend, "complete_multipart_upload", ["self", "bucket_name", "multipart_id", "body"])
    _require(S3Response, "put_object_tagging", ["self"])
    for name in (*REASONS, _TAGGING_PUT, _CREATED_PUT):
        if name not in {str(e.value) for e in notifications.S3NotificationEvent}:
            raise MotoInternalsChanged(f"moto's S3NotificationEvent no longer has {name}")
    if "_send_event_bridge_message(" not in inspect.getsource(notifications.send_event):
        raise MotoInternalsChanged("moto.s3.notifications.send_event no longer calls _send_event_bridge_message")


def _apply_s3_eventbridge() -> None:
    import moto.s3.notifications as notifications
    from moto.s3.models import S3Backend
    from moto.s3.responses import S3Response

    def _send_event_bridge_message(account_id: str, bucket: Any, event_name: str, key: Any) -> None:
        from moto.events.models import events_backends

        if _suppressed(event_name):
            return
        detail_type = notifications._detail_type(event_name)
        event: EventMessageType = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": detail_type,
            "source": "aws.s3",
            "account": account_id,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": bucket.region_name,
            "resources": [bucket.arn],
            "detail": {
                "version": "0",
                "bucket": {"name": bucket.name},
                "object": {
                    "key": quote_plus(key.name, safe="/"),
                    "size": key.size,
                    "etag": key.etag.replace('"', ""),
                    **({"version-id": key.version_id} if key.version_id and key.version_id != "null" else {}),
                    "sequencer": uuid.uuid4().hex[:18].upper(),
                },
                "request-id": uuid.uuid4().hex[:16].upper(),
                "requester": account_id,
                "source-ip-address": "127.0.0.1",
                "reason": REASONS.get(event_name, event_name.split(":")[-1]),
            },
        }
        backend = events_backends[account_id][bucket.region_name]
        bus = backend.event_buses.get("default")
        for rule in list(bus.rules.values()) if bus else []:
            try:
                rule.send_to_targets(event, transform_input=True)
            except Exception as exc:  # noqa: BLE001 - as on AWS, the PutObject itself succeeds
                twin().log("events", f"S3 event delivery via rule {rule.name} failed: {exc!r}")

    _install("s3_eventbridge", notifications, "_send_event_bridge_message", _send_event_bridge_message)
    complete = _APPLIED.setdefault("s3.complete_multipart_upload", S3Backend.complete_multipart_upload)
    tagging = _APPLIED.setdefault("s3.put_object_tagging", S3Response.put_object_tagging)

    @functools.wraps(complete)
    def complete_multipart_upload(self: Any, bucket_name: str, multipart_id: str, body: Any) -> Any:
        _REQUEST.completing = True
        try:
            return complete(self, bucket_name, multipart_id, body)
        finally:
            _REQUEST.completing = False

    @functools.wraps(tagging)
    def put_object_tagging(self: Any) -> Any:
        _REQUEST.tagging_api = True
        try:
            return tagging(self)
        finally:
            _REQUEST.tagging_api = False

    _install("s3_eventbridge", S3Backend, "complete_multipart_upload", complete_multipart_upload)
    _install("s3_eventbridge", S3Response, "put_object_tagging", put_object_tagging)


PATCHES: tuple[Patch, ...] = (
    Patch(
        "s3_eventbridge",
        (
            "moto.s3.notifications:_send_event_bridge_message",
            "moto.s3.models:S3Backend.complete_multipart_upload",
            "moto.s3.responses:S3Response.put_object_tagging",
        ),
        _check_s3_eventbridge,
        _apply_s3_eventbridge,
    ),
)
