"""Start function: one Step Functions StartExecution per data version (deterministic name).

Triggers: S3 "Object Created" (EventBridge or classic notification), the retrain schedule and "Retrain
Requested" events.

Records are started one by one: one that cannot start is sent to the dead-letter queue
(``DEAD_LETTER_QUEUE_URL``) and reported ``dead_lettered``; the others still run. A transient AWS error
is raised after the others ran, so Lambda retries the event and, past its retries, sends it to the
on-failure destination (template ``EventInvokeConfig``).

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
SQS = boto3.client("sqs")


@pipeline_handler(correlation_id_path="id")
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Returns ``{"results": [{"status": "started"|"already_started"|"skipped"|"dead_lettered", ...}], "failed": n}``."""
    results = start_runs(event, sfn=SFN, s3=S3, settings=SETTINGS, sqs=SQS)
    for result in results:
        count(f"Runs_{result['status']}")
    return {"results": results, "failed": sum(1 for r in results if r["status"] == "dead_lettered")}
