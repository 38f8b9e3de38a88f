"""EventBridge schedule rules, fired by the twin: every enabled ``rate(...)`` rule of each bus sends a
"Scheduled Event" to its targets at its rate (EventBridge User Guide, "Creating an Amazon EventBridge rule
that runs on a schedule"); ``cron(...)`` expressions are reported once, not fired.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any

_RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")


class Scheduler:
    """Fires the schedule rules of moto's EventBridge backend (account ``123456789012``, ``region``) until
    ``stop`` is set: ``deliver(rule, target, event)`` delivers each target's event, ``say(message)`` reports
    a schedule the twin does not fire. :meth:`run` is the loop (a thread); :meth:`fire` sends one event now."""

    def __init__(
        self,
        deliver: Callable[[Any, dict[str, Any], dict[str, Any]], None],
        say: Callable[[str], None],
        stop: threading.Event,
        region: str,
    ) -> None:
        self.deliver = deliver
        self.say = say
        self._stop = stop
        self.region = region

    def run(self) -> None:
        """Fire enabled ``rate(...)`` schedule rules (cron expressions are reported, not fired)."""
        from moto.events.models import events_backends

        last: dict[str, float] = {}
        warned: set[str] = set()
        while not self._stop.wait(1.0):
            backend = events_backends["123456789012"][self.region]
            for bus in list(backend.event_buses.values()):
                for rule in list(bus.rules.values()):
                    expr = getattr(rule, "scheduled_expression", None)
                    if not expr or rule.state != "ENABLED":
                        continue
                    m = _RATE.match(expr)
                    if not m:
                        if rule.name not in warned:
                            self.say(f"schedule {expr!r} of rule {rule.name} is not fired by the twin (only rate())")
                            warned.add(rule.name)
                        continue
                    unit = {"minute": 60, "hour": 3600, "day": 86400}[m.group(2).rstrip("s")]
                    now = time.time()
                    if now - last.setdefault(rule.name, now) >= int(m.group(1)) * unit:
                        last[rule.name] = now
                        self.fire(rule)

    def fire(self, rule: Any) -> None:
        """Send a "Scheduled Event" from ``rule`` to its targets now (also used by tests and the CLI)."""
        import uuid

        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "region": self.region,
            "resources": [rule.arn],
            "detail": {},
        }
        for target in list(rule.targets):
            self.deliver(rule, target, event)
