"""Every twin patch of moto's internals is checked against the pinned moto; a moto change must fail
loudly with a message naming the internal."""

from __future__ import annotations

import importlib.metadata
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
