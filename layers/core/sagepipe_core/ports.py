"""The ports of the pipeline steps: the AWS operations the core calls, one small interface per service.

A boto3/botocore client of that service satisfies its port (the handlers pass real clients), and so does an
in-memory fake that implements just these methods (tests/unit/fakes.py). Each method takes the operation's
request members as keyword arguments and returns its response dict, exactly as the boto3 client method of
the same name (boto3 docs, "Low-level clients"); errors are ``botocore.exceptions.ClientError``.

Listing the operations here keeps each step's reach visible and checked by mypy: a step cannot call an
operation its port does not declare, which mirrors the least-privilege grants in ``template.yaml``.
"""

from __future__ import annotations

from typing import Any, Protocol


class S3Port(Protocol):
    """S3 (GetObject, HeadObject, PutObject, CopyObject, the ListObjectsV2 paginator)."""

    def get_object(self, **params: Any) -> Any:
        """GetObject: ``{"Body": <streaming body>, "ContentLength", "ETag", ...}``."""

    def head_object(self, **params: Any) -> Any:
        """HeadObject: ``{"ContentLength", "ETag", ...}``; a missing key is a ``404`` ClientError."""

    def put_object(self, **params: Any) -> Any:
        """PutObject: ``{"ETag", "VersionId"?}``."""

    def copy_object(self, **params: Any) -> Any:
        """CopyObject (``CopySource`` as a ``{"Bucket", "Key", "VersionId"?}`` dict, as boto3 accepts)."""

    def get_paginator(self, operation_name: str) -> Any:
        """A paginator (the core uses ``list_objects_v2``)."""


class SageMakerPort(Protocol):
    """SageMaker control plane: models, endpoint configs, endpoints, training jobs, the model registry."""

    def create_model(self, **params: Any) -> Any:
        """CreateModel."""

    def describe_model(self, **params: Any) -> Any:
        """DescribeModel."""

    def create_endpoint_config(self, **params: Any) -> Any:
        """CreateEndpointConfig."""

    def describe_endpoint_config(self, **params: Any) -> Any:
        """DescribeEndpointConfig."""

    def create_endpoint(self, **params: Any) -> Any:
        """CreateEndpoint."""

    def describe_endpoint(self, **params: Any) -> Any:
        """DescribeEndpoint."""

    def update_endpoint(self, **params: Any) -> Any:
        """UpdateEndpoint."""

    def describe_training_job(self, **params: Any) -> Any:
        """DescribeTrainingJob."""

    def describe_model_package_group(self, **params: Any) -> Any:
        """DescribeModelPackageGroup."""

    def create_model_package_group(self, **params: Any) -> Any:
        """CreateModelPackageGroup."""

    def create_model_package(self, **params: Any) -> Any:
        """CreateModelPackage."""

    def update_model_package(self, **params: Any) -> Any:
        """UpdateModelPackage."""


class StepFunctionsPort(Protocol):
    """Step Functions (DescribeExecution, StartExecution, SendTaskSuccess, GetExecutionHistory)."""

    def describe_execution(self, **params: Any) -> Any:
        """DescribeExecution; a missing execution is an ``ExecutionDoesNotExist`` ClientError."""

    def start_execution(self, **params: Any) -> Any:
        """StartExecution: ``{"executionArn", "startDate"}``."""

    def send_task_success(self, **params: Any) -> Any:
        """SendTaskSuccess (resumes a ``waitForTaskToken`` task)."""

    def get_execution_history(self, **params: Any) -> Any:
        """GetExecutionHistory: ``{"events": [{"id", "type", "timestamp", ...}], "nextToken"?}``."""


class CloudWatchPort(Protocol):
    """CloudWatch (PutMetricAlarm)."""

    def put_metric_alarm(self, **params: Any) -> Any:
        """PutMetricAlarm (creates or replaces the alarm of that name)."""


class EventBridgePort(Protocol):
    """EventBridge (PutEvents)."""

    def put_events(self, **params: Any) -> Any:
        """PutEvents: ``{"FailedEntryCount", "Entries"}``."""
