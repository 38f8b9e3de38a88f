"""Tests for sagepipe.twin.apigateway (REST API v1 Lambda proxy front)."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import textwrap
import time
import urllib.parse
from pathlib import Path

import pytest

from sagepipe.twin.apigateway import ApiFront, Route, match_route
from sagepipe.twin.awslambda.runtime import FunctionSpec, InvokeResult, WorkerPool

pytestmark = pytest.mark.twin


class FakeLambda:
    """Records events; replies with whatever ``self.reply`` says."""

    def __init__(self):
        self.events: list[tuple[str, dict]] = []
        self.reply = None  # callable(event) -> InvokeResult

    def __call__(self, name: str, payload: bytes) -> InvokeResult:
        event = json.loads(payload)
        self.events.append((name, event))
        if self.reply is not None:
            return self.reply(event)
        return _ok({"statusCode": 200, "body": json.dumps({"fn": name})})


def _ok(obj) -> InvokeResult:
    return InvokeResult(payload=json.dumps(obj).encode(), errored=False, logs="", duration_ms=1.0)


ROUTES = [
    Route("POST", "/models/{model}/predictions", "predict"),
    Route("GET", "/models/latest/predictions", "latest"),
    Route("GET", "/health", "health"),
    Route("ANY", "/files/{proxy+}", "files"),
    Route("GET", "/", "root"),
]


@pytest.fixture()
def fake():
    return FakeLambda()


@pytest.fixture()
def front(fake):
    api = ApiFront(
        ROUTES,
        fake,
        stage="Prod",
        timeout_s=1.0,
        cors={
            "allow_origins": ["http://ui.local"],
            "allow_methods": ["GET", "POST", "OPTIONS"],
            "allow_headers": ["Content-Type", "X-Api-Key"],
            "max_age": 600,
        },
    )
    base = api.start()
    yield api, base
    api.stop()


def _req(base: str, method: str, path: str, body: bytes | None = None, headers=None):
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        conn.putrequest(method, u.path + path, skip_accept_encoding=True)
        for k, v in headers or []:
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        return r.status, r.getheaders(), r.read()
    finally:
        conn.close()


def _h(headers, name):
    return [v for k, v in headers if k.lower() == name.lower()]


def test_match_route_precedence():
    assert match_route(ROUTES, "/models/latest/predictions")[0] == "/models/latest/predictions"
    res, params, _ = match_route(ROUTES, "/models/m1/predictions")
    assert res == "/models/{model}/predictions" and params == {"model": "m1"}
    res, params, _ = match_route(ROUTES, "/files/a/b/c.txt")
    assert res == "/files/{proxy+}" and params == {"proxy": "a/b/c.txt"}
    assert match_route(ROUTES, "/files") is None  # greedy needs >= 1 segment
    assert match_route(ROUTES, "/")[0] == "/"
    assert match_route(ROUTES, "/nope") is None


def test_event_shape(front, fake):
    api, base = front
    status, headers, body = _req(
        base,
        "POST",
        "/models/churn%20v1/predictions?x=1&y=a&y=b&e=",
        body=b'{"rows": [[1, 2]]}',
        headers=[
            ("Content-Type", "application/json"),
            ("X-Multi", "one"),
            ("X-Multi", "two"),
            ("User-Agent", "pytest-ua"),
        ],
    )
    assert status == 200, body
    assert json.loads(body) == {"fn": "predict"}
    name, ev = fake.events[-1]
    assert name == "predict"
    assert set(ev) == {
        "resource",
        "path",
        "httpMethod",
        "headers",
        "multiValueHeaders",
        "queryStringParameters",
        "multiValueQueryStringParameters",
        "pathParameters",
        "stageVariables",
        "requestContext",
        "body",
        "isBase64Encoded",
    }
    assert ev["resource"] == "/models/{model}/predictions"
    assert ev["path"] == "/models/churn v1/predictions"
    assert ev["httpMethod"] == "POST"
    assert ev["pathParameters"] == {"model": "churn v1"}
    assert ev["queryStringParameters"] == {"x": "1", "y": "b", "e": ""}
    assert ev["multiValueQueryStringParameters"] == {"x": ["1"], "y": ["a", "b"], "e": [""]}
    assert ev["headers"]["X-Multi"] == "two"
    assert ev["multiValueHeaders"]["X-Multi"] == ["one", "two"]
    assert ev["headers"]["Content-Type"] == "application/json"
    assert ev["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert ev["stageVariables"] is None
    assert ev["body"] == '{"rows": [[1, 2]]}' and ev["isBase64Encoded"] is False
    rc = ev["requestContext"]
    assert rc["accountId"] == "123456789012"
    assert rc["apiId"] == "twinapi"
    assert rc["resourcePath"] == "/models/{model}/predictions"
    assert rc["httpMethod"] == "POST"
    assert rc["path"] == "/Prod/models/churn v1/predictions"
    assert rc["stage"] == "Prod"
    assert rc["protocol"] == "HTTP/1.1"
    assert rc["identity"]["sourceIp"] == "127.0.0.1"
    assert rc["identity"]["userAgent"] == "pytest-ua"
    assert rc["identity"]["cognitoIdentityId"] is None
    assert abs(rc["requestTimeEpoch"] - time.time() * 1000) < 5000
    assert rc["requestId"] == _h(headers, "x-amzn-RequestId")[0]
    for k in ("resourceId", "extendedRequestId", "requestTime", "domainName"):
        assert rc[k]
    assert _h(headers, "X-Amzn-Trace-Id")[0].startswith("Root=1-")


def test_event_nulls_when_absent(front, fake):
    _, base = front
    status, _, _ = _req(base, "GET", "/health")
    assert status == 200
    ev = fake.events[-1][1]
    assert ev["queryStringParameters"] is None
    assert ev["multiValueQueryStringParameters"] is None
    assert ev["pathParameters"] is None
    assert ev["body"] is None and ev["isBase64Encoded"] is False
    _req(base, "GET", "/")
    assert fake.events[-1][0] == "root" and fake.events[-1][1]["path"] == "/"


def test_binary_body_base64(front, fake):
    _, base = front
    raw = bytes(range(256))
    _req(base, "PUT", "/files/x/y.bin", body=raw, headers=[("Content-Type", "application/octet-stream")])
    name, ev = fake.events[-1]
    assert name == "files" and ev["pathParameters"] == {"proxy": "x/y.bin"}
    assert ev["isBase64Encoded"] is True and base64.b64decode(ev["body"]) == raw
    # text-like type but invalid UTF-8 -> base64 too; octet-stream even if ASCII -> base64
    _req(base, "PUT", "/files/a", body=b"\xff\xfe", headers=[("Content-Type", "text/plain")])
    assert fake.events[-1][1]["isBase64Encoded"] is True
    _req(base, "PUT", "/files/a", body=b"abc", headers=[("Content-Type", "image/png")])
    assert fake.events[-1][1]["isBase64Encoded"] is True
    _req(base, "PUT", "/files/a", body=b"a=1&b=2", headers=[("Content-Type", "application/x-www-form-urlencoded")])
    ev = fake.events[-1][1]
    assert ev["body"] == "a=1&b=2" and ev["isBase64Encoded"] is False


def test_response_mapping(front, fake):
    _, base = front
    png = b"\x89PNG\r\n\x1a\n\x00\x01"
    fake.reply = lambda ev: _ok(
        {
            "statusCode": 201,
            "headers": {"Content-Type": "image/png", "X-Single": "s", "X-Both": "from-headers"},
            "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"], "X-Both": ["m1", "m2"]},
            "body": base64.b64encode(png).decode(),
            "isBase64Encoded": True,
        }
    )
    status, headers, body = _req(base, "GET", "/health")
    assert status == 201
    assert body == png
    assert _h(headers, "Content-Type") == ["image/png"]
    assert _h(headers, "Set-Cookie") == ["a=1", "b=2"]
    assert _h(headers, "X-Both") == ["m1", "m2"]
    assert _h(headers, "X-Single") == ["s"]
    fake.reply = lambda ev: _ok({"statusCode": "204"})
    status, headers, body = _req(base, "GET", "/health")
    assert status == 204 and body == b""
    fake.reply = lambda ev: _ok({"statusCode": 200, "body": "plain"})
    status, headers, body = _req(base, "GET", "/health")
    assert body == b"plain" and _h(headers, "Content-Type") == ["application/json"]


def test_unknown_route_and_method_403(front, fake):
    _, base = front
    for method, path in (("GET", "/nope"), ("DELETE", "/health"), ("GET", "/models/m1/predictions")):
        status, headers, body = _req(base, method, path)
        assert status == 403, (method, path)
        assert json.loads(body) == {"message": "Missing Authentication Token"}
    u = urllib.parse.urlsplit(base)
    status, _, body = _req(f"http://{u.hostname}:{u.port}", "GET", "/health")  # no stage
    assert status == 403
    assert not fake.events


@pytest.mark.parametrize(
    "reply",
    [
        InvokeResult(payload=b'"just a string"', errored=False, logs="", duration_ms=1),
        InvokeResult(payload=b'{"body": "no status"}', errored=False, logs="", duration_ms=1),
        InvokeResult(payload=b'{"statusCode": "abc"}', errored=False, logs="", duration_ms=1),
        InvokeResult(
            payload=b'{"statusCode": 200, "body": {"not": "a string"}}', errored=False, logs="", duration_ms=1
        ),
        InvokeResult(payload=b'{"errorMessage": "x", "errorType": "ValueError"}', errored=True, logs="", duration_ms=1),
    ],
)
def test_502(front, fake, reply):
    _, base = front
    fake.reply = lambda ev: reply
    status, headers, body = _req(base, "GET", "/health")
    assert status == 502
    assert json.loads(body) == {"message": "Internal server error"}


def test_504_on_slow_integration(front, fake):
    _, base = front

    def slow(ev):
        time.sleep(2.0)
        return _ok({"statusCode": 200})

    fake.reply = slow
    t0 = time.monotonic()
    status, _, body = _req(base, "GET", "/health")
    assert status == 504 and json.loads(body) == {"message": "Endpoint request timed out"}
    assert time.monotonic() - t0 < 1.8


def test_413_request_too_long(front, fake):
    _, base = front
    status, _, body = _req(
        base,
        "POST",
        "/models/m/predictions",
        body=b"x" * (10 * 1024 * 1024 + 1),
        headers=[("Content-Type", "application/json")],
    )
    assert status == 413 and json.loads(body) == {"message": "Request Too Long"}
    # a header-only request announcing a huge body is refused without reading it
    u = urllib.parse.urlsplit(base)
    with socket.create_connection((u.hostname, u.port), timeout=5) as s:
        s.sendall(b"POST /Prod/health HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 413")
    assert not fake.events


def test_a_proxy_event_over_lambdas_6_mb_is_refused_before_the_function_runs(front, fake):
    """A 7 MB body is under API Gateway's 10 MB but its proxy event is over Lambda's 6,291,456-byte
    synchronous Invoke quota: 413, the function never invoked. Just under the quota it is invoked."""
    _, base = front
    big = b"x" * (7 * 1024 * 1024)
    status, _, body = _req(base, "POST", "/models/m/predictions", body=big, headers=[("Content-Type", "text/plain")])
    assert status == 413 and json.loads(body) == {"message": "Request Too Long"}
    assert not fake.events
    fake.reply = lambda ev: _ok({"statusCode": 200, "body": "{}"})
    small = b"x" * (6 * 1024 * 1024 - 8192)  # room for the event's headers and request context
    status, _, _ = _req(base, "POST", "/models/m/predictions", body=small, headers=[("Content-Type", "text/plain")])
    assert status == 200 and len(fake.events) == 1


def test_a_function_response_over_lambdas_quota_is_a_502(front, fake):
    """A proxy response over Lambda's 6,291,556-byte synchronous response quota never reaches the client."""
    _, base = front
    fake.reply = lambda ev: _ok({"statusCode": 200, "body": "y" * (6 * 1024 * 1024 + 200)})
    status, _, body = _req(base, "GET", "/health")
    assert status == 502 and json.loads(body) == {"message": "Internal server error"}


