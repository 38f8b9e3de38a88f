"""Pipeline semantics that protect production (issue 4), on the twin: champion/challenger gate,
registry and approval, safe rollout, exactly-once starts and retraining. Each scenario records its
outcome; the table is printed at the end of the run."""

from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from sagepipe import client, codebundle
from sagepipe.client import Target
from sagepipe_core import deploy

from .conftest import (
    ROOT,
    churn_config,
    churn_rows,
    endpoint,
    executions_for,
    record,
    running_twin,
    wait_for,
    wait_for_key,
    write_csv,
)

pytestmark = pytest.mark.twin


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """This module's twin: the retrain schedule targets the model "retrain"."""
    with running_twin(tmp_path_factory, ScheduledModelName="retrain") as t:
        yield t


def _run(
    target: Target,
    tmp: Path,
    model: str,
    name: str,
    rows: tuple[int, int | None],
    config: Path | None = None,
    drop_column: str | None = None,
) -> dict[str, Any]:
    header, data = churn_rows(*rows)
    if drop_column:
        cols = header.split(",")
        i = cols.index(drop_column)
        header = ",".join(c for j, c in enumerate(cols) if j != i)
        data = [",".join(v for j, v in enumerate(r.split(",")) if j != i) for r in data]
    key = client.upload(target, write_csv(tmp, name, header, data), model, config)
    [desc] = wait_for_key(target, key)
    return {"key": key, "desc": desc, "output": json.loads(desc.get("output") or "{}")}


def _decision(run: dict[str, Any]) -> dict[str, Any]:
    return run["output"].get("evaluation", {}).get("record", {})


def _serves(target: Target, model: str) -> bool:
    header, rows = churn_rows(4990, 4991)
    record_ = dict(zip(header.split(","), rows[0].split(","), strict=True))
    record_.pop("churn")
    resp = client.predict(target, model, json.dumps({"instances": [record_]}).encode(), "application/json")
    return resp.status_code == 200


@pytest.fixture
def bundle(target: Target, tmp_path: Path):
    """Publish a modified model code bundle for one test; the real one is restored afterwards."""
    s3 = target.client("s3")

    def publish(train_suffix: str = "", inference_suffix: str = "") -> None:
        code = tmp_path / "code"
        shutil.copytree(ROOT / "model", code, ignore=shutil.ignore_patterns("__pycache__"))
        if train_suffix:
            (code / "real_train.py").write_text((ROOT / "model" / "train.py").read_text())
            (code / "train.py").write_text(train_suffix)
        if inference_suffix:
            (code / "inference.py").write_text((ROOT / "model" / "inference.py").read_text() + inference_suffix)
        codebundle.publish(s3, target.artifacts_bucket, code)

    yield publish
    codebundle.publish(s3, target.artifacts_bucket, ROOT / "model")


