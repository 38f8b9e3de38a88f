"""moto's Step Functions interpreter, completed for the twin (two patches, registered in
:mod:`sagepipe.twin.patches`):

- ``jsonata`` - plug ``jsonata-python`` into moto's ASL interpreter (moto leaves JSONata evaluation None);
- ``asl_parse_lock`` - moto's ASL ``Preprocessor`` keeps its query-language scope stack in a class
  attribute shared by all instances, so executions that start together corrupt each other's parse
  ("Unsupported declaration in QueryLanguage=JSONata block") and hang RUNNING: parses are serialised.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from ..patches import _APPLIED, MotoInternalsChanged, Patch, _install, _require


def _jsonata_module() -> Any:
    import moto.stepfunctions.parser.asl.jsonata.jsonata as mod

    return mod


def _check_jsonata() -> None:
    mod = _jsonata_module()
    _require(mod, "_eval_jsonata")
    _require(mod, "eval_jsonata_expression", ["jsonata_expression"])
    _require(mod, "JSONataException", ["error", "details"])
    import jsonata  # noqa: F401  (jsonata-python)


def _apply_jsonata() -> None:
    import jsonata

    mod = _jsonata_module()

    def evaluate(expression: str) -> Any:
        try:
            result = jsonata.Jsonata(expression).evaluate(None)
        except Exception as exc:  # noqa: BLE001 - surfaced as States.QueryEvaluationError by moto
            raise mod.JSONataException("UNKNOWN", str(exc)) from exc
        return None if result is None else json.loads(json.dumps(result))

    _install("jsonata", mod, "_eval_jsonata", evaluate)


_PARSE_LOCK = threading.Lock()


def _check_asl_parse() -> None:
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
    from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor

    _require(AmazonStateLanguageParser, "parse", ["definition"])
    if not isinstance(Preprocessor.__dict__.get("_query_language_per_scope"), list):
        raise MotoInternalsChanged(
            "moto's ASL Preprocessor no longer shares a class-level scope stack; the twin's parse lock may be dropped"
        )


def _apply_asl_parse() -> None:
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    original = _APPLIED.setdefault("asl_parse.original", AmazonStateLanguageParser.parse)

    def parse(definition: str) -> Any:
        with _PARSE_LOCK:
            return original(definition)

    _install("asl_parse_lock", AmazonStateLanguageParser, "parse", parse, static=True)


PATCHES: tuple[Patch, ...] = (
    Patch("jsonata", ("moto.stepfunctions.parser.asl.jsonata.jsonata:_eval_jsonata",), _check_jsonata, _apply_jsonata),
    Patch(
        "asl_parse_lock",
        ("moto.stepfunctions.parser.asl.parse.asl_parser:AmazonStateLanguageParser.parse",),
        _check_asl_parse,
        _apply_asl_parse,
    ),
)
