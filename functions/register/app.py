"""RegisterModel step: a model package (metrics, schema, lineage, approval status) in the model's
package group. Glue only: ``sagepipe_core.steps.register_model``.
"""

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from sagepipe_core.steps import Settings, register_model

logger = Logger()
tracer = Tracer()
metrics = Metrics()
copy_config_to_registered_loggers(source_logger=logger, include={"sagepipe"})
SETTINGS = Settings.from_env()
SM = boto3.client("sagemaker")
S3 = boto3.client("s3")


@logger.inject_lambda_context(correlation_id_path="execution_name")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """``event``: ``{"model", "config", "run", "trained", "decision", "execution_name"}`` → the package ARN."""
    registered = register_model(event, sm=SM, s3=S3, settings=SETTINGS)
    metrics.add_metric(name=f"Registered_{registered['approval']}", unit=MetricUnit.Count, value=1)
    return registered
