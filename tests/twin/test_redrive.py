"""``sagepipe retry`` (issue 16 item 5): Step Functions RedriveExecution on the twin, with the pipeline.

A run whose training fails for a passing cause (the training process killed once, as a lost instance
would) fails at TrainModel itself - no Catch handles it - and is notified once by ExecutionEndedFunction;
``sagepipe retry`` resumes it at TrainModel (a new job, ``<name>-r1``), the steps before are not run again,
and it SUCCEEDS with its own "Pipeline Succeeded". A SUCCEEDED run cannot be retried
(``ExecutionNotRedrivable``, in AWS's JSON shape); the clientToken makes a retry idempotent; a stopped run
(ABORTED, ``ExecutionAborted`` in its history at once) resumes at the step it was stopped in.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sagepipe import cli, client, codebundle
from sagepipe.client import Target

from .conftest import ROOT, churn_config, churn_rows, executions_for, record, wait_for, wait_for_key, write_csv

pytestmark = pytest.mark.twin

#: train.py that kills itself (SIGKILL, as a lost instance ends a job) the first time it runs, then trains.
FAIL_ONCE = """\
import os, runpy, signal
MARK = {mark!r}
if not os.path.exists(MARK):
    open(MARK, "w").write("killed once by tests/twin/test_redrive.py")
    os.kill(os.getpid(), signal.SIGKILL)
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "real_train.py"), run_name="__main__")
"""


@pytest.fixture
def fail_training_once(target: Target, tmp_path: Path) -> Iterator[Path]:
    """Publish a code bundle whose training dies once (the real one is restored afterwards); yields the
    marker file that the first (killed) attempt leaves."""
    s3, code, mark = target.client("s3"), tmp_path / "code", tmp_path / "killed-once"
    shutil.copytree(ROOT / "model", code, ignore=shutil.ignore_patterns("__pycache__"))
    (code / "real_train.py").write_text((ROOT / "model" / "train.py").read_text())
    (code / "train.py").write_text(FAIL_ONCE.format(mark=str(mark)))
    codebundle.publish(s3, target.artifacts_bucket, code)
    yield mark
    codebundle.publish(s3, target.artifacts_bucket, ROOT / "model")


def _history(target: Target, arn: str) -> list[dict[str, Any]]:
    sfn = target.client("stepfunctions")
    events: list[dict[str, Any]] = []
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn):
        events.extend(page["events"])
    return events


def _entered(events: list[dict[str, Any]]) -> list[str]:
    return [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]


def _kinds(target: Target, model: str, execution: str) -> list[str]:
    return [e["detail-type"] for e in client.notifications(target, model, execution)]


def _cli(twin: Any, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``sagepipe <args> --state-dir <the twin's>`` in this process: exit code, stdout, stderr."""
    capsys.readouterr()
    code = cli.main([*args, "--state-dir", str(twin.info.state_dir)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _notified(target: Target, model: str, execution: str, kinds: list[str]) -> Callable[[], list[str] | None]:
    def probe() -> list[str] | None:
        got = _kinds(target, model, execution)
        return got if len(got) >= len(kinds) else None

    return probe


def test_a_run_whose_training_died_is_retried_from_train_model_and_succeeds(
    twin: Any, target: Target, tmp_path: Path, fail_training_once: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    header, data = churn_rows(0, 2500)
    cfg = churn_config(tmp_path, tolerance=1.0)
    key = client.upload(target, write_csv(tmp_path, "retry.csv", header, data), "retry", cfg)
    [failed] = wait_for_key(target, key)
    name, arn = failed["name"], failed["executionArn"]
    assert fail_training_once.exists()
    # the killed job fails the execution at TrainModel itself (no Catch), so it can be redriven there
    assert failed["status"] == "FAILED" and failed["error"] == "States.TaskFailed", failed
    assert "AlgorithmError" in failed["cause"] and "-9" in failed["cause"]
    assert (failed["redriveCount"], failed["redriveStatus"]) == (0, "REDRIVABLE") and "redriveDate" not in failed
    before = _history(target, arn)
    assert _entered(before)[-1] == "TrainModel" and before[-1]["type"] == "ExecutionFailed"
    # ExecutionEndedFunction: exactly one "Pipeline Failed", naming the job's failure
    wait_for(_notified(target, "retry", name, ["Pipeline Failed"]), "no Pipeline Failed", timeout_s=60)
    [event] = client.notifications(target, "retry", name)
    assert event["detail-type"] == "Pipeline Failed" and event["detail"]["error"] == "States.TaskFailed"

    t0 = time.monotonic()
    code, out, _ = _cli(twin, capsys, "retry", name, "--client-token", "retry-once", "--json")
    assert code == 0, out
    result = json.loads(out)
    assert result["execution_name"] == name and result["resumes_at"] == "TrainModel"
    assert result["redriveCount"] == 1 and result["status"] == "RUNNING"
    # the same clientToken again (within 15 minutes): the same redrive, nothing new started
    again = target.client("stepfunctions").redrive_execution(executionArn=arn, clientToken="retry-once")
    assert again["redriveDate"].isoformat() == result["redriveDate"]

    [done] = wait_for_key(target, key)
    assert done["status"] == "SUCCEEDED", done
    assert done["redriveCount"] == 1 and done["redriveDate"].isoformat() == result["redriveDate"]
    assert done["redriveStatus"] == "NOT_REDRIVABLE"
    assert done["redriveStatusReason"] == "Execution is SUCCEEDED and cannot be redriven."
    events = _history(target, arn)
    assert events[: len(before)] == before  # the history is kept, and goes on
    redriven = [e for e in events if e["type"] == "ExecutionRedriven"]
    assert [e["executionRedrivenEventDetails"] for e in redriven] == [{"redriveCount": 1}]
    after = events[events.index(redriven[0]) + 1 :]
    # resumed at TrainModel: ValidateData (and ShouldTune) ran once, before the failure only
    assert _entered(after)[0] == "TrainModel"
    entered = _entered(events)
    assert entered.count("ValidateData") == 1 and entered.count("ShouldTune") == 1
    assert entered.count("TrainModel") == 2 and entered[-1] == "Succeeded"
    out_doc = json.loads(done["output"])
    job = out_doc["trained"]["TrainingJobName"]
    first = out_doc["run"]["training"]["TrainingJobName"]
    assert job == f"{first}-r1"  # a job name of its own per redrive
    sm = target.client("sagemaker")
    assert sm.describe_training_job(TrainingJobName=first)["TrainingJobStatus"] == "Failed"
    assert sm.describe_training_job(TrainingJobName=job)["TrainingJobStatus"] == "Completed"
    kinds = wait_for(_notified(target, "retry", name, ["Pipeline Failed", "Pipeline Succeeded"]), "no success")
    time.sleep(2)  # a late second "Pipeline Failed" would come asynchronously
    assert _kinds(target, "retry", name) == ["Pipeline Failed", "Pipeline Succeeded"], kinds
    record(
        "training killed once, then `sagepipe retry`", f"resumed at TrainModel, SUCCEEDED {time.monotonic() - t0:.1f} s"
    )

    # a SUCCEEDED run: ExecutionNotRedrivable (AWS's JSON error), the CLI says why and exits 1
    code, _, err = _cli(twin, capsys, "retry", name)
    assert code == 1 and "cannot be retried" in err and "SUCCEEDED" in err, err
    with pytest.raises(ClientError) as info:
        target.client("stepfunctions").redrive_execution(executionArn=arn)
    assert info.value.response["Error"]["Code"] == "ExecutionNotRedrivable"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert len([e for e in _history(target, arn) if e["type"] == "ExecutionRedriven"]) == 1


def test_redrive_errors_are_json_as_aws_sends_them(
    twin: Any, target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    """RedriveExecution of a run that does not exist: ``ExecutionDoesNotExist`` in the awsJson shape that
    botocore parses (it was an HTML 500); a malformed ARN: ``InvalidArn``. The CLI: exit 2, "no run named"."""
    sfn = target.client("stepfunctions")
    missing = f"{target.state_machine_arn.replace(':stateMachine:', ':execution:')}:no-such-run"
    with pytest.raises(ClientError) as info:
        sfn.redrive_execution(executionArn=missing)
    assert info.value.response["Error"]["Code"] == "ExecutionDoesNotExist"
    with pytest.raises(ClientError) as info:
        sfn.redrive_execution(executionArn="arn:aws:states:us-east-1:123456789012:nope")
    assert info.value.response["Error"]["Code"] == "InvalidArn"
    code, _, err = _cli(twin, capsys, "retry", "no-such-run")
    assert code == 2 and "no run named" in err


def test_a_stopped_run_is_retried_at_the_step_it_was_stopped_in(target: Target, tmp_path: Path) -> None:
    """StopExecution while RequestApproval waits: ABORTED at once, ``ExecutionAborted`` (with the request's
    error and cause) in the history at once; "Pipeline Failed". The retry resumes at RequestApproval (a
    new approval request), the approval deploys, "Pipeline Succeeded"."""
    header, data = churn_rows(0, 2500)
    cfg = churn_config(tmp_path, approval="manual", approval_timeout_seconds=600, tolerance=1.0)
    key = client.upload(target, write_csv(tmp_path, "stopped.csv", header, data), "stopped", cfg)
    sfn, s3 = target.client("stepfunctions"), target.client("s3")

    def waiting() -> str | None:
        for ex in executions_for(target, key):
            if _entered(_history(target, ex["executionArn"]))[-1:] == ["RequestApproval"]:
                prefix = f"approvals/stopped/{ex['name']}.json"
                if s3.list_objects_v2(Bucket=target.artifacts_bucket, Prefix=prefix).get("KeyCount"):
                    return str(ex["name"])
        return None

    name = wait_for(waiting, "the run never waited for approval", timeout_s=120, poll_s=0.5)
    arn = client.run_arn(target, name)
    sfn.stop_execution(executionArn=arn, error="OperatorStopped", cause="stopped by test_redrive")
    desc = sfn.describe_execution(executionArn=arn)
    assert desc["status"] == "ABORTED" and desc["redriveStatus"] == "REDRIVABLE"
    last = _history(target, arn)[-1]
    assert last["type"] == "ExecutionAborted"
    assert last["executionAbortedEventDetails"] == {"error": "OperatorStopped", "cause": "stopped by test_redrive"}
    wait_for(_notified(target, "stopped", name, ["Pipeline Failed"]), "no Pipeline Failed", timeout_s=60)

    result = client.retry(target, name)
    assert result["resumes_at"] == "RequestApproval" and result["status"] == "RUNNING"

    def asked_again() -> bool:
        return _entered(_history(target, arn)).count("RequestApproval") == 2 and bool(
            [
                e
                for e in client.notifications(target, "stopped", name)
                if e["detail-type"] == "Pipeline Approval Needed"
            ][1:]
        )

    wait_for(asked_again, "the retried run did not ask for approval again", timeout_s=120, poll_s=0.5)
    client.decide_approval(target, name, True, "fine after the retry", "test_redrive")
    [done] = wait_for_key(target, key)
    assert done["status"] == "SUCCEEDED" and done["redriveCount"] == 1, done
    entered = _entered(_history(target, arn))
    assert entered.count("TrainModel") == 1 and entered.count("RegisterModel") == 1
    kinds = wait_for(_notified(target, "stopped", name, ["a", "b", "c", "d"]), "no success notification")
    assert [k for k in kinds if k in {"Pipeline Failed", "Pipeline Succeeded"}] == [
        "Pipeline Failed",
        "Pipeline Succeeded",
    ], kinds
    record("run stopped at approval, then `sagepipe retry`", "resumed at RequestApproval, SUCCEEDED")


def _execution(status: str, **overrides: Any) -> Any:
    """A stand-in for moto's parser ``Execution`` with what :func:`redrive.not_redrivable_reason` reads."""
    from types import SimpleNamespace

    from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager

    env = SimpleNamespace(event_manager=EventManager(), _twin_entered=("TrainModel", {}))
    fields: dict[str, Any] = {
        "exec_status": status,
        "sm_type": "STANDARD",
        "stop_date": datetime.now(UTC) - timedelta(days=1),
        "_twin_redrive_count": 0,
        "exec_worker": SimpleNamespace(env=env),
    }
    return SimpleNamespace(**(fields | overrides))


@pytest.mark.parametrize(
    "status, overrides, reason",
    [
        ("FAILED", {}, None),
        ("ABORTED", {}, None),
        ("TIMED_OUT", {}, None),
        ("SUCCEEDED", {}, "Execution is SUCCEEDED and cannot be redriven."),
        ("RUNNING", {}, "Execution is RUNNING and cannot be redriven."),
        ("FAILED", {"stop_date": datetime.now(UTC) - timedelta(days=14, minutes=1)}, "redrivable period exceeded"),
        ("FAILED", {"stop_date": (datetime.now(UTC) - timedelta(days=13)).replace(tzinfo=None)}, None),
        ("FAILED", {"_twin_redrive_count": 999}, None),
        ("FAILED", {"_twin_redrive_count": 1000}, "redrive count limit (1000)"),
        ("FAILED", {"sm_type": "EXPRESS"}, "EXPRESS"),
    ],
)
def test_redrive_eligibility_follows_aws(status: str, overrides: dict[str, Any], reason: str | None) -> None:
    """RedriveExecution's conditions (API Reference): FAILED/ABORTED/TIMED_OUT, ended at most 14 days ago
    (moto's naive stopDate is UTC), fewer than 1,000 redrives, a Standard workflow; DescribeExecution's
    ``redriveStatusReason`` wording for SUCCEEDED and RUNNING."""
    from sagepipe.twin.stepfunctions import redrive

    got = redrive.not_redrivable_reason(_execution(status, **overrides))
    assert (got is None) if reason is None else (got is not None and reason in got), got
    fields = redrive.redrive_fields(_execution(status, **overrides))
    assert fields["redriveStatus"] == ("REDRIVABLE" if reason is None else "NOT_REDRIVABLE")
    assert ("redriveStatusReason" in fields) == (reason is not None)


def test_a_full_history_is_not_redrivable() -> None:
    """An execution whose history reached the 25,000-event quota cannot be redriven."""
    from sagepipe.twin.stepfunctions import redrive

    execution = _execution("FAILED")
    execution.exec_worker.env.event_manager._history_event_list.extend([{}] * redrive.HISTORY_EVENT_LIMIT)
    assert redrive.not_redrivable_reason(execution) == "Execution history event limit exceeded."


def test_a_run_restored_from_the_state_dir_is_not_redrivable() -> None:
    """A run of an earlier twin (sagepipe.twin.persistence) has no interpreter state to resume: refused
    with a reason that says so (rather than a wrong one)."""
    from types import SimpleNamespace

    from sagepipe.twin.stepfunctions import redrive

    restored = _execution("FAILED", exec_worker=None, history=[{"type": "ExecutionFailed"}])
    assert "earlier twin" in str(redrive.not_redrivable_reason(restored))
    assert redrive.redrive_fields(SimpleNamespace(**vars(restored)))["redriveStatus"] == "NOT_REDRIVABLE"
