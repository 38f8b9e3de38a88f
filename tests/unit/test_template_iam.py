"""Static checks of template.yaml: least privilege, bucket hardening, and that every AWS call the core
makes is granted to the function that makes it (statically; the twin enforces the same policies at run
time: tests/twin/test_iam.py, test_iam_mutation.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "layers" / "core" / "sagepipe_core"


class CfnLoader(yaml.SafeLoader):
    """SafeLoader that accepts CloudFormation short tags (``!Ref X`` → ``{"Ref": "X"}``, ``!GetAtt A.B`` →
    ``{"Fn::GetAtt": ["A", "B"]}``, ``!Sub s`` → ``{"Fn::Sub": s}``, ...)."""


def _cfn_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


CfnLoader.add_multi_constructor("!", _cfn_tag)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return yaml.load((REPO / "template.yaml").read_text(), Loader=CfnLoader)


@pytest.fixture(scope="module")
def resources(template) -> dict[str, Any]:
    return template["Resources"]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(node: Any) -> Iterator[dict[str, Any]]:
    """Every IAM statement anywhere under ``node`` (role policies, SAM inline policies, resource policies)."""
    if isinstance(node, dict):
        if isinstance(node.get("Statement"), list):
            for st in node["Statement"]:
                if isinstance(st, dict) and "Effect" in st:
                    yield st
        for v in node.values():
            yield from _statements(v)
    elif isinstance(node, list):
        for v in node:
            yield from _statements(v)


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


# ------------------------------------------------------------------------------- least privilege
def test_template_parses(resources):
    for name in (
        "DataBucket",
        "ArtifactsBucket",
        "TrainingPipeline",
        "StartFunction",
        "ValidateFunction",
        "EvaluateFunction",
        "DeployFunction",
        "PredictFunction",
        "SageMakerExecutionRole",
    ):
        assert name in resources


def test_no_wildcard_allow_actions(template):
    bad = []
    for st in _statements(template):
        if st["Effect"] != "Allow":
            continue
        for action in _as_list(st.get("Action", [])):
            if (
                action == "*"
                or action in {"sagemaker:*", "s3:*", "iam:*", "states:*", "lambda:*"}
                or action.endswith(":*")
            ):
                bad.append((st.get("Sid"), action))
        assert "NotAction" not in st, st
    assert bad == []


def test_resource_star_only_where_aws_requires_it(template):
    # no resource-level permissions, or AWS documents Resource "*" (ListTags for the SageMaker .sync integrations)
    allowed = {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData", "sagemaker:ListTags", "sagemaker:ListEndpoints"}
    for st in _statements(template):
        if st["Effect"] == "Allow" and "*" in _as_list(st.get("Resource", [])):
            assert set(_as_list(st["Action"])) <= allowed, st


def test_every_passrole_conditioned_on_passed_to_service(template):
    found = 0
    for st in _statements(template):
        if st["Effect"] == "Allow" and "iam:PassRole" in _as_list(st["Action"]):
            found += 1
            cond = st.get("Condition", {})
            services = [v.get("iam:PassedToService") for v in cond.values() if isinstance(v, dict)]
            assert "sagemaker.amazonaws.com" in services, st
            assert st["Resource"] != "*"
    assert found >= 2  # deploy function and the state machine


def test_state_machine_sync_integration_permissions(resources):
    policies = resources["TrainingPipeline"]["Properties"]["Policies"]
    sts = list(_statements(policies))
    rule = [st for st in sts if "StepFunctionsGetEventsForSageMakerTrainingJobsRule" in _text(st.get("Resource"))]
    assert rule, "no statement on the managed rule StepFunctionsGetEventsForSageMakerTrainingJobsRule"
    assert {"events:PutTargets", "events:PutRule", "events:DescribeRule"} <= {
        a for st in rule for a in _as_list(st["Action"])
    }
    actions = {a for st in sts for a in _as_list(st["Action"])}
    assert {
        "sagemaker:CreateTrainingJob",
        "sagemaker:DescribeTrainingJob",
        "sagemaker:StopTrainingJob",
        "sagemaker:AddTags",
        "sagemaker:ListTags",
        "sagemaker:DescribeEndpoint",
        "iam:PassRole",
        "sagemaker:CreateHyperParameterTuningJob",
        "sagemaker:DescribeHyperParameterTuningJob",
        "sagemaker:StopHyperParameterTuningJob",
    } <= actions
    tuning_rule = [st for st in sts if "StepFunctionsGetEventsForSageMakerTuningJobsRule" in _text(st.get("Resource"))]
    assert tuning_rule, "no statement on the managed rule StepFunctionsGetEventsForSageMakerTuningJobsRule"


def test_asl_tags_training_jobs_so_add_tags_is_needed():
    asl = json.loads((REPO / "statemachines" / "training_pipeline.asl.json").read_text())
    assert asl["States"]["TrainModel"]["Arguments"]["Tags"]


# ------------------------------------------------------------------------------------- buckets
BUCKETS = ("DataBucket", "ArtifactsBucket")


def _bucket_policy(resources, bucket: str) -> dict[str, Any]:
    for r in resources.values():
        if r["Type"] == "AWS::S3::BucketPolicy" and r["Properties"]["Bucket"] == {"Ref": bucket}:
            return r["Properties"]["PolicyDocument"]
    raise AssertionError(f"no bucket policy for {bucket}")


@pytest.mark.parametrize("bucket", BUCKETS)
def test_bucket_hardening(resources, bucket):
    p = resources[bucket]["Properties"]
    assert p["VersioningConfiguration"]["Status"] == "Enabled"
    sse = p["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert sse["SSEAlgorithm"] in {"AES256", "aws:kms", "aws:kms:dsse"}
    pab = p["PublicAccessBlockConfiguration"]
    assert all(
        pab[k] is True for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
    )


@pytest.mark.parametrize("bucket", BUCKETS)
def test_bucket_policy_denies_insecure_transport(resources, bucket):
    doc = _bucket_policy(resources, bucket)
    deny = [
        st
        for st in doc["Statement"]
        if st["Effect"] == "Deny"
        and st.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") in ("false", False)
    ]
    assert deny, doc
    st = deny[0]
    assert st["Principal"] == "*" and "s3:*" in _as_list(st["Action"])
    res = _text(st["Resource"])
    assert f'"{bucket}", "Arn"' in res and f"${{{bucket}.Arn}}/*" in res


def test_only_data_bucket_sends_to_eventbridge(resources):
    flags = {
        name: r["Properties"]
        .get("NotificationConfiguration", {})
        .get("EventBridgeConfiguration", {})
        .get("EventBridgeEnabled", False)
        for name, r in resources.items()
        if r["Type"] == "AWS::S3::Bucket"
    }
    assert flags == {"DataBucket": True, "ArtifactsBucket": False, "AccessLogsBucket": False}


# ------------------------------------------------------------- code ↔ IAM (boto3 calls granted)
#: What the SAM policy templates used in template.yaml grant (samtranslator policy_templates.json).
SAM_POLICY_TEMPLATES = {
    "S3ReadPolicy": (
        "BucketName",
        {
            "s3:GetObject",
            "s3:ListBucket",
            "s3:GetBucketLocation",
            "s3:GetObjectVersion",
            "s3:GetLifecycleConfiguration",
        },
    ),
    "S3WritePolicy": ("BucketName", {"s3:PutObject", "s3:PutObjectAcl", "s3:PutLifecycleConfiguration"}),
    "S3CrudPolicy": (
        "BucketName",
        {
            "s3:GetObject",
            "s3:ListBucket",
            "s3:GetBucketLocation",
            "s3:GetObjectVersion",
            "s3:PutObject",
            "s3:PutObjectAcl",
            "s3:GetLifecycleConfiguration",
            "s3:PutLifecycleConfiguration",
            "s3:DeleteObject",
        },
    ),
    "StepFunctionsExecutionPolicy": ("StateMachineName", {"states:StartExecution"}),
    "LambdaInvokePolicy": ("FunctionName", {"lambda:InvokeFunction"}),
    "EventBridgePutEventsPolicy": ("EventBusName", {"events:PutEvents"}),
}

#: boto3 client method → IAM actions it needs (with the arguments sagepipe passes: VersionId where known).
API_TO_ACTIONS = {
    ("s3", "get_object"): {"s3:GetObject"},
    ("s3", "head_object"): {"s3:GetObject"},
    ("s3", "put_object"): {"s3:PutObject"},
    ("s3", "copy_object"): {"s3:GetObjectVersion", "s3:PutObject"},
    ("s3", "list_objects_v2"): {"s3:ListBucket"},
    ("sfn", "start_execution"): {"states:StartExecution"},
    ("sfn", "describe_execution"): {"states:DescribeExecution"},
    ("sfn", "get_execution_history"): {"states:GetExecutionHistory"},
    ("sm", "describe_endpoint"): {"sagemaker:DescribeEndpoint"},
    ("sm", "list_endpoints"): {"sagemaker:ListEndpoints"},
    ("sm", "describe_endpoint_config"): {"sagemaker:DescribeEndpointConfig"},
    ("sm", "describe_model"): {"sagemaker:DescribeModel"},
    ("sm", "describe_training_job"): {"sagemaker:DescribeTrainingJob"},
    ("sm", "create_model"): {"sagemaker:CreateModel", "iam:PassRole"},
    ("sm", "create_endpoint_config"): {"sagemaker:CreateEndpointConfig"},
    ("sm", "create_endpoint"): {"sagemaker:CreateEndpoint"},
    ("sm", "update_endpoint"): {"sagemaker:UpdateEndpoint"},
    ("runtime", "invoke_endpoint"): {"sagemaker:InvokeEndpoint"},
    ("sm", "describe_model_package_group"): {"sagemaker:DescribeModelPackageGroup"},
    ("sm", "create_model_package_group"): {"sagemaker:CreateModelPackageGroup"},
    ("sm", "create_model_package"): {"sagemaker:CreateModelPackage"},
    ("sm", "update_model_package"): {"sagemaker:UpdateModelPackage"},
    ("sfn", "send_task_success"): {"states:SendTaskSuccess"},
    ("cw", "put_metric_alarm"): {"cloudwatch:PutMetricAlarm"},
    ("sqs", "send_message"): {"sqs:SendMessage"},
}

#: Calls the core makes on behalf of an operator (the `sagepipe approve|reject` CLI, with the caller's
#: own credentials), not from a stack function: no template grant is expected for them.
OPERATOR_CALLS = {("sfn", "send_task_success"), ("sm", "update_model_package")}

#: Which function makes which calls, and on which bucket (logical id) the S3 calls land.
FUNCTION_CALLS: dict[str, dict[tuple[str, str], str | None]] = {
    "StartFunction": {
        ("sfn", "start_execution"): None,
        ("sfn", "describe_execution"): None,
        ("s3", "list_objects_v2"): "DataBucket",
        ("s3", "head_object"): "DataBucket",
        ("sqs", "send_message"): None,
    },
    "ValidateFunction": {
        ("s3", "get_object"): "DataBucket",
        ("s3", "head_object"): "DataBucket",
        ("s3", "put_object"): "ArtifactsBucket",
        ("sm", "describe_endpoint"): None,
        ("sm", "describe_endpoint_config"): None,
        ("sm", "describe_model"): None,
        ("s3", "copy_object"): None,
    },  # buckets per action: COPY_GRANTS
    "EvaluateFunction": {
        ("s3", "get_object"): "ArtifactsBucket",
        ("s3", "put_object"): "ArtifactsBucket",  # the run report
        ("sm", "describe_training_job"): None,
    },
    "DeployFunction": {
        ("sm", "create_model"): None,
        ("sm", "create_endpoint_config"): None,
        ("sm", "create_endpoint"): None,
        ("sm", "update_endpoint"): None,
        ("sm", "describe_endpoint"): None,
        ("sm", "describe_endpoint_config"): None,
        ("sm", "describe_model"): None,
        ("cw", "put_metric_alarm"): None,
    },
    "RegisterFunction": {
        ("s3", "get_object"): "ArtifactsBucket",
        ("s3", "put_object"): "ArtifactsBucket",
        ("sm", "describe_model_package_group"): None,
        ("sm", "create_model_package_group"): None,
        ("sm", "create_model_package"): None,
    },
    "ApprovalFunction": {("s3", "put_object"): "ArtifactsBucket"},
    "ModelCodeFunction": {("s3", "put_object"): "ArtifactsBucket"},
    "ExecutionEndedFunction": {("sfn", "get_execution_history"): None},
    "DriftFunction": {
        ("sm", "list_endpoints"): None,
        ("sm", "describe_endpoint"): None,
        ("sm", "describe_endpoint_config"): None,
        ("sm", "describe_model"): None,
        ("s3", "list_objects_v2"): "ArtifactsBucket",
        ("s3", "get_object"): "ArtifactsBucket",  # captured data, the baseline in model.tar.gz
        ("s3", "put_object"): "ArtifactsBucket",  # the drift report and the retrain claim
    },
    "PredictFunction": {
        ("runtime", "invoke_endpoint"): None,
        ("sm", "describe_endpoint"): None,
        ("sm", "describe_endpoint_config"): None,
        ("sm", "describe_model"): None,
        ("s3", "get_object"): "ArtifactsBucket",
    },
}
#: quarantine: CopyObject (with VersionId) reads the source version in the data bucket and writes the
#: artifacts bucket.
COPY_GRANTS = {
    "ValidateFunction": [
        ("s3:GetObjectVersion", "DataBucket"),
        ("s3:GetObject", "DataBucket"),
        ("s3:PutObject", "ArtifactsBucket"),
        # the tagging directive COPY (default) copies the source version's tags (S3 CopyObject permissions)
        # (the copy names the source VersionId: GetObjectVersionTagging, not GetObjectTagging)
        ("s3:GetObjectVersionTagging", "DataBucket"),
        ("s3:PutObjectTagging", "ArtifactsBucket"),
    ]
}
#: GetObject/HeadObject with VersionId need s3:GetObjectVersion; a missing sagepipe.json must come back as
#: NoSuchKey (not AccessDenied), which needs s3:ListBucket on the data bucket.
EXTRA_GRANTS = {
    "ValidateFunction": [
        ("s3:ListBucket", "DataBucket"),
        ("s3:GetObjectVersion", "DataBucket"),
        ("s3:GetObject", "ArtifactsBucket"),  # HeadObject on the model code before training
    ],
    # a retrain's HeadObject of the newest data set names no VersionId: no s3:GetObjectVersion
    "StartFunction": [("s3:ListBucket", "DataBucket")],
}


def _core_calls() -> set[tuple[str, str]]:
    calls = set()
    for path in CORE.glob("*.py"):
        src = path.read_text()
        for client, method in re.findall(r"\b(s3|sm|sfn|runtime|cw|sqs)\.(\w+)\(", src):
            if method == "get_paginator":
                continue
            calls.add((client, method))
        for client, op in re.findall(r"\b(s3|sm|sfn|runtime)\.get_paginator\(\"(\w+)\"\)", src):
            calls.add((client, op))
    return calls


def _bucket_of(value: Any) -> str | None:
    text = _text(value)
    for bucket in ("DataBucket", "ArtifactsBucket"):
        if bucket in text:
            return bucket
    return None


def _grants(resource: dict[str, Any]) -> list[tuple[str, str | None]]:
    """``(action, bucket logical id or None)`` for everything a function / state machine is granted."""
    out: list[tuple[str, str | None]] = []
    for policy in resource["Properties"].get("Policies", []):
        if isinstance(policy, dict) and len(policy) == 1 and next(iter(policy)) in SAM_POLICY_TEMPLATES:
            name, params = next(iter(policy.items()))
            key, actions = SAM_POLICY_TEMPLATES[name]
            target = _bucket_of(params.get(key)) if key == "BucketName" else None
            out += [(a, target) for a in actions]
        elif isinstance(policy, dict) and len(policy) == 1 and "Statement" not in policy:
            raise AssertionError(f"unknown SAM policy template {policy}: add it to SAM_POLICY_TEMPLATES")
        for st in _statements(policy):
            if st["Effect"] == "Allow":
                out += [(a, _bucket_of(st.get("Resource"))) for a in _as_list(st["Action"])]
    # SAM adds sqs:SendMessage on an SQS EventInvokeConfig destination (samtranslator
    # IAMRolePolicies.sqs_send_message_role_policy)
    for dest in (resource["Properties"].get("EventInvokeConfig", {}).get("DestinationConfig") or {}).values():
        if dest.get("Type") == "SQS":
            out.append(("sqs:SendMessage", None))
    return out


def test_call_table_covers_every_boto3_call_in_core():
    table = set(API_TO_ACTIONS)
    found = _core_calls()
    assert found, "regex found no client calls: has the client naming changed?"
    assert found - table == set(), "add these calls to API_TO_ACTIONS / FUNCTION_CALLS"
    used = {c for calls in FUNCTION_CALLS.values() for c in calls}
    assert found - used - OPERATOR_CALLS == set()


@pytest.mark.parametrize("function", sorted(FUNCTION_CALLS))
def test_function_granted_what_its_calls_need(resources, function):
    grants = _grants(resources[function])
    missing = []
    for call, bucket in FUNCTION_CALLS[function].items():
        for action in API_TO_ACTIONS[call]:
            ok = any(a == action and (bucket is None or b == bucket) for a, b in grants)
            if not ok:
                missing.append((call, action, bucket))
    for action, bucket in COPY_GRANTS.get(function, []) + EXTRA_GRANTS.get(function, []):
        if not any(a == action and b == bucket for a, b in grants):
            missing.append(("extra", action, bucket))
    assert missing == []


def test_start_function_errors_go_to_a_dead_letter_queue(resources):
    """Once Lambda accepts the async event, a function error gets 2 retries and then the on-failure
    destination (EventInvokeConfig); without one it is dropped (Lambda docs, "Asynchronous invocation")."""
    props = resources["StartFunction"]["Properties"]
    config = props["EventInvokeConfig"]
    assert config["MaximumRetryAttempts"] == 2
    assert config["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS",
        "Destination": {"Fn::GetAtt": ["TriggerDeadLetterQueue", "Arn"]},
    }
    assert props["Environment"]["Variables"]["DEAD_LETTER_QUEUE_URL"] == {"Ref": "TriggerDeadLetterQueue"}
    # the function's own SendMessage to that queue is granted by the policy SAM adds for an SQS destination
    # (sqs:SendMessage on the Destination ARN); a second, hand-written grant of it would be redundant
    assert ("sqs:SendMessage", None) in _grants(resources["StartFunction"])


def test_start_function_may_start_only_the_pipeline(resources):
    [policy] = [p for p in resources["StartFunction"]["Properties"]["Policies"] if "StepFunctionsExecutionPolicy" in p]
    assert policy["StepFunctionsExecutionPolicy"]["StateMachineName"] == {"Fn::GetAtt": ["TrainingPipeline", "Name"]}


def test_state_machine_may_invoke_each_of_its_functions(resources):
    grants = resources["TrainingPipeline"]["Properties"]["Policies"]
    targets = {_text(p["LambdaInvokePolicy"]["FunctionName"]) for p in grants if "LambdaInvokePolicy" in p}
    subs = resources["TrainingPipeline"]["Properties"]["DefinitionSubstitutions"]
    for key in [k for k in subs if k.endswith("FunctionArn")]:
        function = subs[key]["Fn::GetAtt"][0]
        assert _text({"Ref": function}) in targets, function


def test_functions_have_no_grants_they_do_not_need(resources):
    """Least privilege the other way: no delete grants, and no SageMaker grant beyond the call table."""
    for function, calls in FUNCTION_CALLS.items():
        actions = {a for a, _ in _grants(resources[function])}
        assert not {a for a in actions if a.startswith("s3:Delete")}, function
        needed = {a for call in calls for a in API_TO_ACTIONS[call] if a.startswith("sagemaker:")}
        extra = {a for a in actions if a.startswith("sagemaker:")} - needed
        assert not extra, f"{function} is granted {sorted(extra)} but never calls them"


# ------------------------------------------------------------------- runtime dependencies / ASL
def _layer_requirements(layer_id: str) -> list[str]:
    """The requirements a layer's ``build-<LayerId>`` Makefile target installs (layers/core/Makefile)."""
    makefile = (REPO / "layers" / "core" / "Makefile").read_text()
    target = re.search(rf"^build-{layer_id}:\n((?:\t.*\n)+)", makefile, re.M)
    assert target, f"layers/core/Makefile has no build-{layer_id} target"
    req_file = re.search(r"REQUIREMENTS=(\S+)", target.group(1)).group(1)
    lines = (REPO / "layers" / "core" / req_file).read_text().splitlines()
    return [r for r in (ln.split("#")[0].strip().lower() for ln in lines) if r]


