"""Server-side input validation as AWS does it, from botocore's service models.

botocore's own client-side validation (``ParamValidator``) checks required members, types and
``min``; it does not check ``max`` lengths and ranges, ``pattern``, ``enum`` or list/map sizes. AWS
services do, server-side, and answer ``ValidationException`` (HTTP 400). moto does not, so a call that
AWS would reject passes there. :func:`validate` checks a request's parameters against the operation's
input shape in the service model (the same JSON the AWS SDKs are generated from):

- strings: ``min``/``max`` length (in characters), ``pattern`` (a Java regular expression, matched
  against the whole value as ``java.util.regex.Pattern.matches`` does), ``enum``;
- integers/longs/floats/doubles: ``min``/``max`` range;
- blobs: ``max`` length in bytes (streaming bodies are skipped);
- lists and maps: ``min``/``max`` number of entries; map keys and values like any other member;
- structures: recursively.

Use it either directly (``validate("sagemaker", "CreateModelPackage", params)``, e.g. from an emulated
service that parsed the request) or on a client's event system (:func:`register`, or
:func:`install` for every botocore session created afterwards, as moto installs its own stubber).
Patterns use the ``regex`` package (``\\p{L}`` and the other Unicode classes Java supports).
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import botocore.handlers
import botocore.session
import regex
from botocore.exceptions import ClientError
from botocore.model import ListShape, MapShape, OperationModel, ServiceModel, Shape, StringShape, StructureShape

from .patches import Patch

EVENT = "before-parameter-build"
_SESSION = botocore.session.get_session()
_STATE = {"active": False}
_SURROGATE_PAIR = regex.compile(r"\\u(D[89AB][0-9A-F]{2})\\u(D[C-F][0-9A-F]{2})", regex.IGNORECASE)
_NUMBERS = {"integer", "long", "float", "double"}


def _java_to_python(pattern: str) -> str:
    r"""Java regexes may spell supplementary characters as UTF-16 surrogate pairs (``\uD800\uDC00``);
    Python's strings are code points, so each pair becomes one ``\U0001xxxx`` escape."""

    def pair(m: regex.Match[str]) -> str:
        hi, lo = int(m.group(1), 16), int(m.group(2), 16)
        return f"\\U{0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00):08X}"

    converted: str = _SURROGATE_PAIR.sub(pair, pattern)
    return converted


@functools.lru_cache(maxsize=4096)
def _compiled(pattern: str) -> regex.Pattern[str]:
    compiled: regex.Pattern[str] = regex.compile(_java_to_python(pattern))
    return compiled


@functools.lru_cache(maxsize=64)
def _service_model(service: str) -> ServiceModel:
    """botocore's model of ``service``, loaded once per process (a new session per call re-read and
    re-parsed the whole service JSON: SageMaker's took 0.1-0.4 s for each new operation)."""
    return _SESSION.get_service_model(service)


@functools.lru_cache(maxsize=1024)
def _operation(service: str, operation: str) -> OperationModel:
    return _service_model(service).operation_model(operation)


def violations(shape: Shape | None, value: Any, path: str) -> Iterator[str]:
    """Yield one message per constraint of ``shape`` (and its members) that ``value`` breaks.

    ``path`` names the member (``CustomerMetadataProperties.gate_reason``). Values of the wrong type
    are left to botocore's ``ParamValidator`` (it runs after this and raises ``ParamValidationError``).
    """
    if shape is None or value is None:
        return
    if isinstance(shape, StructureShape):
        yield from _structure(shape, value, path)
    elif isinstance(shape, ListShape):
        yield from _list(shape, value, path)
    elif isinstance(shape, MapShape):
        yield from _map(shape, value, path)
    elif isinstance(shape, StringShape) and isinstance(value, str):
        yield from _string(shape, value, path)
    elif shape.type_name in _NUMBERS and isinstance(value, int | float) and not isinstance(value, bool):
        yield from _number(shape.metadata, value, path)
    elif (
        shape.type_name == "blob" and isinstance(value, bytes | bytearray) and not shape.serialization.get("streaming")
    ):
        yield from _size(shape.metadata, len(value), path, "bytes")