def test_cors_preflight(front, fake):
    _, base = front
    status, headers, _ = _req(
        base,
        "OPTIONS",
        "/models/m1/predictions",
        headers=[("Origin", "http://ui.local"), ("Access-Control-Request-Method", "POST")],
    )
    assert status == 200
    assert _h(headers, "Access-Control-Allow-Origin") == ["http://ui.local"]
    assert _h(headers, "Access-Control-Allow-Methods") == ["GET,POST,OPTIONS"]
    assert _h(headers, "Access-Control-Allow-Headers") == ["Content-Type,X-Api-Key"]
    assert _h(headers, "Access-Control-Max-Age") == ["600"]
    status, headers, _ = _req(base, "OPTIONS", "/health", headers=[("Origin", "http://evil.local")])
    assert status == 200 and not _h(headers, "Access-Control-Allow-Origin")
    status, _, _ = _req(base, "OPTIONS", "/unknown", headers=[("Origin", "http://ui.local")])
    assert status == 403
    assert not fake.events  # preflights never reach Lambda


def test_end_to_end_with_worker_pool(tmp_path):
    code = tmp_path / "fn"
    code.mkdir()
    (code / "app.py").write_text(
        textwrap.dedent("""
        import json
        def lambda_handler(event, context):
            if event["path"] == "/boom":
                raise RuntimeError("boom")
            return {"statusCode": 200, "headers": {"Content-Type": "application/json"},
                    "body": json.dumps({"model": (event["pathParameters"] or {}).get("model"),
                                        "rid": context.aws_request_id})}
    """)
    )
    pool = WorkerPool(log_sink=lambda n, line: None)
    spec = FunctionSpec(name="predict", code_dir=Path(code), handler="app.lambda_handler", environment={}, timeout_s=5)
    api = ApiFront(
        [Route("POST", "/models/{model}/predictions", "predict"), Route("GET", "/boom", "predict")],
        lambda name, payload: pool.invoke(spec, payload),
    )
    base = api.start()
    try:
        status, _, body = _req(base, "POST", "/models/m7/predictions", body=b"{}")
        assert status == 200 and json.loads(body)["model"] == "m7"
        status, _, body = _req(base, "GET", "/boom")
        assert status == 502
        # warm round trip through HTTP + worker
        n = 50
        t0 = time.perf_counter()
        for _ in range(n):
            _req(base, "POST", "/models/m7/predictions", body=b"{}")
        per_req_ms = (time.perf_counter() - t0) * 1000 / n
        print(f"\nAPI front + warm worker: {per_req_ms:.2f} ms/request")
        assert per_req_ms < 100
    finally:
        api.stop()
        pool.shutdown()


