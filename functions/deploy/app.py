"""Deploy step: the endpoint's auto-rollback alarms, CreateModel, a new EndpointConfig per version,
then CreateEndpoint or blue/green UpdateEndpoint bound to those alarms. Raises ``EndpointBusyError`` (retried by the ASL) while the endpoint is changing.
Glue only: ``sagepipe_core.steps.deploy_model``.
"""

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from sagepipe_core.steps import Settings, deploy_model

logger = Logger()
tracer = Tracer()
metrics = Metrics()
copy_config_to_registered_loggers(source_logger=logger, include={"sagepipe"})
SETTINGS = Settings.from_env()
SM = boto3.client("sagemaker")
CW = boto3.client("cloudwatch")


@logger.inject_lambda_context(correlation_id_path="execution_name")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """``event``: ``{"names", "config", "training"}`` → ``{"EndpointName", "EndpointConfigName", "action", ...}``."""
    result = deploy_model(event, sm=SM, cw=CW, settings=SETTINGS)
    metrics.add_metric(name=f"Deploy_{result['action']}", unit=MetricUnit.Count, value=1)
    return result
