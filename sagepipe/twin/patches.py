"""Every patch the twin applies to moto's internals, in one place.

moto is pinned exactly (``moto==5.2.5``). Each :class:`Patch` lists the internals it replaces (``sites``)
and has a ``check()`` that raises :class:`MotoInternalsChanged` with a clear message if that internal is
gone or has changed shape; ``tests/twin/test_patches.py`` runs every check, so a moto upgrade fails
loudly, and proves with :meth:`Patch.missing` that after :func:`apply_all` every site holds the twin's
replacement (and that ``apply`` installed nothing else).

The patches (see ``shared/design/local-twin-facts.md`` for why each is needed):

1. ``jsonata`` - plug ``jsonata-python`` into moto's Step Functions interpreter (moto leaves it None).
2. ``sfn_sagemaker`` - the ``sagemaker`` service integration with ``.sync`` (moto: unsupported).
3. ``lambda_invoke`` - ``LambdaFunction._invoke_lambda`` runs the real handler in a warm worker.
4. ``sagemaker_api`` - training jobs run for real; endpoints host real model servers; UpdateEndpoint
   (absent in moto); SageMaker name rules and duplicate-name errors enforced as AWS does.
5. ``sagemaker_runtime`` - InvokeEndpoint reaches the endpoint's model server.
6. ``events_targets`` - EventBridge rules deliver to Lambda and Step Functions targets, per target,
   so one failing target does not stop the others.
7. ``s3_eventbridge`` - S3 → EventBridge events shaped as AWS sends them (URL-encoded key, unique id,
   ISO time).
8. ``asl_parse_lock`` - moto's ASL ``Preprocessor`` keeps its query-language scope stack in a class
   attribute shared by all instances, so executions that start together corrupt each other's parse
   ("Unsupported declaration in QueryLanguage=JSONata block") and hang RUNNING: parses are serialised.
9. ``sfn_status_events`` - an ended execution puts "Step Functions Execution Status Change" on the
   default bus, as AWS does, and StopExecution aborts at once with its error/cause (``stepfunctions/events.py``).
10. ``sdk_error_names`` - a ClientError of an ``aws-sdk:`` task is named as AWS names it
    (``SageMaker.ValidationException``; moto: ``sagemaker.sagemakerException``), and the optimised
    SageMaker integration's as ``SageMaker.AmazonSageMakerException`` / ``SageMaker.<Modelled>Exception``
    (``stepfunctions/sagemaker.py``), so Retry and Catch by name run in the twin as on AWS.
11. ``server_validation`` - every request moto dispatches through ``BaseResponse.call_action`` (the JSON
    and query services: SageMaker, Step Functions, EventBridge, CloudWatch Logs, SNS, SQS...) is parsed by
    moto's protocol parsers and checked against botocore's service model (pattern, max, enum, sizes);
    a violation is answered with ``ValidationException`` in the service's protocol (``validation.py``).
12. ``iam_enforce`` - a request signed with a template role's access key is authorised against that
   role's policies (:mod:`sagepipe.twin.iam`; moto's own access control checks actions only): every
   service through ``BaseResponse._dispatch`` (before ``call_action``), S3 through ``_authenticate_and_authorize_s3_action``.
13. ``sfn_credentials`` - Step Functions' task clients (``boto_client_for``, imported by name in each
   integration's module) sign as the execution's role instead of a fixed key.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote_plus

from . import validation
from .stepfunctions import events as sfn_events

if TYPE_CHECKING:
    from moto.events.utils import EventMessageType

SAGEMAKER_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
MAX_INVOKE_PAYLOAD = 6 * 1024 * 1024


class MotoInternalsChanged(RuntimeError):
    """moto no longer has the internal a twin patch replaces: re-check the patch against the new moto."""


class TwinRuntime(Protocol):
    """What the patches call back into (implemented by :class:`sagepipe.twin.server.Twin`)."""

    training: Any
    hosting: Any
    tuning: Any

    def invoke_lambda(self, function: Any, event: Any) -> tuple[str, bool, str]: ...
    def deliver(self, rule: Any, target: dict[str, Any], event: dict[str, Any]) -> None: ...
    def log(self, prefix: str, line: str) -> None: ...


_TWIN: TwinRuntime | None = None
_APPLIED: dict[str, Any] = {}
_INSTALLED: dict[str, set[str]] = {}  # patch name -> the sites its apply() replaced
_LOCK = threading.Lock()
PATCH_MARK = "_sagepipe_patch"  # attribute naming the patch on each replacement the twin installs


def twin() -> TwinRuntime:
    """The running twin. Raises RuntimeError if the patches were applied without one."""
    if _TWIN is None:
        raise RuntimeError("sagepipe twin patches are applied but no twin is running")
    return _TWIN


def _require(obj: Any, attr: str, params: list[str] | None = None) -> Any:
    """Return ``obj.attr`` after checking it exists (and has ``params`` as its first parameters)."""
    where = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', getattr(obj, '__name__', obj))}.{attr}"
    if not hasattr(obj, attr):
        raise MotoInternalsChanged(f"moto internal {where} is gone; the twin patch for it must be redone")
    value = getattr(obj, attr)
    if params is not None:
        got = list(inspect.signature(value).parameters)[: len(params)]
        if got != params:
            raise MotoInternalsChanged(f"moto internal {where} now takes {got}, the twin patch expects {params}")
    return value


def _site(owner: Any, attr: str) -> str:
    """``module:attr`` for a module owner, ``module:Class.attr`` for a class."""
    if inspect.ismodule(owner):
        return f"{owner.__name__}:{attr}"
    return f"{owner.__module__}:{owner.__qualname__}.{attr}"


def _install(patch: str, owner: Any, attr: str, replacement: Callable[..., Any], *, static: bool = False) -> None:
    """``setattr(owner, attr, replacement)``, the replacement marked as ``patch``'s and the site recorded."""
    setattr(replacement, PATCH_MARK, patch)
    setattr(owner, attr, staticmethod(replacement) if static else replacement)
    _INSTALLED.setdefault(patch, set()).add(_site(owner, attr))


