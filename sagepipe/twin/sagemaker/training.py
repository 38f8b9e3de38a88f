"""The twin's SageMaker training: one training container run emulated locally (script mode,
:func:`run_training_job`), and :class:`TrainingManager`, which runs each CreateTrainingJob through it in a
background thread and keeps moto's job record (status, secondary statuses, FailureReason,
FinalMetricDataList, ModelArtifacts) in step with it, as DescribeTrainingJob reports them on AWS.

Follows these AWS contracts:

* CreateTrainingJob / DescribeTrainingJob request and response shapes
  (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateTrainingJob.html,
  API_DescribeTrainingJob.html, API_SecondaryStatusTransition.html);
* the training container filesystem layout ``/opt/ml/...``
  (https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo-running-container.html)
  and the ``SM_*`` environment of the sagemaker-training-toolkit
  (https://github.com/aws/sagemaker-training-toolkit/blob/master/ENVIRONMENT_VARIABLES.md);
* failure reporting through ``/opt/ml/output/failure``
  (https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo-output.html);
* metric extraction with ``AlgorithmSpecification.MetricDefinitions`` regexes
  (https://docs.aws.amazon.com/sagemaker/latest/dg/training-metrics.html).

Only script mode is emulated: the request must carry the ``sagemaker_submit_directory``
(an ``s3://`` tar.gz) and ``sagemaker_program`` hyperparameters, as the SageMaker Python
SDK sets them for framework estimators. The training image is not pulled; the script runs
with this interpreter (``sys.executable``) — the twin assumes the local venv matches the
framework image's libraries.

Differences from AWS that callers must know:

* ``MaxRuntimeInSeconds`` exceeded -> the script gets SIGTERM (then SIGKILL after a
  grace period, 120 s on AWS, ``stop_grace_seconds`` here), status ``"Stopped"`` with
  secondary status ``"MaxRuntimeExceeded"`` (as AWS reports it) and
  ``failure_reason="MaxRuntimeInSeconds exceeded"``; whatever the script left in the
  model dir is still uploaded (AWS does the same).
* S3Prefix channels: every object whose key starts with the prefix is downloaded to
  ``input/data/<channel>/<key minus prefix>`` (a key equal to the prefix keeps its
  basename). ManifestFile / AugmentedManifestFile and Pipe/FastFile modes are rejected.
* ``requirements.txt`` in the source dir is NOT installed (no network); a log line says so.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from botocore.exceptions import ClientError

from .capacity import LAUNCHING_MESSAGE, TrainingCapacity, cpu_environment, machine_cpus

CURRENT_HOST = "algo-1"
FAILURE_REASON_MAX = 1024  # DescribeTrainingJob FailureReason max length
DEFAULT_MAX_RUNTIME = 86400
STDERR_TAIL_LINES = 10

LogSink = Callable[[str, str], None]  # (prefix, line): the twin's log
StatusCallback = Callable[[str, str], None]
LogCallback = Callable[[str], None]
# inputdataconfig.json: {ChannelName: {TrainingInputMode, S3DistributionType, RecordWrapperType, ContentType?}}
InputDataConfig = dict[str | None, dict[str, Any]]


@dataclass
class TrainingResult:
    """Outcome of :func:`run_training_job` (maps onto DescribeTrainingJob fields).

    Attributes:
        status: TrainingJobStatus: ``"Completed"`` | ``"Failed"`` | ``"Stopped"``.
        failure_reason: FailureReason (<= 1024 chars) or None when Completed.
        final_metrics: FinalMetricDataList: ``[{"MetricName": str, "Value": float}]`` in
            MetricDefinitions order; last regex match in the logs wins; NaN/inf and
            unparseable values are skipped.
        model_artifacts: ModelArtifacts.S3ModelArtifacts
            (``s3://.../<TrainingJobName>/output/model.tar.gz``) or None.
        secondary_status_transitions: ``[{"Status", "StartTime" (epoch s), "EndTime"
            (epoch s or None), "StatusMessage"}]``.
        log_lines: stdout+stderr lines of the script (interleaved as read, no newline),
            preceded by a few toolkit-style lines.
        training_seconds: wall time of the script process, seconds.
        secondary_status: the last secondary status (e.g. ``"MaxRuntimeExceeded"``).
        output_data: s3 URI of ``output/output.tar.gz`` (SM_OUTPUT_DATA_DIR) or None.
    """

    status: str
    failure_reason: str | None
    final_metrics: list[dict[str, Any]]
    model_artifacts: str | None
    secondary_status_transitions: list[dict[str, Any]]
    log_lines: list[str]
    training_seconds: float
    secondary_status: str = ""
    output_data: str | None = None


class _JobError(Exception):
    """Internal: ends the job as Failed with this message as FailureReason."""


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/key`` into ``(bucket, key)``.

    Raises:
        ValueError: not an ``s3://`` URI or no bucket.
    """
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise ValueError(f"not an S3 URI: {uri!r}")
    rest = uri[5:]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValueError(f"S3 URI has no bucket: {uri!r}")
    return bucket, key


def decode_hyperparameter(value: str) -> Any:
    """Decode one HyperParameters value like the training toolkit (JSON, else raw str)."""
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


def _hp_to_str(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def parse_final_metrics(metric_definitions: list[dict[str, Any]], lines: list[str]) -> list[dict[str, Any]]:
    """Evaluate MetricDefinitions regexes over log lines.

    Args:
        metric_definitions: ``[{"Name": str, "Regex": str}]`` (first capture group is
            the value, as on SageMaker).
        lines: log lines.
    Returns:
        ``[{"MetricName": str, "Value": float}]`` in definition order, only metrics that
        matched; last parseable finite match wins.
    Raises:
        re.error: an invalid regex.
    """
    compiled = [(d["Name"], re.compile(d["Regex"])) for d in metric_definitions or []]
    values: dict[str, float] = {}
    for line in lines:
        for name, rx in compiled:
            m = rx.search(line)
            if not m:
                continue
            raw = m.group(1) if rx.groups >= 1 else m.group(0)
            try:
                v = float(raw)
            except (TypeError, ValueError):
                continue
            if v != v or v in (float("inf"), float("-inf")):
                continue
            values[name] = v
    return [{"MetricName": name, "Value": values[name]} for name, _ in compiled if name in values]


class _Transitions:
    def __init__(self, on_status: StatusCallback | None, log: Callable[[str], None]):
        self.items: list[dict[str, Any]] = []
        self.on_status = on_status
        self.log = log

    def enter(self, status: str, message: str, terminal: bool = False) -> None:
        now = time.time()
        if self.items and self.items[-1]["EndTime"] is None:
            self.items[-1]["EndTime"] = now
        self.items.append(
            {"Status": status, "StartTime": now, "EndTime": now if terminal else None, "StatusMessage": message}
        )
        if self.on_status is not None:
            try:
                self.on_status(status, message)
            except Exception as exc:  # a callback must not break the job
                self.log(f"twin: on_status callback raised {exc!r}")


def _download_channel(s3_client: Any, channel: dict[str, Any], dest: Path) -> int:
    name = channel.get("ChannelName")
    source = (channel.get("DataSource") or {}).get("S3DataSource")
    if not source:
        raise _JobError(f"ClientError: channel {name!r} has no DataSource.S3DataSource (only S3 is emulated)")
    data_type = source.get("S3DataType", "S3Prefix")
    if data_type != "S3Prefix":
        raise _JobError(f"ClientError: channel {name!r}: S3DataType {data_type} is not supported by the twin")
    mode = channel.get("InputMode")
    if mode not in (None, "File"):
        raise _JobError(f"ClientError: channel {name!r}: InputMode {mode} is not supported by the twin")
    uri = source.get("S3Uri", "")
    try:
        bucket, prefix = parse_s3_uri(uri)
    except ValueError as exc:
        raise _JobError(f"ClientError: channel {name!r}: {exc}") from exc
    not_found = (
        f'ClientError: No S3 objects found under S3 URL "{uri}" given in input data source. Please ensure that the '
        "bucket exists in the selected region, that objects exist under that S3 prefix, and that the role has "
        f'"s3:ListBucket" permissions on bucket "{bucket}".'
    )
    dest.mkdir(parents=True, exist_ok=True)
    count = 0
    try:
        paginator = s3_client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key.endswith("/"):
                    continue
                rel = key[len(prefix) :].lstrip("/") or key.rsplit("/", 1)[-1]
                target = (dest / rel).resolve()
                if dest.resolve() not in target.parents:
                    raise _JobError(f"ClientError: S3 key {key!r} escapes the channel directory")
                target.parent.mkdir(parents=True, exist_ok=True)
                s3_client.download_file(bucket, key, str(target))
                count += 1
    except _JobError:
        raise
    except Exception as exc:  # botocore ClientError (NoSuchBucket, AccessDenied...)
        code = getattr(exc, "response", {}).get("Error", {}).get("Code") if hasattr(exc, "response") else None
        if code in ("NoSuchBucket", "404", "NoSuchKey"):
            raise _JobError(not_found) from exc
        raise _JobError(f"ClientError: channel {name!r}: cannot download {uri}: {exc}") from exc
    if count == 0:
        raise _JobError(not_found)
    return count


def _safe_extract(archive: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:*") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # pragma: no cover - very old Pythons
            root = dest.resolve()
            for m in tar.getmembers():
                if not (dest / m.name).resolve().is_relative_to(root) or m.issym() or m.islnk():
                    raise _JobError(f"ClientError: unsafe member {m.name!r} in source archive")
            tar.extractall(dest)


def _tar_dir(src: Path, dest: Path) -> None:
    """tar.gz the contents of ``src`` with entries at the archive root (like SageMaker)."""
    with tarfile.open(dest, "w:gz") as tar:
        for child in sorted(src.iterdir()):
            tar.add(str(child), arcname=child.name)


def _kill_tree(proc: subprocess.Popen[bytes], grace: float) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()


def run_training_job(
    request: dict[str, Any],
    s3_client: Any,
    work_root: Path,
    on_status: StatusCallback | None = None,
    on_log: LogCallback | None = None,
    *,
    stop_event: threading.Event | None = None,
    stop_grace_seconds: float = 10.0,
    cpus: int | None = None,
) -> TrainingResult:
    """Run one CreateTrainingJob request to completion, locally.

    Args:
        request: CreateTrainingJob request dict (boto3 shape). Used fields:
            TrainingJobName, AlgorithmSpecification{TrainingImage, TrainingInputMode,
            MetricDefinitions}, HyperParameters (str -> str, must include
            ``sagemaker_submit_directory`` (s3 tar.gz) and ``sagemaker_program``),
            InputDataConfig (S3Prefix, File mode), OutputDataConfig.S3OutputPath,
            ResourceConfig, StoppingCondition.MaxRuntimeInSeconds, Environment.
        s3_client: a boto3 S3 client (real, moto, or the twin's S3 endpoint).
        work_root: directory under which ``<TrainingJobName>/`` plays ``/opt/ml``
            (``input/config``, ``input/data/<channel>``, ``model``, ``output``,
            ``output/data``, ``code``). An existing job dir is replaced.
        on_status: called ``(secondary_status, status_message)`` on each transition.
        on_log: called with each log line (no trailing newline) as it is produced; it is
            called from the stdout/stderr reader threads, so it must be thread-safe.
        stop_event: when set while the script runs, the job is stopped (StopTrainingJob):
            SIGTERM, grace, SIGKILL; status ``"Stopped"``.
        stop_grace_seconds: SIGTERM -> SIGKILL delay (AWS: 120 s).
        cpus: the instance's CPUs as the script sees them: ``SM_NUM_CPUS``, ``num_cpus`` in
            ``SM_TRAINING_ENV`` and the thread-pool variables (``OMP_NUM_THREADS`` ...,
            :func:`sagepipe.twin.sagemaker.capacity.cpu_environment`) unless the request's
            Environment sets them. None: this machine's CPUs (the job has the machine to itself).
    Returns:
        :class:`TrainingResult`. Never raises for bad requests, inputs or script
        failures: those become ``status="Failed"`` with a ``ClientError: ...`` /
        ``AlgorithmError: ...`` failure_reason.
    """
    name = str(request.get("TrainingJobName") or "unnamed-training-job")
    job = _JobRun(on_status, on_log)
    job.transitions.enter("Starting", "Preparing the instances for training")
    job.metric_defs = (request.get("AlgorithmSpecification") or {}).get("MetricDefinitions") or []
    try:
        spec = _JobSpec.from_request(name, request, job.metric_defs)
        return _run(job, spec, s3_client, Path(work_root), stop_event, stop_grace_seconds, cpus or machine_cpus())
    except _JobError as exc:
        reason = str(exc)
        return job.finish("Failed", "Failed", f"Training job failed. Reason: {reason}", reason)
    except Exception as exc:  # defensive: run_training_job never raises
        reason = f"InternalServerError: twin training emulation crashed: {type(exc).__name__}: {exc}"
        return job.finish("Failed", "Failed", reason, reason)


class _JobRun:
    """What one run accumulates for its :class:`TrainingResult`: log lines, transitions, outputs."""

    def __init__(self, on_status: StatusCallback | None, on_log: LogCallback | None):
        self.on_log = on_log
        self.metric_defs: list[Any] = []  # AlgorithmSpecification.MetricDefinitions
        self.log_lines: list[str] = []
        self.lock = threading.Lock()
        self.transitions = _Transitions(on_status, self.log)
        self.training_seconds = 0.0
        self.model_artifacts: str | None = None
        self.output_data: str | None = None

    def log(self, line: str) -> None:
        """Record one log line; called from the reader threads too (hence the lock)."""
        with self.lock:
            self.log_lines.append(line)
        if self.on_log is not None:
            try:
                self.on_log(line)
            except Exception:  # a log callback must not break the job
                pass

    def finish(self, status: str, secondary: str, message: str, reason: str | None) -> TrainingResult:
        """Enter the terminal secondary status and build the result (FailureReason cut to 1024 chars)."""
        self.transitions.enter(secondary, message, terminal=True)
        if reason is not None and len(reason) > FAILURE_REASON_MAX:
            reason = reason[: FAILURE_REASON_MAX - 3] + "..."
        try:
            metrics = parse_final_metrics(self.metric_defs, self.log_lines)
        except re.error:
            metrics = []
        return TrainingResult(
            status=status,
            failure_reason=reason,
            final_metrics=metrics,
            model_artifacts=self.model_artifacts,
            secondary_status_transitions=self.transitions.items,
            log_lines=self.log_lines,
            training_seconds=self.training_seconds,
            secondary_status=secondary,
            output_data=self.output_data,
        )


@dataclass
class _JobSpec:
    """The validated parts of a CreateTrainingJob request that the run uses."""

    name: str
    raw_hps: dict[str, str]
    hps: dict[str, Any]  # JSON-decoded like the toolkit, see decode_hyperparameter
    submit_dir: Any  # decoded hyperparameters: a str when the request is well formed
    program: Any
    out_bucket: str
    out_prefix: str
    max_runtime: float
    channels: list[dict[str, Any]]
    resource: dict[str, Any]
    environment: dict[str, Any]

    @classmethod
    def from_request(cls, name: str, request: dict[str, Any], metric_defs: list[Any]) -> _JobSpec:
        """Check what the twin can run; raises _JobError (a ``ClientError: ...`` FailureReason)."""
        for d in metric_defs:
            try:
                re.compile(d["Regex"])
            except (re.error, KeyError, TypeError) as exc:
                raise _JobError(f"ClientError: invalid MetricDefinitions entry {d!r}: {exc}") from exc
        mode = (request.get("AlgorithmSpecification") or {}).get("TrainingInputMode", "File")
        if mode != "File":
            raise _JobError(f"ClientError: TrainingInputMode {mode} is not supported by the twin")
        raw_hps = {str(k): str(v) for k, v in (request.get("HyperParameters") or {}).items()}
        hps = {k: decode_hyperparameter(v) for k, v in raw_hps.items()}
        submit_dir = hps.get("sagemaker_submit_directory")
        program = hps.get("sagemaker_program")
        if not submit_dir or not program:
            raise _JobError(
                "ClientError: the twin only emulates script mode: hyperparameters sagemaker_submit_directory "
                "and sagemaker_program are required"
            )
        try:
            out_bucket, out_prefix = parse_s3_uri((request.get("OutputDataConfig") or {}).get("S3OutputPath", ""))
        except ValueError as exc:
            raise _JobError(f"ClientError: OutputDataConfig.S3OutputPath: {exc}") from exc
        max_runtime = float((request.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds") or DEFAULT_MAX_RUNTIME)
        return cls(
            name=name,
            raw_hps=raw_hps,
            hps=hps,
            submit_dir=submit_dir,
            program=program,
            out_bucket=out_bucket,
            out_prefix=out_prefix,
            max_runtime=max_runtime,
            channels=request.get("InputDataConfig") or [],
            resource=request.get("ResourceConfig") or {},
            environment=request.get("Environment") or {},
        )


@dataclass
class _Layout:
    """The job's ``/opt/ml`` tree under ``work_root/<TrainingJobName>``."""

    root: Path

    @property
    def config_dir(self) -> Path:
        return self.root / "input" / "config"

    @property
    def data_dir(self) -> Path:
        return self.root / "input" / "data"

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    @property
    def output_data_dir(self) -> Path:
        return self.output_dir / "data"

    @property
    def code_dir(self) -> Path:
        return self.root / "code"

    @classmethod
    def create(cls, work_root: Path, name: str) -> _Layout:
        """Make a fresh tree (an existing job dir is replaced)."""
        layout = cls(work_root / name)
        if layout.root.exists():
            shutil.rmtree(layout.root)
        for d in (
            layout.config_dir,
            layout.data_dir,
            layout.model_dir,
            layout.output_data_dir,
            layout.code_dir,
            layout.output_dir / "intermediate",
        ):
            d.mkdir(parents=True, exist_ok=True)
        return layout


@dataclass
class _ScriptOutcome:
    returncode: int
    stop_kind: str | None  # None | "MaxRuntimeExceeded" | "Stopped"
    seconds: float
    stderr_lines: list[str]


def _run(
    job: _JobRun,
    spec: _JobSpec,
    s3_client: Any,
    work_root: Path,
    stop_event: threading.Event | None,
    stop_grace_seconds: float,
    cpus: int,
) -> TrainingResult:
    """The secondary statuses in order: Downloading, Training, (Stopping,) Uploading; raises _JobError."""
    layout = _Layout.create(work_root, spec.name)
    input_config, resource_config = _write_input_config(layout, spec)

    job.transitions.enter("Downloading", "Downloading input data")
    channel_dirs = _download_channels(s3_client, spec.channels, layout.data_dir, job.log)
    _fetch_source(s3_client, spec, layout, job.log)

    job.transitions.enter("Training", "Training image download completed. Training in progress.")
    user_hps = {k: v for k, v in spec.hps.items() if not k.startswith("sagemaker_")}
    user_args: list[str] = []
    for k, v in user_hps.items():
        user_args += [f"--{k}", _hp_to_str(v)]
    env = _training_env(spec, layout, input_config, resource_config, channel_dirs, user_hps, user_args, cpus)
    cmd = [sys.executable, str(spec.program), *user_args]
    outcome = _run_script(cmd, spec, layout, env, job, stop_event, stop_grace_seconds)
    job.training_seconds = outcome.seconds
    if outcome.stop_kind is None and outcome.returncode != 0:
        raise _algorithm_error(layout, outcome)

    if outcome.stop_kind is not None:
        job.transitions.enter("Stopping", "Stopping the training job")
    job.transitions.enter("Uploading", "Uploading generated training model")
    _upload_outputs(s3_client, spec, layout, outcome.stop_kind, job)

    if outcome.stop_kind == "MaxRuntimeExceeded":
        return job.finish(
            "Stopped",
            "MaxRuntimeExceeded",
            f"Training job stopped: it exceeded MaxRuntimeInSeconds ({spec.max_runtime:g} s)",
            "MaxRuntimeInSeconds exceeded",
        )
    if outcome.stop_kind == "Stopped":
        return job.finish("Stopped", "Stopped", "Training job stopped by StopTrainingJob", None)
    return job.finish("Completed", "Completed", "Training job completed", None)


def _write_input_config(layout: _Layout, spec: _JobSpec) -> tuple[InputDataConfig, dict[str, Any]]:
    """Write ``input/config/{hyperparameters,inputdataconfig,resourceconfig}.json``; returns the last two.

    A channel without ChannelName is keyed None here and rejected by :func:`_download_channels`.
    """
    instance_type = spec.resource.get("InstanceType", "local")
    resource_config = {
        "current_host": CURRENT_HOST,
        "current_instance_type": instance_type,
        "current_group_name": "homogeneousCluster",
        "hosts": [CURRENT_HOST],
        "instance_groups": [
            {
                "instance_group_name": "homogeneousCluster",
                "instance_type": instance_type,
                "hosts": [CURRENT_HOST],
            }
        ],
        "network_interface_name": "eth0",
    }
    input_config: InputDataConfig = {
        c.get("ChannelName"): {
            "TrainingInputMode": "File",
            "S3DistributionType": (c.get("DataSource") or {})
            .get("S3DataSource", {})
            .get("S3DistributionType", "FullyReplicated"),
            "RecordWrapperType": c.get("RecordWrapperType", "None"),
            **({"ContentType": c["ContentType"]} if c.get("ContentType") else {}),
        }
        for c in spec.channels
    }
    (layout.config_dir / "hyperparameters.json").write_text(json.dumps(spec.raw_hps, indent=2))
    (layout.config_dir / "inputdataconfig.json").write_text(json.dumps(input_config, indent=2))
    (layout.config_dir / "resourceconfig.json").write_text(json.dumps(resource_config, indent=2))
    return input_config, resource_config


def _download_channels(
    s3_client: Any, channels: list[dict[str, Any]], data_dir: Path, log: LogCallback
) -> dict[str, Path]:
    """Download each channel to ``input/data/<ChannelName>``; returns ``{ChannelName: dir}``."""
    channel_dirs: dict[str, Path] = {}
    for c in channels:
        cname = c.get("ChannelName")
        if not cname or not re.fullmatch(r"[A-Za-z0-9.\-_]+", str(cname)):
            raise _JobError(f"ClientError: invalid ChannelName {cname!r}")
        n = _download_channel(s3_client, c, data_dir / cname)
        channel_dirs[cname] = data_dir / cname
        log(f"twin: channel {cname}: downloaded {n} object(s)")
    return channel_dirs


def _fetch_source(s3_client: Any, spec: _JobSpec, layout: _Layout, log: LogCallback) -> None:
    """Download and unpack ``sagemaker_submit_directory`` into ``code/``; check ``sagemaker_program``."""
    try:
        src_bucket, src_key = parse_s3_uri(spec.submit_dir)
        archive = layout.root / "sourcedir.tar.gz"
        s3_client.download_file(src_bucket, src_key, str(archive))
        _safe_extract(archive, layout.code_dir)
        archive.unlink()
    except _JobError:
        raise
    except Exception as exc:
        raise _JobError(f"ClientError: cannot fetch sagemaker_submit_directory {spec.submit_dir}: {exc}") from exc
    if not (layout.code_dir / str(spec.program)).is_file():
        raise _JobError(f"ClientError: sagemaker_program {spec.program} not found in {spec.submit_dir}")
    if (layout.code_dir / "requirements.txt").is_file():
        log("twin: requirements.txt found but NOT installed (the twin runs offline in the local venv)")


def _training_env(
    spec: _JobSpec,
    layout: _Layout,
    input_config: InputDataConfig,
    resource_config: dict[str, Any],
    channel_dirs: dict[str, Path],
    user_hps: dict[str, Any],
    user_args: list[str],
    cpus: int,
) -> dict[str, str]:
    """The script's environment: ours, the toolkit's ``SM_*`` variables, the CPU limits (``cpus`` as
    ``SM_NUM_CPUS`` and the thread-pool variables), then the request's Environment (which may set any of them)."""
    program = str(spec.program)
    module_name = program.rsplit(".", 1)[0]
    num_cpus = cpus
    env = dict(os.environ)
    env.update(cpu_environment(num_cpus))
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "TRAINING_JOB_NAME": spec.name,
            "SM_MODEL_DIR": str(layout.model_dir),
            "SM_OUTPUT_DIR": str(layout.output_dir),
            "SM_OUTPUT_DATA_DIR": str(layout.output_data_dir),
            "SM_OUTPUT_INTERMEDIATE_DIR": str(layout.output_dir / "intermediate"),
            "SM_INPUT_DIR": str(layout.root / "input"),
            "SM_INPUT_CONFIG_DIR": str(layout.config_dir),
            "SM_INPUT_DATA_CONFIG": json.dumps(input_config),
            "SM_RESOURCE_CONFIG": json.dumps(resource_config),
            "SM_CHANNELS": json.dumps(sorted(channel_dirs)),
            "SM_HPS": json.dumps(user_hps),
            "SM_USER_ARGS": json.dumps(user_args),
            "SM_CURRENT_HOST": CURRENT_HOST,
            "SM_HOSTS": json.dumps([CURRENT_HOST]),
            "SM_NETWORK_INTERFACE_NAME": "eth0",
            "SM_NUM_GPUS": "0",
            "SM_LOG_LEVEL": "20",
            "SM_MODULE_DIR": str(spec.submit_dir),
            "SM_MODULE_NAME": module_name,
            "SM_USER_ENTRY_POINT": program,
            "SM_FRAMEWORK_PARAMS": "{}",
            "SM_TRAINING_ENV": json.dumps(
                {
                    "job_name": spec.name,
                    "current_host": CURRENT_HOST,
                    "hosts": [CURRENT_HOST],
                    "channel_input_dirs": {k: str(v) for k, v in channel_dirs.items()},
                    "hyperparameters": user_hps,
                    "input_dir": str(layout.root / "input"),
                    "input_config_dir": str(layout.config_dir),
                    "input_data_config": input_config,
                    "model_dir": str(layout.model_dir),
                    "output_dir": str(layout.output_dir),
                    "output_data_dir": str(layout.output_data_dir),
                    "module_dir": str(spec.submit_dir),
                    "module_name": module_name,
                    "user_entry_point": program,
                    "num_cpus": num_cpus,
                    "num_gpus": 0,
                    "resource_config": resource_config,
                }
            ),
        }
    )
    for cname, cdir in channel_dirs.items():
        env[f"SM_CHANNEL_{cname.upper()}"] = str(cdir)
    for k, v in user_hps.items():
        env[f"SM_HP_{k.upper()}"] = _hp_to_str(v)
    env.update({str(k): str(v) for k, v in spec.environment.items()})
    return env


def _run_script(
    cmd: list[str],
    spec: _JobSpec,
    layout: _Layout,
    env: dict[str, str],
    job: _JobRun,
    stop_event: threading.Event | None,
    stop_grace_seconds: float,
) -> _ScriptOutcome:
    """Run the entry point in ``code/``, streaming its output to the log, until it exits or is stopped.

    Stops it (SIGTERM, grace, SIGKILL) past MaxRuntimeInSeconds or when ``stop_event`` is set.
    """
    job.log("Invoking script with the following command: {}".format(" ".join(cmd)))
    stderr_lines: list[str] = []
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            cmd,
            cwd=str(layout.code_dir),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        raise _JobError(f"AlgorithmError: cannot start {spec.program}: {exc}") from exc

    def pump(stream: IO[bytes], sink: list[str] | None) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if sink is not None:
                sink.append(line)
            job.log(line)
        stream.close()

    readers = [
        threading.Thread(target=pump, args=(proc.stdout, None), daemon=True),
        threading.Thread(target=pump, args=(proc.stderr, stderr_lines), daemon=True),
    ]
    for t in readers:
        t.start()
    stop_kind = _wait_or_stop(proc, started + spec.max_runtime, stop_event, stop_grace_seconds, job.log)
    for t in readers:
        t.join(timeout=5)
    return _ScriptOutcome(proc.returncode, stop_kind, time.monotonic() - started, stderr_lines)


def _wait_or_stop(
    proc: subprocess.Popen[bytes],
    deadline: float,
    stop_event: threading.Event | None,
    stop_grace_seconds: float,
    log: LogCallback,
) -> str | None:
    """Wait for the process; returns None when it exited, else why it was stopped."""
    while True:
        try:
            proc.wait(timeout=0.1)
            return None
        except subprocess.TimeoutExpired:
            pass
        stop_kind = None
        if time.monotonic() >= deadline:
            stop_kind = "MaxRuntimeExceeded"
        elif stop_event is not None and stop_event.is_set():
            stop_kind = "Stopped"
        if stop_kind:
            log(f"twin: {stop_kind}: sending SIGTERM to the training process")
            _kill_tree(proc, stop_grace_seconds)
            return stop_kind


def _algorithm_error(layout: _Layout, outcome: _ScriptOutcome) -> _JobError:
    """``AlgorithmError: <output/failure, else the stderr tail>, exit code N``, as SageMaker reports it."""
    failure_file = layout.output_dir / "failure"
    detail = failure_file.read_text(errors="replace").strip() if failure_file.is_file() else ""
    if not detail:
        detail = "\n".join(outcome.stderr_lines[-STDERR_TAIL_LINES:]).strip() or "(no output)"
    return _JobError(f"AlgorithmError: {detail}, exit code {outcome.returncode}")


def _upload_outputs(s3_client: Any, spec: _JobSpec, layout: _Layout, stop_kind: str | None, job: _JobRun) -> None:
    """Upload ``model.tar.gz`` (unless a stopped job left no model) and ``output.tar.gz``.

    Sets ``job.model_artifacts`` / ``job.output_data`` as each upload succeeds.
    """
    out_bucket = spec.out_bucket
    if spec.out_prefix.strip("/"):
        base = "{}/{}/output".format(spec.out_prefix.rstrip("/"), spec.name)
    else:
        base = f"{spec.name}/output"
    base = base.lstrip("/")
    try:
        if stop_kind is None or any(layout.model_dir.iterdir()):
            model_tar = layout.root / "model.tar.gz"
            _tar_dir(layout.model_dir, model_tar)
            s3_client.upload_file(str(model_tar), out_bucket, base + "/model.tar.gz")
            job.model_artifacts = f"s3://{out_bucket}/{base}/model.tar.gz"
        out_tar = layout.root / "output.tar.gz"
        _tar_dir(layout.output_data_dir, out_tar)
        s3_client.upload_file(str(out_tar), out_bucket, base + "/output.tar.gz")
        job.output_data = f"s3://{out_bucket}/{base}/output.tar.gz"
    except Exception as exc:
        raise _JobError(f"ClientError: cannot upload model artifacts to s3://{out_bucket}/{base}: {exc}") from exc


def _now() -> datetime:
    return datetime.now(UTC)


def _status_recorder(job: Any) -> StatusCallback:
    """``on_status(secondary, message)`` for moto's job record: a new secondary status ends the previous
    transition and appends one; the same status again only updates its ``StatusMessage`` (as SageMaker's
    Starting goes from "Launching requested ML instances" to "Preparing the instances for training" within
    one transition, SageMaker API Reference ``SecondaryStatusTransition``)."""

    def on_status(secondary: str, message: str) -> None:
        now = _now()
        transitions = job.secondary_status_transitions
        if transitions and transitions[-1]["Status"] == secondary and "EndTime" not in transitions[-1]:
            transitions[-1]["StatusMessage"] = message
        else:
            if transitions:
                transitions[-1].setdefault("EndTime", now)
            transitions.append({"Status": secondary, "StartTime": now, "StatusMessage": message})
        job.secondary_status = secondary
        job.last_modified_time = now

    return on_status


class TrainingManager:
    """Runs training jobs locally. ``clients(service, role_arn)`` returns a boto3 client for the twin
    signed as the job's execution role (``RoleArn``), as SageMaker calls on the job's behalf: S3 for the
    channels, the code and the artefacts; CloudWatch Logs for the job's output (log group
    ``/aws/sagemaker/TrainingJobs``, stream ``<TrainingJobName>/algo-1-<epoch seconds>``); CloudWatch
    for the ``MetricDefinitions`` metrics (namespace ``/aws/sagemaker/TrainingJobs``, dimension
    ``Host`` = ``<TrainingJobName>/algo-1``; SageMaker Developer Guide, "Amazon SageMaker metrics in
    Amazon CloudWatch"). A denied S3 call fails the job (ClientError in its FailureReason); a denied
    log or metric write is logged by the twin and the job goes on. A job's directory under ``work_root``
    (its ``/opt/ml``) is removed when the job ends, as SageMaker releases the instance's storage
    (``SAGEPIPE_TWIN_KEEP_JOB_DIRS=1`` keeps it for inspection).

    At most ``capacity.slots`` jobs run at once (:class:`~sagepipe.twin.sagemaker.capacity.TrainingCapacity`,
    default :func:`~sagepipe.twin.sagemaker.capacity.default_capacity` slots); a job beyond them is
    ``InProgress`` / ``Starting`` with the message ``Launching requested ML instances`` and no
    ``TrainingStartTime`` until a slot frees (what DescribeTrainingJob shows while SageMaker provisions
    the instances), then runs with ``capacity.cpus_per_job(InstanceType)`` CPUs. StopTrainingJob on a
    waiting job ends it ``Stopped`` without running it. The slot is given back on every end (Completed,
    Failed, Stopped, or a crash of the twin's own code, which ends the job Failed with an
    InternalServerError reason)."""

    LOG_GROUP = "/aws/sagemaker/TrainingJobs"
    METRICS_NAMESPACE = "/aws/sagemaker/TrainingJobs"

    def __init__(
        self,
        work_root: Path,
        clients: Callable[[str, str | None], Any],
        log_sink: LogSink,
        capacity: TrainingCapacity | None = None,
    ) -> None:
        from .capacity import default_capacity

        self.work_root = work_root
        self.clients = clients
        self.log_sink = log_sink
        self.capacity = capacity or TrainingCapacity(default_capacity())
        self.threads: dict[str, threading.Thread] = {}
        self.stop_events: dict[str, threading.Event] = {}
        self.results: dict[str, TrainingResult] = {}
        self.logs: dict[str, list[str]] = {}

    def start(self, job: Any, request: dict[str, Any]) -> None:
        """Start ``request`` (CreateTrainingJob shape) for moto job object ``job`` (mutated in place): the job
        is ``InProgress`` / ``Starting`` at once, and runs in a background thread once it holds a slot."""
        name = request["TrainingJobName"]
        job.training_job_status = "InProgress"
        job.secondary_status = "Starting"
        job.secondary_status_transitions = []
        job.final_metric_data_list = None
        job.training_start_time = None  # set when the job gets its (local) instance
        job.training_end_time = None
        job.model_artifacts = None
        job.algorithm_specification["MetricDefinitions"] = request["AlgorithmSpecification"].get(
            "MetricDefinitions", []
        )
        self.logs[name] = []
        stop = threading.Event()
        self.stop_events[name] = stop
        on_status = _status_recorder(job)
        on_status("Starting", LAUNCHING_MESSAGE)

        def on_log(line: str) -> None:
            self.logs[name].append(line)
            self.log_sink(f"training:{name}", line)

        def run() -> None:
            if not self._acquire(name, stop):
                self._stopped_before_start(job, name, on_status)
                return
            try:
                job.training_start_time = job.last_modified_time = _now()
                cpus = self.capacity.cpus_per_job((request.get("ResourceConfig") or {}).get("InstanceType"))
                role = request.get("RoleArn")
                s3 = self.clients("s3", role)
                result = run_training_job(request, s3, self.work_root, on_status, on_log, stop_event=stop, cpus=cpus)
                self.results[name] = result
                self._record(job, name, result, role)
            except Exception as exc:  # noqa: BLE001 - the twin's own bug: the job fails, the slot is freed
                reason = f"InternalServerError: twin training emulation crashed: {type(exc).__name__}: {exc}"
                self.log_sink(f"training:{name}", reason)
                job.failure_reason = reason[:FAILURE_REASON_MAX]
                on_status("Failed", reason[:FAILURE_REASON_MAX])
                now = _now()
                job.training_end_time = job.last_modified_time = job.secondary_status_transitions[-1]["EndTime"] = now
                job.training_job_status = "Failed"
            finally:
                self.capacity.release()

        thread = threading.Thread(target=run, name=f"training-{name}", daemon=True)
        self.threads[name] = thread
        thread.start()

    def _acquire(self, name: str, stop: threading.Event) -> bool:
        """Wait for a training slot (logging the wait when there is one); False when stopped meanwhile."""
        busy, queued = self.capacity.in_use, self.capacity.waiting
        if busy < self.capacity.slots and not queued:
            return self.capacity.acquire(stop)
        self.log_sink(
            f"training:{name}",
            f"waiting for a training slot ({busy} of {self.capacity.slots} in use, {queued} job(s) ahead): "
            f"{LAUNCHING_MESSAGE}",
        )
        started = time.monotonic()
        got = self.capacity.acquire(stop)
        if got:
            self.log_sink(f"training:{name}", f"got a training slot after {time.monotonic() - started:.1f} s")
        return got

    def _stopped_before_start(self, job: Any, name: str, on_status: StatusCallback) -> None:
        """StopTrainingJob (or the twin's shutdown) while the job waited for a slot: Stopped, never run."""
        on_status("Stopping", "Stopping the training job")
        on_status("Stopped", "Training job stopped by StopTrainingJob before it started")
        now = _now()
        job.secondary_status_transitions[-1]["EndTime"] = now
        self.results[name] = TrainingResult(
            status="Stopped",
            failure_reason=None,
            final_metrics=[],
            model_artifacts=None,
            secondary_status_transitions=[],
            log_lines=[],
            training_seconds=0.0,
            secondary_status="Stopped",
        )
        job.training_end_time = job.last_modified_time = now
        job.training_job_status = "Stopped"

    def _record(self, job: Any, name: str, result: TrainingResult, role: str | None) -> None:
        """Copy ``result`` onto moto's job record, deliver logs and metrics; the status goes last."""
        now = _now()
        if job.secondary_status_transitions:
            job.secondary_status_transitions[-1].setdefault("EndTime", now)
        if result.final_metrics:
            job.final_metric_data_list = [{**m, "Timestamp": now} for m in result.final_metrics]
        if result.model_artifacts:
            job.model_artifacts = {"S3ModelArtifacts": result.model_artifacts}
        if result.failure_reason:
            job.failure_reason = result.failure_reason
        job.training_end_time = now
        job.training_time_in_seconds = max(1, int(round(result.training_seconds)))
        job.billable_time_in_seconds = job.training_time_in_seconds
        job.last_modified_time = now
        self._to_cloudwatch(name, result.log_lines, role)
        self._metrics(name, result.final_metrics, role)
        if not os.environ.get("SAGEPIPE_TWIN_KEEP_JOB_DIRS"):
            # SageMaker releases the instance's storage (/opt/ml) when the job ends; what it produced
            # is in S3. The state dir would otherwise grow by every job's inputs and model.
            shutil.rmtree(self.work_root / name, ignore_errors=True)
        job.training_job_status = result.status  # last: pollers see a complete record

    def _to_cloudwatch(self, name: str, lines: list[str], role: str | None) -> None:
        if not lines:
            return
        logs = self.clients("logs", role)
        stream = f"{name}/algo-1-{int(time.time())}"
        try:
            try:
                logs.create_log_group(logGroupName=self.LOG_GROUP)
            except logs.exceptions.ResourceAlreadyExistsException:
                pass
            # the log agent looks for the job's streams first (why the execution role needs DescribeLogStreams)
            logs.describe_log_streams(logGroupName=self.LOG_GROUP, logStreamNamePrefix=f"{name}/")
            logs.create_log_stream(logGroupName=self.LOG_GROUP, logStreamName=stream)
            now = int(time.time() * 1000)
            for i in range(0, len(lines), 5000):  # PutLogEvents: at most 10,000 events per call
                logs.put_log_events(
                    logGroupName=self.LOG_GROUP,
                    logStreamName=stream,
                    logEvents=[{"timestamp": now, "message": line or " "} for line in lines[i : i + 5000]],
                )
        except ClientError as exc:
            self.log_sink(f"training:{name}", f"logs not delivered to CloudWatch Logs: {exc}")

    def _metrics(self, name: str, metrics: list[dict[str, Any]] | None, role: str | None) -> None:
        if not metrics:
            return
        now = _now()
        data = [
            {
                "MetricName": m["MetricName"],
                "Dimensions": [{"Name": "Host", "Value": f"{name}/algo-1"}],
                "Timestamp": now,
                "Value": float(m["Value"]),
            }
            for m in metrics
        ]
        try:
            self.clients("cloudwatch", role).put_metric_data(Namespace=self.METRICS_NAMESPACE, MetricData=data)
        except ClientError as exc:
            self.log_sink(f"training:{name}", f"metrics not published to CloudWatch: {exc}")

    def stop(self, name: str) -> None:
        """StopTrainingJob: signal the running script (SIGTERM, grace, SIGKILL)."""
        if name in self.stop_events:
            self.stop_events[name].set()
            self.capacity.wake()  # a job waiting for a slot ends now

    def shutdown(self) -> None:
        """Stop every running job and wait briefly for their threads."""
        for event in self.stop_events.values():
            event.set()
        self.capacity.wake()
        for thread in self.threads.values():
            thread.join(timeout=15)