# ----------------------------------------------------------------------------------- the gate
@pytest.fixture(scope="module")
def gate_champion(target: Target, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("gate")
    run = _run(target, tmp, "gate", "v1.csv", (0, 3000), churn_config(tmp, tolerance=0.0))
    assert run["desc"]["status"] == "SUCCEEDED" and _decision(run)["decision"] == "deploy", run["desc"].get("cause")
    return run


def test_worse_challenger_is_not_deployed_and_champion_keeps_serving(
    gate_champion: dict[str, Any], target: Target, tmp_path: Path
) -> None:
    before = endpoint(target, "gate")["EndpointConfigName"]
    cfg = churn_config(
        tmp_path,
        tolerance=0.0,
        threshold=0.5,
        hyperparameters={"max_iter": 1, "learning_rate": 0.01, "max_leaf_nodes": 2},
    )
    run = _run(target, tmp_path, "gate", "worse.csv", (1000, 4000), cfg)
    d = _decision(run)
    assert run["desc"]["status"] == "SUCCEEDED" and d["decision"] == "reject", d
    assert d["rule"] == "champion:tolerance" and d["champion_status"] == "scored"
    assert d["challenger"] < d["champion"]
    assert endpoint(target, "gate")["EndpointConfigName"] == before and _serves(target, "gate")
    record(
        "worse challenger", f"rejected ({d['challenger']:.4f} vs champion {d['champion']:.4f}); champion still serving"
    )


def test_equal_within_tolerance_challenger_is_deployed(
    gate_champion: dict[str, Any], target: Target, tmp_path: Path
) -> None:
    run = _run(target, tmp_path, "gate", "equal.csv", (500, 3500), churn_config(tmp_path, tolerance=0.05))
    d = _decision(run)
    assert run["desc"]["status"] == "SUCCEEDED" and d["decision"] == "deploy", d
    assert d["rule"] == "champion" and abs(d["challenger"] - d["champion"]) <= 0.05
    ep = endpoint(target, "gate")
    assert (
        ep["EndpointConfigName"] == run["output"]["deployment"]["EndpointConfigName"]
        and ep["EndpointStatus"] == "InService"
    )
    record(
        "equal-within-tolerance challenger", f"deployed (gain {d['challenger'] - d['champion']:+.4f}, tolerance 0.05)"
    )


def test_nan_metric_is_rejected(gate_champion: dict[str, Any], target: Target, tmp_path: Path, bundle: Any) -> None:
    before = endpoint(target, "gate")["EndpointConfigName"]
    bundle(
        train_suffix=(
            "import json, os, runpy, sys\n"
            "sys.argv[0] = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'real_train.py')\n"
            "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
            "except SystemExit as exc:\n    if exc.code:\n        raise\n"
            "path = os.path.join(os.environ['SM_MODEL_DIR'], 'evaluation.json')\n"
            "report = json.load(open(path))\n"
            "report['metrics']['test']['auc'] = float('nan')\n"
            "open(path, 'w').write(json.dumps(report))\n"
            "print('[metric] test:auc=nan')\n"
        )
    )
    run = _run(target, tmp_path, "gate", "nan.csv", (200, 3200), churn_config(tmp_path, tolerance=0.05))
    d = _decision(run)
    assert run["desc"]["status"] == "SUCCEEDED" and d["decision"] == "reject" and d["rule"] == "fail_closed", d
    assert "not finite" in d["reason"] or "missing" in d["reason"]
    assert endpoint(target, "gate")["EndpointConfigName"] == before
    record("NaN metric", f"rejected, fail closed: {d['reason']}")


@pytest.mark.parametrize("policy", ["reject", "threshold_only"])
def test_schema_change_follows_the_policy(
    gate_champion: dict[str, Any], target: Target, tmp_path: Path, policy: str
) -> None:
    before = endpoint(target, "gate")["EndpointConfigName"]
    run = _run(
        target,
        tmp_path,
        "gate",
        f"schema-{policy}.csv",
        (0, 3000),
        # the dropped feature is also a change of the API contract: allowed here (schema_change=auto), so the
        # incompatible_champion policy alone decides; the default (manual approval) is in test_gate_lineage.py
        churn_config(tmp_path, tolerance=0.05, incompatible_champion=policy, schema_change="auto"),
        drop_column="state",
    )
    d = _decision(run)
    assert d["champion_status"] == "incompatible", d
    after = endpoint(target, "gate")["EndpointConfigName"]
    if policy == "reject":
        assert d["decision"] == "reject" and d["rule"] == "incompatible_champion:reject" and after == before
    else:
        assert d["decision"] == "deploy" and d["rule"] == "incompatible_champion:threshold_only" and after != before
    record(f"schema change, policy {policy}", f"{d['decision']}: {d['reason'][:90]}")


# ----------------------------------------------------------------------------- approval
def _wait_for_state(target: Target, key: str, state: str, timeout_s: float = 120) -> str:
    sfn = target.client("stepfunctions")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for ex in executions_for(target, key):
            names = [
                e["stateEnteredEventDetails"]["name"]
                for e in sfn.get_execution_history(executionArn=ex["executionArn"], maxResults=1000)["events"]
                if "stateEnteredEventDetails" in e
            ]
            if state in names:
                return ex["name"]
        time.sleep(0.5)
    raise AssertionError(f"{key} never reached {state}")


def _approval_run(target: Target, tmp: Path, name: str, rows: tuple[int, int], timeout_s: int = 600) -> tuple[str, str]:
    header, data = churn_rows(*rows)
    cfg = churn_config(tmp, approval="manual", approval_timeout_seconds=timeout_s, tolerance=1.0)
    key = client.upload(target, write_csv(tmp, name, header, data), "appr", cfg)
    s3 = target.client("s3")
    execution = _wait_for_state(target, key, "RequestApproval")
    wait_for(
        lambda: s3.list_objects_v2(Bucket=target.artifacts_bucket, Prefix=f"approvals/appr/{execution}.json").get(
            "KeyCount"
        ),
        "approval request was not stored",
        timeout_s=30,
    )
    return key, execution


def _package_status(target: Target, run: dict[str, Any]) -> str:
    arn = run["output"]["registered"]["ModelPackageArn"]
    return target.client("sagemaker").describe_model_package(ModelPackageName=arn)["ModelApprovalStatus"]


def test_manual_approval_approved_is_deployed(target: Target, tmp_path: Path) -> None:
    key, execution = _approval_run(target, tmp_path, "approve.csv", (0, 2500))
    result = client.decide_approval(target, execution, True, "looks good", "tester")
    assert result["approved"] is True
    with pytest.raises(Exception, match="already approved by tester"):
        client.decide_approval(target, execution, False, "changed my mind", "someone")
    [desc] = wait_for_key(target, key)
    run = {"desc": desc, "output": json.loads(desc["output"])}
    assert desc["status"] == "SUCCEEDED" and run["output"]["approval"]["approved"] is True
    assert endpoint(target, "appr")["EndpointConfigName"] == run["output"]["deployment"]["EndpointConfigName"]
    assert _package_status(target, run) == "Approved"
    kinds = [e["detail-type"] for e in client.notifications(target, "appr", execution)]
    assert "Pipeline Approval Needed" in kinds and "Pipeline Succeeded" in kinds
    record("manual approval, approved", "deployed; package Approved")


def test_manual_approval_rejected_is_not_deployed(target: Target, tmp_path: Path) -> None:
    before = endpoint(target, "appr")["EndpointConfigName"]
    key, execution = _approval_run(target, tmp_path, "reject.csv", (1000, 3500))
    client.decide_approval(target, execution, False, "bias review failed", "tester")
    [desc] = wait_for_key(target, key)
    run = {"desc": desc, "output": json.loads(desc["output"])}
    assert desc["status"] == "SUCCEEDED" and "deployment" not in run["output"]
    assert run["output"]["approval"] == {"approved": False, "reason": "bias review failed", "by": "tester"}
    assert endpoint(target, "appr")["EndpointConfigName"] == before
    assert _package_status(target, run) == "Rejected"
    record("manual approval, rejected", "not deployed; package Rejected")


def test_manual_approval_timeout_rejects(target: Target, tmp_path: Path) -> None:
    header, data = churn_rows(2000, 4500)
    cfg = churn_config(tmp_path, approval="manual", approval_timeout_seconds=2, tolerance=1.0)
    key = client.upload(target, write_csv(tmp_path, "timeout.csv", header, data), "appr", cfg)
    [desc] = wait_for_key(target, key)
    run = {"desc": desc, "output": json.loads(desc["output"])}
    assert desc["status"] == "SUCCEEDED" and "deployment" not in run["output"]
    assert run["output"]["approval"]["approved"] is False and "timed out" in run["output"]["approval"]["reason"]
    assert _package_status(target, run) == "Rejected"
    with pytest.raises(Exception, match="no longer waiting|TaskTimedOut|InvalidToken|TaskDoesNotExist"):
        client.decide_approval(target, desc["name"], True, "too late", "tester")
    record("manual approval, timed out", "rejected; a late approve is refused")


def _failed_notification(target: Target, execution: str, timeout_s: float = 60) -> dict[str, Any]:
    found = wait_for(
        lambda: [e for e in client.notifications(target, "appr", execution) if e["detail-type"] == "Pipeline Failed"],
        f"no Pipeline Failed notification for {execution}",
        timeout_s=timeout_s,
        poll_s=0.5,
    )
    return found[0]


def test_an_aborted_run_is_notified_by_its_status_change_event(target: Target, tmp_path: Path) -> None:
    """StopExecution ends a run with no Catch: Step Functions' "Execution Status Change" (ABORTED) on the
    default bus reaches ExecutionEndedFunction, which sends "Pipeline Failed" to the notifications log."""
    key, execution = _approval_run(target, tmp_path, "abort.csv", (500, 3000))
    sfn = target.client("stepfunctions")
    arn = f"{target.state_machine_arn.replace(':stateMachine:', ':execution:')}:{execution}"
    t0 = time.monotonic()
    sfn.stop_execution(executionArn=arn, error="OperatorStopped", cause="stopped by the test")
    [desc] = wait_for_key(target, key)
    assert desc["status"] == "ABORTED"
    event = _failed_notification(target, execution)
    record("run stopped (ABORTED)", f"Pipeline Failed after {time.monotonic() - t0:.1f} s")
    detail = event["detail"]
    assert detail["status"] == "ABORTED" and detail["outcome"] == "failed"
    assert (detail["error"], detail["cause"]) == ("OperatorStopped", "stopped by the test")
    assert detail["executionArn"] == arn and detail["dataset"]["key"] == key


def test_a_run_that_reaches_the_execution_timeout_is_notified(target: Target, tmp_path: Path) -> None:
    """An execution's own TimeoutSeconds runs no Catch either (TIMED_OUT): with the deployed definition's
    timeout cut to 4 s, a run waiting for approval times out and "Pipeline Failed" still arrives."""
    sfn = target.client("stepfunctions")
    definition = sfn.describe_state_machine(stateMachineArn=target.state_machine_arn)["definition"]
    short = json.loads(definition) | {"TimeoutSeconds": 4}
    sfn.update_state_machine(stateMachineArn=target.state_machine_arn, definition=json.dumps(short))
    try:
        header, data = churn_rows(1500, 4000)
        cfg = churn_config(tmp_path, approval="manual", approval_timeout_seconds=600, tolerance=1.0)
        key = client.upload(target, write_csv(tmp_path, "timeout-exec.csv", header, data), "appr", cfg)
        [desc] = wait_for_key(target, key)
    finally:
        sfn.update_state_machine(stateMachineArn=target.state_machine_arn, definition=definition)
    assert desc["status"] == "TIMED_OUT"
    detail = _failed_notification(target, desc["name"])["detail"]
    assert detail["status"] == "TIMED_OUT" and detail["error"] == "States.Timeout"
    assert detail["dataset"]["key"] == key and "TimeoutSeconds" in detail["cause"]
    record("execution TimeoutSeconds reached (TIMED_OUT)", "Pipeline Failed")


def test_a_run_failed_by_its_own_fail_state_is_not_notified_twice(target: Target, tmp_path: Path) -> None:
    """DataRejected is a Fail state after NotifyDataRejected: its status change (FAILED, error
    InvalidDatasetError) matches neither rule, so the run has exactly its own notification."""
    header, data = churn_rows(0, 10)  # fewer than min_rows
    key = client.upload(target, write_csv(tmp_path, "few.csv", header, data), "appr")
    [desc] = wait_for_key(target, key)
    assert desc["status"] == "FAILED" and desc["error"] == "InvalidDatasetError"
    time.sleep(2)  # the status change event is delivered asynchronously
    kinds = [e["detail-type"] for e in client.notifications(target, "appr", desc["name"])]
    assert kinds == ["Pipeline Rejected"]


def test_a_run_without_the_model_code_fails_before_training_and_is_notified(target: Target, tmp_path: Path) -> None:
    """Issue 9 item 6: the code bundle the ModelCode custom resource published is gone (a delete marker
    on the versioned artifacts bucket): ValidateData's HeadObject fails the run with ModelCodeMissingError
    before any training job, the data is not quarantined (it is not at fault), "Pipeline Failed" says why."""
    s3, sm = target.client("s3"), target.client("sagemaker")
    code_key = "code/sourcedir.tar.gz"
    s3.head_object(Bucket=target.artifacts_bucket, Key=code_key)  # sam deploy (the twin's) published it
    marker = s3.delete_object(Bucket=target.artifacts_bucket, Key=code_key)["VersionId"]
    try:
        header, data = churn_rows(0, 1500)
        key = client.upload(target, write_csv(tmp_path, "nocode.csv", header, data), "nocode")
        [desc] = wait_for_key(target, key)
    finally:  # remove the delete marker: the published version is current again (nothing was deleted)
        s3.delete_object(Bucket=target.artifacts_bucket, Key=code_key, VersionId=marker)
    assert desc["status"] == "FAILED"
    events = client.notifications(target, "nocode", desc["name"])
    assert [e["detail-type"] for e in events] == ["Pipeline Failed"]
    failure = json.dumps(events[0]["detail"])
    assert "ModelCodeMissingError" in failure and f"s3://{target.artifacts_bucket}/{code_key}" in failure
    # the validate function's role may not list the bucket, so S3 hides the missing key behind 403 (S3 API
    # Reference, HeadObject "Permissions"); the message says so rather than blaming the role alone
    assert "S3 refused HeadObject" in failure and "(S3 403): it is missing, or the validate function" in failure
    jobs = sm.list_training_jobs(NameContains="nocode")["TrainingJobSummaries"]
    assert jobs == []
    quarantined = s3.list_objects_v2(Bucket=target.artifacts_bucket, Prefix="quarantine/nocode/")
    assert quarantined.get("KeyCount", 0) == 0
    record("model code missing", "FAILED before training: ModelCodeMissingError, Pipeline Failed")


# ------------------------------------------------------------------------------ rollout
def test_model_failing_ping_after_update_is_rolled_back(target: Target, tmp_path: Path, bundle: Any) -> None:
    first = _run(target, tmp_path, "rb", "v1.csv", (0, 2500), churn_config(tmp_path, tolerance=1.0))
    assert first["desc"]["status"] == "SUCCEEDED", first["desc"].get("cause")
    before = endpoint(target, "rb")["EndpointConfigName"]
    bundle(inference_suffix="\n\ndef model_fn(model_dir):\n    raise RuntimeError('model artifact is corrupt')\n")
    run = _run(target, tmp_path, "rb", "v2.csv", (500, 3000), churn_config(tmp_path, tolerance=1.0))
    desc = run["desc"]
    assert desc["status"] == "FAILED" and desc["error"] == "DeploymentRolledBack", desc
    ep = endpoint(target, "rb")
    assert ep["EndpointConfigName"] == before and ep["EndpointStatus"] == "InService"
    assert "model artifact is corrupt" in ep.get("FailureReason", "") or "exited" in ep.get("FailureReason", "")
    assert _serves(target, "rb")
    events = client.notifications(target, "rb", desc["name"])
    rolled = [e for e in events if e["detail-type"] == "Pipeline Rolled Back"]
    assert rolled and rolled[0]["detail"]["endpoint"]["live"] == before
    arn = rolled[0]["detail"]["model_package_arn"]
    pkg = target.client("sagemaker").describe_model_package(ModelPackageName=arn)
    assert pkg["ModelApprovalStatus"] == "Rejected" and pkg["ApprovalDescription"].startswith("rolled back")
    record(
        "model whose /ping fails after the update", "rolled back: old config live, Rolled Back event, package Rejected"
    )


def _data_order(target: Target, key: str) -> deploy.DataOrder:
    head = target.client("s3").head_object(Bucket=target.data_bucket, Key=key)
    return deploy.DataOrder.of(head["LastModified"], key)


def test_two_runs_for_one_model_at_once_end_with_the_newest_data_live(target: Target, tmp_path: Path) -> None:
    """Two versions uploaded at once: whichever finishes first, the newer data (LastModified, then key) is
    live at the end; the older run is superseded or the newer one trains again against it."""
    cfg = churn_config(tmp_path, tolerance=1.0)
    header, a = churn_rows(0, 2000)
    _, b = churn_rows(2000, 4000)
    target.client("s3").put_object(Bucket=target.data_bucket, Key="datasets/conc/sagepipe.json", Body=cfg.read_bytes())
    with ThreadPoolExecutor(2) as pool:
        keys = list(
            pool.map(
                lambda item: client.upload(target, write_csv(tmp_path, item[0], header, item[1]), "conc"),
                [("a.csv", a), ("b.csv", b)],
            )
        )
    descs = [wait_for_key(target, k)[0] for k in keys]
    ep = endpoint(target, "conc")
    assert [d["status"] for d in descs] == ["SUCCEEDED", "SUCCEEDED"], ([d.get("cause") for d in descs], ep)
    outputs = [json.loads(d["output"]) for d in descs]
    newest = max(range(2), key=lambda i: _data_order(target, keys[i]))
    assert ep["EndpointStatus"] == "InService" and "FailureReason" not in ep, ep
    assert ep["EndpointConfigName"] == outputs[newest]["deployment"]["EndpointConfigName"]
    assert "superseded" not in outputs[newest]
    older = outputs[1 - newest]
    how = (
        "older run superseded"
        if older.get("superseded")
        else f"newer run re-gated {outputs[newest]['run'].get('regates', 0)}x"
    )
    record("two runs for one model at once", f"newest data live ({how})")


def _wait_for_approval(target: Target, key: str, model: str, attempt: int = 1) -> str:
    """The execution of ``key`` once it waits for approval of its ``attempt``-th package."""
    sfn, s3 = target.client("stepfunctions"), target.client("s3")
    execution = _wait_for_state(target, key, "RequestApproval")
    arn = f"{target.state_machine_arn.replace(':stateMachine:', ':execution:')}:{execution}"

    def waiting() -> bool:
        events = sfn.get_execution_history(executionArn=arn, maxResults=1000, reverseOrder=True)["events"]
        asked = sum(
            1
            for e in events
            if e["type"] == "TaskStateEntered" and e["stateEnteredEventDetails"]["name"] == "RequestApproval"
        )
        stored = s3.list_objects_v2(Bucket=target.artifacts_bucket, Prefix=f"approvals/{model}/{execution}.json")
        return asked >= attempt and bool(stored.get("KeyCount"))

    wait_for(waiting, f"{execution} never asked for approval {attempt} time(s)", timeout_s=240)
    return execution


def _upload_next_second(target: Target, tmp: Path, model: str, name: str, rows: tuple[int, int], cfg: Path) -> str:
    """Upload in a later LastModified second than anything before (S3 orders data versions to the second)."""
    time.sleep(1.1)
    header, data = churn_rows(*rows)
    return client.upload(target, write_csv(tmp, name, header, data), model, cfg)


def test_an_older_version_that_finishes_last_is_superseded_not_deployed(target: Target, tmp_path: Path) -> None:
    manual = churn_config(tmp_path, approval="manual", approval_timeout_seconds=600, tolerance=1.0)
    old_key = _upload_next_second(target, tmp_path, "order", "v1.csv", (0, 2500), manual)
    old_run = _wait_for_approval(target, old_key, "order")
    auto = churn_config(tmp_path, tolerance=1.0)
    new_key = _upload_next_second(target, tmp_path, "order", "v2.csv", (500, 3000), auto)
    [new] = wait_for_key(target, new_key)
    assert new["status"] == "SUCCEEDED", new.get("cause")
    live = json.loads(new["output"])["deployment"]["EndpointConfigName"]
    assert endpoint(target, "order")["EndpointConfigName"] == live
    client.decide_approval(target, old_run, True, "ship it", "tester")  # the older run now reaches DeployModel
    [old] = wait_for_key(target, old_key)
    out = json.loads(old["output"])
    assert old["status"] == "SUCCEEDED" and out["deployment"]["action"] == "superseded", old.get("cause")
    assert out["superseded"]["live"] == live and out["superseded"]["when"] == "before_deploy"
    assert "datasets/order/v2.csv" in out["superseded"]["reason"]
    ep = endpoint(target, "order")
    assert ep["EndpointConfigName"] == live and ep["EndpointStatus"] == "InService"
    pkg = target.client("sagemaker").describe_model_package(ModelPackageName=out["registered"]["ModelPackageArn"])
    assert pkg["ModelApprovalStatus"] == "Approved" and pkg["ApprovalDescription"].startswith("superseded: newer data")
    events = client.notifications(target, "order", old_run)
    [note] = [e for e in events if e["detail-type"] == "Pipeline Superseded"]
    assert note["detail"]["endpoint"]["live"] == live and note["detail"]["outcome"] == "superseded"
    [row] = [r for r in client.list_runs(target, "order") if r["execution_name"] == old_run]
    assert row["decision"] == "superseded" and row["endpoint_config"] == live
    assert _serves(target, "order")
    record("older version finishing last", "superseded: newer one stays live; package Approved (superseded), notified")


def test_a_newer_version_whose_champion_was_replaced_is_evaluated_again(target: Target, tmp_path: Path) -> None:
    manual = churn_config(tmp_path, approval="manual", approval_timeout_seconds=600, tolerance=1.0)
    old_key = _upload_next_second(target, tmp_path, "regate", "v1.csv", (0, 2500), manual)
    old_run = _wait_for_approval(target, old_key, "regate")
    new_key = _upload_next_second(target, tmp_path, "regate", "v2.csv", (500, 3000), manual)
    new_run = _wait_for_approval(target, new_key, "regate")  # gated with no champion: the older one is not live yet
    client.decide_approval(target, old_run, True, "first", "tester")
    [old] = wait_for_key(target, old_key)
    assert old["status"] == "SUCCEEDED", old.get("cause")
    old_config = json.loads(old["output"])["deployment"]["EndpointConfigName"]
    client.decide_approval(target, new_run, True, "second", "tester")  # DeployModel finds the older one live
    _wait_for_approval(target, new_key, "regate", attempt=2)  # ... and trains again against it, asks again
    client.decide_approval(target, new_run, True, "after the re-check", "tester")
    [new] = wait_for_key(target, new_key)
    out = json.loads(new["output"])
    assert new["status"] == "SUCCEEDED" and out["deployment"]["action"] == "update", new.get("cause")
    assert out["run"]["regates"] == 1 and out["run"]["champion"]["endpoint_config_name"] == old_config
    decision = out["evaluation"]["record"]
    assert decision["champion_status"] == "scored", decision  # this time the gate compared it with the live one
    ep = endpoint(target, "regate")
    assert ep["EndpointConfigName"] == out["deployment"]["EndpointConfigName"] != old_config
    sm = target.client("sagemaker")
    jobs = {
        j["TrainingJobName"]
        for j in sm.list_training_jobs(NameContains="regate", MaxResults=100)["TrainingJobSummaries"]
    }
    assert out["trained"]["TrainingJobName"] in jobs and len(jobs) == 3  # old run's, new run's first, its second
    packages = sm.list_model_packages(ModelPackageGroupName=out["registered"]["ModelPackageGroupName"])[
        "ModelPackageSummaryList"
    ]
    first = [p for p in packages if p["ModelPackageArn"] not in {out["registered"]["ModelPackageArn"]}]
    statuses = {
        sm.describe_model_package(ModelPackageName=p["ModelPackageArn"])["ApprovalDescription"].split(":")[0]
        for p in first
    }
    assert "not deployed" in statuses, statuses  # the first package of the newer run, Rejected with why
    record("newer version gated against a replaced champion", "evaluated again against the live model, then deployed")


# ------------------------------------------------------------------------- exactly once
def test_twenty_duplicate_deliveries_give_one_run(twin: Any, target: Target, tmp_path: Path) -> None:
    header, rows = churn_rows(0, 800)
    cfg = churn_config(tmp_path, threshold=0.999)
    key = client.upload(target, write_csv(tmp_path, "dup.csv", header, rows), "dups", cfg)
    head = target.client("s3").head_object(Bucket=target.data_bucket, Key=key)
    event = {
        "version": "0",
        "id": "dup-1",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2026-11-29T00:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "bucket": {"name": target.data_bucket},
            "object": {
                "key": key.replace(" ", "+"),
                "size": head["ContentLength"],
                "etag": head["ETag"].strip('"'),
                "version-id": head["VersionId"],
            },
            "reason": "PutObject",
        },
    }
    start = next(n for n in twin.functions if "StartFunction" in n)
    lam = target.client("lambda")
    with ThreadPoolExecutor(8) as pool:
        results = list(
            pool.map(
                lambda _: json.loads(
                    lam.invoke(FunctionName=start, Payload=json.dumps(event).encode())["Payload"].read()
                ),
                range(20),
            )
        )
    assert all(r["results"][0]["execution_name"] == results[0]["results"][0]["execution_name"] for r in results)
    assert len(wait_for_key(target, key)) == 1
    record("20 duplicate deliveries", "1 run")