def _structure(shape: StructureShape, value: Any, path: str) -> Iterator[str]:
    if isinstance(value, Mapping):
        for name, member in shape.members.items():
            if name in value:
                yield from violations(member, value[name], f"{path}.{name}" if path else name)


def _list(shape: ListShape, value: Any, path: str) -> Iterator[str]:
    if isinstance(value, list | tuple):
        yield from _size(shape.metadata, len(value), path, "entries")
        for i, item in enumerate(value):
            yield from violations(shape.member, item, f"{path}[{i}]")


def _map(shape: MapShape, value: Any, path: str) -> Iterator[str]:
    if isinstance(value, Mapping):
        yield from _size(shape.metadata, len(value), path, "entries")
        for k, v in value.items():
            yield from violations(shape.key, k, f"{path} key {k!r}")
            yield from violations(shape.value, v, f"{path}.{k}")


def _string(shape: StringShape, value: str, path: str) -> Iterator[str]:
    yield from _size(shape.metadata, len(value), path, "characters")
    if shape.enum and value not in shape.enum:
        yield f"Value {_show(value)} at '{path}' failed to satisfy constraint: Member must satisfy enum value set: {shape.enum}"
    pattern = shape.metadata.get("pattern")
    if pattern and not _compiled(pattern).fullmatch(value):
        yield (
            f"Value {_show(value)} at '{path}' failed to satisfy constraint: "
            f"Member must satisfy regular expression pattern: {pattern}"
        )


def _number(meta: Mapping[str, Any], value: float, path: str) -> Iterator[str]:
    if "min" in meta and value < meta["min"]:
        yield f"Value {value} at '{path}' failed to satisfy constraint: Member must have value greater than or equal to {meta['min']}"
    if "max" in meta and value > meta["max"]:
        yield f"Value {value} at '{path}' failed to satisfy constraint: Member must have value less than or equal to {meta['max']}"


def _size(meta: Mapping[str, Any], n: int, path: str, unit: str) -> Iterator[str]:
    if "min" in meta and n < meta["min"]:
        yield f"Value at '{path}' failed to satisfy constraint: Member must have length greater than or equal to {meta['min']} ({n} {unit})"
    if "max" in meta and n > meta["max"]:
        yield f"Value at '{path}' failed to satisfy constraint: Member must have length less than or equal to {meta['max']} ({n} {unit})"


def _show(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:77] + "...")


def validation_error(operation: str, messages: list[str]) -> ClientError:
    """The ``ClientError`` AWS returns for a request that breaks its model: ``ValidationException``,
    HTTP 400, ``"N validation error(s) detected: ..."`` (the message form of AWS's JSON services)."""
    n = len(messages)
    text = f"{n} validation error{'s' if n > 1 else ''} detected: " + "; ".join(messages)
    response: Any = {
        "Error": {"Code": "ValidationException", "Message": text},
        "ResponseMetadata": {"HTTPStatusCode": 400},
    }
    return ClientError(response, operation)


def validate(service: str, operation: str, params: Mapping[str, Any]) -> None:
    """Check ``params`` of ``service`` ``operation`` (botocore names: ``"sagemaker"``,
    ``"CreateModelPackage"``) against the service model. Raises :func:`validation_error`'s
    ``ClientError`` (``ValidationException``) naming every member that breaks a constraint."""
    model = _operation(service, operation)
    found = list(violations(model.input_shape, params, ""))
    if found:
        raise validation_error(operation, found)


def check_call(params: Mapping[str, Any], model: OperationModel, **_: Any) -> None:
    """A ``before-parameter-build`` handler: :func:`validate` for the call being made."""
    found = list(violations(model.input_shape, params, ""))
    if found:
        raise validation_error(model.name, found)


