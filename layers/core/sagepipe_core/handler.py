"""Powertools wiring shared by the pipeline Lambda handlers.

The handlers (start, validate, evaluate, register, approval, deploy) share one Logger (the ``sagepipe`` stdlib
logger of the core routed through it), Tracer and Metrics per process, and a decorator that applies all three
(Powertools for AWS Lambda docs: Logger ``inject_lambda_context`` with a correlation id, Tracer
``capture_lambda_handler``, Metrics ``log_metrics``). The predict function does not use it: its request path
stays free of the Tracer.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit

from .aws import service_error
from .errors import check_result_size

logger = Logger()
tracer = Tracer()
metrics = Metrics()
copy_config_to_registered_loggers(source_logger=logger, include={"sagepipe"})

# A Lambda handler ``(event, context) -> result``; the event and result types are the step's records.
Handler = TypeVar("Handler", bound=Callable[[Any, Any], Any])


def pipeline_handler(correlation_id_path: str = "execution_name") -> Callable[[Handler], Handler]:
    """Decorate a handler with the logger context, X-Ray tracing and EMF metrics flushing.

    The correlation id comes from ``correlation_id_path``, a JMESPath into the event: the execution name for
    state-machine steps, the event ``id`` for EventBridge. A failed AWS call leaves the handler as
    :class:`~sagepipe_core.errors.TransientServiceError` (throttling, 5xx, timeouts: the ASL retries it) or
    :class:`~sagepipe_core.errors.ServiceRequestError` (the run fails at once with the service's reason), the
    ``errorType`` names the state machine's Retry and Catch match (:func:`sagepipe_core.aws.service_error`).
    A result over :data:`~sagepipe_core.errors.RESULT_LIMIT` raises :class:`~sagepipe_core.errors.StateTooLargeError` (caught by the
    ASL) rather than an uncatchable ``States.DataLimitExceeded``.
    """

    def wrap(fn: Handler) -> Handler:
        @functools.wraps(fn)
        def classified(event: Any, context: Any) -> Any:
            try:
                result = fn(event, context)
            except Exception as exc:
                named = service_error(exc)
                if named is None:
                    raise
                logger.warning("AWS call failed", extra={"error": named.to_dict()})
                raise named from exc
            check_result_size(result)
            return result

        # The Powertools decorators keep the call signature; their annotations do not say so.
        return cast(
            Handler,
            logger.inject_lambda_context(correlation_id_path=correlation_id_path)(
                tracer.capture_lambda_handler(metrics.log_metrics(classified))
            ),
        )

    return wrap


def count(name: str, value: float = 1) -> None:
    """Add a Count metric (flushed when the decorated handler returns)."""
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
