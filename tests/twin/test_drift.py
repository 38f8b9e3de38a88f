"""Drift → retrain on the twin (issue 14): training writes the baseline, the endpoint captures the API's
traffic, DriftFunction (as its own role) judges the window, "Drift Detected" is a notification, and with
``drift.retrain`` the DriftRetrain rule starts a retrain run; unshifted traffic raises no alarm."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from sagepipe import client
from sagepipe.client import Target
from sagepipe_core import drift

from .conftest import CHURN, churn_config, executions_for, record, wait_for, wait_for_key

pytestmark = pytest.mark.twin
MODEL = "drifting"
ENDPOINT = f"sagepipe-{MODEL}"


@pytest.fixture(scope="module")
def live(twin: Any, target: Target, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``drifting`` (churn, 1,500 rows) deployed with 100 % capture and ``drift.retrain``; held-out records."""
    directory = tmp_path_factory.mktemp("drift")
    header, *rows = CHURN.read_text().splitlines()
    path = directory / "churn.csv"
    path.write_text("\n".join([header, *rows[:1500]]) + "\n")
    config = churn_config(
        directory,
        endpoint={"instance_type": "ml.m5.large", "instance_count": 1, "data_capture_percentage": 100},
        drift={"min_samples": 200, "window_hours": 1, "retrain": True},
    )
    key = client.upload(target, path, MODEL, config)
    [desc] = wait_for_key(target, key)
    assert desc["status"] == "SUCCEEDED", desc.get("cause")
    names = header.split(",")
    held_out = [dict(zip(names, r.split(","), strict=True)) for r in rows[1500:2100]]
    for r in held_out:
        r.pop("churn")
    return {"key": key, "records": held_out}


def _send(target: Target, records: list[dict[str, Any]]) -> None:
    headers = {"Content-Type": "application/json", "x-api-key": target.api_key}
    for i in range(0, len(records), 50):
        resp = requests.post(
            f"{target.api_url}/models/{MODEL}/predictions",
            data=json.dumps({"instances": records[i : i + 50]}),
            headers=headers,
            timeout=30,
        )
        assert resp.status_code == 200, resp.text


def _captured(target: Target) -> int:
    s3 = target.client("s3")
    listing = s3.list_objects_v2(Bucket=target.artifacts_bucket, Prefix=f"datacapture/{ENDPOINT}/")
    total = 0
    for obj in listing.get("Contents", []):
        body = s3.get_object(Bucket=target.artifacts_bucket, Key=obj["Key"])["Body"].read().decode()
        total += sum(
            len(json.loads(json.loads(line)["captureData"]["endpointInput"]["data"])["instances"])
            for line in body.splitlines()
            if line
        )
    return total


def _check(target: Target) -> dict[str, Any]:
    """Invoke DriftFunction (RequestResponse) for this model, as the schedule does for all."""
    lam = target.client("lambda")
    [name] = [f["FunctionName"] for f in lam.list_functions()["Functions"] if "DriftFunction" in f["FunctionName"]]
    resp = lam.invoke(FunctionName=name, Payload=json.dumps({"id": "drift-check", "model": MODEL}).encode())
    payload = json.loads(resp["Payload"].read())
    assert "FunctionError" not in resp, payload
    [result] = payload["results"]
    return result