def _when_active(params: Mapping[str, Any], model: OperationModel, **kwargs: Any) -> None:
    if _STATE["active"]:
        check_call(params, model, **kwargs)


def register(client: Any) -> None:
    """Validate every call of ``client`` (a boto3/botocore client) before it is sent."""
    client.meta.events.register(EVENT, check_call, unique_id="sagepipe-validation")


def install() -> None:
    """Register the check on every botocore session created from now on (``botocore.handlers.BUILTIN_HANDLERS``,
    as moto registers its ``before-send`` stubber); it acts only while :func:`set_active` has it on."""
    if (EVENT, _when_active) not in botocore.handlers.BUILTIN_HANDLERS:
        botocore.handlers.BUILTIN_HANDLERS.append((EVENT, _when_active))


def set_active(on: bool) -> bool:
    """Switch the installed check on or off (process-wide); returns the previous setting."""
    before = _STATE["active"]
    _STATE["active"] = on
    return before


# ------------------------------------------------------------------------------------- server side
#: The twin's patch of moto's request dispatch (registered in :mod:`sagepipe.twin.patches`).
SERVER_SITES = ("moto.core.responses:BaseResponse.call_action",)
_SERVER_STATE: dict[str, Any] = {"checked": 0, "refused": 0, "unparsed": 0}


def request_params(response: Any) -> tuple[str, str, dict[str, Any]] | None:
    """The (botocore service name, operation name, parameters) of the request a moto ``BaseResponse`` holds.

    Parameters are parsed from the wire (JSON, query, rest-json, rest-xml) by moto's own protocol parsers
    (``moto.core.parse.PROTOCOL_PARSERS``, driven by botocore's operation model), so the server checks what
    any client sent - boto3, the sagemaker SDK, a notebook's plain HTTP - not what a client-side hook saw.
    None when the operation is not in the service model (moto-only routes such as ``/moto-api``).
    """
    from botocore.model import OperationNotFoundError
    from moto.core.parse import PROTOCOL_PARSERS
    from moto.core.request import determine_request_protocol
    from moto.core.utils import get_service_model

    service = getattr(response, "boto3_service_name", None)
    request = getattr(response, "normalized_request", None)
    if not service or request is None:
        return None
    try:
        action = response._get_action()
        if not action:
            return None
        service_model = get_service_model(service)
        operation = service_model.operation_model(action)
    except (OperationNotFoundError, KeyError, AttributeError):
        return None
    protocol = determine_request_protocol(service_model, request.content_type)
    parser = PROTOCOL_PARSERS[protocol](operation, map_type=dict)
    parsed = parser.parse(
        {
            "method": request.method,
            "values": request.values,
            "headers": request.headers,
            "body": request.data,
            "url_path": request.path,
            "url_params": getattr(response, "uri_match", None) or {},
        }
    )
    return service_model.service_name, operation.name, dict(parsed)


def server_check(response: Any) -> ClientError | None:
    """:func:`validate` the request ``response`` (a moto ``BaseResponse`` after ``setup_class``) holds.

    Returns the ``ValidationException`` to answer with, or None (valid, or not an operation of the model).
    A request moto's parsers cannot read is left to moto (it answers as it would have).
    """
    try:
        found = request_params(response)
    except Exception:  # noqa: BLE001 - a gap of moto's parsers must not turn a valid call into an error
        _SERVER_STATE["unparsed"] += 1  # counted: tests assert it stays 0 for sagepipe's own calls
        return None
    if found is None:
        return None
    service, operation, params = found
    _SERVER_STATE["checked"] += 1
    try:
        validate(service, operation, params)
    except ClientError as exc:
        _SERVER_STATE["refused"] += 1
        return exc
    return None


def server_counts() -> dict[str, int]:
    """How many requests the server-side check has read, refused and failed to parse in this process."""
    return dict(_SERVER_STATE)


