"""Inference request handling for ``POST /models/{model}/predictions``: checks done before SageMaker is
called, the InvokeEndpoint call, and the mapping of SageMaker Runtime errors to HTTP statuses.

Follows the sagemaker-runtime InvokeEndpoint API reference (6 MB payload limit, ``ModelError`` with
``OriginalStatusCode``, ``ValidationError`` for unknown endpoints, ``ThrottlingException``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError, ConnectTimeoutError, ReadTimeoutError

from .naming import endpoint_name

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # InvokeEndpoint limit
SUPPORTED_CONTENT_TYPES = ("application/json", "text/csv")
MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")


@dataclass
class ApiError(Exception):
    """An error answered to the client: HTTP ``status``, stable ``code``, human ``message``.

    Rendered as ``{"error": {"code", "message", **details}}``.
    """

    status: int
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        """The JSON body."""
        return {"error": {"code": self.code, "message": self.message, **self.details}}


def media_type(content_type: str | None) -> str:
    """``text/csv; charset=utf-8`` → ``text/csv`` (lower-cased, parameters dropped)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def check_request(model: str, body: bytes, content_type: str | None) -> str:
    """Checks made before SageMaker is called. Returns the media type to send.

    Raises :class:`ApiError`: 400 ``invalid_model_name``; 413 ``payload_too_large`` (> 6 MB);
    415 ``unsupported_media_type``; 400 ``empty_body``; 400 ``malformed_json`` / ``missing_instances``.
    """
    if not MODEL_NAME_RE.match(model):
        raise ApiError(400, "invalid_model_name", f"model name {model!r} is not valid")
    if len(body) > MAX_PAYLOAD_BYTES:
        raise ApiError(413, "payload_too_large", f"body is {len(body)} bytes; the limit is {MAX_PAYLOAD_BYTES}")
    mt = media_type(content_type)
    if mt not in SUPPORTED_CONTENT_TYPES:
        raise ApiError(415, "unsupported_media_type",
                       f"Content-Type must be one of {list(SUPPORTED_CONTENT_TYPES)}, got {content_type!r}")
    if not body.strip():
        raise ApiError(400, "empty_body", "request body is empty")
    if mt == "application/json":
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, "malformed_json", f"body is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("instances"), list) or not doc["instances"]:
            raise ApiError(400, "missing_instances", 'body must be {"instances": [{feature: value, ...}, ...]}')
    return mt


def invoke(runtime: Any, *, prefix: str, model: str, body: bytes, content_type: str) -> dict[str, Any]:
    """Call InvokeEndpoint on ``<prefix>-<model>`` and return ``{"predictions", "model", "endpoint", "variant"}``.

    Error mapping (:class:`ApiError`): unknown endpoint → 404 ``model_not_found``; endpoint not
    InService → 503 ``model_unavailable`` with ``Retry-After``; ``ModelError`` 4xx → 422
    ``model_rejected_input``, other ``ModelError`` → 502 ``model_error``; throttling → 429;
    timeouts → 504 ``model_timeout``.
    """
    endpoint = endpoint_name(prefix, model)
    try:
        resp = runtime.invoke_endpoint(EndpointName=endpoint, ContentType=content_type, Accept="application/json", Body=body)
    except (ReadTimeoutError, ConnectTimeoutError) as exc:
        raise ApiError(504, "model_timeout", f"the model did not answer in time: {exc}") from exc
    except ClientError as exc:
        err = exc.response.get("Error", {})
        code, msg = err.get("Code", ""), err.get("Message", "")
        if code == "ModelError":
            original = int(exc.response.get("OriginalStatusCode") or 500)
            if 400 <= original < 500:
                raise ApiError(422, "model_rejected_input", exc.response.get("OriginalMessage") or msg,
                               {"model_status": original}) from exc
            raise ApiError(502, "model_error", "the model failed to answer", {"model_status": original}) from exc
        if code in {"ThrottlingException", "ServiceUnavailable"} or "Throttl" in code:
            raise ApiError(429, "throttled", "too many requests; retry with backoff", headers={"Retry-After": "1"}) from exc
        if code == "ValidationError" and "not found" in msg.lower():
            raise ApiError(404, "model_not_found", f"no endpoint serves model {model!r}", {"model": model}) from exc
        if code == "ValidationError":
            raise ApiError(503, "model_unavailable", msg, {"model": model}, headers={"Retry-After": "30"}) from exc
        raise
    payload = resp["Body"].read()
    try:
        result = json.loads(payload)
    except ValueError as exc:
        raise ApiError(502, "model_error", "the model returned a non-JSON answer") from exc
    return {"model": model, "endpoint": endpoint, "variant": resp.get("InvokedProductionVariant"),
            "predictions": result.get("predictions", result) if isinstance(result, dict) else result}
