"""The state machine's Retry/Catch routing of the errors the Lambda steps raise (Step Functions semantics:
the first Retrier whose ErrorEquals names the error applies; when none does, or its attempts are used up,
the first matching Catcher; ``States.ALL`` matches everything, "Error handling in Step Functions")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sagepipe_core import errors

pytestmark = pytest.mark.unit

ASL = json.loads((Path(__file__).resolve().parents[2] / "statemachines" / "training_pipeline.asl.json").read_text())
STATES: dict[str, Any] = ASL["States"]
LAMBDA_STEPS = [n for n, s in STATES.items() if s.get("Resource", "").startswith("arn:aws:states:::lambda:invoke")]


def _matches(names: list[str], error: str) -> bool:
    return error in names or "States.ALL" in names or (error.startswith("States.") and "States.TaskFailed" in names)


def retrier(state: str, error: str) -> dict[str, Any] | None:
    """The Retrier that handles ``error`` in ``state``, or None."""
    return next((r for r in STATES[state].get("Retry", []) if _matches(r["ErrorEquals"], error)), None)


def catcher_next(state: str, error: str) -> str | None:
    """The state a Catch sends ``error`` to, or None (uncaught)."""
    return next((c["Next"] for c in STATES[state].get("Catch", []) if _matches(c["ErrorEquals"], error)), None)


def retry_seconds(r: dict[str, Any]) -> float:
    """Longest total wait of a Retrier: sum of its capped exponential intervals."""
    interval, rate, cap = r.get("IntervalSeconds", 1), r.get("BackoffRate", 2.0), r.get("MaxDelaySeconds", 1e9)
    return sum(min(interval * rate**i, cap) for i in range(r.get("MaxAttempts", 3)))


def test_the_error_names_are_core_classes() -> None:
    for name in ("TransientServiceError", "ServiceRequestError", "DeploymentFailedError"):
        assert issubclass(getattr(errors, name), errors.SagepipeError)


@pytest.mark.parametrize("state", LAMBDA_STEPS)
def test_every_lambda_step_retries_transient_service_errors(state: str) -> None:
    r = retrier(state, "TransientServiceError")
    assert r is not None, f"{state} does not retry TransientServiceError"
    assert r["MaxAttempts"] >= 3 and r["BackoffRate"] >= 2 and r.get("JitterStrategy") == "FULL"
    assert 60 <= retry_seconds(r) <= 900, retry_seconds(r)  # minutes of throttling ride out, bounded


@pytest.mark.parametrize("state", LAMBDA_STEPS)
def test_permanent_service_errors_are_not_retried(state: str) -> None:
    assert retrier(state, "ServiceRequestError") is None, state
    assert catcher_next(state, "ServiceRequestError") == "NotifyFailed", state


def test_deploy_errors_not_caused_by_the_model_do_not_reject_the_package() -> None:
    """DeployModel's Lambda errors are the pipeline's or AWS's (a refused request, an endpoint left Failed
    by an earlier run): the package keeps its status, the run is notified; throttling past its retries and
    an error no step names fail the execution at DeployModel (redrivable, notified by ExecutionEnded)."""
    for error in ("ServiceRequestError", "DeploymentFailedError"):
        assert catcher_next("DeployModel", error) == "NotifyFailed", error
    for error in ("TransientServiceError", "EndpointBusyError", "States.TaskFailed", "KeyError"):
        assert catcher_next("DeployModel", error) is None, error
    assert catcher_next("DescribeEndpoint", "SageMaker.ValidationException") == "NotifyFailed"
    assert catcher_next("DescribeEndpoint", "States.TaskFailed") is None


# ------------------------------------------------------------ transient errors are left to RedriveExecution
TASKS = [n for n, s in STATES.items() if s["Type"] == "Task"]
#: Error names of a passing cause (after the step's own retries): AWS's service-side and throttling errors
#: (Step Functions Developer Guide, "Handling Lambda service exceptions"; the SageMaker and EventBridge
#: SDK names), a step's timeout, a failed training job (its instance or its code: not told apart in ASL).
TRANSIENT = [
    *errors.TRANSIENT_ERRORS,
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "Lambda.Unknown",
    "SageMaker.ThrottlingException",
    "SageMaker.InternalFailureException",
    "SageMaker.ServiceUnavailableException",
    "SageMaker.AmazonSageMakerException",
    "SageMaker.ResourceLimitExceededException",
    "EventBridge.AmazonEventBridgeException",
    "States.Timeout",
    "States.TaskFailed",
    "Runtime.ExitError",
]


@pytest.mark.parametrize("state", TASKS)
def test_no_catch_handles_a_transient_error(state: str) -> None:
    """A transient error fails the execution at the Task itself, so RedriveExecution re-runs that Task (a
    Catch would end the run in PipelineFailed, a Fail state, which a redrive only fails again). Only
    RequestApproval's approval timeout (a decision, not a fault) is caught."""
    for error in TRANSIENT:
        if (state, error) == ("RequestApproval", "States.Timeout"):
            assert catcher_next(state, error) == "ApprovalTimedOut"
            continue
        assert catcher_next(state, error) is None, (state, error)
    for catch in STATES[state].get("Catch", []):
        assert not {"States.ALL", "States.TaskFailed"} & set(catch["ErrorEquals"]), (state, catch)


