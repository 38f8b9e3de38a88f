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
from collections.abc import Iterator, Mapping
from typing import Any

import botocore.handlers
import botocore.session
import regex
from botocore.exceptions import ClientError
from botocore.model import ListShape, MapShape, OperationModel, Shape, StringShape, StructureShape

EVENT = "before-parameter-build"
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
def _operation(service: str, operation: str) -> OperationModel:
    return botocore.session.get_session().get_service_model(service).operation_model(operation)


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
