"""Every twin patch of moto's internals is checked against the pinned moto; a moto change must fail
loudly with a message naming the internal."""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Iterator
from typing import Any

import pytest

from sagepipe.twin import patches

pytestmark = pytest.mark.twin


def test_moto_is_the_pinned_version() -> None:
    assert importlib.metadata.version("moto") == "5.2.5", "the twin patches moto 5.2.5 internals; re-check patches.py"


class _NoTwin:
    """apply_all only stores the runtime; no patched call is made in these tests."""

    training = hosting = tuning = None

    def invoke_lambda(self, function: Any, event: Any) -> tuple[str, bool, str]:
        raise AssertionError("not called")

    def deliver(self, rule: Any, target: dict[str, Any], event: dict[str, Any]) -> None:
        raise AssertionError("not called")

    def invoke_event(self, name: str, payload: bytes) -> bool:
        raise AssertionError("not called")

    def log(self, prefix: str, line: str) -> None:
        raise AssertionError("not called")

    def state_changed(self) -> None:
        raise AssertionError("not called")


@pytest.fixture
def applied() -> Iterator[None]:
    """Every patch applied, as a starting twin does (the patches stay installed, as after a twin)."""
    runtime = _NoTwin()
    patches.apply_all(runtime)
    try:
        yield
    finally:
        patches.release(runtime)


@pytest.mark.parametrize("patch", patches.registry(), ids=lambda p: p.name)
def test_each_patch_matches_moto_internals(patch: patches.Patch) -> None:
    try:
        result = patch.check()
    except patches.MotoInternalsChanged as exc:  # names the internal that changed
        pytest.fail(f"twin patch {patch.name} ({', '.join(patch.sites)}) no longer fits moto: {exc}")
    assert result is None  # check() raises MotoInternalsChanged (above) or returns nothing


@pytest.mark.parametrize("patch", patches.registry(), ids=lambda p: p.name)
def test_each_patch_is_installed_at_every_site_it_names(patch: patches.Patch, applied: None) -> None:
    assert patch.missing() == [], f"twin patch {patch.name}: these moto internals do not hold its replacement"
    assert patch.installed() == set(patch.sites), f"twin patch {patch.name} replaced other internals than it names"
    patch.check()  # the checks still pass over an installed twin (a second twin in the process)


def test_a_site_without_the_replacement_is_reported(applied: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.events.models import Rule

    patch = next(p for p in patches.registry() if p.name == "events_targets")
    monkeypatch.setattr(Rule, "send_to_targets", lambda self, original_event, transform_input=True: None)
    assert patch.missing() == ["moto.events.models:Rule.send_to_targets"]


def test_a_moved_site_fails_loudly(applied: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.awslambda.models import LambdaFunction

    patch = next(p for p in patches.registry() if p.name == "lambda_invoke")
    monkeypatch.delattr(LambdaFunction, "_invoke_lambda")
    with pytest.raises(patches.MotoInternalsChanged, match=r"LambdaFunction\._invoke_lambda is gone"):
        patch.missing()


def test_a_missing_internal_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.awslambda.models import LambdaFunction

    monkeypatch.delattr(LambdaFunction, "_invoke_lambda")
    check = next(p for p in patches.registry() if p.name == "lambda_invoke").check
    with pytest.raises(patches.MotoInternalsChanged, match=r"LambdaFunction\._invoke_lambda is gone"):
        check()


def test_a_changed_signature_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    import moto.s3.notifications as notifications

    monkeypatch.setattr(notifications, "_send_event_bridge_message", lambda account_id, bucket, key: None)
    check = next(p for p in patches.registry() if p.name == "s3_eventbridge").check
    with pytest.raises(patches.MotoInternalsChanged, match="now takes"):
        check()


def test_moto_gaining_update_endpoint_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.sagemaker.responses import SageMakerResponse

    monkeypatch.setattr(SageMakerResponse, "update_endpoint", lambda self: None, raising=False)
    check = next(p for p in patches.registry() if p.name == "sagemaker_api").check
    with pytest.raises(patches.MotoInternalsChanged, match="UpdateEndpoint"):
        check()


def test_moto_losing_a_protocol_parser_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server-side validation reads requests with moto's protocol parsers: without one, it says so."""
    import moto.core.parse as parse

    monkeypatch.setattr(parse, "PROTOCOL_PARSERS", {"json": parse.PROTOCOL_PARSERS["json"]})
    check = next(p for p in patches.registry() if p.name == "server_validation").check
    with pytest.raises(patches.MotoInternalsChanged, match="PROTOCOL_PARSERS"):
        check()


def test_a_schedule_rule_never_receives_bus_events_and_a_pattern_rule_does() -> None:
    """moto's rule with only a ScheduleExpression has an empty EventPattern, which matches every event, so
    each PutEvents would have invoked every scheduled function (DriftFunction checked again on every "Drift
    Detected" it sent). The ``events_targets`` patch delivers bus events to pattern rules only; schedules
    fire from the twin's scheduler. Reads moto's ``Rule.scheduled_expression`` (fails here if renamed)."""
    from moto.events.models import EventPattern, Rule

    delivered: list[str] = []

    class _Recorder(_NoTwin):
        def deliver(self, rule: Any, target: dict[str, Any], event: dict[str, Any]) -> None:
            delivered.append(rule.name)

    previous, recorder = patches._TWIN, _Recorder()
    patches.apply_all(recorder)  # type: ignore[arg-type]
    try:
        target = [{"Id": "t", "Arn": "arn:aws:lambda:us-east-1:123456789012:function:f"}]
        common = {
            "account_id": "123456789012",
            "region_name": "us-east-1",
            "description": None,
            "role_arn": None,
            "event_bus_name": "default",
            "state": "ENABLED",
            "managed_by": None,
            "targets": target,
        }
        scheduled = Rule("every-hour", schedule_exp="rate(1 hour)", event_pattern=None, **common)  # type: ignore[arg-type]
        matching = Rule("drift", schedule_exp=None, event_pattern=json.dumps({"source": ["sagepipe"]}), **common)  # type: ignore[arg-type]
        assert scheduled.scheduled_expression == "rate(1 hour)" and not scheduled.event_pattern.get_pattern()
        assert isinstance(matching.event_pattern, EventPattern)
        event = {
            "source": "sagepipe",
            "detail-type": "Drift Detected",
            "detail": {},
            "id": "1",
            "account": "123456789012",
            "region": "us-east-1",
            "time": "2026-12-04T00:00:00Z",
            "resources": [],
            "version": "0",
        }
        scheduled.send_to_targets(event)
        matching.send_to_targets(event)
        assert delivered == ["drift"]
    finally:
        patches.release(recorder)  # type: ignore[arg-type]
        if previous is not None:
            patches.apply_all(previous)
