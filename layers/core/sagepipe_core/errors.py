"""Typed errors, named like the ASL error names that catch them.

Each class name is the ``errorType`` Lambda reports and the name the state machine's ``Catch``/``Retry``
blocks match (``ErrorEquals: ["InvalidDatasetError"]``), so one name is greppable
across Python and ASL (see the Step Functions docs, "Error handling in Step Functions").
"""

from __future__ import annotations

import json
from typing import Any


class SagepipeError(Exception):
    """Base class. ``reason`` is a stable machine-readable code; ``details`` a JSON-safe dict.

    ``str(err)`` is a JSON document ``{"reason": ..., "message": ..., **details}`` so that the
    Step Functions ``Cause`` carried to the failure path is itself machine-readable.
    """

    reason: str = "error"

    def __init__(self, message: str, *, reason: str | None = None, **details: Any) -> None:
        self.message = message
        if reason is not None:
            self.reason = reason
        self.details = details
        super().__init__(self.to_json())

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"reason", "message", **details}`` (JSON-safe)."""
        return {"reason": self.reason, "message": self.message, **self.details}

    def to_json(self) -> str:
        """Return :meth:`to_dict` as compact JSON (used as the exception text / ASL Cause), bounded in size.

        The Cause travels in the state (256 KB limit, ``States.DataLimitExceeded`` cannot be caught) and
        in the notification event, so it is at most :data:`CAUSE_LIMIT` characters: past that, the
        message is cut and every detail longer than :data:`DETAIL_LIMIT` characters of JSON is replaced
        by ``"…"`` and named in ``details_truncated`` (the full record is wherever the step keeps it,
        e.g. the quarantine's ``reason.json``).
        """
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        if len(text) <= CAUSE_LIMIT:
            return text
        doc: dict[str, Any] = {"reason": self.reason, "message": _cut(self.message, MESSAGE_LIMIT)}
        cut: list[str] = []
        for key, value in self.details.items():
            if len(json.dumps(value, default=str)) <= DETAIL_LIMIT:
                doc[key] = value
            else:
                doc[key] = "…"
                cut.append(key)
        doc["details_truncated"] = sorted(cut)
        return json.dumps(doc, sort_keys=True, default=str)[:CAUSE_LIMIT]


CAUSE_LIMIT = 8192  # characters of an error's JSON (its ASL Cause); Step Functions allows 256 KB in all
MESSAGE_LIMIT = 2048
DETAIL_LIMIT = 1024


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class InvalidEventError(SagepipeError):
    """The trigger event has a shape the start function does not understand."""

    reason = "invalid_event"


class InvalidConfigError(SagepipeError):
    """The per-model config (``datasets/<model>/sagepipe.json``) is not valid."""

    reason = "invalid_config"


class InvalidDatasetError(SagepipeError):
    """The uploaded CSV fails a data check; the object is quarantined before this is raised."""

    reason = "invalid_dataset"


class DatasetNotFoundError(SagepipeError):
    """A retrain was requested for a model that has no data set under ``datasets/<model>/``."""

    reason = "dataset_not_found"


class EndpointBusyError(SagepipeError):
    """The endpoint is Creating/Updating/RollingBack; the state machine retries with backoff."""

    reason = "endpoint_busy"


class DeploymentFailedError(SagepipeError):
    """The endpoint did not end InService on the requested EndpointConfigName."""

    reason = "deployment_failed"


class ChampionKeptChangingError(SagepipeError):
    """The live model changed under a run more often than it may be evaluated again; nothing was deployed.

    ``details``: ``regates`` (evaluations against a newer champion so far), ``live`` (the live
    EndpointConfigName). Not the model's fault: the package keeps its status; the run fails and notifies.
    """

    reason = "champion_kept_changing"


class TransientServiceError(SagepipeError):
    """An AWS call failed for a passing reason (throttling, a 5xx, a timeout); the ASL retries with backoff.

    Raised by the pipeline handlers for a ``ClientError`` that :func:`sagepipe_core.aws.is_transient`
    classifies as transient (after botocore's own retries), or a connection/read timeout. ``details``:
    ``service``, ``operation``, ``code``, ``http_status``.
    """

    reason = "transient_service_error"


class ServiceRequestError(SagepipeError):
    """AWS refused a request for good (``ValidationException``, ``AccessDenied``...); not retried.

    The run fails at once with the service's code and message (``details``: ``service``, ``operation``,
    ``code``, ``http_status``). Not a failure of the model, so no model package is marked Rejected for it.
    """

    reason = "service_request_error"


class StateTooLargeError(SagepipeError):
    """A step's result is larger than sagepipe allows a state to carry (``RESULT_LIMIT`` of the handler).

    Step Functions fails an execution whose state passes 256 KB with ``States.DataLimitExceeded``, which no
    ``Catch`` can catch (no notification). A named error is caught (NotifyFailed); ``details``: ``bytes``,
    ``limit``, ``largest`` (the top-level members by size).
    """

    reason = "state_too_large"


# A step's result lands in the execution's state, which Step Functions caps at 256 KB for the whole state
# (past it: States.DataLimitExceeded, which no Catch catches). Each step gets far less than that.
RESULT_LIMIT = 64 * 1024


def check_result_size(result: Any, limit: int = RESULT_LIMIT) -> None:
    """Raise :class:`StateTooLargeError` if ``result``'s JSON is over ``limit`` bytes."""
    size = len(json.dumps(result, default=str).encode())
    if size > limit:
        members = result.items() if isinstance(result, dict) else []
        largest = sorted(((len(json.dumps(v, default=str)), k) for k, v in members), reverse=True)[:5]
        raise StateTooLargeError(
            f"the step's result is {size} bytes; a state may carry at most {limit}",
            bytes=size,
            limit=limit,
            largest={k: n for n, k in largest},
        )


class ModelCodeMissingError(SagepipeError):
    """The model code bundle (script mode's ``sagemaker_submit_directory``) is not in S3.

    The stack's ``ModelCode`` custom resource did not publish it (or it was deleted). The run fails
    before training (ValidateData raises it; the ASL's Catch of :data:`PERMANENT_ERRORS` sends "Pipeline Failed").
    ``details``: ``uri``, ``s3_error``.
    """

    reason = "model_code_missing"


# ---------------------------------------------------------------------------------- what a Catch handles
#: The errors a pipeline step raises when retrying the same step with the same input cannot succeed (the
#: data, the config or a refused request decides it). The state machine's Lambda steps Catch exactly
#: these (→ NotifyFailed → a Fail state): such a run is over.
PERMANENT_ERRORS = (
    "ChampionKeptChangingError",
    "DatasetNotFoundError",
    "DeploymentFailedError",
    "InvalidConfigError",
    "InvalidDatasetError",
    "InvalidEventError",
    "ModelCodeMissingError",
    "ServiceRequestError",
    "StateTooLargeError",
)
#: The errors of a passing cause (throttling, a 5xx, a busy endpoint, an event not sent): retried with
#: backoff, then **not** caught, so the execution fails at the step itself, "Pipeline Failed" comes from
#: ExecutionEndedFunction, and RedriveExecution (``sagepipe retry``) resumes at that step. So is every
#: error no step names (a Lambda service error, a timeout, a handler bug fixed since).
TRANSIENT_ERRORS = ("ApprovalError", "EndpointBusyError", "TransientServiceError")
#: The SDK errors of an ``aws-sdk:sagemaker:*`` step that a retry cannot cure (a refused or conflicting
#: request, a resource that is not there): caught like :data:`PERMANENT_ERRORS`.
PERMANENT_SDK_ERRORS = ("SageMaker.ConflictException", "SageMaker.ResourceNotFound", "SageMaker.ValidationException")
