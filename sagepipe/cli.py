"""``sagepipe`` command line: the twin, uploads, runs, predictions and the demo.

Every command talks to the local twin (found through ``<state dir>/twin.json``) unless ``--aws`` is
given, in which case it talks to a deployed stack through its CloudFormation outputs.
Exit codes: 0 success, 1 the operation failed, 2 bad usage or input.
"""

from __future__ import annotations

import argparse
import getpass
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from sagepipe_core.errors import InvalidConfigError, SagepipeError

from . import client
from .client import NotRetriableError, Target, TargetError

console = Console(stderr=True)
out = Console()
ROOT = Path(__file__).resolve().parents[1]


def _target(args: argparse.Namespace) -> Target:
    if args.aws:
        return Target.aws(args.stack, args.region, args.profile)
    return Target.twin(Path(args.state_dir))


def _add_target_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-dir", default=str(client.DEFAULT_STATE_DIR), help="twin state directory (default .twin)")
    p.add_argument("--aws", action="store_true", help="talk to a deployed stack instead of the twin")
    p.add_argument("--profile", default=None, help="AWS profile (with --aws)")
    p.add_argument("--region", default=None, help="AWS Region (with --aws)")
    p.add_argument("--stack", default="sagepipe", help="CloudFormation stack name (with --aws; default sagepipe)")


# ------------------------------------------------------------------------------------ commands
def cmd_twin_up(args: argparse.Namespace) -> int:
    """Run the twin in the foreground until SIGINT/SIGTERM."""
    from .twin.persistence import TwinStateError
    from .twin.server import Twin

    twin = Twin(ROOT, Path(args.state_dir), echo=not args.quiet, training_capacity=args.training_capacity)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        try:
            info = twin.start()
        except TwinStateError as exc:
            console.print(f"error: {exc}", markup=False, soft_wrap=True)
            return 1
        # soft_wrap: rich would otherwise break these lines at 80 columns (its width when not a terminal)
        out.print(
            f"sagepipe twin is up\n  aws_endpoint_url  {info.aws_endpoint_url}\n  api_url           {info.api_url}\n"
            f"  data_bucket       {info.data_bucket}\n  artifacts_bucket  {info.artifacts_bucket}\n"
            f"  training capacity {twin.training_capacity} job(s) at once\n"
            f"  state file        {Path(args.state_dir) / 'twin.json'}\nCtrl-C stops it.",
            soft_wrap=True,
        )
        stop.wait()
    finally:
        console.print("[twin] stopping ...", markup=False)
        twin.stop()
    return 0


def cmd_twin_reset(args: argparse.Namespace) -> int:
    """Delete the twin's saved state in ``--state-dir`` (its snapshot and scratch files), deliberately."""
    from .twin import persistence

    state_dir = Path(args.state_dir)
    if not args.yes:
        console.print(
            f"this deletes the twin state in {state_dir}: every S3 object, run, model package, endpoint and "
            "notification it holds. Run again with --yes to do it.",
            markup=False,
            soft_wrap=True,
        )
        return 2
    try:
        removed = persistence.reset(state_dir)
    except persistence.TwinStateError as exc:
        console.print(f"error: {exc}", markup=False, soft_wrap=True)
        return 1
    out.print(f"removed from {state_dir}: {', '.join(removed) or 'nothing (no saved state)'}", soft_wrap=True)
    return 0


def cmd_upload(args: argparse.Namespace) -> int:
    target = _target(args)
    config = Path(args.config) if args.config else None
    client.check_upload(Path(args.file), args.model, config)  # bad input fails before any AWS call
    earlier = client.previous_run(target, Path(args.file), args.model)  # before the upload: no race with its run
    key = client.upload(target, Path(args.file), args.model, config)
    out.print(key)
    if earlier is not None:
        console.print(already_ran_text(earlier, args.model), markup=False, soft_wrap=True)
    return 0


