"""moto's Lambda, wired to the twin's runtime (patches registered in :mod:`sagepipe.twin.patches`).

- ``lambda_invoke``: ``LambdaFunction._invoke_lambda`` runs the real handler in a warm worker
  (:mod:`sagepipe.twin.awslambda.runtime`, through the running twin's ``invoke_lambda``).
- ``lambda_payload_limits``: Invoke's payload quotas as Lambda applies them (Lambda quotas; API Reference,
  Invoke): a synchronous request over 6,291,456 bytes, or an asynchronous (``Event``) one over
  1,048,576 bytes (1 MB since 2025; it was 256 KB), is refused with ``413 RequestEntityTooLargeException``
  "Request must be smaller than N bytes for the InvokeFunction operation" before the function runs; a
  synchronous response over 6,291,556 bytes becomes the function error ``Function.ResponseSizeTooLarge``.
  moto checked no request size, and the response against ``sys.getsizeof(...) > 6000000`` (it refused
  responses between 6,000,000 and 6,291,556 bytes that Lambda returns).
"""

from __future__ import annotations

import json
from typing import Any

from ..patches import Patch, _install, _require, twin


def _check_lambda() -> None:
    from moto.awslambda.models import LambdaFunction

    _require(LambdaFunction, "_invoke_lambda", ["self", "event"])
    _require(LambdaFunction, "invoke", ["self", "body", "request_headers", "response_headers"])


def _apply_lambda() -> None:
    from moto.awslambda.models import LambdaFunction

    def _invoke_lambda(self: Any, event: Any = None) -> tuple[str, bool, str]:
        return twin().invoke_lambda(self, event)

    _install("lambda_invoke", LambdaFunction, "_invoke_lambda", _invoke_lambda)


#: Invoke's quotas in bytes (Lambda quotas, "Invocation payload (request and response)").
MAX_SYNC_REQUEST = 6 * 1024 * 1024
MAX_SYNC_RESPONSE = 6 * 1024 * 1024 + 100
MAX_ASYNC_REQUEST = 1024 * 1024


def too_large(limit: int) -> tuple[int, dict[str, str], str]:
    """Lambda's ``RequestEntityTooLargeException`` answer (status, headers, JSON body) for ``limit`` bytes."""
    message = f"Request must be smaller than {limit} bytes for the InvokeFunction operation"
    body = json.dumps({"Type": "User", "message": message})
    headers = {
        "x-amzn-ErrorType": "RequestEntityTooLargeException",
        "content-type": "application/json",
        "status": "413",
    }
    return 413, headers, body


def response_too_large(size: int) -> bytes:
    """The function error payload of a synchronous response over :data:`MAX_SYNC_RESPONSE` bytes."""
    return json.dumps(
        {
            "errorMessage": f"Response payload size ({size} bytes) exceeded maximum allowed payload size "
            f"({MAX_SYNC_RESPONSE} bytes).",
            "errorType": "Function.ResponseSizeTooLarge",
        }
    ).encode()


def _check_limits() -> None:
    import inspect

    from moto.awslambda.responses import LambdaResponse

    from ..patches import _APPLIED, MotoInternalsChanged

    _require(LambdaResponse, "invoke", ["self"])
    source = inspect.getsource(_APPLIED.get("lambda_payload_limits", LambdaResponse.invoke))
    for needle in ("self.backend.invoke(", "X-Amz-Invocation-Type", "sys.getsizeof(payload) > 6000000"):
        if needle not in source:
            raise MotoInternalsChanged(f"moto's LambdaResponse.invoke no longer has {needle!r}")


def _apply_limits() -> None:
    from urllib.parse import unquote

    from moto.awslambda.responses import LambdaResponse
    from moto.utilities.aws_headers import amz_crc32

    from ..patches import _APPLIED

    _APPLIED.setdefault("lambda_payload_limits", LambdaResponse.invoke)

    @amz_crc32
    def invoke(self: Any) -> tuple[int, dict[str, str], str | bytes]:
        # moto 5.2.5's LambdaResponse.invoke, with Lambda's request and response quotas in bytes
        kind = self.headers.get("X-Amz-Invocation-Type") or "RequestResponse"
        body = self.body if isinstance(self.body, bytes) else (self.body or "").encode()
        limit = MAX_ASYNC_REQUEST if kind == "Event" else MAX_SYNC_REQUEST
        if len(body) > limit:
            return too_large(limit)
        headers: dict[str, str] = {}
        name = unquote(self.path.rsplit("/", 2)[-2])
        if kind == "Event" and not self._get_param("qualifier") and twin().invoke_event(name, body):
            # Lambda queues the event and answers 202 at once; the twin then runs it with Lambda's
            # asynchronous semantics (retries, the EventInvokeConfig OnFailure destination)
            return 202, {"status": "202", "content-type": "application/json"}, b""
        payload = self.backend.invoke(name, self._get_param("qualifier"), self.body, self.headers, headers)
        if payload is None:
            return 404, headers, "{}"
        if kind == "RequestResponse":
            size = len(payload.encode() if isinstance(payload, str) else payload)
            if size > MAX_SYNC_RESPONSE:
                headers["x-amz-function-error"] = "Unhandled"
                payload = response_too_large(size)
                headers["Content-Length"] = str(len(payload))
        headers["content-type"] = "application/json"
        if kind == "Event":
            headers["status"] = "202"
            return 202, headers, payload
        if kind == "DryRun":
            headers["status"] = "204"
            return 204, headers, payload
        if self.headers.get("X-Amz-Log-Type") != "Tail":
            headers.pop("x-amz-log-result", None)
        return 200, headers, payload

    _install("lambda_payload_limits", LambdaResponse, "invoke", invoke)


PATCHES: tuple[Patch, ...] = (
    Patch("lambda_invoke", ("moto.awslambda.models:LambdaFunction._invoke_lambda",), _check_lambda, _apply_lambda),
    Patch("lambda_payload_limits", ("moto.awslambda.responses:LambdaResponse.invoke",), _check_limits, _apply_limits),
)
