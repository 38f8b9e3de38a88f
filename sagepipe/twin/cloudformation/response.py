"""CloudFormation's side of a Lambda-backed custom resource, for the twin's deployer: the request event
(CloudFormation User Guide, "Custom resource request objects") and a one-shot HTTP listener on 127.0.0.1
that stands in for the pre-signed S3 ``ResponseURL`` and checks the response object as CloudFormation
does ("Custom resource response objects": required fields, ``Status`` SUCCESS|FAILED, at most 4,096 bytes).
"""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from .template import Stack

MAX_RESPONSE_BYTES = 4096
REQUIRED = ("Status", "PhysicalResourceId", "StackId", "RequestId", "LogicalResourceId")


def _as_strings(value: Any) -> Any:
    """CloudFormation passes custom resource property values as strings (lists and maps keep their shape)."""
    if isinstance(value, dict):
        return {k: _as_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_strings(v) for v in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def create_request(
    stack: Stack, logical_id: str, resource_type: str, props: dict[str, Any], url: str
) -> dict[str, Any]:
    """The ``Create`` request CloudFormation sends to the ``ServiceToken`` function."""
    stack_id = stack.pseudo("AWS::StackId")
    return {
        "RequestType": "Create",
        "ServiceToken": str(props.get("ServiceToken", "")),
        "ResponseURL": url,
        "StackId": stack_id,
        "RequestId": str(uuid.uuid4()),
        "ResourceType": resource_type,
        "LogicalResourceId": logical_id,
        "ResourceProperties": _as_strings(props),
    }


class ResponseListener:
    """Receives one PUT of a response object on ``url``; :meth:`wait` returns it (or None on timeout).
    A response CloudFormation would refuse is returned as FAILED with the reason."""

    def __init__(self) -> None:
        self._got = threading.Event()
        self.response: dict[str, Any] | None = None
        path = f"/cfn-response/{uuid.uuid4().hex}"
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:  # noqa: N802 - http.server's method naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != path:
                    self.send_response(403)
                    self.end_headers()
                    return
                outer.response = outer._check(body)
                outer._got.set()
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}{path}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="cfn-response", daemon=True)

    @staticmethod
    def _check(body: bytes) -> dict[str, Any]:
        if len(body) > MAX_RESPONSE_BYTES:
            return {"Status": "FAILED", "Reason": f"response object is {len(body)} bytes (limit 4096)"}
        try:
            response = json.loads(body)
        except ValueError as exc:
            return {"Status": "FAILED", "Reason": f"response object is not JSON: {exc}"}
        missing = [k for k in REQUIRED if not response.get(k)] if isinstance(response, dict) else list(REQUIRED)
        if missing or response.get("Status") not in {"SUCCESS", "FAILED"}:
            return {"Status": "FAILED", "Reason": f"invalid response object (missing {missing})"}
        return dict(response)

    def wait(self, timeout_s: float) -> dict[str, Any] | None:
        """The response object, or None when none arrived within ``timeout_s``."""
        self._got.wait(timeout_s)
        return self.response

    def __enter__(self) -> ResponseListener:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