def test_handlers_dependencies_are_deployed(template, resources):
    """Each function imports ``aws_lambda_powertools`` and ``sagepipe_core`` (which imports ``pydantic``
    outside the predict path); the python3.13 runtime ships only boto3, so the function's own layers must
    provide them."""
    glob_layers = template.get("Globals", {}).get("Function", {}).get("Layers", [])
    for lid, res in resources.items():
        if res["Type"] != "AWS::Serverless::Function":
            continue
        module, _ = res["Properties"]["Handler"].rsplit(".", 1)
        in_layer = module.startswith("sagepipe_core.")  # ModelCodeFunction: its code package is model/ itself
        code_file = (
            CORE.parent / f"{module.replace('.', '/')}.py"
            if in_layer
            else REPO / res["Properties"]["CodeUri"] / f"{module}.py"
        )
        code = code_file.read_text()
        layers = [layer["Ref"] for layer in res["Properties"].get("Layers", glob_layers)]
        assert layers, f"{lid} has no layer"
        reqs = [r for layer in layers for r in _layer_requirements(layer)]
        powertools = "aws_lambda_powertools" in code or (in_layer and "from .handler import" in code)
        assert powertools and any(r.startswith("aws-lambda-powertools") for r in reqs), lid
        needs_pydantic = re.search(r"sagepipe_core\.(steps|config)", code) is not None
        if in_layer:  # its handler imports sagepipe_core.handler (Tracer: X-Ray SDK) - the core layer
            assert layers == ["CoreLayer"], lid
        elif needs_pydantic:
            assert any(r.startswith("pydantic==") for r in reqs), (
                f"{lid} imports the config but its layers lack pydantic"
            )
        else:
            assert not any(r.startswith("pydantic") for r in reqs), f"{lid} carries pydantic it never imports"


