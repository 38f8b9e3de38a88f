"""Small in-memory fakes of the AWS clients the core's steps call (the steps' ports), for direct unit tests.

Each fake implements only the operations the core calls, keeps its state in plain dicts the test can read
and seed, and answers errors as the service does (a ``ClientError`` with the service's code and message).
Every call's parameters are first checked against botocore's service model with botocore's own
``ParamValidator`` (required members, types, minimum lengths and ranges), so a request AWS would refuse
for its shape fails here too; then patterns, enums and maximum lengths (what AWS checks server-side) by
:func:`sagepipe.twin.validation.validate`, which raises the service's ``ValidationException``.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from urllib.parse import unquote

import botocore.session
from botocore.exceptions import ClientError
from botocore.handlers import handle_copy_source_param
from botocore.model import OperationModel
from botocore.validate import ParamValidator

from sagepipe.twin import validation


@cache
def _operation(service: str, operation: str) -> OperationModel:
    return botocore.session.get_session().get_service_model(service).operation_model(operation)


def _error(code: str, message: str, operation: str, status: int = 400) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, operation)


class FakeClient:
    """Base: records every call as ``(OperationName, params)`` after botocore's parameter validation."""

    service = ""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail: dict[str, ClientError] = {}  # OperationName -> error raised on its next call

    def _call(self, operation: str, params: dict[str, Any]) -> None:
        shape = _operation(self.service, operation).input_shape
        assert shape is not None, operation
        report = ParamValidator().validate(params, shape)
        if report.has_errors():
            raise AssertionError(f"{operation}: AWS would reject these parameters:\n{report.generate_report()}")
        validation.validate(self.service, operation, params)  # pattern, max, enum: as AWS answers
        self.calls.append((operation, params))
        if operation in self.fail:
            raise self.fail.pop(operation)

    def called(self, operation: str) -> list[dict[str, Any]]:
        """The parameters of every call of ``operation``, in order."""
        return [params for op, params in self.calls if op == operation]


