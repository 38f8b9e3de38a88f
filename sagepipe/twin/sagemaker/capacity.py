"""The twin's local training capacity: how many training jobs run at once, and how many CPUs each training
process and each model server may use.

On AWS each training job gets its own instance(s); one machine has not as many. The twin therefore runs at
most ``slots`` training jobs (tuning jobs' training jobs included: they are CreateTrainingJob calls) at a
time (:class:`TrainingCapacity`); a job beyond that waits, as SageMaker shows a job whose instances are being
provisioned: DescribeTrainingJob ``TrainingJobStatus`` ``InProgress``, ``SecondaryStatus`` ``Starting``, the
``SecondaryStatusTransitions`` message ``Launching requested ML instances`` (SageMaker API Reference,
``DescribeTrainingJob`` SecondaryStatus and ``SecondaryStatusTransition`` StatusMessage, which list
"Starting - Launching requested ML instances." among the Starting messages).

The number of slots is, in order of precedence: ``sagepipe twin up --training-capacity N`` (``Twin(...,
training_capacity=N)``), the environment variable ``SAGEPIPE_TWIN_TRAINING_CAPACITY``, else
``max(1, os.cpu_count() // 2)`` (:func:`resolve_capacity`): half the machine trains, the other half keeps the
API, the Lambda workers, moto and the model servers answering.

Each process is told how many CPUs its instance has (``SM_NUM_CPUS``, as the sagemaker-training-toolkit
sets it, https://github.com/aws/sagemaker-training-toolkit/blob/master/ENVIRONMENT_VARIABLES.md) - the
instance type's vCPUs (:func:`instance_vcpus`), but never more than its share of this machine - and the
thread pools of the numeric libraries are sized to it (:data:`THREAD_VARIABLES`, :func:`cpu_environment`),
so ``slots`` jobs with OpenMP/BLAS threads do not oversubscribe the cores.
"""

from __future__ import annotations

import os
import re
import threading
from collections import deque
from collections.abc import Mapping

#: The environment variable that sets the number of slots (a positive integer).
CAPACITY_ENV = "SAGEPIPE_TWIN_TRAINING_CAPACITY"
#: StatusMessage of the ``Starting`` secondary status while a job waits for a slot (AWS: while its
#: instances are provisioned).
LAUNCHING_MESSAGE = "Launching requested ML instances"
#: The thread-pool variables set to a process's CPU count (OpenMP - scikit-learn's HistGradientBoosting,
#: XGBoost, LightGBM -, OpenBLAS, MKL, Apple Accelerate, numexpr, joblib/loky), beside ``SM_NUM_CPUS``.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "LOKY_MAX_CPU_COUNT",
)
#: Share of the machine's CPUs one model server may use: ``max(1, cpu_count // HOSTING_CPU_DIVISOR)``
#: (1 on a 2- or 4-core machine). The twin's choice: a model server scores small batches, for which one
#: thread is as fast as several, and several endpoints share the machine with training.
HOSTING_CPU_DIVISOR = 4

_SIZE = re.compile(r"^ml\.[a-z0-9-]+\.(?:(?P<n>\d+)?xlarge|(?P<word>medium|large))$")


class InvalidCapacityError(ValueError):
    """A training capacity that is not a positive integer (the flag, the environment variable or the
    argument); the message names where it came from and what is accepted."""