def test_ten_distinct_versions_uploaded_together_give_ten_runs(target: Target, tmp_path: Path) -> None:
    header, rows = churn_rows()
    cfg = churn_config(tmp_path, threshold=0.999)
    target.client("s3").put_object(Bucket=target.data_bucket, Key="datasets/bulk/sagepipe.json", Body=cfg.read_bytes())
    files = [write_csv(tmp_path, f"part-{i}.csv", header, rows[i * 300 : (i + 1) * 300 + 100]) for i in range(10)]
    with ThreadPoolExecutor(10) as pool:
        keys = list(pool.map(lambda f: client.upload(target, f, "bulk"), files))
    descs = [wait_for_key(target, k, timeout_s=300) for k in keys]
    assert [len(d) for d in descs] == [1] * 10
    assert all(d[0]["status"] == "SUCCEEDED" for d in descs), [d[0].get("cause") for d in descs]
    record("10 distinct versions uploaded together", "10 runs, none lost")


BAD_DATA = {
    "encoding": b"a,b,churn\n\xff\xfe,1,yes\n",
    "empty": b"",
    "delimiter": b"a;b;churn\n1;2;yes\n",
    "duplicate_columns": b"a,a,churn\n1,2,yes\n3,4,no\n",
    "missing_target_column": b"a,b,label\n1,2,yes\n",
    "missing_labels": b"a,b,churn\n1,2,yes\n3,4,\n",
    "too_few_rows": b"a,b,churn\n1,2,yes\n3,4,no\n",
}


