"""EventBridge's PutEvents quota as AWS applies it (patch ``events_put_limits``).

"The total entry size must be less than 256KB" per PutEvents request (EventBridge User Guide,
"Calculating PutEvents event entry size"): an entry counts ``Time`` as 14 bytes (when given) plus the
UTF-8 bytes of ``Source``, ``DetailType``, ``Detail`` and each of ``Resources``. Past it AWS refuses the
whole request: ``ValidationException`` "Total size of the entries in the request is over the limit.".
moto accepted any size (and so did the twin, for Step Functions' ``events:putEvents`` tasks and the
Lambda steps' notifications alike: both reach this handler).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..patches import _APPLIED, Patch, _install, _require

#: PutEvents' quota: the request's entries must total less than this many bytes.
MAX_ENTRIES_BYTES = 256 * 1024
OVER_LIMIT = "Total size of the entries in the request is over the limit."


def entry_size(entry: Mapping[str, Any]) -> int:
    """One ``PutEventsRequestEntry``'s size in bytes, as EventBridge computes it (see module docstring)."""
    size = 14 if entry.get("Time") is not None else 0
    for key in ("Source", "DetailType", "Detail"):
        value = entry.get(key)
        if value is not None:
            size += len(str(value).encode("utf-8"))
    for resource in entry.get("Resources") or ():
        if resource is not None:
            size += len(str(resource).encode("utf-8"))
    return size


def entries_size(entries: Sequence[Mapping[str, Any]]) -> int:
    """The total size of a PutEvents request's entries (:func:`entry_size` summed), in bytes."""
    return sum(entry_size(e) for e in entries)


def _check() -> None:
    from moto.events import exceptions
    from moto.events.responses import EventsHandler

    _require(EventsHandler, "put_events", ["self"])
    _require(EventsHandler, "_get_param", ["self", "param_name"])
    _require(exceptions, "ValidationException")


def _apply() -> None:
    from moto.events.exceptions import ValidationException
    from moto.events.responses import EventsHandler

    original = _APPLIED.setdefault("events_put_limits", EventsHandler.put_events)

    def put_events(self: Any) -> str:
        if entries_size(self._get_param("Entries") or []) >= MAX_ENTRIES_BYTES:
            raise ValidationException(OVER_LIMIT)
        return str(original(self))

    _install("events_put_limits", EventsHandler, "put_events", put_events)


PATCHES: tuple[Patch, ...] = (
    Patch("events_put_limits", ("moto.events.responses:EventsHandler.put_events",), _check, _apply),
)
