"""samconfig.toml: `sam deploy` alone (the default environment) is dev; prod is one flag away and puts
endpoints on at least two instances (SageMaker spreads them across Availability Zones)."""

from __future__ import annotations

import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def _config() -> dict:
    return tomllib.loads((REPO / "samconfig.toml").read_text())


def _overrides(env: str) -> dict[str, str]:
    text = _config()[env]["deploy"]["parameters"]["parameter_overrides"]
    return dict(item.split("=", 1) for item in shlex.split(text))


def _parameters() -> dict:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    return yaml.load((REPO / "template.yaml").read_text(), Loader=Loader)["Parameters"]  # noqa: S506 - SafeLoader subclass


def test_dev_and_prod_environments_exist_and_default_is_dev():
    cfg = _config()
    assert {"default", "dev", "prod"} <= set(cfg)
    assert cfg["default"]["deploy"] == cfg["dev"]["deploy"]  # `sam deploy` with no --config-env is dev


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_each_environment_deploys_without_prompts_or_extra_steps(env):
    params = _config()[env]["deploy"]["parameters"]
    assert params["resolve_s3"] is True  # SAM's managed bucket for the packaged code: no bucket to create first
    assert "CAPABILITY_IAM" in params["capabilities"]  # the template creates IAM roles
    assert params["fail_on_empty_changeset"] is False  # re-deploying an unchanged stack succeeds


def test_environments_are_separate_stacks_with_separate_resource_names():
    dev, prod = _config()["dev"]["deploy"]["parameters"], _config()["prod"]["deploy"]["parameters"]
    assert dev["stack_name"] != prod["stack_name"]
    assert _overrides("dev")["ResourcePrefix"] != _overrides("prod")["ResourcePrefix"]  # endpoint names differ


def test_prod_endpoints_default_to_at_least_two_instances():
    assert int(_overrides("prod")["EndpointInstanceCount"]) >= 2
    assert int(_overrides("dev")["EndpointInstanceCount"]) == 1


@pytest.mark.parametrize("env", ["default", "dev", "prod"])
def test_overrides_are_template_parameters_within_their_constraints(env):
    params = _parameters()
    for name, value in _overrides(env).items():
        assert name in params, f"{env}: {name} is not a template parameter"
        p = params[name]
        if p["Type"] == "Number":
            assert p.get("MinValue", float("-inf")) <= float(value) <= p.get("MaxValue", float("inf")), name
        if "AllowedPattern" in p:
            import re

            assert re.fullmatch(p["AllowedPattern"], value), name
