"""Step Functions' task clients sign as the execution's role (the ``sfn_credentials`` patch, registered in
:mod:`sagepipe.twin.patches`): moto's ``boto_client_for``, imported by name in each integration's
module, signs with a fixed key; the twin's signs as ``StateCredentials.role_arn`` so the twin's IAM
(:mod:`sagepipe.twin.iam`) authorises each integration's call against the state machine's role.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from ..patches import _APPLIED, MotoInternalsChanged, Patch, _install, _require

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

    from .. import iam

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


PATCHES: tuple[Patch, ...] = (
    Patch(
        "sfn_credentials",
        tuple(f"{m}:boto_client_for" for m in _SFN_CLIENT_MODULES),
        _check_sfn_credentials,
        _apply_sfn_credentials,
    ),
)
