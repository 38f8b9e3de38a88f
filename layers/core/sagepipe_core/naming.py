"""Naming rules for AWS resources the pipeline creates.

Deterministic: the same inputs always give the same names, which is what makes Step Functions'
``ExecutionAlreadyExists`` an idempotency guard.

Rules followed:
- SageMaker names (TrainingJobName, ModelName, EndpointConfigName, EndpointName,
  ModelPackageGroupName): ``^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$`` (SageMaker API reference).
- Step Functions execution names: 1-80 characters; we restrict to ``[A-Za-z0-9_-]`` (StartExecution).
"""

from __future__ import annotations

import hashlib
import re

SAGEMAKER_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
EXECUTION_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
#: A model name: the first path segment under ``datasets/`` and ``{model}`` in the API paths.
MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
SAGEMAKER_NAME_MAX = 63
EXECUTION_NAME_MAX = 80
HASH_LEN = 10
#: Room kept in the names of the jobs the state machine starts for the ``-r<RedriveCount>`` it appends on a
#: redrive (RedriveExecution allows 1,000 redrives: ``-r1000``), so each attempt's job has a name of its own.
REDRIVE_SUFFIX_MAX = len("-r1000")
#: HyperParameterTuningJobName's limit (CreateHyperParameterTuningJob).
TUNING_JOB_NAME_MAX = 32


def short_hash(*parts: str, length: int = HASH_LEN) -> str:
    """Return the first ``length`` hex digits of SHA-256 over ``parts`` joined by NUL."""
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()[:length]


def _fit(text: str, max_len: int, suffix: str) -> str:
    """Join ``text`` and ``suffix`` with ``-``, truncating ``text`` so the result is <= max_len."""
    room = max_len - len(suffix) - 1
    head = text[:room].rstrip("-_") if room > 0 else ""
    return f"{head}-{suffix}" if head else suffix


def sagemaker_name(base: str, *, unique: str | None = None, max_len: int = SAGEMAKER_NAME_MAX) -> str:
    """Make a valid SageMaker resource name from ``base``.

    Characters outside ``[A-Za-z0-9-]`` become ``-``; runs of ``-`` collapse; leading/trailing ``-`` go.
    If ``unique`` is given, a hash of it is appended (``<base>-<hash10>``); if the result is still too
    long, ``base`` is truncated. Raises ``ValueError`` if ``base`` has no alphanumeric character and no
    ``unique`` is given. The result always matches :data:`SAGEMAKER_NAME_RE`.
    """
    clean = re.sub(r"-+", "-", re.sub(r"[^A-Za-z0-9-]", "-", base)).strip("-")
    if unique is not None:
        name = _fit(clean, max_len, short_hash(unique))
    elif not clean:
        raise ValueError(f"cannot make a SageMaker name from {base!r}")
    elif len(clean) > max_len:
        name = _fit(clean, max_len, short_hash(base))
    else:
        name = clean
    name = re.sub(r"-+", "-", name).strip("-")
    assert SAGEMAKER_NAME_RE.match(name), name
    return name


def execution_name(model: str, key: str, identity: str) -> str:
    """Deterministic Step Functions execution name for one data version.

    Shape: ``<model>-<file stem>-<hash10>`` where the hash covers ``model``, ``key`` and ``identity``
    (the ETag, or the trigger's event id for retrains), so distinct data versions get distinct names
    and redeliveries get the same one. At most 80 characters of ``[A-Za-z0-9_-]``.
    """
    stem = key.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    readable = re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_-]", "_", f"{model}-{stem}")).strip("_-")
    name = _fit(readable, EXECUTION_NAME_MAX, short_hash(model, key, identity))
    assert EXECUTION_NAME_RE.match(name), name
    return name


def model_slug(model: str) -> str:
    """The model name as it appears inside SageMaker names (``sagemaker_name(model)``)."""
    return sagemaker_name(model)


def _per_model_name(prefix: str, model: str) -> str:
    """The endpoint name of ``model``: ``<prefix>-<model>``, or a cleaned name plus a hash.

    ``<prefix>-<model>`` when that is already a canonical SageMaker name (lower-case letters, digits,
    single hyphens); otherwise the cleaned name plus a hash of ``model``, so that models whose names
    clean to the same text (``churn_v2``, ``churn-v2``, ``Churn-V2``) never share a resource.
    SageMaker names are case-insensitive and its ARNs lower-case, hence the lower-casing.
    """
    base = f"{prefix}-{model}"
    clean = sagemaker_name(base.lower())
    if clean == base and len(clean) <= SAGEMAKER_NAME_MAX:
        return clean
    return sagemaker_name(base.lower(), unique=model)


def endpoint_name(prefix: str, model: str) -> str:
    """EndpointName serving ``model`` (one endpoint per model, stable): see :func:`_per_model_name`."""
    return _per_model_name(prefix, model)


def model_package_group_name(prefix: str, model: str) -> str:
    """ModelPackageGroupName for ``model`` (one group per model): see :func:`_per_model_name`."""
    return _per_model_name(prefix, model)


def tuning_job_name(model: str, execution: str) -> str:
    """HyperParameterTuningJobName: at most 32 characters (CreateHyperParameterTuningJob).

    That holds once the state machine appends a redrive's ``-r<RedriveCount>`` (:data:`REDRIVE_SUFFIX_MAX`).
    """
    return sagemaker_name(model, unique=execution, max_len=TUNING_JOB_NAME_MAX - REDRIVE_SUFFIX_MAX)


def version_names(model: str, execution: str) -> dict[str, str]:
    """Per-version SageMaker names derived from the execution name.

    Returns ``{"TrainingJobName", "ModelName", "EndpointConfigName"}``, each unique per execution
    (hash of the execution name) and valid for SageMaker, with room for the ``-r<RedriveCount>`` that the
    state machine appends to TrainingJobName on a redrive (:data:`REDRIVE_SUFFIX_MAX`).
    """
    base = sagemaker_name(model, unique=execution, max_len=SAGEMAKER_NAME_MAX - REDRIVE_SUFFIX_MAX)
    return {"TrainingJobName": base, "ModelName": base, "EndpointConfigName": base}