@pytest.mark.parametrize("check", sorted(BAD_DATA))
def test_bad_data_is_quarantined_with_the_right_reason(target: Target, tmp_path: Path, check: str) -> None:
    path = tmp_path / f"bad-{check}.csv"
    path.write_bytes(BAD_DATA[check])  # "empty" is a zero-byte object: a file, not a folder placeholder
    target.client("s3").put_object(
        Bucket=target.data_bucket, Key="datasets/bad/sagepipe.json", Body=json.dumps({"target": "churn"}).encode()
    )
    key = client.upload(target, path, "bad")
    [desc] = wait_for_key(target, key)
    assert desc["status"] == "FAILED" and desc["error"] == "InvalidDatasetError"
    reason = json.loads(json.loads(desc["cause"])["errorMessage"])
    assert reason["check"] == check
    s3 = target.client("s3")
    stored = json.loads(
        s3.get_object(Bucket=target.artifacts_bucket, Key=f"quarantine/bad/{desc['name']}/reason.json")["Body"].read()
    )
    assert stored["check"] == check and stored["source"]["key"] == key
    assert s3.get_object(Bucket=target.data_bucket, Key=key)["Body"].read() == path.read_bytes()
    kinds = {e["detail-type"] for e in client.notifications(target, "bad", desc["name"])}
    assert kinds == {"Pipeline Rejected"}
    record(f"bad data: {check}", f"quarantined, reason {reason['check']}; source kept")


