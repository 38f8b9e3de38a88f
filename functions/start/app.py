"""Start function: one Step Functions StartExecution per data version (deterministic name).

Triggers: S3 "Object Created" (EventBridge or classic notification), the retrain schedule and "Retrain
Requested" events.

Glue only: the logic is ``sagepipe_core.steps.start_runs``.
"""

from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from sagepipe_core.handler import count, pipeline_handler
from sagepipe_core.steps import Settings, start_runs

SETTINGS = Settings.from_env()
SFN = boto3.client("stepfunctions")
S3 = boto3.client("s3")


@pipeline_handler(correlation_id_path="id")
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Returns ``{"results": [{"status": "started"|"already_started"|"skipped", ...}]}``."""
    results = start_runs(event, sfn=SFN, s3=S3, settings=SETTINGS)
    for result in results:
        count(f"Runs_{result['status']}")
    return {"results": results}