def already_ran_text(run: dict[str, Any], model: str) -> str:
    """What ``sagepipe upload`` says when the same bytes already ran: the run, how it ended, what to do."""
    if run["status"] == "RUNNING":
        ended = f"is still running (state {run.get('current_state') or '?'})"
    else:
        outcome = f"{run['decision']}: {run['reason']}" if run.get("decision") else (run.get("reason") or "")
        ended = f"ended {run['status']}" + (f" ({outcome[:300]})" if outcome else "")
    return (
        f"this version (same bytes) already ran as {run['execution_name']} and {ended}; "
        f"uploading it again starts no new run. To train again: sagepipe retrain --model {model}"
    )


def cmd_retrain(args: argparse.Namespace) -> int:
    result = client.retrain(_target(args), args.model)
    if args.json:
        out.print_json(json.dumps(result))
        return 0
    out.print(
        f"Retrain Requested (event {result['event_id']}): run {result['execution_name']} on {result['key']}",
        soft_wrap=True,
    )
    if result["tied"]:
        console.print(
            f"note: {', '.join(result['tied'])} share its LastModified second; the greatest key was chosen",
            markup=False,
            soft_wrap=True,
        )
    return 0


def _rows_view(columns: list[str], rows: list[list[str]], *, width: int) -> RenderableType:
    """A table when every cell fits on one line within ``width`` columns; otherwise one block per row
    (its first cells as a heading, then ``label  value`` lines that wrap at word boundaries), so nothing
    is cut to ``credit-c…`` in an 80-column terminal or when piped (rich's non-terminal width is 80)."""
    natural = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    if sum(natural) + 3 * len(columns) + 1 <= width:
        table = Table(*columns)
        for r in rows:
            table.add_row(*r)
        return table
    blocks: list[RenderableType] = []
    label_width = max(len(c) for c in columns[2:]) if len(columns) > 2 else 8
    for r in rows:
        blocks.append(Text.assemble((r[0], "bold"), "  ", r[1]))
        grid = Table.grid(padding=(0, 2))
        grid.add_column(width=label_width + 2, style="dim", no_wrap=True)
        grid.add_column(overflow="fold")
        for c, v in zip(columns[2:], r[2:], strict=True):
            if v not in {"", "-"}:
                grid.add_row(f"  {c}", v)
        blocks.append(grid)
    return Group(*blocks)


def _runs_view(rows: list[dict[str, Any]], width: int) -> RenderableType:
    cells = []
    for r in rows:
        metrics = ", ".join(f"{k}={v:.4f}" for k, v in (r["metrics"] or {}).items() if isinstance(v, (int, float)))
        cells.append(
            [
                r["execution_name"],
                r["status"],
                r["current_state"] or "-",
                metrics or "-",
                r["decision"] or "-",
                (r["reason"] or "-")[:300],
                r["endpoint_config"] or "-",
                r.get("report") or "-",
            ]
        )
    columns = ["execution", "status", "state", "metrics (test)", "decision", "reason", "endpoint config", "report"]
    return _rows_view(columns, cells, width=width)


def cmd_runs(args: argparse.Namespace) -> int:
    target = _target(args)
    rows = client.wait_for_runs(target, args.model) if args.wait else client.list_runs(target, args.model)
    if args.json:
        out.print_json(json.dumps(rows))
    else:
        out.print(_runs_view(rows, out.width))
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    """Redrive a failed, stopped or timed-out run from the step that was unsuccessful (RedriveExecution)."""
    result = client.retry(_target(args), args.run, args.client_token)
    if args.json:
        out.print_json(json.dumps(result))
    else:
        out.print(
            f"run {result['execution_name']} retried (redrive {result['redriveCount']}, {result['redriveDate']}):"
            f" resumes at {result['resumes_at'] or '?'}; status {result['status']}"
            " (`sagepipe runs` / `sagepipe events --run` follow it)",
            soft_wrap=True,
        )
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    json_args = args.json_args or []
    files = [a for a in json_args if isinstance(a, str)]
    args.json = True in json_args
    if bool(args.csv) == bool(files) or len(files) > 1:
        raise ValueError("give exactly one of --csv FILE or --json FILE")
    path = Path(args.csv or files[0])
    body = path.read_bytes()
    resp = client.predict(
        _target(args), args.model, body, "text/csv" if args.csv else "application/json", api_key=args.api_key
    )
    try:
        doc = resp.json()
    except ValueError:
        doc = {"status": resp.status_code, "body": resp.text}
    if args.json or resp.status_code != 200:
        out.print_json(json.dumps(doc))
    else:
        table = Table("#", "prediction", "probabilities")
        for i, p in enumerate(doc.get("predictions", [])):
            probs = ", ".join(f"{k}={v:.3f}" for k, v in (p.get("probabilities") or {}).items())
            table.add_row(str(i), str(p.get("label", p.get("value"))), probs)
        out.print(table)
    return 0 if resp.status_code == 200 else 1


