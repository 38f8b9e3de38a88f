"""The CLI against a real `sagepipe twin up` process: upload, runs --wait --json, predict, and
SIGTERM/SIGINT stopping every process the twin started."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import CHURN_CONFIG, _alive, churn_rows, write_csv

pytestmark = pytest.mark.twin
SAGEPIPE = [sys.executable, "-m", "sagepipe.cli"]


def _descendants(pid: int) -> set[int]:
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        try:
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        for c in map(int, children):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def _cli(state: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SAGEPIPE, *args, "--state-dir", str(state)], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_twin_up_serves_the_cli_and_stops_everything_on_a_signal(tmp_path: Path, sig: signal.Signals) -> None:
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [*SAGEPIPE, "twin", "up", "--state-dir", str(state), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (state / "twin.json").exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "twin.json never appeared"
            time.sleep(0.1)
        info = json.loads((state / "twin.json").read_text())
        assert {"aws_endpoint_url", "api_url", "data_bucket", "artifacts_bucket"} <= set(info)
        header, rows = churn_rows(0, 1500)
        data = write_csv(tmp_path, "cli.csv", header, rows)
        up = _cli(state, "upload", str(data), "--model", "cli", "--config", str(CHURN_CONFIG))
        assert up.returncode == 0 and up.stdout.strip() == "datasets/cli/cli.csv", up.stderr
        # straight after the upload: --wait also waits for the run that is about to start
        runs = _cli(
            state, "runs", "--model", "cli", "--wait", "--json", timeout=1800
        )  # waits on the run; CI bound only
        assert runs.returncode == 0, runs.stderr
        [run] = json.loads(runs.stdout)
        assert run["status"] == "SUCCEEDED" and run["decision"] == "deploy" and run["reason"], run
        # piped (rich's width is 80): nothing is cut with an ellipsis, no line is wider than 80
        table = _cli(state, "runs", "--model", "cli")
        assert run["execution_name"] in table.stdout and "…" not in table.stdout, table.stdout
        assert max(map(len, table.stdout.splitlines())) <= 80 and run["reason"][:60] in table.stdout.replace("\n", "")
        report = _cli(state, "report", run["execution_name"], "--out", str(tmp_path / "reports"))
        assert report.returncode == 0, report.stderr
        page = (tmp_path / "reports" / f"{run['execution_name']}.html").read_text()
        assert run["report"] in report.stdout and 'aria-label="ROC"' in page and run["execution_name"] in page
        missing = _cli(state, "report", "cli-nosuch-0000000000")
        assert missing.returncode == 2 and "no run named" in missing.stderr
        features = tmp_path / "rows.csv"
        features.write_text("\n".join(r.rsplit(",", 1)[0] for r in churn_rows(4990, 4995)[1]) + "\n")
        pred = _cli(state, "predict", "--model", "cli", "--csv", str(features), "--json")
        assert pred.returncode == 0, pred.stderr
        assert len(json.loads(pred.stdout)["predictions"]) == 5
        bad = _cli(state, "predict", "--model", "nosuch", "--csv", str(features), "--json")
        assert bad.returncode == 1 and json.loads(bad.stdout)["error"]["code"] == "model_not_found"
        children = _descendants(proc.pid)
        assert len(children) >= 3  # Lambda workers and the model server
    finally:
        proc.send_signal(sig)
        proc.wait(timeout=60)
    assert proc.returncode == 0
    assert proc.stderr is not None and "[twin] stopping ..." in proc.stderr.read()  # not eaten as rich markup
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in children if _alive(p)], "processes outlived `sagepipe twin up`"
    assert not (state / "twin.json").exists()


def test_commands_without_a_twin_say_how_to_start_one(tmp_path: Path) -> None:
    res = _cli(tmp_path / "none", "runs")
    assert res.returncode == 2 and "sagepipe twin up" in res.stderr
    bad_config = tmp_path / "bad.json"
    bad_config.write_text(json.dumps({"problem_type": "ternary"}))
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "twin.json").write_text(
        json.dumps(
            {
                "data_bucket": "b",
                "artifacts_bucket": "a",
                "state_machine_arn": "x",
                "api_url": "http://127.0.0.1:9",
                "region": "us-east-1",
                "aws_endpoint_url": "http://127.0.0.1:9",
            }
        )
    )
    data = tmp_path / "d.csv"
    data.write_text("a,b\n1,2\n")
    res = _cli(tmp_path / "s", "upload", str(data), "--model", "m", "--config", str(bad_config))
    assert res.returncode == 2 and "problem_type" in res.stderr
