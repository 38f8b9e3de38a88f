"""Start function: S3 "Object Created" (EventBridge or classic notification), the retrain schedule and
"Retrain Requested" events → one Step Functions StartExecution per data version (deterministic name).

Glue only: the logic is ``sagepipe_core.steps.start_runs``.
"""

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from sagepipe_core.steps import Settings, start_runs

logger = Logger()
tracer = Tracer()
metrics = Metrics()
copy_config_to_registered_loggers(source_logger=logger, include={"sagepipe"})
SETTINGS = Settings.from_env()
SFN = boto3.client("stepfunctions")
S3 = boto3.client("s3")


@logger.inject_lambda_context(correlation_id_path="id", log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Returns ``{"results": [{"status": "started"|"already_started"|"skipped", ...}]}``."""
    results = start_runs(event, sfn=SFN, s3=S3, settings=SETTINGS)
    for result in results:
        metrics.add_metric(name=f"Runs_{result['status']}", unit=MetricUnit.Count, value=1)
    return {"results": results}