def test_asl_catch_names_are_core_error_classes():
    from sagepipe_core import errors

    asl = (REPO / "statemachines" / "training_pipeline.asl.json").read_text()
    for name in ("InvalidDatasetError", "InvalidConfigError", "EndpointBusyError"):
        assert f'"{name}"' in asl
        assert issubclass(getattr(errors, name), errors.SagepipeError)


def test_function_env_matches_settings(resources):
    """Every env var ``Settings.from_env`` needs for a step is set on the function that runs it."""
    need = {
        "StartFunction": {"STATE_MACHINE_ARN", "DATA_BUCKET", "SCHEDULED_MODEL_NAME", "POLL_SECONDS", "MAX_POLLS"},
        "ValidateFunction": {
            "ARTIFACTS_BUCKET",
            "MODEL_CODE_S3_URI",
            "PIPELINE_TIMEOUT_SECONDS",
            "DEFAULT_ENDPOINT_INSTANCE_COUNT",
        },
        "EvaluateFunction": {"ARTIFACTS_BUCKET"},
        "ExecutionEndedFunction": {"STATE_MACHINE_ARN", "EVENT_BUS_NAME"},
        "DeployFunction": {"INFERENCE_IMAGE", "SAGEMAKER_ROLE_ARN"},
    }
    for function, names in need.items():
        env = set(resources[function]["Properties"]["Environment"]["Variables"])
        assert names <= env, (function, names - env)


