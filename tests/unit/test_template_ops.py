"""Static checks of template.yaml for issue 9: notification delivery, the upload trigger's pattern, and the
operations/security findings (log retention, access logs, alarms, resource-policy conditions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sagepipe.twin.template import ACCOUNT_ID, Stack, load_template

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
