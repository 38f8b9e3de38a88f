"""The local twin's composition root: moto's server on 127.0.0.1 with the twin's patches
(:mod:`sagepipe.twin.patches`), ``template.yaml`` deployed onto it (:mod:`sagepipe.twin.cloudformation`),
real Lambda workers (:mod:`sagepipe.twin.awslambda`), local SageMaker training, tuning and hosting
(:mod:`sagepipe.twin.sagemaker`), EventBridge delivery and schedules (:mod:`sagepipe.twin.events`) and the
local API Gateway front (:mod:`sagepipe.twin.apigateway`). ``Twin.start()`` returns when everything is
ready; ``Twin.stop()`` stops every process it started. The state survives a stop and a start on the same
state dir (:mod:`sagepipe.twin.persistence`).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import boto3
import requests
from botocore.config import Config

from . import iam, patches, persistence
from .apigateway import ApiFront
from .awslambda.runtime import WorkerPool
from .cloudformation.deploy import Deployer, Deployment
from .cloudformation.template import Stack, load_template
from .events.delivery import Delivery
from .events.scheduler import Scheduler
from .sagemaker.capacity import TrainingCapacity, resolve_capacity
from .sagemaker.capture import CaptureWriter
from .sagemaker.hosting import HostingManager
from .sagemaker.training import TrainingManager
from .sagemaker.tuning import TuningManager

REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@dataclass
class TwinInfo:
    """What ``twin.json`` holds."""

    aws_endpoint_url: str
    api_url: str
    data_bucket: str
    artifacts_bucket: str
    state_machine_arn: str
    region: str
    stack_name: str
    event_source: str
    state_dir: str
    pid: int
    api_key: str | None = None  # x-api-key for the inference API (None when the template requires none)


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Twin:
    """Runs sagepipe on one machine. ``parameter_overrides`` are template parameters (``PollSeconds``
    defaults to 1 here so deploy polling is quick); ``echo`` prints function/training/model logs;
    ``training_capacity`` is how many training jobs run at once (None: ``$SAGEPIPE_TWIN_TRAINING_CAPACITY``,
    else half the machine's CPUs, :func:`sagepipe.twin.sagemaker.capacity.resolve_capacity`).

    Raises:
        sagepipe.twin.sagemaker.capacity.InvalidCapacityError: the capacity (argument or variable) is not a
            positive integer.
    """

    def __init__(
        self,
        root: Path,
        state_dir: Path,
        *,
        stack_name: str = "sagepipe",
        parameter_overrides: dict[str, str] | None = None,
        echo: bool = True,
        say: Callable[[str], None] | None = None,
        training_capacity: int | None = None,
    ) -> None:
        self.training_capacity = resolve_capacity(training_capacity)
        self.root = root.resolve()
        self.state_dir = state_dir.resolve()
        self.stack_name = stack_name
        self.parameter_overrides = {"PollSeconds": "1", **(parameter_overrides or {})}
        self.echo = echo
        self.say = say or (lambda msg: print(f"[twin] {msg}", file=sys.stderr, flush=True))
        self.logs: deque[tuple[str, str]] = deque(maxlen=20000)
        self.events_log: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.server: Any = None
        self.api: ApiFront | None = None
        self.info: TwinInfo | None = None
        self.deployment: Deployment | None = None
        self.restored: persistence.Restored | None = None  # what start() brought back from the state dir
        self._persist = False  # True once started (a failed start never overwrites the saved state)
        self._persister: persistence.Persister | None = None

    # ----------------------------------------------------------------------------- plumbing
    def log(self, prefix: str, line: str) -> None:
        """Keep a log line (and echo it with its prefix)."""
        self.logs.append((prefix, line))
        if self.echo:
            print(f"[{prefix}] {line}", file=sys.stderr, flush=True)

    def client(self, service: str, role_arn: str | None = None) -> Any:
        """A boto3 client for ``service`` on the twin (parameter validation on): unrestricted, or signed
        as a session of ``role_arn`` (the twin's IAM then authorises each call against that role)."""
        return boto3.client(  # type: ignore[call-overload]  # types-boto3 overloads Literal names only
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            config=Config(retries={"mode": "standard", "max_attempts": 3}),
            **(iam.credentials_for(role_arn) if role_arn else CREDENTIALS),
        )

    # --------------------------------------------------------------------------- lifecycle
    def start(self) -> TwinInfo:
        """Start moto, apply patches, deploy the template (which publishes the model code), restore the
        state dir's snapshot (:func:`sagepipe.twin.persistence.restore`: objects, registry, runs, logs, the
        API key; endpoints started again), start the API. Raises
        :class:`~sagepipe.twin.persistence.TwinStateError` before starting anything when the state dir's
        snapshot cannot be restored."""
        from moto.core.config import default_user_config
        from moto.server import ThreadedMotoServer

        self.state_dir.mkdir(parents=True, exist_ok=True)
        persistence.check()
        snapshot = persistence.load(self.state_dir, self.stack_name, REGION)
        persistence.clear_scratch(self.state_dir)
        port = free_port()
        os.environ["MOTO_PORT"] = str(port)  # moto's Step Functions tasks call http://localhost:$MOTO_PORT
        default_user_config.setdefault("stepfunctions", {})["execute_state_machine"] = True
        self.endpoint = f"http://127.0.0.1:{port}"
        self.pool = WorkerPool(log_sink=self.log, log_dir=self.state_dir / "logs")
        # training jobs and endpoints call S3, CloudWatch Logs and CloudWatch as the SageMaker execution role
        self.training = TrainingManager(
            self.state_dir / "training", self.client, self.log, TrainingCapacity(self.training_capacity)
        )
        self.hosting = HostingManager(self.state_dir / "endpoints", lambda role: self.client("s3", role), self.log)
        self.hosting.capture = CaptureWriter(self._capture_config, lambda role: self.client("s3", role), self.log)
        self.tuning = TuningManager(lambda: self.client("sagemaker"), self.log)
        self.delivery = Delivery(
            self.client, self.pool, lambda: self.functions, self.log, self._spawn, self._stop, self.events_log
        )
        self.scheduler = Scheduler(self.deliver, self.say, self._stop, REGION)
        patches.apply_all(self)
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.server.start()
        # moto's backends are process-global: a twin started after another in the same process (tests)
        # must not see the first one's resources.
        requests.post(f"{self.endpoint}/moto-api/reset", timeout=30).raise_for_status()
        stack = Stack(
            self.stack_name,
            load_template(self.root / "template.yaml"),
            self.root,
            REGION,
            dict(self.parameter_overrides),
        )
        extra_env = {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_DEV": "false",
        }
        # The model code reaches S3 through the template's ModelCode custom resource, as with `sam deploy`.
        self.deployment = Deployer(stack, self.client, extra_env, self.say, invoke=self.pool.invoke).deploy()
        self.functions = self.deployment.functions
        outputs = self.deployment.outputs
        if snapshot is not None:
            state = snapshot.state()
            saved_key = state.get("api_key")
            if saved_key and self.deployment.api_key:
                self.deployment.api_key = saved_key  # clients keep the key they were given
            self.restored = persistence.restore(snapshot, state, REGION, self._restart_endpoint)
        self.api = ApiFront(
            self.deployment.routes,
            self._invoke_by_name,
            stage=self.deployment.api_stage,
            cors=self.deployment.cors,
            gateway_responses=self.deployment.gateway_responses,
            iam_auth=self.deployment.iam_auth,
            api_keys={self.deployment.api_key} if self.deployment.api_key else None,
        )
        api_url = self.api.start()
        self._spawn(self.scheduler.run, "scheduler")
        self.info = TwinInfo(
            aws_endpoint_url=self.endpoint,
            api_url=api_url,
            data_bucket=outputs["DataBucketName"],
            artifacts_bucket=outputs["ArtifactsBucketName"],
            state_machine_arn=outputs["StateMachineArn"],
            region=REGION,
            stack_name=self.stack_name,
            event_source=outputs.get("EventSource", "sagepipe"),
            state_dir=str(self.state_dir),
            pid=os.getpid(),
            api_key=self.deployment.api_key,
        )
        tmp = self.state_dir / "twin.json.tmp"
        tmp.write_text(json.dumps(asdict(self.info), indent=2))
        tmp.replace(self.state_dir / "twin.json")
        if self.restored is not None:
            self._finish_restore(self.restored)
        self._persist = True
        self._persister = persistence.Persister(self.save, lambda line: self.log("twin", line))
        return self.info

    def _restart_endpoint(self, endpoint: Any) -> None:
        from .sagemaker.api import model_for_config

        backend = self._sagemaker_backend()
        _, model = model_for_config(backend, endpoint.endpoint_config_name)
        self.hosting.create(endpoint, model)

    def _capture_config(self, endpoint_config_name: str) -> tuple[dict[str, Any] | None, str]:
        """``(DataCaptureConfig or None, VariantName)`` of an EndpointConfig (moto's record of
        CreateEndpointConfig); ``(None, "AllTraffic")`` when it is gone."""
        config = self._sagemaker_backend().endpoint_configs.get(endpoint_config_name)
        if config is None:
            return None, "AllTraffic"
        variants = config.production_variants or [{}]
        return (config.data_capture_config or None), variants[0].get("VariantName", "AllTraffic")

    @staticmethod
    def _sagemaker_backend() -> Any:
        from moto.sagemaker.models import sagemaker_backends

        return sagemaker_backends[persistence.ACCOUNT][REGION]

    def _finish_restore(self, restored: persistence.Restored, endpoint_timeout_s: float = 180) -> None:
        """After a restore: tell the pipeline about the runs the stop cut off (their status-change
        events, so ExecutionEndedFunction notifies "Pipeline Failed"), wait for restored endpoints to be
        InService (or Failed), and say what came back."""
        from .stepfunctions.events import emit

        for execution in persistence.aborted_executions(REGION, restored.aborted):
            emit(execution)
        backend = self._sagemaker_backend()
        deadline = time.monotonic() + endpoint_timeout_s
        for name in restored.endpoints:
            while backend.endpoints[name].endpoint_status == "Creating" and time.monotonic() < deadline:
                time.sleep(0.1)
            status = backend.endpoints[name].endpoint_status
            if status != "InService":
                self.say(f"restored endpoint {name} is {status}: {backend.endpoints[name].failure_reason}")
        self.say(restored.summary())

    def save(self) -> persistence.Manifest:
        """Write the state dir's snapshot now (:func:`sagepipe.twin.persistence.save`)."""
        return persistence.save(
            self.state_dir, self.stack_name, REGION, self.deployment.api_key if self.deployment else None
        )

    def state_changed(self) -> None:
        """An execution ended: save the snapshot soon (debounced)."""
        if self._persister is not None:
            self._persister.changed()

    def stop(self) -> None:
        """Stop the API, schedulers, training jobs, model servers, Lambda workers and moto."""
        self._stop.set()
        if self.api:
            self.api.stop()
        if self._persister is not None:
            self._persister.close()
        if hasattr(self, "hosting") and self.hosting.capture is not None:
            self.hosting.capture.close()  # captured requests reach S3 (and the snapshot)
        if self._persist:  # before anything is shut down: what was running is recorded as running
            try:
                self.save()
            except Exception as exc:  # noqa: BLE001 - stopping must go on; the previous snapshot is intact
                self.say(f"could not save the twin's state: {exc!r}")
            self._persist = False
            persistence.stop_running(REGION)
        if hasattr(self, "tuning"):
            self.tuning.shutdown()
        if hasattr(self, "training"):
            self.training.shutdown()
        if hasattr(self, "hosting"):
            self.hosting.shutdown()
        if hasattr(self, "pool"):
            self.pool.shutdown()
        if self.server:
            self.server.stop()
            self.server = None
        patches.release(self)
        try:
            (self.state_dir / "twin.json").unlink()
        except FileNotFoundError:
            pass

    def pids(self) -> list[int]:
        """PIDs of every child process the twin started (Lambda workers and model servers)."""
        return [*self.pool.pids(), *self.hosting.pids()]

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    # ---------------------------------------------------------------- callbacks from patches
    def _invoke_by_name(self, name: str, payload: bytes) -> Any:
        return self.pool.invoke(self.functions[name], payload)

    def invoke_lambda(self, function: Any, event: Any) -> tuple[str, bool, str]:
        """moto ``_invoke_lambda`` replacement: run the real handler. Returns ``(payload, errored, logs)``."""
        spec = self.functions.get(function.function_name)
        if spec is None:
            body = {
                "errorType": "ResourceNotFoundException",
                "errorMessage": f"{function.function_name} is not a template function",
            }
            return json.dumps(body), True, ""
        payload = (
            event
            if isinstance(event, bytes)
            else (event.encode() if isinstance(event, str) else json.dumps(event).encode())
        )
        result = self.pool.invoke(spec, payload)
        return result.payload.decode("utf-8"), result.errored, result.logs

    def deliver(self, rule: Any, target: dict[str, Any], event: dict[str, Any]) -> None:
        """Deliver ``event`` from ``rule`` to a Lambda or Step Functions target, asynchronously as AWS does
        (:meth:`sagepipe.twin.events.delivery.Delivery.deliver`)."""
        self.delivery.deliver(rule, target, event)

    def invoke_event(self, name: str, payload: bytes) -> bool:
        """Lambda Invoke with ``InvocationType: Event``: run asynchronously as Lambda does
        (:meth:`sagepipe.twin.events.delivery.Delivery.invoke_event`); False for an unknown function."""
        return self.delivery.invoke_event(name, payload)

    def fire_schedule(self, rule: Any) -> None:
        """Send a "Scheduled Event" from ``rule`` to its targets now (also used by tests and the CLI)."""
        self.scheduler.fire(rule)
