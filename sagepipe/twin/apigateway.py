"""Local API Gateway REST API (v1) front for the twin.

Turns HTTP requests into Lambda proxy integration events (payload format 1.0)
and maps the proxy responses back, following
https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-lambda-proxy-integrations.html
("Input format of a Lambda function for proxy integration" / "Output format").

Rules the twin implements (and AWS behaviour it mirrors):

* URL layout ``http://host:port/<stage>/<resource path>`` like execute-api.
  A request outside the stage -> 403 ``{"message":"Forbidden"}``.
* Resource matching like API Gateway's resource tree: literal segments beat
  ``{param}`` segments, which beat a trailing greedy ``{proxy+}`` (which needs
  at least one segment).  The best resource is chosen first, then the method
  (exact method, else ``ANY``).  No resource or no method ->
  403 ``{"message":"Missing Authentication Token"}``.
* ``path``/``pathParameters``/query values are URL-decoded.
* Body encoding rule (the twin behaves as if ``binaryMediaTypes`` were ``*/*``
  for non-text types): an empty body is ``null``; a body whose Content-Type is
  text-like (``text/*``, ``application/json``, ``*+json``, ``application/xml``,
  ``*+xml``, ``application/x-www-form-urlencoded``, ``application/javascript``,
  or no Content-Type at all) **and** which is valid UTF-8 is passed as text;
  everything else is base64 with ``isBase64Encoded: true``.
* Response: ``statusCode`` (int or digit string) required; ``body`` must be a
  string or null; ``headers``/``multiValueHeaders`` merged (multi-value wins for
  the same name); ``isBase64Encoded`` body is decoded.  Default Content-Type is
  ``application/json``.  A Lambda error or malformed response ->
  502 ``{"message": "Internal server error"}``; integration longer than
  ``timeout_s`` -> 504 ``{"message": "Endpoint request timed out"}``; request
  body over 10 MB -> 413 ``{"message": "Request Too Long"}``; a proxy event (body plus headers and
  request context) over Lambda's 6,291,456-byte synchronous request quota -> 413 as well (Lambda refuses
  it before the function runs); a function response over Lambda's 6,291,556 bytes -> 502.
* Auth (optional): with ``api_keys`` every method needs an ``x-api-key`` header
  holding one of them, else 403 ``{"message":"Forbidden"}``; with ``iam_auth`` a
  SigV4 ``Authorization`` header (``AWS4-HMAC-SHA256 ...``, not verified), else 403
  ``{"message":"Missing Authentication Token"}``.  CORS preflights need neither
  (SAM's ``AddApiKeyRequiredToCorsPreflight: false``).
* CORS (optional): OPTIONS on a known resource is answered by the front itself
  (like the MOCK integration SAM generates for ``Cors``); other responses get no
  CORS headers added - as in AWS, proxy integrations must return them.
"""

from __future__ import annotations

import base64
import binascii
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway payload limit (10 MB)
#: Lambda's synchronous Invoke quotas (bytes): the proxy event (body, headers and context together) and
#: the function's response (:mod:`sagepipe.twin.awslambda.api`).
MAX_LAMBDA_REQUEST = 6 * 1024 * 1024
MAX_LAMBDA_RESPONSE = 6 * 1024 * 1024 + 100
ACCOUNT_ID = "123456789012"
_TEXT_TYPES = {
    "application/json",
    "application/x-www-form-urlencoded",
    "application/xml",
    "application/javascript",
}


@dataclass(frozen=True)
class Route:
    """One REST API method: ``method`` ("GET", "POST", ..., or "ANY"), resource
    ``path`` template (e.g. ``"/models/{model}/predictions"``, ``"/{proxy+}"``)
    and the Lambda ``function_name`` of its AWS_PROXY integration."""

    method: str
    path: str
    function_name: str


def _segments(path: str) -> list[str]:
    return [s for s in path.split("/") if s != ""]