def test_an_upper_case_csv_upload_runs_and_is_notified(target: Target, tmp_path: Path) -> None:
    """Issue 9 items 8 and 9: ``.CSV`` starts a run through the template's rule (as the start function and
    the CLI accept it), and its notification reaches the log group through the rule's log-group target."""
    path = tmp_path / "UPPER.CSV"
    path.write_bytes(BAD_DATA["too_few_rows"])
    target.client("s3").put_object(
        Bucket=target.data_bucket, Key="datasets/upper/sagepipe.json", Body=json.dumps({"target": "churn"}).encode()
    )
    key = client.upload(target, path, "upper")
    assert key == "datasets/upper/UPPER.CSV"
    [desc] = wait_for_key(target, key, timeout_s=60)
    assert desc["status"] == "FAILED" and desc["error"] == "InvalidDatasetError"
    kinds = {e["detail-type"] for e in client.notifications(target, "upper", desc["name"])}
    assert kinds == {"Pipeline Rejected"}
    record("upload ending in .CSV", "ran (quarantined as too_few_rows); notification in the log group")


def test_a_data_set_under_an_invalid_model_name_is_quarantined_not_lost(target: Target, tmp_path: Path) -> None:
    key = "datasets/bad model!/data.csv"
    body = b"a,b,churn\n1,2,yes\n"
    target.client("s3").put_object(Bucket=target.data_bucket, Key=key, Body=body)
    [desc] = wait_for_key(target, key)
    assert desc["status"] == "FAILED" and desc["error"] == "InvalidDatasetError"
    assert json.loads(json.loads(desc["cause"])["errorMessage"])["check"] == "invalid_model_name"
    with pytest.raises(ValueError, match="model name"):
        client.upload(target, write_csv(tmp_path, "x.csv", "a,b", ["1,2"]), "bad model!")
    record("data set under an invalid model name", "quarantined (invalid_model_name); the CLI refuses it up front")


