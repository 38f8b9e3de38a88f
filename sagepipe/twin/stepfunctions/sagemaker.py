"""Step Functions optimised integration for SageMaker in moto's interpreter, with ``.sync``.

AWS: ``arn:aws:states:::sagemaker:createTrainingJob.sync`` (and ``createHyperParameterTuningJob.sync``)
start the job, then wait until it is terminal; the task result is the Describe response; a Failed or
Stopped job fails the task with ``States.TaskFailed`` whose Cause is the Describe response (Step
Functions docs, "Create and manage Amazon SageMaker AI jobs with Step Functions"). Other SageMaker
actions (createModel, createEndpointConfig, ...) are request/response calls.

moto maps the ``sagemaker`` service to an unsupported stub; the ``sfn_sagemaker`` patch (below, registered in
:mod:`sagepipe.twin.patches`) rebinds the service factory to return :class:`StateTaskServiceSageMaker`
instead, and ``sdk_error_names`` names an ``aws-sdk:`` task's ClientError as AWS does (:func:`sdk_error_name`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

from botocore.exceptions import ClientError
from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import StatesErrorNameType
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import ResourceCondition
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
    StateTaskServiceCallback,
)
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.utils.boto_client import boto_client_for

from ..patches import _APPLIED, MotoInternalsChanged, Patch, _install, _require

_SYNC_DESCRIBE: Final[dict[str, tuple[str, str, str]]] = {
    # start action -> (describe action, name parameter, status field)
    "create_training_job": ("describe_training_job", "TrainingJobName", "TrainingJobStatus"),
    "create_hyper_parameter_tuning_job": (
        "describe_hyper_parameter_tuning_job",
        "HyperParameterTuningJobName",
        "HyperParameterTuningJobStatus",
    ),
}
_TERMINAL_OK: Final[set[str]] = {"Completed"}
_TERMINAL_BAD: Final[set[str]] = {"Failed", "Stopped"}


def json_safe(value: Any) -> Any:
    """Describe responses hold datetimes; Step Functions state data must be JSON (ISO-8601 strings)."""
    return json.loads(json.dumps(value, default=lambda o: o.isoformat() if isinstance(o, datetime) else str(o)))


@functools.lru_cache(maxsize=16)
def modeled_exceptions(service: str) -> frozenset[str]:
    """The names of the exception shapes ``service``'s botocore model declares (its modelled errors)."""
    import botocore.session

    model = botocore.session.get_session().get_service_model(service)
    return frozenset(n for n in model.shape_names if model.shape_for(n).metadata.get("exception"))


def sdk_error_name(service: str, ex: Exception) -> str:
    """The Step Functions error name of an ``aws-sdk:<service>:<action>`` task's ClientError.

    ``<ServiceId>.<ErrorCode>`` with ``Exception`` appended when the code lacks it, the service named as
    the SDKs name it (botocore's ``serviceId`` without spaces: ``SageMaker``, ``S3``, ``EventBridge``):
    ``SageMaker.ValidationException``, ``SageMaker.ResourceNotFoundException``, ``SageMaker.ThrottlingException``
    (Step Functions docs, "Handling errors" of AWS SDK integrations). moto spells them lower-case
    (``sagemaker.sagemakerException``), which no Retry/Catch by name matches.
    """
    import botocore.session

    service_id = botocore.session.get_session().get_service_model(service).metadata["serviceId"].replace(" ", "")
    code = str(ex.response.get("Error", {}).get("Code", "")) if isinstance(ex, ClientError) else ""
    name = code or type(ex).__name__
    return f"{service_id}.{name if name.endswith('Exception') else name + 'Exception'}"


