"""The model registry: one SageMaker model package group per model.

One model package per candidate that passed the gate, carrying its metrics, schema and lineage, with an
approval status.

Follows the SageMaker API reference: CreateModelPackageGroup, CreateModelPackage
(``InferenceSpecification``, ``ModelMetrics``, ``CustomerMetadataProperties`` - at most 50 entries of
≤256-character values, ``ModelApprovalStatus``), UpdateModelPackage.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from .aws import error_kind, read_artifact_members
from .naming import model_package_group_name, short_hash

_MAX_VALUE = 256


def _fit(value: Any) -> str:
    text = str(value)
    return text if len(text) <= _MAX_VALUE else f"{text[: _MAX_VALUE - 12]}…{short_hash(text, length=10)}"


def ensure_group(sm: Any, prefix: str, model: str) -> str:
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


def publish_reports(s3: Any, model_data_url: str, bucket: str, prefix: str) -> dict[str, str]:
    """Copy ``evaluation.json`` and ``schema.json`` out of ``model.tar.gz`` to S3 objects under ``prefix``.

    ModelMetrics needs S3 URIs. Returns ``{"evaluation": uri, "schema": uri}``.
    """
    out: dict[str, str] = {}
    for name, body in sorted(read_artifact_members(s3, model_data_url, ("evaluation.json", "schema.json")).items()):
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{name}", Body=body, ContentType="application/json")
        out[name.removesuffix(".json")] = f"s3://{bucket}/{prefix}/{name}"
    return out


def register(
    sm: Any,
    *,
    group: str,
    image: str,
    model_data_url: str,
    approval: str,
    instance_type: str,
    lineage: dict[str, Any],
    decision: dict[str, Any],
    reports: dict[str, str],
    execution: str,
) -> str:
    """CreateModelPackage in ``group``; returns the ModelPackageArn.

    ``approval`` ``auto`` → ``Approved``; ``manual`` →
    ``PendingManualApproval``.
    """
    metadata = {
        **{k: _fit(v) for k, v in lineage.items() if v is not None},
        "gate_rule": _fit(decision.get("rule")),
        "gate_reason": _fit(decision.get("reason")),
        "gate_metric": _fit(decision.get("metric")),
        "challenger": _fit(decision.get("challenger")),
        "champion": _fit(decision.get("champion")),
        "execution": _fit(execution),
    }
    for split, values in (decision.get("metrics") or {}).items():
        for name, value in (values or {}).items():
            if len(metadata) < 50:
                metadata[f"{split}_{name}"] = _fit(value)
    args: dict[str, Any] = {
        "ModelPackageGroupName": group,
        "ModelPackageDescription": _fit(f"{execution}: {decision.get('reason')}"),
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
        "MetadataProperties": {"GeneratedBy": _fit(execution)},
    }
    if "evaluation" in reports:
        args["ModelMetrics"] = {
            "ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": reports["evaluation"]}}
        }
    arn: str = sm.create_model_package(**args)["ModelPackageArn"]
    return arn


def set_status(sm: Any, package_arn: str, status: str, description: str) -> None:
    """UpdateModelPackage ``ModelApprovalStatus`` (Approved | Rejected) with a reason."""
    sm.update_model_package(
        ModelPackageArn=package_arn, ModelApprovalStatus=status, ApprovalDescription=_fit(description)[:1024]
    )
