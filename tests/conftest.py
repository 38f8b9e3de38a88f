"""Shared fixtures for sagepipe tests.

Path note: in Lambda the core layer is unpacked at ``/opt/python``, so handlers ``import sagepipe_core``
with no package install. The dev install maps ``sagepipe_core`` to ``layers/core/sagepipe_core``
(``pyproject.toml`` ``package-dir``), so tests import it the same way with no ``sys.path`` edits.
Handlers are imported as packages (``functions.<name>.app``): ``tests/`` is a package, so pytest puts
the repo root on ``sys.path``.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import sys
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from sagepipe.twin import validation

REPO = Path(__file__).resolve().parents[1]
EVENTS = REPO / "events"

REGION = "us-east-1"
ACCOUNT = "123456789012"


# AWS's server-side input validation (service-model pattern, length, range, enum) on every botocore
# session created from here on; switched on inside the ``aws`` fixture (moto checks none of it).
validation.install()


def tar_gz(files: dict[str, bytes]) -> bytes:
    """A ``.tar.gz`` of ``files`` (archive name -> content), members at the archive root in the given order,
    like SageMaker's ``model.tar.gz`` and ``sourcedir.tar.gz``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def import_model_module(name: str) -> ModuleType:
    """Import ``model/<name>.py`` as the SageMaker container does: with ``model/`` on ``sys.path``, so
    ``train``/``inference`` import their sibling ``sagepipe_contract`` as a top-level module."""
    model_dir = str(REPO / "model")
    if model_dir not in sys.path:
        sys.path.insert(0, model_dir)
    return importlib.import_module(name)


def load_event(name: str) -> dict[str, Any]:
    """Return the sample event ``events/<name>`` (the same files serve ``sam local invoke -e``)."""
    return json.loads((EVENTS / name).read_text(encoding="utf-8"))


@dataclass
class FakeLambdaContext:
    """Just what Powertools' ``inject_lambda_context`` reads from a ``LambdaContext``."""

    function_name: str = "sagepipe-test"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:sagepipe-test"
    aws_request_id: str = "5f6b8c4e-0000-4000-8000-000000000001"
    log_group_name: str = "/aws/lambda/sagepipe-test"
    log_stream_name: str = "2024/01/01/[$LATEST]0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@pytest.fixture()
def lambda_context() -> FakeLambdaContext:
    """A fake ``LambdaContext``."""
    return FakeLambdaContext()


@pytest.fixture()
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fake credentials, us-east-1, Powertools settings, and everything inside ``moto.mock_aws()``, with
    every call checked against the service model as AWS checks it (:mod:`sagepipe.twin.validation`:
    a ``pattern``/``max``/``enum`` breach raises ``ValidationException`` before moto sees the call)."""
    from moto import mock_aws

    for var in (
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL_SAGEMAKER",
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME",
        "AWS_ENDPOINT_URL_SFN",
    ):
        monkeypatch.delenv(var, raising=False)
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "sagepipe",
        "POWERTOOLS_SERVICE_NAME": "sagepipe",
        "POWERTOOLS_DEV": "false",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    before = validation.set_active(True)
    try:
        with mock_aws():
            yield
    finally:
        validation.set_active(before)


@pytest.fixture()
def load_handler(aws: None) -> Callable[[str], ModuleType]:
    """``load_handler("start")`` imports (or re-imports) ``functions.start.app`` inside ``mock_aws`` so the
    module-level boto3 clients and ``Settings.from_env()`` see the test's environment."""

    def _load(name: str) -> ModuleType:
        module_name = f"functions.{name}.app"
        if module_name in sys.modules:
            return importlib.reload(sys.modules[module_name])
        return importlib.import_module(module_name)

    return _load


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the scenario → outcome table recorded by the twin tests (``tests.twin.conftest.record``)."""
    try:
        from tests.twin.conftest import OUTCOMES
    except ImportError:
        return
    if OUTCOMES:
        width = max(len(s) for s, _ in OUTCOMES)
        terminalreporter.write_sep("-", "twin scenarios: outcome")
        for scenario, outcome in OUTCOMES:
            terminalreporter.write_line(f"{scenario.ljust(width)}  {outcome}")


def pytest_configure(config: Any) -> None:
    """Refuse to run with the benchmark's lax twin (bench/strictness.py leaves the strictness patches out
    in its own processes; a test run with them out would prove nothing about AWS)."""
    from sagepipe.twin.patches import BENCH_LAX_ENV

    if os.environ.get(BENCH_LAX_ENV):
        raise pytest.UsageError(f"{BENCH_LAX_ENV} is set: the twin's strictness patches would be left out")
