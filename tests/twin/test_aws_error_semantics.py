"""Service errors reach Step Functions under the names AWS gives them (issue 10, "Error names as AWS sends
them"), so the ASL's Retry and Catch by name run in the twin as on AWS.

- optimised integration ``arn:aws:states:::sagemaker:createTrainingJob.sync``: an unmodelled service error
  (ValidationException) is ``SageMaker.AmazonSageMakerException`` (the Java SDK's base exception, the code
  in the Cause); TrainModel retries it 3 times, then Catch sends "Pipeline Failed";
- ``aws-sdk:sagemaker:*``: ``SageMaker.<Code>`` (``SageMaker.ValidationException``), not moto's
  ``sagemaker.sagemakerException``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sagepipe import client
from sagepipe.client import Target
from sagepipe.twin.stepfunctions.sagemaker import optimized_error_name, sdk_error_name

from .conftest import churn_rows, executions_for, record, wait_for, wait_for_key, write_csv

pytestmark = pytest.mark.twin


def _client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": 400}}, "Op")


def test_error_names_follow_aws() -> None:
    """The naming rules, per code (modelled SageMaker exceptions keep their own class name)."""
    assert optimized_error_name(_client_error("ValidationException")) == "SageMaker.AmazonSageMakerException"
    assert optimized_error_name(_client_error("ResourceLimitExceeded")) == "SageMaker.ResourceLimitExceededException"
    assert sdk_error_name("sagemaker", _client_error("ValidationException")) == "SageMaker.ValidationException"
    assert sdk_error_name("sagemaker", _client_error("ResourceNotFound")) == "SageMaker.ResourceNotFoundException"
    assert sdk_error_name("events", _client_error("ThrottlingException")) == "EventBridge.ThrottlingException"


def test_a_refused_create_training_job_is_retried_by_name_then_notified(
    target: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CreateTrainingJob answers ValidationException: the task fails as SageMaker.AmazonSageMakerException,
        TrainModel's Retry on that name runs (1 + 3 attempts), then the execution fails at TrainModel (no Catch:
    a throttle looks the same, so the run stays redrivable) and ExecutionEndedFunction notifies."""
    from moto.sagemaker.exceptions import ValidationError
    from moto.sagemaker.models import SageMakerModelBackend

    calls: list[str] = []

    def refuse(self: Any, **kwargs: Any) -> Any:
        calls.append(kwargs.get("training_job_name", "?"))
        raise ValidationError(message="Could not find model data at s3://nowhere/x (refused by the test)")

    monkeypatch.setattr(SageMakerModelBackend, "create_training_job", refuse)
    header, data = churn_rows(0, 1200)
    key = client.upload(target, write_csv(tmp_path, "refused.csv", header, data), "refused")
    [desc] = wait_for_key(target, key)
    assert desc["status"] == "FAILED"
    sfn = target.client("stepfunctions")
    history = sfn.get_execution_history(executionArn=desc["executionArn"], maxResults=1000)["events"]
    failed = [e["taskFailedEventDetails"] for e in history if e["type"] == "TaskFailed"]
    train = [f for f in failed if f.get("resourceType") == "sagemaker"]
    assert [f["error"] for f in train] == ["SageMaker.AmazonSageMakerException"] * 4, failed
    assert "Error Code: ValidationException" in train[0]["cause"] and "Service: AmazonSageMaker" in train[0]["cause"]
    assert len(calls) == 4
    # ExecutionEndedFunction's notification arrives asynchronously (the status-change event)
    events = wait_for(lambda: client.notifications(target, "refused", desc["name"]), "no notification", poll_s=0.5)
    time.sleep(2)  # a second one would follow as fast
    events = client.notifications(target, "refused", desc["name"])
    assert [e["detail-type"] for e in events] == ["Pipeline Failed"]
    detail = events[0]["detail"]
    assert detail["error"] == "SageMaker.AmazonSageMakerException", json.dumps(detail)[:500]
    assert desc["error"] == "SageMaker.AmazonSageMakerException"  # failed at TrainModel: redrivable
    record("CreateTrainingJob refused (ValidationException)", "SageMaker.AmazonSageMakerException, 3 retries, notified")


