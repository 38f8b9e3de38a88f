"""notebooks/quickstart.ipynb executed top to bottom (nbclient) against the twin, as a user would run it.

Runs in the notebook venv (``make notebook``: ``.venv-nb``, with the sagemaker SDK and ipykernel); the dev
venv has neither, so there this module is skipped, not passed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("sagemaker.core")

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "quickstart.ipynb"


@pytest.mark.timeout(600)
def test_quickstart_notebook_runs_top_to_bottom_against_the_twin() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert 'TARGET = "twin"' in nb.cells[1].source  # the default the CI run exercises
    started = time.monotonic()
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()  # raises CellExecutionError with the cell and traceback on the first failure
    elapsed = time.monotonic() - started
    print(f"\nnotebooks/quickstart.ipynb executed in {elapsed:.1f} s")
    text = "\n".join(
        out.get("text", "") + json.dumps(out.get("data", {}))
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
    )
    assert "started a twin" in text and "stopped the twin this notebook started" in text
    assert "gate: deploy" in text and "rejected (approval)" in text
    assert 'aria-label=\\"ROC\\"' in text  # the report's charts are shown inline
    assert not (REPO / ".twin" / "twin.json").exists(), "the notebook left its twin running"
    assert elapsed < 180, f"the notebook took {elapsed:.0f} s (budget: 3 minutes)"
