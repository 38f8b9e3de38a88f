"""The twin's training capacity (sagepipe/twin/sagemaker/capacity.py; issue 16 item 1): slot semantics (first
come first served, cancel, bounded release), the capacity's configuration (argument, environment variable,
default, errors), the CPU limits given to each process, and TrainingManager's use of the slots with the
training run replaced by a fake (no subprocess, no S3)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from sagepipe import cli
from sagepipe.twin.sagemaker import capacity, training
from sagepipe.twin.sagemaker.capacity import (
    CAPACITY_ENV,
    LAUNCHING_MESSAGE,
    THREAD_VARIABLES,
    InvalidCapacityError,
    TrainingCapacity,
)

pytestmark = pytest.mark.unit


def _wait(probe: Any, what: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not probe():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


# ------------------------------------------------------------------------------------------- slots
def test_slots_bound_the_holders_and_a_release_lets_the_next_in() -> None:
    cap = TrainingCapacity(2, cpus=4)
    assert cap.acquire() and cap.acquire() and cap.in_use == 2
    got = threading.Event()
    waiter = threading.Thread(target=lambda: cap.acquire() and got.set())
    waiter.start()
    _wait(lambda: cap.waiting == 1, "the third caller never queued")
    assert not got.wait(0.3), "a third job got a slot while two were held"
    cap.release()
    assert got.wait(5), "a freed slot was not given to the waiter"
    waiter.join(5)
    assert cap.in_use == 2 and cap.waiting == 0


def test_waiters_are_served_in_the_order_they_asked() -> None:
    cap = TrainingCapacity(1, cpus=2)
    assert cap.acquire()
    order: list[int] = []

    def job(i: int) -> None:
        assert cap.acquire(poll_s=0.01)
        order.append(i)
        cap.release()

    threads = []
    for i in range(5):
        t = threading.Thread(target=job, args=(i,))
        t.start()
        threads.append(t)
        _wait(lambda n=i + 1: cap.waiting == n, f"waiter {i} never queued")
    cap.release()
    for t in threads:
        t.join(5)
    assert order == [0, 1, 2, 3, 4]
    assert cap.in_use == 0


def test_a_cancelled_waiter_leaves_without_a_slot() -> None:
    cap = TrainingCapacity(1, cpus=2)
    assert cap.acquire()
    cancel, result = threading.Event(), []
    waiter = threading.Thread(target=lambda: result.append(cap.acquire(cancel, poll_s=30)))
    waiter.start()
    _wait(lambda: cap.waiting == 1, "the waiter never queued")
    cancel.set()
    cap.wake()  # without it the waiter would only notice after poll_s
    waiter.join(5)
    assert result == [False] and cap.waiting == 0 and cap.in_use == 1
    cap.release()
    assert cap.acquire(threading.Event())  # the slot it did not take is still there


def test_more_releases_than_acquires_is_an_error() -> None:
    cap = TrainingCapacity(1, cpus=2)
    with pytest.raises(ValueError):
        cap.release()
    assert cap.acquire()
    cap.release()
    with pytest.raises(ValueError):
        cap.release()


@pytest.mark.parametrize(
    ("slots", "cpus", "instance", "want"),
    [
        (1, 2, None, 2),
        (2, 2, None, 1),
        (6, 2, None, 1),  # never 0
        (1, 16, "ml.m5.large", 2),  # the instance has 2 vCPUs
        (1, 16, "ml.m5.2xlarge", 8),
        (1, 4, "ml.m5.4xlarge", 4),  # at most the machine's share
        (1, 8, "ml.p3.weird", 8),  # unknown size: the share only
    ],
)
def test_cpus_per_job(slots: int, cpus: int, instance: str | None, want: int) -> None:
    assert TrainingCapacity(slots, cpus=cpus).cpus_per_job(instance) == want


# ----------------------------------------------------------------------------------- configuration
def test_default_is_half_the_cpus_at_least_one() -> None:
    assert [capacity.default_capacity(n) for n in (1, 2, 3, 8)] == [1, 1, 1, 4]


def test_the_argument_wins_over_the_variable_which_wins_over_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capacity, "machine_cpus", lambda: 8)
    assert capacity.resolve_capacity(None, {}) == 4
    assert capacity.resolve_capacity(None, {CAPACITY_ENV: " 3 "}) == 3
    assert capacity.resolve_capacity(None, {CAPACITY_ENV: ""}) == 4  # blank: unset
    assert capacity.resolve_capacity(2, {CAPACITY_ENV: "3"}) == 2


@pytest.mark.parametrize("bad", ["0", "-1", "two", "1.5", "1e3", "2 jobs"])
def test_an_invalid_variable_is_a_clear_error(bad: str) -> None:
    with pytest.raises(InvalidCapacityError) as info:
        capacity.resolve_capacity(None, {CAPACITY_ENV: bad})
    message = str(info.value)
    assert CAPACITY_ENV in message and repr(bad).strip("'") in message
    assert "positive integer" in message or "at least 1" in message


@pytest.mark.parametrize("bad", [0, -2, True, 1.0, None])
def test_an_invalid_argument_is_a_clear_error(bad: Any) -> None:
    with pytest.raises(InvalidCapacityError):
        capacity.parse_capacity(bad, "training capacity")
    if bad is not None:
        with pytest.raises(InvalidCapacityError):
            TrainingCapacity(bad)


def test_the_twin_refuses_an_invalid_variable_before_starting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from sagepipe.twin.server import Twin

    monkeypatch.setenv(CAPACITY_ENV, "lots")
    with pytest.raises(InvalidCapacityError, match=CAPACITY_ENV):
        Twin(tmp_path, tmp_path / "state", echo=False)
    monkeypatch.setenv(CAPACITY_ENV, "3")
    assert Twin(tmp_path, tmp_path / "state", echo=False).training_capacity == 3
    assert Twin(tmp_path, tmp_path / "state", echo=False, training_capacity=1).training_capacity == 1


def test_twin_up_takes_training_capacity(capsys: pytest.CaptureFixture[str]) -> None:
    args = cli.build_parser().parse_args(["twin", "up", "--training-capacity", "2"])
    assert args.training_capacity == 2
    assert cli.build_parser().parse_args(["twin", "up"]).training_capacity is None
    for bad in ("0", "x"):
        with pytest.raises(SystemExit) as info:
            cli.build_parser().parse_args(["twin", "up", "--training-capacity", bad])
        assert info.value.code == 2
        assert "--training-capacity" in capsys.readouterr().err


def test_twin_up_reports_an_invalid_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(CAPACITY_ENV, "0")
    assert cli.main(["twin", "up", "--state-dir", "/nonexistent/never-created"]) == 2
    assert f"{CAPACITY_ENV} must be at least 1" in capsys.readouterr().err.replace("\n", "")


# ------------------------------------------------------------------------------------------ CPUs
def test_cpu_environment_sets_every_thread_pool_unless_the_job_does() -> None:
    env = capacity.cpu_environment(2)
    assert env == dict.fromkeys(("SM_NUM_CPUS", *THREAD_VARIABLES), "2")
    assert "OMP_NUM_THREADS" in THREAD_VARIABLES and "LOKY_MAX_CPU_COUNT" in THREAD_VARIABLES
    mine = capacity.cpu_environment(2, {"OMP_NUM_THREADS": "8"})
    assert "OMP_NUM_THREADS" not in mine and mine["MKL_NUM_THREADS"] == "2"
    with pytest.raises(ValueError):
        capacity.cpu_environment(0)


@pytest.mark.parametrize(
    ("instance", "vcpus"),
    [
        ("ml.m5.large", 2),
        ("ml.t2.medium", 2),
        ("ml.c5.xlarge", 4),
        ("ml.c5.9xlarge", 36),
        ("ml.m5.24xlarge", 96),
        ("local", None),
        (None, None),
    ],
)
def test_instance_vcpus(instance: str | None, vcpus: int | None) -> None:
    assert capacity.instance_vcpus(instance) == vcpus


def test_a_model_server_gets_a_quarter_of_the_machine_at_most_its_instance() -> None:
    assert capacity.hosting_cpus("ml.m5.large", cpus=2) == 1
    assert capacity.hosting_cpus("ml.m5.large", cpus=32) == 2
    assert capacity.hosting_cpus("ml.m5.4xlarge", cpus=32) == 8
    assert capacity.hosting_cpus(None, cpus=16) == 4


def test_the_training_script_environment_carries_the_limits() -> None:
    spec = SimpleNamespace(name="j", program="train.py", submit_dir="s3://b/code.tar.gz", environment={})
    layout = training._Layout(Path("/tmp/j"))
    env = training._training_env(spec, layout, {}, {}, {}, {}, [], 3)  # type: ignore[arg-type]
    assert all(env[k] == "3" for k in ("SM_NUM_CPUS", *THREAD_VARIABLES))
    assert '"num_cpus": 3' in env["SM_TRAINING_ENV"]
    spec.environment = {"OMP_NUM_THREADS": "1", "SM_NUM_CPUS": "2"}
    env = training._training_env(spec, layout, {}, {}, {}, {}, [], 3)  # type: ignore[arg-type]
    assert env["OMP_NUM_THREADS"] == "1" and env["SM_NUM_CPUS"] == "2" and env["MKL_NUM_THREADS"] == "3"


# ------------------------------------------------------------------------- TrainingManager + slots
class _FakeRuns:
    """Stands in for run_training_job: each run blocks until released (or stopped), then ends as told."""

    def __init__(self) -> None:
        self.running: set[str] = set()
        self.release: dict[str, threading.Event] = {}
        self.cpus: dict[str, int | None] = {}
        self.outcome: dict[str, str] = {}
        self.lines: list[tuple[str, str]] = []  # the twin's log

    def __call__(self, request: dict[str, Any], s3: Any, root: Path, on_status: Any, on_log: Any, **kw: Any) -> Any:
        name = request["TrainingJobName"]
        self.cpus[name] = kw.get("cpus")
        self.running.add(name)
        on_status("Starting", "Preparing the instances for training")
        on_status("Training", "Training image download completed. Training in progress.")
        gate = self.release.setdefault(name, threading.Event())
        while not gate.wait(0.02) and not kw["stop_event"].is_set():
            pass
        self.running.discard(name)
        if self.outcome.get(name) == "crash":
            raise RuntimeError("twin bug")
        status = "Stopped" if kw["stop_event"].is_set() else self.outcome.get(name, "Completed")
        on_status(status, status)
        return training.TrainingResult(
            status=status,
            failure_reason="AlgorithmError: boom" if status == "Failed" else None,
            final_metrics=[],
            model_artifacts=None,
            secondary_status_transitions=[],
            log_lines=[],
            training_seconds=0.1,
        )


def _job(name: str) -> Any:
    return SimpleNamespace(
        training_job_name=name,
        training_job_status="InProgress",
        secondary_status="Starting",
        algorithm_specification={},
        training_start_time="moto's creation time",
        last_modified_time=None,
    )


def _request(name: str) -> dict[str, Any]:
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {},
        "ResourceConfig": {"InstanceType": "ml.m5.large"},
    }


@pytest.fixture
def manager(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[training.TrainingManager, _FakeRuns]:
    runs = _FakeRuns()
    monkeypatch.setattr(training, "run_training_job", runs)
    mgr = training.TrainingManager(
        tmp_path, lambda service, role: None, lambda p, line: runs.lines.append((p, line)), TrainingCapacity(1, cpus=2)
    )
    yield mgr, runs
    for gate in runs.release.values():
        gate.set()
    mgr.shutdown()


def test_a_job_beyond_the_capacity_waits_as_launching_then_runs(manager: Any) -> None:
    mgr, runs = manager
    a, b = _job("a"), _job("b")
    mgr.start(a, _request("a"))
    _wait(lambda: "a" in runs.running, "a never ran")
    mgr.start(b, _request("b"))
    time.sleep(0.2)
    assert "b" not in runs.running
    assert (b.training_job_status, b.secondary_status) == ("InProgress", "Starting")
    assert [(t["Status"], t["StatusMessage"]) for t in b.secondary_status_transitions] == [
        ("Starting", LAUNCHING_MESSAGE)
    ]
    assert b.training_start_time is None  # not on an instance yet
    assert any(p == "training:b" and "waiting for a training slot" in line for p, line in runs.lines)
    runs.release["a"].set()
    _wait(lambda: "b" in runs.running, "b never started after a ended")
    assert a.training_job_status == "Completed"
    assert b.training_start_time is not None
    # one Starting transition, its message moved on; then Training
    assert [(t["Status"], t["StatusMessage"]) for t in b.secondary_status_transitions] == [
        ("Starting", "Preparing the instances for training"),
        ("Training", "Training image download completed. Training in progress."),
    ]
    assert runs.cpus == {"a": 2, "b": 2}  # 2 CPUs / 1 slot, ml.m5.large has 2
    runs.release["b"].set()
    _wait(lambda: b.training_job_status == "Completed", "b never completed")
    assert mgr.capacity.in_use == 0


def test_stopping_a_waiting_job_stops_it_without_running_it(manager: Any) -> None:
    mgr, runs = manager
    a, b = _job("a"), _job("b")
    mgr.start(a, _request("a"))
    _wait(lambda: "a" in runs.running, "a never ran")
    mgr.start(b, _request("b"))
    _wait(lambda: mgr.capacity.waiting == 1, "b never queued")
    b.training_job_status = "Stopping"  # what the StopTrainingJob handler does first
    mgr.stop("b")
    _wait(lambda: b.training_job_status == "Stopped", "the waiting job was not stopped")
    assert "b" not in runs.cpus, "the stopped job ran"
    assert [t["Status"] for t in b.secondary_status_transitions] == ["Starting", "Stopping", "Stopped"]
    assert all("EndTime" in t for t in b.secondary_status_transitions)
    assert b.training_start_time is None and b.training_end_time is not None
    assert mgr.results["b"].status == "Stopped"
    assert mgr.capacity.in_use == 1  # a still holds its slot; b took none
    runs.release["a"].set()
    _wait(lambda: mgr.capacity.in_use == 0, "a's slot was not given back")


@pytest.mark.parametrize("outcome", ["Failed", "Stopped", "crash"])
def test_the_slot_is_given_back_on_every_end(manager: Any, outcome: str) -> None:
    mgr, runs = manager
    first, second = _job("first"), _job("second")
    runs.outcome["first"] = outcome
    mgr.start(first, _request("first"))
    _wait(lambda: "first" in runs.running, "first never ran")
    mgr.start(second, _request("second"))
    if outcome == "Stopped":
        mgr.stop("first")
    else:
        runs.release["first"].set()
    _wait(lambda: "second" in runs.running, f"the slot was not freed after {outcome}")
    want = {"Failed": "Failed", "Stopped": "Stopped", "crash": "Failed"}[outcome]
    assert first.training_job_status == want
    if outcome == "crash":
        assert first.failure_reason.startswith("InternalServerError: twin training emulation crashed")
        assert first.secondary_status == "Failed"
    runs.release["second"].set()
    _wait(lambda: mgr.capacity.in_use == 0, "second's slot was not given back")


def test_shutdown_ends_waiting_jobs(manager: Any) -> None:
    mgr, runs = manager
    a, b = _job("a"), _job("b")
    mgr.start(a, _request("a"))
    _wait(lambda: "a" in runs.running, "a never ran")
    mgr.start(b, _request("b"))
    _wait(lambda: mgr.capacity.waiting == 1, "b never queued")
    mgr.shutdown()
    assert (a.training_job_status, b.training_job_status) == ("Stopped", "Stopped")
    assert mgr.capacity.in_use == 0 and mgr.capacity.waiting == 0
