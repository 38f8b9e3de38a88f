"""What a real client sees (issue 16, item 6): the twin's answers to boto3 and plain HTTP clients carry
the types, fields and headers AWS sends, so a typed SDK or a browser behaves against the twin as against
AWS."""

from __future__ import annotations

import time
from typing import Any

import pytest

from sagepipe import client
from sagepipe.client import Target

from .conftest import churn_rows, wait_for, wait_for_key, write_csv

pytestmark = pytest.mark.twin


@pytest.fixture(scope="module")
def rejected_run(target: Target, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A run on a data set missing a column: it ends fast ("Pipeline Rejected") with its notifications."""
    header, rows = churn_rows(0, 200)
    cols = header.split(",")
    header = ",".join(cols[:-2] + cols[-1:])
    rows = [",".join(r.split(",")[:-2] + r.split(",")[-1:]) for r in rows]
    key = client.upload(target, write_csv(tmp_path_factory.mktemp("rej"), "bad.csv", header, rows), "clientview")
    [desc] = wait_for_key(target, key)
    events = wait_for(lambda: client.notifications(target, model="clientview") or None, "a notification")
    return {"key": key, "desc": desc, "events": events}


def test_notification_log_events_have_integer_millisecond_timestamps(target: Target, rejected_run: Any) -> None:
    """FilterLogEvents' ``timestamp``/``ingestionTime`` are longs (ms since the epoch) on AWS; moto's
    EventBridge → CloudWatch Logs target wrote ``time.time() * 1000`` floats, which typed SDKs refuse."""
    logs = target.client("logs")
    group = f"/aws/events/{target.stack_name}/notifications"
    page = logs.filter_log_events(logGroupName=group)
    assert page["events"]
    for event in page["events"]:
        assert type(event["timestamp"]) is int and type(event["ingestionTime"]) is int, event
    for stream in logs.describe_log_streams(logGroupName=group)["logStreams"]:
        for field in ("firstEventTimestamp", "lastEventTimestamp", "lastIngestionTime", "creationTime"):
            assert type(stream[field]) is int, (field, stream)
    assert abs(page["events"][0]["timestamp"] - time.time() * 1000) < 3600_000


def test_notification_events_name_the_account(target: Target, rejected_run: Any) -> None:
    """Every EventBridge event has ``account`` (the 12-digit id of the account it came from)."""
    for event in rejected_run["events"]:
        assert event.get("account") == "123456789012", sorted(event)
        assert {"version", "id", "detail-type", "source", "time", "region", "resources", "detail"} <= set(event)
