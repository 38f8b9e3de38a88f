"""RequestApproval step (``lambda:invoke.waitForTaskToken``).

Keeps the task token in the artifacts bucket and sends "Pipeline Approval Needed". Glue only:
``sagepipe_core.steps.request_approval``.
"""

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from sagepipe_core.handler import count, pipeline_handler
from sagepipe_core.records import ApprovalInput, ApprovalNeeded
from sagepipe_core.steps import Settings, request_approval

SETTINGS = Settings.from_env()
S3 = boto3.client("s3")
EVENTS = boto3.client("events")


@pipeline_handler(correlation_id_path="execution_name")
def lambda_handler(event: ApprovalInput, context: LambdaContext) -> ApprovalNeeded:
    """``event``: ``{"task_token", "model", "execution_name", "registered", "decision"}``."""
    detail = request_approval(event, s3=S3, events=EVENTS, settings=SETTINGS)
    count("ApprovalsRequested")
    return detail
