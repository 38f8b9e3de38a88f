"""Evaluate step: the deploy gate.

Reads ``evaluation.json`` from the model artifact and the training job's ``FinalMetricDataList``; fails
closed. Glue only: ``sagepipe_core.steps.evaluate_model``.
"""

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

from sagepipe_core.handler import count, pipeline_handler
from sagepipe_core.records import EvaluateInput, GateDecision
from sagepipe_core.steps import Settings, evaluate_model

SETTINGS = Settings.from_env()
S3 = boto3.client("s3")
SM = boto3.client("sagemaker")


@pipeline_handler(correlation_id_path="execution_name")
def lambda_handler(event: EvaluateInput, context: LambdaContext) -> GateDecision:
    """Gate the trained model and write its run report.

    ``event``: ``{"config", "training": {"TrainingJobName", "ModelArtifacts"}, "model", "dataset", "names"}``
    → the decision record (with ``report``, the run report's S3 URI).
    """
    decision = evaluate_model(event, s3=S3, sm=SM, settings=SETTINGS)
    count(f"Gate_{decision['decision']}")
    return decision
