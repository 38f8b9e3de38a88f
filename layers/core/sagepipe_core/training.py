"""The SageMaker CreateTrainingJob request for one run (script mode, SageMaker scikit-learn container).

The state machine's ``sagemaker:createTrainingJob.sync`` task takes these fields by path. Follows the
SageMaker API reference (CreateTrainingJob) and the training-toolkit script-mode contract:
``sagemaker_program`` / ``sagemaker_submit_directory`` hyperparameters, JSON-encoded values.
"""

from __future__ import annotations

import json
from typing import Any

from .config import HIGHER_IS_BETTER as HIGHER_IS_BETTER_BY_NAME
from .config import METRICS

SPLITS = ("train", "validation", "test")
CHAMPION_CHANNEL = "champion"
MANIFEST_CHANNEL = "manifest"  # this run's split manifest: train.py copies it into model.tar.gz
_NUMBER = r"([-+0-9.eE]+|nan)"


def metric_definitions(problem_type: str) -> list[dict[str, str]]:
    """``MetricDefinitions`` matching the ``[metric] <split>:<name>=<value>`` lines ``model/train.py`` prints.

    One per split (train, validation, test, champion_test) and metric of ``problem_type``: at most 16,
    under SageMaker's limit of 40.
    """
    return [
        {"Name": f"{split}:{m}", "Regex": rf"\[metric\] {split}:{m}={_NUMBER}"}
        for split in (*SPLITS, "champion_test")
        for m in METRICS[problem_type]
    ]


def hyperparameters(config: dict[str, Any], *, code_uri: str, region: str) -> dict[str, str]:
    """HyperParameters (str → str, values JSON-encoded as the SageMaker Python SDK does).

    ``selection_metric`` is the gate metric, so ``model/train.py`` chooses among its candidates on the
    validation split by the metric the gate judges on the test split; the config's ``hyperparameters``
    may override it.

    Besides the script-mode ones and the config's ``hyperparameters``: ``target``, ``problem_type``,
    ``seed``, ``missing_features`` (the API policy ``model/train.py`` records in ``schema.json``) and,
    when ValidateData set columns aside, ``exclude_columns`` (``{column: reason}``, at most 2,500
    characters as CreateTrainingJob allows: :func:`sagepipe_core.dataset.parse_and_validate` checks it).
    """
    hp: dict[str, Any] = {
        "sagemaker_program": "train.py",
        "sagemaker_submit_directory": code_uri,
        "sagemaker_region": region,
        "target": config["target"],
        "problem_type": config["problem_type"],
        "seed": config["split"]["seed"],
        "selection_metric": config["metric"],
        "missing_features": config.get("missing_features", "impute"),
        **config.get("hyperparameters", {}),
    }
    if config.get("exclude_columns"):
        hp["exclude_columns"] = config["exclude_columns"]
    return {k: json.dumps(v) for k, v in hp.items()}


