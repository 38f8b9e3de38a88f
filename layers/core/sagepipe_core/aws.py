"""The AWS chores every step repeats: classifying a ``ClientError`` and reading members of ``model.tar.gz``.

Stdlib + botocore only: the predict function's slim layer (no pydantic) imports it on its cold start.

A ``ClientError`` carries the service's answer in ``exc.response`` (botocore docs, "Error handling":
``response["Error"]["Code"]`` / ``["Message"]``). Services spell the same condition differently:
S3 answers ``NoSuchKey`` (``404`` for HeadObject), Step Functions ``ExecutionDoesNotExist`` /
``ExecutionAlreadyExists``, and SageMaker a ``ValidationException`` whose message says "Could not find",
"does not exist" or "already exists" (SageMaker API reference, "Common Errors"). :func:`error_kind`
folds those spellings into one small vocabulary.
"""

from __future__ import annotations

import gzip
import tarfile
import zlib
from collections.abc import Collection
from contextlib import closing
from typing import Any, Literal

from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

from .errors import ServiceRequestError, TransientServiceError

ErrorKind = Literal["not_found", "already_exists", "throttled", "in_progress", "other"]

# botocore's union of throttling codes (botocore.retries.standard.ThrottledRetryableChecker) plus the
# runtime spellings; tests/unit/test_aws.py checks that it still covers botocore's list.
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
NOT_FOUND_CODES = frozenset(
    {
        "NoSuchKey",  # S3 GetObject
        "404",  # S3 HeadObject (no body, so the HTTP status is the code)
        "NotFound",
        "ResourceNotFound",  # SageMaker (model package groups, some Describe calls)
        "ResourceNotFoundException",
        "ExecutionDoesNotExist",  # Step Functions DescribeExecution
        "StateMachineDoesNotExist",
    }
)
ALREADY_EXISTS_CODES = frozenset({"ExecutionAlreadyExists", "ResourceInUse", "AlreadyExistsException"})
VALIDATION_CODES = frozenset({"ValidationException", "ValidationError"})  # control plane / sagemaker-runtime
_NOT_FOUND_PHRASES = ("could not find", "does not exist", "not found")


def error_code(exc: ClientError) -> str:
    """The service's error code (``response["Error"]["Code"]``), ``""`` when the response has none."""
    return str(exc.response.get("Error", {}).get("Code", "") or "")


def error_message(exc: ClientError) -> str:
    """The service's error message (``response["Error"]["Message"]``), ``""`` when the response has none."""
    return str(exc.response.get("Error", {}).get("Message", "") or "")


def error_kind(exc: ClientError) -> ErrorKind:
    """Classify a ``ClientError`` across the services' spellings.

    Args:
        exc: the error botocore raised.

    Returns:
        ``"throttled"`` for a throttling code (botocore's list, or any code containing ``Throttl``);
        ``"already_exists"`` for ``ExecutionAlreadyExists``/``ResourceInUse`` or a message saying
        "already exist(s|ing)" (SageMaker's ValidationException on a Create* of an existing name);
        ``"not_found"`` for a not-found code (``NoSuchKey``, ``404``, ``ExecutionDoesNotExist``,
        ``ResourceNotFound``...) or a ValidationException saying "Could not find" / "does not exist" /
        "not found" (SageMaker Describe* of a missing resource); ``"in_progress"`` for a message saying
        "in-progress" / "in progress" (SageMaker UpdateEndpoint while another update runs);
        ``"other"`` otherwise.
    """
    code, message = error_code(exc), error_message(exc).lower()
    if code in THROTTLING_CODES or "Throttl" in code:
        return "throttled"
    if code in ALREADY_EXISTS_CODES or "already exist" in message:
        return "already_exists"
    if code in NOT_FOUND_CODES or (code in VALIDATION_CODES and any(p in message for p in _NOT_FOUND_PHRASES)):
        return "not_found"
    if "in-progress" in message or "in progress" in message:
        return "in_progress"
    return "other"


