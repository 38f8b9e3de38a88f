"""sagepipe.twin.sagemaker.training.run_training_job against moto S3 (in-process) with the real model/ code."""

from __future__ import annotations

import io
import itertools
import json
import tarfile
import time
from pathlib import Path

import boto3
import pandas as pd
import pytest
from moto import mock_aws

from sagepipe import codebundle
from sagepipe.twin.sagemaker.training import TrainingResult, parse_final_metrics, run_training_job
from tests.conftest import tar_gz

pytestmark = pytest.mark.twin

REPO = Path(__file__).resolve().parents[2]
CHURN = REPO / "examples" / "data" / "churn.csv"
BUCKET = "sagepipe-test-bucket"
METRIC_DEFS = [
    {"Name": "validation:auc", "Regex": r"\[metric\] validation:auc=([-+0-9.eE]+|nan)"},
    {"Name": "test:auc", "Regex": r"\[metric\] test:auc=([-+0-9.eE]+|nan)"},
    {"Name": "train:logloss", "Regex": r"\[metric\] train:logloss=([-+0-9.eE]+|nan)"},
    {"Name": "never:seen", "Regex": r"\[metric\] never:seen=([-+0-9.eE]+)"},
]

TOY_SCRIPTS = {
    "fail_file.py": (
        "import os, sys\n"
        "open(os.path.join(os.environ['SM_OUTPUT_DIR'], 'failure'), 'w').write('boom: bad data')\n"
        "sys.exit(3)\n"
    ),
    "crash.py": "print('starting')\nraise ValueError('exploded in training')\n",
    "sleep.py": "import time\nprint('sleeping', flush=True)\ntime.sleep(60)\n",
    "envdump.py": (
        "import json, os, sys\n"
        "keys = [k for k in os.environ if k.startswith('SM_') or k in ('MY_ENV', 'TRAINING_JOB_NAME')]\n"
        "doc = {'argv': sys.argv[1:], 'cwd': os.getcwd(), 'env': {k: os.environ[k] for k in keys},\n"
        "       'files': sorted(os.listdir(os.environ['SM_CHANNEL_TRAIN']))}\n"
        "open(os.path.join(os.environ['SM_MODEL_DIR'], 'env.json'), 'w').write(json.dumps(doc))\n"
        "print('[metric] validation:auc=nan')\n"
        "print('[metric] validation:auc=0.5')\n"
        "print('[metric] validation:auc=0.75')\n"
        "print('[metric] test:auc=garbage')\n"
    ),
}