def patched_by(value: Any) -> str | None:
    """The name of the twin patch that installed ``value``, or None for moto's own code."""
    mark = getattr(value, PATCH_MARK, None)
    return mark if isinstance(mark, str) else None


def _resolve(site: str) -> Any:
    module_name, _, path = site.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in path.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise MotoInternalsChanged(
            f"moto internal {site} is gone ({exc}); the twin patch for it must be redone"
        ) from exc
    return obj


@dataclass(frozen=True)
class Patch:
    """A named patch: ``check()`` verifies moto's internals, ``apply()`` installs it (idempotent).

    ``sites`` are the ``module:attr`` / ``module:Class.attr`` paths of every attribute ``apply()``
    replaces (or adds, where moto lacks the operation).
    """

    name: str
    sites: tuple[str, ...]
    check: Callable[[], None]
    apply: Callable[[], None]

    def missing(self) -> list[str]:
        """The sites that do not hold this patch's replacement now (all of them before :func:`apply_all`).

        Raises:
            MotoInternalsChanged: a site's module or owner is gone.
        """
        return [site for site in self.sites if patched_by(_resolve(site)) != self.name]

    def installed(self) -> set[str]:
        """The sites this patch's ``apply()`` has replaced in this process."""
        return set(_INSTALLED.get(self.name, ()))


# ---------------------------------------------------------------------------------------- 1 jsonata
def _jsonata_module() -> Any:
    import moto.stepfunctions.parser.asl.jsonata.jsonata as mod

    return mod


def _check_jsonata() -> None:
    mod = _jsonata_module()
    _require(mod, "_eval_jsonata")
    _require(mod, "eval_jsonata_expression", ["jsonata_expression"])
    _require(mod, "JSONataException", ["error", "details"])
    import jsonata  # noqa: F401  (jsonata-python)


def _apply_jsonata() -> None:
    import jsonata

    mod = _jsonata_module()

    def evaluate(expression: str) -> Any:
        try:
            result = jsonata.Jsonata(expression).evaluate(None)
        except Exception as exc:  # noqa: BLE001 - surfaced as States.QueryEvaluationError by moto
            raise mod.JSONataException("UNKNOWN", str(exc)) from exc
        return None if result is None else json.loads(json.dumps(result))

    _install("jsonata", mod, "_eval_jsonata", evaluate)


# ----------------------------------------------------------------------------------- 2 sfn sagemaker
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


def _apply_sfn_sagemaker() -> None:
    from .stepfunctions.sagemaker import StateTaskServiceSageMaker

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
    from botocore.exceptions import ClientError

    from .stepfunctions.sagemaker import java_style_cause, sdk_error_name

    cls = _aws_sdk_module().StateTaskServiceAwsSdk
    original = _APPLIED.setdefault("sdk_error_names.original", cls._from_error)

    def _from_error(self: Any, env: Any, ex: Exception) -> Any:
        if not isinstance(ex, ClientError):
            return original(self, env, ex)
        service = self._get_boto_service_name()
        error = sdk_error_name(service, ex)
        return self._get_task_failure_event(env=env, error=error, cause=java_style_cause(ex, error.split(".")[0]))

    _install("sdk_error_names", cls, "_from_error", _from_error)


# ------------------------------------------------------------------------------------ 3 lambda invoke
def _check_lambda() -> None:
    from moto.awslambda.models import LambdaFunction

    _require(LambdaFunction, "_invoke_lambda", ["self", "event"])
    _require(LambdaFunction, "invoke", ["self", "body", "request_headers", "response_headers"])


def _apply_lambda() -> None:
    from moto.awslambda.models import LambdaFunction

    def _invoke_lambda(self: Any, event: Any = None) -> tuple[str, bool, str]:
        return twin().invoke_lambda(self, event)

    _install("lambda_invoke", LambdaFunction, "_invoke_lambda", _invoke_lambda)


# ------------------------------------------------------------------------------------- 4 sagemaker
_TRAINING_FIELDS = (
    "TrainingJobName",
    "HyperParameters",
    "AlgorithmSpecification",
    "RoleArn",
    "InputDataConfig",
    "OutputDataConfig",
    "ResourceConfig",
    "StoppingCondition",
    "Environment",
    "Tags",
)