def build_request(
    *,
    job_name: str,
    config: dict[str, Any],
    split_prefixes: dict[str, str],
    champion_model_data_url: str | None,
    manifest_uri: str | None = None,
    output_path: str,
    code_uri: str,
    region: str,
) -> dict[str, Any]:
    """Fields of CreateTrainingJob the state machine passes through.

    The image and role come from ``DefinitionSubstitutions``. Fields: ``TrainingJobName``, ``HyperParameters``,
    ``MetricDefinitions``, ``InputDataConfig`` (channels train / validation / test, plus ``champion`` holding
    the production model's ``model.tar.gz`` when there is one, and ``manifest`` holding ``manifest_uri``,
    this run's split manifest, which ``train.py`` copies into the artifact so that the model carries its
    lineage when it is the champion), ``OutputDataConfig``, ``ResourceConfig``, ``StoppingCondition``.
    """

    def channel(name: str, uri: str) -> dict[str, Any]:
        return {
            "ChannelName": name,
            "ContentType": {CHAMPION_CHANNEL: "application/x-tar", MANIFEST_CHANNEL: "application/json"}.get(
                name, "text/csv"
            ),
            "InputMode": "File",
            "CompressionType": "None",
            "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": "FullyReplicated"}
            },
        }

    channels = [channel(s, split_prefixes[s]) for s in SPLITS]
    if manifest_uri:
        channels.append(channel(MANIFEST_CHANNEL, manifest_uri))
    if champion_model_data_url:
        channels.append(channel(CHAMPION_CHANNEL, champion_model_data_url))
    res = config["training"]
    return {
        "TrainingJobName": job_name,
        "HyperParameters": hyperparameters(config, code_uri=code_uri, region=region),
        "MetricDefinitions": metric_definitions(config["problem_type"]),
        "InputDataConfig": channels,
        "OutputDataConfig": {"S3OutputPath": output_path},
        "ResourceConfig": {
            "InstanceType": res["instance_type"],
            "InstanceCount": res["instance_count"],
            "VolumeSizeInGB": res["volume_size_gb"],
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": res["max_runtime_seconds"]},
    }


def with_champion(request: dict[str, Any], *, job_name: str, champion_model_data_url: str) -> dict[str, Any]:
    """A copy of the CreateTrainingJob fields ``request`` named ``job_name``, champion on another model.

    ``request`` is :func:`build_request`'s; its ``champion`` channel is added or replaced by one on
    ``champion_model_data_url``; nothing else changes.
    """
    channels = [c for c in request["InputDataConfig"] if c["ChannelName"] != CHAMPION_CHANNEL]
    template = request["InputDataConfig"][0]
    champion = {
        **template,
        "ChannelName": CHAMPION_CHANNEL,
        "ContentType": "application/x-tar",
        "DataSource": {
            "S3DataSource": {
                **template["DataSource"]["S3DataSource"],
                "S3DataType": "S3Prefix",
                "S3Uri": champion_model_data_url,
            }
        },
    }
    return {**request, "TrainingJobName": job_name, "InputDataConfig": [*channels, champion]}


def build_tuning_request(*, job_name: str, training: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Fields of CreateHyperParameterTuningJob.

    Built from the training request ``training`` and ``config["tuning"]``: ``HyperParameterTuningJobName`` (≤ 32
    chars), ``HyperParameterTuningJobConfig`` (strategy, objective ``validation:<gate metric>`` by default,
    resource limits, parameter ranges) and the ``TrainingJobDefinition`` parts taken by path
    (``StaticHyperParameters`` excludes tuned names).
    """
    tuning = config["tuning"]
    objective = tuning.get("objective") or f"validation:{config['metric']}"
    name = objective.split(":")[1]
    maximize = config["higher_is_better"] if name == config["metric"] else HIGHER_IS_BETTER_BY_NAME[name]
    ranges: dict[str, list[dict[str, Any]]] = {
        "IntegerParameterRanges": [],
        "ContinuousParameterRanges": [],
        "CategoricalParameterRanges": [],
    }
    for param, r in tuning["parameter_ranges"].items():
        if r["type"] == "categorical":
            ranges["CategoricalParameterRanges"].append({"Name": param, "Values": [str(v) for v in r["values"]]})
        elif r["type"] == "integer":
            ranges["IntegerParameterRanges"].append(
                {
                    "Name": param,
                    "MinValue": str(int(r["min_value"])),
                    "MaxValue": str(int(r["max_value"])),
                    "ScalingType": r["scaling"],
                }
            )
        else:
            ranges["ContinuousParameterRanges"].append(
                {
                    "Name": param,
                    "MinValue": str(r["min_value"]),
                    "MaxValue": str(r["max_value"]),
                    "ScalingType": r["scaling"],
                }
            )
    static = {k: v for k, v in training["HyperParameters"].items() if k not in tuning["parameter_ranges"]}
    return {
        "HyperParameterTuningJobName": job_name,
        "HyperParameterTuningJobConfig": {
            "Strategy": tuning["strategy"],
            "HyperParameterTuningJobObjective": {
                "Type": "Maximize" if maximize else "Minimize",
                "MetricName": objective,
            },
            "ResourceLimits": {
                "MaxNumberOfTrainingJobs": tuning["max_jobs"],
                "MaxParallelTrainingJobs": tuning["max_parallel_jobs"],
            },
            "ParameterRanges": ranges,
            "TrainingJobEarlyStoppingType": "Off",
        },
        "StaticHyperParameters": static,
    }