def _is_text(content_type: str | None) -> bool:
    """True if the media type is passed to Lambda as text (see module rule)."""
    if not content_type:
        return True
    mt = content_type.split(";", 1)[0].strip().lower()
    return mt.startswith("text/") or mt in _TEXT_TYPES or mt.endswith("+json") or mt.endswith("+xml")


def match_route(routes: list[Route], path: str) -> tuple[str, dict[str, str], list[Route]] | None:
    """Find the best resource for ``path`` (decoded, stage-less, e.g. "/a/b").

    Returns ``(resource_template, path_parameters, routes_on_that_resource)`` or
    ``None``.  Precedence per segment: literal > ``{param}`` > ``{proxy+}``
    (API Gateway's resource-tree matching).
    """
    segs = _segments(path)
    by_resource: dict[str, list[Route]] = {}
    for r in routes:
        by_resource.setdefault("/" + "/".join(_segments(r.path)), []).append(r)
    best = None
    for resource, rs in by_resource.items():
        tmpl = _segments(resource)
        params: dict[str, str] = {}
        rank: list[int] = []
        ok = True
        for i, t in enumerate(tmpl):
            if t.startswith("{") and t.endswith("+}"):
                if i != len(tmpl) - 1 or i >= len(segs):
                    ok = False
                    break
                params[t[1:-2]] = "/".join(segs[i:])
                rank.append(2)
                break
            if i >= len(segs):
                ok = False
                break
            if t.startswith("{") and t.endswith("}"):
                params[t[1:-1]] = segs[i]
                rank.append(1)
            elif t == segs[i]:
                rank.append(0)
            else:
                ok = False
                break
        else:
            if len(tmpl) != len(segs):
                ok = False
        if not ok:
            continue
        key = (rank, -len(tmpl))
        if best is None or key < best[0]:
            best = (key, resource, params, rs)
    if best is None:
        return None
    return best[1], best[2], best[3]


class _Server(ThreadingHTTPServer):
    """The listening socket with a deep accept queue: ``socketserver``'s default backlog of 5 overflows when
    dozens of clients connect at once (Linux drops the SYN - a 1 s retransmit stall - or, with
    ``tcp_abort_on_overflow``, resets the connection); API Gateway accepts every connection.  The kernel caps
    it at ``net.core.somaxconn``."""

    request_queue_size = 1024
    daemon_threads = True