@pytest.fixture(scope="module")
def s3():
    with mock_aws():
        client = boto3.client(
            "s3", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        client.create_bucket(Bucket=BUCKET)
        df = pd.read_csv(CHURN, dtype=str, keep_default_na=False)
        splits = {"train": df.iloc[:3500], "validation": df.iloc[3500:4250], "test": df.iloc[4250:]}
        for name, frame in splits.items():
            if name == "train":  # two objects under the prefix -> both downloaded and concatenated
                client.put_object(Bucket=BUCKET, Key="data/train/a.csv", Body=frame.iloc[:1000].to_csv(index=False))
                client.put_object(Bucket=BUCKET, Key="data/train/sub/b.csv", Body=frame.iloc[1000:].to_csv(index=False))
            else:
                client.put_object(Bucket=BUCKET, Key=f"data/{name}/{name}.csv", Body=frame.to_csv(index=False))
        # the code bundle exactly as the twin and `sagepipe publish-code` publish it
        client.put_object(Bucket=BUCKET, Key="code/sourcedir.tar.gz", Body=codebundle.build(REPO / "model"))
        client.put_object(
            Bucket=BUCKET, Key="code/toy.tar.gz", Body=tar_gz({k: v.encode() for k, v in TOY_SCRIPTS.items()})
        )
        yield client


def make_request(name: str, program: str = "train.py", source: str = "code/sourcedir.tar.gz", **over) -> dict:
    req = {
        "TrainingJobName": name,
        "AlgorithmSpecification": {
            "TrainingImage": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3",
            "TrainingInputMode": "File",
            "MetricDefinitions": METRIC_DEFS,
        },
        "HyperParameters": {
            "target": '"churn"',
            "max_iter": "100",
            "sagemaker_program": json.dumps(program),
            "sagemaker_submit_directory": json.dumps(f"s3://{BUCKET}/{source}"),
            "sagemaker_region": '"us-east-1"',
        },
        "InputDataConfig": [
            {
                "ChannelName": ch,
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/data/{ch}"}},
                "ContentType": "text/csv",
            }
            for ch in ("train", "validation", "test")
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/models/"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
        "RoleArn": "arn:aws:iam::123456789012:role/sm",
    }
    req.update(over)
    return req


@pytest.fixture(scope="module")
def completed(s3, tmp_path_factory):
    statuses, logs = [], []
    work = tmp_path_factory.mktemp("jobs")
    t = time.monotonic()
    result = run_training_job(
        make_request("churn-job-1"), s3, work, on_status=lambda s, m: statuses.append((s, m)), on_log=logs.append
    )
    return result, statuses, logs, work, time.monotonic() - t


def test_completed_job(completed, s3):
    result, statuses, logs, work, seconds = completed
    assert isinstance(result, TrainingResult)
    assert result.status == "Completed", result.failure_reason
    assert result.failure_reason is None
    assert [s for s, _ in statuses] == ["Starting", "Downloading", "Training", "Uploading", "Completed"]
    trans = result.secondary_status_transitions
    assert [t["Status"] for t in trans] == [s for s, _ in statuses]
    for a, b in itertools.pairwise(trans):
        assert a["EndTime"] == b["StartTime"] and a["StartTime"] <= a["EndTime"]
    assert 0 < result.training_seconds < seconds
    assert result.model_artifacts == f"s3://{BUCKET}/models/churn-job-1/output/model.tar.gz"
    assert any(line.startswith("[metric] validation:auc=") for line in logs)
    assert logs == result.log_lines
    print(f"twin training job wall time {seconds:.2f}s (script {result.training_seconds:.2f}s)")


def test_final_metrics_and_artifacts(completed, s3):
    result = completed[0]
    obj = s3.get_object(Bucket=BUCKET, Key="models/churn-job-1/output/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(obj), mode="r:gz") as tar:
        names = set(tar.getnames())
        assert {"schema.json", "model.joblib", "evaluation.json", "code/inference.py"} <= names
        schema = json.load(tar.extractfile("schema.json"))
        evaluation = json.load(tar.extractfile("evaluation.json"))
    assert schema["target"] == "churn" and schema["labels"] == ["no", "yes"]
    assert evaluation["rows"] == {"train": 3500, "validation": 750, "test": 750}
    metrics = {m["MetricName"]: m["Value"] for m in result.final_metrics}
    assert [m["MetricName"] for m in result.final_metrics] == ["validation:auc", "test:auc", "train:logloss"]
    assert metrics["validation:auc"] == evaluation["metrics"]["validation"]["auc"] > 0.8
    assert metrics["test:auc"] == evaluation["metrics"]["test"]["auc"]
    assert metrics["train:logloss"] == evaluation["metrics"]["train"]["logloss"]
    assert result.output_data == f"s3://{BUCKET}/models/churn-job-1/output/output.tar.gz"


def test_opt_ml_layout(completed):
    work = completed[3]
    root = work / "churn-job-1"
    hps = json.loads((root / "input/config/hyperparameters.json").read_text())
    assert hps["target"] == '"churn"' and hps["sagemaker_program"] == '"train.py"'
    assert set(json.loads((root / "input/config/inputdataconfig.json").read_text())) == {"train", "validation", "test"}
    assert json.loads((root / "input/config/resourceconfig.json").read_text())["current_host"] == "algo-1"
    assert (root / "input/data/train/a.csv").is_file() and (root / "input/data/train/sub/b.csv").is_file()
    assert (root / "code/train.py").is_file() and (root / "model/schema.json").is_file()


def test_environment_contract(s3, tmp_path):
    req = make_request("env-job", program="envdump.py", source="code/toy.tar.gz", Environment={"MY_ENV": "hello"})
    result = run_training_job(req, s3, tmp_path)
    assert result.status == "Completed", result.failure_reason
    obj = s3.get_object(Bucket=BUCKET, Key="models/env-job/output/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(obj), mode="r:gz") as tar:
        doc = json.load(tar.extractfile("env.json"))
    env = doc["env"]
    root = tmp_path / "env-job"
    assert doc["argv"] == ["--target", "churn", "--max_iter", "100"]
    assert doc["cwd"] == str(root / "code")
    assert doc["files"] == ["a.csv", "sub"]
    assert env["SM_MODEL_DIR"] == str(root / "model")
    assert env["SM_OUTPUT_DATA_DIR"] == str(root / "output" / "data")
    assert env["SM_CHANNEL_VALIDATION"] == str(root / "input" / "data" / "validation")
    assert json.loads(env["SM_CHANNELS"]) == ["test", "train", "validation"]
    assert json.loads(env["SM_HPS"]) == {"target": "churn", "max_iter": 100}
    assert env["SM_HP_TARGET"] == "churn" and env["SM_HP_MAX_ITER"] == "100"
    assert env["SM_CURRENT_HOST"] == "algo-1" and json.loads(env["SM_HOSTS"]) == ["algo-1"]
    assert int(env["SM_NUM_CPUS"]) >= 1 and json.loads(env["SM_TRAINING_ENV"])["job_name"] == "env-job"
    assert env["MY_ENV"] == "hello" and env["TRAINING_JOB_NAME"] == "env-job"
    # last parseable match wins; nan and garbage skipped
    assert result.final_metrics == [{"MetricName": "validation:auc", "Value": 0.75}]


def test_failure_file_becomes_failure_reason(s3, tmp_path):
    result = run_training_job(make_request("fail-job", "fail_file.py", "code/toy.tar.gz"), s3, tmp_path)
    assert result.status == "Failed"
    assert result.failure_reason == "AlgorithmError: boom: bad data, exit code 3"
    assert result.secondary_status_transitions[-1]["Status"] == "Failed"
    assert "boom" in result.secondary_status_transitions[-1]["StatusMessage"]
    assert result.model_artifacts is None


def test_crash_uses_stderr_tail(s3, tmp_path):
    result = run_training_job(make_request("crash-job", "crash.py", "code/toy.tar.gz"), s3, tmp_path)
    assert result.status == "Failed"
    assert result.failure_reason.startswith("AlgorithmError: ")
    assert "ValueError: exploded in training" in result.failure_reason
    assert result.failure_reason.endswith("exit code 1")
    assert "starting" in result.log_lines


def test_train_py_failure_reason(s3, tmp_path):
    req = make_request("bad-target")
    req["HyperParameters"]["target"] = '"no_such_column"'
    result = run_training_job(req, s3, tmp_path)
    assert result.status == "Failed"
    assert "no target column 'no_such_column'" in result.failure_reason


def test_max_runtime(s3, tmp_path):
    req = make_request("slow-job", "sleep.py", "code/toy.tar.gz", StoppingCondition={"MaxRuntimeInSeconds": 1})
    t = time.monotonic()
    result = run_training_job(req, s3, tmp_path, stop_grace_seconds=2)
    assert time.monotonic() - t < 15
    assert result.status == "Stopped" and result.secondary_status == "MaxRuntimeExceeded"
    assert result.failure_reason == "MaxRuntimeInSeconds exceeded"
    assert "sleeping" in result.log_lines
    assert [t["Status"] for t in result.secondary_status_transitions][-1] == "MaxRuntimeExceeded"


def test_missing_channel_is_client_error(s3, tmp_path):
    req = make_request("missing-data")
    req["InputDataConfig"][1]["DataSource"]["S3DataSource"]["S3Uri"] = f"s3://{BUCKET}/data/nothing-here"
    result = run_training_job(req, s3, tmp_path)
    assert result.status == "Failed"
    assert result.failure_reason.startswith("ClientError: No S3 objects found under S3 URL")
    assert [t["Status"] for t in result.secondary_status_transitions] == ["Starting", "Downloading", "Failed"]

    req = make_request("missing-bucket")
    req["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] = "s3://no-such-bucket-xyz/train"
    result = run_training_job(req, s3, tmp_path)
    assert result.status == "Failed" and "no-such-bucket-xyz" in result.failure_reason

    req = make_request("no-script-mode")
    del req["HyperParameters"]["sagemaker_submit_directory"]
    result = run_training_job(req, s3, tmp_path)
    assert result.status == "Failed" and "script mode" in result.failure_reason


def test_parse_final_metrics_unit():
    defs = [{"Name": "a", "Regex": r"a=([0-9.]+)"}, {"Name": "b", "Regex": r"b=(\S+)"}]
    assert parse_final_metrics(defs, ["a=1", "b=inf", "a=2.5", "b=x"]) == [{"MetricName": "a", "Value": 2.5}]