# ----------------------------------------------------------------------------- retraining
def test_retrain_requested_event_and_schedule_retrain_the_latest_data(
    twin: Any, target: Target, tmp_path: Path
) -> None:
    header, rows = churn_rows(0, 1000)
    cfg = churn_config(tmp_path, threshold=0.999)
    first = client.upload(target, write_csv(tmp_path, "a-old.csv", header, rows), "retrain", cfg)
    wait_for_key(target, first)
    time.sleep(1.1)  # LastModified has one-second resolution
    latest = client.upload(target, write_csv(tmp_path, "b-new.csv", header, rows[:900]), "retrain")
    wait_for_key(target, latest)
    events = target.client("events")
    resp = events.put_events(
        Entries=[
            {
                "Source": target.event_source,
                "DetailType": "Retrain Requested",
                "Detail": json.dumps({"model": "retrain"}),
            }
        ]
    )
    assert resp["FailedEntryCount"] == 0
    rule = next(r for r in events.list_rules()["Rules"] if "RetrainSchedule" in r["Name"])
    assert rule["State"] == "DISABLED"  # disabled by default
    from moto.events.models import events_backends

    twin.fire_schedule(events_backends["123456789012"]["us-east-1"].event_buses["default"].rules[rule["Name"]])
    sfn = target.client("stepfunctions")

    def both() -> dict[str, str] | None:
        found: dict[str, str] = {}
        for ex in sfn.list_executions(stateMachineArn=target.state_machine_arn)["executions"]:
            inp = json.loads(sfn.describe_execution(executionArn=ex["executionArn"])["input"])
            if inp["trigger"] in {"retrain-request", "schedule"}:
                found[inp["trigger"]] = inp["dataset"]["key"]
        return found if len(found) == 2 else None

    triggers = wait_for(both, "the retrain request and the schedule did not both start a run", poll_s=0.3)
    assert triggers == {"retrain-request": latest, "schedule": latest}, triggers
    record("Retrain Requested event / schedule", f"each retrained on the latest version ({latest.rsplit('/', 1)[1]})")


