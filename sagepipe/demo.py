"""``sagepipe demo``: the main job on the local twin, on the churn data, narrated step by step.

1. start the twin and upload ``examples/data/churn.csv`` (version 1: the first 4,000 rows);
2. show the pipeline's states live;
3. print the metrics and the gate decision;
4. send rows never uploaded in any version through the HTTP API, each prediction next to the truth;
5. upload version 2 (all rows but the held-out ones) and show the blue/green update while a client
   keeps calling the API;
6. stop everything. Exit 0 only if every step succeeded.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from . import client
from .client import Target

console = Console()
HOLDOUT_ROWS = 20
V1_ROWS = 4000
MODEL = "churn"


class DemoFailed(RuntimeError):
    """A demo step did not do what it should."""


def _state_names(root: Path) -> list[str]:
    asl = json.loads((root / "statemachines" / "training_pipeline.asl.json").read_text())
    return list(asl["States"])


def _progress(sfn: Any, arn: str, states: list[str]) -> tuple[Table, str]:
    pages = sfn.get_paginator("get_execution_history").paginate(executionArn=arn, PaginationConfig={"PageSize": 1000})
    events = [ev for page in pages for ev in page["events"]]
    status: dict[str, str] = {}
    for ev in events:
        for key, mark in (("stateEnteredEventDetails", "running"), ("stateExitedEventDetails", "done")):
            if key in ev:
                status[ev[key]["name"]] = mark
        if ev["type"] in {"TaskFailed", "LambdaFunctionFailed"} and status:
            last = [n for n, v in status.items() if v == "running"]
            if last:
                status[last[-1]] = "failed"
    desc = sfn.describe_execution(executionArn=arn)
    if desc["status"] == "SUCCEEDED":  # terminal states have no exit event
        status = dict.fromkeys(status, "done")
    table = Table("state", "status", title=f"{desc['name']} - {desc['status']}", min_width=60)
    icons = {"done": "[green]done[/green]", "running": "[yellow]running[/yellow]", "failed": "[red]failed[/red]"}
    for name in states:
        if name in status:
            table.add_row(name, icons[status[name]])
    return table, desc["status"]


def _watch(target: Target, key: str, states: list[str], timeout_s: float = 300) -> dict[str, Any]:
    """Find the execution for ``key``, show its states live until it ends; return its run record."""
    sfn = target.client("stepfunctions")
    deadline = time.monotonic() + timeout_s
    arn = None
    while arn is None:
        for ex in sfn.list_executions(stateMachineArn=target.state_machine_arn)["executions"]:
            inp = json.loads(sfn.describe_execution(executionArn=ex["executionArn"])["input"])
            if inp["dataset"]["key"] == key:
                arn = ex["executionArn"]
        if time.monotonic() > deadline:
            raise DemoFailed(f"no execution started for {key}")
        time.sleep(0.1)
    with Live(console=console, refresh_per_second=8, transient=False) as live:
        while True:
            table, status = _progress(sfn, arn, states)
            live.update(table)
            if status != "RUNNING":
                break
            if time.monotonic() > deadline:
                raise DemoFailed(f"run for {key} still RUNNING after {timeout_s:.0f}s")
            time.sleep(0.25)
    console.print()
    ex = next(
        e
        for e in sfn.list_executions(stateMachineArn=target.state_machine_arn)["executions"]
        if e["executionArn"] == arn
    )
    return client.run_record(sfn, ex)


def _print_decision(run: dict[str, Any], target: Target, reports: Path) -> None:
    """Metrics, gate decision, endpoint config and the report: its S3 URI, and a local copy that outlives
    the demo's twin (``sagepipe report <run>`` fetches it while a twin runs)."""
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in (run["metrics"] or {}).items())
    console.print(f"  test metrics: {metrics or 'none'}", soft_wrap=True)
    console.print(f"  gate: [bold]{run['decision']}[/bold] - {run['reason']}", soft_wrap=True)
    console.print(f"  endpoint config: {run['endpoint_config']}", soft_wrap=True)
    if not run.get("report"):
        raise DemoFailed(f"run {run['execution_name']} has no report")
    _, path = client.download_report(target, run["execution_name"], reports)
    console.print(f"  report: {run['report']}\n          saved as {path} (open it in a browser)", soft_wrap=True)


