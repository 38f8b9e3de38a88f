"""The registry of every patch the twin applies to moto's internals.

moto is pinned exactly (``moto==5.2.5``). Each :class:`Patch` lists the internals it replaces (``sites``)
and has a ``check()`` that raises :class:`MotoInternalsChanged` with a clear message if that internal is
gone or has changed shape; ``tests/twin/test_patches.py`` runs every check, so a moto upgrade fails
loudly, and proves with :meth:`Patch.missing` that after :func:`apply_all` every site holds the twin's
replacement (and that ``apply`` installed nothing else).

Each patch lives with the service it emulates (its module's ``PATCHES``); :func:`registry` collects them
in :data:`ORDER`, the order :func:`apply_all` checks and applies them (see
``shared/design/local-twin-facts.md`` for why each is needed):

1. ``jsonata`` (``stepfunctions/asl.py``) - plug ``jsonata-python`` into moto's Step Functions interpreter
   (moto leaves it None).
2. ``sfn_sagemaker`` (``stepfunctions/sagemaker.py``) - the ``sagemaker`` service integration with
   ``.sync`` (moto: unsupported).
3. ``lambda_invoke`` (``awslambda/api.py``) - ``LambdaFunction._invoke_lambda`` runs the real handler in a
   warm worker.
4. ``sagemaker_api`` (``sagemaker/api.py``) - training jobs run for real; endpoints host real model servers;
   UpdateEndpoint (absent in moto); SageMaker name rules and duplicate-name errors enforced as AWS does.
5. ``sagemaker_runtime`` (``sagemaker/api.py``) - InvokeEndpoint reaches the endpoint's model server.
6. ``events_targets`` (``events/delivery.py``) - EventBridge rules deliver to Lambda and Step Functions
   targets, per target, so one failing target does not stop the others.
7. ``s3_eventbridge`` (``s3.py``) - S3 → EventBridge events shaped as AWS sends them (URL-encoded key,
   unique id, ISO time).
8. ``asl_parse_lock`` (``stepfunctions/asl.py``) - moto's ASL ``Preprocessor`` keeps its query-language
   scope stack in a class attribute shared by all instances, so executions that start together corrupt
   each other's parse ("Unsupported declaration in QueryLanguage=JSONata block") and hang RUNNING: parses
   are serialised.
9. ``sfn_status_events`` (``stepfunctions/events.py``) - an ended execution puts "Step Functions Execution
   Status Change" on the default bus, as AWS does, and StopExecution aborts at once with its error/cause.
10. ``sfn_terminal_errors`` (``stepfunctions/quotas.py``) - ``States.ALL`` does not catch
    ``States.DataLimitExceeded`` or ``States.Runtime`` (moto's wildcard matched every error).
11. ``sfn_history_quota`` (``stepfunctions/quotas.py``) - an execution whose history reaches 25,000 events
    fails with ``States.Runtime`` as on AWS (no Retry or Catch runs).
12. ``sfn_history_pages`` (``stepfunctions/quotas.py``) - GetExecutionHistory pages (``maxResults``,
    ``nextToken``, ``reverseOrder``, ``includeExecutionData``); moto answered every event at once.
13. ``sdk_error_names`` (``stepfunctions/sagemaker.py``) - a ClientError of an ``aws-sdk:`` task is named
    as AWS names it (``SageMaker.ValidationException``; moto: ``sagemaker.sagemakerException``), and the
    optimised SageMaker integration's as ``SageMaker.AmazonSageMakerException`` /
    ``SageMaker.<Modelled>Exception``, so Retry and Catch by name run in the twin as on AWS.
14. ``server_validation`` (``validation.py``) - every request moto dispatches through
    ``BaseResponse.call_action`` (the JSON and query services: SageMaker, Step Functions, EventBridge,
    CloudWatch Logs, SNS, SQS...) is parsed by moto's protocol parsers and checked against botocore's
    service model (pattern, max, enum, sizes); a violation is answered with ``ValidationException`` in the
    service's protocol.
15. ``s3_server_validation`` (``validation.py``) - S3, which moto routes around ``call_action``: each
    bucket and key request is matched to its operation by moto's router over botocore's model, read by the
    rest-xml parser and checked the same way; a violation is answered 400 ``InvalidArgument`` (or S3's own
    code for the member, ``InvalidStorageClass``).
16. ``iam_enforce`` (``iam.py``) - a request signed with a template role's access key is authorised against
    that role's policies (:mod:`sagepipe.twin.iam`; moto's own access control checks actions only): every
    service through ``BaseResponse._dispatch`` (before ``call_action``), S3 through
    ``_authenticate_and_authorize_s3_action``.
17. ``sfn_credentials`` (``stepfunctions/credentials.py``) - Step Functions' task clients
    (``boto_client_for``, imported by name in each integration's module) sign as the execution's role
    instead of a fixed key.
18. ``lambda_payload_limits`` (``awslambda/api.py``) - Invoke refuses a request over 6,291,456 bytes
    (``Event``: 1,048,576) with ``RequestEntityTooLargeException``; a response over 6,291,556 bytes is the
    function error ``Function.ResponseSizeTooLarge``.
19. ``events_put_limits`` (``events/api.py``) - PutEvents refuses entries totalling 256 KB or more
    (``ValidationException``, as AWS).
20. ``logs_integer_timestamps`` (``logs.py``) - CloudWatch Logs event timestamps are whole milliseconds
    (moto's EventBridge and Lambda log writers stored floats, which ``filter-log-events`` returned).
21. ``sfn_redrive`` (``stepfunctions/redrive.py``) - RedriveExecution (absent in moto: an HTML 500) resumes a
    FAILED/ABORTED/TIMED_OUT execution at its unsuccessful state, with AWS's eligibility rules,
    ``clientToken`` idempotency, ``ExecutionRedriven`` in the history, ``$$.Execution.RedriveCount`` and
    DescribeExecution's ``redriveCount``/``redriveDate``/``redriveStatus``/``redriveStatusReason``.

The service modules import this one (for :class:`Patch`, :func:`twin` and the install helpers); this one
imports them only when :func:`registry` is first called, so there is no import cycle.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


class MotoInternalsChanged(RuntimeError):
    """moto no longer has the internal a twin patch replaces: re-check the patch against the new moto."""


class TwinRuntime(Protocol):
    """What the patches call back into (implemented by :class:`sagepipe.twin.server.Twin`)."""

    training: Any
    hosting: Any
    tuning: Any

    def invoke_lambda(self, function: Any, event: Any) -> tuple[str, bool, str]: ...
    def deliver(self, rule: Any, target: dict[str, Any], event: dict[str, Any]) -> None: ...
    def invoke_event(self, name: str, payload: bytes) -> bool: ...
    def log(self, prefix: str, line: str) -> None: ...
    def state_changed(self) -> None: ...


_TWIN: TwinRuntime | None = None
_APPLIED: dict[str, Any] = {}
_INSTALLED: dict[str, set[str]] = {}  # patch name -> the sites its apply() replaced
_LOCK = threading.Lock()
PATCH_MARK = "_sagepipe_patch"  # attribute naming the patch on each replacement the twin installs


def twin() -> TwinRuntime:
    """The running twin. Raises RuntimeError if the patches were applied without one."""
    if _TWIN is None:
        raise RuntimeError("sagepipe twin patches are applied but no twin is running")
    return _TWIN


def _require(obj: Any, attr: str, params: list[str] | None = None) -> Any:
    """Return ``obj.attr`` after checking it exists (and has ``params`` as its first parameters)."""
    where = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', getattr(obj, '__name__', obj))}.{attr}"
    if not hasattr(obj, attr):
        raise MotoInternalsChanged(f"moto internal {where} is gone; the twin patch for it must be redone")
    value = getattr(obj, attr)
    if params is not None:
        got = list(inspect.signature(value).parameters)[: len(params)]
        if got != params:
            raise MotoInternalsChanged(f"moto internal {where} now takes {got}, the twin patch expects {params}")
    return value


def _site(owner: Any, attr: str) -> str:
    """``module:attr`` for a module owner, ``module:Class.attr`` for a class."""
    if inspect.ismodule(owner):
        return f"{owner.__name__}:{attr}"
    return f"{owner.__module__}:{owner.__qualname__}.{attr}"


def _install(patch: str, owner: Any, attr: str, replacement: Callable[..., Any], *, static: bool = False) -> None:
    """``setattr(owner, attr, replacement)``, the replacement marked as ``patch``'s and the site recorded."""
    setattr(replacement, PATCH_MARK, patch)
    setattr(owner, attr, staticmethod(replacement) if static else replacement)
    _INSTALLED.setdefault(patch, set()).add(_site(owner, attr))


