"""Static checks of template.yaml for issue 9: notification delivery, the upload trigger's pattern, and the
operations/security findings (log retention, access logs, alarms, resource-policy conditions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sagepipe.twin.cloudformation.template import ACCOUNT_ID, Stack, load_template

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stack() -> Stack:
    """template.yaml as the twin reads it, with CloudFormation's values for the resources these tests use."""
    s = Stack(name="sagepipe", template=load_template(REPO / "template.yaml"), root=REPO)
    group = "/aws/events/sagepipe/notifications"
    s.physical["NotificationsLogGroup"] = group
    # Fn::GetAtt LogGroup.Arn ends in ":*" (AWS::Logs::LogGroup return values)
    s.attributes["NotificationsLogGroup"] = {"Arn": f"arn:aws:logs:us-east-1:{ACCOUNT_ID}:log-group:{group}:*"}
    s.physical["DataBucket"] = "sagepipe-databucket-0123abcd"
    return s


def test_notifications_rule_targets_the_documented_log_group_arn(stack: Stack) -> None:
    """Issue 9 item 8: an EventBridge target for CloudWatch Logs is the log group ARN
    ``arn:aws:logs:<region>:<account>:log-group:<name>`` (EventBridge User Guide, CloudWatch Logs targets),
    not GetAtt's ``…:*`` form, reported not to deliver (aws-samples/serverless-patterns PR #221)."""
    rule = stack.template["Resources"]["PipelineNotificationsRule"]["Properties"]
    [log_target] = [t for t in rule["Targets"] if isinstance(t, dict) and t.get("Id") == "NotificationsLog"]
    arn = stack.resolve(log_target["Arn"])
    assert arn == f"arn:aws:logs:us-east-1:{ACCOUNT_ID}:log-group:/aws/events/sagepipe/notifications"


# ----------------------------------------------------------------------------- upload trigger (item 9)
KEYS = [
    "datasets/churn/data.csv",
    "datasets/churn/DATA.CSV",
    "datasets/churn/data.Csv",
    "datasets/churn/sub/dir/data.csv",
    "datasets/churn/sagepipe.json",
    "datasets/churn/",
    "datasets/churn/data.csv.gz",
    "datasets/churn/data.csvx",
    "datasets/data.csv",
    "elsewhere/data.csv",
    "quarantine/churn/x/data.csv",
]


def _s3_event(bucket: str, key: str) -> Any:  # moto types it EventMessageType (a TypedDict)
    """An S3 "Object Created" event as EventBridge delivers it (S3 User Guide, EventBridge message structure)."""
    return {
        "version": "0",
        "source": "aws.s3",
        "detail-type": "Object Created",
        "account": ACCOUNT_ID,
        "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {"version": "0", "bucket": {"name": bucket}, "object": {"key": key, "size": 10, "etag": "e"}},
    }


def test_upload_rule_and_start_function_agree_on_csv_keys(stack: Stack) -> None:
    """Issue 9 item 9: every key the start function runs (``.csv`` in any case under datasets/<model>/)
    is matched by the rule, with the twin's matcher (moto's EventPattern); non-CSV keys (the per-model
    config) start nothing. Keys the rule matches but the function skips are skipped with a reason."""
    import json

    from moto.events.models import EventPattern

    from sagepipe_core.events import DataVersion, classify_key

    bucket = stack.physical["DataBucket"]
    props = stack.template["Resources"]["StartFunction"]["Properties"]["Events"]["DatasetUploaded"]["Properties"]
    pattern = EventPattern.load(json.dumps(stack.resolve(props["Pattern"])))
    runs, matched = set(), set()
    for key in KEYS:
        if isinstance(classify_key(bucket, key, 10, "e", None, "s3"), DataVersion):
            runs.add(key)
        if pattern.matches_event(_s3_event(bucket, key)):
            matched.add(key)
    assert {"datasets/churn/DATA.CSV", "datasets/churn/data.Csv", "datasets/churn/data.csv"} <= runs
    assert runs - matched == set(), "keys the function would run but the rule never delivers"
    assert not {k for k in matched if not k.lower().endswith(".csv")}, "the rule delivers non-CSV keys"
    assert not pattern.matches_event(_s3_event("another-bucket", "datasets/churn/data.csv"))


