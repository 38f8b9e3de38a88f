"""The twin keeps its state across a restart on the same state dir (issue 16 item 4): before, a stop (SIGTERM
during a run) and a start on the same ``--state-dir`` left empty buckets, no runs, packages, endpoints or
notifications and a new API key, without a word. ``sagepipe twin reset`` clears the state deliberately."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from sagepipe import cli, client
from sagepipe.client import Target
from sagepipe.twin import persistence
from sagepipe.twin.server import Twin

from .conftest import CHURN, CHURN_CONFIG, ROOT, _alive, wait_for, wait_for_key

pytestmark = pytest.mark.twin


def _start(state_dir: Path) -> Twin:
    t = Twin(ROOT, state_dir, echo=False, say=lambda m: None)
    t.start()
    return t


def _stop(t: Twin) -> None:
    pids = t.pids()
    t.stop()
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in pids if _alive(p)], "twin left processes running"


def _objects(target: Target) -> dict[tuple[str, str, str], tuple[Any, str]]:
    """(bucket, key, VersionId) -> (LastModified, ETag) of every object version in the stack's buckets."""
    s3 = target.client("s3")
    out = {}
    for bucket in (target.data_bucket, target.artifacts_bucket):
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            for v in page.get("Versions", []):
                out[(bucket, v["Key"], v["VersionId"])] = (v["LastModified"], v["ETag"])
    return out


def _body(rows: list[str], header: str) -> str:
    names = header.split(",")
    records = [dict(zip(names, r.split(","), strict=True)) for r in rows]
    for r in records:
        r.pop("churn")
    return json.dumps({"instances": records})


