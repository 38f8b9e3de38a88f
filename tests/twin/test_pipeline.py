"""The whole pipeline on the twin, on the churn data: real handlers, real ASL, real train.py and
inference.py, deployed from template.yaml; predictions through the local API Gateway front."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from sagepipe import client, codebundle
from sagepipe.client import Target

from .conftest import CHURN, CHURN_CONFIG, ROOT, endpoint, wait_for_key

pytestmark = pytest.mark.twin


def _rows(n: int | None = None) -> tuple[str, list[str]]:
    header, *rows = CHURN.read_text().splitlines()
    return header, rows[:n] if n else rows


def _write(tmp: Path, name: str, header: str, rows: list[str]) -> Path:
    path = tmp / name
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _instances(header: str, rows: list[str]) -> list[dict[str, str]]:
    records = list(csv.DictReader(io.StringIO("\n".join([header, *rows]))))
    for r in records:
        r.pop("churn")
    return records


@pytest.fixture(scope="module")
def champion(twin: Any, target: Target, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Version 1 of the churn model, trained, gated and deployed."""
    header, rows = _rows(4000)
    key = client.upload(
        target, _write(tmp_path_factory.mktemp("d"), "churn-v1.csv", header, rows), "churn", CHURN_CONFIG
    )
    [desc] = wait_for_key(target, key)
    return {"key": key, "desc": desc, "output": json.loads(desc.get("output") or "{}")}


def test_full_flow_trains_deploys_and_serves_over_http(champion: dict[str, Any], target: Target) -> None:
    assert champion["desc"]["status"] == "SUCCEEDED", champion["desc"].get("cause")
    record = champion["output"]["evaluation"]["record"]
    assert record["decision"] == "deploy" and record["challenger"] > 0.85
    ep = endpoint(target, "churn")
    assert ep["EndpointStatus"] == "InService"
    assert ep["EndpointConfigName"] == champion["output"]["deployment"]["EndpointConfigName"]
    header, rows = _rows()
    held_out = rows[-10:]  # never uploaded
    resp = client.predict(
        target, "churn", json.dumps({"instances": _instances(header, held_out)}).encode(), "application/json"
    )
    assert resp.status_code == 200, resp.text
    preds = resp.json()["predictions"]
    assert len(preds) == 10
    assert all(
        set(p["probabilities"]) == {"no", "yes"} and abs(sum(p["probabilities"].values()) - 1) < 1e-6 for p in preds
    )
    truth = [r.split(",")[-1] for r in held_out]
    assert sum(p["label"] == t for p, t in zip(preds, truth, strict=True)) >= 7
    csv_body = "\n".join(r.rsplit(",", 1)[0] for r in held_out).encode()
    resp = client.predict(target, "churn", csv_body, "text/csv")
    assert resp.status_code == 200 and len(resp.json()["predictions"]) == 10


def test_runs_lists_decision_and_reason(champion: dict[str, Any], target: Target) -> None:
    rows = client.list_runs(target, "churn")
    row = next(r for r in rows if r["key"] == champion["key"])
    assert row["status"] == "SUCCEEDED" and row["decision"] == "deploy"
    assert "threshold" in row["reason"] and row["endpoint_config"]
    assert row["metrics"]["auc"] > 0.85


def test_unknown_model_is_a_json_404(champion: dict[str, Any], target: Target) -> None:
    resp = client.predict(target, "nosuchmodel", b'{"instances": [{"a": 1}]}', "application/json")
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "model_not_found"


def test_model_below_threshold_is_not_deployed_and_champion_keeps_serving(
    champion: dict[str, Any], target: Target, tmp_path: Path
) -> None:
    before = endpoint(target, "churn")["EndpointConfigName"]
    config = json.loads(CHURN_CONFIG.read_text()) | {"threshold": 0.999}
    cfg = tmp_path / "strict.json"
    cfg.write_text(json.dumps(config))
    header, rows = _rows(3000)
    key = client.upload(target, _write(tmp_path, "churn-strict.csv", header, rows), "churn", cfg)
    try:
        [desc] = wait_for_key(target, key)
    finally:  # restore the demo config for the tests that follow
        target.client("s3").put_object(
            Bucket=target.data_bucket, Key="datasets/churn/sagepipe.json", Body=CHURN_CONFIG.read_bytes()
        )
    out = json.loads(desc["output"])
    assert desc["status"] == "SUCCEEDED"
    assert out["evaluation"]["record"]["decision"] == "reject"
    assert "does not meet threshold" in out["evaluation"]["record"]["reason"]
    assert "deployment" not in out
    assert endpoint(target, "churn")["EndpointConfigName"] == before
    header, all_rows = _rows()
    resp = client.predict(
        target, "churn", json.dumps({"instances": _instances(header, all_rows[-1:])}).encode(), "application/json"
    )
    assert resp.status_code == 200