def patched_by(value: Any) -> str | None:
    """The name of the twin patch that installed ``value``, or None for moto's own code."""
    mark = getattr(value, PATCH_MARK, None)
    return mark if isinstance(mark, str) else None


def _resolve(site: str) -> Any:
    module_name, _, path = site.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in path.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise MotoInternalsChanged(
            f"moto internal {site} is gone ({exc}); the twin patch for it must be redone"
        ) from exc
    return obj


@dataclass(frozen=True)
class Patch:
    """A named patch: ``check()`` verifies moto's internals, ``apply()`` installs it (idempotent).

    ``sites`` are the ``module:attr`` / ``module:Class.attr`` paths of every attribute ``apply()``
    replaces (or adds, where moto lacks the operation).
    """

    name: str
    sites: tuple[str, ...]
    check: Callable[[], None]
    apply: Callable[[], None]

    def missing(self) -> list[str]:
        """The sites that do not hold this patch's replacement now (all of them before :func:`apply_all`).

        Raises:
            MotoInternalsChanged: a site's module or owner is gone.
        """
        return [site for site in self.sites if patched_by(_resolve(site)) != self.name]

    def installed(self) -> set[str]:
        """The sites this patch's ``apply()`` has replaced in this process."""
        return set(_INSTALLED.get(self.name, ()))


