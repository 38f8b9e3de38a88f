"""moto's Lambda, wired to the twin's runtime (the ``lambda_invoke`` patch, registered in
:mod:`sagepipe.twin.patches`): ``LambdaFunction._invoke_lambda`` runs the real handler in a warm worker
(:mod:`sagepipe.twin.awslambda.runtime`, through the running twin's ``invoke_lambda``).
"""

from __future__ import annotations

from typing import Any

from ..patches import Patch, _install, _require, twin


def _check_lambda() -> None:
    from moto.awslambda.models import LambdaFunction

    _require(LambdaFunction, "_invoke_lambda", ["self", "event"])
    _require(LambdaFunction, "invoke", ["self", "body", "request_headers", "response_headers"])


def _apply_lambda() -> None:
    from moto.awslambda.models import LambdaFunction

    def _invoke_lambda(self: Any, event: Any = None) -> tuple[str, bool, str]:
        return twin().invoke_lambda(self, event)

    _install("lambda_invoke", LambdaFunction, "_invoke_lambda", _invoke_lambda)


PATCHES: tuple[Patch, ...] = (
    Patch("lambda_invoke", ("moto.awslambda.models:LambdaFunction._invoke_lambda",), _check_lambda, _apply_lambda),
)
