"""Execution-ended function: an uncaught end of the pipeline becomes "Pipeline Failed".

EventBridge "Step Functions Execution Status Change" (FAILED / TIMED_OUT / ABORTED) of the pipeline →
"Pipeline Failed" for a run that ended without its own notification (a timeout, a StopExecution, an error
the Catch does not handle - a transient one, so that ``sagepipe retry`` resumes at that step; the history
tells whether a Fail state ended it). Glue only: ``sagepipe_core.steps.notify_execution_ended``.
"""

from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from sagepipe_core.handler import count, pipeline_handler
from sagepipe_core.steps import Settings, notify_execution_ended

SETTINGS = Settings.from_env()
EVENTS = boto3.client("events")
SFN = boto3.client("stepfunctions")


@pipeline_handler(correlation_id_path="detail.name")
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """``event``: the status-change event → ``{"status": "notified"|"skipped", ...}``."""
    result = notify_execution_ended(event, events=EVENTS, sfn=SFN, settings=SETTINGS)
    count(f"ExecutionsEnded_{result['status']}")
    return result
