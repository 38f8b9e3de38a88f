"""The local twin: moto's server on 127.0.0.1 with the twin's patches, ``template.yaml`` deployed onto
it, real Lambda workers, local SageMaker training and hosting, an EventBridge scheduler and the local
API Gateway front. ``Twin.start()`` returns when everything is ready; ``Twin.stop()`` stops every
process it started.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from . import iam, patches
from .apigateway import ApiFront
from .awslambda.runtime import WorkerPool
from .cloudformation.deploy import Deployer, Deployment
from .cloudformation.template import Stack, load_template
from .sagemaker.hosting import HostingManager
from .sagemaker.training import TrainingManager
from .sagemaker.tuning import TuningManager

REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
ASYNC_INVOKE_RETRIES = 2  # Lambda asynchronous invocation retries (AWS default)
MAX_ASYNC_PAYLOAD = 256 * 1024  # Lambda: an asynchronous invocation's event is at most 256 KB
_RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")


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
    defaults to 1 here so deploy polling is quick); ``echo`` prints function/training/model logs."""

    def __init__(
        self,
        root: Path,
        state_dir: Path,
        *,
        stack_name: str = "sagepipe",
        parameter_overrides: dict[str, str] | None = None,
        echo: bool = True,
        say: Callable[[str], None] | None = None,
    ) -> None:
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
        """Start moto, apply patches, deploy the template (which publishes the model code), start the API."""
        from moto.core.config import default_user_config
        from moto.server import ThreadedMotoServer

        self.state_dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        os.environ["MOTO_PORT"] = str(port)  # moto's Step Functions tasks call http://localhost:$MOTO_PORT
        default_user_config.setdefault("stepfunctions", {})["execute_state_machine"] = True
        self.endpoint = f"http://127.0.0.1:{port}"
        self.pool = WorkerPool(log_sink=self.log, log_dir=self.state_dir / "logs")
        # training jobs and endpoints call S3, CloudWatch Logs and CloudWatch as the SageMaker execution role
        self.training = TrainingManager(self.state_dir / "training", self.client, self.log)
        self.hosting = HostingManager(self.state_dir / "endpoints", lambda role: self.client("s3", role), self.log)
        self.tuning = TuningManager(lambda: self.client("sagemaker"), self.log)
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
        self.api = ApiFront(
            self.deployment.routes,
            self._invoke_by_name,
            stage=self.deployment.api_stage,
            cors=self.deployment.cors,
            iam_auth=self.deployment.iam_auth,
            api_keys={self.deployment.api_key} if self.deployment.api_key else None,
        )
        api_url = self.api.start()
        self._spawn(self._scheduler, "scheduler")
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
        return self.info

    def stop(self) -> None:
        """Stop the API, schedulers, training jobs, model servers, Lambda workers and moto."""
        self._stop.set()
        if self.api:
            self.api.stop()
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
        """Deliver ``event`` from ``rule`` to a Lambda or Step Functions target, asynchronously as AWS does.

        EventBridge → Lambda is an asynchronous Invoke. A *delivery* failure (no such function, an event
        over Lambda's 256 KB asynchronous payload limit) goes to the target's DeadLetterConfig queue. Once
        Lambda has accepted the event, a *function error* is Lambda's: 1 + ``MaximumRetryAttempts``
        (default 2) attempts, then the function's EventInvokeConfig ``OnFailure`` destination receives an
        invocation record (Lambda docs, "Asynchronous invocation" / "Capturing records of asynchronous
        invocations"); without one the event is dropped (logged), as on AWS.
        """
        self.events_log.append({"rule": rule.name, "target": target["Arn"], "event": event})

        def run() -> None:
            arn = target["Arn"]
            if ":states:" in arn:
                try:
                    self.client("stepfunctions").start_execution(stateMachineArn=arn, input=json.dumps(event))
                except Exception as exc:  # noqa: BLE001
                    self._dead_letter(target, event, repr(exc))
                return
            name = arn.split(":function:")[1].split(":")[0]
            payload = json.dumps(event).encode()
            if name not in self.functions:
                self._dead_letter(target, event, f"ResourceNotFoundException: Function not found: {arn}")
                return
            if len(payload) > MAX_ASYNC_PAYLOAD:
                self._dead_letter(
                    target, event, f"RequestEntityTooLargeException: {len(payload)} bytes > {MAX_ASYNC_PAYLOAD}"
                )
                return
            self._invoke_async(name, arn, event, payload)

        self._spawn(run, f"deliver-{rule.name}")

    def _invoke_async(self, name: str, arn: str, event: dict[str, Any], payload: bytes) -> None:
        """Lambda's asynchronous invocation of an accepted event: retries, then the on-failure destination."""
        config = self._event_invoke_config(name)
        retries = int(config.get("MaximumRetryAttempts", ASYNC_INVOKE_RETRIES))
        last: dict[str, Any] = {}
        attempts = 0
        for attempt in range(1 + retries):
            if attempt and self._stop.wait(min(2**attempt, 4)):  # AWS: about 1 min, then 2 min
                return
            attempts += 1
            try:
                result = self.pool.invoke(self.functions[name], payload)
            except Exception as exc:  # noqa: BLE001 - a crashed worker is a function error to Lambda
                last = {"errorType": type(exc).__name__, "errorMessage": str(exc)}
                continue
            if not result.errored:
                return
            try:
                last = json.loads(result.payload)
            except ValueError:
                last = {"errorMessage": result.payload.decode("utf-8", "replace")}
        on_failure = ((config.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        self.log("lambda", f"{name}: asynchronous event failed {attempts} times: {str(last)[:300]}")
        if not on_failure:
            self.log("lambda", f"{name}: no on-failure destination; the event is dropped (as on AWS)")
            return
        record = {
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": f"{arn}:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": attempts,
            },
            "requestPayload": event,
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": last,
        }
        if ":sqs:" not in on_failure:
            self.log("lambda", f"{name}: on-failure destination {on_failure} is not emulated (SQS only)")
            return
        url = self.client("sqs").get_queue_url(QueueName=on_failure.rsplit(":", 1)[1])["QueueUrl"]
        # Lambda sends the record with the function's execution role (Lambda Developer Guide, "Adding a
        # destination": the role needs sqs:SendMessage); denied, the record is lost, as on AWS
        role = iam.role_for_access_key(self.functions[name].environment.get("AWS_ACCESS_KEY_ID"))
        try:
            self.client("sqs", role).send_message(QueueUrl=url, MessageBody=json.dumps(record))
        except ClientError as exc:
            self.log("lambda", f"{name}: the on-failure record could not be sent to {on_failure}: {exc}")

    def _event_invoke_config(self, name: str) -> dict[str, Any]:
        """GetFunctionEventInvokeConfig of ``name`` ({} when none is set: Lambda's defaults apply)."""
        try:
            config: dict[str, Any] = self.client("lambda").get_function_event_invoke_config(FunctionName=name)
        except Exception:  # noqa: BLE001 - ResourceNotFoundException: no config, the defaults
            return {}
        return config

    def _dead_letter(self, target: dict[str, Any], event: dict[str, Any], error: str) -> None:
        self.log("events", f"delivery to {target['Arn']} failed: {error[:300]}")
        dlq = (target.get("DeadLetterConfig") or {}).get("Arn")
        if dlq:
            sqs = self.client("sqs")
            url = sqs.get_queue_url(QueueName=dlq.rsplit(":", 1)[1])["QueueUrl"]
            sqs.send_message(
                QueueUrl=url,
                MessageBody=json.dumps(event),
                MessageAttributes={
                    "ERROR_MESSAGE": {"DataType": "String", "StringValue": error[:256]},
                    "RULE_ARN": {"DataType": "String", "StringValue": target["Arn"]},
                },
            )

    # ------------------------------------------------------------------------- scheduler
    def _scheduler(self) -> None:
        """Fire enabled ``rate(...)`` schedule rules (cron expressions are reported, not fired)."""
        from moto.events.models import events_backends

        last: dict[str, float] = {}
        warned: set[str] = set()
        while not self._stop.wait(1.0):
            backend = events_backends["123456789012"][REGION]
            for bus in list(backend.event_buses.values()):
                for rule in list(bus.rules.values()):
                    expr = getattr(rule, "scheduled_expression", None)
                    if not expr or rule.state != "ENABLED":
                        continue
                    m = _RATE.match(expr)
                    if not m:
                        if rule.name not in warned:
                            self.say(f"schedule {expr!r} of rule {rule.name} is not fired by the twin (only rate())")
                            warned.add(rule.name)
                        continue
                    unit = {"minute": 60, "hour": 3600, "day": 86400}[m.group(2).rstrip("s")]
                    now = time.time()
                    if now - last.setdefault(rule.name, now) >= int(m.group(1)) * unit:
                        last[rule.name] = now
                        self.fire_schedule(rule)

    def fire_schedule(self, rule: Any) -> None:
        """Send a "Scheduled Event" from ``rule`` to its targets now (also used by tests and the CLI)."""
        import uuid

        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "region": REGION,
            "resources": [rule.arn],
            "detail": {},
        }
        for target in list(rule.targets):
            self.deliver(rule, target, event)
