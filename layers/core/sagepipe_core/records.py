"""The records that cross states: what each pipeline step takes from and returns to the state machine.

Stdlib typing only (``TypedDict``): they describe the JSON the ASL passes (``Parameters`` / ``Payload`` of
each Task in ``statemachines/training_pipeline.asl.json``) and reads back (its ``ResultSelector``), so a
key renamed here must be renamed there. Lambda delivers the payload as parsed JSON; the handlers hand it
to the steps as these types (the ASL is the only producer), and the steps return them.

Nested parts that mirror an AWS request (the CreateTrainingJob / CreateHyperParameterTuningJob fields) or
the resolved per-model config (:meth:`sagepipe_core.config.ModelConfig.resolved`) stay ``dict[str, Any]``:
their shapes are the AWS API's and the config model's.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

# ---------------------------------------------------------------------------------------- start


class RunStarted(TypedDict):
    """One data version whose execution was started (or already existed: a redelivery)."""

    status: Literal["started", "already_started"]
    execution_name: str
    execution_arn: str
    key: str
    model: str


class RunSkipped(TypedDict):
    """An event item deliberately not run; ``reason`` says why."""

    status: Literal["skipped"]
    reason: str
    key: str | None


class RunDeadLettered(TypedDict):
    """An event item that can never start, sent to the dead-letter queue with its reason."""

    status: Literal["dead_lettered"]
    reason: str | None
    error: str
    message: str


class RunRetry(TypedDict):
    """An event item that failed for a passing reason; the event is raised again for Lambda to retry."""

    status: Literal["retry"]
    error: dict[str, Any]


StartResult = RunStarted | RunSkipped | RunDeadLettered | RunRetry


# ------------------------------------------------------------------------------------- validate
class DatasetRef(TypedDict):
    """The data set version an execution runs on (the execution input's ``dataset``)."""

    bucket: str
    key: str
    etag: str
    version_id: str | None
    size: int | None


class ExecutionInput(TypedDict):
    """The StartExecution ``input`` (:meth:`sagepipe_core.events.DataVersion.execution_input`)."""

    dataset: DatasetRef
    model: str
    trigger: str
    poll_seconds: NotRequired[int]
    max_polls: NotRequired[int]


class ValidateInput(TypedDict):
    """ValidateData's payload: the execution input and ``$$.Execution.Name``."""

    execution: ExecutionInput
    execution_name: str


class DatasetRecord(DatasetRef):
    """``DatasetRef`` plus the validated data's summary (:meth:`sagepipe_core.dataset.Dataset.summary`)."""

    rows: int
    columns: int
    target: str
    classes: int
    class_counts: dict[str, int]  # at most 20 classes (the largest); all of them are in ``profile``
    class_counts_truncated: NotRequired[bool]
    profile: str  # s3://<artifacts>/runs/<model>/<execution>/dataset.json: header and every class count
    last_modified: NotRequired[str]  # the object's LastModified (HeadObject), whole seconds UTC: data order
    excluded: NotRequired[dict[str, str]]  # columns that are not features -> why (config, unique_text, row_number)
    stray_values: NotRequired[dict[str, int]]  # numeric column -> stray texts read as missing


class Splits(TypedDict):
    """S3 prefixes of the written splits (``s3://<artifacts>/runs/<model>/<execution>/splits/<name>/``)."""

    train: str
    validation: str
    test: str
    rows: dict[str, int]  # rows per split name
    manifest: str  # s3:// URI of the split manifest (identities of the train and validation rows)


class Champion(TypedDict):
    """The production model the challenger is compared with."""

    endpoint_config_name: str | None
    model_data_url: str


class RunNames(TypedDict):
    """Per-run SageMaker names (:func:`sagepipe_core.naming.version_names` plus the endpoint)."""

    TrainingJobName: str
    ModelName: str
    EndpointConfigName: str
    EndpointName: str


class RunRecord(TypedDict):
    """ValidateData's result; the ASL keeps it at ``$.run`` (without ``model``, which is at ``$.model``)."""

    model: NotRequired[str]
    dataset: DatasetRecord
    config: dict[str, Any]  # the resolved per-model config
    splits: Splits
    champion: Champion | None
    training: dict[str, Any]  # CreateTrainingJob fields the ASL passes through
    tuning: dict[str, Any] | None  # CreateHyperParameterTuningJob fields, or None without tuning
    names: RunNames
    regates: NotRequired[int]  # how many times the champion changed under the run (set by the ASL's Regate)


# ------------------------------------------------------------------------------------- evaluate
class TrainedModel(TypedDict):
    """``$.trained``: the training task's ``TrainingJobName`` and ``ModelArtifacts.S3ModelArtifacts``."""

    TrainingJobName: str
    ModelArtifacts: str


class EvaluateInput(TypedDict):
    """EvaluateModel's payload; ``model``, ``dataset`` and ``names`` are the run report's lineage."""

    config: dict[str, Any]
    training: TrainedModel
    execution_name: NotRequired[str]
    model: NotRequired[str]
    dataset: NotRequired[DatasetRecord]
    names: NotRequired[RunNames]


class GateDecision(TypedDict):
    """The gate's decision record (:func:`sagepipe_core.gate.decide`); the ASL keeps it at ``$.evaluation.record``.

    ``challenger`` / ``champion`` are the ``test`` values of ``metric`` (None when absent or not finite);
    ``metrics`` (added by the Evaluate step) is the report's metrics per split, non-finite values as None.
    A scored champion is scored on the test rows that did not train it: ``champion_rows_scored`` rows,
    ``champion_overlap`` left out (None: its lineage is unknown), and ``challenger_compared`` is the
    challenger's value on those same rows. ``schema_change`` is the feature-set change from the champion
    (``{"added", "removed", "retyped", "counts"}``, None when unchanged); ``approval_required`` says the
    ``schema_change`` policy ``manual`` sends the candidate to manual approval.
    """

    deploy: bool
    decision: Literal["deploy", "reject"]
    rule: str
    reason: str
    metric: str
    higher_is_better: bool
    threshold: float
    challenger: float | None
    champion: float | None
    champion_status: str | None
    champion_rows_scored: int | None
    champion_overlap: int | None
    challenger_compared: float | None
    schema_change: dict[str, Any] | None
    approval_required: bool
    metrics: NotRequired[dict[str, Any] | None]
    report: NotRequired[str | None]  # s3:// URI of the run report (added by the Evaluate step)


# ------------------------------------------------------------------------------------- register
class RegisterInput(TypedDict):
    """RegisterModel's payload."""

    model: str
    config: dict[str, Any]
    run: RunRecord
    trained: TrainedModel
    decision: GateDecision
    execution_name: str


class RegisteredPackage(TypedDict):
    """RegisterModel's result, at ``$.registered``."""

    ModelPackageArn: str
    ModelPackageGroupName: str
    approval: str  # the effective approval mode: "auto" | "manual" (steps.effective_approval)
    report: NotRequired[str]  # s3:// URI of the run report, rendered again with the package


# ------------------------------------------------------------------------------------- approval
class ApprovalInput(TypedDict):
    """RequestApproval's payload (``lambda:invoke.waitForTaskToken``)."""

    task_token: str
    model: str
    execution_name: str
    registered: RegisteredPackage
    decision: GateDecision


class ApprovalNeeded(TypedDict):
    """The detail of the "Pipeline Approval Needed" event (never the task token)."""

    model: str
    execution: str
    outcome: Literal["approval_needed"]
    model_package_arn: str
    decision: GateDecision
    schema_change: dict[str, Any] | None  # the feature-set change that needs the approval (None: config approval)
    how_to_decide: str


# --------------------------------------------------------------------------------------- deploy
class DeployInput(TypedDict):
    """DeployModel's payload."""

    names: RunNames
    config: dict[str, Any]
    training: TrainedModel
    execution_name: NotRequired[str]
    model: NotRequired[str]
    run: NotRequired[RunRecord]  # the dataset, champion and requests the candidate was gated with


class DeployResult(TypedDict):
    """DeployModel's result, at ``$.deployment``; the ASL then polls DescribeEndpoint."""

    EndpointName: str
    EndpointConfigName: str
    ModelName: str
    action: Literal["create", "update", "noop", "superseded", "regate"]
    previous_endpoint_config_name: str | None
    live: LiveModel | None  # the model live when the deploy re-checked (None before a create)
    regate: NotRequired[Regate | None]  # with action "regate": what the run trains again with


class LiveModel(TypedDict):
    """The model an endpoint serves (:func:`sagepipe_core.deploy.describe_live_model`)."""

    EndpointConfigName: str
    ModelName: str
    ModelDataUrl: str | None
    data_key: str | None  # the data version it was trained on (its Model's Environment), None if unknown
    data_last_modified: str | None


class Regate(TypedDict):
    """A run's next attempt after the champion changed under it: merged into ``$.run`` by the ASL."""

    names: RunNames
    champion: Champion
    training: dict[str, Any]
    tuning: dict[str, Any] | None
    regates: int
