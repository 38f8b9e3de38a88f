"""sagepipe_core.config: per-model config defaults and validation."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from sagepipe_core.config import COLUMN_NAME_MAX, DEFAULT_METRIC, HIGHER_IS_BETTER, METRICS, ModelConfig, parse_config
from sagepipe_core.errors import InvalidConfigError

pytestmark = pytest.mark.unit


def _fields(err: InvalidConfigError) -> list[str]:
    return [e["field"] for e in err.details["errors"]]


def test_defaults_from_none():
    c = parse_config(None)
    assert c == ModelConfig()
    assert c.problem_type == "binary" and c.target is None
    assert (c.gate_metric, c.gate_threshold, c.maximize) == ("auc", 0.75, True)
    assert (c.split.train, c.split.validation, c.split.test, c.split.seed) == (0.7, 0.15, 0.15, 42)
    assert c.min_rows == 50 and c.min_rows_per_class == 10
    assert c.training.instance_type == "ml.m5.large" and c.training.instance_count == 1
    assert c.endpoint.instance_count == 1
    assert c.incompatible_champion == "threshold_only"


@pytest.mark.parametrize("raw", [b"{}", "{}", {}])
def test_empty_document_is_defaults(raw):
    assert parse_config(raw) == ModelConfig()


@pytest.mark.parametrize(
    "problem, metric, threshold", [("binary", "auc", 0.75), ("multiclass", "macro_f1", 0.5), ("regression", "r2", 0.5)]
)
def test_default_metric_per_problem_type(problem, metric, threshold):
    c = parse_config({"problem_type": problem})
    assert c.gate_metric == metric == DEFAULT_METRIC[problem]
    assert c.gate_threshold == threshold
    assert c.maximize is True


def test_resolved_fills_every_default():
    r = parse_config({"problem_type": "regression", "metric": "rmse", "threshold": 3.5}).resolved("price")
    assert r["target"] == "price" and r["metric"] == "rmse" and r["threshold"] == 3.5
    assert r["higher_is_better"] is False
    assert r["split"] == {"train": 0.7, "validation": 0.15, "test": 0.15, "seed": 42}
    json.dumps(r)  # JSON-safe


def test_higher_is_better_override():
    c = parse_config({"metric": "auc", "higher_is_better": False})
    assert c.maximize is False


@pytest.mark.parametrize(
    "problem, metric",
    [
        ("binary", "rmse"),
        ("binary", "macro_f1"),
        ("regression", "auc"),
        ("multiclass", "f1"),
        ("binary", "AUC"),
        ("binary", "nope"),
    ],
)
def test_bad_metric_for_problem_type(problem, metric):
    with pytest.raises(InvalidConfigError) as info:
        parse_config({"problem_type": problem, "metric": metric})
    err = info.value
    assert err.reason == "invalid_config" and err.details["check"] == "config"
    assert any(metric in e["error"] and problem in e["error"] for e in err.details["errors"]), err.details


@pytest.mark.parametrize("problem", sorted(METRICS))
def test_every_listed_metric_valid_for_its_problem(problem):
    for metric in METRICS[problem]:
        c = parse_config({"problem_type": problem, "metric": metric, "threshold": 0.5})
        assert c.maximize is HIGHER_IS_BETTER[metric]


@pytest.mark.parametrize(
    "split",
    [
        {"train": 0.7, "validation": 0.2, "test": 0.2},
        {"train": 0.5, "validation": 0.1, "test": 0.1},
        {"train": 0.8, "validation": 0.1, "test": 0.2},
    ],
)
def test_split_must_sum_to_one(split):
    with pytest.raises(InvalidConfigError) as info:
        parse_config({"split": split})
    assert _fields(info.value) == ["split"]
    assert "sum to 1" in info.value.details["errors"][0]["error"]


def test_split_that_sums_to_one_accepted():
    c = parse_config({"split": {"train": 0.6, "validation": 0.2, "test": 0.2, "seed": 7}})
    assert c.split.seed == 7


@pytest.mark.parametrize(
    "split, field",
    [
        ({"train": 1.0, "validation": 0.0, "test": 0.0}, "split.train"),
        ({"train": 0.9, "validation": 0.15, "test": -0.05}, "split.test"),
    ],
)
def test_split_fraction_bounds(split, field):
    with pytest.raises(InvalidConfigError) as info:
        parse_config({"split": split})
    assert field in _fields(info.value)


@pytest.mark.parametrize("key", ["target", "problem_type", "sagemaker_program", "sagemaker_submit_directory"])
def test_reserved_hyperparameters(key):
    with pytest.raises(InvalidConfigError) as info:
        parse_config({"hyperparameters": {key: "x"}})
    assert any(key in e["error"] and "reserved" in e["error"] for e in info.value.details["errors"])


def test_ordinary_hyperparameters_accepted():
    c = parse_config({"hyperparameters": {"n_estimators": 200, "max_depth": 6, "learning_rate": 0.1, "balanced": True}})
    assert c.hyperparameters["n_estimators"] == 200


def test_details_list_every_bad_field():
    with pytest.raises(InvalidConfigError) as info:
        parse_config(
            {
                "problem_type": "ternary",
                "min_rows": 1,
                "tolerance": -1,
                "unknown_key": 1,
                "training": {"instance_type": "m5.large", "instance_count": 2},
                "endpoint": {"instance_count": 0},
            }
        )
    fields = set(_fields(info.value))
    assert {
        "problem_type",
        "min_rows",
        "tolerance",
        "unknown_key",
        "training.instance_type",
        "training.instance_count",
        "endpoint.instance_count",
    } <= fields
    doc = json.loads(str(info.value))
    assert doc["reason"] == "invalid_config" and doc["errors"]


@pytest.mark.parametrize("raw", [b"{not json", "[1, 2]", b"\xff\xfe", "null"])
def test_not_json_or_not_object(raw):
    with pytest.raises(InvalidConfigError) as info:
        parse_config(raw)
    assert info.value.details["check"] == "config"


@pytest.mark.parametrize("doc", ['{"threshold": NaN}', '{"threshold": Infinity}', '{"tolerance": NaN}'])
def test_non_finite_numbers_rejected(doc):
    with pytest.raises(InvalidConfigError):
        parse_config(doc)


def test_config_is_frozen():
    c = parse_config(None)
    with pytest.raises(ValidationError, match="frozen_instance"):  # pydantic's frozen=True assignment error
        c.metric = "f1"  # type: ignore[misc]  # assigning a frozen field is the point of the test


def test_default_threshold_is_a_real_bar():
    """Without an explicit threshold the gate bar must be achievable and meaningful: a minimise metric
    (rmse, mae, logloss) defaulting to ``<= 0`` can never deploy; a [0, 1] maximise metric defaulting to
    ``>= 0`` lets any model through. Either a sensible default or an InvalidConfigError asking for one."""
    offenders = []
    for problem, metrics in METRICS.items():
        for metric in metrics:
            try:
                c = parse_config({"problem_type": problem, "metric": metric})
            except InvalidConfigError as err:
                assert any("threshold" in e["error"] for e in err.details.get("errors", [])), err.details
                continue
            if not c.gate_threshold > 0:
                offenders.append(f"{problem}/{metric}: {'<=' if not c.maximize else '>='} {c.gate_threshold}")
    assert offenders == []


# ------------------------------------------------------------------- the execution's time budget
_RANGES = {"max_depth": {"type": "integer", "min_value": 2, "max_value": 8}}


def test_default_config_fits_the_shipped_execution_timeout():
    from sagepipe_core.config import DEFAULT_PIPELINE_TIMEOUT_SECONDS, StackLimits

    limits = StackLimits()  # the template's defaults: 7-day execution, PollSeconds 30 x MaxPolls 240
    assert limits.pipeline_timeout_seconds == DEFAULT_PIPELINE_TIMEOUT_SECONDS == 604800
    parse_config({"approval": "manual"}, limits)  # default approval (1 day) + training (1 h) fit
    parse_config({"approval": "manual", "training": {"max_runtime_seconds": 432000}}, limits)  # 5-day training


@pytest.mark.parametrize(
    "doc, culprit",
    [
        ({"approval": "manual", "approval_timeout_seconds": 31536000}, "approval_timeout_seconds 31536000 s"),
        ({"approval": "manual", "approval_timeout_seconds": 86400 * 7}, "approval_timeout_seconds 604800 s"),
        (
            {"training": {"max_runtime_seconds": 432000}, "tuning": {"parameter_ranges": _RANGES, "max_jobs": 4}},
            "x4 sequential tuning rounds",
        ),
    ],
)
def test_a_limit_that_cannot_fire_before_the_execution_times_out_is_rejected(doc, culprit):
    """Otherwise the execution times out first: no Catch, no MarkRejected, no notification."""
    from sagepipe_core.config import StackLimits

    with pytest.raises(InvalidConfigError) as info:
        parse_config(doc, StackLimits(pipeline_timeout_seconds=604800))
    [error] = info.value.details["errors"]
    assert culprit in error["error"] and "times out after 604800 s" in error["error"]


def test_an_auto_approval_does_not_count_its_unused_timeout():
    from sagepipe_core.config import StackLimits

    config = parse_config({"approval": "auto", "approval_timeout_seconds": 31536000}, StackLimits())
    assert config.approval == "auto" and config.approval_timeout_seconds == 31536000  # accepted as written
    with pytest.raises(InvalidConfigError):  # the same timeout counts once the approval is manual
        parse_config({"approval": "manual", "approval_timeout_seconds": 31536000}, StackLimits())


def test_the_budget_uses_the_deployed_timeout_and_deploy_polling():
    from sagepipe_core.config import PIPELINE_OVERHEAD_SECONDS, StackLimits

    doc = {"approval": "manual", "approval_timeout_seconds": 3600, "training": {"max_runtime_seconds": 3600}}
    need = 3600 + 3600 + 600 + PIPELINE_OVERHEAD_SECONDS
    parse_config(doc, StackLimits(pipeline_timeout_seconds=need, deploy_seconds=600))
    with pytest.raises(InvalidConfigError):
        parse_config(doc, StackLimits(pipeline_timeout_seconds=need - 1, deploy_seconds=600))


def test_parallel_tuning_jobs_shorten_the_training_budget():
    from sagepipe_core.config import StackLimits

    doc = {"training": {"max_runtime_seconds": 200000}, "tuning": {"parameter_ranges": _RANGES, "max_jobs": 4}}
    with pytest.raises(InvalidConfigError):  # 4 rounds x 200,000 s
        parse_config(doc, StackLimits())
    parse_config({**doc, "tuning": {**doc["tuning"], "max_parallel_jobs": 2}}, StackLimits())  # 2 rounds


def test_endpoint_instance_count_defaults_from_the_stack_and_the_config_wins():
    from sagepipe_core.config import StackLimits

    prod = StackLimits(endpoint_instance_count=2)
    assert parse_config(None, prod).endpoint.instance_count == 2
    assert parse_config({"endpoint": {"instance_type": "ml.c5.large"}}, prod).endpoint.instance_count == 2
    assert parse_config({"endpoint": {"instance_count": 1}}, prod).endpoint.instance_count == 1
    assert parse_config(None).endpoint.instance_count == 1


@pytest.mark.parametrize(
    "doc, field, message",
    [
        ({"exclude": ["ok", "x" * (COLUMN_NAME_MAX + 1)]}, "exclude.1", f"at most {COLUMN_NAME_MAX}"),
        ({"include": [" plan"]}, "include.0", "surrounding whitespace"),
        ({"include": [""]}, "include.0", "is blank"),
        ({"exclude": ["\t"]}, "exclude.0", "is blank"),
        ({"target": ""}, "target", "is blank"),
        ({"target": "x" * 5000}, "target", "5000 characters long"),
        ({"exclude": [f"column_{i:04d}" for i in range(200)]}, "(root)", "exclude_columns hyperparameter"),
        ({"exclude": [f"c{i}" for i in range(1001)]}, "exclude", "at most 1000"),
    ],
)
def test_column_names_a_data_set_could_never_have_are_refused(doc, field, message):
    """Issue 11: exclude/include (and target) name columns; ValidateData's header check strips names and
    refuses blank ones and ones over COLUMN_NAME_MAX characters, and the excluded names must fit the
    exclude_columns hyperparameter (2,500 characters). Before, any string of any length was accepted."""
    with pytest.raises(InvalidConfigError) as info:
        parse_config(doc)
    errors = info.value.details["errors"]
    assert [e["field"] for e in errors] == [field] and message in errors[0]["error"], errors


def test_the_longest_column_name_the_header_allows_can_be_named():
    from sagepipe_core import dataset

    name = "q" * COLUMN_NAME_MAX
    assert parse_config({"exclude": [name]}).exclude == [name]
    rows = "".join(f"{i % 5},{i % 3},{'ab'[i % 2]}\n" for i in range(60))
    data = dataset.parse_and_validate(f"{name},x,y\n{rows}".encode(), parse_config({"exclude": [name]}))
    assert data.excluded == {name: "config"}
    assert parse_config({"exclude": [f"c{i}" for i in range(120)]})  # 120 short names fit the hyperparameter
