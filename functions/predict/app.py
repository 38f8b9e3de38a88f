"""Inference API (REST API stage ``v1``; contract: ``api/openapi.yaml``).

``POST /models/{model}/predictions``, ``GET /models/{model}``, ``GET /health``. Glue only: the logic is
``sagepipe_core.predict``.
"""

import os
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, CORSConfig, Response
from aws_lambda_powertools.logging import correlation_paths
from botocore.config import Config
from botocore.session import get_session  # botocore, not boto3: ~100 ms less cold-start import

from sagepipe_core import predict as core

logger = Logger()
SETTINGS = core.Settings.from_env(dict(os.environ))
ORIGINS = [o.strip() for o in os.environ.get("CORS_ALLOW_ORIGINS", "*").split(",") if o.strip()] or ["*"]
app = APIGatewayRestResolver(
    cors=CORSConfig(
        allow_origin=ORIGINS[0],
        extra_origins=ORIGINS[1:],
        max_age=600,
        allow_headers=["Content-Type", "X-Api-Key", "Authorization", "X-Amz-Date", "X-Amz-Security-Token"],
    )
)
# read_timeout x attempts (20 s) < the function's Timeout (25 s) < API Gateway's 29 s: a slow model is a JSON 504.
SESSION = get_session()
RUNTIME = SESSION.create_client(
    "sagemaker-runtime", config=Config(connect_timeout=2, read_timeout=20, retries={"total_max_attempts": 1})
)
_CONTROL = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 2})
LIVE = core.LiveModels(
    lambda: SESSION.create_client("sagemaker", config=_CONTROL),  # created on first use
    lambda: SESSION.create_client("s3", config=_CONTROL),
    SETTINGS.ttl_s,
)


def api_error(err: core.ApiError) -> Response[dict[str, Any]]:
    """Render :class:`ApiError` as JSON; the log line has the code, never the body.

    A 5xx (the model or SageMaker failed, not the client) is logged at ERROR, a 4xx at INFO.
    """
    extra = {"status": err.status, "error_code": err.code}
    if err.status >= 500:
        logger.error("request failed", extra=extra)
    else:
        logger.info("request rejected", extra=extra)
    return Response(err.status, "application/json", err.body(), err.headers)


# Registered by a call, not as a decorator: Powertools' exception_handler is unannotated (returns Any), which
# would make api_error untyped for mypy.
app.exception_handler(core.ApiError)(api_error)


@app.not_found
def not_found(_: Exception) -> Response[dict[str, Any]]:
    """Unknown route or a model name the router does not accept: the API's own JSON 404 shape."""
    return api_error(core.ApiError(404, "not_found", "no such resource"))


@app.post("/models/<model>/predictions")
def predictions(model: str) -> dict[str, Any]:
    """Validate against the live version's schema, call its endpoint, return predictions + request id."""
    ev = app.current_event
    body = core.read_body(ev.body, ev.is_base64_encoded)
    per_record = core.per_record_flag(ev.get_query_string_value("per_record"))
    result = core.predict(
        RUNTIME,
        LIVE,
        SETTINGS,
        model=model,
        body=body,
        content_type=core.header(ev.headers, "content-type"),
        per_record=per_record,
        content_encoding=core.header(ev.headers, "content-encoding"),
        inference_id=ev.request_context.request_id,
    )
    logger.info(
        "predicted", extra={"model": model, "version": result["version"], "instances": len(result["predictions"])}
    )
    return {**result, "request_id": ev.request_context.request_id}


@app.get("/models/<model>")
def model_info(model: str) -> dict[str, Any]:
    """The live model version: metrics, schema, when deployed."""
    return {**core.describe(LIVE, SETTINGS, model), "request_id": app.current_event.request_context.request_id}


@app.get("/health")
def health() -> dict[str, Any]:
    """Liveness of the API itself (no SageMaker call)."""
    return {"status": "ok", "request_id": app.current_event.request_context.request_id}


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """REST API (v1 payload) proxy event → proxy response."""
    return app.resolve(event, context)