def test_32_concurrent_clients_see_no_connection_resets(front, fake):
    """32 clients x 63 requests (2,016), each on a new connection (as a browser fan-out or a load tester opens them):
    API Gateway accepts them all; a listen backlog of Python's default 5 reset some (0.5-0.9 % before)."""
    from concurrent.futures import ThreadPoolExecutor

    _, base = front
    u = urllib.parse.urlsplit(base)
    barrier = __import__("threading").Barrier(32)
    connects: list[float] = []

    def client(_: int) -> list[str]:
        errors: list[str] = []
        barrier.wait()
        for _ in range(63):
            try:
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
                t = time.monotonic()
                conn.connect()
                connects.append(time.monotonic() - t)
                conn.request("GET", u.path + "/health")
                r = conn.getresponse()
                r.read()
                conn.close()
                if r.status != 200:
                    errors.append(f"status {r.status}")
            except OSError as e:
                errors.append(repr(e))
        return errors

    t0 = time.monotonic()
    with ThreadPoolExecutor(32) as ex:
        errors = [e for errs in ex.map(client, range(32)) for e in errs]
    assert errors == [], f"{len(errors)} of {32 * 63} requests failed: {errors[:3]}"
    # a SYN dropped by a full accept queue is retransmitted after 1 s (Linux; with tcp_abort_on_overflow: a reset)
    slow = [t for t in connects if t >= 1.0]
    assert not slow, f"{len(slow)} of {len(connects)} connects waited for a SYN retransmit (accept queue full)"
    assert time.monotonic() - t0 < 30


