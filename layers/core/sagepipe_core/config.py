"""Per-model config: ``s3://<data bucket>/datasets/<model>/sagepipe.json`` (optional).

Validated with pydantic (from the Powertools layer). Every field has a default, so a model with no
config file trains as a binary classifier on the CSV's last column. See README "Per-model config".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, model_validator

from .errors import InvalidConfigError

CONFIG_FILE_NAME = "sagepipe.json"

ProblemType = Literal["binary", "multiclass", "regression"]

#: Metrics ``model/train.py`` reports per problem type (test split is used by the gate).
METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("auc", "accuracy", "f1", "logloss"),
    "multiclass": ("macro_f1", "accuracy", "logloss"),
    "regression": ("rmse", "mae", "r2"),
}
#: True where a larger value is better.
HIGHER_IS_BETTER: dict[str, bool] = {
    "auc": True,
    "accuracy": True,
    "f1": True,
    "macro_f1": True,
    "r2": True,
    "logloss": False,
    "rmse": False,
    "mae": False,
}
DEFAULT_METRIC: dict[str, str] = {"binary": "auc", "multiclass": "macro_f1", "regression": "r2"}
DEFAULT_THRESHOLD: dict[str, float] = {"auc": 0.75, "macro_f1": 0.5, "r2": 0.5}


#: The state machine's ``TimeoutSeconds`` as shipped (statemachines/training_pipeline.asl.json, 7 days);
#: ValidateData reads the deployed value from ``PIPELINE_TIMEOUT_SECONDS`` (template.yaml).
DEFAULT_PIPELINE_TIMEOUT_SECONDS = 7 * 24 * 3600
#: Time reserved for everything but training, approval and deploy polling: ValidateData (300 s Lambda),
#: EvaluateModel, RegisterModel, the SageMaker Update/Describe calls, the notifications and every Retry's
#: backoff (MaxDelaySeconds 60-300 s). One hour bounds their sum with room to spare.
PIPELINE_OVERHEAD_SECONDS = 3600


@dataclass(frozen=True)
class StackLimits:
    """What the deployed stack imposes on every model's config (from the validate function's environment).

    - ``pipeline_timeout_seconds``: the state machine's ``TimeoutSeconds``. When the execution times out
      first, no Catch runs (Step Functions ends it TIMED_OUT), so each step's own limit must fit inside it.
    - ``deploy_seconds``: the deploy step's polling budget of this run (``PollSeconds`` x ``MaxPolls``).
    - ``endpoint_instance_count``: the default ``endpoint.instance_count`` (template parameter
      ``EndpointInstanceCount``; ``prod`` deploys with 2, which SageMaker spreads across Availability Zones).
    """

    pipeline_timeout_seconds: int = DEFAULT_PIPELINE_TIMEOUT_SECONDS
    deploy_seconds: int = 30 * 240
    endpoint_instance_count: int = 1


#: CreateTrainingJob ``HyperParameters`` value length (botocore's ``HyperParameterValue``: 0-2,500).
HYPERPARAMETER_VALUE_MAX = 2500
#: The longest column name ValidateData's header check accepts (``sagepipe_core.dataset``, check
#: ``header``), and so the longest a config may name (``target``, ``exclude``, ``include``). A name travels
#: as a training hyperparameter (``target``, ``exclude_columns``: JSON, at most
#: :data:`HYPERPARAMETER_VALUE_MAX` characters) and into ``schema.json``; 1,024 characters leave room for
#: JSON escapes and for more than one excluded column.
COLUMN_NAME_MAX = 1024
#: ``exclude`` / ``include`` list lengths: at most this many names each.
COLUMN_LIST_MAX = 1000


def column_name_problem(name: str) -> str | None:
    """Why ``name`` can never be a column of a data set ValidateData accepts, or None when it can be.

    The header check strips each name and refuses blank ones and names longer than
    :data:`COLUMN_NAME_MAX` characters, so a name that is blank, has surrounding whitespace or is longer
    cannot be one.
    """
    if not name.strip():
        return "is blank"
    if name != name.strip():
        return "has surrounding whitespace (column names are stripped)"
    if len(name) > COLUMN_NAME_MAX:
        return f"is {len(name)} characters long; a column name has at most {COLUMN_NAME_MAX}"
    return None


def _column_name(name: str) -> str:
    problem = column_name_problem(name)
    if problem:
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise ValueError(f"column name {shown!r} {problem}")
    return name


#: A config's name of a column (``target``, ``exclude`` / ``include`` items): :func:`column_name_problem`.
ColumnName = Annotated[str, AfterValidator(_column_name)]


#: Hyperparameters sagepipe sets itself (``training.hyperparameters``); a config may not set them.
RESERVED_HYPERPARAMETERS = frozenset({"target", "problem_type", "seed", "exclude_columns", "missing_features"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitConfig(_Strict):
    """Fractions of rows for the train / validation / test channels (sum 1) and the shuffle seed."""

    train: float = Field(0.7, gt=0, lt=1)
    validation: float = Field(0.15, gt=0, lt=1)
    test: float = Field(0.15, gt=0, lt=1)
    seed: int = 42

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitConfig:
        if not math.isclose(self.train + self.validation + self.test, 1.0, abs_tol=1e-6):
            raise ValueError("split fractions train + validation + test must sum to 1")
        return self


class TrainingResources(_Strict):
    """SageMaker ``ResourceConfig`` / ``StoppingCondition`` for the training job."""

    instance_type: str = Field("ml.m5.large", pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
    instance_count: Literal[1] = 1  # scikit-learn trains on one instance
    volume_size_gb: int = Field(10, ge=1, le=16384)
    max_runtime_seconds: int = Field(3600, ge=60, le=432000)


class ServerlessEndpoint(_Strict):
    """``ProductionVariant.ServerlessConfig`` (SageMaker Serverless Inference).

    ``memory_size_in_mb``: 1024-6144 in 1 GB steps (``MemorySizeInMB``); ``max_concurrency``: 1-200
    (``MaxConcurrency``). Serverless endpoints take payloads up to 4 MB (InvokeEndpoint) and support no
    data capture (SageMaker Developer Guide, "Serverless Inference": feature exclusions).
    """

    memory_size_in_mb: int = Field(2048, ge=1024, le=6144, multiple_of=1024)
    max_concurrency: int = Field(5, ge=1, le=200)


class EndpointResources(_Strict):
    """``ProductionVariants[0]``: instance type and count (or ``serverless``), and data capture.

    ``serverless`` (:class:`ServerlessEndpoint`): the variant gets a ``ServerlessConfig`` instead of the
    instance type and count (which are then not used).

    ``data_capture_percentage`` (0-100, SageMaker's ``DataCaptureConfig.InitialSamplingPercentage`` range):
    the share of InvokeEndpoint requests whose input and output the endpoint writes to S3 (0: no
    ``DataCaptureConfig``; see :func:`sagepipe_core.deploy.data_capture_config`).
    """

    instance_type: str = Field("ml.m5.large", pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
    instance_count: int = Field(1, ge=1, le=10)
    data_capture_percentage: int = Field(0, ge=0, le=100)
    serverless: ServerlessEndpoint | None = None

    @model_validator(mode="after")
    def _serverless_has_no_data_capture(self) -> EndpointResources:
        """Serverless endpoints support no data capture (SageMaker Serverless Inference feature exclusions)."""
        if self.serverless is not None and self.data_capture_percentage:
            raise ValueError(
                "data_capture_percentage must be 0 with serverless: serverless endpoints support no data capture"
            )
        return self


class DriftConfig(_Strict):
    """The drift check of a model whose endpoint captures data (:mod:`sagepipe_core.drift`).

    - ``window_hours`` (1-336): the check reads the records captured in the last ``window_hours``, and
      never records from before the live model went live;
    - ``min_samples`` (≥ 30): fewer records than this in the window are not judged ("insufficient_data");
    - ``psi_threshold``, ``ks_threshold`` (numeric), ``linf_threshold`` (categorical): a feature drifts when
      its PSI, or its second score, reaches the threshold;
    - ``retrain``: a "Drift Detected" event then says ``retrain: true`` and the stack's DriftRetrainRule
      starts a retrain on the model's latest data (at most once per live model version).
    """

    window_hours: int = Field(24, ge=1, le=336)
    min_samples: int = Field(500, ge=30, le=10_000_000)
    psi_threshold: float = Field(0.2, gt=0, le=10)
    ks_threshold: float = Field(0.15, gt=0, le=1)
    linf_threshold: float = Field(0.15, gt=0, le=1)
    retrain: bool = False


class ParameterRange(_Strict):
    """One tuned hyperparameter (HyperParameterTuningJobConfig.ParameterRanges).

    ``integer`` and ``continuous`` take ``min_value``/``max_value`` (and ``scaling``), ``categorical`` takes
    ``values``.
    """

    type: Literal["integer", "continuous", "categorical"]
    min_value: float | None = None
    max_value: float | None = None
    values: list[str] | None = None
    scaling: Literal["Auto", "Linear", "Logarithmic", "ReverseLogarithmic"] = "Auto"

    @model_validator(mode="after")
    def _bounds(self) -> ParameterRange:
        if self.type == "categorical":
            if not self.values:
                raise ValueError("a categorical range needs values")
        elif self.min_value is None or self.max_value is None or self.min_value > self.max_value:
            raise ValueError(f"a {self.type} range needs min_value <= max_value")
        return self


class TuningConfig(_Strict):
    """Optional hyperparameter tuning (CreateHyperParameterTuningJob).

    Ranges, the objective (``<split>:<metric>``; default ``validation:<gate metric>``), job limits and the
    strategy.
    """

    parameter_ranges: dict[str, ParameterRange] = Field(min_length=1)
    objective: str | None = Field(None, pattern=r"^(train|validation):[a-z0-9_]+$")
    max_jobs: int = Field(3, ge=1, le=100)
    max_parallel_jobs: int = Field(1, ge=1, le=10)
    strategy: Literal["Bayesian", "Random"] = "Bayesian"


class ModelConfig(_Strict):
    """The per-model config. JSON field names are the attribute names below.

    - ``target``: label column (default: the CSV's last column).
    - ``problem_type``: ``binary`` | ``multiclass`` | ``regression``.
    - ``metric`` / ``threshold``: the gate metric on the test split and its absolute bar
      (defaults: auc ≥ 0.75, macro_f1 ≥ 0.5, r2 ≥ 0.5); ``higher_is_better`` defaults by metric.
    - ``tolerance``: how much worse than the champion the challenger may be and still deploy;
      ``min_improvement``: how much better it must be (use one or the other; both default 0).
    - ``incompatible_champion``: ``threshold_only`` or ``reject`` when the champion cannot be scored on
      the new test split (a champion feature is missing, or the target, problem type or labels changed).
    - ``schema_change``: what a candidate whose feature set differs from the champion's (a breaking
      change of the API contract) needs: ``manual`` (default: manual approval even under
      ``approval: auto``, the request shows the diff), ``auto`` (deployed by the gate alone) or ``reject``.
    - ``approval``: ``auto`` (a passing candidate is Approved and deployed) or ``manual`` (it waits,
      with a task token, for ``sagepipe approve``/``reject``; ``approval_timeout_seconds`` rejects).
    - ``hyperparameters``: passed to ``model/train.py``; ``training`` / ``endpoint``: resources.
    - ``tuning``: optional :class:`TuningConfig`; the train step becomes a tuning job and its best
      training job goes on to evaluation.
    - ``split``, ``min_rows``, ``min_rows_per_class``, ``max_dataset_bytes``: data contract.
    - ``exclude``: columns that are never features; ``include``: columns kept as features even when
      ValidateData finds them identifier-like (:func:`sagepipe_core.dataset.parse_and_validate`).
    - ``missing_features``: what the API does with a record that lacks a feature training never saw
      missing: ``impute`` (the model imputes it, the response warns per record) or ``reject`` (422).
    - ``drift``: :class:`DriftConfig`, used when ``endpoint.data_capture_percentage`` > 0.
    """

    target: ColumnName | None = None
    problem_type: ProblemType = "binary"
    metric: str | None = None
    threshold: float | None = None
    higher_is_better: bool | None = None
    tolerance: float = Field(0.0, ge=0)
    min_improvement: float = Field(0.0, ge=0)
    incompatible_champion: Literal["threshold_only", "reject"] = "threshold_only"
    schema_change: Literal["manual", "auto", "reject"] = "manual"
    approval: Literal["auto", "manual"] = "auto"
    approval_timeout_seconds: int = Field(86400, ge=1, le=31536000)
    hyperparameters: dict[str, str | int | float | bool] = Field(default_factory=dict)
    split: SplitConfig = Field(default_factory=SplitConfig)
    min_rows: int = Field(50, ge=3)
    min_rows_per_class: int = Field(10, ge=1)
    max_dataset_bytes: int = Field(64 * 1024 * 1024, ge=1, le=256 * 1024 * 1024)  # parsed in ValidateData's memory
    training: TrainingResources = Field(default_factory=TrainingResources)
    endpoint: EndpointResources = Field(default_factory=EndpointResources)
    tuning: TuningConfig | None = None
    exclude: list[ColumnName] = Field(default_factory=list, max_length=COLUMN_LIST_MAX)
    include: list[ColumnName] = Field(default_factory=list, max_length=COLUMN_LIST_MAX)
    missing_features: Literal["impute", "reject"] = "impute"
    drift: DriftConfig = Field(default_factory=DriftConfig)

    @model_validator(mode="before")
    @classmethod
    def _stack_defaults(cls, data: Any, info: ValidationInfo) -> Any:
        """Fill ``endpoint.instance_count`` from the stack's default when the document leaves it out."""
        limits = (info.context or {}).get("limits")
        if isinstance(limits, StackLimits) and isinstance(data, dict) and isinstance(data.get("endpoint", {}), dict):
            data = {**data, "endpoint": {"instance_count": limits.endpoint_instance_count, **data.get("endpoint", {})}}
        return data

    @model_validator(mode="after")
    def _fits_the_execution_timeout(self, info: ValidationInfo) -> ModelConfig:
        """Training, the manual approval and deploy polling must end before the execution's own timeout.

        A Step Functions execution that times out runs no Catch (no MarkRejected, no notification from
        the state machine), so the per-step limits must be the ones that fire.
        """
        limits = (info.context or {}).get("limits")
        if not isinstance(limits, StackLimits):
            return self
        waves = math.ceil(self.tuning.max_jobs / self.tuning.max_parallel_jobs) if self.tuning else 1
        budget = {
            "training.max_runtime_seconds": self.training.max_runtime_seconds * waves,
            "approval_timeout_seconds": self.approval_timeout_seconds if self.approval == "manual" else 0,
            "deploy polling (PollSeconds x MaxPolls)": limits.deploy_seconds,
            "validation, evaluation, registration, notifications": PIPELINE_OVERHEAD_SECONDS,
        }
        total = sum(budget.values())
        if total > limits.pipeline_timeout_seconds:
            parts = ", ".join(f"{k} {v} s" for k, v in budget.items() if v)
            tuned = f" (x{waves} sequential tuning rounds)" if waves > 1 else ""
            raise ValueError(
                f"the run could take {total} s ({parts}{tuned}) but the pipeline execution times out after "
                f"{limits.pipeline_timeout_seconds} s: lower training.max_runtime_seconds or "
                "approval_timeout_seconds"
            )
        return self

    @model_validator(mode="after")
    def _metric_fits_problem(self) -> ModelConfig:
        if self.metric is not None and self.metric not in METRICS[self.problem_type]:
            raise ValueError(
                f"metric {self.metric!r} is not reported for {self.problem_type}; "
                f"choose one of {list(METRICS[self.problem_type])}"
            )
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise ValueError("threshold must be a finite number")
        if self.threshold is None and self.gate_metric not in DEFAULT_THRESHOLD:
            raise ValueError(
                f"threshold is required for metric {self.gate_metric!r} (defaults exist only for "
                f"{sorted(DEFAULT_THRESHOLD)})"
            )
        self._check_column_names()
        for key in [*self.hyperparameters, *(self.tuning.parameter_ranges if self.tuning else {})]:
            if key in RESERVED_HYPERPARAMETERS or key.startswith("sagemaker_"):
                raise ValueError(f"hyperparameter {key!r} is reserved")
        if (
            self.tuning
            and self.tuning.objective
            and self.tuning.objective.split(":")[1] not in METRICS[self.problem_type]
        ):
            raise ValueError(f"tuning objective {self.tuning.objective!r} is not reported for {self.problem_type}")
        return self

    def _check_column_names(self) -> None:
        """No column both excluded and included; the excluded names alone fit ``exclude_columns``.

        That hyperparameter holds ``{name: "config"}`` as JSON, at most :data:`HYPERPARAMETER_VALUE_MAX`
        characters: otherwise ValidateData could never pass them on. Each name is already a possible
        column name (:data:`ColumnName`).
        """
        both = sorted(set(self.exclude) & set(self.include))
        if both:
            raise ValueError(f"columns both excluded and included: {both[:20]}")
        size = len(json.dumps(dict.fromkeys(self.exclude, "config")))
        if size > HYPERPARAMETER_VALUE_MAX:
            raise ValueError(
                f"exclude: {len(set(self.exclude))} column names take {size} characters in the training job's "
                f"exclude_columns hyperparameter; at most {HYPERPARAMETER_VALUE_MAX} fit (drop the columns from "
                "the CSV instead)"
            )

    @property
    def gate_metric(self) -> str:
        """The metric the gate compares (explicit or the problem type's default)."""
        return self.metric or DEFAULT_METRIC[self.problem_type]

    @property
    def gate_threshold(self) -> float:
        """The absolute bar for :attr:`gate_metric`."""
        if self.threshold is not None:
            return self.threshold
        return DEFAULT_THRESHOLD[self.gate_metric]  # the validator requires a threshold otherwise

    @property
    def maximize(self) -> bool:
        """True where a larger metric is better."""
        if self.higher_is_better is not None:
            return self.higher_is_better
        return HIGHER_IS_BETTER[self.gate_metric]

    def resolved(self, target: str) -> dict[str, Any]:
        """The config as the state machine carries it: JSON-safe, every default filled in."""
        data = self.model_dump()
        data.update(
            target=target, metric=self.gate_metric, threshold=self.gate_threshold, higher_is_better=self.maximize
        )
        return data


def parse_config(raw: bytes | str | dict[str, Any] | None, limits: StackLimits | None = None) -> ModelConfig:
    """Parse and validate a config document.

    ``raw`` is the JSON bytes/str of ``sagepipe.json``, an already-parsed dict, or None (defaults).
    ``limits`` (default: :class:`StackLimits` as shipped) are the deployed stack's: the run's time budget
    must fit the execution's ``TimeoutSeconds`` and the endpoint instance count defaults from it.
    Raises :class:`InvalidConfigError` with ``details["errors"]`` listing each bad field.
    """
    limits = limits or StackLimits()
    if raw is None:
        raw = {}
    try:
        data = json.loads(raw) if isinstance(raw, (bytes, str)) else raw
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidConfigError(f"{CONFIG_FILE_NAME} is not valid JSON: {exc}", check="config") from exc
    if not isinstance(data, dict):
        raise InvalidConfigError(f"{CONFIG_FILE_NAME} must be a JSON object", check="config")
    try:
        return ModelConfig.model_validate(data, context={"limits": limits})
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in err["loc"]) or "(root)", "error": err["msg"]} for err in exc.errors()
        ]
        raise InvalidConfigError(f"{CONFIG_FILE_NAME} is not valid", check="config", errors=errors) from exc