def cmd_events(args: argparse.Namespace) -> int:
    rows = client.notifications(_target(args), args.model, args.run)
    if args.json:
        out.print_json(json.dumps(rows))
        return 0
    cells = []
    for ev in rows:
        d = ev.get("detail") or {}
        reason = (
            (d.get("decision") or {}).get("reason")
            or client.cause_text(d.get("cause"))
            or (d.get("endpoint") or {}).get("failure_reason")
            or d.get("how_to_decide")
            or ""
        )
        cells.append(
            [
                str(ev.get("time", "")),
                ev.get("detail-type", ""),
                str(d.get("model", "")),
                str(d.get("execution", "")),
                str(d.get("outcome", "")),
                str(reason)[:300],
                str((d.get("decision") or {}).get("report") or ""),
            ]
        )
    columns = ["time", "detail-type", "model", "run", "outcome", "reason", "report"]
    out.print(_rows_view(columns, cells, width=out.width))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Download a run's report (twin or --aws) and optionally open it in the browser."""
    import webbrowser

    dest = Path(args.out) if args.out else Path.cwd()
    uri, path = client.download_report(_target(args), args.run, dest)
    out.print(f"{uri}\n-> {path.resolve()}", soft_wrap=True)
    if args.open:
        webbrowser.open(path.resolve().as_uri())
    return 0


def cmd_decide(args: argparse.Namespace) -> int:
    approved = args.command == "approve"
    if not approved and not args.reason:
        raise ValueError("reject needs --reason")
    result = client.decide_approval(
        _target(args), args.run, approved, args.reason or "approved", args.by or getpass.getuser()
    )
    out.print_json(json.dumps(result))
    return 0


def cmd_publish_code(args: argparse.Namespace) -> int:
    from . import codebundle

    target = _target(args)
    out.print(codebundle.publish(target.client("s3"), target.artifacts_bucket, ROOT / "model"))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(ROOT, Path(args.state_dir) if args.state_dir else None, keep_logs=args.verbose)


