"""Bounded local training capacity on the twin (issue 16 item 1), through the SageMaker API as a client sees
it: with one slot, a second training job waits ``InProgress`` / ``Starting`` "Launching requested ML
instances" (DescribeTrainingJob, as SageMaker shows a job whose instances are being provisioned) until the
first ends; StopTrainingJob on a waiting job stops it without running it; the script sees its CPU limits."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sagepipe.twin import iam
from sagepipe.twin.sagemaker.capacity import LAUNCHING_MESSAGE, THREAD_VARIABLES
from tests.conftest import tar_gz

from .conftest import running_twin, wait_for

pytestmark = pytest.mark.twin

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3"
HOLD = (
    "import os, time\n"
    "for k in ['SM_NUM_CPUS', " + ", ".join(repr(k) for k in THREAD_VARIABLES) + "]:\n"
    "    print(f'[env] {k}={os.environ.get(k)}', flush=True)\n"
    "hold = os.environ['HOLD_FILE']\n"
    "deadline = time.time() + 120\n"
    "while not os.path.exists(hold) and time.time() < deadline:\n"
    "    time.sleep(0.1)\n"
    "open(os.path.join(os.environ['SM_MODEL_DIR'], 'done'), 'w').write('ok')\n"
)


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with running_twin(tmp_path_factory, training_capacity=1) as t:
        t.client("s3").put_object(
            Bucket=t.info.artifacts_bucket, Key="code/captest/hold.tar.gz", Body=tar_gz({"hold.py": HOLD.encode()})
        )
        yield t


def _role() -> str:
    [arn] = [arn for arn, r in iam.DEPLOYED.items() if r.logical_id == "SageMakerExecutionRole"]
    return arn


def _create(twin: Any, name: str, hold: Path, **environment: str) -> None:
    bucket = twin.info.artifacts_bucket
    twin.client("sagemaker").create_training_job(
        TrainingJobName=name,
        RoleArn=_role(),
        AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        HyperParameters={
            "sagemaker_submit_directory": f'"s3://{bucket}/code/captest/hold.tar.gz"',
            "sagemaker_program": '"hold.py"',
        },
        OutputDataConfig={"S3OutputPath": f"s3://{bucket}/models/captest/"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        StoppingCondition={"MaxRuntimeInSeconds": 300},
        Environment={"HOLD_FILE": str(hold), **environment},
    )


def _describe(twin: Any, name: str) -> dict[str, Any]:
    return twin.client("sagemaker").describe_training_job(TrainingJobName=name)


def _ended(twin: Any, name: str) -> dict[str, Any] | None:
    desc = _describe(twin, name)
    return desc if desc["TrainingJobStatus"] in {"Completed", "Failed", "Stopped"} else None


def test_a_second_job_waits_launching_until_the_first_ends(twin: Any, tmp_path: Path) -> None:
    _create(twin, "cap-first", tmp_path / "first")
    wait_for(lambda: _describe(twin, "cap-first")["SecondaryStatus"] == "Training", "cap-first never trained")
    _create(twin, "cap-second", tmp_path / "second")
    time.sleep(2)  # long enough for the second to have started, were it not waiting
    second = _describe(twin, "cap-second")
    assert (second["TrainingJobStatus"], second["SecondaryStatus"]) == ("InProgress", "Starting"), second
    [starting] = second["SecondaryStatusTransitions"]
    assert starting["Status"] == "Starting" and starting["StatusMessage"].startswith(LAUNCHING_MESSAGE)
    assert "TrainingStartTime" not in second and _describe(twin, "cap-first")["SecondaryStatus"] == "Training"
    (tmp_path / "first").touch()
    first = wait_for(lambda: _ended(twin, "cap-first"), "cap-first never ended")
    assert first["TrainingJobStatus"] == "Completed", first.get("FailureReason")
    wait_for(lambda: _describe(twin, "cap-second")["SecondaryStatus"] == "Training", "cap-second never trained")
    (tmp_path / "second").touch()
    second = wait_for(lambda: _ended(twin, "cap-second"), "cap-second never ended")
    assert second["TrainingJobStatus"] == "Completed", second.get("FailureReason")
    assert second["TrainingStartTime"] >= first["TrainingEndTime"]
    assert [t["Status"] for t in second["SecondaryStatusTransitions"]][0] == "Starting"
    assert [t["Status"] for t in second["SecondaryStatusTransitions"]].count("Starting") == 1


def test_stopping_a_waiting_job_stops_it_without_running_it(twin: Any, tmp_path: Path) -> None:
    _create(twin, "cap-runs", tmp_path / "runs")
    wait_for(lambda: _describe(twin, "cap-runs")["SecondaryStatus"] == "Training", "cap-runs never trained")
    _create(twin, "cap-waits", tmp_path / "waits")
    assert _describe(twin, "cap-waits")["SecondaryStatus"] == "Starting"
    twin.client("sagemaker").stop_training_job(TrainingJobName="cap-waits")
    stopped = wait_for(lambda: _ended(twin, "cap-waits"), "cap-waits never ended", timeout_s=30)
    assert stopped["TrainingJobStatus"] == "Stopped" and stopped["SecondaryStatus"] == "Stopped", stopped
    assert "TrainingStartTime" not in stopped and "ModelArtifacts" not in stopped
    assert not twin.training.logs["cap-waits"], "the stopped job's script ran"
    assert _describe(twin, "cap-runs")["TrainingJobStatus"] == "InProgress"
    (tmp_path / "runs").touch()
    done = wait_for(lambda: _ended(twin, "cap-runs"), "cap-runs never ended")
    assert done["TrainingJobStatus"] == "Completed", done.get("FailureReason")


def test_the_script_sees_its_instances_cpus_unless_its_environment_sets_them(twin: Any, tmp_path: Path) -> None:
    want = str(twin.training.capacity.cpus_per_job("ml.m5.large"))
    (tmp_path / "a").touch()
    (tmp_path / "b").touch()
    _create(twin, "cap-env", tmp_path / "a")
    _create(twin, "cap-env-own", tmp_path / "b", OMP_NUM_THREADS="1")
    for name in ("cap-env", "cap-env-own"):
        desc = wait_for(lambda n=name: _ended(twin, n), f"{name} never ended")
        assert desc["TrainingJobStatus"] == "Completed", desc.get("FailureReason")
    env = dict(line[6:].split("=", 1) for line in twin.training.logs["cap-env"] if line.startswith("[env] "))
    assert env == dict.fromkeys(("SM_NUM_CPUS", *THREAD_VARIABLES), want)
    own = dict(line[6:].split("=", 1) for line in twin.training.logs["cap-env-own"] if line.startswith("[env] "))
    assert own["OMP_NUM_THREADS"] == "1" and own["MKL_NUM_THREADS"] == want
