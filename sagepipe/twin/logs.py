"""CloudWatch Logs event timestamps as AWS keeps them (patch ``logs_integer_timestamps``).

A log event's ``timestamp`` is a long: milliseconds since the epoch (CloudWatch Logs API Reference,
``InputLogEvent`` / ``FilteredLogEvent`` / ``OutputLogEvent``), and so are a stream's
``firstEventTimestamp``/``lastEventTimestamp``. moto's own writers - the EventBridge → CloudWatch Logs
target (``Rule._send_to_cw_log_group``) and Lambda's ``save_logs`` - pass ``unix_time_millis()``, a float,
so ``logs filter-log-events`` answered ``1796316538614.96``, which typed SDKs (Java's ``Long``, Go's
``int64``) refuse. PutLogEvents itself is typed by botocore's model (validated by ``server_validation``);
the patch truncates what moto stores to the whole millisecond, as AWS does.
"""

from __future__ import annotations

from typing import Any

from .patches import _APPLIED, Patch, _install, _require


def whole_ms(timestamp: Any) -> Any:
    """``timestamp`` (ms since the epoch) truncated to an ``int`` if it is a float; anything else as is."""
    return int(timestamp) if isinstance(timestamp, float) else timestamp


def _check() -> None:
    from moto.logs.models import LogEvent

    _require(LogEvent, "__init__", ["self", "ingestion_time", "log_event"])


def _apply() -> None:
    from moto.logs.models import LogEvent

    original = _APPLIED.setdefault("logs_integer_timestamps", LogEvent.__init__)

    def __init__(self: Any, ingestion_time: int, log_event: dict[str, Any]) -> None:  # noqa: N807 - moto's name
        original(self, whole_ms(ingestion_time), {**log_event, "timestamp": whole_ms(log_event["timestamp"])})

    _install("logs_integer_timestamps", LogEvent, "__init__", __init__)


PATCHES: tuple[Patch, ...] = (
    Patch("logs_integer_timestamps", ("moto.logs.models:LogEvent.__init__",), _check, _apply),
)
