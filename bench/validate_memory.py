"""ValidateData's memory: peak MiB per input MiB of parsing, checking and splitting a CSV, before vs after.

Issue 9 item 7: a 64 MiB CSV of 2-digit integers (51 columns) peaked at 1,986 MiB in the 2,048 MB
function with the list-of-rows parser; the config allows 256 MiB. Each measurement runs in a fresh
process: it reads the file into memory (as the step does, GetObject), notes its RSS, runs
``parse_and_validate`` + the split writing, and reports the high-water RSS (``VmHWM``) above that
baseline and in total. "before" is ``layers/core/sagepipe_core/dataset.py`` at commit ``--before``
(default ``BEFORE``; read with ``git show``; skipped when git or that commit is not available); "after" is
the working tree's. Both must write the same rows: the same number per split and, all splits together,
the same lines. Since issue 11 the split key is each row's canonical identity, not its text, so which
row goes to which split differs from commits before ``IDENTITY_KEYS`` (byte-identical split files are
required only against a commit from there on).

    .venv/bin/python bench/validate_memory.py [--sizes 4,16,64] [--before-sizes 4,16] [--before REV]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEFORE = "f01650e"  # the last commit with the list-of-rows parser
IDENTITY_KEYS = "78cb205"  # splits keyed on each row's canonical identity (issue 11 item 1)
MIB = 1 << 20


def make_csv(path: Path, mib: int, columns: int = 51) -> None:
    """``mib`` MiB of 2-digit integers in ``columns`` columns; the last is a binary label."""
    rng = random.Random(42)
    header = ",".join(f"f{i}" for i in range(columns - 1)) + ",label\n"
    with path.open("w", encoding="utf-8") as fh:
        fh.write(header)
        written = len(header)
        while written < mib * MIB:
            line = ",".join(str(rng.randint(10, 99)) for _ in range(columns - 1)) + f",{rng.choice(('10', '11'))}\n"
            fh.write(line)
            written += len(line)


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def child(which: str, csv_path: str, rev: str = BEFORE) -> None:
    """Run one measurement (in a fresh process) and print it as JSON."""
    from sagepipe_core.config import parse_config

    if which == "before":
        source = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{rev}:layers/core/sagepipe_core/dataset.py"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        spec = importlib.util.spec_from_loader("sagepipe_core.dataset_before", loader=None)
        assert spec is not None
        mod = importlib.util.module_from_spec(spec)
        mod.__package__ = "sagepipe_core"
        sys.modules[spec.name] = mod  # dataclasses look their module up
        exec(compile(source, "dataset_before.py", "exec"), mod.__dict__)  # noqa: S102 - the repo's own old code
    else:
        from sagepipe_core import dataset as mod
    config = parse_config(None)
    body = Path(csv_path).read_bytes()
    base = _rss_kib("VmRSS")
    start = time.perf_counter()
    digests, counts, lines = {}, {}, hashlib.sha256()
    files: dict[str, bytes] = {}
    data = mod.parse_and_validate(body, config)
    if hasattr(mod, "write_splits"):
        for name, (fh, _) in mod.write_splits(data, config).items():
            with fh:
                files[name] = fh.read()
    else:
        files = {name: mod.to_csv(data.header, rows) for name, rows in mod.split(data, config).items()}
    seconds = time.perf_counter() - start
    peak = _rss_kib("VmHWM")
    for name, raw in files.items():
        digests[name] = hashlib.sha256(raw).hexdigest()
        counts[name] = raw.count(b"\n") - 1
    for line in sorted(b"".join(raw.split(b"\n", 1)[1] for raw in files.values()).splitlines()):
        lines.update(line + b"\n")
    doc = {"base_mib": base / 1024, "peak_mib": peak / 1024, "seconds": seconds, "digests": digests}
    print(json.dumps({**doc, "counts": counts, "rows_digest": lines.hexdigest()}))


def measure(which: str, path: Path, rev: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", which, str(path), rev], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="4,16,64", help="input sizes in MiB for 'after'")
    parser.add_argument("--before-sizes", default="4,16,64", help="input sizes in MiB for 'before' ('' = none)")
    parser.add_argument("--before", default=BEFORE, help=f"the 'before' commit (default {BEFORE})")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    sizes = sorted({int(s) for s in args.sizes.split(",") if s} | {int(s) for s in args.before_sizes.split(",") if s})
    before = {int(s) for s in args.before_sizes.split(",") if s}
    have_git = subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{args.before}^{{commit}}"]).returncode == 0
    print(f"{'MiB':>5} {'impl':>7} {'peak MiB':>9} {'above body':>11} {'peak/input':>11} {'s':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for mib in sizes:
            path = Path(tmp) / f"{mib}.csv"
            make_csv(path, mib)
            results = {}
            for which in ("before", "after"):
                if which == "before" and (mib not in before or not have_git):
                    continue
                if which == "after" and str(mib) not in args.sizes.split(","):
                    continue
                r = results[which] = measure(which, path, args.before)
                above = r["peak_mib"] - r["base_mib"]
                print(
                    f"{mib:>5} {which:>7} {r['peak_mib']:>9.0f} {above:>11.0f} "
                    f"{r['peak_mib'] / mib:>11.2f} {r['seconds']:>6.1f}",
                    flush=True,
                )
            if len(results) == 2:
                b, a = results["before"], results["after"]
                same_rows = b["counts"] == a["counts"] and b["rows_digest"] == a["rows_digest"]
                identical = b["digests"] == a["digests"]
                print(f"      same rows per split count and in all: {same_rows}; split files identical: {identical}")
                keyed_alike = (
                    subprocess.run(
                        ["git", "-C", str(REPO), "merge-base", "--is-ancestor", IDENTITY_KEYS, args.before]
                    ).returncode
                    == 0
                )
                if not same_rows or (keyed_alike and not identical):
                    raise SystemExit("the split files differ")


if __name__ == "__main__":
    main()