def _check_sagemaker() -> None:
    from moto.sagemaker import exceptions
    from moto.sagemaker.models import FakeEndpoint, FakeTrainingJob, SageMakerModelBackend
    from moto.sagemaker.responses import SageMakerResponse

    for name in (
        "create_training_job",
        "describe_training_job",
        "create_endpoint",
        "delete_endpoint",
        "create_endpoint_config",
        "create_model",
        "create_hyper_parameter_tuning_job",
        "describe_hyper_parameter_tuning_job",
    ):
        _require(SageMakerResponse, name, ["self"])
    if (
        hasattr(SageMakerResponse, "update_endpoint")
        and patched_by(SageMakerResponse.update_endpoint) != "sagemaker_api"
    ):
        raise MotoInternalsChanged("moto now implements UpdateEndpoint; re-check the twin's blue/green emulation")
    _require(SageMakerResponse, "sagemaker_backend")
    _require(SageMakerResponse, "_get_param", ["self", "param_name"])
    for name in ("training_jobs", "endpoints", "endpoint_configs", "_models", "hyper_parameter_tuning_jobs"):
        if name not in inspect.getsource(SageMakerModelBackend.__init__):
            raise MotoInternalsChanged(f"SageMakerModelBackend no longer keeps {name!r}")
    for cls, attrs in (
        (
            FakeTrainingJob,
            (
                "training_job_status",
                "secondary_status",
                "final_metric_data_list",
                "model_artifacts",
                "algorithm_specification",
            ),
        ),
        (FakeEndpoint, ("endpoint_status", "endpoint_config_name", "failure_reason", "production_variants")),
    ):
        source = inspect.getsource(cls.__init__)
        for attr in attrs:
            if f"self.{attr}" not in source:
                raise MotoInternalsChanged(f"{cls.__name__} no longer sets {attr}")
    _require(FakeEndpoint, "_process_production_variants", ["self", "production_variants"])
    _require(exceptions, "ValidationError", ["message"])
    _require(exceptions, "ResourceInUseException", ["message"])


def _validate_name(kind: str, name: str | None) -> None:
    from moto.sagemaker.exceptions import ValidationError

    if not name or not SAGEMAKER_NAME_RE.match(name):
        raise ValidationError(
            message=(
                f"1 validation error detected: Value '{name}' at '{kind}' failed to satisfy "
                "constraint: Member must satisfy regular expression pattern: "
                "^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"
            )
        )


# The SageMakerResponse methods the twin wraps (originals kept in _APPLIED) or adds (stop_training_job,
# update_endpoint: moto has neither). Each replacement takes the moto response object as ``self``.
_SAGEMAKER_WRAPPED = (
    "create_training_job",
    "create_endpoint",
    "delete_endpoint",
    "create_endpoint_config",
    "create_model",
    "create_hyper_parameter_tuning_job",
)


def _sm_original(name: str) -> Callable[[Any], Any]:
    original: Callable[[Any], Any] = _APPLIED["sagemaker.original"][name]
    return original


def _sm_create_training_job(self: Any) -> Any:
    from moto.sagemaker.exceptions import ResourceInUseException

    request = copy.deepcopy({k: self._get_param(k) for k in _TRAINING_FIELDS if self._get_param(k) is not None})
    name = request.get("TrainingJobName")
    _validate_name("trainingJobName", name)
    if name in self.sagemaker_backend.training_jobs:
        raise ResourceInUseException(
            message=f"Training job names must be unique within an AWS account and region, and a training job with this name already exists ({self.sagemaker_backend.training_jobs[name].arn})"
        )
    _check_image_pull(request.get("RoleArn"), (request.get("AlgorithmSpecification") or {}).get("TrainingImage"))
    result = _sm_original("create_training_job")(self)
    twin().training.start(self.sagemaker_backend.training_jobs[name], request)
    return result


def _check_image_pull(role_arn: str | None, image: str | None) -> None:
    """SageMaker pulls the image with the execution role; the twin pulls nothing but checks the role may
    (``iam.image_pull_checks``) and answers as SageMaker does when it may not (ValidationException)."""
    from moto.sagemaker.exceptions import ValidationError

    from . import iam

    checks = iam.image_pull_checks(image or "")
    if role_arn and checks and iam.denial(role_arn, checks):
        m = iam._IMAGE.match(image or "")
        assert m is not None  # checks are only made for a matching URI
        raise ValidationError(
            message=f"Access denied for repository: {m['repository']} in registry ID: {m['account']}. "
            "Please check if your ECR image exists and has proper pull permissions for SageMaker."
        )


def _sm_create_hyper_parameter_tuning_job(self: Any) -> Any:
    from moto.sagemaker.exceptions import ResourceInUseException, ValidationError

    name = self._get_param("HyperParameterTuningJobName")
    if not name or not re.match(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,31}$", name):
        raise ValidationError(
            message=f"1 validation error detected: Value '{name}' at 'hyperParameterTuningJobName' "
            "failed to satisfy constraint: Member must have length less than or equal to 32"
        )
    if name in self.sagemaker_backend.hyper_parameter_tuning_jobs:
        raise ResourceInUseException(message=f"Hyperparameter tuning job {name} already exists")
    request = copy.deepcopy(
        {
            k: self._get_param(k)
            for k in ("HyperParameterTuningJobName", "HyperParameterTuningJobConfig", "TrainingJobDefinition")
        }
    )
    result = _sm_original("create_hyper_parameter_tuning_job")(self)
    twin().tuning.start(self.sagemaker_backend.hyper_parameter_tuning_jobs[name], request)
    return result


