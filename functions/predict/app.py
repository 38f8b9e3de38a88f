"""Predict function: ``POST /models/{model}/predictions`` (REST API, stage ``v1``) → sagemaker-runtime
InvokeEndpoint. Glue only: checks and error mapping are ``sagepipe_core.predict``.
"""

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from sagepipe_core.predict import ApiError, check_request, invoke

logger = Logger()
tracer = Tracer()
app = APIGatewayRestResolver()
PREFIX = os.environ.get("RESOURCE_PREFIX", "sagepipe")
RUNTIME = boto3.client("sagemaker-runtime", config=Config(connect_timeout=2, read_timeout=20, retries={"mode": "standard", "max_attempts": 2}))


@app.exception_handler(ApiError)
def api_error(err: ApiError) -> Response:
    """Render :class:`ApiError` as JSON with its status and headers."""
    return Response(status_code=err.status, content_type="application/json", body=err.body(), headers=err.headers)


@app.post("/models/<model>/predictions")
def predict(model: str) -> dict[str, Any]:
    """Validate the request, call the model's endpoint, return predictions and the request id."""
    request = app.current_event
    body = request.decoded_body.encode() if request.body is not None else b""
    content_type = check_request(model, body, request.headers.get("content-type"))
    result = invoke(RUNTIME, prefix=PREFIX, model=model, body=body, content_type=content_type)
    return {**result, "request_id": request.request_context.request_id}


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """REST API (v1 payload) proxy event → proxy response."""
    return app.resolve(event, context)