def test_state_machine_is_granted_every_service_call_in_its_asl(resources):
    """Each ``arn:aws:states:::aws-sdk:<service>:<action>`` / optimised ``sagemaker:`` / ``events:`` task
    in the ASL needs that IAM action on the state machine role (Step Functions IAM docs)."""
    asl = json.loads((REPO / "statemachines" / "training_pipeline.asl.json").read_text())
    needed = set()
    for state in asl["States"].values():
        resource = state.get("Resource", "")
        m = re.match(
            r"arn:aws:states:::(?:aws-sdk:)?(sagemaker|events):(\w+?)(?:\.sync|\.waitForTaskToken)?$", resource
        )
        if m:
            service, action = m.groups()
            needed.add(f"{service}:{action[0].upper()}{action[1:]}")
    assert {
        "sagemaker:CreateTrainingJob",
        "sagemaker:DescribeEndpoint",
        "sagemaker:UpdateModelPackage",
        "events:PutEvents",
    } <= needed
    granted = {a for a, _ in _grants(resources["TrainingPipeline"])}
    assert needed - granted == set()


def test_every_task_retries_and_every_failure_is_notified():
    """Issue 2: every Task has a Retry with backoff; every Catch reaches a Notify* state before its terminal
    state, so no failure ends silently. An error no Catch names fails the execution at its Task (issue 16
    item 5: RedriveExecution resumes there) and is notified by ExecutionEndedFunction
    (:func:`test_uncaught_execution_ends_reach_the_notification_path`)."""
    asl = json.loads((REPO / "statemachines" / "training_pipeline.asl.json").read_text())
    states = asl["States"]

    def reaches_notify(name: str, seen: set[str]) -> bool:
        if name.startswith("Notify"):
            return True
        if name in seen:
            return False
        seen.add(name)
        state = states[name]
        nexts = [state["Next"]] if "Next" in state else []
        nexts += [c["Next"] for c in state.get("Choices", [])] + ([state["Default"]] if "Default" in state else [])
        return bool(nexts) and all(reaches_notify(n, seen) for n in nexts)

    for name, state in states.items():
        if state["Type"] != "Task":
            continue
        assert state.get("Retry"), f"{name} has no Retry"
        assert all(r.get("BackoffRate", 1) >= 1.5 and r.get("MaxAttempts", 0) >= 2 for r in state["Retry"]), name
        for catch in state.get("Catch", []):
            assert reaches_notify(catch["Next"], set()), (
                f"{name}: a failure caught to {catch['Next']} is never notified"
            )
    terminals = {n for n, s in states.items() if s["Type"] in {"Succeed", "Fail"}}
    targets = (
        {s.get("Next") for s in states.values()}
        | {c["Next"] for s in states.values() for c in s.get("Catch", []) + s.get("Choices", [])}
        | {s.get("Default") for s in states.values()}
    )
    assert terminals <= targets, f"unreachable terminal states: {terminals - targets}"