def _sm_stop_training_job(self: Any) -> Any:
    from moto.core.responses import EmptyResult
    from moto.sagemaker.exceptions import ValidationError

    name = self._get_param("TrainingJobName")
    job = self.sagemaker_backend.training_jobs.get(name)
    if job is None:
        raise ValidationError(message=f"Requested resource not found: training job {name}")
    if job.training_job_status != "InProgress":
        raise ValidationError(
            message=f"The request was rejected because the training job is in status {job.training_job_status}."
        )
    job.training_job_status = "Stopping"
    twin().training.stop(name)
    return EmptyResult()


def _sm_create_model(self: Any) -> Any:
    from moto.sagemaker.exceptions import ValidationError

    name = self._get_param("ModelName")
    _validate_name("modelName", name)
    if name in self.sagemaker_backend._models:
        raise ValidationError(
            message=f'Cannot create already existing model "{self.sagemaker_backend._models[name].arn}".'
        )
    _check_image_pull(self._get_param("ExecutionRoleArn"), (self._get_param("PrimaryContainer") or {}).get("Image"))
    return _sm_original("create_model")(self)


def _sm_create_endpoint_config(self: Any) -> Any:
    from moto.sagemaker.exceptions import ValidationError

    name = self._get_param("EndpointConfigName")
    _validate_name("endpointConfigName", name)
    if name in self.sagemaker_backend.endpoint_configs:
        raise ValidationError(
            message=f'Cannot create already existing endpoint configuration "{self.sagemaker_backend.endpoint_configs[name].arn}".'
        )
    return _sm_original("create_endpoint_config")(self)


