"""Wall time per phase of one churn run on the local twin, and the twin's own overhead.

Run: ``.venv/bin/python bench/pipeline.py [--runs N]``. Prints a table (seconds). Phases come from the
execution history's timestamps; "training script" is the script's own wall time inside the training
job; "model server start" is process start → ``/ping`` 200; twin overhead = total − both.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sagepipe import client
from sagepipe.client import Target
from sagepipe.twin.server import Twin

ROOT = Path(__file__).resolve().parents[1]


def one_run(twin: Twin, target: Target, tmp: Path, i: int) -> dict[str, float]:
    header, *rows = (ROOT / "examples" / "data" / "churn.csv").read_text().splitlines()
    path = tmp / f"bench-{i}.csv"
    path.write_text("\n".join([header, *rows[: 4000 + i]]) + "\n")
    model = f"bench{i}"
    t0 = time.time()
    key = client.upload(target, path, model, ROOT / "examples" / "data" / "churn.sagepipe.json")
    sfn = target.client("stepfunctions")
    arn = None
    while arn is None:
        for ex in sfn.list_executions(stateMachineArn=target.state_machine_arn)["executions"]:
            if json.loads(sfn.describe_execution(executionArn=ex["executionArn"])["input"])["dataset"]["key"] == key:
                arn = ex["executionArn"]
        time.sleep(0.02)
    while sfn.describe_execution(executionArn=arn)["status"] == "RUNNING":
        time.sleep(0.05)
    desc = sfn.describe_execution(executionArn=arn)
    assert desc["status"] == "SUCCEEDED", desc.get("cause")
    entered: dict[str, float] = {}
    exited: dict[str, float] = {}
    for ev in sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]:
        ts = ev["timestamp"].timestamp()
        if "stateEnteredEventDetails" in ev:
            entered.setdefault(ev["stateEnteredEventDetails"]["name"], ts)
        if "stateExitedEventDetails" in ev:
            exited[ev["stateExitedEventDetails"]["name"]] = ts
    t1 = time.time()
    record = {k: v for k, v in zip(header.split(","), rows[-1].split(","), strict=True) if k != "churn"}
    resp = client.predict(target, model, json.dumps({"instances": [record]}).encode(), "application/json")
    assert resp.status_code == 200, resp.text
    first_prediction = time.time() - t1
    out = json.loads(desc["output"])
    job = out["trained"]["TrainingJobName"]
    server = twin.hosting.endpoints[out["deployment"]["EndpointName"]].live
    start = desc["startDate"].timestamp()
    phases = {
        "upload → execution start": start - t0,
        "validate & split": exited["ValidateData"] - entered["ValidateData"],
        "training (job)": exited["TrainModel"] - entered["TrainModel"],
        "evaluation": exited["EvaluateModel"] - entered["EvaluateModel"],
        "register": exited["RegisterModel"] - entered["RegisterModel"],
        "deploy → InService": entered["NotifySucceeded"] - entered["DeployModel"],
        "notify": desc["stopDate"].timestamp() - entered["NotifySucceeded"],
        "first prediction (HTTP API)": first_prediction,
    }
    total = desc["stopDate"].timestamp() - t0 + first_prediction
    script = twin.training.results[job].training_seconds
    phases["total (upload → first prediction)"] = total
    phases["  of which training script"] = script
    phases["  of which model server start"] = server.start_seconds
    phases["twin overhead (total − script − server start)"] = total - script - server.start_seconds
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        twin = Twin(ROOT, Path(tmp) / "state", echo=False, say=lambda m: None)
        t = time.time()
        twin.start()
        startup = time.time() - t
        try:
            target = Target.twin(Path(tmp) / "state")
            results = [one_run(twin, target, Path(tmp), i) for i in range(args.runs)]
        finally:
            twin.stop()
    table = Table(
        title=f"sagepipe twin: one churn run (4,000 rows), {args.runs} runs, seconds; twin start-up {startup:.2f} s"
    )
    table.add_column("phase")
    table.add_column("median", justify="right")
    table.add_column("min", justify="right")
    table.add_column("max", justify="right")
    for phase in results[0]:
        values = [r[phase] for r in results]
        table.add_row(phase, f"{statistics.median(values):.2f}", f"{min(values):.2f}", f"{max(values):.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