class RecordingBody(io.BytesIO):
    """A GetObject ``Body``: counts the bytes read, so a test can tell a streamed read from a full one."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.size, self.bytes_read = len(data), 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk


class FakeS3(FakeClient):
    """S3 with versioning: ``objects[(bucket, key)]`` is the current bytes (a test may seed it directly).

    Every PutObject / CopyObject adds a version (``VersionId`` ``v1``, ``v2``... per key) and honours
    ``VersionId`` on reads, as a versioned bucket does; ``meta_of`` keeps each object's other PutObject
    parameters (``ContentType``...). ETags are ``"<version count>-<size>"``.
    """

    service = "s3"

    def __init__(self) -> None:
        super().__init__()
        self.objects: dict[tuple[str, str], bytes] = {}
        self.versions: dict[tuple[str, str], list[bytes]] = {}
        self.modified: dict[tuple[str, str], datetime] = {}
        self.meta_of: dict[tuple[str, str], dict[str, Any]] = {}
        self.bodies: dict[tuple[str, str], RecordingBody] = {}  # the last Body handed out per object
        self._clock = datetime(2026, 1, 1, tzinfo=UTC)

    def _get(self, op: str, bucket: str, key: str, version_id: str | None = None) -> bytes:
        if (bucket, key) not in self.objects:
            if op == "HeadObject":  # HEAD has no body: the HTTP status is the code
                raise _error("404", "Not Found", op, 404)
            raise _error("NoSuchKey", "The specified key does not exist.", op, 404)
        if version_id is None:
            return self.objects[bucket, key]
        versions = self.versions.get((bucket, key), [])
        n = int(version_id[1:]) if version_id[:1] == "v" and version_id[1:].isdigit() else 0
        if not 1 <= n <= len(versions):
            if op == "HeadObject":
                raise _error("404", "Not Found", op, 404)
            raise _error("NoSuchVersion", "The specified version does not exist.", op, 404)
        return versions[n - 1]

    def _store(self, bucket: str, key: str, data: bytes) -> dict[str, Any]:
        self.objects[bucket, key] = data
        versions = self.versions.setdefault((bucket, key), [])
        versions.append(data)
        self._clock += timedelta(seconds=1)
        self.modified[bucket, key] = self._clock
        return {"ETag": self._etag(bucket, key), "VersionId": f"v{len(versions)}"}

    def _etag(self, bucket: str, key: str) -> str:
        return f'"{len(self.versions.get((bucket, key), []))}-{len(self.objects[bucket, key])}"'

    def get_object(self, **params: Any) -> dict[str, Any]:
        self._call("GetObject", params)
        data = self._get("GetObject", params["Bucket"], params["Key"], params.get("VersionId"))
        body = self.bodies[params["Bucket"], params["Key"]] = RecordingBody(data)
        return {
            "Body": body,
            "ContentLength": len(data),
            "ETag": self._etag(params["Bucket"], params["Key"]),
            "LastModified": self._modified(params["Bucket"], params["Key"]),
        }

    def head_object(self, **params: Any) -> dict[str, Any]:
        self._call("HeadObject", params)
        data = self._get("HeadObject", params["Bucket"], params["Key"], params.get("VersionId"))
        return {
            "ContentLength": len(data),
            "ETag": self._etag(params["Bucket"], params["Key"]),
            "LastModified": self._modified(params["Bucket"], params["Key"]),
        }

    def _modified(self, bucket: str, key: str) -> datetime:
        """``LastModified``: the time of the last write (the fake's clock; a seeded object: the clock now)."""
        return self.modified.get((bucket, key), self._clock)

    def put_object(self, **params: Any) -> dict[str, Any]:
        self._call("PutObject", params)
        body = params.get("Body", b"")
        self.meta_of[params["Bucket"], params["Key"]] = {k: v for k, v in params.items() if k != "Body"}
        if hasattr(body, "read"):  # a file object, as boto3 accepts (streamed uploads)
            body = body.read()
        return self._store(params["Bucket"], params["Key"], body.encode() if isinstance(body, str) else bytes(body))

    def copy_object(self, **params: Any) -> dict[str, Any]:
        params = dict(params)
        handle_copy_source_param(params)  # botocore's own conversion of a CopySource dict, before validation
        self._call("CopyObject", params)
        source, _, version = params["CopySource"].partition("?versionId=")
        bucket, key = unquote(source).split("/", 1)
        data = self._get("CopyObject", bucket, key, unquote(version) or None)
        stored = self._store(params["Bucket"], params["Key"], data)
        return {"CopyObjectResult": {"ETag": stored["ETag"]}, "VersionId": stored["VersionId"]}

    def get_paginator(self, name: str) -> FakePaginator:
        assert name == "list_objects_v2", name
        return FakePaginator(self)


class FakePaginator:
    """``list_objects_v2`` pages (one page: the fakes hold few objects)."""

    def __init__(self, s3: FakeS3) -> None:
        self.s3 = s3

    def paginate(self, **params: Any) -> Iterator[dict[str, Any]]:
        self.s3._call("ListObjectsV2", params)
        prefix = params.get("Prefix", "")
        contents = [
            {"Key": k, "Size": len(v), "ETag": self.s3._etag(b, k), "LastModified": self.s3.modified.get((b, k))}
            for (b, k), v in sorted(self.s3.objects.items())
            if b == params["Bucket"] and k.startswith(prefix)
        ]
        yield {"Contents": contents, "KeyCount": len(contents)} if contents else {"KeyCount": 0}


class FakeStepFunctions(FakeClient):
    """Step Functions: ``executions[arn] = input``; StartExecution is idempotent for the same name and input."""

    service = "stepfunctions"

    def __init__(self) -> None:
        super().__init__()
        self.executions: dict[str, str] = {}
        self.task_outputs: dict[str, str] = {}  # task token -> SendTaskSuccess output
        self.histories: dict[str, list[dict[str, Any]]] = {}  # executionArn -> events, oldest first

    def describe_execution(self, **params: Any) -> dict[str, Any]:
        self._call("DescribeExecution", params)
        arn = params["executionArn"]
        if arn not in self.executions:
            raise _error("ExecutionDoesNotExist", f"Execution Does Not Exist: '{arn}'", "DescribeExecution")
        return {"executionArn": arn, "status": "RUNNING", "input": self.executions[arn]}

    def start_execution(self, **params: Any) -> dict[str, Any]:
        self._call("StartExecution", params)
        arn = f"{params['stateMachineArn'].replace(':stateMachine:', ':execution:')}:{params['name']}"
        if arn in self.executions and self.executions[arn] != params.get("input"):
            raise _error("ExecutionAlreadyExists", f"Execution Already Exists: '{arn}'", "StartExecution")
        self.executions[arn] = params.get("input", "{}")
        return {"executionArn": arn, "startDate": "2026-01-01T00:00:00Z"}

    def send_task_success(self, **params: Any) -> dict[str, Any]:
        self._call("SendTaskSuccess", params)
        self.task_outputs[params["taskToken"]] = params["output"]
        return {}

    def get_execution_history(self, **params: Any) -> dict[str, Any]:
        """``histories[arn]`` in pages of ``maxResults`` (default 100), newest first with ``reverseOrder``;
        ``nextToken`` is the next index."""
        self._call("GetExecutionHistory", params)
        arn = params["executionArn"]
        if arn not in self.histories:
            raise _error("ExecutionDoesNotExist", f"Execution Does Not Exist: '{arn}'", "GetExecutionHistory")
        events = list(reversed(self.histories[arn])) if params.get("reverseOrder") else list(self.histories[arn])
        start, size = int(params.get("nextToken") or 0), params.get("maxResults") or 100
        out: dict[str, Any] = {"events": events[start : start + size]}
        if start + size < len(events):
            out["nextToken"] = str(start + size)
        return out


class FakeSageMaker(FakeClient):
    """SageMaker: models, endpoint configs, endpoints, training jobs and the registry, as dicts by name.

    Missing resources answer ``ValidationException`` "Could not find ..." / "... does not exist." and
    duplicates "Cannot create already existing ...", as SageMaker does.
    """

    service = "sagemaker"

    def __init__(self) -> None:
        super().__init__()
        self.models: dict[str, dict[str, Any]] = {}
        self.endpoint_configs: dict[str, dict[str, Any]] = {}
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.training_jobs: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, dict[str, Any]] = {}
        self.packages: dict[str, dict[str, Any]] = {}

    @staticmethod
    def _missing(what: str, name: str, op: str) -> ClientError:
        return _error("ValidationException", f'Could not find {what} "{name}".', op)

    @staticmethod
    def _exists(what: str, name: str, op: str) -> ClientError:
        return _error("ValidationException", f'Cannot create already existing {what} "{name}".', op)

    def create_model(self, **params: Any) -> dict[str, Any]:
        self._call("CreateModel", params)
        if params["ModelName"] in self.models:
            raise self._exists("model", params["ModelName"], "CreateModel")
        self.models[params["ModelName"]] = params
        return {"ModelArn": f"arn:aws:sagemaker:us-east-1:123456789012:model/{params['ModelName'].lower()}"}

    def describe_model(self, **params: Any) -> dict[str, Any]:
        self._call("DescribeModel", params)
        if params["ModelName"] not in self.models:
            raise self._missing("model", params["ModelName"], "DescribeModel")
        return self.models[params["ModelName"]]

    def create_endpoint_config(self, **params: Any) -> dict[str, Any]:
        self._call("CreateEndpointConfig", params)
        name = params["EndpointConfigName"]
        if name in self.endpoint_configs:
            raise self._exists("endpoint configuration", name, "CreateEndpointConfig")
        self.endpoint_configs[name] = params
        return {"EndpointConfigArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/{name.lower()}"}

    def describe_endpoint_config(self, **params: Any) -> dict[str, Any]:
        self._call("DescribeEndpointConfig", params)
        name = params["EndpointConfigName"]
        if name not in self.endpoint_configs:
            raise self._missing("endpoint configuration", name, "DescribeEndpointConfig")
        return self.endpoint_configs[name]

    def create_endpoint(self, **params: Any) -> dict[str, Any]:
        self._call("CreateEndpoint", params)
        name = params["EndpointName"]
        if name in self.endpoints:
            raise self._exists("endpoint", name, "CreateEndpoint")
        self.endpoints[name] = {**params, "EndpointStatus": "Creating"}
        return {"EndpointArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{name.lower()}"}

    def describe_endpoint(self, **params: Any) -> dict[str, Any]:
        self._call("DescribeEndpoint", params)
        name = params["EndpointName"]
        if name not in self.endpoints:
            raise self._missing("endpoint", name, "DescribeEndpoint")
        return self.endpoints[name]

    def update_endpoint(self, **params: Any) -> dict[str, Any]:
        self._call("UpdateEndpoint", params)
        name = params["EndpointName"]
        if name not in self.endpoints:
            raise self._missing("endpoint", name, "UpdateEndpoint")
        self.endpoints[name] = {**self.endpoints[name], **params, "EndpointStatus": "Updating"}
        return {"EndpointArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{name.lower()}"}

    def describe_training_job(self, **params: Any) -> dict[str, Any]:
        self._call("DescribeTrainingJob", params)
        name = params["TrainingJobName"]
        if name not in self.training_jobs:
            raise _error("ValidationException", "Requested resource not found.", "DescribeTrainingJob")
        return self.training_jobs[name]

    def describe_model_package_group(self, **params: Any) -> dict[str, Any]:
        self._call("DescribeModelPackageGroup", params)
        name = params["ModelPackageGroupName"]
        if name not in self.groups:
            arn = f"arn:aws:sagemaker:us-east-1:123456789012:model-package-group/{name}"
            raise _error("ValidationException", f"ModelPackageGroup {arn} does not exist.", "DescribeModelPackageGroup")
        return self.groups[name]

    def create_model_package_group(self, **params: Any) -> dict[str, Any]:
        self._call("CreateModelPackageGroup", params)
        name = params["ModelPackageGroupName"]
        if name in self.groups:
            raise _error(
                "ValidationException", f"Model Package Group already exists: {name}", "CreateModelPackageGroup"
            )
        self.groups[name] = params
        return {"ModelPackageGroupArn": f"arn:aws:sagemaker:us-east-1:123456789012:model-package-group/{name}"}

    def create_model_package(self, **params: Any) -> dict[str, Any]:
        self._call("CreateModelPackage", params)
        group = params["ModelPackageGroupName"]
        if group not in self.groups:
            raise _error("ValidationException", f"Model package group {group} does not exist.", "CreateModelPackage")
        version = 1 + sum(1 for p in self.packages.values() if p["ModelPackageGroupName"] == group)
        arn = f"arn:aws:sagemaker:us-east-1:123456789012:model-package/{group}/{version}"
        self.packages[arn] = params
        return {"ModelPackageArn": arn}

    def update_model_package(self, **params: Any) -> dict[str, Any]:
        self._call("UpdateModelPackage", params)
        arn = params["ModelPackageArn"]
        if arn not in self.packages:
            raise _error("ValidationException", f"Model package {arn} does not exist.", "UpdateModelPackage")
        self.packages[arn] = {**self.packages[arn], **params}
        return {"ModelPackageArn": arn}


class FakeCloudWatch(FakeClient):
    """CloudWatch: ``alarms[AlarmName] = params`` (PutMetricAlarm creates or replaces)."""

    service = "cloudwatch"

    def __init__(self) -> None:
        super().__init__()
        self.alarms: dict[str, dict[str, Any]] = {}

    def put_metric_alarm(self, **params: Any) -> dict[str, Any]:
        self._call("PutMetricAlarm", params)
        self.alarms[params["AlarmName"]] = params
        return {}


class FakeEventBridge(FakeClient):
    """EventBridge: ``entries`` sent by PutEvents; ``failed`` makes every entry fail."""

    service = "events"

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[dict[str, Any]] = []
        self.failed = False

    def put_events(self, **params: Any) -> dict[str, Any]:
        self._call("PutEvents", params)
        if self.failed:
            n = len(params["Entries"])
            return {"FailedEntryCount": n, "Entries": [{"ErrorCode": "InternalFailure"}] * n}
        self.entries.extend(params["Entries"])
        return {"FailedEntryCount": 0, "Entries": [{"EventId": str(i)} for i, _ in enumerate(params["Entries"])]}