def _model_for(backend: Any, config_name: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    config = backend.describe_endpoint_config(config_name)
    variants = config["ProductionVariants"]
    model = backend.describe_model(variants[0]["ModelName"])  # a moto Model object
    return variants, {"PrimaryContainer": model.primary_container, "ExecutionRoleArn": model.execution_role_arn}


def _sm_create_endpoint(self: Any) -> Any:
    from moto.sagemaker.exceptions import ValidationError

    name, config_name = self._get_param("EndpointName"), self._get_param("EndpointConfigName")
    _validate_name("endpointName", name)
    if name in self.sagemaker_backend.endpoints:
        raise ValidationError(
            message=f'Cannot create already existing endpoint "{self.sagemaker_backend.endpoints[name].arn}".'
        )
    result = _sm_original("create_endpoint")(self)
    endpoint = self.sagemaker_backend.endpoints[name]
    if not endpoint.data_capture_config:
        # AWS leaves DataCaptureConfig out of DescribeEndpoint when the config has none; moto answers {},
        # which clients that parse the response strictly (the sagemaker SDK's Endpoint.get) reject
        endpoint.data_capture_config = None
    _, model = _model_for(self.sagemaker_backend, config_name)
    twin().hosting.create(self.sagemaker_backend.endpoints[name], model)
    return result


def _sm_update_endpoint(self: Any) -> Any:
    from moto.core.responses import ActionResult
    from moto.sagemaker.exceptions import ValidationError

    name, config_name = self._get_param("EndpointName"), self._get_param("EndpointConfigName")
    endpoint = self.sagemaker_backend.endpoints.get(name)
    if endpoint is None:
        raise ValidationError(message=f'Could not find endpoint "{name}".')
    if endpoint.endpoint_status != "InService":
        raise ValidationError(message=f'Cannot update in-progress endpoint "{endpoint.arn}".')
    if config_name not in self.sagemaker_backend.endpoint_configs:
        raise ValidationError(message=f'Could not find endpoint configuration "{config_name}".')
    variants, model = _model_for(self.sagemaker_backend, config_name)
    _check_rollback_alarms(self, model["ExecutionRoleArn"])
    twin().hosting.update(endpoint, config_name, variants, model, endpoint._process_production_variants)
    return ActionResult({"EndpointArn": endpoint.arn})


def _check_rollback_alarms(response: Any, role_arn: str) -> None:
    """Auto-rollback: SageMaker reads the ``AutoRollbackConfiguration`` alarms with the execution role
    ("Auto-Rollback Configuration and Monitoring"); the twin checks it may (it does not evaluate alarms)
    and refuses the update with a ValidationException when it may not (the twin's choice of answer)."""
    from moto.sagemaker.exceptions import ValidationError

    from . import iam

    config = response._get_param("DeploymentConfig") or {}
    alarms = [a["AlarmName"] for a in (config.get("AutoRollbackConfiguration") or {}).get("Alarms", [])]
    checks = [
        iam.Check("cloudwatch:DescribeAlarms", arn) for arn in iam._alarm_arns({"AlarmNames": alarms}, response.region)
    ]
    message = iam.denial(role_arn, checks) if alarms else None
    if message:
        raise ValidationError(message=f"Cannot read the auto-rollback alarms with the execution role: {message}")


def _sm_delete_endpoint(self: Any) -> Any:
    name = self._get_param("EndpointName")
    result = _sm_original("delete_endpoint")(self)
    twin().hosting.delete(name)
    return result


_SAGEMAKER_METHODS: dict[str, Callable[[Any], Any]] = {
    "create_training_job": _sm_create_training_job,
    "stop_training_job": _sm_stop_training_job,
    "create_hyper_parameter_tuning_job": _sm_create_hyper_parameter_tuning_job,
    "create_model": _sm_create_model,
    "create_endpoint_config": _sm_create_endpoint_config,
    "create_endpoint": _sm_create_endpoint,
    "update_endpoint": _sm_update_endpoint,
    "delete_endpoint": _sm_delete_endpoint,
}


def _apply_sagemaker() -> None:
    from moto.sagemaker.responses import SageMakerResponse

    _APPLIED.setdefault("sagemaker.original", {n: getattr(SageMakerResponse, n) for n in _SAGEMAKER_WRAPPED})
    for attr, replacement in _SAGEMAKER_METHODS.items():
        _install("sagemaker_api", SageMakerResponse, attr, replacement)


# ---------------------------------------------------------------------------------- 5 runtime
def _check_runtime() -> None:
    from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

    _require(SageMakerRuntimeResponse, "invoke_endpoint", ["self"])
    _require(SageMakerRuntimeResponse, "_get_params", ["self"])


def _runtime_error(status: int, code: str, message: str, **extra: Any) -> tuple[int, dict[str, str], str]:
    # moto takes the HTTP status from the "status" header of a tuple response
    headers = {"status": str(status), "x-amzn-ErrorType": code, "Content-Type": "application/json"}
    return status, headers, json.dumps({"message": message, **extra})


def _apply_runtime() -> None:
    from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

    from .sagemaker.hosting import InvokeFailure

    def invoke_endpoint(self: Any) -> Any:
        name = self.path.rstrip("/").split("/")[-2]
        from moto.sagemaker.models import sagemaker_backends

        backend = sagemaker_backends[self.current_account][self.region]
        body = self.body if isinstance(self.body, bytes) else (self.body or "").encode()
        if len(body) > MAX_INVOKE_PAYLOAD:
            return _runtime_error(
                400,
                "ValidationError",
                f"Request payload of {len(body)} bytes exceeds the InvokeEndpoint limit of {MAX_INVOKE_PAYLOAD} bytes.",
            )
        if name not in backend.endpoints:
            return _runtime_error(
                400, "ValidationError", f"Endpoint {name} of account {self.current_account} not found."
            )
        try:
            status, data, ctype = twin().hosting.invoke(
                name, body, self.headers.get("Content-Type"), self.headers.get("Accept")
            )
        except InvokeFailure as exc:
            extra = {}
            if exc.original_status is not None:
                extra = {
                    "OriginalStatusCode": exc.original_status,
                    "OriginalMessage": exc.original_message or "",
                    "LogStreamArn": f"arn:aws:logs:{self.region}:{self.current_account}:log-group:/aws/sagemaker/Endpoints/{name}",
                }
            return _runtime_error(exc.status, exc.code, exc.message, **extra)
        endpoint = backend.endpoints[name]
        variant = (endpoint.production_variants or [{}])[0].get("VariantName", "AllTraffic")
        return status, {"Content-Type": ctype, "x-Amzn-Invoked-Production-Variant": variant}, data

    _install("sagemaker_runtime", SageMakerRuntimeResponse, "invoke_endpoint", invoke_endpoint)


# --------------------------------------------------------------------------------- 6 events targets
def _check_events() -> None:
    from moto.events.models import Rule

    _require(Rule, "send_to_targets", ["self", "original_event", "transform_input"])
    from moto.events.models import EventPattern

    _require(EventPattern, "load", ["raw_pattern"])
    _require(EventPattern, "matches_event", ["self", "event"])


def _apply_events() -> None:
    from moto.events.models import Rule
    from moto.events.utils import EventTemplateParser

    original = _APPLIED.setdefault("events.original", Rule.send_to_targets)

    def send_to_targets(self: Any, original_event: EventMessageType, transform_input: bool = True) -> None:
        if not self.event_pattern.matches_event(original_event):
            return
        if getattr(self, "state", "ENABLED") != "ENABLED":
            return
        for target in list(self.targets):
            service = target["Arn"].split(":")[2]
            try:
                event: Any = original_event
                if transform_input and (
                    target.get("Input") or target.get("InputPath") or target.get("InputTransformer")
                ):
                    if target.get("Input"):
                        event = json.loads(target["Input"])
                    elif target.get("InputTransformer"):
                        tr = target["InputTransformer"]
                        event = EventTemplateParser.parse(
                            input_template=tr.get("InputTemplate"),
                            input_paths_map=tr.get("InputPathsMap", {}),
                            event=original_event,
                        )
                if service in {"lambda", "states"}:
                    twin().deliver(self, target, event)
                else:
                    only = copy.copy(self)
                    # CloudFormation's LogGroup Arn ends in ":*"; EventBridge accepts it, moto does not
                    only.targets = [{**target, "Arn": target["Arn"].removesuffix(":*")}]
                    original(only, copy.deepcopy(original_event), transform_input)
            except Exception as exc:  # noqa: BLE001 - one failing target must not stop the others
                twin().log("events", f"delivery of rule {self.name} to {target['Arn']} failed: {exc!r}")

    _install("events_targets", Rule, "send_to_targets", send_to_targets)


# -------------------------------------------------------------------------------- 7 s3 -> eventbridge
def _check_s3_eventbridge() -> None:
    import moto.s3.notifications as notifications

    _require(notifications, "_send_event_bridge_message", ["account_id", "bucket", "event_name", "key"])
    if "_send_event_bridge_message(" not in inspect.getsource(notifications.send_event):
        raise MotoInternalsChanged("moto.s3.notifications.send_event no longer calls _send_event_bridge_message")


def _apply_s3_eventbridge() -> None:
    import moto.s3.notifications as notifications

    def _send_event_bridge_message(account_id: str, bucket: Any, event_name: str, key: Any) -> None:
        from moto.events.models import events_backends

        detail_type = notifications._detail_type(event_name)
        event: EventMessageType = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": detail_type,
            "source": "aws.s3",
            "account": account_id,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": bucket.region_name,
            "resources": [bucket.arn],
            "detail": {
                "version": "0",
                "bucket": {"name": bucket.name},
                "object": {
                    "key": quote_plus(key.name, safe="/"),
                    "size": key.size,
                    "etag": key.etag.replace('"', ""),
                    **({"version-id": key.version_id} if key.version_id and key.version_id != "null" else {}),
                    "sequencer": uuid.uuid4().hex[:18].upper(),
                },
                "request-id": uuid.uuid4().hex[:16].upper(),
                "requester": account_id,
                "source-ip-address": "127.0.0.1",
                "reason": event_name.split(":")[-1],
            },
        }
        backend = events_backends[account_id][bucket.region_name]
        bus = backend.event_buses.get("default")
        for rule in list(bus.rules.values()) if bus else []:
            try:
                rule.send_to_targets(event, transform_input=True)
            except Exception as exc:  # noqa: BLE001 - as on AWS, the PutObject itself succeeds
                twin().log("events", f"S3 event delivery via rule {rule.name} failed: {exc!r}")

    _install("s3_eventbridge", notifications, "_send_event_bridge_message", _send_event_bridge_message)