@pytest.mark.parametrize("state", LAMBDA_STEPS)
def test_lambda_steps_catch_exactly_the_permanent_errors(state: str) -> None:
    """Every Lambda step's last Catcher names :data:`errors.PERMANENT_ERRORS` (ValidateData's data and config
    errors go first to NotifyDataRejected); each reaches NotifyFailed."""
    for error in errors.PERMANENT_ERRORS:
        want = (
            "NotifyDataRejected"
            if (state, error)
            in {
                ("ValidateData", "InvalidDatasetError"),
                ("ValidateData", "InvalidConfigError"),
            }
            else "NotifyFailed"
        )
        assert catcher_next(state, error) == want, (state, error)


def test_every_pipeline_error_is_either_permanent_or_transient() -> None:
    """Each SagepipeError a step can raise is classified once: caught (permanent) or left to redrive."""
    import sagepipe_core.approval  # noqa: F401 - defines ApprovalError

    def subclasses(cls: type) -> set[str]:
        return {s.__name__ for s in cls.__subclasses__()} | {n for s in cls.__subclasses__() for n in subclasses(s)}

    names = subclasses(errors.SagepipeError)
    assert set(errors.PERMANENT_ERRORS) | set(errors.TRANSIENT_ERRORS) == names
    assert not set(errors.PERMANENT_ERRORS) & set(errors.TRANSIENT_ERRORS)


@pytest.mark.parametrize(
    "state, key, path, limit",
    [
        ("TrainModel", "TrainingJobName", ("run", "training", "TrainingJobName"), 63),
        ("TuneModel", "HyperParameterTuningJobName", ("run", "tuning", "HyperParameterTuningJobName"), 32),
    ],
)
def test_each_redrive_names_its_jobs_afresh(state: str, key: str, path: tuple[str, ...], limit: int) -> None:
    """A redrive re-runs the job step with ``$$.Execution.RedriveCount`` n: the job is ``<name>-r<n>``
    (the first attempt's name unchanged), valid for SageMaker and within the API's limit even for the
    longest model name and the 1,000th redrive (SageMaker refuses a second job of the same name)."""
    import jsonata

    from sagepipe_core import naming

    model = "M" * 40  # MODEL_NAME_RE's longest
    execution = naming.execution_name(model, f"datasets/{model}/{'x' * 80}.csv", "etag")
    name = (
        naming.version_names(model, execution)["TrainingJobName"]
        if key == "TrainingJobName"
        else naming.tuning_job_name(model, execution)
    )
    expression = STATES[state]["Arguments"][key]
    assert expression.startswith("{%") and expression.endswith("%}")
    seen = set()
    for count in (0, 1, 2, 999, 1000):
        state_input: dict[str, Any] = {}
        node = state_input
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = name
        evaluation = jsonata.Jsonata(expression[2:-2].strip())
        evaluation.assign("states", {"input": state_input, "context": {"Execution": {"RedriveCount": count}}})
        got = evaluation.evaluate(None)
        assert got == (name if count == 0 else f"{name}-r{count}")
        assert naming.SAGEMAKER_NAME_RE.match(got) and len(got) <= limit, got
        seen.add(got)
    assert len(seen) == 5


