"""sagepipe_core.naming: SageMaker and Step Functions naming rules, determinism, uniqueness."""

from __future__ import annotations

import random
import re

import pytest

from sagepipe_core import naming

pytestmark = pytest.mark.unit

SM_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
EXEC_RE = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
HASH_SUFFIX = re.compile(r"-[0-9a-f]{10}$")

ALPHABET = "abcXYZ0189-_. /+%()ü€漢字🙂\t\n\0----____"


def _strings(n: int = 400, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    out = [
        "a",
        "A",
        "0",
        "-",
        "_",
        "",
        "é",
        "🙂" * 5,
        "-a-",
        "a" * 63,
        "a" * 64,
        "a-" * 40,
        "x" * 300,
        "churn",
        "churn - Copy (2)",
        "c++",
        "datasets/churn/churn.csv",
        "ab" + "-" * 70 + "cd",
    ]
    for _ in range(n):
        length = rng.choice([1, 2, 5, 20, 62, 63, 64, 79, 80, 81, 120, 300])
        out.append("".join(rng.choice(ALPHABET) for _ in range(length)))
    return out


STRINGS = _strings()


def test_sagemaker_name_always_valid_with_unique():
    for base in STRINGS:
        for unique in ("exec-1", base or "x"):
            name = naming.sagemaker_name(base, unique=unique)
            assert SM_RE.match(name), (base, name)
            assert len(name) <= 63


def test_sagemaker_name_without_unique_valid_or_valueerror():
    for base in STRINGS:
        if not re.search(r"[A-Za-z0-9]", base):
            with pytest.raises(ValueError):
                naming.sagemaker_name(base)
            continue
        name = naming.sagemaker_name(base)
        assert SM_RE.match(name), (base, name)


def test_sagemaker_name_keeps_short_valid_names():
    assert naming.sagemaker_name("churn") == "churn"
    assert naming.sagemaker_name("sagepipe-churn") == "sagepipe-churn"
    assert naming.sagemaker_name("a" * 63) == "a" * 63


def test_sagemaker_name_truncated_gets_hash_suffix():
    long = "m" * 300
    name = naming.sagemaker_name(long)
    assert len(name) == 63
    assert HASH_SUFFIX.search(name)
    assert name.endswith(naming.short_hash(long))
    # two long names sharing the first 63 characters stay distinct
    assert naming.sagemaker_name("m" * 300 + "a") != naming.sagemaker_name("m" * 300 + "b")


def test_execution_name_always_valid():
    rng = random.Random(7)
    for model in STRINGS[:150]:
        key = f"datasets/{model}/{rng.choice(STRINGS)}.csv"
        name = naming.execution_name(model, key, "etag")
        assert EXEC_RE.match(name), (model, key, name)


def test_execution_name_shape_and_determinism():
    name = naming.execution_name("churn", "datasets/churn/churn - Copy (2).csv", "abc")
    assert name.startswith("churn-churn_-_Copy_2")
    assert HASH_SUFFIX.search(name)
    assert name == naming.execution_name("churn", "datasets/churn/churn - Copy (2).csv", "abc")


def test_execution_name_truncates_long_model_with_hash():
    model = "m" * 300
    name = naming.execution_name(model, f"datasets/{model}/data.csv", "etag1")
    assert len(name) == 80 and EXEC_RE.match(name)
    assert name.endswith(naming.short_hash(model, f"datasets/{model}/data.csv", "etag1"))


def test_distinct_identities_give_distinct_execution_names():
    names = set()
    for model in ("churn", "churn2"):
        for key in (
            "datasets/x/a.csv",
            "datasets/x/a.CSV",
            "datasets/x/b.csv",
            "datasets/x/a b.csv",
            "datasets/x/a+b.csv",
        ):
            for identity in ("e1", "e2", "retrain-request:1", "schedule:1"):
                names.add(naming.execution_name(model, key, identity))
    assert len(names) == 2 * 5 * 4
    # keys that sanitise to the same readable part still differ by hash
    assert naming.execution_name("m", "datasets/m/a b.csv", "e") != naming.execution_name(
        "m", "datasets/m/a_b.csv", "e"
    )


def test_version_names_valid_deterministic_and_unique():
    execs = [naming.execution_name("churn", f"datasets/churn/{i}.csv", str(i)) for i in range(200)]
    seen = set()
    for e in execs:
        names = naming.version_names("churn", e)
        assert set(names) == {"TrainingJobName", "ModelName", "EndpointConfigName"}
        for value in names.values():
            assert SM_RE.match(value) and len(value) <= 63
        assert names == naming.version_names("churn", e)
        seen.add(names["TrainingJobName"])
    assert len(seen) == len(execs)


def test_version_names_long_and_unicode_models():
    for model in ("x" * 300, "モデル", "a_b.c d"):
        e = naming.execution_name(model, f"datasets/{model}/d.csv", "id")
        names = naming.version_names(model, e)
        assert all(SM_RE.match(v) and len(v) <= 63 for v in names.values()), names


def test_endpoint_name_stable_and_valid():
    assert naming.endpoint_name("sagepipe", "churn") == "sagepipe-churn"
    assert naming.endpoint_name("sagepipe", "churn") == naming.endpoint_name("sagepipe", "churn")
    long = naming.endpoint_name("sagepipe", "y" * 120)
    assert SM_RE.match(long) and len(long) <= 63 and HASH_SUFFIX.search(long)


def test_distinct_models_get_distinct_endpoints():
    """Model names the API accepts (``[A-Za-z0-9][A-Za-z0-9_-]{0,39}``) must not share an endpoint:
    otherwise deploying one model replaces the other's endpoint."""
    assert naming.endpoint_name("sagepipe", "churn_v2") != naming.endpoint_name("sagepipe", "churn-v2")
    assert naming.model_package_group_name("sagepipe", "a_b") != naming.model_package_group_name("sagepipe", "a-b")


def test_short_hash():
    assert naming.short_hash("a", "b") == naming.short_hash("a", "b")
    assert naming.short_hash("a", "b") != naming.short_hash("ab")
    assert re.fullmatch(r"[0-9a-f]{10}", naming.short_hash("x"))