# ---------------------------------------------------------------------------------- 8 asl parse lock
_PARSE_LOCK = threading.Lock()


def _check_asl_parse() -> None:
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
    from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor

    _require(AmazonStateLanguageParser, "parse", ["definition"])
    if not isinstance(Preprocessor.__dict__.get("_query_language_per_scope"), list):
        raise MotoInternalsChanged(
            "moto's ASL Preprocessor no longer shares a class-level scope stack; the twin's parse lock may be dropped"
        )


def _apply_asl_parse() -> None:
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    original = _APPLIED.setdefault("asl_parse.original", AmazonStateLanguageParser.parse)

    def parse(definition: str) -> Any:
        with _PARSE_LOCK:
            return original(definition)

    _install("asl_parse_lock", AmazonStateLanguageParser, "parse", parse, static=True)


# ------------------------------------------------------------------------------------ 9 iam enforce
def _check_iam() -> None:
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.core.responses import BaseResponse

    _require(BaseResponse, "call_action", ["self"])
    dispatch = _APPLIED.get("iam.dispatch") or _require(
        BaseResponse, "_dispatch", ["self", "request", "full_url", "headers"]
    )
    source = inspect.getsource(dispatch)
    if "self.setup_class(request, full_url, headers)" not in source or "return self.call_action()" not in source:
        raise MotoInternalsChanged("BaseResponse._dispatch no longer is setup_class + call_action")
    _require(BaseResponse, "serialized", ["self", "action_result"])
    _require(BaseResponse, "_enrich_response", ["headers", "body"])
    _require(BaseResponse, "_get_action", ["self"])
    _require(ActionAuthenticatorMixin, "_authenticate_and_authorize_s3_action", ["self", "bucket_name", "key_name"])
    if "self.params" not in inspect.getsource(BaseResponse.parse_parameters):
        raise MotoInternalsChanged("BaseResponse.parse_parameters no longer sets self.params")
    from moto.s3.responses import ACTION_MAP

    if "BUCKET" not in ACTION_MAP:
        raise MotoInternalsChanged("moto.s3.responses.ACTION_MAP no longer maps bucket requests")


def _request_params(response: Any) -> dict[str, Any]:
    """The request's members (botocore names): moto's parsed ``params`` or the JSON body, plus the URI's."""
    params: Any = getattr(response, "params", None) if response.automated_parameter_parsing else None
    if params is None:
        body = response.body
        try:
            params = json.loads(body) if body else {}
        except (ValueError, TypeError):
            params = {}
    return {**(params if isinstance(params, dict) else {}), **(getattr(response, "uri_match", None) or {})}


def _missing_object(response: Any, bucket: str | None, key: str | None, checks: list[Any]) -> bool:
    """A plain GetObject/HeadObject (no version, no subresource) of a key the bucket does not hold."""
    if not bucket or not key or [c.action for c in checks] != ["s3:GetObject"]:
        return False
    from moto.s3.models import FakeKey, s3_backends

    try:
        keys = s3_backends[response.current_account]["aws"].get_bucket(bucket).keys
    except Exception:  # noqa: BLE001 - no such bucket: S3 answers NoSuchBucket whatever the grants
        return False
    return not isinstance(keys.get(key), FakeKey)  # absent, or its current version is a delete marker


