"""DeployModel step: roll the new model version out to the model's endpoint.

The endpoint's auto-rollback alarms, CreateModel, a new EndpointConfig per version, then CreateEndpoint or
blue/green UpdateEndpoint bound to those alarms. Raises ``EndpointBusyError`` (retried by the ASL) while the
endpoint is changing. Glue only: ``sagepipe_core.steps.deploy_model``.
"""

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from sagepipe_core.handler import count, pipeline_handler
from sagepipe_core.records import DeployInput, DeployResult
from sagepipe_core.steps import Settings, deploy_model

SETTINGS = Settings.from_env()
SM = boto3.client("sagemaker")
CW = boto3.client("cloudwatch")


@pipeline_handler(correlation_id_path="execution_name")
def lambda_handler(event: DeployInput, context: LambdaContext) -> DeployResult:
    """``event``: ``{"names", "config", "training"}`` → ``{"EndpointName", "EndpointConfigName", "action", ...}``."""
    result = deploy_model(event, sm=SM, cw=CW, settings=SETTINGS)
    count(f"Deploy_{result['action']}")
    return result