#: The service modules holding the patches (each a ``PATCHES`` tuple), relative to ``sagepipe.twin``.
MODULES = (
    "stepfunctions.asl",
    "stepfunctions.sagemaker",
    "stepfunctions.events",
    "stepfunctions.quotas",
    "stepfunctions.credentials",
    "stepfunctions.redrive",
    "awslambda.api",
    "sagemaker.api",
    "events.delivery",
    "events.api",
    "s3",
    "validation",
    "iam",
    "logs",
)

#: Every patch's name, in the order :func:`apply_all` checks and applies them.
ORDER = (
    "jsonata",
    "sfn_sagemaker",
    "lambda_invoke",
    "lambda_payload_limits",
    "sagemaker_api",
    "sagemaker_runtime",
    "events_targets",
    "events_put_limits",
    "s3_eventbridge",
    "asl_parse_lock",
    "sfn_status_events",
    "sfn_terminal_errors",
    "sfn_history_quota",
    "sfn_history_pages",
    "sfn_redrive",
    "sdk_error_names",
    "server_validation",
    "s3_server_validation",
    "iam_enforce",
    "sfn_credentials",
    "logs_integer_timestamps",
)


@functools.cache
def registry() -> tuple[Patch, ...]:
    """Every :class:`Patch` of the :data:`MODULES`, in :data:`ORDER`.

    Raises:
        RuntimeError: a module's patches and :data:`ORDER` disagree (a patch registered twice, one missing
            from ``ORDER`` or one in ``ORDER`` that no module defines).
    """
    found: list[Patch] = []
    for name in MODULES:
        found.extend(importlib.import_module(f"{__package__}.{name}").PATCHES)
    names = [patch.name for patch in found]
    if sorted(names) != sorted(ORDER):
        raise RuntimeError(f"the twin's patches {sorted(names)} do not match patches.ORDER {sorted(ORDER)}")
    return tuple(sorted(found, key=lambda patch: ORDER.index(patch.name)))


#: The strictness patches: what AWS refuses and moto accepts. ``bench/strictness.py`` leaves them out (in a
#: process of its own) to measure what they cost; nothing else may (tests/conftest.py refuses to run with
#: :data:`BENCH_LAX_ENV` set).
STRICTNESS = frozenset(
    {
        "server_validation",
        "s3_server_validation",
        "iam_enforce",
        "sfn_history_quota",
        "lambda_payload_limits",
        "events_put_limits",
    }
)
BENCH_LAX_ENV = "SAGEPIPE_TWIN_BENCH_LAX"


def lax_for_bench() -> frozenset[str]:
    """The strictness patches this process leaves out: all of :data:`STRICTNESS` when the environment
    variable :data:`BENCH_LAX_ENV` is ``1``, else none."""
    return STRICTNESS if os.environ.get(BENCH_LAX_ENV) == "1" else frozenset()


def apply_all(runtime: TwinRuntime) -> None:
    """Check then apply every patch, and route callbacks to ``runtime``. Raises MotoInternalsChanged."""
    global _TWIN
    patches = [p for p in registry() if p.name not in lax_for_bench()]
    with _LOCK:
        for patch in patches:
            patch.check()
        _TWIN = runtime
        if not _APPLIED.get("done"):
            for patch in patches:
                patch.apply()
            _APPLIED["done"] = True


def release(runtime: TwinRuntime) -> None:
    """Detach ``runtime`` (patches stay installed; calls then raise until another twin attaches)."""
    global _TWIN
    with _LOCK:
        if _TWIN is runtime:
            _TWIN = None