def _access_denied(response: Any, code: str, message: str, status: int) -> Any:
    """The service's error response, in its protocol (JSON, CBOR or query XML), for ``code`` with HTTP
    ``status``. The code is AWS's authorisation layer's, not in the service models: moto warns, said here."""
    import warnings

    from moto.core.exceptions import ServiceException
    from moto.core.responses import ActionResult

    class AccessDeniedError(ServiceException):
        """Defined outside moto's packages: moto then looks the code up in the calling service's model."""

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Exception.AccessDeniedError. with code", UserWarning)
        _, headers, body = response.serialized(ActionResult(AccessDeniedError(code, message)))
    headers["status"] = str(status)
    headers, body = response._enrich_response(headers, body)  # x-amzn-RequestId, as every AWS response has
    return status, headers, body


def _iam_refusal(response: Any) -> Any:
    """The AccessDenied response for a request signed as a template role that its policies do not allow,
    or None (allowed, or not signed as a role)."""
    from . import iam

    authorization = response.headers.get("Authorization")
    role = iam.role_for_access_key(iam.access_key_of(authorization))
    if role is None:
        return None
    signing = authorization.split("Credential=", 1)[1].split(",", 1)[0].split("/")[3]
    action = iam.action_for(signing, response._get_action())
    # AccessDeniedException: the code of AWS's JSON services; CloudWatch (query heritage) says AccessDenied
    code = "AccessDenied" if signing in {"monitoring", "sns", "iam", "sts"} else "AccessDeniedException"
    status = 403 if signing in {"lambda", "monitoring", "sns", "iam", "sts"} else 400
    try:
        iam.authorize(role, iam.checks_for(action, _request_params(response), response.region))
    except iam.AccessDenied as denied:
        return _access_denied(response, code, denied.message, status)
    except iam.UnmappedOperation:
        message = (
            f"{role} called {action}, which the twin's IAM cannot authorise "
            "(no resource mapping in sagepipe/twin/iam.py RESOURCES): denied"
        )
        return _access_denied(response, code, message, status)
    return None


def _apply_iam() -> None:
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.core.responses import BaseResponse
    from moto.s3.exceptions import S3AccessDeniedError

    from . import iam

    _APPLIED.setdefault("iam.dispatch", BaseResponse._dispatch)
    original_s3 = _APPLIED.setdefault("iam.s3", ActionAuthenticatorMixin._authenticate_and_authorize_s3_action)

    def _dispatch(self: Any, request: Any, full_url: str | None = None, headers: Any = None) -> Any:
        # moto's _dispatch, with the authorisation between parsing the request and acting on it
        self.setup_class(request, full_url, headers)
        return _iam_refusal(self) or self.call_action()

    def authorize_s3(self: Any, bucket_name: str | None = None, key_name: str | None = None) -> None:
        role = iam.role_for_access_key(iam.access_key_of(self.headers.get("Authorization")))
        if role is None:
            original_s3(self, bucket_name=bucket_name, key_name=key_name)
            return None
        checks = iam.s3_checks(self.method, bucket_name or "*", key_name, self.querystring, dict(self.headers))
        if _missing_object(self, bucket_name, key_name, checks):
            # S3 says 404 NoSuchKey for a missing key only to who may list the bucket, else 403 (S3 API
            # Reference, GetObject / HeadObject "Permissions")
            checks = [*checks, iam.Check("s3:ListBucket", f"arn:aws:s3:::{bucket_name}")]
        try:
            iam.authorize(role, checks)
        except iam.AccessDenied as denied:
            twin().log("iam", denied.message)
            raise S3AccessDeniedError() from denied  # S3: 403 AccessDenied "Access Denied", as AWS says it
        return None

    _install("iam_enforce", BaseResponse, "_dispatch", _dispatch)
    _install("iam_enforce", ActionAuthenticatorMixin, "_authenticate_and_authorize_s3_action", authorize_s3)


# --------------------------------------------------------------------------------- 10 sfn credentials
_BOTO_CLIENT_MODULE = "moto.stepfunctions.parser.asl.utils.boto_client"


#: Every module that holds moto's ``boto_client_for`` by name (``from ... import boto_client_for``).
_SFN_CLIENT_MODULES = (
    _BOTO_CLIENT_MODULE,
    "moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.resource_eval.resource_eval_s3",
    "moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.eval.resource_eval_s3",
    *(
        f"moto.stepfunctions.parser.asl.component.state.exec.state_task.{m}"
        for m in (
            "lambda_eval_utils",
            "service.state_task_service_unsupported",
            "service.state_task_service_glue",
            "service.state_task_service_events",
            "service.state_task_service_ecs",
            "service.state_task_service_sqs",
            "service.state_task_service_sfn",
            "service.state_task_service_dynamodb",
            "service.state_task_service_batch",
            "service.state_task_service_sns",
            "service.state_task_service_aws_sdk",
        )
    ),
    "sagepipe.twin.stepfunctions.sagemaker",
)


