"""N distinct data versions uploaded at once to the local twin: total time against N x one run / capacity,
the machine's load and the inference API meanwhile (issue 16 item 1).

Run: ``nice -n 10 .venv/bin/python bench/concurrent_uploads.py [--n 6] [--before-ref main] [--skip-before]``.

Each side starts its own twin in a child process, deploys a first version of model ``conc`` (so the API has
an endpoint to answer with), times one more run alone ("one run"), then uploads ``N`` distinct versions of
``conc`` at once and waits for every run to end while a probe POSTs one record to the API every 0.5 s.
Printed side by side:

* ``before``: the code of ``--before-ref`` (default ``main``; extracted with ``git archive``, so nothing in
  the repository changes) with ``SAGEPIPE_TWIN_TRAINING_CAPACITY=N`` - a twin without capacity ignores it
  and starts every job at once, one with capacity runs N at once (unlimited for N jobs);
* ``after``: this tree with the default capacity (``max(1, cpus // 2)``).

``ratio`` = total / (N x one run / capacity): 1.0 is the capacity used perfectly; far above 1 is thrashing.
The load average is the machine's 1-minute one (other users of the machine count in it too).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODEL = "conc"


def _wait_runs(target: Any, keys: list[str], timeout_s: float = 1800) -> list[dict[str, Any]]:
    """DescribeExecution of each key's run once every one has ended."""
    sfn = target.client("stepfunctions")
    arns: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(arns) < len(keys):
            for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=target.state_machine_arn):
                for ex in page["executions"]:
                    if ex["executionArn"] in arns.values():
                        continue
                    key = json.loads(sfn.describe_execution(executionArn=ex["executionArn"])["input"])["dataset"]["key"]
                    if key in keys:
                        arns[key] = ex["executionArn"]
        if len(arns) == len(keys):
            descs = [sfn.describe_execution(executionArn=arns[k]) for k in keys]
            if all(d["status"] != "RUNNING" for d in descs):
                return descs
        time.sleep(1.0)
    raise TimeoutError(f"runs did not end within {timeout_s} s")


def measure(tree: Path, n: int) -> dict[str, Any]:
    """One side of the bench, in this process, on the code in ``tree`` (on ``sys.path`` first)."""
    from sagepipe import client
    from sagepipe.client import Target
    from sagepipe.twin.server import Twin

    data = tree / "examples" / "data"
    header, *rows = (data / "churn.csv").read_text().splitlines()
    config = data / "churn.sagepipe.json"
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        twin = Twin(tree, tmpdir / "state", echo=False, say=lambda m: None)
        twin.start()
        try:
            target = Target.twin(tmpdir / "state")
            capacity = getattr(getattr(twin.training, "capacity", None), "slots", None) or n

            def version(i: int) -> Path:  # distinct bytes per version
                path = tmpdir / f"v{i}.csv"
                path.write_text("\n".join([header, *rows[: 3000 + 37 * i]]) + "\n")
                return path

            key = client.upload(target, version(0), MODEL, config)
            [first] = _wait_runs(target, [key])
            assert first["status"] == "SUCCEEDED", first.get("cause")
            time.sleep(1.1)  # a later LastModified second (S3 orders data versions to the second)
            t0 = time.monotonic()
            key = client.upload(target, version(1), MODEL)
            [solo] = _wait_runs(target, [key])
            one_run = time.monotonic() - t0
            assert solo["status"] == "SUCCEEDED", solo.get("cause")
            record = dict(zip(header.split(","), rows[-1].split(","), strict=True))
            record.pop("churn", None)
            body = json.dumps({"instances": [record]}).encode()
            probes: list[tuple[float, bool]] = []
            loads: list[float] = []
            done = threading.Event()

            def probe() -> None:
                while not done.is_set():
                    t = time.monotonic()
                    try:
                        ok = client.predict(target, MODEL, body, "application/json").status_code == 200
                    except Exception:  # noqa: BLE001 - a timeout or reset counts as an error
                        ok = False
                    probes.append(((time.monotonic() - t) * 1000, ok))
                    loads.append(os.getloadavg()[0])
                    done.wait(0.5)

            prober = threading.Thread(target=probe, daemon=True)
            time.sleep(1.1)
            paths = [version(i) for i in range(2, 2 + n)]
            t0 = time.monotonic()
            prober.start()
            with ThreadPoolExecutor(n) as pool:
                keys = list(pool.map(lambda p: client.upload(target, p, MODEL), paths))
            descs = _wait_runs(target, keys)
            total = time.monotonic() - t0
            done.set()
            prober.join(60)
            jobs = twin.client("sagemaker").list_training_jobs(NameContains=MODEL, MaxResults=100)
            latencies = sorted(ms for ms, _ in probes)
            return {
                "capacity": capacity,
                "one_run_s": one_run,
                "total_s": total,
                "ratio": total / (n * one_run / capacity),
                "training_jobs": len(jobs["TrainingJobSummaries"]) - 2,
                "succeeded": sum(d["status"] == "SUCCEEDED" for d in descs),
                "load_max": max(loads) if loads else 0.0,
                "load_mean": statistics.fmean(loads) if loads else 0.0,
                "probes": len(probes),
                "probe_p50_ms": statistics.median(latencies) if latencies else 0.0,
                "probe_max_ms": latencies[-1] if latencies else 0.0,
                "probe_errors": sum(not ok for _, ok in probes),
            }
        finally:
            twin.stop()