# ------------------------------------------------------------------ SageMaker execution role (issue 9)
def _resolve_sub(value: Any, **values: str) -> str:
    """A ``Fn::Sub`` string with the given ``${Name}`` values filled in (others left as they are)."""
    text = value["Fn::Sub"] if isinstance(value, dict) else value
    return re.sub(r"\$\{([^}]+)\}", lambda m: values.get(m.group(1), m.group(0)), text)


def test_execution_role_may_describe_the_auto_rollback_alarms(resources: dict[str, Any]) -> None:
    """Issue 9 item 3: SageMaker reads the auto-rollback alarms of a blue/green UpdateEndpoint with the
    execution role ("Auto-Rollback Configuration and Monitoring": cloudwatch:DescribeAlarms). Every alarm
    name the deploy step creates for an endpoint must be covered."""
    import fnmatch

    from sagepipe_core import deploy, naming

    class RecordingCloudWatch:
        def __init__(self) -> None:
            self.names: list[str] = []

        def put_metric_alarm(self, **kwargs: Any) -> None:
            self.names.append(kwargs["AlarmName"])

    cw = RecordingCloudWatch()
    endpoint = naming.endpoint_name("sagepipe", "churn")
    names = deploy.ensure_rollback_alarms(cw, endpoint, latency_ms=1000, errors_5xx=1)
    assert names and cw.names == names
    role = resources["SageMakerExecutionRole"]["Properties"]["Policies"]
    granted = [
        _resolve_sub(
            r,
            **{"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "123456789012"},
            ResourcePrefix="sagepipe",
        )
        for st in _statements(role)
        if st["Effect"] == "Allow" and "cloudwatch:DescribeAlarms" in _as_list(st["Action"])
        for r in _as_list(st["Resource"])
    ]
    assert granted, "the SageMaker execution role has no cloudwatch:DescribeAlarms"
    for name in names:
        arn = f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}"
        assert any(fnmatch.fnmatchcase(arn, g) for g in granted), (arn, granted)


