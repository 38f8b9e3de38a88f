"""EventBridge rule targets, delivered by the twin (the ``events_targets`` patch, registered in
:mod:`sagepipe.twin.patches`): each target of a matching rule is delivered on its own, so one failing
target does not stop the others; Lambda and Step Functions targets go to the running twin's ``deliver``
(asynchronous, as AWS does), the others to moto's own delivery.
"""

from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Any

from ..patches import _APPLIED, Patch, _install, _require, twin

if TYPE_CHECKING:
    from moto.events.utils import EventMessageType


def _check_events() -> None:
    from moto.events.models import Rule

    _require(Rule, "send_to_targets", ["self", "original_event", "transform_input"])
    from moto.events.models import EventPattern

    _require(EventPattern, "load", ["raw_pattern"])
    _require(EventPattern, "matches_event", ["self", "event"])


def _apply_events() -> None:
    from moto.events.models import Rule
    from moto.events.utils import EventTemplateParser

    original = _APPLIED.setdefault("events.original", Rule.send_to_targets)

    def send_to_targets(self: Any, original_event: EventMessageType, transform_input: bool = True) -> None:
        if not self.event_pattern.matches_event(original_event):
            return
        if getattr(self, "state", "ENABLED") != "ENABLED":
            return
        for target in list(self.targets):
            service = target["Arn"].split(":")[2]
            try:
                event: Any = original_event
                if transform_input and (
                    target.get("Input") or target.get("InputPath") or target.get("InputTransformer")
                ):
                    if target.get("Input"):
                        event = json.loads(target["Input"])
                    elif target.get("InputTransformer"):
                        tr = target["InputTransformer"]
                        event = EventTemplateParser.parse(
                            input_template=tr.get("InputTemplate"),
                            input_paths_map=tr.get("InputPathsMap", {}),
                            event=original_event,
                        )
                if service in {"lambda", "states"}:
                    twin().deliver(self, target, event)
                else:
                    only = copy.copy(self)
                    # CloudFormation's LogGroup Arn ends in ":*"; EventBridge accepts it, moto does not
                    only.targets = [{**target, "Arn": target["Arn"].removesuffix(":*")}]
                    original(only, copy.deepcopy(original_event), transform_input)
            except Exception as exc:  # noqa: BLE001 - one failing target must not stop the others
                twin().log("events", f"delivery of rule {self.name} to {target['Arn']} failed: {exc!r}")

    _install("events_targets", Rule, "send_to_targets", send_to_targets)


PATCHES: tuple[Patch, ...] = (
    Patch("events_targets", ("moto.events.models:Rule.send_to_targets",), _check_events, _apply_events),
)
