"""The model code bundle and the ``ModelCode`` custom resource that publishes it at deploy time.

SageMaker script mode reads the training code from ``sagemaker_submit_directory``: a ``.tar.gz`` in S3
(the training toolkit downloads and un-tars it). ``sam build``/``sam package`` ship ``model/`` as the
code package of ``ModelCodeFunction`` (``CodeUri: model``); on Create/Update of the stack's
``Custom::ModelCode`` resource CloudFormation invokes that function, which tars its own code package
(``LAMBDA_TASK_ROOT``) deterministically and puts it at ``s3://<artifacts>/code/sourcedir.tar.gz``. So
``sam deploy`` alone leaves the code where the pipeline reads it; a code change gives a new function
version, which changes the resource's ``CodeVersion`` property, which makes CloudFormation send Update.

Protocol: CloudFormation User Guide, "Custom resources" - request fields (``RequestType``,
``ResponseURL``, ``StackId``, ``RequestId``, ``LogicalResourceId``, ``ResourceProperties``...) and the
response object PUT to the pre-signed ``ResponseURL`` (``Status`` SUCCESS|FAILED, ``Reason``,
``PhysicalResourceId``, ``StackId``, ``RequestId``, ``LogicalResourceId``, ``Data``; at most 4,096 bytes).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import tarfile
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

CODE_KEY = "code/sourcedir.tar.gz"
MAX_RESPONSE_BYTES = 4096  # CloudFormation's limit for a custom resource response object
_EXCLUDE_PARTS = {"__pycache__", ".pytest_cache"}

log = logging.getLogger("sagepipe")


def build(model_dir: Path) -> bytes:
    """Deterministic tar.gz of the files under ``model_dir`` (the same files give the same bytes and ETag).

    Paths relative to ``model_dir``, sorted, mtime 0, mode 0644, no ``__pycache__``/``.pyc``.
    """
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
            rel = path.relative_to(model_dir)
            if _EXCLUDE_PARTS & set(rel.parts) or path.suffix == ".pyc":
                continue
            info = tarfile.TarInfo(str(rel))
            data = path.read_bytes()
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def publish(s3: Any, bucket: str, model_dir: Path, key: str = CODE_KEY) -> dict[str, Any]:
    """S3 PutObject of :func:`build` of ``model_dir``. Returns ``{"S3Uri", "ETag", "VersionId", "Sha256"}``."""
    body = build(model_dir)
    resp = s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/gzip")
    return {
        "S3Uri": f"s3://{bucket}/{key}",
        "ETag": str(resp.get("ETag", "")).strip('"'),
        "VersionId": str(resp.get("VersionId") or ""),
        "Sha256": hashlib.sha256(body).hexdigest(),
    }


def send_response(url: str, body: bytes) -> None:
    """PUT the response object to the pre-signed ``ResponseURL``.

    The Content-Type is empty, as the signature of CloudFormation's pre-signed S3 URL expects.
    """
    req = urllib.request.Request(  # noqa: S310 - the URL is CloudFormation's https pre-signed S3 URL
        url, data=body, method="PUT", headers={"Content-Type": "", "Content-Length": str(len(body))}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - see above
        resp.read()


def handle(
    event: dict[str, Any],
    *,
    s3: Any,
    code_dir: Path,
    send: Callable[[str, bytes], None] = send_response,
) -> dict[str, Any]:
    """Serve one custom resource request and always answer CloudFormation (SUCCESS or FAILED).

    ``ResourceProperties``: ``Bucket`` (required), ``Key`` (default ``code/sourcedir.tar.gz``),
    ``CodeVersion`` (only there to make a code change an Update). Create/Update publish ``code_dir``;
    Delete keeps the object (nothing is deleted; the bucket is the stack's artifact store). Returns the
    response object sent. An error is reported as FAILED with its message as ``Reason`` (the stack
    operation then fails and rolls back instead of waiting for ``ServiceTimeout``).
    """
    props = event.get("ResourceProperties") or {}
    bucket, key = props.get("Bucket", ""), props.get("Key") or CODE_KEY
    response: dict[str, Any] = {
        "Status": "SUCCESS",
        "Reason": "",
        "PhysicalResourceId": event.get("PhysicalResourceId") or f"s3://{bucket}/{key}",
        "StackId": event.get("StackId", ""),
        "RequestId": event.get("RequestId", ""),
        "LogicalResourceId": event.get("LogicalResourceId", ""),
        "Data": {},
    }
    try:
        if event.get("RequestType") in {"Create", "Update"}:
            if not bucket:
                raise ValueError("ResourceProperties.Bucket is required")
            response["Data"] = publish(s3, bucket, code_dir, key)
            response["PhysicalResourceId"] = f"s3://{bucket}/{key}"
            log.info("published the model code to %s", response["Data"]["S3Uri"], extra={"data": response["Data"]})
        elif event.get("RequestType") != "Delete":
            raise ValueError(f"unknown RequestType {event.get('RequestType')!r}")
    except Exception as exc:  # noqa: BLE001 - every failure must reach CloudFormation as FAILED
        log.exception("ModelCode %s failed", event.get("RequestType"))
        response.update(Status="FAILED", Reason=f"{type(exc).__name__}: {exc}"[:1000], Data={})
    body = json.dumps(response).encode()
    if len(body) > MAX_RESPONSE_BYTES:  # cannot happen with the fields above; keep the guarantee explicit
        response.update(Status="FAILED", Reason="response object over 4096 bytes", Data={})
        body = json.dumps(response).encode()
    send(event["ResponseURL"], body)
    return response


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """``ModelCodeFunction``'s entry point (``Handler: sagepipe_core.model_code.lambda_handler``).

    Its code package is ``model/`` itself, so this glue lives in the layer rather than in a functions/ dir. Powertools
    (``sagepipe_core.handler``) is imported here, not at module level, so the CLI's ``build`` stays light.
    """
    import boto3

    from .handler import pipeline_handler

    def run(evt: dict[str, Any], _ctx: Any) -> dict[str, Any]:
        code_dir = Path(os.environ.get("LAMBDA_TASK_ROOT", os.getcwd()))
        return handle(evt, s3=boto3.client("s3"), code_dir=code_dir)

    return dict(pipeline_handler(correlation_id_path="RequestId")(run)(event, context))