def test_unshifted_traffic_raises_no_alarm_and_shifted_traffic_retrains(live: dict[str, Any], target: Target) -> None:
    unshifted = live["records"][:300]
    _send(target, unshifted)
    wait_for(lambda: _captured(target) >= 300, "300 captured records")
    calm = _check(target)
    assert calm["status"] == "no_drift" and calm["samples"] == 300, calm
    assert not [n for n in client.notifications(target, MODEL) if n["detail-type"] == drift.DRIFT_DETAIL_TYPE]

    shifted = [
        r
        | {
            "total_day_minutes": f"{float(r['total_day_minutes']) * 1.6:.1f}",
            "account_length": str(int(r["account_length"]) + 90),
        }
        for r in live["records"][300:]
    ]
    _send(target, shifted)
    wait_for(lambda: _captured(target) >= 300 + len(shifted), "the shifted records captured")
    alarm = _check(target)
    assert alarm["status"] == "drift" and alarm["retrain"] is True, alarm
    assert {"total_day_minutes", "account_length"} <= set(alarm["drifted_features"]), alarm
    report = target.client("s3").get_object(
        Bucket=target.artifacts_bucket, Key=alarm["report"].removeprefix(f"s3://{target.artifacts_bucket}/")
    )
    assert {f["name"] for f in json.loads(report["Body"].read())["features"] if f["drifted"]} == set(
        alarm["drifted_features"]
    )
    again = _check(target)  # the same live version, still drifting: no second retrain
    assert again["status"] == "drift" and again["retrain"] is False, again
    assert "already requested" in again["retrain_skipped"], again

    def notified() -> list[dict[str, Any]]:
        return [n for n in client.notifications(target, MODEL) if n["detail-type"] == drift.DRIFT_DETAIL_TYPE]

    sent = wait_for(lambda: len(notified()) >= 2 and notified(), "both Drift Detected notifications")
    assert sorted((e["detail"]["report"], e["detail"]["retrain"]) for e in sent) == sorted(
        [(alarm["report"], True), (again["report"], False)]
    ), [
        (e["time"], e["detail"]["report"], e["detail"]["retrain"], e["detail"]["window"], e["detail"]["samples"])
        for e in sent
    ]
    runs = wait_for(
        lambda: len(executions_for(target, live["key"])) == 2 and executions_for(target, live["key"]),
        "the retrain run the DriftRetrain rule starts",
    )
    sfn = target.client("stepfunctions")
    triggers = {
        r["name"]: json.loads(sfn.describe_execution(executionArn=r["executionArn"])["input"])["trigger"] for r in runs
    }
    [retrain] = [name for name, trigger in triggers.items() if trigger == "drift"]

    ended = {d["name"]: d["status"] for d in wait_for_key(target, live["key"])}  # the retrain ran to its end
    assert len(executions_for(target, live["key"])) == 2  # and only one retrain was started
    record(
        "drift → retrain",
        f"300 unshifted records: no drift; +{len(shifted)} shifted: {', '.join(alarm['drifted_features'])} drifted;"
        f" one retrain ({retrain}) {ended[retrain]}",
    )


def test_a_drift_check_that_fails_on_every_try_is_kept_in_the_dead_letter_queue(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The schedule invokes DriftFunction asynchronously: ListEndpoints throttled on every try makes it fail;
    Lambda runs it 1 + MaximumRetryAttempts (2) times, then its EventInvokeConfig OnFailure queue gets the
    invocation record, sent with the function's own role (its SAM-added sqs:SendMessage): a check that never
    ran is visible, not silently lost."""
    from moto.core.exceptions import JsonRESTError
    from moto.sagemaker.responses import SageMakerResponse

    def throttled(self: Any) -> Any:
        raise JsonRESTError("ThrottlingException", "Rate exceeded")

    monkeypatch.setattr(SageMakerResponse, "list_endpoints", throttled)
    lam = target.client("lambda")
    [name] = [f["FunctionName"] for f in lam.list_functions()["Functions"] if "DriftFunction" in f["FunctionName"]]
    marker = "drift-check-throttled"
    lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"id": marker}).encode())
    sqs = target.client("sqs")
    [url] = [u for u in sqs.list_queues()["QueueUrls"] if "TriggerDeadLetterQueue" in u]

    def probe() -> list[dict[str, Any]]:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0, WaitTimeSeconds=1)
        return [json.loads(m["Body"]) for m in got.get("Messages", []) if marker in m["Body"]]

    [rec] = wait_for(probe, "the drift check's invocation record in the dead-letter queue", timeout_s=120, poll_s=0)
    monkeypatch.undo()
    assert rec["requestContext"]["condition"] == "RetriesExhausted", rec
    assert rec["requestContext"]["approximateInvokeCount"] == 3 and rec["requestPayload"] == {"id": marker}
    assert "ThrottlingException" in json.dumps(rec["responsePayload"]), rec
    record("drift check throttled on every try", "2 Lambda retries, invocation record in the on-failure queue")