def optimized_error_name(ex: ClientError) -> str:
    """The Step Functions error name of a SageMaker call's ClientError in an optimised integration.

    Step Functions reports the Java SDK exception of the service call as ``SageMaker.<Exception>``: a
    modelled exception by its class (``ResourceLimitExceeded`` -> ``SageMaker.ResourceLimitExceededException``,
    ``ResourceInUse``, ``ResourceNotFound``), every other service error (``ValidationException``,
    ``ThrottlingException``, ...) as the SDK's base class ``SageMaker.AmazonSageMakerException`` with the
    code in the Cause ("Handling errors in Step Functions workflows"; the names this repo's ASL retries on).
    """
    code = str(ex.response.get("Error", {}).get("Code", ""))
    modeled = modeled_exceptions("sagemaker")
    if code in modeled:
        return f"SageMaker.{code if code.endswith('Exception') else code + 'Exception'}"
    return "SageMaker.AmazonSageMakerException"


def java_style_cause(ex: ClientError, service: str) -> str:
    """``<message> (Service: <service>; Status Code: <n>; Error Code: <code>; Request ID: <id>; Proxy: null)``."""
    err, meta = ex.response.get("Error", {}), ex.response.get("ResponseMetadata", {})
    return (
        f"{err.get('Message', '')} (Service: {service}; Status Code: {meta.get('HTTPStatusCode', 400)}; "
        f"Error Code: {err.get('Code', '')}; Request ID: {meta.get('RequestId', '')}; Proxy: null)"
    )


