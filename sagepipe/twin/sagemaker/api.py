"""moto's SageMaker and SageMaker Runtime responses, wired to the twin's training, tuning and hosting (two
patches, registered in :mod:`sagepipe.twin.patches`):

- ``sagemaker_api`` - training jobs run for real (:mod:`.training`), tuning jobs as their training jobs
  (:mod:`.tuning`), endpoints host real model servers (:mod:`.hosting`); StopTrainingJob and
  UpdateEndpoint (absent in moto); SageMaker name rules and duplicate-name errors enforced as AWS does;
- ``sagemaker_runtime`` - InvokeEndpoint reaches the endpoint's model server.
"""

from __future__ import annotations

import copy
import inspect
import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from ..patches import _APPLIED, MotoInternalsChanged, Patch, _install, _require, patched_by, twin

SAGEMAKER_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
MAX_INVOKE_PAYLOAD = 6 * 1024 * 1024
#: InvokeEndpoint limit of a serverless endpoint (SageMaker Developer Guide, "Serverless Inference": 4 MB).
MAX_SERVERLESS_PAYLOAD = 4 * 1024 * 1024


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
    if (
        hasattr(SageMakerResponse, "stop_hyper_parameter_tuning_job")
        and patched_by(SageMakerResponse.stop_hyper_parameter_tuning_job) != "sagemaker_api"
    ):
        raise MotoInternalsChanged("moto now implements StopHyperParameterTuningJob; re-check the twin's")
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
# stop_hyper_parameter_tuning_job, update_endpoint: moto has none of them). Each replacement takes the moto response object as ``self``.
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
    _check_image_pull(
        request.get("RoleArn"), (request.get("AlgorithmSpecification") or {}).get("TrainingImage"), self.region
    )
    result = _sm_original("create_training_job")(self)
    twin().training.start(self.sagemaker_backend.training_jobs[name], request)
    return result


def _check_image_pull(role_arn: str | None, image: str | None, region: str) -> None:
    """SageMaker pulls the image with the execution role; the twin pulls nothing but checks it could.

    - An ECR image (``<account>.dkr.ecr.<region>.<suffix>/<repository>``) of another Region than the
      request's is refused: "the Docker image for inference container in Amazon EC2 Container Registry
      must be in the same region as the model or endpoint you are creating" (SageMaker API Reference,
      ``ContainerDefinition.Image``); SageMaker answers ValidationException ``Region of "<image>" does not
      match expected region of <region>. Cross region ECR image pulls are not allowed.`` (as reported for
      CreateModel, e.g. aws/sagemaker-pytorch-inference-toolkit PR #7). The twin answers the same for
      CreateTrainingJob's ``TrainingImage`` (pulled the same way; AWS's wording there is not documented).
    - The role must be allowed the pull (``iam.image_pull_checks``), else ValidationException as
      SageMaker answers ("Access denied for repository ...").

    Args:
        role_arn: the execution role of the request (None: no IAM check).
        image: the image URI (None or a non-ECR URI: nothing is checked).
        region: the Region the request was sent to.

    Raises:
        moto.sagemaker.exceptions.ValidationError: the image is in another Region, or the role may not pull it.
    """
    from moto.sagemaker.exceptions import ValidationError

    from .. import iam

    m = iam._IMAGE.match(image or "")
    if m and m["region"] != region:
        raise ValidationError(
            message=f'Region of "{image}" does not match expected region of {region}. '
            "Cross region ECR image pulls are not allowed."
        )
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


def _sm_stop_hyper_parameter_tuning_job(self: Any) -> Any:
    """StopHyperParameterTuningJob (moto lacks it): the tuning job goes Stopping, its running training job
    is stopped, no further one starts, then Stopped (SageMaker API Reference)."""
    from moto.core.responses import EmptyResult
    from moto.sagemaker.exceptions import ValidationError

    name = self._get_param("HyperParameterTuningJobName")
    job = self.sagemaker_backend.hyper_parameter_tuning_jobs.get(name)
    if job is None:
        raise ValidationError(message=f"Requested resource not found: hyper-parameter tuning job {name}")
    if job.hyper_parameter_tuning_job_status != "InProgress":
        raise ValidationError(
            message=f"The request was rejected because the tuning job is in status {job.hyper_parameter_tuning_job_status}."
        )
    job.hyper_parameter_tuning_job_status = "Stopping"
    twin().tuning.stop(name)
    return EmptyResult()