def _side(tree: Path, n: int, env: dict[str, str]) -> dict[str, Any]:
    """Run :func:`measure` for ``tree`` in a child interpreter (its ``sagepipe`` imported from ``tree``)."""
    child_env = {**os.environ, **env, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--measure", str(tree), "--n", str(n)],
        env=child_env,
        check=True,
        capture_output=True,
        text=True,
        cwd=str(tree),
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=6, help="versions uploaded at once (default 6)")
    parser.add_argument("--before-ref", default="main", help="git ref of the 'before' side (default main)")
    parser.add_argument("--skip-before", action="store_true", help="measure this tree only")
    parser.add_argument("--measure", metavar="TREE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure), args.n)))
        return
    sides: dict[str, dict[str, Any]] = {}
    env = {k: v for k, v in os.environ.items() if k == "SAGEPIPE_TWIN_TRAINING_CAPACITY"}
    if not args.skip_before:
        with tempfile.TemporaryDirectory() as tmp:
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", args.before_ref], check=True, capture_output=True
            )
            subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
            sides[f"before ({args.before_ref}, capacity N)"] = _side(
                Path(tmp), args.n, {"SAGEPIPE_TWIN_TRAINING_CAPACITY": str(args.n)}
            )
    os.environ.pop("SAGEPIPE_TWIN_TRAINING_CAPACITY", None)
    sides["after (default capacity)"] = _side(ROOT, args.n, env)
    rows = [
        ("capacity (jobs at once)", "capacity", "{:d}"),
        ("one run alone (s)", "one_run_s", "{:.1f}"),
        (f"{args.n} uploads at once: total (s)", "total_s", "{:.1f}"),
        ("ratio total / (N x one run / capacity)", "ratio", "{:.2f}"),
        ("training jobs run for the N", "training_jobs", "{:d}"),
        ("runs SUCCEEDED", "succeeded", "{:d}"),
        ("load average 1 min, max", "load_max", "{:.1f}"),
        ("load average 1 min, mean", "load_mean", "{:.1f}"),
        ("API probes", "probes", "{:d}"),
        ("API probe p50 (ms)", "probe_p50_ms", "{:.0f}"),
        ("API probe max (ms)", "probe_max_ms", "{:.0f}"),
        ("API probe errors", "probe_errors", "{:d}"),
    ]
    names = list(sides)
    width = max(len(r[0]) for r in rows)
    print(f"{args.n} distinct versions of one model uploaded at once, {os.cpu_count()} CPUs")
    print(" " * width + "".join(f"  {n:>32}" for n in names))
    for label, key, fmt in rows:
        print(label.ljust(width) + "".join(f"  {fmt.format(sides[n][key]):>32}" for n in names))


if __name__ == "__main__":
    main()
