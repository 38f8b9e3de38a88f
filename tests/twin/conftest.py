"""Twin fixtures: one twin per test module (moto server, workers and model servers on 127.0.0.1)."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from sagepipe.client import Target

ROOT = Path(__file__).resolve().parents[2]
CHURN = ROOT / "examples" / "data" / "churn.csv"
CHURN_CONFIG = ROOT / "examples" / "data" / "churn.sagepipe.json"
T = TypeVar("T")


@pytest.fixture(scope="session", autouse=True)
def iam_recording() -> Iterator[None]:
    """Record every authorisation the twin's IAM makes in this session (for test_iam_mutation.py)."""
    from sagepipe.twin import iam

    iam.RECORDER.active = True
    yield
    iam.RECORDER.active = False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """test_iam_mutation.py evaluates the whole session's recorded requests: it runs last."""
    last = [item for item in items if item.path.name == "test_iam_mutation.py"]
    items[:] = [item for item in items if item not in last] + last


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@contextlib.contextmanager
def running_twin(
    tmp_path_factory: pytest.TempPathFactory, *, training_capacity: int | None = None, **parameter_overrides: str
) -> Iterator[Any]:
    """Start a twin (template parameters overridden as given, ``training_capacity`` training jobs at once or
    the default); on exit stop it and assert that no process it started is still alive."""
    from sagepipe.twin.server import Twin

    t = Twin(
        ROOT,
        tmp_path_factory.mktemp("twin"),
        echo=False,
        say=lambda m: None,
        parameter_overrides=parameter_overrides,
        training_capacity=training_capacity,
    )
    t.start()
    try:
        yield t
    finally:
        pids = t.pids()
        t.stop()
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        alive = [p for p in pids if _alive(p)]
        assert not alive, f"twin left processes running: {alive}"


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A running twin for the module (see :func:`running_twin`)."""
    with running_twin(tmp_path_factory) as t:
        yield t


@pytest.fixture(scope="module")
def target(twin: Any) -> Target:
    """The CLI's view of the twin (through twin.json)."""
    return Target.twin(Path(twin.info.state_dir))


_KEY_OF: dict[str, str] = {}  # executionArn -> data set key (execution input never changes)


def executions_for(target: Target, key: str) -> list[dict[str, Any]]:
    """ListExecutions entries whose input's data set is ``key`` (inputs are read once per execution)."""
    sfn = target.client("stepfunctions")
    out = []
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=target.state_machine_arn):
        for ex in page["executions"]:
            arn = ex["executionArn"]
            if arn not in _KEY_OF:
                _KEY_OF[arn] = json.loads(sfn.describe_execution(executionArn=arn)["input"])["dataset"]["key"]
            if _KEY_OF[arn] == key:
                out.append(ex)
    return out


def _twin_activity() -> Any:
    """A marker that changes whenever the in-process twin logs a line (training output, worker logs, events)."""
    from sagepipe.twin import patches

    runtime = patches._TWIN
    logs = getattr(runtime, "logs", None)
    return (len(logs), logs[-1]) if logs else None


def wait_for_key(target: Target, key: str, timeout_s: float = 240) -> list[dict[str, Any]]:
    """Wait until every execution for data set ``key`` has ended; return their DescribeExecution results.

    Waits on the work, not on a fixed time (issue 10, "slow is not different"): ``timeout_s`` is how long
    the runs may go *without any progress* - no change in their statuses and no line from the twin
    (training output, Lambda and model-server logs) - so a loaded machine makes a run slower, never a
    failure; the pipeline's own limits (training MaxRuntimeInSeconds, approval and deploy timeouts, the
    execution's TimeoutSeconds) end a run that really hangs (and ``8 * timeout_s`` bounds the wait). Polls gently (0.5 s): the twin runs in the test
    process, so polling competes with the pipeline."""
    sfn = target.client("stepfunctions")
    deadline, hard = time.monotonic() + timeout_s, time.monotonic() + 8 * timeout_s  # hard: CI never hangs
    seen: Any = None
    while True:
        found = executions_for(target, key)
        if found and all(ex["status"] != "RUNNING" for ex in found):
            return [sfn.describe_execution(executionArn=ex["executionArn"]) for ex in found]
        marker = ([ex["status"] for ex in found], _twin_activity())
        if marker != seen:
            seen, deadline = marker, time.monotonic() + timeout_s
        assert time.monotonic() < min(deadline, hard), (
            f"runs for {key} made no progress for {timeout_s:.0f} s: {[ex['status'] for ex in found]}"
        )
        time.sleep(0.5)


def wait_for(probe: Callable[[], T | None], what: str, timeout_s: float = 60, poll_s: float = 0.2) -> T:
    """Call ``probe`` until it returns something truthy, and return that.

    Like :func:`wait_for_key`, waits on the work: ``timeout_s`` is how long the twin may go without any
    progress (no line logged by training, Lambda workers, model servers, deliveries) before the wait
    fails with ``what``; ``8 * timeout_s`` bounds it in any case."""
    deadline, hard = time.monotonic() + timeout_s, time.monotonic() + 8 * timeout_s
    seen: Any = _twin_activity()
    while True:
        got = probe()
        if got:
            return got
        marker = _twin_activity()
        if marker != seen:
            seen, deadline = marker, time.monotonic() + timeout_s
        assert time.monotonic() < min(deadline, hard), f"{what}: nothing after {timeout_s:.0f} s without progress"
        time.sleep(poll_s)


def endpoint(target: Target, model: str) -> dict[str, Any]:
    """DescribeEndpoint for the model's endpoint."""
    return target.client("sagemaker").describe_endpoint(EndpointName=f"sagepipe-{model}")


def churn_rows(start: int = 0, stop: int | None = None) -> tuple[str, list[str]]:
    """The churn CSV's header and data rows ``[start:stop]``."""
    header, *rows = CHURN.read_text().splitlines()
    return header, rows[start:stop]


def write_csv(directory: Path, name: str, header: str, rows: list[str]) -> Path:
    """Write ``header`` + ``rows`` to ``directory/name``."""
    path = directory / name
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def churn_config(directory: Path, **overrides: Any) -> Path:
    """The demo config with ``overrides``, written to a file."""
    path = directory / f"config-{abs(hash(json.dumps(overrides, sort_keys=True)))}.json"
    path.write_text(json.dumps(json.loads(CHURN_CONFIG.read_text()) | overrides))
    return path


OUTCOMES: list[tuple[str, str]] = []


def record(scenario: str, outcome: str) -> None:
    """Note a scenario's outcome for the table printed at the end of the run."""
    OUTCOMES.append((scenario, outcome))
