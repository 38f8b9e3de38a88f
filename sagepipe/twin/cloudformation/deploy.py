"""Deploy ``template.yaml`` onto the twin: create each resource in dependency order with boto3 calls
against the twin's moto server, and register functions, rules and API routes with the twin.

Supported resource types are listed in :data:`HANDLERS`; any other type is reported on the console
(never dropped silently). SAM event sources supported: ``EventBridgeRule``, ``Schedule`` and ``Api``.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import iam
from ..apigateway import Route
from ..awslambda.runtime import FunctionSpec
from .template import ACCOUNT_ID, Stack

_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
_SFN_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "states.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


@dataclass
class Deployment:
    """What the twin needs after deploy: function specs, API routes, rule DLQs and unsupported resources."""

    functions: dict[str, FunctionSpec] = field(default_factory=dict)  # FunctionName -> spec
    routes: list[Route] = field(default_factory=list)
    api_stage: str = "Prod"
    cors: dict[str, Any] | None = None
    gateway_responses: dict[str, dict[str, str]] = field(default_factory=dict)  # response type -> headers
    api_key: str | None = None  # x-api-key value when the API has Auth.ApiKeyRequired
    iam_auth: bool = False  # Auth.DefaultAuthorizer AWS_IAM: requests must be SigV4-signed
    dead_letter_queues: dict[str, str] = field(default_factory=dict)  # rule name -> queue ARN
    unsupported: list[str] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)


#: The policy SAM adds for an ``EventInvokeConfig`` destination, by its Type (samtranslator's
#: ``IAMRolePolicies`` ``sqs_send_message_role_policy`` & co.): Lambda sends to it with the function's role.
_DESTINATION_ACTIONS = {
    "SQS": "sqs:SendMessage",
    "SNS": "sns:publish",
    "EventBridge": "events:PutEvents",
    "Lambda": "lambda:InvokeFunction",
}


@functools.lru_cache(maxsize=1)
def sam_policy_templates() -> dict[str, Any]:
    """aws-sam-translator's ``policy_templates.json`` (``Templates``: name → Parameters, Definition), the
    file the SAM transform expands ``Policies`` entries such as ``S3ReadPolicy`` from. Read as data: the
    package is installed without its dependencies (``requirements/sdk-registry.txt``).

    Raises:
        FileNotFoundError: aws-sam-translator is not installed (``make install`` installs it).
    """
    spec = importlib.util.find_spec("samtranslator")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("aws-sam-translator is not installed: make install")
    path = Path(next(iter(spec.submodule_search_locations))) / "policy_templates_data" / "policy_templates.json"
    templates: dict[str, Any] = json.loads(path.read_text())["Templates"]
    return templates


def _substitute_refs(value: Any, parameters: dict[str, Any]) -> Any:
    """SAM's policy-template expansion: ``{"Ref": <template parameter>}`` becomes the given value (only
    ``Ref`` is resolved, as samtranslator's ``Template.to_statement`` does; the rest is left to CloudFormation)."""
    if isinstance(value, dict):
        if len(value) == 1 and "Ref" in value and value["Ref"] in parameters:
            return parameters[value["Ref"]]
        return {k: _substitute_refs(v, parameters) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute_refs(v, parameters) for v in value]
    return value


def expand_policy_template(name: str, parameters: dict[str, Any]) -> list[dict[str, Any]]:
    """The statements SAM generates for policy template ``name`` with ``parameters`` (unresolved
    ``Fn::Sub`` on ``AWS::Partition`` & co. remain for the stack to resolve).

    Raises:
        KeyError: no such template, or a parameter it needs is missing (SAM fails the transform too).
    """
    template = sam_policy_templates()[name]
    missing = set(template.get("Parameters", {})) - set(parameters)
    if missing:
        raise KeyError(f"policy template {name} needs parameters {sorted(missing)}")
    statements: list[dict[str, Any]] = iam._as_list(
        _substitute_refs(copy.deepcopy(template["Definition"]), parameters)["Statement"]
    )
    return statements


