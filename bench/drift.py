"""The drift check's detection rate by shift size, its false-alarm rate, and its read speed (issue 14).

The baseline is ``model/baseline.py``'s statistics of the churn training rows (the first 3,000 of
``examples/data/churn.csv``, numeric as training reads them); each trial draws a window of ``--window``
records (bootstrap, seeded) from the *other* 2,000 rows, optionally shifts one feature, and runs the
check's own scoring (``sagepipe_core.drift``) with the default thresholds of the per-model config
(``DriftConfig``). A trial "alarms" when any feature drifts.

- false alarms: unshifted windows that alarm (goal: well under 5 %);
- detection: windows whose ``total_day_minutes`` is moved by ``k`` standard deviations (k = 0.1 … 1.0) and,
  for a categorical, ``international_plan`` "yes" share raised by ``d``;
- read speed: capture JSON lines (the twin's writer's format, 10 records per request) parsed and counted per
  second, against ``json.loads`` of the same lines alone (the floor), printed as a ratio.

    .venv/bin/python bench/drift.py [--trials 200] [--window 500]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "model"), str(REPO / "layers" / "core"), str(REPO)]

import baseline  # noqa: E402
import pandas as pd  # noqa: E402

from sagepipe.twin.sagemaker import capture  # noqa: E402
from sagepipe_core import deploy, drift  # noqa: E402
from sagepipe_core.config import DriftConfig  # noqa: E402

DATA = REPO / "examples" / "data" / "churn.csv"
NUMERIC = {"state": False, "area_code": False, "international_plan": False, "voice_mail_plan": False}


def _rows() -> tuple[list[str], list[dict[str, str]]]:
    with DATA.open() as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    names = [n for n in reader.fieldnames or [] if n != "churn"]
    return names, [{k: v for k, v in r.items() if k != "churn"} for r in rows]


def _features(names: list[str]) -> list[dict[str, str]]:
    return [{"name": n, "type": "numeric" if NUMERIC.get(n, True) else "categorical"} for n in names]


def _frame(rows: list[dict[str, str]], features: list[dict[str, str]]) -> pd.DataFrame:
    out = {}
    for f in features:
        col = [r[f["name"]] for r in rows]
        out[f["name"]] = pd.to_numeric(pd.Series(col), errors="coerce") if f["type"] == "numeric" else col
    return pd.DataFrame(out)


def _alarms(stats: dict, window: list[dict[str, object]], cfg: DriftConfig) -> bool:
    counts = drift.feature_counts(stats)
    for row in window:
        for c in counts:
            c.add(row.get(c.name))
    scores = drift.judge(
        counts, psi_threshold=cfg.psi_threshold, ks_threshold=cfg.ks_threshold, linf_threshold=cfg.linf_threshold
    )
    return any(s["drifted"] for s in scores)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--window", type=int, default=500)
    args = ap.parse_args(argv)
    names, rows = _rows()
    features = _features(names)
    train, rest = rows[:3000], rows[3000:]
    stats = baseline.statistics(_frame(train, features), features)
    cfg = DriftConfig()
    rng = random.Random(7)
    minutes = [float(r["total_day_minutes"]) for r in train]
    mean = sum(minutes) / len(minutes)
    sd = (sum((m - mean) ** 2 for m in minutes) / len(minutes)) ** 0.5
    print(f"baseline: {len(train)} rows, {len(features)} features; window {args.window} records, {args.trials} trials")
    print(f"thresholds: PSI {cfg.psi_threshold}, KS {cfg.ks_threshold}, L∞ {cfg.linf_threshold}\n")

    def rate(shift: float = 0.0, yes_share: float | None = None) -> float:
        hits = 0
        for _ in range(args.trials):
            window: list[dict[str, object]] = [dict(rng.choice(rest)) for _ in range(args.window)]
            for r in window:
                if shift:
                    r["total_day_minutes"] = float(str(r["total_day_minutes"])) + shift * sd
                if yes_share is not None:
                    r["international_plan"] = "yes" if rng.random() < yes_share else "no"
            hits += _alarms(stats, window, cfg)
        return hits / args.trials

    print("| window | alarms |")
    print("|---|---|")
    print(f"| unshifted (false alarms) | {rate():.1%} |")
    for k in (0.1, 0.2, 0.3, 0.5, 1.0):
        print(f"| total_day_minutes + {k} sd | {rate(shift=k):.1%} |")
    base_yes = sum(r["international_plan"] == "yes" for r in train) / len(train)
    for d in (0.05, 0.1, 0.2):
        print(f"| international_plan yes {base_yes:.0%} → {base_yes + d:.0%} | {rate(yes_share=base_yes + d):.1%} |")

    cap = deploy.data_capture_config(100, "s3://b/dc")
    assert cap is not None
    when = datetime.now(UTC)
    lines = []
    for i in range(0, 20_000, 10):
        body = json.dumps({"instances": [rows[(i + j) % len(rows)] for j in range(10)]}).encode()
        rec = capture.capture_record(
            cap,
            request=body,
            request_type="application/json",
            response=b"{}",
            response_type="application/json",
            when=when,
            event_id=str(i),
        )
        lines.append(json.dumps(rec))
    start = time.perf_counter()
    for line in lines:
        json.loads(json.loads(line)["captureData"]["endpointInput"]["data"])
    floor = time.perf_counter() - start
    counts = drift.feature_counts(stats)
    start = time.perf_counter()
    n = 0
    for row in drift.captured_records(lines, names, when.replace(microsecond=0)):
        n += 1
        for c in counts:
            c.add(row.get(c.name))
    took = time.perf_counter() - start
    print(
        f"\nread speed: {n:,} records in {took:.2f} s = {n / took:,.0f} records/s "
        f"({took / floor:.1f}× json.loads of the same lines alone, {n / floor:,.0f} records/s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
