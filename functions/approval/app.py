"""RequestApproval step (``lambda:invoke.waitForTaskToken``): keeps the task token in the artifacts
bucket and sends "Pipeline Approval Needed". Glue only: ``sagepipe_core.steps.request_approval``.
"""

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from sagepipe_core.steps import Settings, request_approval

logger = Logger()
tracer = Tracer()
metrics = Metrics()
copy_config_to_registered_loggers(source_logger=logger, include={"sagepipe"})
SETTINGS = Settings.from_env()
S3 = boto3.client("s3")
EVENTS = boto3.client("events")


@logger.inject_lambda_context(correlation_id_path="execution_name")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """``event``: ``{"task_token", "model", "execution_name", "registered", "decision"}``."""
    detail = request_approval(event, s3=S3, events=EVENTS, settings=SETTINGS)
    metrics.add_metric(name="ApprovalsRequested", unit=MetricUnit.Count, value=1)
    return detail
