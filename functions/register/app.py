"""RegisterModel step: a model package in the model's package group.

The package carries metrics, schema, lineage and an approval status. Glue only:
``sagepipe_core.steps.register_model``.
"""

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from sagepipe_core.handler import count, pipeline_handler
from sagepipe_core.records import RegisteredPackage, RegisterInput
from sagepipe_core.steps import Settings, register_model

SETTINGS = Settings.from_env()
SM = boto3.client("sagemaker")
S3 = boto3.client("s3")


@pipeline_handler(correlation_id_path="execution_name")
def lambda_handler(event: RegisterInput, context: LambdaContext) -> RegisteredPackage:
    """``event``: ``{"model", "config", "run", "trained", "decision", "execution_name"}`` → the package ARN."""
    registered = register_model(event, sm=SM, s3=S3, settings=SETTINGS)
    count(f"Registered_{registered['approval']}")
    return registered