def check_server_sites() -> None:
    """moto's dispatch, its protocol parsers and the request fields read by :func:`request_params` must exist."""
    import inspect

    from moto.core import parse, request, responses, utils

    from .patches import MotoInternalsChanged

    missing = [name for name in ("PROTOCOL_PARSERS",) if not hasattr(parse, name)]
    missing += [n for n in ("determine_request_protocol",) if not hasattr(request, n)]
    missing += [n for n in ("get_service_model",) if not hasattr(utils, n)]
    base = responses.BaseResponse
    missing += [n for n in ("call_action", "_get_action", "serialized", "setup_class") if not hasattr(base, n)]
    if not missing and "normalized_request" not in inspect.getsource(base.setup_class):
        missing.append("BaseResponse.setup_class sets normalized_request")
    if not missing and not {"json", "query", "rest-json", "rest-xml"} <= set(parse.PROTOCOL_PARSERS):
        missing.append("PROTOCOL_PARSERS for json, query, rest-json, rest-xml")
    if missing:
        raise MotoInternalsChanged(f"moto internals for the server-side validation are gone: {missing}")


def error_response(protocol: str, message: str, code: str = "ValidationException") -> tuple[int, dict[str, str], str]:
    """The HTTP response AWS sends for a request that breaks the model, in ``protocol``'s error shape.

    JSON protocols (awsJson1.0/1.1, restJson1): HTTP 400, ``x-amzn-ErrorType: <code>`` and a
    ``__type``/``message`` body, ``code`` being ``ValidationException`` or the service's own modelled
    validation error (SageMaker Runtime: ``ValidationError``); query protocols: ``<ErrorResponse><Error>
    <Type>Sender</Type><Code>ValidationError</Code>``, the code those services use; rest-xml (S3):
    ``InvalidArgument``.
    """
    from xml.sax.saxutils import escape

    if protocol in {"json", "rest-json"}:
        content_type = "application/x-amz-json-1.1" if protocol == "json" else "application/json"
        body = {"__type": code, "message": message, "Message": message}
        headers = {"Content-Type": content_type, "x-amzn-ErrorType": code}
        return 400, headers, json.dumps(body)
    if protocol == "rest-xml":
        xml = f"<Error><Code>InvalidArgument</Code><Message>{escape(message)}</Message></Error>"
        return 400, {"Content-Type": "application/xml"}, xml
    xml = (
        "<ErrorResponse><Error><Type>Sender</Type><Code>ValidationError</Code>"
        f"<Message>{escape(message)}</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    )
    return 400, {"Content-Type": "text/xml"}, xml


def apply_server_check() -> None:
    """Wrap ``BaseResponse.call_action``: a request that breaks its service model is answered with AWS's
    validation error (HTTP 400) in the service's own protocol (:func:`error_response`), before moto acts."""
    from moto.core.request import determine_request_protocol
    from moto.core.responses import BaseResponse
    from moto.core.utils import get_service_model

    from .patches import _APPLIED, _install, patched_by

    original = BaseResponse.call_action
    if patched_by(original) == "server_validation":
        return
    _APPLIED.setdefault("server_validation.call_action", original)  # bench/strictness.py's lax blocks

    def call_action(self: Any) -> Any:
        refused = server_check(self)
        if refused is None:
            return original(self)
        model = get_service_model(self.boto3_service_name)
        protocol = determine_request_protocol(model, self.normalized_request.content_type)
        modelled = "ValidationError" in model.shape_names  # e.g. SageMaker Runtime's own validation error
        code = "ValidationError" if modelled else "ValidationException"
        return error_response(protocol, str(refused.response["Error"]["Message"]), code)

    _install("server_validation", BaseResponse, "call_action", call_action)


#: S3's entry points (moto routes S3 around ``call_action``): bucket and key requests after ``setup_class``.
S3_SITES = ("moto.s3.responses:S3Response._bucket_response", "moto.s3.responses:S3Response._key_response")
#: S3's own codes for a member whose value it does not accept (S3 API Reference, "Error responses");
#: every other breach is ``InvalidArgument``.
_S3_CODES = {"StorageClass": ("InvalidStorageClass", "The storage class you specified is not valid")}


def s3_request_params(response: Any, request: Any) -> tuple[str, dict[str, Any]] | None:
    """(operation name, parameters) of the S3 request ``request`` that moto ``S3Response`` ``response``
    holds (after ``setup_class``): the operation is matched from the method, path and query string by
    moto's router over botocore's model (``moto.core.routing.get_service_router``) and the parameters are
    read by moto's rest-xml parser, as for the other services. Path-style addressing (``/bucket/key``, what
    the twin's clients use). None when no operation of the model matches."""
    from moto.core.parse import PROTOCOL_PARSERS
    from moto.core.routing import get_service_router

    try:
        operation, uri_params = get_service_router("s3").match(request)
    except Exception:  # noqa: BLE001 - werkzeug's NotFound / NotImplementedError: not a modelled operation
        return None
    r = response.normalized_request
    parsed = PROTOCOL_PARSERS["rest-xml"](operation, map_type=dict).parse(
        {
            "method": r.method,
            "values": r.values,
            "headers": r.headers,
            "body": r.data,
            "url_path": r.path,
            "url_params": uri_params or {},
        }
    )
    return operation.name, dict(parsed)


def s3_server_check(response: Any, request: Any) -> tuple[int, dict[str, str], str] | None:
    """The S3 error response for a request that breaks the model (``InvalidArgument``, or S3's own code
    for the member: ``InvalidStorageClass``), or None. Unparsable requests are counted and left to moto."""
    from xml.sax.saxutils import escape

    try:
        found = s3_request_params(response, request)
    except Exception:  # noqa: BLE001 - a gap of moto's parsers must not turn a valid call into an error
        _SERVER_STATE["unparsed"] += 1
        return None
    if found is None:
        return None
    operation, params = found
    _SERVER_STATE["checked"] += 1
    shape = _operation("s3", operation).input_shape
    messages = list(violations(shape, params, "")) if shape is not None else []
    if not messages:
        return None
    _SERVER_STATE["refused"] += 1
    member = next((m for m in _S3_CODES if f"'{m}'" in messages[0]), None)
    if member is not None:
        code, text = _S3_CODES[member]
    else:
        code, text = "InvalidArgument", str(validation_error(operation, messages).response["Error"]["Message"])
    xml = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{escape(text)}</Message>'
        f"<RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId></Error>"
    )
    return 400, {"Content-Type": "application/xml"}, xml


