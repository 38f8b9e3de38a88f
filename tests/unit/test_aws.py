"""sagepipe_core.aws: the ClientError classifier and the model.tar.gz member reader."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest
from botocore.exceptions import ClientError
from botocore.retries.standard import ThrottledRetryableChecker

from sagepipe_core import aws
from tests.conftest import tar_gz as tarball
from tests.unit.fakes import FakeS3


def client_error(code: str, message: str = "", op: str = "Op") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, op)


@pytest.mark.parametrize(
    ("code", "message", "kind"),
    [
        ("NoSuchKey", "The specified key does not exist.", "not_found"),  # S3 GetObject
        ("404", "Not Found", "not_found"),  # S3 HeadObject
        ("ExecutionDoesNotExist", "Execution Does Not Exist: 'arn:...'", "not_found"),  # SFN
        ("ValidationException", 'Could not find endpoint "sagepipe-churn".', "not_found"),  # SageMaker
        ("ValidationException", "ModelPackageGroup arn:... does not exist.", "not_found"),
        ("ExecutionAlreadyExists", "Execution Already Exists: 'arn:...'", "already_exists"),
        ("ValidationException", 'Cannot create already existing model "m".', "already_exists"),
        ("ValidationException", "Model Package Group already exists: arn:...", "already_exists"),
        ("ThrottlingException", "Rate exceeded", "throttled"),
        ("SomeNewThrottlingError", "", "throttled"),
        ("ValidationException", "Cannot update in-progress endpoint", "in_progress"),
        ("ValidationException", "1 validation error detected: Value 'x' at 'name' failed", "other"),
        ("AccessDeniedException", "not authorized", "other"),
        ("InternalFailure", "", "other"),
    ],
)
def test_error_kind(code: str, message: str, kind: str) -> None:
    assert aws.error_kind(client_error(code, message)) == kind


def test_error_code_and_message_tolerate_a_bare_response() -> None:
    exc = ClientError({}, "Op")
    assert (aws.error_code(exc), aws.error_message(exc), aws.error_kind(exc)) == ("", "", "other")


def test_throttling_codes_cover_botocores_list() -> None:
    """Every code botocore's standard retry mode treats as throttling is ``throttled`` here too."""
    botocore_codes = set(vars(ThrottledRetryableChecker)["_THROTTLED_ERROR_CODES"])  # private, not in the stubs
    assert botocore_codes <= aws.THROTTLING_CODES, botocore_codes - aws.THROTTLING_CODES


@pytest.mark.parametrize("uri", ["s3://bucket", "s3://bucket/", "s3:///key", "https://bucket/key", "bucket/key", ""])
def test_split_s3_uri_rejects_non_s3_uris(uri: str) -> None:
    with pytest.raises(aws.ArtifactError, match="not an s3://bucket/key URI"):
        aws.split_s3_uri(uri)


def test_split_s3_uri() -> None:
    assert aws.split_s3_uri("s3://b/models/m/out/model.tar.gz") == ("b", "models/m/out/model.tar.gz")


def test_read_artifact_members_reads_named_files_only() -> None:
    s3 = FakeS3()
    s3.objects["b", "m/model.tar.gz"] = tarball(
        {"./model.joblib": b"\0" * 64, "./schema.json": b'{"a": 1}', "code/inference.py": b"print()"}
    )
    found = aws.read_artifact_members(s3, "s3://b/m/model.tar.gz", ("schema.json", "evaluation.json"))
    assert found == {"schema.json": b'{"a": 1}'}  # ./ prefix dropped, absent member absent


def test_read_artifact_members_stops_once_all_names_are_read() -> None:
    """Stream mode: members after the last wanted one are never read from the body."""
    s3 = FakeS3()
    big = random.Random(0).randbytes(2_000_000)  # incompressible, after the reports
    s3.objects["b", "k"] = tarball({"evaluation.json": b"{}", "schema.json": b"{}", "model.joblib": big})
    found = aws.read_artifact_members(s3, "s3://b/k", ["schema.json", "evaluation.json"])
    assert found == {"evaluation.json": b"{}", "schema.json": b"{}"}
    body = s3.bodies["b", "k"]
    assert body.bytes_read < body.size / 10, (body.bytes_read, body.size)
    assert body.closed  # the HTTP stream is released


@pytest.mark.parametrize("raw", [b"not a tarball", tarball({"schema.json": b"{}"})[:40]])
def test_read_artifact_members_unreadable_object(raw: bytes) -> None:
    s3 = FakeS3()
    s3.objects["b", "k"] = raw
    with pytest.raises(aws.ArtifactError, match="is not a readable model.tar.gz"):
        aws.read_artifact_members(s3, "s3://b/k", ["schema.json"])


def test_read_artifact_members_missing_object_is_the_s3_error() -> None:
    with pytest.raises(ClientError) as err:
        aws.read_artifact_members(FakeS3(), "s3://b/nothing", ["schema.json"])
    assert aws.error_kind(err.value) == "not_found"


def test_aws_module_imports_no_pydantic() -> None:
    """The predict function's slim layer has no pydantic or X-Ray SDK: what it imports of the core must not need them."""
    code = (
        "import sys, sagepipe_core.aws, sagepipe_core.predict;"
        "print(sorted(m for m in ('pydantic', 'aws_xray_sdk', 'sagepipe_core.handler') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"