def _sm_create_model(self: Any) -> Any:
    from moto.sagemaker.exceptions import ValidationError

    name = self._get_param("ModelName")
    _validate_name("modelName", name)
    if name in self.sagemaker_backend._models:
        raise ValidationError(
            message=f'Cannot create already existing model "{self.sagemaker_backend._models[name].arn}".'
        )
    _check_image_pull(
        self._get_param("ExecutionRoleArn"), (self._get_param("PrimaryContainer") or {}).get("Image"), self.region
    )
    return _sm_original("create_model")(self)


def _sm_create_endpoint_config(self: Any) -> Any:
    from moto.sagemaker.exceptions import ValidationError

    name = self._get_param("EndpointConfigName")
    _validate_name("endpointConfigName", name)
    if name in self.sagemaker_backend.endpoint_configs:
        raise ValidationError(
            message=f'Cannot create already existing endpoint configuration "{self.sagemaker_backend.endpoint_configs[name].arn}".'
        )
    _check_serverless_variants(self._get_param("ProductionVariants") or [], self._get_param("DataCaptureConfig"))
    return _sm_original("create_endpoint_config")(self)


#: ``ServerlessConfig.MemorySizeInMB`` values SageMaker accepts (the service model only bounds 1024-6144).
SERVERLESS_MEMORY_SIZES = (1024, 2048, 3072, 4096, 5120, 6144)


def _check_serverless_variants(variants: list[dict[str, Any]], data_capture: dict[str, Any] | None) -> None:
    """What SageMaker refuses of serverless variants beyond the service model (Developer Guide, "Serverless
    Inference"; the wording is the twin's): memory other than 1-6 GB in 1 GB steps, a variant with both
    ``ServerlessConfig`` and an instance type or count, and a ``DataCaptureConfig`` (not supported)."""
    from moto.sagemaker.exceptions import ValidationError

    for i, variant in enumerate(variants, start=1):
        serverless = variant.get("ServerlessConfig")
        if not serverless:
            continue
        memory = serverless.get("MemorySizeInMB")
        if memory not in SERVERLESS_MEMORY_SIZES:
            raise ValidationError(
                message=f"Value '{memory}' at 'productionVariants.{i}.member.serverlessConfig.memorySizeInMB'"
                f" failed to satisfy constraint: Member must be one of {list(SERVERLESS_MEMORY_SIZES)}"
            )
        if variant.get("InstanceType") or variant.get("InitialInstanceCount"):
            raise ValidationError(
                message=f"ProductionVariant {variant.get('VariantName')} has both ServerlessConfig and an instance"
                " type or count; specify one"
            )
        if data_capture:
            raise ValidationError(message="DataCaptureConfig is not supported for serverless endpoints.")


