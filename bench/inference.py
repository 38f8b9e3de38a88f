"""Inference latency on the churn model, layer by layer, and the predict function's cold-start costs.

Run: ``.venv/bin/python bench/inference.py [--n 300] [--skip-twin]``. Prints one table (milliseconds):

* ``handler (stub)``: ``functions/predict/app.lambda_handler`` in-process on a REST v1 event, with the
  SageMaker runtime / control-plane / S3 clients stubbed and the live version cached: pure handler overhead
  (routing, body decode, schema validation, JSON in/out, logging).
* ``model server /invocations``: a direct POST to the twin's model-server process of the live version.
* ``InvokeEndpoint (twin)``: boto3 ``sagemaker-runtime`` through the twin's moto server.
* ``HTTP API (twin) xC``: the full path client → API front → predict Lambda worker → InvokeEndpoint →
  model server, with C concurrent clients (keep-alive sessions); p50, p99 and requests/s.

Each with a 1-record and a 100-record request. Then: the predict handler module's import time in a fresh
interpreter (median of 5) and the built bundle (PredictFunction + its layers from ``sam build``, zipped and unzipped; checks that
no pandas / numpy / sagemaker is in it). Targets (benchmark only, not timed tests): handler p50 ≤ 1 ms
single-record, import ≤ 300 ms, bundle ≤ 5 MB.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CHURN = ROOT / "examples" / "data" / "churn.csv"
CHURN_CONFIG = ROOT / "examples" / "data" / "churn.sagepipe.json"
PREDICT_EVENT = ROOT / "events" / "predict_rest.json"  # the sample event `sam local invoke -e` uses
ENV = {
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_SERVICE_NAME": "sagepipe",
    "RESOURCE_PREFIX": "sagepipe",
    "MAX_BATCH_SIZE": "100",
}


def pct(samples: list[float], q: float) -> float:
    """The q-quantile (0..1) of ``samples`` (nearest rank), in the samples' unit."""
    s = sorted(samples)
    return s[min(len(s) - 1, max(0, int(round(q * len(s) + 0.5)) - 1))]