class ApiFront:
    """A local REST API (v1) stage serving Lambda proxy integrations.

    ``routes``: the API's methods.  ``invoke(function_name, event_bytes)`` must
    return an :class:`sagepipe.twin.awslambda.runtime.InvokeResult`-like object
    (``payload`` bytes, ``errored`` bool) - typically a closure over
    ``WorkerPool.invoke``.  ``stage``: first URL segment.  ``port=0`` picks a
    free port.  ``timeout_s``: integration timeout in seconds (API Gateway: 29).
    ``cors``: ``{"allow_origins": [...], "allow_methods": [...],
    "allow_headers": [...], "max_age": int?}`` to answer OPTIONS preflights.
    ``api_keys``: accepted ``x-api-key`` values (``None``: no key needed);
    ``iam_auth``: require a SigV4 ``Authorization`` header.
    ``gateway_responses``: response type -> headers API Gateway adds to its own error responses (the
    ``GatewayResponses`` of the API; a type without an entry falls back to ``DEFAULT_4XX``/``DEFAULT_5XX``
    by status, as API Gateway does).
    See the module docstring for the exact event/response rules.
    """

    def __init__(
        self,
        routes: list[Route],
        invoke: Callable[[str, bytes], object],
        stage: str = "Prod",
        host: str = "127.0.0.1",
        port: int = 0,
        api_id: str = "twinapi",
        timeout_s: float = 29.0,
        cors: dict[str, Any] | None = None,
        api_keys: set[str] | frozenset[str] | None = None,
        iam_auth: bool = False,
        gateway_responses: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self.routes = list(routes)
        self.invoke = invoke
        self.stage = stage
        self.host = host
        self.port = port
        self.api_id = api_id
        self.timeout_s = float(timeout_s)
        self.cors = cors
        self.api_keys = None if api_keys is None else frozenset(api_keys)
        self.iam_auth = bool(iam_auth)
        self.gateway_responses = dict(gateway_responses or {})
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> str:
        """Start serving in a daemon thread; return the base URL
        ``http://host:port/<stage>`` (no trailing slash).  Raises ``OSError`` if
        the port cannot be bound; ``RuntimeError`` if already started."""
        if self._server is not None:
            raise RuntimeError("ApiFront already started")
        front = self

        class Handler(_ProxyHandler):
            api = front

        self._server = _Server((self.host, self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name=f"apigw-{self.api_id}", daemon=True
        )
        self._thread.start()
        self.base_url = f"http://{self.host}:{self.port}/{self.stage}"
        return self.base_url

    def stop(self) -> None:
        """Stop the server and close its socket (idempotent).  Invocations still
        running in background threads are abandoned, not killed."""
        srv, self._server = self._server, None
        if srv is not None:
            srv.shutdown()
            srv.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # ------------------------------------------------------------------ event
    def build_event(
        self,
        method: str,
        raw_path: str,
        headers: list[tuple[str, str]],
        body: bytes,
        resource: str,
        path_params: dict[str, str],
        source_ip: str,
        request_id: str,
    ) -> dict[str, Any]:
        """Build the REST API v1 proxy event (dict) for one request.

        ``raw_path`` is the request target including the stage and query string.
        """
        split = urlsplit(raw_path)
        full_path = unquote(split.path)
        path = full_path[len(self.stage) + 1 :] or "/"
        single: dict[str, str] = {}
        multi: dict[str, list[str]] = {}
        names: dict[str, str] = {}
        for k, v in headers:
            name = names.setdefault(k.lower(), k)
            multi.setdefault(name, []).append(v)
            single[name] = v
        ctype = next((v for k, v in single.items() if k.lower() == "content-type"), None)
        qs_pairs = parse_qsl(split.query, keep_blank_values=True)
        qs: dict[str, str] = {}
        mqs: dict[str, list[str]] = {}
        for k, v in qs_pairs:
            qs[k] = v
            mqs.setdefault(k, []).append(v)
        if not body:
            body_val, b64 = None, False
        else:
            text = None
            if _is_text(ctype):
                try:
                    text = body.decode("utf-8")
                except UnicodeDecodeError:
                    text = None
            if text is not None:
                body_val, b64 = text, False
            else:
                body_val, b64 = base64.b64encode(body).decode("ascii"), True
        now = time.time()
        user_agent = next((v for k, v in single.items() if k.lower() == "user-agent"), None)
        host = next((v for k, v in single.items() if k.lower() == "host"), f"{self.host}:{self.port}")
        return {
            "resource": resource,
            "path": path,
            "httpMethod": method,
            "headers": single or None,
            "multiValueHeaders": multi or None,
            "queryStringParameters": qs or None,
            "multiValueQueryStringParameters": mqs or None,
            "pathParameters": {k: unquote(v) for k, v in path_params.items()} or None,
            "stageVariables": None,
            "requestContext": {
                "resourceId": uuid.uuid5(uuid.NAMESPACE_URL, resource).hex[:6],
                "resourcePath": resource,
                "httpMethod": method,
                "extendedRequestId": base64.b64encode(uuid.uuid4().bytes[:12]).decode()[:16],
                "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
                "path": f"/{self.stage}{path}",
                "accountId": ACCOUNT_ID,
                "protocol": "HTTP/1.1",
                "stage": self.stage,
                "domainPrefix": host.split(".")[0].split(":")[0],
                "requestTimeEpoch": int(now * 1000),
                "requestId": request_id,
                "identity": {
                    "cognitoIdentityPoolId": None,
                    "accountId": None,
                    "cognitoIdentityId": None,
                    "caller": None,
                    "sourceIp": source_ip,
                    "principalOrgId": None,
                    "accessKey": None,
                    "cognitoAuthenticationType": None,
                    "cognitoAuthenticationProvider": None,
                    "userArn": None,
                    "userAgent": user_agent,
                    "user": None,
                },
                "domainName": host,
                "deploymentId": "twindeploy",
                "apiId": self.api_id,
            },
            "body": body_val,
            "isBase64Encoded": b64,
        }


def map_proxy_response(payload: bytes) -> tuple[int, list[tuple[str, str]], bytes] | None:
    """Validate a Lambda proxy response (JSON bytes) and map it to
    ``(status, [(header, value), ...], body_bytes)``; ``None`` if malformed
    (API Gateway then answers 502)."""
    try:
        resp = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(resp, dict):
        return None
    status = _proxy_status(resp.get("statusCode"))
    body = resp.get("body")
    if status is None or (body is not None and not isinstance(body, str)):
        return None
    hdrs = resp.get("headers") or {}
    mhdrs = resp.get("multiValueHeaders") or {}
    if not isinstance(hdrs, dict) or not isinstance(mhdrs, dict):
        return None
    out = _proxy_headers(hdrs, mhdrs)
    if resp.get("isBase64Encoded") and body:
        try:
            data = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return None
    else:
        data = (body or "").encode("utf-8")
    if not any(k.lower() == "content-type" for k, _ in out):
        out.append(("Content-Type", "application/json"))
    return status, out, data


def _proxy_status(status: Any) -> int | None:
    """``statusCode``: an int (or digit string) in 100..599; None otherwise (booleans too)."""
    if isinstance(status, bool):
        return None
    if isinstance(status, str) and status.strip().isdigit():
        status = int(status)
    if not isinstance(status, int) or not 100 <= status <= 599:
        return None
    return status


def _header_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _proxy_headers(hdrs: dict[str, Any], mhdrs: dict[str, Any]) -> list[tuple[str, str]]:
    """``multiValueHeaders`` first, then ``headers`` not named there (case-insensitively); None values dropped."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for k, vs in mhdrs.items():
        if vs is None:
            continue
        if not isinstance(vs, list):
            vs = [vs]
        seen.add(k.lower())
        out.extend((k, _header_value(v)) for v in vs if v is not None)
    for k, v in hdrs.items():
        if k.lower() in seen or v is None:
            continue
        out.append((k, _header_value(v)))
    return out


#: (x-amzn-ErrorType, status) -> API Gateway's gateway response type (API Gateway Developer Guide,
#: "Gateway response types for API Gateway").
_RESPONSE_TYPES = {
    ("BadRequestException", 400): "BAD_REQUEST_BODY",
    ("MissingAuthenticationTokenException", 403): "MISSING_AUTHENTICATION_TOKEN",
    ("RequestTooLongException", 413): "REQUEST_TOO_LARGE",
    ("IntegrationTimeout", 504): "INTEGRATION_TIMEOUT",
}


class _ProxyHandler(BaseHTTPRequestHandler):
    api: ApiFront
    _headers_buffer: list[bytes]  # set by BaseHTTPRequestHandler.send_response (not in its type stubs)
    _trace_id: str
    protocol_version = "HTTP/1.1"
    server_version = "sagepipe-twin-apigw"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    # every method goes through _handle
    def do_GET(self) -> None:  # noqa: N802
        self._handle()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def _send(
        self, status: int, headers: list[tuple[str, str]], body: bytes, request_id: str, close: bool = False
    ) -> None:
        self.send_response(status)
        names = {k.lower() for k, _ in headers}
        for k, v in headers:
            if k.lower() in ("content-length", "connection", "transfer-encoding"):
                continue
            self.send_header(k, v)
        self.send_header("x-amzn-RequestId", request_id)
        if "x-amz-apigw-id" not in names:
            self.send_header("x-amz-apigw-id", base64.b64encode(uuid.uuid4().bytes[:12]).decode()[:16])
        if "x-amzn-trace-id" not in names:
            self.send_header("X-Amzn-Trace-Id", self._trace_id)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        # headers and body in one write (avoids Nagle/delayed-ACK stalls on keep-alive)
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD" and body:
            self._headers_buffer.append(body)
        self.flush_headers()

    def send_response(self, code: int, message: str | None = None) -> None:
        """The status line and ``Date`` (once: BaseHTTPRequestHandler's own ``Server`` header is left out,
        API Gateway sends none)."""
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Date", formatdate(usegmt=True))

    def _error(
        self, status: int, message: str, error_type: str, request_id: str, close: bool = False, kind: str = ""
    ) -> None:
        """API Gateway's own error response, with the headers of its gateway response ``kind`` (default:
        ``_RESPONSE_TYPES[(error_type, status)]``), else of ``DEFAULT_4XX``/``DEFAULT_5XX``."""
        body = json.dumps({"message": message}).encode()
        responses = self.api.gateway_responses
        kind = kind or _RESPONSE_TYPES.get((error_type, status), "")
        extra = responses.get(kind, responses.get("DEFAULT_4XX" if status < 500 else "DEFAULT_5XX", {}))
        self._send(
            status,
            [("Content-Type", "application/json"), ("x-amzn-ErrorType", error_type), *extra.items()],
            body,
            request_id,
            close=close,
        )

    def _drain(self, length: int) -> None:
        """Discard (up to 4x the limit of) an over-long body so the client can read the 413."""
        if length > 4 * MAX_BODY_BYTES:
            return
        try:
            self.connection.settimeout(5.0)
            while length > 0:
                chunk = self.rfile.read(min(length, 1 << 20))
                if not chunk:
                    break
                length -= len(chunk)
        except OSError:
            pass

    def _read_body(self) -> bytes | None:
        """Read the request body; ``None`` if it exceeds MAX_BODY_BYTES."""
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._drain(length)
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked(self) -> bytes | None:
        chunks, total = [], 0
        while True:
            line = self.rfile.readline(65537)
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                break
            total += size
            if total > MAX_BODY_BYTES:
                return None
            chunks.append(self.rfile.read(size))
            self.rfile.readline(3)
        return b"".join(chunks)

    def _handle(self) -> None:
        api = self.api
        request_id = str(uuid.uuid4())
        self._trace_id = f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}"
        try:
            body = self._read_body()
        except ValueError:
            self._error(400, "Bad Request", "BadRequestException", request_id, close=True)
            return
        if body is None:
            self._error(413, "Request Too Long", "RequestTooLongException", request_id, close=True)
            return
        found = self._route(request_id)
        if found is None:
            return
        route, resource, params = found
        client_ip = self.client_address[0]
        event = api.build_event(
            self.command.upper(), self.path, self._forwarded_headers(), body, resource, params, client_ip, request_id
        )
        payload = json.dumps(event).encode()
        if len(payload) > MAX_LAMBDA_REQUEST:  # Lambda refuses the event before the function runs
            self._error(413, "Request Too Long", "RequestTooLongException", request_id)
            return
        res = self._invoke(route, payload, request_id)
        if res is None:
            return
        mapped = map_proxy_response(res.payload)
        if mapped is None:
            self._error(502, "Internal server error", "InternalServerErrorException", request_id)
            return
        status, out_headers, data = mapped
        self._send(status, out_headers, data, request_id)

    def _route(self, request_id: str) -> tuple[Route, str, dict[str, str]] | None:
        """The route for this request, its resource and path parameters; None when already answered
        (403 outside the stage, no route or key/auth missing; the CORS preflight)."""
        api = self.api
        full = unquote(urlsplit(self.path).path)
        prefix = "/" + api.stage
        if not (full == prefix or full.startswith(prefix + "/")):
            self._error(403, "Forbidden", "ForbiddenException", request_id)
            return None
        found = match_route(api.routes, full[len(prefix) :] or "/")
        method = self.command.upper()
        if found is None:
            self._error(403, "Missing Authentication Token", "MissingAuthenticationTokenException", request_id)
            return None
        resource, params, on_resource = found
        route = next((r for r in on_resource if r.method.upper() == method), None)
        if method == "OPTIONS" and api.cors is not None and route is None:
            self._preflight(request_id)
            return None
        if route is None:
            route = next((r for r in on_resource if r.method.upper() == "ANY"), None)
        if route is None:
            self._error(403, "Missing Authentication Token", "MissingAuthenticationTokenException", request_id)
            return None
        if api.api_keys is not None and self.headers.get("x-api-key") not in api.api_keys:
            self._error(403, "Forbidden", "ForbiddenException", request_id, kind="INVALID_API_KEY")
            return None
        if api.iam_auth and not (self.headers.get("Authorization") or "").startswith("AWS4-HMAC-SHA256 "):
            self._error(403, "Missing Authentication Token", "MissingAuthenticationTokenException", request_id)
            return None
        return route, resource, params

    def _forwarded_headers(self) -> list[tuple[str, str]]:
        """The request headers plus the X-Forwarded-* and trace headers API Gateway adds when absent."""
        hdrs = list(self.headers.items())
        lower = {k.lower() for k, _ in hdrs}
        for k, v in (
            ("X-Forwarded-For", self.client_address[0]),
            ("X-Forwarded-Port", str(self.api.port)),
            ("X-Forwarded-Proto", "http"),
            ("X-Amzn-Trace-Id", self._trace_id),
        ):
            if k.lower() not in lower:
                hdrs.append((k, v))
        return hdrs

    def _invoke(self, route: Route, payload: bytes, request_id: str) -> Any:
        """Invoke the route's function within the integration timeout; None when already answered
        (504 after the timeout, 502 when the invocation raised or the function errored)."""
        api = self.api
        box: dict[str, Any] = {}
        done = threading.Event()

        def _run() -> None:
            try:
                box["result"] = api.invoke(route.function_name, payload)
            except BaseException as e:  # noqa: BLE001 - reported as 502
                box["error"] = e
            finally:
                done.set()

        threading.Thread(target=_run, name=f"apigw-invoke-{request_id[:8]}", daemon=True).start()
        if not done.wait(api.timeout_s):
            self._error(504, "Endpoint request timed out", "IntegrationTimeout", request_id)
            return None
        res = box.get("result")
        size = len(getattr(res, "payload", b"") or b"")
        if res is None or getattr(res, "errored", False) or size > MAX_LAMBDA_RESPONSE:
            self._error(502, "Internal server error", "InternalServerErrorException", request_id)
            return None
        return res

    def _preflight(self, request_id: str) -> None:
        cors = self.api.cors or {}
        origins = list(cors.get("allow_origins") or ["*"])
        origin = self.headers.get("Origin")
        headers: list[tuple[str, str]] = [("Content-Type", "application/json")]
        allow = None
        if "*" in origins:
            allow = "*"
        elif origin and origin in origins:
            allow = origin
        if allow is not None:
            headers.append(("Access-Control-Allow-Origin", allow))
            if allow != "*":
                headers.append(("Vary", "Origin"))
            methods = cors.get("allow_methods") or ["OPTIONS", "GET", "POST", "PUT", "PATCH", "DELETE"]
            headers.append(("Access-Control-Allow-Methods", ",".join(methods)))
            hdrs = cors.get("allow_headers")
            if hdrs:
                headers.append(("Access-Control-Allow-Headers", ",".join(hdrs)))
            if cors.get("max_age") is not None:
                headers.append(("Access-Control-Max-Age", str(int(cors["max_age"]))))
            if cors.get("allow_credentials"):
                headers.append(("Access-Control-Allow-Credentials", "true"))
        self._send(200, headers, b"{}", request_id)