def _capacity_arg(value: str) -> int:
    """``--training-capacity``: a positive integer (argparse reports the error and exits 2)."""
    from .twin.sagemaker.capacity import InvalidCapacityError, parse_capacity

    try:
        return parse_capacity(value, "--training-capacity")
    except InvalidCapacityError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser for every sub-command."""
    parser = argparse.ArgumentParser(prog="sagepipe", description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)

    twin = sub.add_parser("twin", help="the local twin").add_subparsers(dest="twin_command", required=True)
    up = twin.add_parser("up", help="run the twin in the foreground (Ctrl-C stops it)")
    up.add_argument("--state-dir", default=str(client.DEFAULT_STATE_DIR))
    up.add_argument("--quiet", action="store_true", help="do not echo function, training and model logs")
    up.add_argument(
        "--training-capacity",
        type=_capacity_arg,
        default=None,
        metavar="N",
        help="training jobs run at once; more wait InProgress/Starting "
        "(default $SAGEPIPE_TWIN_TRAINING_CAPACITY, else half the CPUs, at least 1)",
    )
    up.set_defaults(func=cmd_twin_up)
    reset = twin.add_parser("reset", help="delete the twin state saved in the state dir (it survives restarts)")
    reset.add_argument("--state-dir", default=str(client.DEFAULT_STATE_DIR))
    reset.add_argument("--yes", action="store_true", help="really delete it")
    reset.set_defaults(func=cmd_twin_reset)

    p = sub.add_parser("upload", help="upload a CSV data set (starts a run; says so when the same bytes already ran)")
    p.add_argument("file")
    p.add_argument("--model", required=True)
    p.add_argument("--config", help="per-model config JSON uploaded as datasets/<model>/sagepipe.json")
    _add_target_args(p)
    p.set_defaults(func=cmd_upload)

    p = sub.add_parser("retrain", help='retrain a model on its latest data (the "Retrain Requested" event)')
    p.add_argument("--model", required=True)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _add_target_args(p)
    p.set_defaults(func=cmd_retrain)

    p = sub.add_parser("runs", help="list pipeline runs")
    p.add_argument("--model")
    p.add_argument("--wait", action="store_true", help="block until no run is in progress")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _add_target_args(p)
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser(
        "retry",
        help="retry a FAILED, ABORTED or TIMED_OUT run from its unsuccessful step (Step Functions RedriveExecution)",
    )
    p.add_argument("run", help="execution name (see `sagepipe runs`) or execution ARN")
    p.add_argument("--client-token", help="idempotency token: the same token within 15 minutes redrives once")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _add_target_args(p)
    p.set_defaults(func=cmd_retry)

    p = sub.add_parser("predict", help="call the HTTP inference API")
    p.add_argument("--model", required=True)
    p.add_argument("--csv", help="CSV rows (features in schema order, header optional)")
    p.add_argument(
        "--json",
        dest="json_args",
        action="append",
        nargs="?",
        const=True,
        metavar="FILE",
        help='--json FILE sends a JSON body {"instances": [...]}; a bare --json prints the raw JSON response',
    )
    p.add_argument("--api-key", help="API key (x-api-key) when the API requires one")
    _add_target_args(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "events", help="pipeline notifications (Succeeded, Rejected, Failed, Approval Needed, Rolled Back)"
    )
    p.add_argument("--model")
    p.add_argument("--run", help="one execution name")
    p.add_argument("--json", action="store_true")
    _add_target_args(p)
    p.set_defaults(func=cmd_events)

    p = sub.add_parser("report", help="download a run's report (HTML with the charts) and optionally open it")
    p.add_argument("run", help="execution name (see `sagepipe runs`)")
    p.add_argument("--open", action="store_true", help="open it in the web browser")
    p.add_argument("--out", help="file or directory to write it to (default: ./<run>.html)")
    _add_target_args(p)
    p.set_defaults(func=cmd_report)

    for name, helptext in (
        ("approve", "approve a run waiting for manual approval"),
        ("reject", "reject a run waiting for manual approval"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("run", help="execution name (see `sagepipe runs`)")
        p.add_argument("--reason", required=(name == "reject"))
        p.add_argument("--by", help="who decides (default: your user name)")
        _add_target_args(p)
        p.set_defaults(func=cmd_decide)

    p = sub.add_parser("publish-code", help="upload model/ as code/sourcedir.tar.gz to the artifacts bucket")
    _add_target_args(p)
    p.set_defaults(func=cmd_publish_code)

    p = sub.add_parser("demo", help="the main job on the local twin, on the churn data, narrated")
    p.add_argument("--state-dir", default=None, help="twin state directory (default: a fresh temp dir)")
    p.add_argument("--verbose", action="store_true", help="echo function, training and model logs")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point (``sagepipe``)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except TargetError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    except NotRetriableError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 1
    except (ValueError, FileNotFoundError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    except InvalidConfigError as exc:
        console.print(f"[red]error:[/red] {exc.message}: {exc.details.get('errors', '')}")
        return 2
    except SagepipeError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
