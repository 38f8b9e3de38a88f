"""ValidateData step: check the data and the config, write the splits, build the training request.

Bad data is quarantined and the error re-raised as ``InvalidDatasetError`` / ``InvalidConfigError`` for the
ASL Catch. Glue only: ``sagepipe_core.steps.validate_data``.
"""

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from sagepipe_core.handler import count, pipeline_handler
from sagepipe_core.records import RunRecord, ValidateInput
from sagepipe_core.steps import Settings, validate_data

SETTINGS = Settings.from_env()
S3 = boto3.client("s3")
SM = boto3.client("sagemaker")


@pipeline_handler(correlation_id_path="execution_name")
def lambda_handler(event: ValidateInput, context: LambdaContext) -> RunRecord:
    """``event``: ``{"execution": <execution input>, "execution_name": str}`` → the run record."""
    run = validate_data(event["execution"], execution_name=event["execution_name"], s3=S3, sm=SM, settings=SETTINGS)
    count("RowsValidated", run["dataset"]["rows"])
    return run