def timed(fn: Callable[[], Any], n: int, warmup: int = 20) -> list[float]:
    """Milliseconds per call of ``fn`` over ``n`` calls (after ``warmup``)."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def concurrent(fn: Callable[[], Any], n: int, clients: int) -> tuple[list[float], float]:
    """``n`` calls spread over ``clients`` threads: (per-call ms, requests/s)."""
    lat: list[float] = []
    lock = threading.Lock()

    def worker(count: int) -> None:
        mine = []
        for _ in range(count):
            t0 = time.perf_counter()
            fn()
            mine.append((time.perf_counter() - t0) * 1000)
        with lock:
            lat.extend(mine)

    per = [n // clients + (1 if i < n % clients else 0) for i in range(clients)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, per))
    return lat, n / (time.perf_counter() - t0)


def records(n: int) -> list[dict[str, str]]:
    """The first ``n`` churn rows as JSON records (no target)."""
    rows = list(csv.DictReader(io.StringIO(CHURN.read_text())))[-n:]
    for r in rows:
        r.pop("churn")
    return rows


# ------------------------------------------------------------------------------------ in-process
class _Body(io.BytesIO):
    pass


def churn_model_tarball() -> bytes:
    """A model.tar.gz as the handler reads it: the schema.json model/train.py builds for churn.csv (its own
    read_channel + build_schema), a stand-in model.joblib (the handler never loads it) and evaluation.json."""
    sys.path.insert(0, str(ROOT / "model"))  # as in the container: train imports its sibling sagepipe_contract
    import sagepipe_contract as contract
    import train

    with tempfile.TemporaryDirectory() as channel:
        (Path(channel) / "churn.csv").write_bytes(CHURN.read_bytes())
        frame = train.read_channel(channel, "train")
    schema = train.build_schema(frame, "churn", "binary", ["no", "yes"])
    evaluation = {"metrics": {"test": {"auc": 0.91}}}
    files = {
        contract.MODEL_FILE: b"\0" * 1024,
        contract.SCHEMA_FILE: json.dumps(schema).encode(),
        contract.EVALUATION_FILE: json.dumps(evaluation).encode(),
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def handler_bench(n: int) -> dict[int, list[float]]:
    """Pure handler overhead with stubbed AWS clients (the live version cached)."""
    os.environ.update(ENV)
    import functions.predict.app as app
    from sagepipe.twin.awslambda.worker import LambdaContext
    from sagepipe_core.predict import LiveModels

    tarball = churn_model_tarball()
    preds = {
        k: json.dumps({"predictions": [{"label": "no", "probabilities": {"no": 0.9, "yes": 0.1}}] * k}).encode()
        for k in (1, 100)
    }

    class SM:
        def describe_endpoint(self, **_: Any) -> dict[str, Any]:
            return {"EndpointStatus": "InService", "EndpointConfigName": "churn-v1"}

        def describe_endpoint_config(self, **_: Any) -> dict[str, Any]:
            return {"ProductionVariants": [{"ModelName": "churn-v1"}]}

        def describe_model(self, **_: Any) -> dict[str, Any]:
            return {"PrimaryContainer": {"ModelDataUrl": "s3://b/models/churn/model.tar.gz"}}

    class S3:
        def get_object(self, **_: Any) -> dict[str, Any]:
            return {"Body": io.BytesIO(tarball)}

    class Runtime:
        def invoke_endpoint(self, Body: bytes, **_: Any) -> dict[str, Any]:  # noqa: N803 - boto3 names
            k = 100 if Body.count(b'"state"') > 1 else 1
            return {"Body": _Body(preds[k]), "InvokedProductionVariant": "AllTraffic"}

    app.RUNTIME = Runtime()
    app.LIVE = LiveModels(SM(), S3(), ttl_s=3600)
    app.logger.registered_handler.stream = io.StringIO()  # formatting cost kept, terminal spared

    # the context object the twin's Lambda runtime passes (deadline 15 min away: never reached here)
    ctx = LambdaContext(
        "5f6b8c4e-0000-4000-8000-000000000001",
        int(time.time() * 1000) + 900_000,
        "arn:aws:lambda:us-east-1:123456789012:function:sagepipe-predict",
    )
    out = {}
    for k in (1, 100):
        ev = json.loads(PREDICT_EVENT.read_text())
        ev["body"] = json.dumps({"instances": records(k)})

        def call(ev: dict[str, Any] = ev) -> None:
            resp = app.lambda_handler(ev, ctx)
            assert resp["statusCode"] == 200, resp["body"]
            app.logger.registered_handler.stream.seek(0)
            app.logger.registered_handler.stream.truncate()

        out[k] = timed(call, n * 5)
    return out


# ------------------------------------------------------------------------------------------ twin
def twin_bench(n: int) -> dict[str, Any]:
    """Start a twin, train + deploy churn, then time the three remote layers."""
    import boto3
    import requests
    from botocore.config import Config

    from sagepipe import client
    from sagepipe.client import Target
    from sagepipe.twin.server import Twin

    state = Path(tempfile.mkdtemp(prefix="bench-inference-"))
    twin = Twin(ROOT, state, echo=False, say=lambda m: None)
    twin.start()
    try:
        target = Target.twin(state)
        key = client.upload(target, CHURN, "churn", CHURN_CONFIG)
        [run] = [r for r in client.wait_for_runs(target, "churn", timeout_s=600) if r["key"] == key]
        assert run["status"] == "SUCCEEDED", run["reason"]
        server = twin.hosting.endpoints["sagepipe-churn"].live
        direct_url = f"http://127.0.0.1:{server.port}/invocations"
        runtime = boto3.client(
            "sagemaker-runtime",
            endpoint_url=twin.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"total_max_attempts": 1}),
        )
        api = f"{target.api_url}/models/churn/predictions"
        headers = {"Content-Type": "application/json", "x-api-key": target.api_key}
        res: dict[str, Any] = {}
        local = threading.local()

        def session() -> requests.Session:
            if not hasattr(local, "s"):
                local.s = requests.Session()
            return local.s

        for k in (1, 100):
            body = json.dumps({"instances": records(k)}).encode()

            def direct(body: bytes = body) -> None:
                r = session().post(direct_url, data=body, headers={"Content-Type": "application/json"}, timeout=30)
                assert r.status_code == 200, r.text

            def invoke(body: bytes = body) -> None:
                runtime.invoke_endpoint(EndpointName="sagepipe-churn", ContentType="application/json", Body=body)[
                    "Body"
                ].read()

            def full(body: bytes = body) -> None:
                r = session().post(api, data=body, headers=headers, timeout=30)
                assert r.status_code == 200, r.text

            res[("direct", k)] = (timed(direct, n), None)
            res[("invoke", k)] = (timed(invoke, n), None)
            res[("api1", k)] = concurrent(full, n, 1)
            res[("api16", k)] = concurrent(full, n * 2, 16)
        return res
    finally:
        twin.stop()


# ------------------------------------------------------------------------------------- cold start
def import_ms(module: str, runs: int = 5) -> float:
    """Median wall time of ``import <module>`` in a fresh interpreter (ms), module-level clients included."""
    code = f"import time; t=time.perf_counter(); import {module}; print((time.perf_counter()-t)*1000)"
    env = {**os.environ, **ENV, "PYTHONPATH": str(ROOT)}
    vals = [
        float(
            subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
            .stdout.strip()
            .splitlines()[-1]
        )
        for _ in range(runs)
    ]
    return statistics.median(vals)


def _predict_parts(build_dir: Path) -> list[str]:
    """PredictFunction and the layers it references in the built template."""
    from sagepipe.twin.cloudformation.template import load_template

    template = load_template(build_dir / "template.yaml")
    layers = template["Resources"]["PredictFunction"]["Properties"].get("Layers", [])
    return ["PredictFunction", *[layer["Ref"] for layer in layers if isinstance(layer, dict) and "Ref" in layer]]


def bundle(build_dirs: list[Path]) -> tuple[Path | None, list[str], int, int, list[str]]:
    """(build dir used, parts measured, unzipped bytes, zipped bytes (deflate, as Lambda stores the
    deployment package), forbidden packages found) for PredictFunction + its layers."""
    import io
    import zipfile

    for d in build_dirs:
        if (d / "PredictFunction").is_dir() and (d / "template.yaml").is_file():
            parts = _predict_parts(d)
            total, zipped, bad = 0, 0, []
            for part in parts:
                buf = io.BytesIO()
                with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
                    for p in sorted((d / part).rglob("*")):
                        if p.is_file():
                            total += p.stat().st_size
                            zf.write(p, p.relative_to(d / part))
                zipped += len(buf.getvalue())
                bad += [
                    name for name in ("pandas", "numpy", "sagemaker") if any((d / part).rglob(f"{name}/__init__.py"))
                ]
            return d, parts, total, zipped, bad
    return None, [], 0, 0, []


def main() -> int:
    """Parse arguments, run every layer, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--n", type=int, default=300, help="requests per remote measurement (x5 in-process)")
    ap.add_argument("--skip-twin", action="store_true")
    ap.add_argument("--build-dir", action="append", default=[], help="sam build dir(s) to measure")
    args = ap.parse_args()

    rows: list[tuple[str, int, float, float, str]] = []
    h = handler_bench(args.n)
    for k in (1, 100):
        rows.append(("handler in-process (stubbed runtime)", k, statistics.median(h[k]), pct(h[k], 0.99), ""))
    ratio = {}
    if not args.skip_twin:
        t = twin_bench(args.n)
        names = {
            "direct": "model server POST /invocations",
            "invoke": "InvokeEndpoint through the twin",
            "api1": "HTTP API through the twin, 1 client",
            "api16": "HTTP API through the twin, 16 clients",
        }
        for key in ("direct", "invoke", "api1", "api16"):
            for k in (1, 100):
                lat, rps = t[(key, k)]
                rows.append((names[key], k, statistics.median(lat), pct(lat, 0.99), f"{rps:.0f}" if rps else ""))
        for k in (1, 100):
            ratio[k] = statistics.median(t[("api1", k)][0]) / statistics.median(t[("direct", k)][0])

    print(f"\n{'layer':<40} {'records':>7} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>7}")
    print("-" * 74)
    for name, k, p50, p99, rps in rows:
        print(f"{name:<40} {k:>7} {p50:>8.2f} {p99:>8.2f} {rps:>7}")
    for k, r in ratio.items():
        print(f"full-path p50 / direct-server p50 ({k} record{'s' if k > 1 else ''}): {r:.2f}x")
    print(
        f"\nimport functions.predict.app (fresh interpreter, median of 5): {import_ms('functions.predict.app'):.0f} ms"
        " (target <= 300 ms)"
    )
    dirs = [Path(d) for d in args.build_dir] + [ROOT / ".aws-sam" / "build", Path("/tmp/samb/.aws-sam/build")]
    where, parts, size, zipped, bad = bundle(dirs)
    if where is None:
        print("bundle: no sam build output found (run `make build`)")
    else:
        print(
            f"bundle {' + '.join(parts)} ({where}): {zipped / 1e6:.2f} MB zipped, {size / 1e6:.2f} MB unzipped"
            f" (target <= 5 MB); pandas/numpy/sagemaker in it: {', '.join(bad) or 'none'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