def test_model_caused_deploy_failures_mark_the_package_rejected() -> None:
    """The endpoint failing on the new model (Failed, rolled back, never healthy) marks the package."""
    endpoint_ready = STATES["EndpointReady"]["Choices"]
    nexts = {c["Next"] for c in endpoint_ready}
    assert {"DeploymentFailed", "MarkRolledBack", "DeploymentTimedOut"} <= nexts
    assert STATES["DeploymentFailed"]["Next"] == STATES["DeploymentTimedOut"]["Next"] == "MarkDeployFailed"
    for name in ("MarkDeployFailed", "MarkRolledBack"):
        assert STATES[name]["Arguments"]["ModelApprovalStatus"] == "Rejected"


def test_train_model_retries_sagemaker_exceptions_for_seconds_not_minutes() -> None:
    """createTrainingJob.sync reports every SageMaker error, a ValidationException too, as
    SageMaker.AmazonSageMakerException: a short retry rides out a throttle, a refused request fails fast."""
    r = retrier("TrainModel", "SageMaker.AmazonSageMakerException")
    assert r is not None and retry_seconds(r) <= 30, r


# ---------------------------------------------------------------- optional members of SDK results (issue 9.12)
_TUNING_RESULT = "$.tuningResult.Result."


def _optional_prefixes(path: str) -> list[str]:
    """The prefixes of ``$.tuningResult.Result.<members>`` whose last member is optional in botocore's
    DescribeHyperParameterTuningJob output (absent there, a JSONPath read is States.Runtime)."""
    import botocore.session

    shape = botocore.session.get_session().get_service_model("sagemaker")
    current: Any = shape.operation_model("DescribeHyperParameterTuningJob").output_shape
    optional, walked = [], _TUNING_RESULT.rstrip(".")
    for member in path.removeprefix(_TUNING_RESULT).split("."):
        walked += f".{member}"
        if member not in current.required_members:
            optional.append(walked)
        current = current.members[member]
        if current.type_name != "structure":
            break
    return optional


def _guards(state: str) -> list[set[str]]:
    """For each Choice rule whose Next is ``state``: the variables it checks with IsPresent true."""

    def present(rule: dict[str, Any]) -> set[str]:
        if "And" in rule:
            return set().union(*(present(r) for r in rule["And"]))
        return {rule["Variable"]} if rule.get("IsPresent") is True else set()

    return [present(r) for s in STATES.values() if s["Type"] == "Choice" for r in s["Choices"] if r["Next"] == state]


def test_every_optional_member_of_the_tuning_result_is_checked_before_it_is_read() -> None:
    """Each state that reads ``$.tuningResult.Result...`` is reached only through Choice rules that check,
    with IsPresent, every optional member on the path it reads (BestTrainingJob,
    FinalHyperParameterTuningJobObjectiveMetric...); a state reached otherwise would fail uncatchably."""
    readers = {
        name: [v for k, v in s.get("Parameters", {}).items() if k.endswith(".$") and v.startswith(_TUNING_RESULT)]
        for name, s in STATES.items()
    }
    readers = {n: paths for n, paths in readers.items() if paths}
    assert {"SelectTunedJob", "SelectTunedJobWithoutObjective"} <= set(readers)
    for name, paths in readers.items():
        rules = _guards(name)
        assert rules, f"{name} reads the tuning result but no Choice guards it"
        for rule in rules:
            for path in paths:
                for prefix in _optional_prefixes(path):
                    assert any(g == prefix or g.startswith(prefix + ".") for g in rule), (name, path, prefix)
    assert STATES["SelectTunedJobWithoutObjective"]["Parameters"]["BestObjective"] is None