# ----------------------------------------------------------------------------------- tuning
def test_a_tuning_run_with_three_jobs_takes_the_best(target: Target, tmp_path: Path) -> None:
    cfg = churn_config(
        tmp_path,
        threshold=0.5,
        tuning={
            "parameter_ranges": {
                "learning_rate": {"type": "continuous", "min_value": 0.02, "max_value": 0.3, "scaling": "Logarithmic"},
                "max_leaf_nodes": {"type": "integer", "min_value": 4, "max_value": 31},
            },
            "max_jobs": 3,
            "strategy": "Random",
        },
    )
    run = _run(target, tmp_path, "tune", "tune.csv", (0, 2500), cfg)
    assert run["desc"]["status"] == "SUCCEEDED", run["desc"].get("cause")
    out = run["output"]
    tuning_job = out["tuned"]["HyperParameterTuningJobName"]
    assert len(tuning_job) <= 32
    sm = target.client("sagemaker")
    children = [
        j["TrainingJobName"]
        for j in sm.list_training_jobs(NameContains=tuning_job, MaxResults=100)["TrainingJobSummaries"]
    ]
    assert len(children) == 3
    scores = {}
    for child in children:
        desc = sm.describe_training_job(TrainingJobName=child)
        assert desc["TrainingJobStatus"] == "Completed"
        scores[child] = next(m["Value"] for m in desc["FinalMetricDataList"] if m["MetricName"] == "validation:auc")
    best = max(scores, key=scores.get)
    assert out["tuned"]["BestTrainingJob"] == best == out["trained"]["TrainingJobName"]
    assert out["tuned"]["BestObjective"]["Value"] == pytest.approx(scores[best])
    assert out["trained"]["ModelArtifacts"].endswith(f"/{best}/output/model.tar.gz")
    assert _decision(run)["decision"] == "deploy" and endpoint(target, "tune")["EndpointStatus"] == "InService"
    record("tuning run with 3 jobs", f"best of {sorted(round(v, 4) for v in scores.values())} chosen: {best}")


