"""The service-model validator (:mod:`sagepipe.twin.validation`): what AWS checks server-side and botocore does not."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from sagepipe.twin import validation

pytestmark = pytest.mark.unit


def _error(service: str, operation: str, params: dict) -> str:
    with pytest.raises(ClientError) as info:
        validation.validate(service, operation, params)
    assert info.value.response["Error"]["Code"] == "ValidationException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return info.value.response["Error"]["Message"]


def _package(**metadata: str) -> dict:
    return {"ModelPackageGroupName": "sagepipe-churn", "CustomerMetadataProperties": metadata}


def test_pattern_of_a_map_value_names_member_and_pattern() -> None:
    message = _error("sagemaker", "CreateModelPackage", _package(gate_reason="no champion; auc 0.91 (ok)"))
    assert message.startswith("1 validation error detected: ")
    assert "CustomerMetadataProperties.gate_reason" in message
    assert r"regular expression pattern: ([\p{L}\p{Z}\p{N}_.:\/=+\-@]*)" in message


def test_valid_values_pass_including_unicode_letters_and_separators() -> None:
    # validate raises ClientError(ValidationException) on any violation; a valid request returns None
    assert validation.validate("sagemaker", "CreateModelPackage", _package(reason="défi 0.91 s3://b/k=v/a-b@c")) is None


@pytest.mark.parametrize(
    "params, fragment",
    [
        (_package(**{"k;": "v"}), "CustomerMetadataProperties key 'k;'"),  # map key pattern
        (_package(k="x" * 257), "length less than or equal to 256"),  # max length
        (_package(**{"k" * 129: "v"}), "length less than or equal to 128"),  # map key max length
        (_package(**{f"k{i}": "v" for i in range(51)}), "CustomerMetadataProperties' failed"),  # map size
        ({"ModelPackageGroupName": "g", "ModelApprovalStatus": "approved"}, "enum value set"),  # enum
        ({"ModelPackageGroupName": "bad_name!"}, "ModelPackageGroupName"),  # name pattern
    ],
)
def test_constraints_botocore_does_not_check(params: dict, fragment: str) -> None:
    assert fragment in _error("sagemaker", "CreateModelPackage", params)


def test_numeric_range_and_list_size() -> None:
    big = {"EndpointConfigName": "c", "ProductionVariants": [{"VariantName": "v", "InitialInstanceCount": 0}] * 11}
    message = _error("sagemaker", "CreateEndpointConfig", big)
    assert (
        "ProductionVariants' failed to satisfy constraint: Member must have length less than or equal to 10" in message
    )
    assert "ProductionVariants[0].InitialInstanceCount" in message and "greater than or equal to 1" in message


def test_every_error_in_one_message() -> None:
    message = _error("sagemaker", "CreateModelPackage", _package(a="x;", b="y;"))
    assert message.startswith("2 validation errors detected: ")


def test_java_surrogate_pairs_cover_supplementary_characters() -> None:
    # SageMaker's AthenaCatalog pattern spells U+10000-U+10FFFF as \uD800\uDC00-\uDBFF\uDFFF
    query = {"Catalog": "c\U0001f600", "Database": "d", "QueryString": "q", "OutputS3Uri": "s3://b/k"}
    processing = {
        "ProcessingJobName": "p",
        "ProcessingInputs": [{"InputName": "i", "DatasetDefinition": {"AthenaDatasetDefinition": query}}],
    }
    validation.validate("sagemaker", "CreateProcessingJob", processing)
    query["Catalog"] = "c\x01"
    assert "AthenaDatasetDefinition.Catalog" in _error("sagemaker", "CreateProcessingJob", processing)


def test_fixture_makes_moto_calls_fail_as_aws(aws: None) -> None:
    """Inside the ``aws`` fixture every client (created any way) raises before moto accepts the call."""
    sm = boto3.client("sagemaker")
    with pytest.raises(ClientError, match="CustomerMetadataProperties.gate_reason"):
        sm.create_model_package(
            ModelPackageGroupName="sagepipe-churn", CustomerMetadataProperties={"gate_reason": "a; b"}
        )


def test_register_checks_a_client_outside_the_fixture() -> None:
    client = boto3.session.Session().client(
        "sagemaker", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    validation.register(client)
    with pytest.raises(ClientError, match="ValidationException|validation error"):
        client.create_model_package(ModelPackageGroupName="g", CustomerMetadataProperties={"k": "a;b"})
