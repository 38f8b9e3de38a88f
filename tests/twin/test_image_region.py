"""SageMaker refuses an ECR image of another Region (issue 9 item 2 at the wire; issue 10).

The twin runs in us-east-1; this module's stack takes eu-west-1's scikit-learn image as its
``TrainingImage``/``InferenceImage`` overrides, so the template grants the execution role the pull of that
repository and only the Region is wrong - which AWS refuses ("must be in the same region as the model or
endpoint you are creating", SageMaker API Reference, ``ContainerDefinition.Image``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sagepipe.client import Target
from sagepipe.twin import iam

from .conftest import running_twin

pytestmark = pytest.mark.twin

EU_WEST_1 = "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3"
OTHER_REPOSITORY = "111122223333.dkr.ecr.us-east-1.amazonaws.com/not-granted:1"
CROSS_REGION = (
    f'Region of "{EU_WEST_1}" does not match expected region of us-east-1. '
    "Cross region ECR image pulls are not allowed."
)


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A us-east-1 twin whose stack was deployed with eu-west-1's image (granted to the execution role).

    The roles this deploy records in ``iam.DEPLOYED`` (same ARNs, other ECR grants) are put back as they
    were afterwards, so test_iam_mutation.py mutates the default stack's roles whatever the module order."""
    before = dict(iam.DEPLOYED)
    try:
        with running_twin(tmp_path_factory, TrainingImage=EU_WEST_1, InferenceImage=EU_WEST_1) as t:
            yield t
    finally:
        iam.DEPLOYED.clear()
        iam.DEPLOYED.update(before)


def _execution_role() -> str:
    [arn] = [arn for arn, r in iam.DEPLOYED.items() if r.logical_id == "SageMakerExecutionRole"]
    return arn


def _refused(call: Any, **params: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as info:
        call(**params)
    return info.value.response


def test_the_role_may_pull_the_other_regions_image(twin: Any) -> None:
    """What makes the refusals below the Region's, not IAM's: the role is granted that repository
    (evaluated without ``iam.authorize``, so nothing is recorded for the mutation test)."""
    checks = iam.image_pull_checks(EU_WEST_1)
    assert checks and all(iam.evaluate(iam.role_policies(_execution_role()), c).allowed for c in checks)


def test_create_model_with_an_image_of_another_region_is_refused(target: Target) -> None:
    sm = target.client("sagemaker")
    resp = _refused(
        sm.create_model, ModelName="xregion", ExecutionRoleArn=_execution_role(), PrimaryContainer={"Image": EU_WEST_1}
    )
    assert resp["Error"]["Code"] == "ValidationException" and resp["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert resp["Error"]["Message"] == CROSS_REGION
    assert sm.list_models(NameContains="xregion")["Models"] == []


def test_create_training_job_with_an_image_of_another_region_is_refused(target: Target) -> None:
    sm = target.client("sagemaker")
    resp = _refused(
        sm.create_training_job,
        TrainingJobName="xregion",
        RoleArn=_execution_role(),
        AlgorithmSpecification={"TrainingImage": EU_WEST_1, "TrainingInputMode": "File"},
        OutputDataConfig={"S3OutputPath": f"s3://{target.artifacts_bucket}/xregion/"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        StoppingCondition={"MaxRuntimeInSeconds": 60},
    )
    assert resp["Error"]["Code"] == "ValidationException" and resp["Error"]["Message"] == CROSS_REGION
    assert sm.list_training_jobs(NameContains="xregion")["TrainingJobSummaries"] == []


def test_an_image_of_the_requests_region_is_still_checked_against_the_role(target: Target) -> None:
    """A same-Region image of a repository the role is not granted is IAM's refusal, as before."""
    resp = _refused(
        target.client("sagemaker").create_model,
        ModelName="sameregion",
        ExecutionRoleArn=_execution_role(),
        PrimaryContainer={"Image": OTHER_REPOSITORY},
    )
    assert resp["Error"]["Code"] == "ValidationException"
    assert resp["Error"]["Message"].startswith("Access denied for repository: not-granted in registry ID: 111122223333")