def test_a_tuning_job_without_a_best_training_job_fails_the_run_with_its_reason(
    twin: Any, target: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 9 item 12: ``BestTrainingJob`` (and its ``FinalHyperParameterTuningJobObjectiveMetric``) are
    optional members of DescribeHyperParameterTuningJob. A completed tuning job without them must end the
    run through NotifyFailed with the reason, not with an uncatchable States.Runtime error from the
    state's result selection (no notification)."""

    def complete_without_best(job: Any, request: dict[str, Any]) -> None:
        job.hyper_parameter_tuning_job_status = "Completed"
        job.best_training_job = job.OverallBestTrainingJob = None

    monkeypatch.setattr(twin.tuning, "start", complete_without_best)
    cfg = churn_config(
        tmp_path,
        threshold=0.5,
        tuning={"parameter_ranges": {"max_leaf_nodes": {"type": "integer", "min_value": 4, "max_value": 31}}},
    )
    run = _run(target, tmp_path, "nobest", "nobest.csv", (0, 600), cfg)
    assert run["desc"]["status"] == "FAILED", run["desc"]
    events = client.notifications(target, "nobest", run["desc"]["name"])
    assert [e["detail-type"] for e in events] == ["Pipeline Failed"]
    detail = events[0]["detail"]
    assert detail["error"] == "NoBestTrainingJob" and "completed without a BestTrainingJob" in detail["cause"]
    record("tuning job without BestTrainingJob", "run failed with NoBestTrainingJob, notified")


def _running_job(target: Target, key: str, list_call: str, summaries: str, timeout_s: float = 240) -> dict[str, Any]:
    """The training or tuning job of data set ``key``'s run, once it is InProgress."""
    sm = target.client("sagemaker")
    model = key.split("/")[1]  # datasets/<model>/<file>: job names carry the model name

    def probe() -> dict[str, Any] | None:
        [execution] = executions_for(target, key) or [None]
        if execution is None:
            return None
        jobs = getattr(sm, list_call)(StatusEquals="InProgress", NameContains=model, MaxResults=100)[summaries]
        return {"execution": execution, "job": jobs[0]} if jobs else None

    return wait_for(probe, f"no {summaries} in progress for {key}", timeout_s=timeout_s, poll_s=0.5)


@pytest.mark.parametrize("tuned", [False, True], ids=["training", "tuning"])
def test_stopping_a_run_stops_its_job(target: Target, tmp_path: Path, tuned: bool) -> None:
    """StopExecution while TrainModel / TuneModel (.sync) runs: Step Functions stops the job as the state
    machine's role (StopTrainingJob / StopHyperParameterTuningJob) and the run ends ABORTED - no job keeps
    running (and billing) for a run that is over."""
    sm, sfn = target.client("sagemaker"), target.client("stepfunctions")
    extra: dict[str, Any] = {}
    if tuned:
        extra["tuning"] = {
            "parameter_ranges": {"max_leaf_nodes": {"type": "integer", "min_value": 4, "max_value": 31}},
            "max_jobs": 2,
            "strategy": "Random",
        }
    header, data = churn_rows(0, 4000)
    model = "stoptune" if tuned else "stoptrain"
    key = client.upload(
        target, write_csv(tmp_path, f"{model}.csv", header, data), model, churn_config(tmp_path, **extra)
    )
    list_call, summaries, name_key, describe, status_key = (
        (
            "list_hyper_parameter_tuning_jobs",
            "HyperParameterTuningJobSummaries",
            "HyperParameterTuningJobName",
            "describe_hyper_parameter_tuning_job",
            "HyperParameterTuningJobStatus",
        )
        if tuned
        else (
            "list_training_jobs",
            "TrainingJobSummaries",
            "TrainingJobName",
            "describe_training_job",
            "TrainingJobStatus",
        )
    )
    found = _running_job(target, key, list_call, summaries)
    name = found["job"][name_key]
    sfn.stop_execution(executionArn=found["execution"]["executionArn"], error="OperatorStopped", cause="test")
    [desc] = wait_for_key(target, key)
    assert desc["status"] == "ABORTED"
    status = wait_for(
        lambda: (s := getattr(sm, describe)(**{name_key: name})[status_key]) not in {"InProgress", "Stopping"} and s,
        f"{name} still running after the run was stopped",
    )
    assert status == "Stopped", status
    record(f"run stopped during {'TuneModel' if tuned else 'TrainModel'}", f"{name} Stopped by Step Functions")