def _predict(target: Target, body: str, key: str | None) -> requests.Response:
    headers = {"Content-Type": "application/json", "x-api-key": key or ""}
    return requests.post(f"{target.api_url}/models/churn/predictions", data=body, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def restarted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Twin 1 on a state dir: churn trained and deployed, then a second version uploaded and the twin
    stopped while its training job runs. Twin 2 on the same state dir. Yields what twin 1 showed."""
    state_dir = tmp_path_factory.mktemp("state")
    data = tmp_path_factory.mktemp("data")
    header, *rows = CHURN.read_text().splitlines()
    first, second = data / "v1.csv", data / "v2.csv"
    first.write_text("\n".join([header, *rows[:1500]]) + "\n")
    second.write_text("\n".join([header, *rows[1:1600]]) + "\n")
    body = _body(rows[-2:], header)

    t1 = _start(state_dir)
    try:
        target = Target.twin(state_dir)
        [done] = wait_for_key(target, client.upload(target, first, "churn", CHURN_CONFIG))
        assert done["status"] == "SUCCEEDED", done.get("cause")
        answer = _predict(target, body, t1.info.api_key if t1.info else None)
        assert answer.status_code == 200, answer.text
        sm = target.client("sagemaker")
        before = {
            "api_key": target.api_key,
            "prediction": answer.json(),
            "done": done,
            "packages": sm.list_model_packages(ModelPackageGroupName="sagepipe-churn")["ModelPackageSummaryList"],
            "notifications": client.notifications(target),
            "history": target.client("stepfunctions").get_execution_history(
                executionArn=done["executionArn"], maxResults=1000
            )["events"],
        }
        scratch = state_dir / "training"
        before["job_dirs"] = sorted(p.name for p in scratch.iterdir()) if scratch.exists() else []
        # a run's end saves the state within seconds (a twin killed with SIGKILL loses at most those)
        saved = wait_for(lambda: persistence.load(state_dir, "sagepipe", "us-east-1"), "the snapshot after a run")
        before["autosaved"] = saved.manifest.counts
        key2 = client.upload(target, second, "churn", CHURN_CONFIG)

        def training() -> list[dict[str, Any]]:
            jobs = sm.list_training_jobs(StatusEquals="InProgress")["TrainingJobSummaries"]
            return jobs

        [job] = wait_for(training, "the second version's training job")
        before["cut_job"] = job["TrainingJobName"]
        before["objects"] = _objects(target)
    finally:
        _stop(t1)
    t2 = _start(state_dir)
    try:
        yield {
            **before,
            "twin": t2,
            "target": Target.twin(state_dir),
            "key2": key2,
            "body": body,
            "state_dir": state_dir,
        }
    finally:
        _stop(t2)


def test_objects_registry_key_and_history_survive(restarted: dict[str, Any]) -> None:
    target, t2 = restarted["target"], restarted["twin"]
    assert restarted["autosaved"]["executions"] == 1 and restarted["autosaved"]["endpoints"] == 1
    assert t2.restored is not None and restarted["cut_job"] in t2.restored.jobs_stopped
    assert target.api_key == restarted["api_key"], "a restart issued a new API key"
    after = _objects(target)
    # every object version, with its LastModified and ETag; the restart's deploy adds only the code bundle
    missing = {k: v for k, v in restarted["objects"].items() if after.get(k) != v}
    assert not missing, f"objects lost or changed by the restart: {sorted(missing)[:5]}"
    added = {k[1] for k in set(after) - set(restarted["objects"])}
    assert added <= {"code/sourcedir.tar.gz"}, added
    sm = target.client("sagemaker")
    packages = sm.list_model_packages(ModelPackageGroupName="sagepipe-churn")["ModelPackageSummaryList"]
    assert [(p["ModelPackageArn"], p["ModelApprovalStatus"]) for p in packages] == [
        (p["ModelPackageArn"], p["ModelApprovalStatus"]) for p in restarted["packages"]
    ]
    sfn = target.client("stepfunctions")
    done = sfn.describe_execution(executionArn=restarted["done"]["executionArn"])
    assert (done["status"], done["output"], done["startDate"]) == (
        "SUCCEEDED",
        restarted["done"]["output"],
        restarted["done"]["startDate"],
    )
    history = sfn.get_execution_history(executionArn=done["executionArn"], maxResults=1000)["events"]
    assert history == restarted["history"]
    job = sm.describe_training_job(TrainingJobName=restarted["cut_job"])
    assert job["TrainingJobStatus"] == "Stopped" and job["SecondaryStatus"] == "Stopped"


def test_the_run_cut_off_is_aborted_and_notified(restarted: dict[str, Any]) -> None:
    target = restarted["target"]
    [cut] = [r for r in client.list_runs(target) if r["execution_name"] != restarted["done"]["name"]]
    sfn = target.client("stepfunctions")
    arn = next(
        e["executionArn"]
        for e in sfn.list_executions(stateMachineArn=target.state_machine_arn)["executions"]
        if e["name"] == cut["execution_name"]
    )
    desc = sfn.describe_execution(executionArn=arn)
    assert desc["status"] == "ABORTED" and desc["error"] == persistence.ABORT_ERROR, desc
    assert "twin stopped" in desc["cause"] and "TrainModel" in desc["cause"], desc["cause"]
    last = sfn.get_execution_history(executionArn=arn, reverseOrder=True, maxResults=1)["events"][0]
    assert last["type"] == "ExecutionAborted"
    assert last["executionAbortedEventDetails"]["error"] == persistence.ABORT_ERROR

    def failed() -> list[dict[str, Any]]:
        return [
            n
            for n in client.notifications(target, execution=cut["execution_name"])
            if n["detail-type"] == "Pipeline Failed"
        ]

    [note] = wait_for(failed, "Pipeline Failed for the run the stop cut off")
    assert note["detail"]["status"] == "ABORTED" and note["detail"]["error"] == persistence.ABORT_ERROR
    old = {json.dumps(n, sort_keys=True) for n in restarted["notifications"]}
    assert old <= {json.dumps(n, sort_keys=True) for n in client.notifications(target)}, "notifications lost"
    # restoring objects fires no "Object Created": no run started by the restart
    time.sleep(2)
    assert len(client.list_runs(target)) == 2


def test_the_endpoint_comes_back_up_and_answers_with_the_old_key(restarted: dict[str, Any]) -> None:
    target = restarted["target"]
    desc = target.client("sagemaker").describe_endpoint(EndpointName="sagepipe-churn")
    assert desc["EndpointStatus"] == "InService"
    answer = _predict(target, restarted["body"], restarted["api_key"])
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == restarted["prediction"]["predictions"]


def test_the_same_bytes_are_still_known_after_the_restart(restarted: dict[str, Any], tmp_path: Path) -> None:
    header, *rows = CHURN.read_text().splitlines()
    again = tmp_path / "v1.csv"
    again.write_text("\n".join([header, *rows[:1500]]) + "\n")
    target = restarted["target"]
    earlier = client.previous_run(target, again, "churn")
    client.upload(target, again, "churn", CHURN_CONFIG)
    assert earlier is not None and earlier["execution_name"] == restarted["done"]["name"], earlier
    assert earlier["status"] == "SUCCEEDED", earlier

    def started() -> bool:  # the start function has seen the upload (its log) ...
        return any("v1.csv" in line for prefix, line in restarted["twin"].logs if "StartFunction" in prefix)

    wait_for(started, "the start function's log of the re-upload")
    assert len(client.list_runs(target)) == 2, "the same bytes started a new run after the restart"


def test_state_dir_does_not_keep_scratch(restarted: dict[str, Any]) -> None:
    state_dir: Path = restarted["state_dir"]
    assert restarted["job_dirs"] == [], "an ended training job's /opt/ml stays in the state dir"
    assert not (state_dir / "training").exists(), "a restart keeps the previous training job directories"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sagepipe.cli", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_reset_refuses_a_running_twin_then_clears(restarted: dict[str, Any], tmp_path: Path) -> None:
    state_dir = tmp_path / "copy"
    state_dir.mkdir()
    (state_dir / "twin.json").write_text(json.dumps({"pid": os.getpid()}))  # a live twin's pid
    (state_dir / persistence.SNAPSHOT).write_bytes(b"x")
    no = _cli("twin", "reset", "--state-dir", str(state_dir))
    assert no.returncode == 2 and "--yes" in no.stderr and (state_dir / persistence.SNAPSHOT).exists()
    busy = _cli("twin", "reset", "--state-dir", str(state_dir), "--yes")
    assert busy.returncode == 1 and "is running" in busy.stderr, busy.stderr
    assert (state_dir / persistence.SNAPSHOT).exists()
    (state_dir / "twin.json").write_text(json.dumps({"pid": 2**22 + 17}))  # no such process
    done = _cli("twin", "reset", "--state-dir", str(state_dir), "--yes")
    assert done.returncode == 0, done.stderr
    assert not (state_dir / persistence.SNAPSHOT).exists() and "snapshot.pickle" in done.stdout


def test_a_snapshot_of_another_moto_is_refused_not_discarded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = persistence.Manifest(
        format=persistence.FORMAT,
        moto="5.0.0",
        written="2026-01-01T00:00:00Z",
        stack_name="sagepipe",
        region="us-east-1",
    )
    path = tmp_path / persistence.SNAPSHOT
    with path.open("wb") as fh:
        pickle.dump(manifest, fh)
        pickle.dump({}, fh)
    size = path.stat().st_size
    assert cli.main(["twin", "up", "--state-dir", str(tmp_path), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "moto 5.0.0" in err and "twin reset" in err, err
    assert path.stat().st_size == size, "the refused snapshot was overwritten"
    path.write_bytes(b"not a pickle")
    with pytest.raises(persistence.TwinStateError, match="cannot be read"):
        persistence.load(tmp_path, "sagepipe", "us-east-1")


def test_sigterm_saves_the_state(tmp_path: Path) -> None:
    """`sagepipe twin up` in its own process: SIGTERM stops it and writes the snapshot."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sagepipe.cli", "twin", "up", "--state-dir", str(tmp_path), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: (tmp_path / "twin.json").exists() or proc.poll() is not None, "twin.json", timeout_s=180)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        target = Target.twin(tmp_path)
        target.client("s3").put_object(Bucket=target.artifacts_bucket, Key="notes/kept.txt", Body=b"kept")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    snapshot = persistence.load(tmp_path, "sagepipe", "us-east-1")
    assert snapshot is not None
    keys = snapshot.state()["s3"][target.artifacts_bucket]["keys"]
    assert keys["notes/kept.txt"][-1].value == b"kept"


def test_the_moto_internals_it_reads_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """persistence.check() passes on the pinned moto and fails loudly when an internal it reads is gone."""
    from moto.s3.utils import _VersionedKeyStore
    from moto.stepfunctions.parser.backend.execution import Execution

    from sagepipe.twin.patches import MotoInternalsChanged

    persistence.check()
    monkeypatch.delattr(_VersionedKeyStore, "lists")
    with pytest.raises(MotoInternalsChanged, match="lists"):
        persistence.check()
    monkeypatch.undo()
    monkeypatch.delattr(Execution, "to_history_output")
    with pytest.raises(MotoInternalsChanged, match="to_history_output"):
        persistence.check()