class StateTaskServiceSageMaker(StateTaskServiceCallback):
    """``arn:aws:states:::sagemaker:<action>[.sync]`` for moto's ASL interpreter."""

    def __init__(self) -> None:
        # moto declares ResourceCondition's members as plain str class attributes, its own services pass them so
        patterns = {ResourceCondition.Sync, ResourceCondition.WaitForTaskToken}
        super().__init__(supported_integration_patterns=patterns)  # type: ignore[arg-type]

    def _from_error(self, env: Any, ex: Exception) -> FailureEvent:
        """A ClientError of the service call fails the task with the name AWS gives it (catchable by name)."""
        if not isinstance(ex, ClientError):
            failure: FailureEvent = super()._from_error(env=env, ex=ex)
            return failure
        error = optimized_error_name(ex)
        return FailureEvent(
            env=env,
            error_name=CustomErrorName(error_name=error),
            event_type=HistoryEventType.TaskFailed,
            # EventDetails is a total TypedDict in moto, which builds it with one member as here
            event_details=EventDetails(  # type: ignore[typeddict-item]
                taskFailedEventDetails=TaskFailedEventDetails(
                    resource=self._get_sfn_resource(),
                    resourceType=self._get_sfn_resource_type(),
                    error=error,
                    cause=java_style_cause(ex, "AmazonSageMaker"),
                )
            ),
        )

    def _get_supported_parameters(self) -> set[str] | None:  # every request parameter is passed through
        return set()

    def _validate_service_integration_is_supported(self) -> None:
        action = self._get_boto_service_action()
        if self.resource.condition == ResourceCondition.Sync and action not in _SYNC_DESCRIBE:
            raise ValueError(f"sagemaker:{self.resource.api_action}.sync is not a Step Functions integration")

    def _client(self, resource_runtime_part: Any, state_credentials: Any) -> Any:
        return boto_client_for(
            service="sagemaker", region=resource_runtime_part.region, state_credentials=state_credentials
        )

    def _eval_service_task(
        self, env: Any, resource_runtime_part: Any, normalised_parameters: dict[str, Any], state_credentials: Any
    ) -> None:
        client = self._client(resource_runtime_part, state_credentials)
        response = getattr(client, self._get_boto_service_action())(**normalised_parameters)
        response.pop("ResponseMetadata", None)
        env.stack.append(json_safe(response))

    def _check_sync_permissions(self, env: Any, region: str, created: dict[str, Any]) -> None:
        """What ``.sync`` does as the state machine's role besides polling (Step Functions Developer Guide,
        "IAM policies for Amazon SageMaker AI"): it manages the EventBridge rule
        ``StepFunctionsGetEventsForSageMaker{Training,Tuning}JobsRule`` (PutTargets, PutRule, DescribeRule)
        and lists the job's tags (ListTags). The twin polls instead of using the rule, but checks the role
        may do all this; if not, the task fails with the AccessDeniedException."""
        from botocore.exceptions import ClientError

        from .. import iam

        tuning = self._get_boto_service_action() == "create_hyper_parameter_tuning_job"
        rule = f"StepFunctionsGetEventsForSageMaker{'Tuning' if tuning else 'Training'}JobsRule"
        rule_arn = f"arn:aws:events:{region}:{iam.ACCOUNT_ID}:rule/{rule}"
        job_arn = str(created.get("HyperParameterTuningJobArn" if tuning else "TrainingJobArn", ""))
        checks = [iam.Check(a, rule_arn) for a in ("events:PutTargets", "events:PutRule", "events:DescribeRule")]
        message = iam.denial(env.aws_execution_details.role_arn, [*checks, iam.Check("sagemaker:ListTags", job_arn)])
        if message:
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": message}}, "ListTags")

    def _build_sync_resolver(
        self, env: Any, resource_runtime_part: Any, normalised_parameters: dict[str, Any], state_credentials: Any
    ) -> Callable[[], Any]:
        describe, name_param, status_field = _SYNC_DESCRIBE[self._get_boto_service_action()]
        created = env.stack.pop()  # the Create response
        self._check_sync_permissions(env, resource_runtime_part.region, created)
        client = self._client(resource_runtime_part, state_credentials)
        name = normalised_parameters[name_param]

        def stop_job() -> None:
            # the execution ended (StopExecution, TimeoutSeconds) while the job runs: Step Functions stops
            # the job as the state machine's role, which needs sagemaker:Stop* (Developer Guide, "IAM
            # policies for Amazon SageMaker AI": StopTrainingJob / StopHyperParameterTuningJob)
            stop = (
                "stop_hyper_parameter_tuning_job"
                if name_param == "HyperParameterTuningJobName"
                else "stop_training_job"
            )
            try:
                getattr(client, stop)(**{name_param: name})
            except ClientError:  # already terminal, or the role may not: the job runs on (as on AWS)
                pass

        def resolver() -> Any | None:
            job = getattr(client, describe)(**{name_param: name})
            job.pop("ResponseMetadata", None)
            status = job.get(status_field)
            if status in _TERMINAL_OK:
                return json_safe(job)
            if status in _TERMINAL_BAD:
                error = StatesErrorNameType.StatesTaskFailed.to_name()
                raise FailureEventException(
                    FailureEvent(
                        env=env,
                        error_name=StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed),
                        event_type=HistoryEventType.TaskFailed,
                        # EventDetails is a total TypedDict in moto, which builds it with one member as here
                        event_details=EventDetails(  # type: ignore[typeddict-item]
                            taskFailedEventDetails=TaskFailedEventDetails(
                                resource=self._get_sfn_resource(),
                                resourceType=self._get_sfn_resource_type(),
                                error=error,
                                cause=json.dumps(json_safe(job)),
                            )
                        ),
                    )
                )
            return None

        resolver.stop_job = stop_job  # type: ignore[attr-defined]  # read by _eval_sync below
        return resolver

    def _eval_sync(
        self,
        env: Any,
        sync_resolver: Callable[[], Any] | None,
        timeout_seconds: int | None,
        callback_endpoint: Any,
        heartbeat_endpoint: Any,
    ) -> Any:
        """moto's wait for the job; then, when the execution ended meanwhile (aborted or timed out) rather
        than the job, stop the job as AWS does ("Run a Job (.sync)": stopping the execution stops the job)."""
        result = super()._eval_sync(env, sync_resolver, timeout_seconds, callback_endpoint, heartbeat_endpoint)
        stop_job = getattr(sync_resolver, "stop_job", None)
        if not env.is_running() and stop_job is not None:
            stop_job()
        return result


