"""Issue 9 item 2: the framework images resolve per Region from the sagemaker SDK's image registry.

The SDK's registry JSON is read from the installed ``sagemaker-core`` distribution (installed with
``--no-deps`` by ``make install``), without importing the SDK."""

from __future__ import annotations

import fnmatch
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import botocore.session
import pytest

from sagepipe.twin.cloudformation.template import NO_VALUE, Stack, load_template

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
SKLEARN_IMAGE = "sagemaker-scikit-learn:1.4-2-cpu-py3"


def _sdk_registries(framework: str, scope: str, version: str) -> dict[str, str]:
    path = importlib.metadata.distribution("sagemaker-core").locate_file(
        f"sagemaker/core/image_uri_config/{framework}.json"
    )
    config = json.loads(Path(str(path)).read_text())[scope]
    return dict(config["versions"][config.get("version_aliases", {}).get(version, version)]["registries"])


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(REPO / "template.yaml")


@pytest.fixture(scope="module")
def mapping(template: dict[str, Any]) -> dict[str, dict[str, str]]:
    rows: dict[str, dict[str, str]] = template["Mappings"]["FrameworkImageAccounts"]
    return rows


@pytest.mark.parametrize(
    ("attribute", "framework", "scope", "version"),
    [
        ("sklearn", "sklearn", "training", "1.4-2"),
        ("xgboost", "xgboost", "training", "3.2-0"),
        ("pytorchtraining", "pytorch", "training", "2.6.0"),
        ("pytorchinference", "pytorch", "inference", "2.6.0"),
    ],
)
def test_mapping_equals_the_sdk_registry_in_every_region(
    mapping: dict[str, dict[str, str]], attribute: str, framework: str, scope: str, version: str
) -> None:
    sdk = _sdk_registries(framework, scope, version)
    assert len(sdk) >= 37
    ours = {region: row[attribute] for region, row in mapping.items() if attribute in row}
    assert ours == sdk


def test_sklearn_serving_registry_is_the_training_one() -> None:
    """The SDK lists scikit-learn 1.4-2 for training only (serving: 1.4-2-py312): the same registries."""
    assert _sdk_registries("sklearn", "inference", "1.4-2-py312") == _sdk_registries("sklearn", "training", "1.4-2")


def test_known_accounts(mapping: dict[str, dict[str, str]]) -> None:
    """Spot checks from the SageMaker docs ("Docker Registry Paths and Example Code")."""
    assert mapping["us-east-1"]["sklearn"] == "683313688378"
    assert mapping["eu-west-1"]["sklearn"] == "141502667606"
    assert mapping["ap-southeast-2"]["sklearn"] == "783357654285"


def test_generated_block_is_up_to_date() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_image_mappings.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


class RegionStack(Stack):
    """The twin's resolver with the partition and URL suffix of ``region`` (botocore's endpoint data)."""

    def pseudo(self, name: str) -> object:
        partition = botocore.session.get_session().get_partition_for_region(self.region)
        suffix = {"aws-cn": "amazonaws.com.cn"}.get(partition, "amazonaws.com")
        return {"AWS::Partition": partition, "AWS::URLSuffix": suffix}.get(name, super().pseudo(name))


def _stack(template: dict[str, Any], region: str, **overrides: str) -> RegionStack:
    s = RegionStack(name="sagepipe", template=template, root=REPO, region=region, parameter_overrides=overrides)
    s.physical.update(ArtifactsBucket="artifacts", TrainingPipeline="arn:sm")
    return s


def _images_and_pull_grants(stack: Stack) -> tuple[set[str], list[str]]:
    res = stack.template["Resources"]
    images = {
        stack.resolve(res["TrainingPipeline"]["Properties"]["DefinitionSubstitutions"]["TrainingImage"]),
        stack.resolve(res["DeployFunction"]["Properties"]["Environment"]["Variables"]["INFERENCE_IMAGE"]),
        stack.resolve(res["RegisterFunction"]["Properties"]["Environment"]["Variables"]["INFERENCE_IMAGE"]),
    }
    [policy] = res["SageMakerExecutionRole"]["Properties"]["Policies"]
    [pull] = [st for st in policy["PolicyDocument"]["Statement"] if st.get("Sid") == "PullFrameworkImage"]
    grants = [r for r in stack.resolve(pull["Resource"]) if r is not NO_VALUE]
    return images, grants


def _repository_arn(image: str, partition: str) -> str:
    account, _, _, region = image.split(".")[:4]
    repository = image.split("/", 1)[1].split(":", 1)[0]
    return f"arn:{partition}:ecr:{region}:{account}:repository/{repository}"


@pytest.mark.parametrize(
    "region", ["us-east-1", "eu-west-1", "ap-southeast-2", "af-south-1", "us-gov-west-1", "cn-north-1"]
)
def test_images_come_from_the_stacks_region_and_may_be_pulled(
    template: dict[str, Any], mapping: dict[str, dict[str, str]], region: str
) -> None:
    stack = _stack(template, region)
    images, grants = _images_and_pull_grants(stack)
    suffix = str(stack.pseudo("AWS::URLSuffix"))
    assert images == {f"{mapping[region]['sklearn']}.dkr.ecr.{region}.{suffix}/{SKLEARN_IMAGE}"}
    partition = str(stack.pseudo("AWS::Partition"))
    for image in images:
        assert any(fnmatch.fnmatchcase(_repository_arn(image, partition), g) for g in grants), (image, grants)
    assert all(":*:" not in g for g in grants), "pull grants name the registry account"


def test_an_image_override_is_used_and_may_be_pulled(template: dict[str, Any]) -> None:
    own = "111122223333.dkr.ecr.eu-west-1.amazonaws.com/my-sklearn:2026-12"
    stack = _stack(template, "eu-west-1", TrainingImage=own, InferenceImage=own)
    images, grants = _images_and_pull_grants(stack)
    assert images == {own}
    assert "arn:aws:ecr:eu-west-1:111122223333:repository/my-sklearn" in grants