def model_for_config(backend: Any, config_name: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``(ProductionVariants, model spec)`` of EndpointConfig ``config_name``: the spec is what
    :class:`~sagepipe.twin.sagemaker.hosting.HostingManager` starts (``PrimaryContainer``,
    ``ExecutionRoleArn``, the variant's ``ContainerStartupHealthCheckTimeoutInSeconds``). Raises moto's
    ValidationError for an unknown config or model."""
    config = backend.describe_endpoint_config(config_name)
    variants = config["ProductionVariants"]
    model = backend.describe_model(variants[0]["ModelName"])  # a moto Model object
    spec = {"PrimaryContainer": model.primary_container, "ExecutionRoleArn": model.execution_role_arn}
    if variants[0].get("InstanceType"):  # serverless variants have none
        spec["InstanceType"] = variants[0]["InstanceType"]
    startup = variants[0].get("ContainerStartupHealthCheckTimeoutInSeconds")
    if startup is not None:
        spec["ContainerStartupHealthCheckTimeoutInSeconds"] = startup
    return variants, spec


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
    _, model = model_for_config(self.sagemaker_backend, config_name)
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
    variants, model = model_for_config(self.sagemaker_backend, config_name)
    current = self.sagemaker_backend.describe_endpoint_config(endpoint.endpoint_config_name)["ProductionVariants"]
    if variants[0].get("ServerlessConfig") and not current[0].get("ServerlessConfig"):
        # Developer Guide, "Update a serverless endpoint": a real-time endpoint cannot become serverless
        raise ValidationError(message="Updating a real-time endpoint to a serverless endpoint is not supported.")
    _check_rollback_alarms(self, model["ExecutionRoleArn"])
    twin().hosting.update(endpoint, config_name, variants, model, endpoint._process_production_variants)
    return ActionResult({"EndpointArn": endpoint.arn})


def _check_rollback_alarms(response: Any, role_arn: str) -> None:
    """Auto-rollback: SageMaker reads the ``AutoRollbackConfiguration`` alarms with the execution role
    ("Auto-Rollback Configuration and Monitoring"); the twin checks it may (it does not evaluate alarms)
    and refuses the update with a ValidationException when it may not (the twin's choice of answer)."""
    from moto.sagemaker.exceptions import ValidationError

    from .. import iam

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
    "stop_hyper_parameter_tuning_job": _sm_stop_hyper_parameter_tuning_job,
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


def _check_runtime() -> None:
    from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

    _require(SageMakerRuntimeResponse, "invoke_endpoint", ["self"])
    _require(SageMakerRuntimeResponse, "_get_params", ["self"])


def endpoint_log(account: str, region: str, endpoint: str, variant: str, message: str) -> str:
    """Write ``message`` to the endpoint's CloudWatch Logs, as its container's log agent does, and return the
    ARN a ModelError names as ``LogStreamArn``: the log group ``/aws/sagemaker/Endpoints/<endpoint>``
    (created if absent) with the stream ``<variant>/<instance-id>`` (SageMaker Developer Guide, "Log Amazon
    SageMaker AI events with Amazon CloudWatch"; the instance id is stable per endpoint and variant)."""
    import hashlib

    from moto.logs.exceptions import ResourceAlreadyExistsException
    from moto.logs.models import logs_backends

    logs = logs_backends[account][region]
    group = f"/aws/sagemaker/Endpoints/{endpoint}"
    stream = f"{variant}/i-{hashlib.sha256(f'{endpoint}/{variant}'.encode()).hexdigest()[:17]}"
    with _ENDPOINT_LOGS_LOCK:
        if group not in logs.groups:
            logs.create_log_group(group, tags={})
        try:
            logs.create_log_stream(group, stream)
        except ResourceAlreadyExistsException:
            pass
        logs.put_log_events(group, stream, [{"timestamp": int(time.time() * 1000), "message": message}])
    return f"arn:aws:logs:{region}:{account}:log-group:{group}"


_ENDPOINT_LOGS_LOCK = threading.Lock()


def _runtime_error(status: int, code: str, message: str, **extra: Any) -> tuple[int, dict[str, str], str]:
    # moto takes the HTTP status from the "status" header of a tuple response
    headers = {"status": str(status), "x-amzn-ErrorType": code, "Content-Type": "application/json"}
    return status, headers, json.dumps({"message": message, **extra})


def _apply_runtime() -> None:
    from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

    from .hosting import InvokeFailure

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
        live_config = backend.describe_endpoint_config(backend.endpoints[name].endpoint_config_name)
        if live_config["ProductionVariants"][0].get("ServerlessConfig") and len(body) > MAX_SERVERLESS_PAYLOAD:
            return _runtime_error(
                400,
                "ValidationError",
                f"Request payload of {len(body)} bytes exceeds the serverless InvokeEndpoint limit of"
                f" {MAX_SERVERLESS_PAYLOAD} bytes.",
            )
        try:
            status, data, ctype = twin().hosting.invoke(
                name,
                body,
                self.headers.get("Content-Type"),
                self.headers.get("Accept"),
                self.headers.get("X-Amzn-SageMaker-Inference-Id"),
            )
        except InvokeFailure as exc:
            extra = {}
            if exc.original_status is not None:
                variant = (backend.endpoints[name].production_variants or [{}])[0].get("VariantName", "AllTraffic")
                extra = {
                    "OriginalStatusCode": exc.original_status,
                    "OriginalMessage": exc.original_message or "",
                    "LogStreamArn": endpoint_log(
                        self.current_account,
                        self.region,
                        name,
                        variant,
                        f"model error {exc.original_status}: {exc.original_message or ''}",
                    ),
                }
            return _runtime_error(exc.status, exc.code, exc.message, **extra)
        endpoint = backend.endpoints[name]
        variant = (endpoint.production_variants or [{}])[0].get("VariantName", "AllTraffic")
        return status, {"Content-Type": ctype, "x-Amzn-Invoked-Production-Variant": variant}, data

    _install("sagemaker_runtime", SageMakerRuntimeResponse, "invoke_endpoint", invoke_endpoint)


PATCHES: tuple[Patch, ...] = (
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
)