def _zip_placeholder() -> bytes:
    """moto's CreateFunction needs a zip; the twin runs the code from its CodeUri directory instead."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("README.txt", "sagepipe twin: code runs from the CodeUri directory")
    return buf.getvalue()


class Deployer:
    """Creates the stack's resources. ``clients(service)`` returns a boto3 client for the twin."""

    def __init__(
        self,
        stack: Stack,
        clients: Callable[[str], Any],
        extra_env: dict[str, str],
        say: Callable[[str], None],
        invoke: Callable[[FunctionSpec, bytes], Any] | None = None,
    ) -> None:
        self.stack, self.clients, self.extra_env, self.say = stack, clients, extra_env, say
        self.invoke = invoke  # runs a function's real handler (custom resources need it)
        self.result = Deployment()
        self.layers: dict[str, Path] = {}

    # -------------------------------------------------------------------------- resource handlers
    def bucket(self, lid: str, props: dict[str, Any]) -> None:
        s3 = self.clients("s3")
        name = props.get("BucketName") or self.stack.physical_name(lid, lower=True)
        s3.create_bucket(Bucket=name)
        if props.get("VersioningConfiguration"):
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration=props["VersioningConfiguration"])
        if props.get("BucketEncryption"):
            s3.put_bucket_encryption(
                Bucket=name,
                ServerSideEncryptionConfiguration={  # CFN list -> API {"Rules": [...]}
                    "Rules": [
                        {"ApplyServerSideEncryptionByDefault": r["ServerSideEncryptionByDefault"]}
                        for r in props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
                    ]
                },
            )
        if props.get("PublicAccessBlockConfiguration"):
            s3.put_public_access_block(
                Bucket=name, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"]
            )
        if props.get("NotificationConfiguration", {}).get("EventBridgeConfiguration", {}).get("EventBridgeEnabled"):
            s3.put_bucket_notification_configuration(
                Bucket=name, NotificationConfiguration={"EventBridgeConfiguration": {}}
            )
        self.stack.physical[lid] = name
        self.stack.attributes[lid] = {"Arn": f"arn:aws:s3:::{name}", "DomainName": f"{name}.s3.amazonaws.com"}

    def bucket_policy(self, lid: str, props: dict[str, Any]) -> None:
        """Apply the bucket policy, minus TLS-only statements: the twin serves plain HTTP on 127.0.0.1,
        and moto evaluates ``aws:SecureTransport`` (it would deny every request). Reported on the console."""
        doc = dict(props["PolicyDocument"])
        keep = [
            st for st in doc.get("Statement", []) if "aws:SecureTransport" not in json.dumps(st.get("Condition", {}))
        ]
        if len(keep) != len(doc.get("Statement", [])):
            self.say(
                f"{lid}: TLS-only (aws:SecureTransport) statements recorded, not enforced (the twin is HTTP on 127.0.0.1)"
            )
        if keep:
            self.clients("s3").put_bucket_policy(Bucket=props["Bucket"], Policy=json.dumps({**doc, "Statement": keep}))
        self.stack.physical[lid] = props["Bucket"]

    def queue(self, lid: str, props: dict[str, Any]) -> None:
        sqs = self.clients("sqs")
        name = props.get("QueueName") or self.stack.physical_name(lid, max_len=80)
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        self.stack.physical[lid] = url
        self.stack.attributes[lid] = {"Arn": f"arn:aws:sqs:{self.stack.region}:{ACCOUNT_ID}:{name}", "QueueName": name}

    def queue_policy(self, lid: str, props: dict[str, Any]) -> None:
        for url in props["Queues"]:
            self.clients("sqs").set_queue_attributes(
                QueueUrl=url, Attributes={"Policy": json.dumps(props["PolicyDocument"])}
            )
        self.stack.physical[lid] = lid

    def _role(self, lid: str, name: str, trust: dict[str, Any], policies: list[dict[str, Any]]) -> str:
        client = self.clients("iam")
        arn: str = client.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        for i, doc in enumerate(policies):
            client.put_role_policy(RoleName=name, PolicyName=f"policy{i}", PolicyDocument=json.dumps(doc))
        iam.deployed(arn, lid, policies)
        return arn

    def role(self, lid: str, props: dict[str, Any]) -> None:
        name = props.get("RoleName") or self.stack.physical_name(lid, max_len=64)
        arn = self._role(
            lid, name, props["AssumeRolePolicyDocument"], [p["PolicyDocument"] for p in props.get("Policies", [])]
        )
        self.stack.physical[lid] = name
        self.stack.attributes[lid] = {"Arn": arn, "RoleId": name}

    def layer(self, lid: str, props: dict[str, Any]) -> None:
        path = (self.stack.root / props["ContentUri"]).resolve()
        arn = f"arn:aws:lambda:{self.stack.region}:{ACCOUNT_ID}:layer:{self.stack.physical_name(lid)}:1"
        self.layers[arn] = path
        self.stack.physical[lid] = arn

    def _inline_policies(self, lid: str, props: dict[str, Any]) -> list[dict[str, Any]]:
        """The policy documents SAM puts on a function's or state machine's generated role, one per
        ``Policies`` entry, in order: inline ``Statement`` documents as written, policy templates
        (``S3ReadPolicy: {BucketName: ...}``) expanded from samtranslator's templates, then the policy SAM
        adds for each ``EventInvokeConfig`` destination (``sqs:SendMessage`` on an SQS one...). AWS managed
        policies named by ARN or name (and the ones SAM adds, AWSLambdaBasicExecutionRole...) are not
        attached (reported): see :mod:`sagepipe.twin.iam`."""
        docs = []
        for p in iam._as_list(props.get("Policies") or []):
            if isinstance(p, dict) and "Statement" in p:
                docs.append({"Version": "2012-10-17", "Statement": p["Statement"]})
            elif isinstance(p, dict) and len(p) == 1:
                ((name, parameters),) = p.items()
                statements = expand_policy_template(name, dict(parameters or {}))
                docs.append({"Version": "2012-10-17", "Statement": self.stack.resolve(statements)})
            else:
                self.say(f"{lid}: managed policy {p} is not attached by the twin (its IAM evaluates inline policies)")
        destinations = ((props.get("EventInvokeConfig") or {}).get("DestinationConfig")) or {}
        for when in ("OnSuccess", "OnFailure"):
            dest = destinations.get(when) or {}
            action = _DESTINATION_ACTIONS.get(dest.get("Type", ""))
            if action and dest.get("Destination"):
                statement = {"Action": action, "Effect": "Allow", "Resource": dest["Destination"]}
                docs.append({"Version": "2012-10-17", "Statement": [statement]})
        return docs

    def function(self, lid: str, props: dict[str, Any]) -> None:
        lam = self.clients("lambda")
        name = props.get("FunctionName") or self.stack.physical_name(lid, max_len=64)
        role_arn = self._role(lid, f"{name[:55]}-role", _TRUST, self._inline_policies(lid, props))
        env = {k: str(v) for k, v in (props.get("Environment", {}).get("Variables", {}) or {}).items()}
        lam.create_function(
            FunctionName=name,
            Runtime=props.get("Runtime", "python3.13"),
            Role=role_arn,
            Handler=props["Handler"],
            Code={"ZipFile": _zip_placeholder()},
            Timeout=int(props.get("Timeout", 3)),
            MemorySize=int(props.get("MemorySize", 128)),
            Environment={"Variables": env},
        )
        arn = f"arn:aws:lambda:{self.stack.region}:{ACCOUNT_ID}:function:{name}"
        layer_dirs = tuple(self.layers[a] for a in props.get("Layers", []) if a in self.layers)
        self.result.functions[name] = FunctionSpec(
            name=name,
            code_dir=(self.stack.root / props["CodeUri"]).resolve(),
            handler=props["Handler"],
            layer_dirs=layer_dirs,
            # the function's role's session credentials, as Lambda provides them (the twin's IAM checks them)
            environment={**env, **self.extra_env, **iam.environment_for(role_arn)},
            timeout_s=float(props.get("Timeout", 3)),
            memory_mb=int(props.get("MemorySize", 128)),
            arn=arn,
        )
        self.stack.physical[lid] = name
        self.stack.attributes[lid] = {"Arn": arn}
        if props.get("AutoPublishAlias"):  # SAM: `!Ref Function.Version` / `!Ref Function.Alias`
            self.stack.physical[f"{lid}.Version"] = f"{arn}:1"
            self.stack.physical[f"{lid}.Alias"] = f"{arn}:{props['AutoPublishAlias']}"
        self._event_invoke_config(name, props.get("EventInvokeConfig"))
        for event_id, event in (props.get("Events") or {}).items():
            self._event_source(lid, name, arn, event_id, event)

    def _event_invoke_config(self, name: str, config: dict[str, Any] | None) -> None:
        """SAM ``EventInvokeConfig`` → Lambda PutFunctionEventInvokeConfig (retries, max event age and the
        on-failure/on-success destinations of asynchronous invocations; the twin's delivery reads it back)."""
        if not config:
            return
        args: dict[str, Any] = {"FunctionName": name}
        for key in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds"):
            if key in config:
                args[key] = int(config[key])
        destinations = {
            when: {"Destination": str(d["Destination"])}
            for when, d in (config.get("DestinationConfig") or {}).items()
            if isinstance(d, dict) and d.get("Destination")
        }
        if destinations:
            args["DestinationConfig"] = destinations
        self.clients("lambda").put_function_event_invoke_config(**args)

    def _event_source(self, lid: str, name: str, arn: str, event_id: str, event: dict[str, Any]) -> None:
        kind, p = event["Type"], event.get("Properties", {})
        events = self.clients("events")
        if kind in {"EventBridgeRule", "Schedule"}:
            rule = p.get("Name") or self.stack.physical_name(f"{lid}{event_id}", max_len=64)
            args: dict[str, Any] = {"Name": rule, "EventBusName": p.get("EventBusName", "default")}
            if kind == "Schedule":
                args["ScheduleExpression"] = p["Schedule"]
                args["State"] = p.get("State") or ("DISABLED" if p.get("Enabled") is False else "ENABLED")
            else:
                args["EventPattern"] = json.dumps(p["Pattern"])
                args["State"] = p.get("State", "ENABLED")
            if p.get("Description"):
                args["Description"] = p["Description"]
            events.put_rule(**args)
            target: dict[str, Any] = {"Id": f"{lid}{event_id}LambdaTarget"[:64], "Arn": arn}
            for key in ("Input", "InputPath"):
                if key in p:
                    target[key] = p[key]
            if "RetryPolicy" in p:
                target["RetryPolicy"] = p["RetryPolicy"]
            if "DeadLetterConfig" in p and "Arn" in p["DeadLetterConfig"]:
                target["DeadLetterConfig"] = {"Arn": p["DeadLetterConfig"]["Arn"]}
                self.result.dead_letter_queues[rule] = p["DeadLetterConfig"]["Arn"]
            events.put_targets(Rule=rule, EventBusName=args["EventBusName"], Targets=[target])
        elif kind == "Api":
            self.result.routes.append(Route(method=p["Method"].upper(), path=p["Path"], function_name=name))
        else:
            self.result.unsupported.append(f"{lid}.Events.{event_id} ({kind})")
            self.say(f"not emulated: event source {lid}.Events.{event_id} of type {kind}")

    def api(self, lid: str, props: dict[str, Any]) -> None:
        self.result.api_stage = props.get("StageName", "Prod")
        cors = props.get("Cors")
        if isinstance(cors, dict):

            def strip(v: Any) -> list[str]:
                return [s.strip().strip("'") for s in str(v).split(",")] if v else []

            self.result.cors = {
                "allow_origins": strip(cors.get("AllowOrigin")),
                "allow_methods": strip(cors.get("AllowMethods")),
                "allow_headers": strip(cors.get("AllowHeaders")),
            }
            if cors.get("MaxAge") is not None:
                self.result.cors["max_age"] = int(str(cors["MaxAge"]).strip().strip("'"))
            if cors.get("AllowCredentials") is not None:
                self.result.cors["allow_credentials"] = str(cors["AllowCredentials"]).lower() == "true"
        self.result.gateway_responses = self._gateway_responses(props.get("GatewayResponses") or {})
        self.stack.physical[lid] = "twinapi"
        self._api_auth(lid, props.get("Auth") or {})

    @staticmethod
    def _gateway_responses(responses: dict[str, Any]) -> dict[str, dict[str, str]]:
        """SAM ``GatewayResponses``: response type (``DEFAULT_4XX``, ``MISSING_AUTHENTICATION_TOKEN``...) ->
        the headers of its ``ResponseParameters.Headers``, their values unquoted (SAM takes static values in
        single quotes). ``StatusCode``, ``ResponseTemplates`` and the ``Paths``/``QueryStrings`` parameters are
        not emulated."""
        out: dict[str, dict[str, str]] = {}
        for kind, spec in responses.items():
            headers = ((spec or {}).get("ResponseParameters") or {}).get("Headers") or {}
            out[str(kind)] = {str(k): str(v).strip().strip("'") for k, v in headers.items()}
        return out

    def _api_auth(self, lid: str, auth: dict[str, Any]) -> None:
        """SAM ``Auth``: ``ApiKeyRequired`` (truthy after parameter resolution, as SAM reads it) makes the twin
        create one API key that the front requires in ``x-api-key`` (403 ``Forbidden`` otherwise, like API
        Gateway); ``DefaultAuthorizer: AWS_IAM`` makes it require a SigV4 ``Authorization`` header (not
        verified: the twin's IAM authorises its roles' AWS calls, not API callers). The SAM-generated ``<Api>ApiKey``/``<Api>UsagePlan``
        logical ids get physical ids so Outputs can Ref them. Usage-plan throttles/quotas are not emulated."""
        import secrets

        required = auth.get("ApiKeyRequired")
        if required is True or str(required).lower() == "true":
            self.result.api_key = "twin-" + secrets.token_hex(16)
        self.result.iam_auth = auth.get("DefaultAuthorizer") == "AWS_IAM"
        if auth.get("UsagePlan"):
            self.stack.physical[f"{lid}ApiKey"] = "twinapikey"
            self.stack.physical[f"{lid}UsagePlan"] = "twinusageplan"
            self.stack.attributes.setdefault(f"{lid}ApiKey", {})

    def log_group(self, lid: str, props: dict[str, Any]) -> None:
        logs = self.clients("logs")
        name = props.get("LogGroupName") or f"/twin/{self.stack.physical_name(lid)}"
        logs.create_log_group(logGroupName=name)
        if props.get("RetentionInDays"):
            logs.put_retention_policy(logGroupName=name, retentionInDays=int(props["RetentionInDays"]))
        self.stack.physical[lid] = name
        self.stack.attributes[lid] = {"Arn": f"arn:aws:logs:{self.stack.region}:{ACCOUNT_ID}:log-group:{name}:*"}

    def logs_resource_policy(self, lid: str, props: dict[str, Any]) -> None:
        self.clients("logs").put_resource_policy(policyName=props["PolicyName"], policyDocument=props["PolicyDocument"])
        self.stack.physical[lid] = props["PolicyName"]

    def events_rule(self, lid: str, props: dict[str, Any]) -> None:
        events = self.clients("events")
        name = props.get("Name") or self.stack.physical_name(lid, max_len=64)
        args: dict[str, Any] = {
            "Name": name,
            "State": props.get("State", "ENABLED"),
            "EventBusName": props.get("EventBusName", "default"),
        }
        if "EventPattern" in props:
            args["EventPattern"] = json.dumps(props["EventPattern"])
        if "ScheduleExpression" in props:
            args["ScheduleExpression"] = props["ScheduleExpression"]
        arn = events.put_rule(**args)["RuleArn"]
        targets = [
            {
                k: v
                for k, v in t.items()
                if k in {"Id", "Arn", "Input", "InputPath", "RoleArn", "DeadLetterConfig", "RetryPolicy"}
            }
            for t in props.get("Targets", [])
        ]
        if targets:
            events.put_targets(Rule=name, EventBusName=args["EventBusName"], Targets=targets)
        self.stack.physical[lid] = name
        self.stack.attributes[lid] = {"Arn": arn}

    def sns_topic(self, lid: str, props: dict[str, Any]) -> None:
        sns = self.clients("sns")
        arn = sns.create_topic(Name=props.get("TopicName") or self.stack.physical_name(lid, max_len=256))["TopicArn"]
        for sub in props.get("Subscription", []):
            sns.subscribe(TopicArn=arn, Protocol=sub["Protocol"], Endpoint=sub["Endpoint"])
        self.stack.physical[lid] = arn
        self.stack.attributes[lid] = {"TopicArn": arn, "TopicName": arn.rsplit(":", 1)[1]}

    def sns_topic_policy(self, lid: str, props: dict[str, Any]) -> None:
        for arn in props["Topics"]:
            self.clients("sns").set_topic_attributes(
                TopicArn=arn, AttributeName="Policy", AttributeValue=json.dumps(props["PolicyDocument"])
            )
        self.stack.physical[lid] = lid

    def state_machine(self, lid: str, props: dict[str, Any]) -> None:
        sfn = self.clients("stepfunctions")
        name = props.get("Name") or self.stack.physical_name(lid, max_len=80)
        text = (self.stack.root / props["DefinitionUri"]).read_text()
        for key, value in (props.get("DefinitionSubstitutions") or {}).items():
            text = text.replace("${" + key + "}", str(value))
        json.loads(text)  # the substituted definition must still be JSON
        role_arn = self._role(lid, f"{name[:55]}-role", _SFN_TRUST, self._inline_policies(lid, props))
        arn = sfn.create_state_machine(
            name=name, definition=text, roleArn=role_arn, type=props.get("Type", "STANDARD")
        )["stateMachineArn"]
        self.stack.physical[lid] = arn
        self.stack.attributes[lid] = {"Name": name, "Arn": arn}

    def custom_resource(self, lid: str, props: dict[str, Any]) -> None:
        """A Lambda-backed custom resource, as CloudFormation runs it: a Create request (properties as
        strings) to the ``ServiceToken`` function, whose response object must arrive at ``ResponseURL``
        (here a one-shot listener on 127.0.0.1 instead of a pre-signed S3 URL) within ``ServiceTimeout``.
        FAILED, no answer or an answer over 4,096 bytes fails the deploy, as CREATE_FAILED does."""
        from .response import ResponseListener, create_request

        token = str(props.get("ServiceToken", ""))
        name = token.split(":function:")[1].split(":")[0] if ":function:" in token else ""
        if name not in self.result.functions or self.invoke is None:
            raise RuntimeError(f"{lid}: ServiceToken {token!r} is not a function of this stack")
        timeout = float(props.get("ServiceTimeout", 3600))
        with ResponseListener() as listener:
            request = create_request(
                self.stack, lid, self.stack.template["Resources"][lid]["Type"], props, listener.url
            )
            result = self.invoke(self.result.functions[name], json.dumps(request).encode())
            response = listener.wait(0.5 if result.errored else timeout)
        if response is None:
            detail = result.payload.decode("utf-8", "replace")[:500] if result.errored else "no response"
            raise RuntimeError(f"{lid} ({name}) did not answer CloudFormation: {detail}")
        if response["Status"] != "SUCCESS":
            raise RuntimeError(f"{lid} CREATE_FAILED: {response.get('Reason')}")
        self.stack.physical[lid] = response["PhysicalResourceId"]
        self.stack.attributes[lid] = {k: str(v) for k, v in (response.get("Data") or {}).items()}

    # ------------------------------------------------------------------------------------ driver
    def deploy(self) -> Deployment:
        """Create every resource in dependency order; resolve Outputs. Returns the :class:`Deployment`."""
        handlers: dict[str, Callable[[str, dict[str, Any]], None]] = {
            "AWS::S3::Bucket": self.bucket,
            "AWS::S3::BucketPolicy": self.bucket_policy,
            "AWS::SQS::Queue": self.queue,
            "AWS::SQS::QueuePolicy": self.queue_policy,
            "AWS::IAM::Role": self.role,
            "AWS::Serverless::LayerVersion": self.layer,
            "AWS::Serverless::Function": self.function,
            "AWS::Serverless::Api": self.api,
            "AWS::Serverless::StateMachine": self.state_machine,
            "AWS::Logs::LogGroup": self.log_group,
            "AWS::Logs::ResourcePolicy": self.logs_resource_policy,
            "AWS::Events::Rule": self.events_rule,
            "AWS::SNS::Topic": self.sns_topic,
            "AWS::SNS::TopicPolicy": self.sns_topic_policy,
        }
        resources = self.stack.resources
        for lid in self.stack.deploy_order():
            res = resources[lid]
            if not self.stack.enabled(lid):
                self.say(f"skipped: {lid} (condition {res['Condition']} is false)")
                continue
            custom = res["Type"] == "AWS::CloudFormation::CustomResource" or res["Type"].startswith("Custom::")
            handler = self.custom_resource if custom else handlers.get(res["Type"])
            if handler is None:
                self.result.unsupported.append(f"{lid} ({res['Type']})")
                self.say(f"not emulated: {lid} ({res['Type']})")
                self.stack.physical[lid] = lid
                self.stack.attributes[lid] = {}
                continue
            handler(lid, self.stack.resolve(res.get("Properties", {})))
        for key, out in (self.stack.template.get("Outputs") or {}).items():
            self.result.outputs[key] = str(self.stack.resolve(out["Value"]))
        return self.result


HANDLED_TYPES = (
    "AWS::S3::Bucket",
    "AWS::S3::BucketPolicy",
    "AWS::SQS::Queue",
    "AWS::SQS::QueuePolicy",
    "AWS::IAM::Role",
    "AWS::Serverless::LayerVersion",
    "AWS::Serverless::Function",
    "AWS::Serverless::Api",
    "AWS::Serverless::StateMachine",
    "AWS::Logs::LogGroup",
    "AWS::Logs::ResourcePolicy",
    "AWS::Events::Rule",
    "AWS::SNS::Topic",
    "AWS::SNS::TopicPolicy",
    "AWS::CloudFormation::CustomResource",  # and Custom::<Name>: Lambda-backed (Deployer.custom_resource)
)
