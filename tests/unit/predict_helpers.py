"""Helpers for the inference API unit tests: a churn ``schema.json`` built from the example data, and a
fake deployed model version in moto (model.tar.gz in S3 + Model + EndpointConfig + Endpoint)."""

from __future__ import annotations

import csv
import io
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from tests.conftest import tar_gz

REPO = Path(__file__).resolve().parents[2]
CHURN = REPO / "examples" / "data" / "churn.csv"
ARTIFACTS = "sagepipe-artifacts-123456789012"
ROLE = "arn:aws:iam::123456789012:role/sagepipe-sagemaker"
CATEGORICAL = ("state", "area_code", "international_plan", "voice_mail_plan")


@lru_cache(maxsize=1)
def churn_schema_json() -> str:
    """The schema train.py would infer for churn.csv (categoricals as above, the rest numeric)."""
    rows = list(csv.DictReader(io.StringIO(CHURN.read_text())))
    order = [c for c in rows[0] if c != "churn"]
    feats = []
    for name in order:
        if name in CATEGORICAL:
            feats.append(
                {"name": name, "type": "categorical", "nullable": False, "categories": sorted({r[name] for r in rows})}
            )
        else:
            vals = [float(r[name]) for r in rows]
            feats.append(
                {
                    "name": name,
                    "type": "numeric",
                    "nullable": name == "number_vmail_messages",
                    "min": min(vals),
                    "max": max(vals),
                }
            )
    return json.dumps(
        {
            "schema_version": 1,
            "target": "churn",
            "problem_type": "binary",
            "labels": ["no", "yes"],
            "features": feats,
            "feature_order": order,
        }
    )


def churn_schema(drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """The churn schema, optionally without some features (a later version's schema)."""
    doc = json.loads(churn_schema_json())
    doc["features"] = [f for f in doc["features"] if f["name"] not in drop]
    doc["feature_order"] = [n for n in doc["feature_order"] if n not in drop]
    return doc


def churn_record(i: int = 0) -> dict[str, Any]:
    """Row ``i`` of churn.csv as a JSON record (numbers as numbers, target dropped)."""
    rows = list(csv.DictReader(io.StringIO(CHURN.read_text())))
    rec: dict[str, Any] = {}
    for k, v in rows[i].items():
        if k != "churn":
            rec[k] = v if k in CATEGORICAL else float(v)
    return rec


def model_tarball(schema: dict[str, Any], evaluation: dict[str, Any] | None = None) -> bytes:
    """A model.tar.gz holding a fake model.joblib, schema.json and evaluation.json."""
    return tar_gz(
        {
            "model.joblib": b"\0" * 1024,
            "schema.json": json.dumps(schema).encode(),
            "evaluation.json": json.dumps(evaluation or {"metrics": {"test": {"auc": 0.91}}}).encode(),
        }
    )


def deploy_version(
    s3: Any,
    sm: Any,
    version: str,
    schema: dict[str, Any],
    endpoint: str = "sagepipe-churn",
    evaluation: dict[str, Any] | None = None,
    create_bucket: bool = True,
) -> None:
    """Put a model version in moto and point ``endpoint`` at it (delete + create: moto has no UpdateEndpoint)."""
    if create_bucket:
        try:
            s3.create_bucket(Bucket=ARTIFACTS)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
    key = f"models/churn/{version}/output/model.tar.gz"
    s3.put_object(Bucket=ARTIFACTS, Key=key, Body=model_tarball(schema, evaluation))
    sm.create_model(
        ModelName=version,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": "sklearn", "ModelDataUrl": f"s3://{ARTIFACTS}/{key}"},
    )
    sm.create_endpoint_config(
        EndpointConfigName=version,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": version,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
    )
    try:
        sm.delete_endpoint(EndpointName=endpoint)
    except Exception:  # noqa: BLE001 - first version
        pass
    sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=version)