def machine_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, else ``os.cpu_count()``), >= 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def default_capacity(cpus: int | None = None) -> int:
    """``max(1, cpus // 2)``; ``cpus`` defaults to :func:`machine_cpus`."""
    return max(1, (machine_cpus() if cpus is None else cpus) // 2)


def parse_capacity(value: object, source: str) -> int:
    """A capacity from ``value`` (an int or a decimal string, surrounding blanks allowed).

    Args:
        value: what was given.
        source: where it came from, for the message (e.g. ``"SAGEPIPE_TWIN_TRAINING_CAPACITY"``).
    Returns:
        the number of slots, >= 1.
    Raises:
        InvalidCapacityError: not an integer (``"two"``, ``"1.5"``, ``True``, ``""``) or below 1.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidCapacityError(f"{source} must be a positive integer (training jobs at once), got {value!r}")
    text = value.strip() if isinstance(value, str) else str(value)
    if not re.fullmatch(r"[+-]?\d+", text):
        raise InvalidCapacityError(f"{source} must be a positive integer (training jobs at once), got {value!r}")
    slots = int(text)
    if slots < 1:
        raise InvalidCapacityError(f"{source} must be at least 1 (training jobs at once), got {slots}")
    return slots


def resolve_capacity(explicit: int | None = None, environ: Mapping[str, str] | None = None) -> int:
    """The number of slots: ``explicit`` if given, else ``$SAGEPIPE_TWIN_TRAINING_CAPACITY`` if set and not
    blank, else :func:`default_capacity`.

    Raises:
        InvalidCapacityError: ``explicit`` or the variable is not a positive integer.
    """
    if explicit is not None:
        return parse_capacity(explicit, "training capacity (--training-capacity)")
    raw = (os.environ if environ is None else environ).get(CAPACITY_ENV)
    if raw is not None and raw.strip():
        return parse_capacity(raw, CAPACITY_ENV)
    return default_capacity()


def instance_vcpus(instance_type: str | None) -> int | None:
    """vCPUs of a SageMaker ML instance type from its size, as the general-purpose and compute families
    (``ml.m5``, ``ml.c5``, ``ml.t3``, ``ml.r5`` ...) have them: ``medium`` and ``large`` 2, ``xlarge`` 4,
    ``<N>xlarge`` 4·N (``ml.m5.4xlarge`` 16, ``ml.c5.9xlarge`` 36); None for anything else (no cap but the
    machine's share). Source: the "Amazon SageMaker AI pricing" instance tables."""
    m = _SIZE.match(instance_type or "")
    if not m:
        return None
    if m["word"]:
        return 2
    return 4 * int(m["n"] or 1)


def cpu_environment(cpus: int, environment: Mapping[str, str] | None = None) -> dict[str, str]:
    """``SM_NUM_CPUS`` and each of :data:`THREAD_VARIABLES` = ``cpus``, except those that ``environment``
    (the job's ``Environment`` or the container's) sets itself: the caller puts this dict under its own.

    Raises:
        ValueError: ``cpus`` < 1.
    """
    if cpus < 1:
        raise ValueError(f"cpus must be >= 1, got {cpus}")
    given = environment or {}
    return {k: str(cpus) for k in ("SM_NUM_CPUS", *THREAD_VARIABLES) if k not in given}


def hosting_cpus(instance_type: str | None, cpus: int | None = None) -> int:
    """CPUs of one model server: ``max(1, cpus // HOSTING_CPU_DIVISOR)``, at most the instance type's vCPUs
    (``cpus`` defaults to :func:`machine_cpus`)."""
    share = max(1, (machine_cpus() if cpus is None else cpus) // HOSTING_CPU_DIVISOR)
    vcpus = instance_vcpus(instance_type)
    return min(share, vcpus) if vcpus else share


class TrainingCapacity:
    """``slots`` training slots (a :class:`threading.BoundedSemaphore`), granted first come, first served.

    A job calls :meth:`acquire` before it starts and :meth:`release` exactly once when it ends, whatever
    the end (Completed, Failed, Stopped, crashed). Waiters are served in the order they asked; one whose
    ``cancel`` event is set (StopTrainingJob, twin shutdown) leaves the queue without a slot.

    Args:
        slots: jobs at once, >= 1.
        cpus: this machine's CPUs (default :func:`machine_cpus`), shared by the slots.
    Raises:
        InvalidCapacityError: ``slots`` is not a positive integer.
    """

    def __init__(self, slots: int, cpus: int | None = None) -> None:
        self.slots = parse_capacity(slots, "training capacity")
        self.cpus = machine_cpus() if cpus is None else max(1, cpus)
        self._semaphore = threading.BoundedSemaphore(self.slots)
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()
        self._in_use = 0

    @property
    def in_use(self) -> int:
        """Slots held now."""
        with self._cond:
            return self._in_use

    @property
    def waiting(self) -> int:
        """Jobs waiting for a slot now."""
        with self._cond:
            return len(self._queue)

    def cpus_per_job(self, instance_type: str | None = None) -> int:
        """CPUs one training process may use: ``max(1, cpus // slots)``, at most ``instance_type``'s vCPUs."""
        share = max(1, self.cpus // self.slots)
        vcpus = instance_vcpus(instance_type)
        return min(share, vcpus) if vcpus else share

    def acquire(self, cancel: threading.Event | None = None, poll_s: float = 0.5) -> bool:
        """Wait for a slot, in turn, until one frees or ``cancel`` is set.

        Args:
            cancel: when set while waiting, give up (checked every ``poll_s`` and on :meth:`wake`).
            poll_s: how often ``cancel`` is checked without a :meth:`wake`.
        Returns:
            True with a slot held (call :meth:`release` once), False when cancelled (no slot held).
        """
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            try:
                while True:
                    if cancel is not None and cancel.is_set():
                        return False
                    if self._queue[0] is ticket and self._semaphore.acquire(blocking=False):
                        self._in_use += 1
                        return True
                    self._cond.wait(poll_s)
            finally:
                self._queue.remove(ticket)
                self._cond.notify_all()  # the next in line may now take a free slot

    def release(self) -> None:
        """Give a slot back.

        Raises:
            ValueError: more releases than acquires (the BoundedSemaphore's check).
        """
        with self._cond:
            self._semaphore.release()
            self._in_use -= 1
            self._cond.notify_all()

    def wake(self) -> None:
        """Make waiters re-check their ``cancel`` events now (after a StopTrainingJob)."""
        with self._cond:
            self._cond.notify_all()
