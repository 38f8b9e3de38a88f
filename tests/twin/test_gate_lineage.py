"""Issue 11 on the twin, end to end: the champion is not scored on its own training rows, a changed feature
set waits for an approval that shows the diff, and re-running a version (``sagepipe upload`` of the same
bytes, ``sagepipe retrain``) through the CLI."""

from __future__ import annotations

import csv
import io
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from sagepipe import client
from sagepipe.client import Target

from .conftest import churn_config, churn_rows, executions_for, record, wait_for_key, write_csv

pytestmark = pytest.mark.twin
SAGEPIPE = [sys.executable, "-m", "sagepipe.cli"]


def _reexported_with_noise(path: Path) -> Path:
    """All 5,000 churn rows as another tool saves them (every field quoted, columns reordered) plus a
    column of noise."""
    header, rows = churn_rows()
    names = header.split(",")
    rng = random.Random(11)
    order = [*range(len(names))]
    rng.shuffle(order)
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_ALL)
    writer.writerow([names[j] for j in order] + ["noise"])
    for line in rows:
        values = line.split(",")
        writer.writerow([values[j] for j in order] + [f"{rng.random():.6f}"])
    path.write_text(buf.getvalue())
    return path


def _wait_for(what: str, probe: Any, timeout_s: float = 240) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        found = probe()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_new_column_is_compared_on_unseen_rows_and_waits_for_approval_with_the_diff(
    target: Target, tmp_path: Path
) -> None:
    header, rows = churn_rows(0, 4000)
    cfg = churn_config(tmp_path, tolerance=1.0)  # the comparison is shown, not what this test is about
    first = client.upload(target, write_csv(tmp_path, "lineage-v1.csv", header, rows), "lineage", cfg)
    [v1] = wait_for_key(target, first)
    assert v1["status"] == "SUCCEEDED" and json.loads(v1["output"])["evaluation"]["record"]["decision"] == "deploy"

    second = client.upload(target, _reexported_with_noise(tmp_path / "lineage-v2.csv"), "lineage")
    [run] = _wait_for("the v2 run", lambda: executions_for(target, second))
    needed = _wait_for(
        "Pipeline Approval Needed",
        lambda: [
            e
            for e in client.notifications(target, "lineage", run["name"])
            if e["detail-type"] == "Pipeline Approval Needed"
        ],
    )[0]["detail"]
    decision = needed["decision"]
    assert decision["champion_status"] == "scored" and decision["approval_required"] is True
    assert decision["champion_overlap"] > 300  # the new column reshuffled the splits: those rows trained v1
    assert decision["champion_rows_scored"] + decision["champion_overlap"] == 750
    assert needed["schema_change"]["added"] == ["noise"] == decision["schema_change"]["added"]
    assert "feature set changed: added noise" in decision["reason"]

    client.decide_approval(target, run["name"], True, "clients send noise from now on", "test")
    [v2] = wait_for_key(target, second)
    assert v2["status"] == "SUCCEEDED", v2.get("cause")
    headers = {"x-api-key": target.api_key} if target.api_key else {}
    live = _wait_for(
        "the v2 endpoint",
        lambda: (
            body
            if (body := requests.get(f"{target.api_url}/models/lineage", headers=headers, timeout=30).json()).get(
                "schema_change"
            )
            else None
        ),
        timeout_s=60,
    )
    assert live["schema_change"]["added"] == ["noise"]
    record(
        "re-export + noise column",
        f"champion scored on {decision['champion_rows_scored']} unseen rows ({decision['champion_overlap']} left out);"
        " approval showed the diff",
    )


def _cli(state: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SAGEPIPE, *args, "--state-dir", state], capture_output=True, text=True, timeout=120)


def test_upload_of_the_same_bytes_says_it_already_ran_and_retrain_runs_again(
    twin: Any, target: Target, tmp_path: Path
) -> None:
    state = str(twin.info.state_dir)
    header, rows = churn_rows(0, 20)  # too few rows: the run ends in DataRejected, quickly and without training
    data = write_csv(tmp_path, "rerun.csv", header, rows)
    cfg = churn_config(tmp_path)
    up = _cli(state, "upload", str(data), "--model", "rerun", "--config", str(cfg))
    assert up.returncode == 0 and "already ran" not in up.stderr, up.stderr
    key = up.stdout.strip()
    [first] = wait_for_key(target, key)
    assert first["status"] == "FAILED" and first["error"] == "InvalidDatasetError"
    again = _cli(state, "upload", str(data), "--model", "rerun")
    assert again.returncode == 0, again.stderr
    said = " ".join(again.stderr.split())
    assert f"already ran as {first['name']} and ended FAILED (rejected: InvalidDatasetError: too_few_rows:" in said, (
        said
    )
    assert "sagepipe retrain --model rerun" in said
    retrain = _cli(state, "retrain", "--model", "rerun", "--json")
    assert retrain.returncode == 0, retrain.stderr
    requested = json.loads(retrain.stdout)
    assert requested["key"] == key
    runs = _wait_for("the retrain run", lambda: len(executions_for(target, key)) == 2 and executions_for(target, key))
    assert requested["execution_name"] in {r["name"] for r in runs}
    assert len(wait_for_key(target, key)) == 2
    record("same bytes uploaded again", "the CLI names the earlier run and how it ended; retrain ran it again")