def test_cli_upload_accepts_what_the_function_runs(tmp_path: Path) -> None:
    """The CLI's ``upload`` refuses what would never start a run and accepts ``.CSV``."""
    from sagepipe import client

    class S3:
        def __init__(self) -> None:
            self.keys: list[str] = []

        def put_object(self, **kw: Any) -> None:
            self.keys.append(kw["Key"])

    class Target:
        data_bucket = "data"

        def __init__(self) -> None:
            self.s3 = S3()

        def client(self, service: str) -> S3:
            assert service == "s3"
            return self.s3

    target = Target()
    upper = tmp_path / "DATA.CSV"
    upper.write_text("a,b\n1,2\n")
    assert client.upload(target, upper, "churn") == "datasets/churn/DATA.CSV"  # type: ignore[arg-type]  # a duck-typed stand-in for client.Target
    other = tmp_path / "data.txt"
    other.write_text("a,b\n")
    with pytest.raises(ValueError, match="only .csv"):
        client.upload(target, other, "churn")  # type: ignore[arg-type]  # a duck-typed stand-in for client.Target


# -------------------------------------------------------------------- operations and security (item 13)
def _of_type(stack: Stack, kind: str) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in stack.template["Resources"].items() if r["Type"] == kind}


def test_every_function_log_group_has_a_retention(stack: Stack) -> None:
    """Lambda writes to /aws/lambda/<function name>; without a log group of the stack it is kept forever."""
    groups = {
        r["Properties"]["LogGroupName"].get("Fn::Sub"): r["Properties"].get("RetentionInDays")
        for r in _of_type(stack, "AWS::Logs::LogGroup").values()
        if isinstance(r["Properties"].get("LogGroupName"), dict)
    }
    for function in _of_type(stack, "AWS::Serverless::Function"):
        assert groups.get(f"/aws/lambda/${{{function}}}"), f"{function} has no log group with a retention"


def test_api_stage_writes_access_logs_to_a_log_group_with_a_retention(stack: Stack) -> None:
    res = stack.template["Resources"]
    setting = res["InferenceApi"]["Properties"]["AccessLogSetting"]
    [group] = setting["DestinationArn"]["Fn::GetAtt"][:1]
    assert res[group]["Type"] == "AWS::Logs::LogGroup" and res[group]["Properties"]["RetentionInDays"]
    assert "$context.requestId" in setting["Format"]
    # API Gateway logs only with the account's CloudWatch role set, before the stage exists
    [account] = _of_type(stack, "AWS::ApiGateway::Account")
    assert account in res["InferenceApi"]["DependsOn"]


@pytest.mark.parametrize("bucket", ["DataBucket", "ArtifactsBucket"])
def test_versioned_buckets_log_access_and_manage_noncurrent_versions(stack: Stack, bucket: str) -> None:
    props = stack.template["Resources"][bucket]["Properties"]
    assert props["VersioningConfiguration"]["Status"] == "Enabled"
    target = props["LoggingConfiguration"]["DestinationBucketName"]["Ref"]
    assert stack.template["Resources"][target]["Type"] == "AWS::S3::Bucket" and target != bucket
    rules = [r for r in props["LifecycleConfiguration"]["Rules"] if r["Status"] == "Enabled"]
    assert any("NoncurrentVersionExpiration" in r or "NoncurrentVersionTransitions" in r for r in rules)
    if bucket == "DataBucket":  # data set versions are lineage: never expired
        assert not any("NoncurrentVersionExpiration" in r or "ExpirationInDays" in r for r in rules)


def _service_allows(doc: Any) -> list[dict[str, Any]]:
    import json

    if isinstance(doc, dict) and "Fn::Sub" in doc:  # a JSON policy in a Sub string (Logs resource policy)
        doc = json.loads(doc["Fn::Sub"])
    return [st for st in doc["Statement"] if st["Effect"] == "Allow" and "Service" in st.get("Principal", {})]


def test_sns_and_logs_resource_policies_name_their_source(stack: Stack) -> None:
    """Confused deputy: a service principal is allowed only for this stack's rule or alarms (aws:SourceArn)."""
    docs = [r["Properties"]["PolicyDocument"] for r in _of_type(stack, "AWS::SNS::TopicPolicy").values()]
    docs += [r["Properties"]["PolicyDocument"] for r in _of_type(stack, "AWS::Logs::ResourcePolicy").values()]
    assert len(docs) == 2
    for doc in docs:
        allows = _service_allows(doc)
        assert allows
        for st in allows:
            assert "aws:SourceArn" in str(st.get("Condition", {})), st


def test_alarms_on_the_trigger_dead_letter_queue_and_on_failed_executions(stack: Stack) -> None:
    alarms = list(_of_type(stack, "AWS::CloudWatch::Alarm").values())
    text = [str(a["Properties"]) for a in alarms]
    assert any("'TriggerDeadLetterQueue', 'QueueName'" in t and "ApproximateNumberOfMessagesVisible" in t for t in text)
    assert any("ExecutionsFailed" in t and "'Ref': 'TrainingPipeline'" in t for t in text)
    for a in alarms:  # reach the e-mail topic when there is one
        assert "NotificationsTopic" in str(a["Properties"]["AlarmActions"])
