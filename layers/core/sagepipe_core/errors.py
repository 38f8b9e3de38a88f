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
        """Return :meth:`to_dict` as compact JSON (used as the exception text / ASL Cause)."""
        return json.dumps(self.to_dict(), sort_keys=True, default=str)


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
