"""The twin's IAM evaluator (sagepipe/twin/iam.py): AWS's policy evaluation logic for the statement forms
template.yaml uses, the request → (action, resource, context) mapping, and SAM's policy-template expansion."""

from __future__ import annotations

import json

import pytest

from sagepipe.twin import iam
from sagepipe.twin.cloudformation.deploy import expand_policy_template, sam_policy_templates
from sagepipe.twin.iam import Check, evaluate

pytestmark = pytest.mark.unit

BUCKET = "arn:aws:s3:::data"


def _doc(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def _allow(action, resource, **extra) -> dict:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def test_allow_needs_action_and_resource_to_match() -> None:
    doc = _doc(_allow(["s3:GetObject"], f"{BUCKET}/datasets/*"))
    assert evaluate([doc], Check("s3:GetObject", f"{BUCKET}/datasets/churn/a.csv")).allowed
    assert evaluate([doc], Check("s3:getobject", f"{BUCKET}/datasets/x")).allowed  # actions: case-insensitive
    denied = evaluate([doc], Check("s3:PutObject", f"{BUCKET}/datasets/x"))
    assert not denied.allowed and denied.reason == "no identity-based policy allows"
    assert not evaluate([doc], Check("s3:GetObject", f"{BUCKET}/other/x")).allowed
    assert not evaluate([doc], Check("s3:GetObject", "arn:aws:s3:::DATA/datasets/x")).allowed  # ARNs: case-sensitive


def test_explicit_deny_wins_over_allow() -> None:
    docs = [
        _doc(_allow("s3:*", "*")),
        _doc({"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*", "Sid": "No"}),
    ]
    assert evaluate(docs, Check("s3:GetObject", f"{BUCKET}/k")).allowed
    decision = evaluate(docs, Check("s3:DeleteObject", f"{BUCKET}/k"))
    assert (decision.allowed, decision.reason, decision.sid) == (False, "explicit deny", "No")


def test_arn_segments_match_one_by_one() -> None:
    doc = _doc(_allow("sagemaker:DescribeEndpoint", "arn:aws:sagemaker:us-east-1:123456789012:endpoint/sagepipe-*"))
    assert evaluate(
        [doc], Check("sagemaker:DescribeEndpoint", "arn:aws:sagemaker:us-east-1:123456789012:endpoint/sagepipe-churn")
    ).allowed
    for arn in (
        "arn:aws:sagemaker:us-east-1:123456789012:endpoint/other-churn",
        "arn:aws:sagemaker:eu-west-1:123456789012:endpoint/sagepipe-churn",
        "arn:aws:sagemaker:us-east-1:210987654321:endpoint/sagepipe-churn",
    ):
        assert not evaluate([doc], Check("sagemaker:DescribeEndpoint", arn)).allowed, arn
    # a wildcard in one segment does not reach into the next
    assert not iam.arn_match("arn:aws:logs:*", "arn:aws:logs:us-east-1:1:log-group:x")
    assert iam.arn_match("arn:aws:logs:*:*:*", "arn:aws:logs:us-east-1:1:log-group:x:log-stream:y")
    assert iam.arn_match(
        "arn:aws:logs:us-east-1:1:log-group:/aws/sagemaker/*",
        "arn:aws:logs:us-east-1:1:log-group:/aws/sagemaker/TrainingJobs:log-stream:j/algo-1",
    )
    assert iam.glob_match("a?c", "abc") and not iam.glob_match("a?c", "abbc") and not iam.glob_match("a.c", "abc")


def test_not_action_and_not_resource() -> None:
    doc = _doc({"Effect": "Allow", "NotAction": "iam:*", "NotResource": f"{BUCKET}/secret/*"})
    assert evaluate([doc], Check("s3:GetObject", f"{BUCKET}/k")).allowed
    assert not evaluate([doc], Check("iam:PassRole", "arn:aws:iam::123456789012:role/r")).allowed
    assert not evaluate([doc], Check("s3:GetObject", f"{BUCKET}/secret/k")).allowed


PASS = _doc(
    _allow(
        "iam:PassRole",
        "arn:aws:iam::123456789012:role/exec",
        Condition={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
    )
)


def test_passed_to_service_condition() -> None:
    role = "arn:aws:iam::123456789012:role/exec"
    assert evaluate([PASS], Check("iam:PassRole", role, (("iam:PassedToService", "sagemaker.amazonaws.com"),))).allowed
    assert not evaluate([PASS], Check("iam:PassRole", role, (("iam:PassedToService", "lambda.amazonaws.com"),))).allowed
    assert not evaluate([PASS], Check("iam:PassRole", role)).allowed  # key missing: a positive operator is false
    # condition key names are case-insensitive, values of StringEquals are not
    assert evaluate([PASS], Check("iam:PassRole", role, (("IAM:passedToService", "sagemaker.amazonaws.com"),))).allowed
    assert not evaluate(
        [PASS], Check("iam:PassRole", role, (("iam:PassedToService", "SageMaker.amazonaws.com"),))
    ).allowed


def test_namespace_condition_string_like() -> None:
    doc = _doc(
        _allow("cloudwatch:PutMetricData", "*", Condition={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}})
    )
    ok = Check("cloudwatch:PutMetricData", "*", (("cloudwatch:namespace", "/aws/sagemaker/TrainingJobs"),))
    bad = Check("cloudwatch:PutMetricData", "*", (("cloudwatch:namespace", "sagepipe"),))
    assert evaluate([doc], ok).allowed and not evaluate([doc], bad).allowed


def test_condition_operators_and_missing_keys() -> None:
    ctx = {"k": "v", "arn": "arn:aws:events:us-east-1:1:rule/r"}
    holds = iam.condition_holds
    assert holds({"StringNotEquals": {"k": ["a", "b"]}}, ctx)
    assert not holds({"StringNotEquals": {"k": ["a", "v"]}}, ctx)
    assert holds({"StringNotEquals": {"missing": "x"}}, ctx)  # negated operator, key missing: true
    assert holds({"StringEqualsIfExists": {"missing": "x"}}, ctx)
    assert not holds({"StringEquals": {"missing": "x"}}, ctx)
    assert holds({"StringEqualsIgnoreCase": {"k": "V"}}, ctx)
    assert holds({"ArnLike": {"arn": "arn:aws:events:*:1:rule/*"}}, ctx)
    assert not holds({"ArnNotLike": {"arn": "arn:aws:events:*:1:rule/*"}}, ctx)
    assert holds({"Null": {"missing": "true", "k": "false"}}, ctx) and not holds({"Null": {"k": "true"}}, ctx)
    assert holds({"StringEquals": {"k": "v"}, "StringLike": {"arn": "*rule/r"}}, ctx)  # operators ANDed
    assert not holds({"StringEquals": {"k": "v", "arn": "x"}}, ctx)  # keys ANDed
    assert holds({"Bool": {"flag": True}}, {"flag": "true"})
    with pytest.raises(iam.UnsupportedPolicy):
        holds({"ForAnyValue:StringEquals": {"k": "v"}}, ctx)
    with pytest.raises(iam.UnsupportedPolicy):
        holds({"NumericLessThan": {"k": "1"}}, ctx)


def test_principal_in_identity_policy_is_refused() -> None:
    with pytest.raises(iam.UnsupportedPolicy):
        evaluate(
            [_doc({"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*"})], Check("s3:GetObject", "*")
        )


def test_sagemaker_create_calls_imply_pass_role_and_tag_on_create() -> None:
    params = {
        "TrainingJobName": "Churn-Run-1",
        "RoleArn": "arn:aws:iam::123456789012:role/exec",
        "Tags": [{"Key": "sagepipe:model", "Value": "churn"}],
    }
    checks = iam.checks_for("sagemaker:CreateTrainingJob", params, "us-east-1")
    job = "arn:aws:sagemaker:us-east-1:123456789012:training-job/churn-run-1"  # names lower-cased in ARNs
    assert checks == [
        Check("sagemaker:CreateTrainingJob", job),
        Check("iam:PassRole", params["RoleArn"], (("iam:PassedToService", "sagemaker.amazonaws.com"),)),
        Check("sagemaker:AddTags", job),
    ]
    tuning = iam.checks_for(
        "sagemaker:CreateHyperParameterTuningJob",
        {
            "HyperParameterTuningJobName": "t1",
            "TrainingJobDefinition": {"RoleArn": "arn:aws:iam::123456789012:role/exec"},
        },
        "us-east-1",
    )
    assert [c.action for c in tuning] == ["sagemaker:CreateHyperParameterTuningJob", "iam:PassRole"]
    [metric] = iam.checks_for("cloudwatch:PutMetricData", {"Namespace": "/aws/sagemaker/TrainingJobs"}, "us-east-1")
    assert metric.context_dict() == {"cloudwatch:namespace": "/aws/sagemaker/TrainingJobs"}
    assert iam.action_for("monitoring", "PutMetricData") == "cloudwatch:PutMetricData"
    assert iam.action_for("lambda", "Invoke") == "lambda:InvokeFunction"
    [invoke] = iam.checks_for("lambda:InvokeFunction", {"FunctionName": "f"}, "us-east-1")
    assert invoke.resource == "arn:aws:lambda:us-east-1:123456789012:function:f"
    with pytest.raises(iam.UnmappedOperation):
        iam.checks_for("sagemaker:DeleteModel", {}, "us-east-1")


def test_s3_requests_map_to_their_permissions() -> None:
    key = "arn:aws:s3:::b/k"
    assert iam.s3_checks("GET", "b", "k", {}, {}) == [Check("s3:GetObject", key)]
    assert iam.s3_checks("HEAD", "b", "k", {"versionId": ["1"]}, {}) == [Check("s3:GetObjectVersion", key)]
    assert iam.s3_checks("HEAD", "b", None, {}, {}) == [Check("s3:ListBucket", "arn:aws:s3:::b")]
    assert iam.s3_checks("GET", "b", None, {"list-type": ["2"]}, {}) == [Check("s3:ListBucket", "arn:aws:s3:::b")]
    assert iam.s3_checks("POST", "b", "k", {"uploads": [""]}, {}) == [Check("s3:PutObject", key)]
    assert iam.s3_checks("PUT", "b", "k", {}, {"x-amz-tagging": "a=b"}) == [
        Check("s3:PutObject", key),
        Check("s3:PutObjectTagging", key),
    ]
    copy = iam.s3_checks("PUT", "b", "k", {}, {"X-Amz-Copy-Source": "src/data%2Fx.csv?versionId=v1"})
    assert copy == [
        Check("s3:PutObject", key),
        Check("s3:GetObjectVersion", "arn:aws:s3:::src/data/x.csv"),
        Check("s3:GetObjectVersionTagging", "arn:aws:s3:::src/data/x.csv"),
        Check("s3:PutObjectTagging", key),
    ]
    replace = iam.s3_checks("PUT", "b", "k", {}, {"x-amz-copy-source": "src/x", "x-amz-tagging-directive": "REPLACE"})
    assert [c.action for c in replace] == ["s3:PutObject", "s3:GetObject"]


def test_access_keys_name_their_role() -> None:
    role = "arn:aws:iam::123456789012:role/sagepipe-X-role"
    key = iam.access_key_for(role)
    assert len(key) == 20 and key.startswith("ASIA") and key == iam.access_key_for(role)
    assert iam.role_for_access_key(key) == role and iam.role_for_access_key("testing") is None
    header = f"AWS4-HMAC-SHA256 Credential={key}/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=x"
    assert iam.access_key_of(header) == key and iam.access_key_of(None) is None
    message = str(iam.AccessDenied(role, Check("s3:PutObject", "arn:aws:s3:::b/k")))
    assert message == (
        "User: arn:aws:sts::123456789012:assumed-role/sagepipe-X-role/sagepipe-X-role is not authorized to perform: "
        "s3:PutObject on resource: arn:aws:s3:::b/k because no identity-based policy allows the s3:PutObject action"
    )


def test_policy_templates_expand_as_samtranslator_defines_them() -> None:
    templates = sam_policy_templates()
    [statement] = expand_policy_template("S3ReadPolicy", {"BucketName": "data-bucket"})
    assert statement == {
        **templates["S3ReadPolicy"]["Definition"]["Statement"][0],
        "Resource": [
            {"Fn::Sub": ["arn:${AWS::Partition}:s3:::${bucketName}", {"bucketName": "data-bucket"}]},
            {"Fn::Sub": ["arn:${AWS::Partition}:s3:::${bucketName}/*", {"bucketName": "data-bucket"}]},
        ],
    }
    assert "s3:GetObject" in statement["Action"] and "s3:PutObject" not in json.dumps(statement)
    [invoke] = expand_policy_template("LambdaInvokePolicy", {"FunctionName": "f"})
    assert invoke["Resource"]["Fn::Sub"][0].endswith(":function:${functionName}*")
    with pytest.raises(KeyError):
        expand_policy_template("S3ReadPolicy", {})
    with pytest.raises(KeyError):
        expand_policy_template("NoSuchPolicy", {})