def test_training_script_that_raises_fails_the_run_and_leaves_the_endpoint(
    champion: dict[str, Any], target: Target, tmp_path: Path
) -> None:
    before = endpoint(target, "churn")["EndpointConfigName"]
    broken = tmp_path / "model"
    broken.mkdir()
    (broken / "train.py").write_text("raise RuntimeError('feature store unreachable')\n")
    (broken / "inference.py").write_text((ROOT / "model" / "inference.py").read_text())
    s3 = target.client("s3")
    codebundle.publish(s3, target.artifacts_bucket, broken)
    try:
        header, rows = _rows(2500)
        key = client.upload(target, _write(tmp_path, "churn-broken.csv", header, rows), "churn")
        [desc] = wait_for_key(target, key)
    finally:
        codebundle.publish(s3, target.artifacts_bucket, ROOT / "model")
    assert desc["status"] == "FAILED"
    assert desc["error"] == "States.TaskFailed"  # at TrainModel itself: no Catch, so `sagepipe retry` re-runs it
    assert "feature store unreachable" in desc["cause"] and "AlgorithmError" in desc["cause"]
    ep = endpoint(target, "churn")
    assert ep["EndpointConfigName"] == before and ep["EndpointStatus"] == "InService"
    job = json.loads(desc["cause"])["TrainingJobName"]  # the Cause is the DescribeTrainingJob response
    logs = target.client("logs")
    [stream] = logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=f"{job}/")[
        "logStreams"
    ]
    messages = [
        e["message"]
        for e in logs.get_log_events(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=stream["logStreamName"])[
            "events"
        ]
    ]
    assert any("feature store unreachable" in m for m in messages)


def test_same_upload_event_twice_gives_one_execution(
    champion: dict[str, Any], twin: Any, target: Target, tmp_path: Path
) -> None:
    header, rows = _rows(1200)
    path = _write(tmp_path, "churn-dup.csv", header, rows)
    key = client.upload(target, path, "churn")
    client.upload(target, path, "churn")  # byte-identical content under the same key: same ETag
    head = target.client("s3").head_object(Bucket=target.data_bucket, Key=key)
    event = {
        "version": "0",
        "id": "redelivered-1",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2026-11-29T00:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "bucket": {"name": target.data_bucket},
            "object": {"key": key, "size": head["ContentLength"], "etag": head["ETag"].strip('"')},
            "reason": "PutObject",
        },
    }
    start = next(n for n in twin.functions if "StartFunction" in n)
    lam = target.client("lambda")
    results = [
        json.loads(lam.invoke(FunctionName=start, Payload=json.dumps(event).encode())["Payload"].read())
        for _ in range(2)
    ]
    assert [r["results"][0]["status"] for r in results] == ["already_started", "already_started"]
    descs = wait_for_key(target, key)
    assert len(descs) == 1


def test_malformed_csv_is_quarantined_with_reason_and_nothing_is_lost(
    champion: dict[str, Any], target: Target, tmp_path: Path
) -> None:
    path = tmp_path / "bad;semicolons.csv"
    path.write_text("a;b;churn\n1;2;yes\n3;4;no\n")
    key = client.upload(target, path, "churn")
    [desc] = wait_for_key(target, key)
    assert desc["status"] == "FAILED" and desc["error"] == "InvalidDatasetError"
    lambda_error = json.loads(desc["cause"])  # the Lambda error object, as Step Functions reports it
    assert lambda_error["errorType"] == "InvalidDatasetError"
    cause = json.loads(lambda_error["errorMessage"])
    assert cause["check"] == "delimiter" and cause["quarantine"]["reason"].endswith("reason.json")
    s3 = target.client("s3")
    prefix = f"quarantine/churn/{desc['name']}/"
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=target.artifacts_bucket, Prefix=prefix).get("Contents", [])}
    assert keys == {f"{prefix}bad;semicolons.csv", f"{prefix}reason.json"}
    reason = json.loads(s3.get_object(Bucket=target.artifacts_bucket, Key=f"{prefix}reason.json")["Body"].read())
    assert reason["check"] == "delimiter" and reason["source"]["key"] == key
    assert s3.get_object(Bucket=target.data_bucket, Key=key)["Body"].read() == path.read_bytes()
