r"""The model registry: a model package group per model, a model package per candidate that passed the gate.

Each package carries its metrics, schema and lineage, with an approval status.

Follows the SageMaker API reference: CreateModelPackageGroup, CreateModelPackage
(``InferenceSpecification``, ``ModelMetrics``, ``CustomerMetadataProperties``, ``ModelApprovalStatus``),
UpdateModelPackage. ``CustomerMetadataMap`` (botocore's SageMaker service model) allows at most 50
entries; keys of 1-128 and values of 1-256 characters of ``[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]``, so
free text (the gate reason, keys with ``(``, ``,`` ...) lives in the registration record in S3
(:func:`publish_record`) and only pattern-safe values go into the metadata.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

from botocore.exceptions import ClientError

from .aws import error_kind, read_artifact_members
from .naming import model_package_group_name
from .ports import S3Port, SageMakerPort
from .records import GateDecision

METADATA_MAX_ENTRIES = 50
METADATA_VALUE_MAX = 256
DESCRIPTION_MAX = 1024  # ModelPackageDescription (EntityDescription) and ApprovalDescription
_METADATA_PUNCTUATION = frozenset("_.:/=+-@")


def metadata_value(value: Any) -> str | None:
    r"""``value`` as a ``CustomerMetadataProperties`` value, or None when it cannot be one.

    A value must be 1-256 characters, each a letter, a separator (space) or a number (Unicode
    categories L, Z, N) or one of ``_ . : / = + - @`` (botocore's SageMaker model,
    ``CustomerMetadataValue``: pattern ``[\p{L}\p{Z}\p{N}_.:\/=+\-@]*``, length 1-256).

    Args:
        value: any JSON value (str, number, None...).

    Returns:
        ``str(value)`` when it fits; None for None, booleans, text with any other character or longer
        text (such values are kept in the registration record in S3 instead, never altered).
    """
    if value is None or isinstance(value, bool):
        return None
    text = str(value)
    if not 1 <= len(text) <= METADATA_VALUE_MAX:
        return None
    if all(c in _METADATA_PUNCTUATION or unicodedata.category(c)[0] in "LZN" for c in text):
        return text
    return None


def description(text: str, limit: int = DESCRIPTION_MAX) -> str:
    """``text`` as a one-line ModelPackageDescription / ApprovalDescription.

    Control characters (newlines included, which ``EntityDescription``'s pattern does not allow) become
    spaces, and the text is cut to ``limit`` characters (both members: 1024) ending in ``…`` (Unicode
    punctuation, which the pattern allows).
    """
    flat = "".join(" " if unicodedata.category(c)[0] == "C" else c for c in text)
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def ensure_group(sm: SageMakerPort, prefix: str, model: str) -> str:
    """CreateModelPackageGroup unless it exists (DescribeModelPackageGroup). Returns its name."""
    name = model_package_group_name(prefix, model)
    try:
        sm.describe_model_package_group(ModelPackageGroupName=name)
    except ClientError as exc:
        if error_kind(exc) != "not_found":
            raise
        try:
            sm.create_model_package_group(
                ModelPackageGroupName=name, ModelPackageGroupDescription=f"sagepipe model {model}"
            )
        except ClientError as race:  # another run created it between our Describe and Create
            if error_kind(race) != "already_exists":
                raise
    return name


def publish_reports(s3: S3Port, model_data_url: str, bucket: str, prefix: str) -> dict[str, str]:
    """Copy ``evaluation.json`` and ``schema.json`` out of ``model.tar.gz`` to plain S3 objects under ``prefix``.

    ModelMetrics needs S3 URIs. Returns ``{"evaluation": uri, "schema": uri}``.
    """
    out: dict[str, str] = {}
    for name, body in sorted(read_artifact_members(s3, model_data_url, ("evaluation.json", "schema.json")).items()):
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{name}", Body=body, ContentType="application/json")
        out[name.removesuffix(".json")] = f"s3://{bucket}/{prefix}/{name}"
    return out


def publish_record(s3: S3Port, bucket: str, key: str, record: dict[str, Any]) -> str:
    """PutObject the registration record (lineage, the full gate decision, the execution) as JSON.

    Returns:
        ``s3://<bucket>/<key>``, which goes into the package's metadata as ``registration``.
    """
    body = json.dumps(record, sort_keys=True, indent=2, default=str).encode()
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
    return f"s3://{bucket}/{key}"


def model_selection(evaluation: dict[str, Any] | None) -> dict[str, Any] | None:
    """The winning candidate and the runner-up from ``evaluation.json`` ``model_selection``.

    ``model/train.py`` records the candidates it fitted (``model/candidates.py``: ``{"metric":
    "validation:<name>", "chosen", "runner_up", "candidates": [{"name", "family", "validation": {...}}]}``).

    Returns:
        ``{"metric", "chosen", "chosen_family", "chosen_validation", "runner_up", "runner_up_family",
        "runner_up_validation"}`` (the ``*_validation`` values: that candidate's validation value of
        ``metric``, a float or None; ``runner_up*`` None when only one candidate was fitted), or None when
        the evaluation has no model selection (a model trained before candidates) or it is malformed.
    """
    selection = (evaluation or {}).get("model_selection")
    if not isinstance(selection, dict) or not isinstance(selection.get("chosen"), str):
        return None
    metric = str(selection.get("metric") or "")
    name = metric.split(":", 1)[-1]
    records = {c.get("name"): c for c in selection.get("candidates") or [] if isinstance(c, dict) and "name" in c}

    def described(role: str) -> dict[str, Any]:
        chosen = selection.get(role)
        record = records.get(chosen) or {}
        value = (record.get("validation") or {}).get(name) if isinstance(record.get("validation"), dict) else None
        number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        return {role: chosen, f"{role}_family": record.get("family"), f"{role}_validation": number}

    return {"metric": metric or None, **described("chosen"), **described("runner_up")}


def customer_metadata(
    *,
    lineage: dict[str, Any],
    decision: GateDecision,
    execution: str,
    record_uri: str | None,
    selection: dict[str, Any] | None = None,
) -> dict[str, str]:
    """The package's ``CustomerMetadataProperties``.

    The registration record's URI, the execution, the gate's decision, rule, metric and values (with the
    champion's overlap and rows scored, and ``schema_changed``), the model selection (``selection``,
    :func:`model_selection`: ``model_chosen``, ``model_chosen_family``, ``model_runner_up``,
    ``model_runner_up_family``, ``selection_metric`` and the two validation values), the lineage and the
    per-split metrics (``test_auc``...), each only if :func:`metadata_value` accepts it, at most 50 entries
    (``CustomerMetadataMap`` max); the record in S3 has everything.
    """
    chosen = selection or {}
    candidates: dict[str, Any] = {
        "registration": record_uri,
        "execution": execution,
        "gate_decision": decision.get("decision"),
        "gate_rule": decision.get("rule"),
        "gate_metric": decision.get("metric"),
        "challenger": decision.get("challenger"),
        "champion": decision.get("champion"),
        "champion_overlap": decision.get("champion_overlap"),
        "champion_rows_scored": decision.get("champion_rows_scored"),
        "schema_changed": "yes" if decision.get("schema_change") else None,
        "model_chosen": chosen.get("chosen"),
        "model_chosen_family": chosen.get("chosen_family"),
        "model_chosen_validation": chosen.get("chosen_validation"),
        "model_runner_up": chosen.get("runner_up"),
        "model_runner_up_family": chosen.get("runner_up_family"),
        "model_runner_up_validation": chosen.get("runner_up_validation"),
        "selection_metric": chosen.get("metric"),
        **lineage,
    }
    for split, values in (decision.get("metrics") or {}).items():
        for name, value in (values or {}).items():
            candidates[f"{split}_{name}"] = value
    metadata: dict[str, str] = {}
    for key, value in candidates.items():
        safe = metadata_value(value)
        if safe is not None and metadata_value(key) == key and len(key) <= 128:
            metadata[key] = safe
        if len(metadata) == METADATA_MAX_ENTRIES:
            break
    return metadata


def register(
    sm: SageMakerPort,
    *,
    group: str,
    image: str,
    model_data_url: str,
    approval: str,
    instance_type: str,
    lineage: dict[str, Any],
    decision: GateDecision,
    reports: dict[str, str],
    execution: str,
    record_uri: str | None = None,
    selection: dict[str, Any] | None = None,
) -> str:
    """CreateModelPackage in ``group``; returns the ModelPackageArn.

    ``approval`` ``auto`` → ``Approved``; ``manual`` → ``PendingManualApproval``. ``record_uri`` is
    the registration record written by :func:`publish_record`; ``selection`` the winning candidate and
    runner-up (:func:`model_selection`); the metadata is :func:`customer_metadata`, the description the
    execution and gate reason (:func:`description`).
    """
    metadata = customer_metadata(
        lineage=lineage, decision=decision, execution=execution, record_uri=record_uri, selection=selection
    )
    args: dict[str, Any] = {
        "ModelPackageGroupName": group,
        "ModelPackageDescription": description(f"{execution}: {decision.get('reason')}"),
        "ModelApprovalStatus": "Approved" if approval == "auto" else "PendingManualApproval",
        "InferenceSpecification": {
            "Containers": [
                {
                    "Image": image,
                    "ModelDataUrl": model_data_url,
                    "Environment": {
                        "SAGEMAKER_PROGRAM": "inference.py",
                        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                    },
                }
            ],
            "SupportedContentTypes": ["text/csv", "application/json"],
            "SupportedResponseMIMETypes": ["application/json", "text/csv"],
            "SupportedRealtimeInferenceInstanceTypes": [instance_type],
        },
        "CustomerMetadataProperties": metadata,
        "MetadataProperties": {"GeneratedBy": description(execution)},
    }
    if "evaluation" in reports:
        args["ModelMetrics"] = {
            "ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": reports["evaluation"]}}
        }
    arn: str = sm.create_model_package(**args)["ModelPackageArn"]
    return arn


def set_status(sm: SageMakerPort, package_arn: str, status: str, reason: str) -> None:
    """UpdateModelPackage ``ModelApprovalStatus`` (Approved | Rejected) with a reason."""
    sm.update_model_package(
        ModelPackageArn=package_arn, ModelApprovalStatus=status, ApprovalDescription=description(reason)
    )