# Server-side failures that pass (AWS docs, "Error retries and exponential backoff in AWS": retry
# throttling and 5xx); botocore's standard retry mode treats the same codes as transient.
TRANSIENT_CODES = frozenset(
    {
        "InternalFailure",
        "InternalServerError",
        "InternalError",
        "InternalServerException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
MESSAGE_LIMIT = 1024  # characters of the service's message kept in an error's Cause


def is_transient(exc: ClientError) -> bool:
    """True if the call may succeed when retried later: throttled (:func:`error_kind`), a transient code, or HTTP 5xx.

    Args:
        exc: the error botocore raised (after its own retries).

    Returns:
        Whether a later retry may succeed; False for ``ValidationException``, ``AccessDenied`` and the other 4xx.
    """
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return error_kind(exc) == "throttled" or error_code(exc) in TRANSIENT_CODES or status >= 500


def service_error(exc: Exception) -> TransientServiceError | ServiceRequestError | None:
    """The pipeline error for a failed AWS call, named like the ASL Retry/Catch that handles it.

    Args:
        exc: any exception a step raised.

    Returns:
        :class:`TransientServiceError` (throttling, 5xx, connection or read timeouts: the ASL retries),
        :class:`ServiceRequestError` (any other ``ClientError``: the run fails at once with the reason), or
        None when ``exc`` is not an AWS call's failure.
    """
    if isinstance(exc, ClientError):
        operation = getattr(exc, "operation_name", "") or ""
        code, message = error_code(exc), error_message(exc)[:MESSAGE_LIMIT]
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        text = f"{operation} failed: {code}: {message}"
        kind = TransientServiceError if is_transient(exc) else ServiceRequestError
        return kind(text, operation=operation, code=code, http_status=status)
    if isinstance(exc, ConnectionError | HTTPClientError):  # EndpointConnectionError, Read/ConnectTimeoutError
        return TransientServiceError(f"{type(exc).__name__}: {str(exc)[:MESSAGE_LIMIT]}", code=type(exc).__name__)
    return None


# ------------------------------------------------------------------------------- model artifact
class ArtifactError(ValueError):
    """A model artifact URI that is not ``s3://bucket/key``, or an object that is not a readable gzip tarball."""


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` → ``(bucket, key)``.

    Raises:
        ArtifactError: ``uri`` is not ``s3://`` followed by a bucket and a non-empty key.
    """
    bucket, sep, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket or not sep or not key:
        raise ArtifactError(f"{uri!r} is not an s3://bucket/key URI")
    return bucket, key


def read_artifact_members(s3: Any, model_data_url: str, names: Collection[str]) -> dict[str, bytes]:
    """The bytes of the regular-file members ``names`` of a ``model.tar.gz`` in S3.

    Streams the object (GetObject, tarfile stream mode ``r|gz``) and stops once every name is read, so a
    large ``model.joblib`` after the reports is never downloaded in full. Member names are compared without
    a leading ``./`` (SageMaker's ``tar`` of ``/opt/ml/model`` writes ``./schema.json``).

    Args:
        s3: an S3 client (botocore/boto3, or a fake with ``get_object``).
        model_data_url: ``s3://bucket/key`` of the artifact (DescribeTrainingJob ``ModelArtifacts.S3ModelArtifacts``).
        names: member names to read, e.g. ``{"schema.json", "evaluation.json"}``.

    Returns:
        ``{name: bytes}`` for the members found; a name absent from the tarball is absent from the dict.

    Raises:
        ArtifactError: bad URI, or the object is not a readable gzip tarball (truncated, not gzip...).
        botocore.exceptions.ClientError: from GetObject (``NoSuchKey``, ``AccessDenied``...).
    """
    bucket, key = split_s3_uri(model_data_url)
    wanted = set(names)
    found: dict[str, bytes] = {}
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    try:
        with closing(body), tarfile.open(fileobj=body, mode="r|gz") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if name in wanted and name not in found and member.isfile():
                    fh = tar.extractfile(member)
                    if fh is not None:
                        found[name] = fh.read()
                    if len(found) == len(wanted):
                        break
    except (tarfile.TarError, gzip.BadGzipFile, zlib.error, EOFError) as exc:
        raise ArtifactError(f"{model_data_url} is not a readable model.tar.gz: {type(exc).__name__}: {exc}") from exc
    return found
