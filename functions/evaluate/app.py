"""Evaluate step: the deploy gate. Reads ``evaluation.json`` from the model artifact and the training
job's ``FinalMetricDataList``; fails closed. Glue only: ``sagepipe_core.steps.evaluate_model``.
"""

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from sagepipe_core.steps import evaluate_model

logger = Logger()
tracer = Tracer()
metrics = Metrics()
copy_config_to_registered_loggers(source_logger=logger, include={"sagepipe"})
S3 = boto3.client("s3")
SM = boto3.client("sagemaker")


@logger.inject_lambda_context(correlation_id_path="execution_name")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """``event``: ``{"config", "training": {"TrainingJobName", "ModelArtifacts"}}`` → the decision record."""
    decision = evaluate_model(event, s3=S3, sm=SM)
    metrics.add_metric(name=f"Gate_{decision['decision']}", unit=MetricUnit.Count, value=1)
    return decision
