"""The model code bundle: ``model/`` as ``sourcedir.tar.gz`` (script mode's ``sagemaker_submit_directory``).

Published to ``s3://<artifacts bucket>/code/sourcedir.tar.gz`` after ``sam deploy`` (``make deploy``
runs ``sagepipe publish-code --aws``) and by the twin at start. Deterministic: same files → same bytes.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path
from typing import Any

CODE_KEY = "code/sourcedir.tar.gz"
_EXCLUDE = {"__pycache__", ".pytest_cache"}


def build(model_dir: Path) -> bytes:
    """tar.gz of the files under ``model_dir`` (paths relative to it, sorted, mtime 0, uid/gid 0)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
            rel = path.relative_to(model_dir)
            if _EXCLUDE & set(rel.parts) or path.suffix == ".pyc":
                continue
            info = tarfile.TarInfo(str(rel))
            data = path.read_bytes()
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def publish(s3: Any, bucket: str, model_dir: Path, key: str = CODE_KEY) -> str:
    """Upload :func:`build` of ``model_dir`` (S3 PutObject). Returns the ``s3://`` URI."""
    s3.put_object(Bucket=bucket, Key=key, Body=build(model_dir), ContentType="application/gzip")
    return f"s3://{bucket}/{key}"
