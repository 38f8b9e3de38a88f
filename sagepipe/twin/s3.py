"""moto's S3 → EventBridge notifications, shaped as AWS sends them (the ``s3_eventbridge`` patch, registered
in :mod:`sagepipe.twin.patches`): URL-encoded key, unique id and sequencer, ISO time, and each default-bus
rule's delivery failure logged without failing the PutObject.
"""

from __future__ import annotations

import inspect
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

from .patches import MotoInternalsChanged, Patch, _install, _require, twin

if TYPE_CHECKING:
    from moto.events.utils import EventMessageType


def _check_s3_eventbridge() -> None:
    import moto.s3.notifications as notifications

    _require(notifications, "_send_event_bridge_message", ["account_id", "bucket", "event_name", "key"])
    if "_send_event_bridge_message(" not in inspect.getsource(notifications.send_event):
        raise MotoInternalsChanged("moto.s3.notifications.send_event no longer calls _send_event_bridge_message")


def _apply_s3_eventbridge() -> None:
    import moto.s3.notifications as notifications

    def _send_event_bridge_message(account_id: str, bucket: Any, event_name: str, key: Any) -> None:
        from moto.events.models import events_backends

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
                "reason": event_name.split(":")[-1],
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


PATCHES: tuple[Patch, ...] = (
    Patch(
        "s3_eventbridge",
        ("moto.s3.notifications:_send_event_bridge_message",),
        _check_s3_eventbridge,
        _apply_s3_eventbridge,
    ),
)