def _dead_letters(target: Target, key: str, timeout_s: float = 120) -> list[dict[str, Any]]:
    """Messages of the stack's trigger dead-letter queue that concern data set ``key`` (left in the queue)."""
    sqs = target.client("sqs")
    [url] = [u for u in sqs.list_queues()["QueueUrls"] if "TriggerDeadLetterQueue" in u]

    def probe() -> list[dict[str, Any]]:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0, WaitTimeSeconds=1)
        return [json.loads(m["Body"]) for m in got.get("Messages", []) if key in m["Body"]]

    return wait_for(probe, f"nothing for {key} in the trigger dead-letter queue", timeout_s=timeout_s, poll_s=0)


def test_a_start_function_error_is_retried_twice_by_lambda_then_sent_to_its_on_failure_destination(
    target: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EventBridge → StartFunction is asynchronous: StartExecution throttled on every try makes the function
    fail; Lambda runs it 1 + MaximumRetryAttempts (2) times, then its EventInvokeConfig OnFailure queue gets
    an invocation record (condition RetriesExhausted, the event as requestPayload) - not the rule's DLQ
    delivery message, and nothing is lost."""
    from moto.core.exceptions import JsonRESTError
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    tries: list[str] = []

    def throttled(self: Any, state_machine_arn: str, *args: Any, **kwargs: Any) -> Any:
        tries.append(state_machine_arn)
        raise JsonRESTError("ThrottlingException", "Rate exceeded")

    monkeypatch.setattr(StepFunctionsParserBackend, "start_execution", throttled)
    header, data = churn_rows(0, 300)
    key = client.upload(target, write_csv(tmp_path, "throttled.csv", header, data), "throttled")
    [record_] = _dead_letters(target, key)
    monkeypatch.undo()
    assert record_["requestContext"]["condition"] == "RetriesExhausted"
    assert record_["requestContext"]["approximateInvokeCount"] == 3 and record_["requestContext"]["functionArn"]
    assert record_["requestPayload"]["detail"]["object"]["key"] == key
    assert record_["responseContext"]["functionError"] == "Unhandled"
    assert "TransientServiceError" in json.dumps(record_["responsePayload"])
    assert len(tries) >= 3  # each attempt tried StartExecution (the boto3 client's own retries add more)
    record("start function fails on every try", "2 Lambda retries, invocation record in the on-failure queue")


def _run_machine(target: Target, name: str, definition: dict[str, Any], run_input: dict[str, Any]) -> dict[str, Any]:
    """Create state machine ``name`` (the stack's state machine role), run it, wait for its end."""
    sfn = target.client("stepfunctions")
    role = sfn.describe_state_machine(stateMachineArn=target.state_machine_arn)["roleArn"]
    arn = sfn.create_state_machine(name=name, definition=json.dumps(definition), roleArn=role)["stateMachineArn"]
    run = sfn.start_execution(stateMachineArn=arn, input=json.dumps(run_input))["executionArn"]
    while (desc := sfn.describe_execution(executionArn=run))["status"] == "RUNNING":
        time.sleep(0.2)
    return desc


def test_states_all_does_not_catch_a_runtime_error(target: Target) -> None:
    """A JSONPath that finds nothing in a Task's Parameters is ``States.Runtime``; AWS's ``States.ALL`` does
    not catch it (nor ``States.DataLimitExceeded``): the execution fails at once. moto's Catch caught it."""
    definition = {
        "StartAt": "Put",
        "States": {
            "Put": {
                "Type": "Task",
                "Resource": "arn:aws:states:::events:putEvents",
                "Parameters": {"Entries.$": "$.missing"},
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
                "End": True,
            },
            "Caught": {"Type": "Succeed"},
        },
    }
    desc = _run_machine(target, "sagepipe-test-runtime-error", definition, {"present": 1})
    assert desc["status"] == "FAILED", desc
    assert desc["error"] == "States.Runtime" and "$.missing" in desc["cause"], desc


def test_an_error_named_explicitly_is_still_caught(target: Target) -> None:
    """Only the ``States.ALL`` wildcard skips the terminal errors: ``States.TaskFailed`` (and any other
    name) still matches as before - the patch does not make Catch fail in general."""
    definition = {
        "StartAt": "Fail",
        "States": {
            "Fail": {
                "Type": "Parallel",
                "Branches": [
                    {"StartAt": "Boom", "States": {"Boom": {"Type": "Fail", "Error": "Boom", "Cause": "test"}}}
                ],
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
                "End": True,
            },
            "Caught": {"Type": "Succeed"},
        },
    }
    desc = _run_machine(target, "sagepipe-test-caught", definition, {})
    assert desc["status"] == "SUCCEEDED", desc


def test_the_execution_history_quota_fails_the_run_at_event_25000(target: Target) -> None:
    """A Choice looping forever: AWS fails the execution when its history is full - event 25,000 is
    ExecutionFailed, States.Runtime, "The execution reached the maximum number of history events (25000).",
    and no Catch runs (Step Functions quotas). moto looped until TimeoutSeconds."""
    from sagepipe.twin.stepfunctions.quotas import HISTORY_QUOTA_CAUSE

    definition = {
        "StartAt": "Loop",
        "TimeoutSeconds": 600,
        "States": {
            "Loop": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.spin", "BooleanEquals": True, "Next": "Loop"}],
                "Default": "Done",
            },
            "Done": {"Type": "Succeed"},
        },
    }
    desc = _run_machine(target, "sagepipe-test-history-quota", definition, {"spin": True})
    assert (desc["status"], desc.get("error"), desc.get("cause")) == ("FAILED", "States.Runtime", HISTORY_QUOTA_CAUSE)
    sfn = target.client("stepfunctions")
    last = sfn.get_execution_history(executionArn=desc["executionArn"], reverseOrder=True, maxResults=2)["events"]
    assert [(e["id"], e["type"]) for e in last] == [(25000, "ExecutionFailed"), (24999, "ChoiceStateExited")], last
    assert last[0]["executionFailedEventDetails"] == {"error": "States.Runtime", "cause": HISTORY_QUOTA_CAUSE}


def test_execution_history_is_served_in_pages_as_aws_serves_it(target: Target) -> None:
    """GetExecutionHistory: 100 events per page by default (at most maxResults), a nextToken while more
    remain, reverseOrder newest first, includeExecutionData=false without input/output, a foreign token
    refused with InvalidToken (API Reference). moto returned every event in one page, oldest first."""
    definition = {
        "StartAt": "Loop",
        "States": {
            "Loop": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.n", "NumericLessThan": 80, "Next": "Count"}],
                "Default": "Done",
            },
            "Count": {"Type": "Pass", "Parameters": {"n.$": "States.MathAdd($.n, 1)"}, "Next": "Loop"},
            "Done": {"Type": "Succeed"},
        },
    }
    desc = _run_machine(target, "sagepipe-test-history-pages", definition, {"n": 0})
    assert desc["status"] == "SUCCEEDED", desc
    sfn = target.client("stepfunctions")
    arn = desc["executionArn"]
    first = sfn.get_execution_history(executionArn=arn)
    assert len(first["events"]) == 100 and first["nextToken"], len(first["events"])
    pages = list(sfn.get_paginator("get_execution_history").paginate(executionArn=arn))
    events = [e for p in pages for e in p["events"]]
    total = 2 + 81 * 2 + 80 * 2 + 2  # started, Choice x81, Pass x80, Succeed, succeeded
    assert [e["id"] for e in events] == list(range(1, total + 1))
    newest = sfn.get_execution_history(executionArn=arn, reverseOrder=True, maxResults=3)["events"]
    assert [e["type"] for e in newest] == ["ExecutionSucceeded", "SucceedStateExited", "SucceedStateEntered"]
    lean = sfn.get_execution_history(executionArn=arn, maxResults=1, includeExecutionData=False)["events"]
    assert "input" not in lean[0]["executionStartedEventDetails"], lean
    with pytest.raises(ClientError) as refused:
        sfn.get_execution_history(executionArn=arn, nextToken="not-a-token-the-twin-issued")
    assert refused.value.response["Error"]["Code"] == "InvalidToken"