# --------------------------------------------------------------------------------- the patches
_SFN_TASK = "moto.stepfunctions.parser.asl.component.state.exec.state_task"


def _sfn_factory_modules() -> tuple[Any, Any]:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import state_task_factory
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service_factory

    return state_task_service_factory, state_task_factory


def _check_sfn_sagemaker() -> None:
    factory, task_factory = _sfn_factory_modules()
    _require(factory, "state_task_service_for", ["service_name"])
    _require(task_factory, "state_task_service_for", ["service_name"])
    if "sagemaker" not in _require(factory, "_UNSUPPORTED_SERVICE_NAMES"):
        raise MotoInternalsChanged(
            "moto now handles the sagemaker Step Functions integration itself; drop the twin patch"
        )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service_callback as cb

    _require(cb.StateTaskServiceCallback, "_build_sync_resolver", ["self", "env", "resource_runtime_part"])
    _require(cb.StateTaskServiceCallback, "_eval_service_task", ["self", "env", "resource_runtime_part"])
    _require(
        cb.StateTaskServiceCallback,
        "_eval_sync",
        ["self", "env", "sync_resolver", "timeout_seconds", "callback_endpoint", "heartbeat_endpoint"],
    )


def _apply_sfn_sagemaker() -> None:
    factory, task_factory = _sfn_factory_modules()
    original = _APPLIED.setdefault("sfn_sagemaker.original", factory.state_task_service_for)

    def state_task_service_for(service_name: str) -> Any:
        if service_name == "sagemaker":
            return StateTaskServiceSageMaker()
        return original(service_name)

    _install("sfn_sagemaker", factory, "state_task_service_for", state_task_service_for)
    _install("sfn_sagemaker", task_factory, "state_task_service_for", state_task_service_for)  # imported by name


_SDK_FROM_ERROR = (
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk:"
    "StateTaskServiceAwsSdk._from_error"
)


def _aws_sdk_module() -> Any:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service_aws_sdk

    return state_task_service_aws_sdk


def _check_sdk_error_names() -> None:
    mod = _aws_sdk_module()
    _require(mod.StateTaskServiceAwsSdk, "_from_error", ["self", "env", "ex"])
    _require(mod.StateTaskServiceAwsSdk, "_get_task_failure_event", ["self", "env", "error", "cause"])
    _require(mod.StateTaskServiceAwsSdk, "_get_boto_service_name", ["self"])
    if "sagemaker" in _require(mod, "_SERVICE_ERROR_NAMES"):
        raise MotoInternalsChanged("moto now names SageMaker aws-sdk errors itself; re-check the twin patch")


def _apply_sdk_error_names() -> None:
    cls = _aws_sdk_module().StateTaskServiceAwsSdk
    original = _APPLIED.setdefault("sdk_error_names.original", cls._from_error)

    def _from_error(self: Any, env: Any, ex: Exception) -> Any:
        if not isinstance(ex, ClientError):
            return original(self, env, ex)
        service = self._get_boto_service_name()
        error = sdk_error_name(service, ex)
        return self._get_task_failure_event(env=env, error=error, cause=java_style_cause(ex, error.split(".")[0]))

    _install("sdk_error_names", cls, "_from_error", _from_error)


PATCHES: tuple[Patch, ...] = (
    Patch(
        "sfn_sagemaker",
        (
            f"{_SFN_TASK}.service.state_task_service_factory:state_task_service_for",
            f"{_SFN_TASK}.state_task_factory:state_task_service_for",
        ),
        _check_sfn_sagemaker,
        _apply_sfn_sagemaker,
    ),
    Patch(
        "sdk_error_names",
        (_SDK_FROM_ERROR,),
        _check_sdk_error_names,
        _apply_sdk_error_names,
    ),
)
