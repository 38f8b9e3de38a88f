"""`sagepipe runs` / `events` as people read them: whole values at 80 columns and when piped."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from sagepipe.cli import _runs_view

pytestmark = pytest.mark.unit

ROW = {
    "execution_name": "credit-card-default-2026-11-30-3f9a0c11de",
    "status": "SUCCEEDED",
    "current_state": None,
    "metrics": {"auc": 0.912345, "accuracy": 0.88, "f1": 0.71, "logloss": 0.31},
    "decision": "reject",
    "reason": "challenger 0.9123 is worse than champion 0.9300 by 0.0177 > tolerance 0.01",
    "endpoint_config": None,
    "report": "s3://sagepipe-artifactsbucket-0123abcd/models/credit-card-default/credit-card-default-3f9a0c11de/report.html",
}


def _render(width: int) -> str:
    buf = io.StringIO()
    Console(file=buf, width=width, force_terminal=False).print(_runs_view([ROW], width))
    return buf.getvalue()


@pytest.mark.parametrize("width", [60, 80, 120])
def test_narrow_widths_show_every_value_whole(width: int) -> None:
    text = _render(width)
    assert "…" not in text and max(map(len, text.splitlines())) <= width
    flat = "".join(line.strip() for line in text.splitlines())
    for value in (ROW["execution_name"], "auc=0.9123", ROW["report"], ROW["reason"].replace(" ", "")):
        assert value.replace(" ", "") in flat.replace(" ", ""), value


def test_wide_terminal_gets_one_table_row_per_run() -> None:
    text = _render(400)
    [line] = [ln for ln in text.splitlines() if ROW["execution_name"] in ln]
    assert ROW["reason"] in line and ROW["report"] in line