def _check_sfn_credentials() -> None:
    mod = importlib.import_module(_BOTO_CLIENT_MODULE)
    _require(mod, "boto_client_for", ["region", "service", "state_credentials"])
    if 'aws_access_key_id="ak"' not in inspect.getsource(_APPLIED.get("sfn_credentials.original", mod.boto_client_for)):
        raise MotoInternalsChanged("moto's boto_client_for no longer signs with a fixed key; re-check sfn_credentials")
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import state_task

    if "env.aws_execution_details.role_arn" not in inspect.getsource(state_task.StateTask._eval_state_credentials):
        raise MotoInternalsChanged("StateTask no longer passes the execution's role as its credentials")
    for name in _SFN_CLIENT_MODULES[1:]:
        module = importlib.import_module(name)
        if getattr(module, "boto_client_for", None) not in (mod.boto_client_for, _APPLIED.get("sfn_credentials.new")):
            raise MotoInternalsChanged(f"{name} no longer imports boto_client_for by name")


def _apply_sfn_credentials() -> None:
    import boto3
    from botocore.config import Config

    from . import iam

    mod = importlib.import_module(_BOTO_CLIENT_MODULE)
    original = _APPLIED.setdefault("sfn_credentials.original", mod.boto_client_for)
    source = inspect.getsource(original)
    if "parameter_validation=False" not in source:  # keep moto's client settings otherwise
        raise MotoInternalsChanged("moto's boto_client_for changed its client config; re-check sfn_credentials")

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        role = getattr(state_credentials, "role_arn", None)
        if not role or mod.botocore_stubber.enabled:  # in-process mock_aws: nothing is signed
            return original(region=region, service=service, state_credentials=state_credentials)
        return boto3.client(  # type: ignore[call-overload]  # types-boto3 overloads Literal names only
            service_name=service,
            region_name=region,
            endpoint_url=f"http://localhost:{mod.moto_server_port()}",
            config=Config(  # moto's settings, as its boto_client_for has them
                parameter_validation=False,
                retries={"max_attempts": 0, "total_max_attempts": 1},
                connect_timeout=mod.TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS,
                read_timeout=mod.TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS,
            ),
            **iam.credentials_for(role),
        )

    _APPLIED["sfn_credentials.new"] = boto_client_for
    for name in _SFN_CLIENT_MODULES:
        _install("sfn_credentials", importlib.import_module(name), "boto_client_for", boto_client_for)


_SFN_TASK = "moto.stepfunctions.parser.asl.component.state.exec.state_task"
PATCHES: tuple[Patch, ...] = (
    Patch("jsonata", ("moto.stepfunctions.parser.asl.jsonata.jsonata:_eval_jsonata",), _check_jsonata, _apply_jsonata),
    Patch(
        "sfn_sagemaker",
        (
            f"{_SFN_TASK}.service.state_task_service_factory:state_task_service_for",
            f"{_SFN_TASK}.state_task_factory:state_task_service_for",
        ),
        _check_sfn_sagemaker,
        _apply_sfn_sagemaker,
    ),
    Patch("lambda_invoke", ("moto.awslambda.models:LambdaFunction._invoke_lambda",), _check_lambda, _apply_lambda),
    Patch(
        "sagemaker_api",
        tuple(f"moto.sagemaker.responses:SageMakerResponse.{name}" for name in _SAGEMAKER_METHODS),
        _check_sagemaker,
        _apply_sagemaker,
    ),
    Patch(
        "sagemaker_runtime",
        ("moto.sagemakerruntime.responses:SageMakerRuntimeResponse.invoke_endpoint",),
        _check_runtime,
        _apply_runtime,
    ),
    Patch("events_targets", ("moto.events.models:Rule.send_to_targets",), _check_events, _apply_events),
    Patch(
        "s3_eventbridge",
        ("moto.s3.notifications:_send_event_bridge_message",),
        _check_s3_eventbridge,
        _apply_s3_eventbridge,
    ),
    Patch(
        "asl_parse_lock",
        ("moto.stepfunctions.parser.asl.parse.asl_parser:AmazonStateLanguageParser.parse",),
        _check_asl_parse,
        _apply_asl_parse,
    ),
    Patch("sfn_status_events", sfn_events.SITES, lambda: sfn_events.check(), lambda: sfn_events.apply()),
    Patch(
        "sdk_error_names",
        (_SDK_FROM_ERROR,),
        _check_sdk_error_names,
        _apply_sdk_error_names,
    ),
    Patch(
        "server_validation",
        validation.SERVER_SITES,
        lambda: validation.check_server_sites(),
        lambda: validation.apply_server_check(),
    ),
    Patch(
        "iam_enforce",
        (
            "moto.core.responses:BaseResponse._dispatch",
            "moto.core.authorization:ActionAuthenticatorMixin._authenticate_and_authorize_s3_action",
        ),
        _check_iam,
        _apply_iam,
    ),
    Patch(
        "sfn_credentials",
        tuple(f"{m}:boto_client_for" for m in _SFN_CLIENT_MODULES),
        _check_sfn_credentials,
        _apply_sfn_credentials,
    ),
)


def apply_all(runtime: TwinRuntime) -> None:
    """Check then apply every patch, and route callbacks to ``runtime``. Raises MotoInternalsChanged."""
    global _TWIN
    with _LOCK:
        for patch in PATCHES:
            patch.check()
        _TWIN = runtime
        if not _APPLIED.get("done"):
            for patch in PATCHES:
                patch.apply()
            _APPLIED["done"] = True


def release(runtime: TwinRuntime) -> None:
    """Detach ``runtime`` (patches stay installed; calls then raise until another twin attaches)."""
    global _TWIN
    with _LOCK:
        if _TWIN is runtime:
            _TWIN = None
