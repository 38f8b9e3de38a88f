"""The inference API's logic (``/v1`` = the REST API stage).

Request checks, validation of every record against the live model version's ``schema.json``, the InvokeEndpoint
call, and the mapping of SageMaker errors to HTTP statuses. Stdlib + botocore only (the predict function's cold
start imports it).

Follows the sagemaker-runtime InvokeEndpoint API reference (6 MB payload limit, ``ModelError`` with
``OriginalStatusCode``/``OriginalMessage``, ``ValidationError`` for a missing or not-InService endpoint,
``ThrottlingException``, ``ServiceUnavailable`` 503 when no instance can serve) and the SageMaker DescribeEndpoint / DescribeEndpointConfig / DescribeModel
references for finding the live model version.

Finding the live version: DescribeEndpoint(``<prefix>-<model>``) → ``EndpointConfigName`` →
DescribeEndpointConfig → ``ModelName`` → DescribeModel → ``PrimaryContainer.ModelDataUrl`` → the
``model.tar.gz`` in the artifacts bucket → ``schema.json`` (+ ``evaluation.json`` for metrics). Versions are
cached per EndpointConfigName; DescribeEndpoint is re-checked at most every ``ttl_s`` seconds. The model
registry is not read on this path: the artifact the endpoint serves is the source of truth.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

from .aws import (
    VALIDATION_CODES,
    ArtifactError,
    error_code,
    error_kind,
    error_message,
    read_artifact_members,
    split_s3_uri,
)
from .naming import MODEL_NAME_RE, endpoint_name
from .registry import model_selection
from .report import report_uri
from .schema import UNSEEN_MAP, UNSEEN_REJECT, ModelSchema, SchemaError, check_records, parse_csv

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # InvokeEndpoint limit
#: InvokeEndpoint's limit for a serverless endpoint (SageMaker Developer Guide, "Serverless Inference").
MAX_SERVERLESS_PAYLOAD_BYTES = 4 * 1024 * 1024
MAX_WARNINGS = 50  # warnings listed in a response (``warning_count`` says how many in all)
SUPPORTED_CONTENT_TYPES = ("application/json", "text/csv")
SERVING_STATUSES = {"InService", "Updating", "SystemUpdating", "RollingBack", "UpdateRollbackFailed"}


@dataclass
class ApiError(Exception):
    """An error answered to the client: HTTP ``status``, stable ``code``, human ``message``.

    Rendered as ``{"error": {"code", "message", **details}}``; ``headers`` are added to the response
    (``Retry-After`` on 429/503).
    """

    status: int
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        """The JSON body ``{"error": {"code", "message", ...details}}``."""
        return {"error": {"code": self.code, "message": self.message, **self.details}}

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


@dataclass(frozen=True)
class Settings:
    """Predict function settings from its environment (template parameters).

    ``prefix``: ``RESOURCE_PREFIX``; ``max_instances``: ``MAX_BATCH_SIZE`` (records per request);
    ``unseen``: ``UNSEEN_CATEGORY_POLICY`` (``reject`` | ``map_to_unknown``); ``ttl_s``:
    ``MODEL_CACHE_TTL_SECONDS`` (how stale the live-version check may be).
    """

    prefix: str = "sagepipe"
    max_instances: int = 100
    unseen: str = UNSEEN_REJECT
    ttl_s: float = 10.0

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Settings:
        """Read the settings; raises ``ValueError`` on a bad value (a deploy error, not a request error)."""
        unseen = env.get("UNSEEN_CATEGORY_POLICY", UNSEEN_REJECT)
        if unseen not in (UNSEEN_REJECT, UNSEEN_MAP):
            raise ValueError(f"UNSEEN_CATEGORY_POLICY must be {UNSEEN_REJECT} or {UNSEEN_MAP}, got {unseen!r}")
        return cls(
            prefix=env.get("RESOURCE_PREFIX", "sagepipe"),
            max_instances=int(env.get("MAX_BATCH_SIZE", "100")),
            unseen=unseen,
            ttl_s=float(env.get("MODEL_CACHE_TTL_SECONDS", "10")),
        )


# ----------------------------------------------------------------------------------------- request
def header(headers: dict[str, str] | None, name: str) -> str | None:
    """Case-insensitive header lookup (API Gateway passes the client's spelling)."""
    low = name.lower()
    for key, value in (headers or {}).items():
        if key.lower() == low:
            return value
    return None


def media_type(content_type: str | None) -> str:
    """``text/csv; charset=utf-8`` → ``text/csv`` (lower-cased, parameters dropped)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def check_model_name(model: str) -> None:
    """Raises 400 ``invalid_model_name`` unless ``model`` matches ``^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$``."""
    if not MODEL_NAME_RE.match(model or ""):
        raise ApiError(400, "invalid_model_name", "model name must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")


def read_body(body: str | None, is_base64: bool | None) -> bytes:
    """The raw request body of a REST (v1) / HTTP (v2) proxy event; base64 bodies are decoded.

    Raises 400 ``invalid_base64``.
    """
    if body is None:
        return b""
    if is_base64:
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ApiError(400, "invalid_base64", "isBase64Encoded body is not valid base64") from exc
    return body.encode("utf-8", "surrogatepass")


def per_record_flag(value: str | None) -> bool:
    """The ``per_record`` query parameter: absent or ``false`` → False, ``true`` → True.

    Raises 400 ``invalid_parameter`` for any other value.
    """
    if value is None or value == "false":
        return False
    if value == "true":
        return True
    raise ApiError(
        400, "invalid_parameter", "query parameter per_record must be true or false", {"parameter": "per_record"}
    )


def check_request(model: str, body: bytes, content_type: str | None, content_encoding: str | None = None) -> str:
    """Checks made before anything else is called. Returns the media type.

    Raises :class:`ApiError`: 400 ``invalid_model_name``; 413 ``payload_too_large`` (> 6 MB);
    415 ``unsupported_content_encoding`` (a ``Content-Encoding`` other than ``identity``, e.g. gzip: the API
    takes uncompressed bodies; RFC 9110 15.5.16); 415 ``unsupported_media_type`` (missing or not JSON/CSV);
    400 ``empty_body``.
    """
    check_model_name(model)
    if len(body) > MAX_PAYLOAD_BYTES:
        raise ApiError(413, "payload_too_large", f"body is {len(body)} bytes; the limit is {MAX_PAYLOAD_BYTES}")
    codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
    if any(c != "identity" for c in codings):
        raise ApiError(
            415,
            "unsupported_content_encoding",
            f"Content-Encoding {(content_encoding or '').strip()!r} is not supported: send the body uncompressed",
            headers={"Accept-Encoding": "identity"},
        )
    mt = media_type(content_type)
    if mt not in SUPPORTED_CONTENT_TYPES:
        raise ApiError(415, "unsupported_media_type", f"Content-Type must be one of {list(SUPPORTED_CONTENT_TYPES)}")
    if not body.strip():
        raise ApiError(400, "empty_body", "request body is empty")
    return mt


def parse_instances(body: bytes, mt: str, schema: ModelSchema | None, max_instances: int) -> list[Any]:
    """Body → list of records (dicts or value lists). CSV needs the ``schema`` (header detection).

    Raises 400 ``malformed_json`` / ``missing_instances`` / ``malformed_csv`` / ``invalid_encoding``;
    400 ``too_many_instances`` above ``max_instances``.
    """
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_encoding", "body is not valid UTF-8") from exc
    if mt == "application/json":
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise ApiError(
                400, "malformed_json", f"body is not valid JSON (line {getattr(exc, 'lineno', '?')})"
            ) from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("instances"), list) or not doc["instances"]:
            raise ApiError(400, "missing_instances", 'body must be {"instances": [{feature: value, ...}, ...]}')
        instances: list[Any] = doc["instances"]
    else:
        try:
            instances = parse_csv(schema, text) if schema is not None else []
        except Exception as exc:  # csv.Error, NUL bytes ...
            raise ApiError(400, "malformed_csv", f"body is not valid CSV: {type(exc).__name__}") from exc
        if not instances:
            raise ApiError(400, "missing_instances", "CSV body has no data rows")
    if len(instances) > max_instances:
        raise ApiError(
            400,
            "too_many_instances",
            f"{len(instances)} instances; the limit is {max_instances} per request",
            {"limit": max_instances},
        )
    return instances


# ------------------------------------------------------------------------------ live model version
@dataclass(frozen=True)
class LiveVersion:
    """The model version an endpoint serves: names, artifact, parsed schema and evaluation metrics."""

    model: str
    endpoint: str
    endpoint_config: str
    model_name: str
    model_data_url: str
    schema: ModelSchema
    evaluation: dict[str, Any] | None
    deployed_at: str | None
    status: str = "InService"
    max_payload_bytes: int = MAX_PAYLOAD_BYTES  # 4 MB for a serverless variant


def _iso(value: Any) -> str | None:
    return value.isoformat() if hasattr(value, "isoformat") else (str(value) if value else None)


def _read_artifact(s3: Any, url: str) -> tuple[Any, dict[str, Any] | None]:
    """``s3://bucket/key/model.tar.gz`` → (parsed ``schema.json``, parsed ``evaluation.json`` or None).

    Raises :class:`ApiError` 503 when ``url`` is not an S3 URI, :class:`SchemaError` when the tarball has no
    ``schema.json``, :class:`ArtifactError` / ``ValueError`` when it or a report cannot be read.
    """
    try:
        split_s3_uri(url)
    except ArtifactError as exc:
        raise ApiError(
            503, "model_unavailable", "the live model has no S3 artifact", headers={"Retry-After": "30"}
        ) from exc
    found = read_artifact_members(s3, url, ("schema.json", "evaluation.json"))
    if "schema.json" not in found:
        raise SchemaError(f"{url} has no schema.json")
    evaluation = json.loads(found["evaluation.json"]) if "evaluation.json" in found else None
    return json.loads(found["schema.json"]), evaluation if isinstance(evaluation, dict) else None


class LiveModels:
    """Cache of live model versions. Thread-safe.

    ``sm``/``s3``: botocore clients (or zero-argument factories); ``ttl_s``: how long a DescribeEndpoint
    answer is trusted; ``clock``: monotonic seconds (tests inject one).

    ``get(prefix, model)`` → :class:`LiveVersion`, raising :class:`ApiError` 404 ``model_not_found``, 503
    ``model_unavailable`` (+ ``Retry-After``) when the endpoint is not serving, 429 when SageMaker
    throttles the Describe calls and nothing is cached, 502 ``model_error`` when the artifact has no
    readable schema.
    """

    def __init__(self, sm: Any, s3: Any, ttl_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._sm, self._s3, self.ttl_s, self.clock = sm, s3, ttl_s, clock
        self._checked: dict[str, tuple[float, str, str]] = {}  # endpoint -> (checked at, config, status)
        self._versions: dict[str, LiveVersion] = {}  # endpoint config -> version
        self._lock = threading.Lock()

    @staticmethod
    def _resolve(value: Any) -> Any:
        """A client, or a zero-argument factory of one (created on first use: keeps cold-start imports small)."""
        return value() if callable(value) and not hasattr(value, "meta") else value

    @property
    def sm(self) -> Any:
        """The SageMaker control-plane client."""
        self._sm = self._resolve(self._sm)
        return self._sm

    @property
    def s3(self) -> Any:
        """The S3 client (artifact reads)."""
        self._s3 = self._resolve(self._s3)
        return self._s3

    def get(self, prefix: str, model: str) -> LiveVersion:
        """The version ``<prefix>-<model>`` serves now (at most ``ttl_s`` stale)."""
        endpoint = endpoint_name(prefix, model)
        now = self.clock()
        seen = self._checked.get(endpoint)
        if seen and now - seen[0] < self.ttl_s and seen[1] in self._versions:
            return self._versions[seen[1]]
        try:
            ep = self.sm.describe_endpoint(EndpointName=endpoint)
        except ClientError as exc:
            if error_code(exc) in VALIDATION_CODES or error_kind(exc) == "not_found":
                raise ApiError(404, "model_not_found", f"no endpoint serves model {model!r}", {"model": model}) from exc
            if seen and seen[1] in self._versions:  # SageMaker control plane trouble: serve the cached version
                return self._versions[seen[1]]
            if error_kind(exc) == "throttled":
                raise ApiError(
                    429, "throttled", "too many requests; retry with backoff", headers={"Retry-After": "1"}
                ) from exc
            raise
        status, config = ep.get("EndpointStatus", ""), ep.get("EndpointConfigName", "")
        if status not in SERVING_STATUSES or not config:
            raise ApiError(
                503,
                "model_unavailable",
                f"the endpoint for model {model!r} is {status or 'not ready'}",
                {"model": model, "endpoint_status": status},
                headers={"Retry-After": "30"},
            )
        with self._lock:
            self._checked[endpoint] = (now, config, status)
            cached = self._versions.get(config)
        if cached is not None:
            return cached
        version = self._load(model, endpoint, config, ep)
        with self._lock:
            self._versions[config] = version
        return version

    def _load(self, model: str, endpoint: str, config: str, ep: dict[str, Any]) -> LiveVersion:
        cfg = self.sm.describe_endpoint_config(EndpointConfigName=config)
        model_name = cfg["ProductionVariants"][0]["ModelName"]
        desc = self.sm.describe_model(ModelName=model_name)
        url = (desc.get("PrimaryContainer") or {}).get("ModelDataUrl") or ""
        try:
            raw_schema, evaluation = _read_artifact(self.s3, url)
            schema = ModelSchema.parse(raw_schema)
        except (SchemaError, ValueError, KeyError) as exc:  # ArtifactError and JSON errors are ValueErrors
            raise ApiError(
                502, "model_error", "the live model version has no readable schema.json", {"model": model}
            ) from exc
        return LiveVersion(
            model=model,
            endpoint=endpoint,
            endpoint_config=config,
            model_name=model_name,
            model_data_url=url,
            schema=schema,
            evaluation=evaluation,
            deployed_at=_iso(ep.get("LastModifiedTime") or cfg.get("CreationTime")),
            status=str(ep.get("EndpointStatus")),
            max_payload_bytes=(
                MAX_SERVERLESS_PAYLOAD_BYTES
                if cfg["ProductionVariants"][0].get("ServerlessConfig")
                else MAX_PAYLOAD_BYTES
            ),
        )


# ------------------------------------------------------------------------------------- operations
def _runtime_error(exc: ClientError, model: str) -> ApiError:
    """Map an InvokeEndpoint ``ClientError`` (see module docstring) to an :class:`ApiError`."""
    code, msg = error_code(exc), error_message(exc)
    if code == "ModelError":
        original = int(str(exc.response.get("OriginalStatusCode") or 500))  # not in botocore's typed shape
        if 400 <= original < 500:
            return ApiError(
                422,
                "model_rejected_input",
                str(exc.response.get("OriginalMessage") or msg)[:1000],
                {"model_status": original},
            )
        return ApiError(502, "model_error", "the model failed to answer", {"model_status": original})
    if error_kind(exc) == "throttled":
        return ApiError(429, "throttled", "too many requests; retry with backoff", headers={"Retry-After": "1"})
    if code in {"ServiceUnavailable", "InternalFailure"}:  # no healthy instance now (e.g. one being replaced)
        return ApiError(
            503,
            "model_unavailable",
            f"the endpoint for model {model!r} has no healthy instance right now; retry shortly",
            {"model": model, "sagemaker_error": code},
            headers={"Retry-After": "5"},
        )
    if code == "ModelNotReadyException" or code in VALIDATION_CODES:
        detail = "not found" if "not found" in msg.lower() else "not in service"
        return ApiError(
            503,
            "model_unavailable",
            f"the endpoint for model {model!r} is {detail}",
            {"model": model},
            headers={"Retry-After": "30"},
        )
    return ApiError(502, "model_error", f"SageMaker answered {code or 'an error'}")


def predict(
    runtime: Any,
    live: LiveModels,
    settings: Settings,
    *,
    model: str,
    body: bytes,
    content_type: str | None,
    per_record: bool = False,
    content_encoding: str | None = None,
    inference_id: str | None = None,
) -> dict[str, Any]:
    """``POST /models/{model}/predictions``: check, validate against the live schema, invoke.

    Returns ``{"predictions": [{"label", "probabilities": {label: p}} | {"value"}], "model", "version",
    "endpoint", "endpoint_config", "variant", "warnings"?, "warning_count"?}``. Raises :class:`ApiError`
    (status table in ``api/openapi.yaml``): 400/413/415 before any AWS call, 404/503 from the live-version
    lookup, 422 ``invalid_instances`` (``errors`` name the record ``index`` and ``field``), then the
    InvokeEndpoint mapping: ModelError 4xx → 422, 5xx → 502, throttling → 429, not serving → 503, timeout
    → 504.

    A missing feature that training never saw missing is sent on for the model to impute, with a
    ``missing_feature_imputed`` warning naming the record and the fields, unless the version's
    ``schema.json`` says ``missing_features: reject`` (the per-model config's policy): then it is an error.

    ``per_record``: a record that breaks the schema does not fail the request: the good ones are predicted,
    ``predictions`` is aligned with the instances (``null`` for a rejected one) and the answer adds
    ``"errors"`` and ``"error_count"`` (200, even when every record is rejected: then SageMaker is not
    called). Errors of the request as a whole (shape, size, model) stay 4xx.

    ``content_encoding``: the request's ``Content-Encoding`` header (415 unless absent or ``identity``).
    ``inference_id``: sent as InvokeEndpoint's ``InferenceId`` (the API's request id, so a data capture
    record names the request: ``eventMetadata.inferenceId``); None or one breaking the service model's
    constraint (1-64 printable characters, not starting with whitespace) is not sent.
    """
    mt = check_request(model, body, content_type, content_encoding)
    if mt == "application/json":
        instances = parse_instances(body, mt, None, settings.max_instances)  # malformed JSON: no AWS call
    version = live.get(settings.prefix, model)
    if mt == "text/csv":
        instances = parse_instances(body, mt, version.schema, settings.max_instances)
    checked = check_records(version.schema, instances, unseen=settings.unseen)
    if checked.total and not per_record:
        raise ApiError(
            422,
            "invalid_instances",
            f"{checked.total} field(s) do not match the schema of model version {version.model_name}",
            {"errors": checked.errors, "error_count": checked.total, "version": version.model_name},
        )
    good = [(i, r) for i, r in enumerate(checked.records) if r is not None]
    predicted: list[Any] = []
    variant = None
    if good:
        predicted, variant = _invoke(runtime, version, model, [r for _, r in good], inference_id)
        if len(predicted) != len(good):
            raise ApiError(502, "model_error", "the model returned an unexpected answer")
    predictions: list[Any] = [None] * len(instances)
    for (i, _), prediction in zip(good, predicted, strict=True):
        predictions[i] = prediction
    out: dict[str, Any] = {
        "predictions": predictions if per_record else predicted,
        "model": model,
        "version": version.model_name,
        "endpoint": version.endpoint,
        "endpoint_config": version.endpoint_config,
        "variant": variant,
    }
    if per_record:
        out["errors"] = checked.errors
        out["error_count"] = checked.total
    if checked.warnings:
        out["warnings"] = checked.warnings[:MAX_WARNINGS]
        out["warning_count"] = len(checked.warnings)
    return out


#: InvokeEndpoint ``InferenceId``: 1-64 characters, pattern ``\A\S[\p{Print}]*\z`` (sagemaker-runtime model).
_INFERENCE_ID_RE = re.compile(r"\A\S[\x20-\x7e]{0,63}\Z")


def _invoke(
    runtime: Any, version: LiveVersion, model: str, records: list[dict[str, Any]], inference_id: str | None = None
) -> tuple[list[Any], Any]:
    """InvokeEndpoint with ``{"instances": records}``; ``(predictions, InvokedProductionVariant)``.

    ``InferenceId`` is sent when ``inference_id`` is given and fits the service model (else left out).
    """
    payload = json.dumps({"instances": records}, separators=(",", ":")).encode()
    if len(payload) > version.max_payload_bytes:
        raise ApiError(
            413,
            "payload_too_large",
            f"the records are {len(payload)} bytes for the model; endpoint {version.endpoint} takes at most"
            f" {version.max_payload_bytes} (serverless: 4 MB): send fewer records per request",
        )
    extra = {"InferenceId": inference_id} if inference_id and _INFERENCE_ID_RE.match(inference_id) else {}
    try:
        resp = runtime.invoke_endpoint(
            EndpointName=version.endpoint,
            ContentType="application/json",
            Accept="application/json",
            Body=payload,
            **extra,
        )
        raw = resp["Body"].read()
    except (ReadTimeoutError, ConnectTimeoutError) as exc:
        raise ApiError(504, "model_timeout", "the model did not answer in time") from exc
    except EndpointConnectionError as exc:
        raise ApiError(
            503, "model_unavailable", "the model endpoint could not be reached", headers={"Retry-After": "5"}
        ) from exc
    except ClientError as exc:
        raise _runtime_error(exc, model) from exc
    try:
        result = json.loads(raw)
        predictions = result["predictions"]
        if not isinstance(predictions, list):
            raise TypeError
    except (ValueError, KeyError, TypeError) as exc:
        raise ApiError(502, "model_error", "the model returned an unexpected answer") from exc
    return predictions, resp.get("InvokedProductionVariant")


def describe(live: LiveModels, settings: Settings, model: str) -> dict[str, Any]:
    """``GET /models/{model}``: the live version.

    Returns ``{"model", "version", "endpoint", "endpoint_config", "status", "deployed_at", "problem_type",
    "labels", "metrics", "report", "schema_change", "model_selection", "schema"}`` (``metrics``: the test-split metrics of
    ``evaluation.json``; ``report``: the ``s3://`` URI of the run report the pipeline wrote next to the
    artifact, :func:`sagepipe_core.report.report_uri`; ``schema_change``: how this version's features
    differ from those of the version it replaced, ``{"added", "removed", "retyped", "counts"}``, from
    ``evaluation.json`` ``champion.schema_diff``, None when unchanged or there was none;
    ``model_selection``: the candidate chosen and the runner-up, :func:`.registry.model_selection` of its
    ``evaluation.json``, None for a model trained before candidates). Raises :class:`ApiError`
    400/404/503/429/502 as :class:`LiveModels`.
    """
    check_model_name(model)
    v = live.get(settings.prefix, model)
    metrics = ((v.evaluation or {}).get("metrics") or {}).get("test") or {}
    champion = (v.evaluation or {}).get("champion")
    return {
        "model": model,
        "version": v.model_name,
        "endpoint": v.endpoint,
        "endpoint_config": v.endpoint_config,
        "status": v.status,
        "deployed_at": v.deployed_at,
        "problem_type": v.schema.problem_type,
        "labels": list(v.schema.labels) if v.schema.labels else None,
        "metrics": metrics,
        "report": report_uri(v.model_data_url),
        "schema_change": (champion.get("schema_diff") or None) if isinstance(champion, dict) else None,
        "model_selection": model_selection(v.evaluation),
        "schema": {
            "features": v.schema.raw.get("features", []),
            "feature_order": list(v.schema.feature_order),
            "target": v.schema.target,
        },
    }
