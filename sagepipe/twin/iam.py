"""The twin's IAM: every call a template role makes is authorised against that role's policies.

Who calls as which role (as on AWS):

- a Lambda worker signs with its function role's access key (``AWS_ACCESS_KEY_ID`` in its environment);
- Step Functions' service integrations sign with the state machine's role (moto's task clients are
  re-bound by the ``sfn_credentials`` patch; ``StateCredentials.role_arn`` is the execution's role);
- a training job reads its channels and code, writes its artefacts, its logs and its metrics, and an
  endpoint reads its model data, with the SageMaker execution role of the request (``RoleArn`` /
  ``ExecutionRoleArn``);
- what SageMaker and Step Functions do with those roles without an API call in the twin is checked
  directly (:func:`denial`): pulling the training/serving image (ECR actions; ValidationException at
  CreateTrainingJob/CreateModel), reading the auto-rollback alarms at UpdateEndpoint (ValidationException),
  and the ``.sync`` integrations' managed EventBridge rule and ListTags (the task fails);
- the twin itself (deployer, CLI, tests) signs with ``testing``: unrestricted, as an administrator.

Every role ARN has one deterministic access key (:func:`access_key_for`); the moto server, in the same
process, maps it back (:func:`role_for_access_key`) and reads the role's policies from moto's IAM
backend, where the deployer put them (SAM policy templates expanded from aws-sam-translator's own
``policy_templates.json``, as the SAM transform expands them; see :mod:`sagepipe.twin.cloudformation.deploy`).

Evaluation (:func:`evaluate`) follows AWS's documented policy evaluation logic for identity-based
policies of one account ("Policy evaluation logic", IAM User Guide): an explicit ``Deny`` wins, else an
``Allow`` that applies allows, else the request is implicitly denied. Supported statement forms:

- ``Effect`` Allow/Deny; ``Action``/``NotAction`` (``*`` and ``?`` wildcards, case-insensitive);
  ``Resource``/``NotResource`` matched as ARNs (``*`` alone matches all; otherwise the partition,
  service, Region and account segments each match on their own and the resource segment may span ``:``
  and ``/``, as ``ArnLike`` does);
- ``Condition`` with ``StringEquals``, ``StringNotEquals``, ``StringEqualsIgnoreCase``,
  ``StringNotEqualsIgnoreCase``, ``StringLike``, ``StringNotLike``, ``ArnEquals``, ``ArnLike``,
  ``ArnNotEquals``, ``ArnNotLike``, ``Bool``, ``Null`` and the ``...IfExists`` forms: several values of
  one key are ORed, several keys and operators ANDed; a key missing from the request makes a positive
  operator false and a negated one true (IAM User Guide, "Condition operators").

Condition keys the twin puts in the request context: ``iam:PassedToService`` (for the ``iam:PassRole``
that SageMaker's Create* calls imply), ``cloudwatch:namespace`` (PutMetricData). Not covered (a policy
that uses one fails the evaluation with :class:`UnsupportedPolicy` rather than guessing): policy
variables (``${aws:username}``), ``ForAnyValue:``/``ForAllValues:`` set operators, numeric/date/IP
operators. Not evaluated at all: resource-based policies (bucket, queue, topic, Lambda permissions: the
deployer keeps them, the twin's service principals are not checked against them), AWS managed policies
(``AWSLambdaBasicExecutionRole`` ...: not attached; the twin's Lambda logs do not go through CloudWatch
Logs), permission boundaries, session policies, SCPs/RCPs, cross-account access, KMS key policies.

Request → (action, resources, context): the action is ``<IAM prefix>:<operation>`` from the request's
SigV4 signing name and botocore's operation name (``monitoring`` → ``cloudwatch``, Lambda ``Invoke`` →
``lambda:InvokeFunction``); the resource ARNs come from :data:`RESOURCES`, a table for the operations
sagepipe's roles call (from the Service Authorization Reference's resource types), and S3's from
:func:`s3_checks`. A role calling an operation the table lacks is denied with a message saying so (fail
closed: add the operation to the table).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import inspect
import json
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from .patches import _APPLIED, MotoInternalsChanged, Patch, _install, _require, twin

ACCOUNT_ID = "123456789012"
_KEY_PREFIX = "ASIA"  # temporary (role session) credentials start with ASIA
_SECRET = "twin-role-session-secret"


class UnsupportedPolicy(ValueError):
    """A policy uses a form the twin's evaluator does not implement (see the module docstring)."""


