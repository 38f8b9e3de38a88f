"""Drift function: the scheduled input-drift check (EventBridge schedule ``DriftCheckSchedule``).

For every endpoint of the stack that captures its input, the captured records of the window are scored
against the live model's training baseline; the report goes next to the run report and "Drift Detected"
is sent on drift. A direct invocation with ``{"model": "<name>"}`` checks that model's endpoint only.

Glue only: the logic is ``sagepipe_core.drift.check_all``.
"""

from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from sagepipe_core.drift import check_all
from sagepipe_core.handler import count, pipeline_handler
from sagepipe_core.steps import Settings

SETTINGS = Settings.from_env()
SM = boto3.client("sagemaker")
S3 = boto3.client("s3")
EVENTS = boto3.client("events")


@pipeline_handler(correlation_id_path="id")
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Check every capturing endpoint (or ``event["model"]``'s).

    Returns ``{"results": [{"endpoint", "model", "status": "drift"|"no_drift"|"insufficient_data"|"skipped"|
    "error", ...}]}`` (:func:`sagepipe_core.drift.check_endpoint`).
    """
    model = event.get("model") if isinstance(event.get("model"), str) else None
    results = check_all(sm=SM, s3=S3, events=EVENTS, settings=SETTINGS, only_model=model)
    for result in results:
        count(f"DriftChecks_{result['status']}")
    return {"results": results}