def test_no_unused_s3_write_grants(template: dict[str, Any]) -> None:
    """Issue 9 item 13: the S3WritePolicy template grants s3:PutObjectAcl (ACLs are disabled:
    BucketOwnerEnforced) and s3:PutLifecycleConfiguration, which no function uses."""
    sam = [p for r in template["Resources"].values() for p in r.get("Properties", {}).get("Policies", []) or []]
    assert not [p for p in sam if isinstance(p, dict) and "S3WritePolicy" in p]
    actions = {a for st in _statements(template) if st["Effect"] == "Allow" for a in _as_list(st["Action"])}
    assert not actions & {"s3:PutObjectAcl", "s3:PutLifecycleConfiguration"}


# ------------------------------------------------------------------------ time limits (issue 9.4)
def test_config_limits_are_validated_against_the_deployed_execution_timeout(resources):
    """The execution timeout the validate function checks configs against is the ASL's own."""
    from sagepipe_core.config import DEFAULT_PIPELINE_TIMEOUT_SECONDS, StackLimits, parse_config

    asl = json.loads((REPO / "statemachines" / "training_pipeline.asl.json").read_text())
    env = resources["ValidateFunction"]["Properties"]["Environment"]["Variables"]
    assert int(env["PIPELINE_TIMEOUT_SECONDS"]) == asl["TimeoutSeconds"] == DEFAULT_PIPELINE_TIMEOUT_SECONDS
    params = yaml.load((REPO / "template.yaml").read_text(), Loader=CfnLoader)["Parameters"]
    limits = StackLimits(
        pipeline_timeout_seconds=asl["TimeoutSeconds"],
        deploy_seconds=params["PollSeconds"]["Default"] * params["MaxPolls"]["Default"],
    )
    # the documented defaults, and each limit at its maximum with the others at their defaults, fit
    parse_config({"approval": "manual"}, limits)
    parse_config({"approval": "manual", "training": {"max_runtime_seconds": 432000}}, limits)