def check_s3_sites() -> None:
    """moto's S3 entry points, its router and the rest-xml parser must still exist."""
    from moto.core import parse, routing
    from moto.s3.responses import S3Response

    from .patches import MotoInternalsChanged, _require

    _require(S3Response, "_bucket_response", ["self", "request", "full_url"])
    _require(S3Response, "_key_response", ["self", "request", "full_url"])
    if not hasattr(routing, "get_service_router") or "rest-xml" not in parse.PROTOCOL_PARSERS:
        raise MotoInternalsChanged("moto's service router or rest-xml parser is gone (S3 server-side validation)")


def apply_s3_check() -> None:
    """Wrap S3's bucket and key dispatch: a request that breaks S3's model is answered 400 before moto acts."""
    from moto.s3.responses import S3Response

    from .patches import _APPLIED, _install

    for name in ("_bucket_response", "_key_response"):
        original = _APPLIED.setdefault(f"s3_server_validation.{name}", getattr(S3Response, name))

        def checked(self: Any, request: Any, full_url: str, _original: Any = original) -> Any:
            refused = s3_server_check(self, request)
            return refused if refused is not None else _original(self, request, full_url)

        _install("s3_server_validation", S3Response, name, checked)


PATCHES: tuple[Patch, ...] = (
    Patch("server_validation", SERVER_SITES, lambda: check_server_sites(), lambda: apply_server_check()),
    Patch("s3_server_validation", S3_SITES, lambda: check_s3_sites(), lambda: apply_s3_check()),
)
