"""What the twin's strictness costs: one churn pipeline run with and without the strictness patches.

Run: ``.venv/bin/python bench/strictness.py [--pairs N (3)] [--calls]`` (about 2 minutes per run). Each run is its
own process (moto's patches are process-wide): a twin starts, one churn run goes from upload to the
first prediction over HTTP (``bench/pipeline.py``'s ``one_run``), the twin stops. Strict and lax runs
alternate (strict, lax, strict, ...) so that both see the same machine load; the table gives each
mode's median and the ratio strict / lax of the medians and of each adjacent pair.

"Lax" leaves out :data:`sagepipe.twin.patches.STRICTNESS` - server-side service-model validation, IAM
enforcement, the execution-history quota and the Lambda and PutEvents payload quotas - through
``SAGEPIPE_TWIN_BENCH_LAX=1``, which only this script sets (the test suite refuses to run with it).
Issue 10's budget: strictness costs at most 10 % (ratio <= 1.10).

``--calls``: the per-request cost, robust to a noisy machine. One twin, one process; the calls a Lambda
role makes (StartFunction's: S3 ListObjectsV2 and GetObject on the data bucket, Step Functions
DescribeExecution), signed with the role's key, in blocks of 40 that alternate strict / lax 20 times: in
lax blocks the strictness hooks (``BaseResponse.call_action``: service-model validation;
``BaseResponse._dispatch`` and S3's authoriser: IAM) are swapped back to moto's originals.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("total (upload → first prediction)", "twin overhead (total − script − server start)")


def child() -> None:
    """One run in this process; prints its phases (seconds) as JSON on the last line."""
    sys.path.insert(0, str(ROOT / "bench"))
    from pipeline import one_run

    from sagepipe.client import Target
    from sagepipe.twin.server import Twin

    with tempfile.TemporaryDirectory() as tmp:
        twin = Twin(ROOT, Path(tmp) / "state", echo=False, say=lambda m: None)
        t0 = time.time()
        twin.start()
        startup = time.time() - t0
        try:
            phases = one_run(twin, Target.twin(Path(tmp) / "state"), Path(tmp), 0)
        finally:
            twin.stop()
    print(json.dumps({**phases, "twin start-up": startup}))


def run(lax: bool) -> dict[str, float]:
    env = {**os.environ, "SAGEPIPE_TWIN_BENCH_LAX": "1" if lax else ""}
    done = subprocess.run(
        [sys.executable, __file__, "--child"], env=env, cwd=ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{'lax' if lax else 'strict'} run failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def calls(blocks: int = 20, per_block: int = 40) -> None:
    """The ``--calls`` measurement (module docstring); prints a table."""
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.core.responses import BaseResponse

    from sagepipe.twin import iam
    from sagepipe.twin.patches import _APPLIED
    from sagepipe.twin.server import Twin

    with tempfile.TemporaryDirectory() as tmp:
        twin = Twin(ROOT, Path(tmp) / "state", echo=False, say=lambda m: None)
        twin.start()
        try:
            info = twin.info
            assert info is not None
            role = next(arn for arn, r in iam.DEPLOYED.items() if r.logical_id == "StartFunction")
            s3, sfn = twin.client("s3", role), twin.client("stepfunctions", role)
            twin.client("s3").put_object(Bucket=info.data_bucket, Key="datasets/bench/x.txt", Body=b"a,b\n1,2\n")
            execution = info.state_machine_arn.replace(":stateMachine:", ":execution:") + ":none"
            sites = [
                (BaseResponse, "call_action", _APPLIED["server_validation.call_action"]),
                (BaseResponse, "_dispatch", _APPLIED["dispatch"]),
                (ActionAuthenticatorMixin, "_authenticate_and_authorize_s3_action", _APPLIED["s3"]),
            ]
            strict_fns = [(owner, attr, getattr(owner, attr)) for owner, attr, _ in sites]

            def block() -> float:
                t0 = time.perf_counter()
                for i in range(per_block):
                    if i % 3 == 0:
                        s3.list_objects_v2(Bucket=info.data_bucket, Prefix="datasets/bench/")
                    elif i % 3 == 1:
                        s3.get_object(Bucket=info.data_bucket, Key="datasets/bench/x.txt")["Body"].read()
                    else:
                        try:
                            sfn.describe_execution(executionArn=execution)
                        except sfn.exceptions.ExecutionDoesNotExist:
                            pass
                return (time.perf_counter() - t0) / per_block * 1000

            times: dict[str, list[float]] = {"strict": [], "lax": []}
            block()  # warm
            for b in range(blocks):
                for mode in ("strict", "lax") if b % 2 == 0 else ("lax", "strict"):
                    for owner, attr, fn in strict_fns if mode == "strict" else sites:
                        setattr(owner, attr, fn)
                    times[mode].append(block())
            for owner, attr, fn in strict_fns:
                setattr(owner, attr, fn)
        finally:
            twin.stop()
    table = Table(title=f"twin strictness, per request: {blocks} alternating blocks of {per_block} calls (ms/call)")
    for column in ("mode", "median", "min", "max"):
        table.add_column(column, justify="right")
    for mode, values in times.items():
        table.add_row(mode, f"{statistics.median(values):.2f}", f"{min(values):.2f}", f"{max(values):.2f}")
    ratio = statistics.median(times["strict"]) / statistics.median(times["lax"])
    Console().print(table)
    Console().print(f"strict / lax per request (medians): {ratio:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--calls", action="store_true", help="per-request cost (one process, alternating blocks)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child()
        return
    if args.calls:
        calls()
        return
    strict: list[dict[str, float]] = []
    lax: list[dict[str, float]] = []
    for i in range(args.pairs):
        for mode in ("strict", "lax") if i % 2 == 0 else ("lax", "strict"):
            (strict if mode == "strict" else lax).append(run(lax=mode == "lax"))
            last = (strict if mode == "strict" else lax)[-1]
            Console().print(f"pair {i + 1}/{args.pairs}: {mode} {last[KEYS[0]]:.1f} s")
    table = Table(title=f"twin strictness cost: {args.pairs} strict/lax pairs of one churn run, seconds")
    table.add_column("phase")
    for column in ("strict median", "lax median", "strict / lax (medians)", "per pair"):
        table.add_column(column, justify="right")
    for key in (*KEYS, "twin start-up", "validate & split", "deploy → InService"):
        s, x = [r[key] for r in strict], [r[key] for r in lax]
        pairs = ", ".join(f"{a / b:.2f}" for a, b in zip(s, x, strict=True) if b > 0)
        ratio = statistics.median(s) / statistics.median(x) if statistics.median(x) > 0 else float("nan")
        table.add_row(key, f"{statistics.median(s):.2f}", f"{statistics.median(x):.2f}", f"{ratio:.3f}", pairs)
    Console().print(table)


if __name__ == "__main__":
    main()