def test_uncaught_execution_ends_reach_the_notification_path(resources):
    """TIMED_OUT / ABORTED / FAILED of this state machine go to ExecutionEndedFunction, which puts "Pipeline
    Failed" on the bus that PipelineNotificationsRule sends to the log group (and SNS) unless the history
    shows a Fail state of the pipeline ended the run (it notified itself); it may read the history."""
    fn = resources["ExecutionEndedFunction"]["Properties"]
    patterns = [e["Properties"]["Pattern"] for e in fn["Events"].values() if e["Type"] == "EventBridgeRule"]
    for p in patterns:
        assert p["source"] == ["aws.states"] and p["detail-type"] == ["Step Functions Execution Status Change"]
        assert p["detail"]["stateMachineArn"] == [{"Ref": "TrainingPipeline"}]
    statuses = {s for p in patterns for s in p["detail"]["status"]}
    assert statuses == {"FAILED", "TIMED_OUT", "ABORTED"}
    [failed] = [p for p in patterns if p["detail"]["status"] == ["FAILED"]]
    assert "error" not in failed["detail"]  # every FAILED: the handler reads the history to tell them apart
    assert all(
        "DeadLetterConfig" in e["Properties"] and "RetryPolicy" in e["Properties"] for e in fn["Events"].values()
    )
    assert fn["Environment"]["Variables"]["EVENT_BUS_NAME"] == "default"
    rule = resources["PipelineNotificationsRule"]["Properties"]["EventPattern"]
    assert rule["detail-type"] == [{"prefix": "Pipeline "}, "Drift Detected"] and rule["source"] == [
        {"Ref": "EventSource"}
    ]
    asl = (REPO / "statemachines" / "training_pipeline.asl.json").read_text()
    fail_errors = re.findall(r'"Type": "Fail"[^}]*"Error": "([^"]*)"', asl)
    assert fail_errors and not any(e.startswith("States.") for e in fail_errors)


# ---------------------------------------------------------------------- model code (issue 9.6)
def test_sam_deploy_publishes_the_model_code_itself(resources):
    """The ModelCode custom resource is backed by a function whose code package is model/ (so sam
    build/package carry it) and is updated whenever that code changes (a new function version)."""
    cr = resources["ModelCode"]
    assert cr["Type"].startswith("Custom::") and int(cr["Properties"]["ServiceTimeout"]) <= 600
    props = cr["Properties"]
    assert props["ServiceToken"] == {"Fn::GetAtt": ["ModelCodeFunction", "Arn"]}
    assert props["Bucket"] == {"Ref": "ArtifactsBucket"} and props["Key"] == "code/sourcedir.tar.gz"
    assert props["CodeVersion"] == {"Ref": "ModelCodeFunction.Version"}
    fn = resources["ModelCodeFunction"]["Properties"]
    assert fn["CodeUri"] == "model" and fn["AutoPublishAlias"]
    assert fn["Handler"] == "sagepipe_core.model_code.lambda_handler"
    env = resources["ValidateFunction"]["Properties"]["Environment"]["Variables"]
    assert env["MODEL_CODE_S3_URI"] == {"Fn::GetAtt": ["ModelCode", "S3Uri"]}  # and so it depends on it
