"""The model code bundle: ``model/`` as ``sourcedir.tar.gz`` (script mode's ``sagemaker_submit_directory``).

``sam deploy`` publishes it through the stack's ``ModelCode`` custom resource
(``sagepipe_core.model_code``); ``sagepipe publish-code`` re-publishes a working copy of ``model/`` to a
deployed stack without a deploy (a development shortcut). Deterministic: same files → same bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sagepipe_core.model_code import CODE_KEY, build

__all__ = ["CODE_KEY", "build", "publish"]


def publish(s3: Any, bucket: str, model_dir: Path, key: str = CODE_KEY) -> str:
    """Upload :func:`build` of ``model_dir`` (S3 PutObject). Returns the ``s3://`` URI."""
    from sagepipe_core.model_code import publish as _publish

    return str(_publish(s3, bucket, model_dir, key)["S3Uri"])