def test_gateway_responses_add_their_headers_to_api_gateways_own_errors(fake):
    """A response type's headers (else DEFAULT_4XX/DEFAULT_5XX's) go on API Gateway's own errors only; every
    response has one Date and no Server header."""
    api = ApiFront(
        ROUTES,
        fake,
        timeout_s=0.5,
        api_keys={"k"},
        gateway_responses={
            "DEFAULT_4XX": {"Access-Control-Allow-Origin": "*"},
            "DEFAULT_5XX": {"Access-Control-Allow-Origin": "*", "X-Five": "5"},
            "MISSING_AUTHENTICATION_TOKEN": {"X-Missing": "1"},
        },
    )
    base = api.start()
    try:
        status, headers, _ = _req(base, "GET", "/health")  # no key: INVALID_API_KEY -> DEFAULT_4XX
        assert status == 403 and _h(headers, "Access-Control-Allow-Origin") == ["*"]
        status, headers, _ = _req(base, "GET", "/nope", headers=[("x-api-key", "k")])
        assert status == 403 and _h(headers, "X-Missing") == ["1"] and not _h(headers, "Access-Control-Allow-Origin")
        fake.reply = lambda ev: (time.sleep(1.0), _ok({"statusCode": 200}))[1]
        status, headers, _ = _req(base, "GET", "/health", headers=[("x-api-key", "k")])
        assert status == 504 and _h(headers, "X-Five") == ["5"]
        fake.reply = None
        status, headers, _ = _req(base, "GET", "/health", headers=[("x-api-key", "k")])
        assert status == 200 and not _h(headers, "Access-Control-Allow-Origin")  # the function's response as is
        assert len(_h(headers, "Date")) == 1 and not _h(headers, "Server")
    finally:
        api.stop()