def test_invoke_refuses_payloads_over_lambdas_quotas(target: Target) -> None:
    """Invoke: over 6,291,456 bytes synchronously, or 1,048,576 bytes as an ``Event``, is refused with 413
    RequestEntityTooLargeException before the function runs (Lambda quotas; moto ran it)."""
    lam = target.client("lambda")
    [name] = [f["FunctionName"] for f in lam.list_functions()["Functions"] if "StartFunction" in f["FunctionName"]]
    invocations = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    for kind, limit in (("RequestResponse", 6 * 1024 * 1024), ("Event", 1024 * 1024)):
        payload = json.dumps({"pad": "x" * limit}).encode()
        with pytest.raises(ClientError) as refused:
            lam.invoke(FunctionName=invocations, InvocationType=kind, Payload=payload)
        err = refused.value.response
        assert err["ResponseMetadata"]["HTTPStatusCode"] == 413, err
        assert err["Error"]["Code"] == "RequestEntityTooLargeException", err
        assert f"Request must be smaller than {limit} bytes for the InvokeFunction operation" in str(refused.value)


def test_put_events_refuses_entries_of_256_kb(target: Target) -> None:
    """PutEvents: entries totalling 256 KB or more (Source + DetailType + Detail + Resources, UTF-8) are
    refused as a whole with ValidationException; just under is accepted (EventBridge quotas)."""
    from sagepipe.twin.events.api import MAX_ENTRIES_BYTES, entries_size

    events = target.client("events")
    base = {"Source": "sagepipe.test", "DetailType": "Size Probe"}
    pad = MAX_ENTRIES_BYTES - entries_size([{**base, "Detail": '{"p":""}'}])
    under = {**base, "Detail": json.dumps({"p": "x" * (pad - 1)}, separators=(",", ":"))}
    assert entries_size([under]) == MAX_ENTRIES_BYTES - 1
    assert events.put_events(Entries=[under])["FailedEntryCount"] == 0
    at = {**base, "Detail": json.dumps({"p": "x" * pad}, separators=(",", ":"))}
    with pytest.raises(ClientError) as refused:
        events.put_events(Entries=[at])
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "Total size of the entries in the request is over the limit." in str(refused.value)
    halves = [{**base, "Detail": json.dumps({"p": "x" * (pad // 2)})} for _ in range(2)]
    with pytest.raises(ClientError):  # the quota is on the request's entries together
        events.put_events(Entries=halves)


def test_a_failing_execution_ended_function_sends_its_record_as_its_own_role(
    target: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ExecutionEndedFunction (the "Pipeline Failed" notice for an ABORTED run) fails on every try -
    PutEvents throttled -: Lambda retries it twice, then sends the invocation record to its on-failure
    destination with the function's own role (its SAM-added sqs:SendMessage), so no end goes unrecorded."""
    from moto.core.exceptions import JsonRESTError
    from moto.events.responses import EventsHandler

    original = EventsHandler.put_events

    def throttled(self: Any) -> Any:
        if "Pipeline Failed" in json.dumps(self._get_param("Entries") or []):
            raise JsonRESTError("ThrottlingException", "Rate exceeded")
        return original(self)

    monkeypatch.setattr(EventsHandler, "put_events", throttled)
    header, data = churn_rows(0, 1200)
    key = client.upload(target, write_csv(tmp_path, "ended.csv", header, data), "ended")
    sfn = target.client("stepfunctions")
    runs = wait_for(
        lambda: [e for e in executions_for(target, key) if e["status"] == "RUNNING"], "the run did not start"
    )
    sfn.stop_execution(executionArn=runs[0]["executionArn"], error="OperatorStopped", cause="test")
    records = [r for r in _dead_letters(target, key, timeout_s=240) if "ExecutionEndedFunction" in json.dumps(r)]
    monkeypatch.undo()
    assert records, "no invocation record from ExecutionEndedFunction"
    rec = records[0]
    assert (
        rec["requestContext"]["condition"] == "RetriesExhausted"
        and rec["requestContext"]["approximateInvokeCount"] == 3
    )
    assert rec["requestPayload"]["detail"]["status"] == "ABORTED"
    record("ExecutionEndedFunction fails on every try", "2 Lambda retries, record sent as its role to its destination")


def test_state_data_over_256_kb_fails_the_run_and_an_input_over_it_is_refused(target: Target) -> None:
    """Step Functions' payload quota (256 KB, UTF-8): a state whose output passes it fails the execution
    with States.DataLimitExceeded, which no Catch on States.ALL catches; StartExecution with an input over
    262,144 characters is refused (the service model's max length)."""
    half = "x" * (150 * 1024)
    definition = {
        "StartAt": "Double",
        "States": {
            "Double": {
                "Type": "Pass",
                "Parameters": {"a.$": "$.s", "b.$": "$.s"},
                "Next": "Done",
            },
            "Done": {"Type": "Succeed"},
        },
    }
    desc = _run_machine(target, "sagepipe-test-data-limit", definition, {"s": half})
    assert (desc["status"], desc.get("error")) == ("FAILED", "States.DataLimitExceeded"), desc
    sfn = target.client("stepfunctions")
    arn = sfn.describe_execution(executionArn=desc["executionArn"])["stateMachineArn"]
    with pytest.raises(ClientError) as refused:
        sfn.start_execution(stateMachineArn=arn, input=json.dumps({"s": "x" * (256 * 1024)}))
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "262144" in str(refused.value), str(refused.value)