def run_demo(
    root: Path, state_dir: Path | None = None, keep_logs: bool = False, reports: Path = Path("demo-reports")
) -> int:
    """Run the demo; returns the process exit code (0 only if every step succeeded). Each run's report is
    saved under ``reports``."""
    from .twin.server import Twin

    t0 = time.monotonic()
    tmp = tempfile.TemporaryDirectory(prefix="sagepipe-demo-") if state_dir is None else None
    state = Path(tmp.name) if tmp else state_dir
    assert state is not None
    twin = Twin(root, state, echo=keep_logs, say=lambda m: console.print(f"  [dim]twin: {m}[/dim]", soft_wrap=True))
    states = _state_names(root)
    try:
        console.rule("[bold]1. Start the local twin and upload the churn data (version 1)")
        info = twin.start()
        target = Target.twin(state)
        console.print(
            f"  twin up in {time.monotonic() - t0:.1f}s: AWS endpoint {info.aws_endpoint_url}, API {info.api_url}",
            soft_wrap=True,
        )
        text = (root / "examples" / "data" / "churn.csv").read_text()
        header, *rows = text.splitlines()
        holdout = rows[-HOLDOUT_ROWS:]
        data_dir = state / "demo-data"
        data_dir.mkdir(parents=True, exist_ok=True)
        v1, v2 = data_dir / "churn-v1.csv", data_dir / "churn-v2.csv"
        v1.write_text("\n".join([header, *rows[:V1_ROWS]]) + "\n")
        v2.write_text("\n".join([header, *rows[:-HOLDOUT_ROWS]]) + "\n")
        key1 = client.upload(target, v1, MODEL, root / "examples" / "data" / "churn.sagepipe.json")
        console.print(
            f"  uploaded s3://{target.data_bucket}/{key1} ({V1_ROWS} rows) with config churn.sagepipe.json",
            soft_wrap=True,
        )

        console.rule("[bold]2. The pipeline runs: validate -> train -> evaluate -> deploy")
        run1 = _watch(target, key1, states)
        if run1["status"] != "SUCCEEDED" or run1["decision"] != "deploy":
            raise DemoFailed(f"version 1 did not deploy: {run1['status']} {run1['reason']}")

        console.rule("[bold]3. Metrics and the gate decision")
        _print_decision(run1, target, reports)

        console.rule(f"[bold]4. Predictions over HTTP for {HOLDOUT_ROWS} customers never uploaded")
        reader = list(csv.DictReader(io.StringIO("\n".join([header, *holdout]))))
        truth = [r.pop("churn") for r in reader]
        resp = client.predict(target, MODEL, json.dumps({"instances": reader}).encode(), "application/json")
        if resp.status_code != 200:
            raise DemoFailed(f"prediction API answered {resp.status_code}: {resp.text}")
        preds = resp.json()["predictions"]
        if len(preds) != len(reader):
            raise DemoFailed(f"prediction API answered {len(preds)} predictions for {len(reader)} instances")
        table = Table("#", "state", "intl plan", "service calls", "prediction", "p(yes)", "truth", "")
        for i, (row, p, t) in enumerate(zip(reader, preds, truth, strict=True)):
            ok = "[green]ok[/green]" if p["label"] == t else "[red]miss[/red]"
            table.add_row(
                str(i),
                row["state"],
                row["international_plan"],
                row["number_customer_service_calls"],
                p["label"],
                f"{p['probabilities'].get('yes', 0):.3f}",
                t,
                ok,
            )
        console.print(table)
        correct = sum(p["label"] == t for p, t in zip(preds, truth, strict=True))
        console.print(
            f"  {correct}/{len(truth)} correct on held-out rows (POST {target.api_url}/models/{MODEL}/predictions)",
            soft_wrap=True,
        )

        console.rule("[bold]5. Version 2 arrives: blue/green update while clients keep calling the API")
        sm = target.client("sagemaker")
        before = sm.describe_endpoint(EndpointName=f"sagepipe-{MODEL}")["EndpointConfigName"]
        statuses: list[int] = []
        failures: list[str] = []  # what a non-200 said, so a failed demo shows why
        stop = threading.Event()
        one = json.dumps({"instances": reader[:1]}).encode()

        def hammer() -> None:
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    resp = client.predict(target, MODEL, one, "application/json", timeout_s=30)
                    statuses.append(resp.status_code)
                    if resp.status_code != 200:
                        failures.append(
                            f"HTTP {resp.status_code} after {time.monotonic() - t0:.1f} s: {resp.text[:200]}"
                        )
                except Exception as exc:  # noqa: BLE001 - a failed request is a non-200 for the count
                    statuses.append(0)
                    failures.append(f"{type(exc).__name__} after {time.monotonic() - t0:.1f} s: {str(exc)[:200]}")
                stop.wait(0.05)

        caller = threading.Thread(target=hammer, daemon=True)
        caller.start()
        key2 = client.upload(target, v2, MODEL)
        console.print(f"  uploaded s3://{target.data_bucket}/{key2} ({len(rows) - HOLDOUT_ROWS} rows)", soft_wrap=True)
        run2 = _watch(target, key2, states)
        time.sleep(0.5)
        stop.set()
        caller.join(timeout=15)
        after = sm.describe_endpoint(EndpointName=f"sagepipe-{MODEL}")
        _print_decision(run2, target, reports)
        bad = [s for s in statuses if s != 200]
        console.print(
            f"  endpoint config: {before} -> {after['EndpointConfigName']} ({after['EndpointStatus']})", soft_wrap=True
        )
        console.print(
            f"  API during the update: {len(statuses) - len(bad)}/{len(statuses)} requests answered 200", soft_wrap=True
        )
        if run2["status"] != "SUCCEEDED":
            raise DemoFailed(f"version 2 run ended {run2['status']}: {run2['reason']}")
        if run2["decision"] == "deploy" and after["EndpointConfigName"] != run2["endpoint_config"]:
            raise DemoFailed("version 2 was approved but the endpoint does not serve it")
        if run2["decision"] != "deploy" and after["EndpointConfigName"] != before:
            raise DemoFailed("version 2 was rejected but the endpoint changed")
        if bad or not statuses:
            raise DemoFailed(f"{len(bad)} API requests failed during the update: " + "; ".join(failures[:3]))

        console.rule("[bold]6. Stop everything")
    except DemoFailed as exc:
        console.print(f"[red]demo failed:[/red] {escape(str(exc))}", soft_wrap=True)
        return 1
    finally:
        twin.stop()
        if tmp:
            tmp.cleanup()
    console.print(
        f"[green]demo succeeded[/green] in {time.monotonic() - t0:.1f}s; every process the twin started is stopped.",
        soft_wrap=True,
    )
    return 0