@dataclass(frozen=True)
class Check:
    """One authorisation AWS makes for a request: ``action`` (``s3:GetObject``) on ``resource`` (an ARN
    or ``*``) with the request's condition ``context`` (key → value)."""

    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()

    def context_dict(self) -> dict[str, str]:
        """``context`` as a dict with lower-case keys (condition key names are case-insensitive)."""
        return {k.lower(): v for k, v in self.context}


@dataclass(frozen=True)
class Decision:
    """The outcome of :func:`evaluate`: ``allowed``, and why (``allow``, ``explicit deny`` or ``no
    identity-based policy allows``) with the deciding statement's Sid if it has one."""

    allowed: bool
    reason: str
    sid: str | None = None


# ------------------------------------------------------------------------------------- matching
@functools.lru_cache(maxsize=8192)
def _glob(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    parts = [".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern]
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def glob_match(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """IAM's wildcard match: ``*`` any run of characters, ``?`` one character, nothing else special."""
    return _glob(pattern, ignore_case).fullmatch(value) is not None


def arn_match(pattern: str, arn: str) -> bool:
    """``ArnLike`` / ``Resource`` matching: ``*`` matches anything; otherwise both split into six
    ``:``-separated segments, the first five matched one by one, the sixth (resource) as a whole. A
    pattern that is not a whole ARN matches nothing (IAM refuses such a policy: "must be in ARN format")."""
    if pattern == "*":
        return True
    p_parts, a_parts = pattern.split(":", 5), arn.split(":", 5)
    if len(p_parts) != 6 or len(a_parts) != 6:
        return False
    return all(glob_match(p, a) for p, a in zip(p_parts, a_parts, strict=True))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


_POSITIVE: dict[str, Callable[[str, str], bool]] = {
    "StringEquals": lambda p, v: p == v,
    "StringEqualsIgnoreCase": lambda p, v: p.lower() == v.lower(),
    "StringLike": lambda p, v: glob_match(p, v),
    "ArnEquals": arn_match,
    "ArnLike": arn_match,
    "Bool": lambda p, v: p.lower() == v.lower(),
}
_NEGATED = {
    "StringNotEquals": "StringEquals",
    "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotLike": "StringLike",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
}


def condition_holds(condition: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    """Whether a statement's ``Condition`` block holds for ``context`` (lower-case keys).

    Raises:
        UnsupportedPolicy: an operator the twin does not implement.
    """
    for operator, keys in condition.items():
        if ":" in operator:
            raise UnsupportedPolicy(f"condition set operator {operator} is not supported by the twin")
        if_exists = operator.endswith("IfExists") and operator != "IfExists"
        base = operator.removesuffix("IfExists") if if_exists else operator
        for key, expected in keys.items():
            values = [str(v).lower() if isinstance(v, bool) else str(v) for v in _as_list(expected)]
            actual = context.get(key.lower())
            if base == "Null":
                if (actual is None) != (values[0].lower() == "true"):
                    return False
                continue
            negated = base in _NEGATED
            test = _POSITIVE.get(_NEGATED.get(base, base))
            if test is None:
                raise UnsupportedPolicy(f"condition operator {operator} is not supported by the twin")
            if actual is None:
                if if_exists or negated:
                    continue
                return False
            matched = any(test(v, actual) for v in values)
            if matched == negated:
                return False
    return True


def statements(document: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """The statements of a policy document (``Statement`` may be one object or a list)."""
    yield from _as_list(document.get("Statement", []))


def statement_applies(statement: Mapping[str, Any], check: Check) -> bool:
    """Whether ``statement`` covers ``check``'s action, resource and condition context.

    Raises:
        UnsupportedPolicy: ``Principal`` (not an identity-based statement) or an unsupported condition.
    """
    if "Principal" in statement or "NotPrincipal" in statement:
        raise UnsupportedPolicy("a Principal in an identity-based policy (AWS rejects the policy)")
    if "Action" in statement:
        if not any(glob_match(a, check.action, ignore_case=True) for a in _as_list(statement["Action"])):
            return False
    elif any(glob_match(a, check.action, ignore_case=True) for a in _as_list(statement.get("NotAction", []))):
        return False
    if "Resource" in statement:
        if not any(arn_match(r, check.resource) for r in _as_list(statement["Resource"])):
            return False
    elif any(arn_match(r, check.resource) for r in _as_list(statement.get("NotResource", []))):
        return False
    return condition_holds(statement.get("Condition") or {}, check.context_dict())


def evaluate(documents: Iterable[Mapping[str, Any]], check: Check) -> Decision:
    """AWS's evaluation of identity-based ``documents`` for one ``check``: explicit deny, else allow,
    else implicit deny. Raises :class:`UnsupportedPolicy` for a form the twin does not implement."""
    allowed: Decision | None = None
    for document in documents:
        for statement in statements(document):
            if not statement_applies(statement, check):
                continue
            if statement.get("Effect") == "Deny":
                return Decision(False, "explicit deny", statement.get("Sid"))
            if statement.get("Effect") == "Allow" and allowed is None:
                allowed = Decision(True, "allow", statement.get("Sid"))
    return allowed or Decision(False, "no identity-based policy allows")


# ----------------------------------------------------------------------------------- identities
_ROLES: dict[str, str] = {}  # access key id -> role ARN
_ROLES_LOCK = threading.Lock()


def access_key_for(role_arn: str) -> str:
    """The access key id the twin gives sessions of ``role_arn`` (20 characters, ``ASIA...``)."""
    digest = base64.b32encode(hashlib.sha256(role_arn.encode()).digest()).decode()
    key = _KEY_PREFIX + digest[:16]
    with _ROLES_LOCK:
        _ROLES[key] = role_arn
    return key


def credentials_for(role_arn: str) -> dict[str, str]:
    """boto3 client keyword arguments for a session of ``role_arn`` on the twin."""
    return {
        "aws_access_key_id": access_key_for(role_arn),
        "aws_secret_access_key": _SECRET,
        "aws_session_token": "twin-session-" + role_arn.rsplit("/", 1)[-1],
    }


def environment_for(role_arn: str) -> dict[str, str]:
    """The ``AWS_*`` credential variables Lambda gives a function running as ``role_arn``."""
    creds = credentials_for(role_arn)
    return {
        "AWS_ACCESS_KEY_ID": creds["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": creds["aws_secret_access_key"],
        "AWS_SESSION_TOKEN": creds["aws_session_token"],
    }


def role_for_access_key(access_key: str | None) -> str | None:
    """The role ARN whose sessions use ``access_key``, or None (the twin's own, unrestricted key)."""
    if not access_key:
        return None
    with _ROLES_LOCK:
        return _ROLES.get(access_key)


_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")


def access_key_of(authorization: str | None) -> str | None:
    """The access key id in a SigV4 ``Authorization`` header (None if there is none)."""
    m = _CREDENTIAL.search(authorization or "")
    return m.group(1) if m else None


@functools.lru_cache(maxsize=1024)
def _parse(document: str) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(unquote(document) if document.startswith("%7B") else document)
    return parsed


def role_policies(role_arn: str) -> list[dict[str, Any]]:
    """The inline policy documents of ``role_arn`` in moto's IAM backend (what the deployer put there).

    Raises:
        KeyError: no such role.
    """
    from moto.iam.models import iam_backends

    name = role_arn.rsplit("/", 1)[-1]
    backend = iam_backends[ACCOUNT_ID]["aws"]
    try:
        role = backend.get_role(name)
    except Exception as exc:  # noqa: BLE001 - moto's IAMNotFoundException: no such role, nothing is allowed
        raise KeyError(role_arn) from exc
    return [_parse(doc) if isinstance(doc, str) else doc for doc in role.policies.values()]


# ----------------------------------------------------------------------------------- recording
@dataclass(frozen=True)
class Recorded:
    """One authorisation the twin made: who, what, and the outcome."""

    role_arn: str
    check: Check
    allowed: bool


@dataclass
class Recorder:
    """Keeps every distinct authorisation while ``active`` (tests turn it on; a long-running twin does not)."""

    active: bool = False
    entries: set[Recorded] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, entry: Recorded) -> None:
        """Keep ``entry`` when recording (repeats are kept once)."""
        if self.active:
            with self.lock:
                self.entries.add(entry)


RECORDER = Recorder()


@dataclass(frozen=True)
class DeployedRole:
    """A role as the deployer created it from ``template.yaml``: its logical id (the function's or
    state machine's for SAM-generated roles) and its inline policy documents."""

    logical_id: str
    documents: tuple[dict[str, Any], ...]


#: role ARN → the role as last deployed (what the mutation test mutates; live policies may be changed).
DEPLOYED: dict[str, DeployedRole] = {}


def deployed(role_arn: str, logical_id: str, documents: Iterable[dict[str, Any]]) -> None:
    """Note ``role_arn``'s template policies (called by the deployer)."""
    DEPLOYED[role_arn] = DeployedRole(logical_id, tuple(json.loads(json.dumps(d)) for d in documents))


class AccessDenied(Exception):
    """A role's policies do not allow ``check`` (AWS's message form)."""

    def __init__(self, role_arn: str, check: Check, decision: Decision | None = None, note: str = "") -> None:
        session = role_arn.rsplit("/", 1)[-1]
        principal = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{session}/{session}"
        why = note or (
            "with an explicit deny in an identity-based policy"
            if decision and decision.reason == "explicit deny"
            else f"because no identity-based policy allows the {check.action} action"
        )
        self.message = (
            f"User: {principal} is not authorized to perform: {check.action} on resource: {check.resource} {why}"
        )
        self.role_arn, self.check = role_arn, check
        super().__init__(self.message)


def authorize(role_arn: str, checks: Iterable[Check]) -> None:
    """Evaluate each of ``checks`` for ``role_arn``; record it; raise :class:`AccessDenied` on the first
    that its policies do not allow."""
    try:
        documents = role_policies(role_arn)
    except KeyError:
        documents = []  # a role that does not exist cannot be assumed: every call is denied
    for check in checks:
        decision = evaluate(documents, check)
        RECORDER.add(Recorded(role_arn, check, decision.allowed))
        if not decision.allowed:
            raise AccessDenied(role_arn, check, decision)


# ------------------------------------------------------------------------- request → checks
def _arn(service: str, region: str, resource: str) -> str:
    return f"arn:aws:{service}:{region}:{ACCOUNT_ID}:{resource}"


def _sm(kind: str, name: Any) -> str:
    # SageMaker ARNs hold resource names in lower case (SageMaker Developer Guide, IAM ARNs)
    return f"{kind}/{str(name).lower()}"


def _model_package_arn(params: Mapping[str, Any], region: str) -> list[str]:
    group = str(params.get("ModelPackageGroupName") or params.get("ModelPackageName") or "")
    if group.startswith("arn:"):
        group = group.rsplit("/", 1)[-1]
    from moto.sagemaker.models import sagemaker_backends

    packages = sagemaker_backends[ACCOUNT_ID][region].model_packages.values()
    version = 1 + sum(1 for p in packages if getattr(p, "model_package_group_name", None) == group)
    return [_arn("sagemaker", region, f"model-package/{group.lower()}/{version}")]


def _bus_arns(params: Mapping[str, Any], region: str) -> list[str]:
    buses = {str(e.get("EventBusName") or "default") for e in params.get("Entries", [])}
    return [b if b.startswith("arn:") else _arn("events", region, f"event-bus/{b}") for b in sorted(buses)]


def _queue_arn(params: Mapping[str, Any], region: str) -> list[str]:
    url = str(params.get("QueueUrl") or params.get("QueueName") or "")
    return [_arn("sqs", region, url.rstrip("/").rsplit("/", 1)[-1])]


def _log_arn(params: Mapping[str, Any], region: str, stream: bool) -> list[str]:
    group = params.get("logGroupName", "")
    resource = f"log-group:{group}"
    if stream:
        resource += f":log-stream:{params.get('logStreamName') or params.get('logStreamNamePrefix') or '*'}"
    return [_arn("logs", region, resource)]


def _alarm_arns(params: Mapping[str, Any], region: str) -> list[str]:
    names = params.get("AlarmNames") or ([params["AlarmName"]] if params.get("AlarmName") else [])
    return [_arn("cloudwatch", region, f"alarm:{n}") for n in names] or ["*"]


def _function_arn(name: str, region: str) -> list[str]:
    name = unquote(name)
    return [name if name.startswith("arn:") else _arn("lambda", region, f"function:{name}")]


Resources = Callable[[Mapping[str, Any], str], list[str]]


def _sm_name(kind: str, member: str) -> Resources:
    return lambda p, r: [_arn("sagemaker", r, _sm(kind, p.get(member, "")))]


#: IAM action → resource ARNs of the request (operations sagepipe's roles call; Service Authorization
#: Reference resource types). ``params`` are the request's members as botocore names them.
RESOURCES: dict[str, Resources] = {
    "sagemaker:CreateTrainingJob": _sm_name("training-job", "TrainingJobName"),
    "sagemaker:DescribeTrainingJob": _sm_name("training-job", "TrainingJobName"),
    "sagemaker:StopTrainingJob": _sm_name("training-job", "TrainingJobName"),
    "sagemaker:CreateHyperParameterTuningJob": _sm_name("hyper-parameter-tuning-job", "HyperParameterTuningJobName"),
    "sagemaker:DescribeHyperParameterTuningJob": _sm_name("hyper-parameter-tuning-job", "HyperParameterTuningJobName"),
    "sagemaker:StopHyperParameterTuningJob": _sm_name("hyper-parameter-tuning-job", "HyperParameterTuningJobName"),
    "sagemaker:CreateModel": _sm_name("model", "ModelName"),
    "sagemaker:DescribeModel": _sm_name("model", "ModelName"),
    "sagemaker:CreateEndpointConfig": _sm_name("endpoint-config", "EndpointConfigName"),
    "sagemaker:DescribeEndpointConfig": _sm_name("endpoint-config", "EndpointConfigName"),
    # CreateEndpoint / UpdateEndpoint: resource types endpoint* and endpoint-config*
    "sagemaker:CreateEndpoint": lambda p, r: [
        _arn("sagemaker", r, _sm("endpoint", p.get("EndpointName", ""))),
        _arn("sagemaker", r, _sm("endpoint-config", p.get("EndpointConfigName", ""))),
    ],
    "sagemaker:UpdateEndpoint": lambda p, r: [
        _arn("sagemaker", r, _sm("endpoint", p.get("EndpointName", ""))),
        _arn("sagemaker", r, _sm("endpoint-config", p.get("EndpointConfigName", ""))),
    ],
    "sagemaker:DescribeEndpoint": _sm_name("endpoint", "EndpointName"),
    "sagemaker:ListEndpoints": lambda p, r: ["*"],  # no resource types (Service Authorization Reference)
    "sagemaker:DeleteEndpoint": _sm_name("endpoint", "EndpointName"),
    "sagemaker:InvokeEndpoint": _sm_name("endpoint", "EndpointName"),
    "sagemaker:DescribeModelPackageGroup": _sm_name("model-package-group", "ModelPackageGroupName"),
    "sagemaker:CreateModelPackageGroup": _sm_name("model-package-group", "ModelPackageGroupName"),
    "sagemaker:CreateModelPackage": _model_package_arn,
    "sagemaker:UpdateModelPackage": lambda p, r: [str(p.get("ModelPackageArn", ""))],
    "sagemaker:DescribeModelPackage": lambda p, r: [str(p.get("ModelPackageName", ""))],
    "sagemaker:AddTags": lambda p, r: [str(p.get("ResourceArn", ""))],
    "sagemaker:ListTags": lambda p, r: [str(p.get("ResourceArn", ""))],
    "states:StartExecution": lambda p, r: [str(p.get("stateMachineArn", ""))],
    "states:DescribeExecution": lambda p, r: [str(p.get("executionArn", ""))],
    "states:GetExecutionHistory": lambda p, r: [str(p.get("executionArn", ""))],
    "states:StopExecution": lambda p, r: [str(p.get("executionArn", ""))],
    "states:RedriveExecution": lambda p, r: [str(p.get("executionArn", ""))],
    "states:ListExecutions": lambda p, r: [str(p.get("stateMachineArn", ""))],
    "states:SendTaskSuccess": lambda p, r: ["*"],
    "states:SendTaskFailure": lambda p, r: ["*"],
    "states:SendTaskHeartbeat": lambda p, r: ["*"],
    "events:PutEvents": _bus_arns,
    "events:PutRule": lambda p, r: [_arn("events", r, f"rule/{p.get('Name', '')}")],
    "events:PutTargets": lambda p, r: [_arn("events", r, f"rule/{p.get('Rule', '')}")],
    "events:DescribeRule": lambda p, r: [_arn("events", r, f"rule/{p.get('Name', '')}")],
    "sqs:SendMessage": _queue_arn,
    "sqs:GetQueueUrl": _queue_arn,
    "lambda:InvokeFunction": lambda p, r: _function_arn(str(p.get("FunctionName", "")), r),
    "logs:CreateLogGroup": lambda p, r: _log_arn(p, r, False),
    "logs:DescribeLogStreams": lambda p, r: _log_arn(p, r, False),
    "logs:CreateLogStream": lambda p, r: _log_arn(p, r, True),
    "logs:PutLogEvents": lambda p, r: _log_arn(p, r, True),
    "cloudwatch:PutMetricAlarm": _alarm_arns,
    "cloudwatch:DescribeAlarms": _alarm_arns,
    "cloudwatch:PutMetricData": lambda p, r: ["*"],  # no resource types; cloudwatch:namespace condition
    "sts:GetCallerIdentity": lambda p, r: ["*"],
}

#: SigV4 signing name → IAM service prefix, where they differ.
PREFIXES = {"monitoring": "cloudwatch"}
#: Operations whose IAM action is not named like the operation (Service Authorization Reference).
ACTION_NAMES = {"lambda:Invoke": "lambda:InvokeFunction"}
#: Request members that pass a role to SageMaker (each needs iam:PassRole, iam:PassedToService).
PASSED_ROLES = {
    "sagemaker:CreateTrainingJob": ("RoleArn",),
    "sagemaker:CreateHyperParameterTuningJob": ("TrainingJobDefinition", "RoleArn"),
    "sagemaker:CreateModel": ("ExecutionRoleArn",),
}
#: Create operations whose ``Tags`` need sagemaker:AddTags on the new resource ("tag on create").
TAG_ON_CREATE = {"sagemaker:CreateTrainingJob", "sagemaker:CreateHyperParameterTuningJob"}


_IMAGE = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.[a-z0-9.]+/(?P<repository>[^:@]+)")


def image_pull_checks(image: str) -> list[Check]:
    """What pulling ``image`` (``<account>.dkr.ecr.<region>.<suffix>/<repository>:<tag>``) takes of the
    execution role: ``ecr:GetAuthorizationToken`` (no resource types: ``*``) and the layer/image reads on
    the repository ARN (SageMaker Developer Guide, "CreateTrainingJob API: Execution Role Permissions").
    An image URI of another form gives no checks."""
    m = _IMAGE.match(image or "")
    if not m:
        return []
    repository = f"arn:aws:ecr:{m['region']}:{m['account']}:repository/{m['repository']}"
    return [
        Check("ecr:GetAuthorizationToken", "*"),
        *(
            Check(a, repository)
            for a in ("ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage")
        ),
    ]


def denial(role_arn: str, checks: Iterable[Check]) -> str | None:
    """:func:`authorize` as a message: None when every check is allowed, else the AccessDenied text."""
    try:
        authorize(role_arn, checks)
    except AccessDenied as denied:
        return denied.message
    return None


class UnmappedOperation(LookupError):
    """A role called an operation :data:`RESOURCES` has no resource mapping for."""


def action_for(signing_name: str, operation: str) -> str:
    """The IAM action of ``operation`` (botocore name) of the service signed as ``signing_name``."""
    action = f"{PREFIXES.get(signing_name, signing_name)}:{operation}"
    return ACTION_NAMES.get(action, action)


def checks_for(action: str, params: Mapping[str, Any], region: str) -> list[Check]:
    """Every :class:`Check` AWS makes for one (non-S3) request: the action on each of its resources,
    plus the ``iam:PassRole`` and tag-on-create ``sagemaker:AddTags`` the request implies.

    Raises:
        UnmappedOperation: ``action`` is not in :data:`RESOURCES`.
    """
    resources = RESOURCES.get(action)
    if resources is None:
        raise UnmappedOperation(action)
    context: tuple[tuple[str, str], ...] = ()
    if action == "cloudwatch:PutMetricData":
        context = (("cloudwatch:namespace", str(params.get("Namespace", ""))),)
    arns = resources(params, region)
    checks = [Check(action, arn, context) for arn in arns]
    path = PASSED_ROLES.get(action)
    if path:
        value: Any = params
        for member in path:
            value = value.get(member) if isinstance(value, Mapping) else None
        if value:
            checks.append(Check("iam:PassRole", str(value), (("iam:PassedToService", "sagemaker.amazonaws.com"),)))
    if action in TAG_ON_CREATE and params.get("Tags"):
        checks.append(Check("sagemaker:AddTags", arns[0]))
    return checks


def s3_checks(
    method: str, bucket: str, key: str | None, query: Mapping[str, Any], headers: Mapping[str, str]
) -> list[Check]:
    """The checks S3 makes for a REST request (S3 API Reference, each operation's "Permissions").

    ``query``: the query string's names; ``headers``: the request headers. Object reads and writes
    with ``versionId`` need the ``...Version`` actions; CopyObject reads its source (version) and writes
    the destination, and with the default tagging directive COPY also reads the source's tags and writes
    them; a PutObject with ``x-amz-tagging`` also needs ``s3:PutObjectTagging``; multipart uploads need
    ``s3:PutObject``; HeadObject is GetObject, HeadBucket is ListBucket. Bucket-level requests other
    than these take moto's S3 action names (``moto.s3.responses.ACTION_MAP``, IAM's names).
    """
    method, names = method.upper(), set(query)
    if not key:
        return [Check(_s3_bucket_action(method, names), f"arn:aws:s3:::{bucket}")]
    arn = f"arn:aws:s3:::{bucket}/{key}"
    version = "versionId" in names
    if method in {"GET", "HEAD"}:
        return [Check(_s3_read_action(names, version), arn)]
    if method == "PUT":
        return _s3_put(arn, names, version, {k.lower(): v for k, v in headers.items()})
    if method == "POST":
        return [Check("s3:PutObject", arn)]
    if method == "DELETE":
        if "uploadId" in names:
            return [Check("s3:AbortMultipartUpload", arn)]
        if "tagging" in names:
            return [Check("s3:DeleteObjectVersionTagging" if version else "s3:DeleteObjectTagging", arn)]
        return [Check("s3:DeleteObjectVersion" if version else "s3:DeleteObject", arn)]
    return [Check(f"s3:{method}", arn)]


def _s3_bucket_action(method: str, names: set[str]) -> str:
    from moto.s3.responses import ACTION_MAP

    if method == "HEAD":
        return "s3:ListBucket"
    if method == "GET" and "versions" in names:
        return "s3:ListBucketVersions"
    table = ACTION_MAP["BUCKET"].get(method, {})
    return "s3:" + next((a for q, a in table.items() if q in names), table.get("DEFAULT", method))


def _s3_read_action(names: set[str], version: bool) -> str:
    if "tagging" in names:
        return "s3:GetObjectVersionTagging" if version else "s3:GetObjectTagging"
    if "acl" in names:
        return "s3:GetObjectVersionAcl" if version else "s3:GetObjectAcl"
    if "uploadId" in names:
        return "s3:ListMultipartUploadParts"
    return "s3:GetObjectVersion" if version else "s3:GetObject"


def _s3_put(arn: str, names: set[str], version: bool, headers: Mapping[str, str]) -> list[Check]:
    if "tagging" in names:
        return [Check("s3:PutObjectVersionTagging" if version else "s3:PutObjectTagging", arn)]
    if "acl" in names:
        return [Check("s3:PutObjectVersionAcl" if version else "s3:PutObjectAcl", arn)]
    checks = [Check("s3:PutObject", arn)]
    source = headers.get("x-amz-copy-source")
    if source and "uploadId" not in names:
        src, _, src_query = unquote(source).lstrip("/").partition("?")
        src_version = "versionId=" in src_query
        src_arn = f"arn:aws:s3:::{src}"
        checks.append(Check("s3:GetObjectVersion" if src_version else "s3:GetObject", src_arn))
        if headers.get("x-amz-tagging-directive", "COPY").upper() == "COPY":
            checks.append(Check("s3:GetObjectVersionTagging" if src_version else "s3:GetObjectTagging", src_arn))
            checks.append(Check("s3:PutObjectTagging", arn))
    if headers.get("x-amz-tagging") and not any(c.action == "s3:PutObjectTagging" for c in checks):
        checks.append(Check("s3:PutObjectTagging", arn))
    return checks


# ---------------------------------------------------------------------------- the iam_enforce patch
def _check_iam() -> None:
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.core.responses import BaseResponse

    _require(BaseResponse, "call_action", ["self"])
    dispatch = _APPLIED.get("dispatch") or _require(
        BaseResponse, "_dispatch", ["self", "request", "full_url", "headers"]
    )
    source = inspect.getsource(dispatch)
    if "self.setup_class(request, full_url, headers)" not in source or "return self.call_action()" not in source:
        raise MotoInternalsChanged("BaseResponse._dispatch no longer is setup_class + call_action")
    _require(BaseResponse, "serialized", ["self", "action_result"])
    _require(BaseResponse, "_enrich_response", ["headers", "body"])
    _require(BaseResponse, "_get_action", ["self"])
    _require(ActionAuthenticatorMixin, "_authenticate_and_authorize_s3_action", ["self", "bucket_name", "key_name"])
    if "self.params" not in inspect.getsource(BaseResponse.parse_parameters):
        raise MotoInternalsChanged("BaseResponse.parse_parameters no longer sets self.params")
    from moto.s3.responses import ACTION_MAP

    if "BUCKET" not in ACTION_MAP:
        raise MotoInternalsChanged("moto.s3.responses.ACTION_MAP no longer maps bucket requests")


def _request_params(response: Any) -> dict[str, Any]:
    """The request's members (botocore names): moto's parsed ``params`` or the JSON body, plus the URI's."""
    params: Any = getattr(response, "params", None) if response.automated_parameter_parsing else None
    if params is None:
        body = response.body
        try:
            params = json.loads(body) if body else {}
        except (ValueError, TypeError):
            params = {}
    return {**(params if isinstance(params, dict) else {}), **(getattr(response, "uri_match", None) or {})}


def _missing_object(response: Any, bucket: str | None, key: str | None, checks: list[Any]) -> bool:
    """A plain GetObject/HeadObject (no version, no subresource) of a key the bucket does not hold."""
    if not bucket or not key or [c.action for c in checks] != ["s3:GetObject"]:
        return False
    from moto.s3.models import FakeKey, s3_backends

    try:
        keys = s3_backends[response.current_account]["aws"].get_bucket(bucket).keys
    except Exception:  # noqa: BLE001 - no such bucket: S3 answers NoSuchBucket whatever the grants
        return False
    return not isinstance(keys.get(key), FakeKey)  # absent, or its current version is a delete marker


def _access_denied(response: Any, code: str, message: str, status: int) -> Any:
    """The service's error response, in its protocol (JSON, CBOR or query XML), for ``code`` with HTTP
    ``status``. The code is AWS's authorisation layer's, not in the service models: moto warns, said here."""
    import warnings

    from moto.core.exceptions import ServiceException
    from moto.core.responses import ActionResult

    class AccessDeniedError(ServiceException):
        """Defined outside moto's packages: moto then looks the code up in the calling service's model."""

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Exception.AccessDeniedError. with code", UserWarning)
        _, headers, body = response.serialized(ActionResult(AccessDeniedError(code, message)))
    headers["status"] = str(status)
    headers, body = response._enrich_response(headers, body)  # x-amzn-RequestId, as every AWS response has
    return status, headers, body


def _iam_refusal(response: Any) -> Any:
    """The AccessDenied response for a request signed as a template role that its policies do not allow,
    or None (allowed, or not signed as a role)."""
    authorization = response.headers.get("Authorization")
    role = role_for_access_key(access_key_of(authorization))
    if role is None:
        return None
    signing = authorization.split("Credential=", 1)[1].split(",", 1)[0].split("/")[3]
    action = action_for(signing, response._get_action())
    # AccessDeniedException: the code of AWS's JSON services; CloudWatch (query heritage) says AccessDenied
    code = "AccessDenied" if signing in {"monitoring", "sns", "iam", "sts"} else "AccessDeniedException"
    status = 403 if signing in {"lambda", "monitoring", "sns", "iam", "sts"} else 400
    try:
        authorize(role, checks_for(action, _request_params(response), response.region))
    except AccessDenied as denied:
        return _access_denied(response, code, denied.message, status)
    except UnmappedOperation:
        message = (
            f"{role} called {action}, which the twin's IAM cannot authorise "
            "(no resource mapping in sagepipe/twin/iam.py RESOURCES): denied"
        )
        return _access_denied(response, code, message, status)
    return None


def _apply_iam() -> None:
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.core.responses import BaseResponse
    from moto.s3.exceptions import S3AccessDeniedError

    _APPLIED.setdefault("dispatch", BaseResponse._dispatch)
    original_s3 = _APPLIED.setdefault("s3", ActionAuthenticatorMixin._authenticate_and_authorize_s3_action)

    def _dispatch(self: Any, request: Any, full_url: str | None = None, headers: Any = None) -> Any:
        # moto's _dispatch, with the authorisation between parsing the request and acting on it
        self.setup_class(request, full_url, headers)
        return _iam_refusal(self) or self.call_action()

    def authorize_s3(self: Any, bucket_name: str | None = None, key_name: str | None = None) -> None:
        role = role_for_access_key(access_key_of(self.headers.get("Authorization")))
        if role is None:
            original_s3(self, bucket_name=bucket_name, key_name=key_name)
            return None
        checks = s3_checks(self.method, bucket_name or "*", key_name, self.querystring, dict(self.headers))
        if _missing_object(self, bucket_name, key_name, checks):
            # S3 says 404 NoSuchKey for a missing key only to who may list the bucket, else 403 (S3 API
            # Reference, GetObject / HeadObject "Permissions")
            checks = [*checks, Check("s3:ListBucket", f"arn:aws:s3:::{bucket_name}")]
        try:
            authorize(role, checks)
        except AccessDenied as denied:
            twin().log("iam", denied.message)
            raise S3AccessDeniedError() from denied  # S3: 403 AccessDenied "Access Denied", as AWS says it
        return None

    _install("iam_enforce", BaseResponse, "_dispatch", _dispatch)
    _install("iam_enforce", ActionAuthenticatorMixin, "_authenticate_and_authorize_s3_action", authorize_s3)


PATCHES: tuple[Patch, ...] = (
    Patch(
        "iam_enforce",
        (
            "moto.core.responses:BaseResponse._dispatch",
            "moto.core.authorization:ActionAuthenticatorMixin._authenticate_and_authorize_s3_action",
        ),
        _check_iam,
        _apply_iam,
    ),
)
