"""Every twin patch of moto's internals is checked against the pinned moto; a moto change must fail
loudly with a message naming the internal."""

from __future__ import annotations

import importlib.metadata

import pytest

from sagepipe.twin import patches

pytestmark = pytest.mark.twin


def test_moto_is_the_pinned_version() -> None:
    assert importlib.metadata.version("moto") == "5.2.5", "the twin patches moto 5.2.5 internals; re-check patches.py"


@pytest.mark.parametrize("patch", patches.PATCHES, ids=lambda p: p.name)
def test_each_patch_matches_moto_internals(patch: patches.Patch) -> None:
    try:
        patch.check()
    except patches.MotoInternalsChanged as exc:  # names the internal that changed
        pytest.fail(f"twin patch {patch.name} ({patch.target}) no longer fits moto: {exc}")
    assert patch.target and callable(patch.apply)


def test_a_missing_internal_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.awslambda.models import LambdaFunction

    monkeypatch.delattr(LambdaFunction, "_invoke_lambda")
    check = next(p for p in patches.PATCHES if p.name == "lambda_invoke").check
    with pytest.raises(patches.MotoInternalsChanged, match=r"LambdaFunction\._invoke_lambda is gone"):
        check()


def test_a_changed_signature_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    import moto.s3.notifications as notifications

    monkeypatch.setattr(notifications, "_send_event_bridge_message", lambda account_id, bucket, key: None)
    check = next(p for p in patches.PATCHES if p.name == "s3_eventbridge").check
    with pytest.raises(patches.MotoInternalsChanged, match="now takes"):
        check()


def test_moto_gaining_update_endpoint_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.sagemaker.responses import SageMakerResponse

    monkeypatch.setattr(SageMakerResponse, "update_endpoint", lambda self: None, raising=False)
    check = next(p for p in patches.PATCHES if p.name == "sagemaker_api").check
    with pytest.raises(patches.MotoInternalsChanged, match="UpdateEndpoint"):
        check()
