"""The deploy gate: challenger vs absolute threshold and vs the production champion. Fails closed.

Inputs come from the training job: ``evaluation.json`` (written by ``model/train.py`` into the model
artifact; both models are scored on the same new test split) and ``FinalMetricDataList`` (from the
``MetricDefinitions`` regexes, DescribeTrainingJob). Output is a JSON-safe decision record.
"""

from __future__ import annotations

import math
from typing import Any

from .records import GateDecision


def _number(value: Any) -> float | None:
    """``value`` as a finite float, else None (missing, NaN, inf, non-numeric)."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


REASON_DETAIL_LIMIT = 300  # characters of the champion's reason quoted in the decision's reason


# The decision travels in the state and the events (256 KB in all); the training job's full
# evaluation.json (the champion's whole reason) is in the model artifact and the registry.
def _cut(text: str, limit: int = REASON_DETAIL_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def final_metric(final_metric_data_list: list[dict[str, Any]] | None, name: str) -> float | None:
    """Value of ``name`` (e.g. ``test:auc``) in a DescribeTrainingJob ``FinalMetricDataList``, else None."""
    for item in final_metric_data_list or []:
        if item.get("MetricName") == name:
            return _number(item.get("Value"))
    return None


def decide(
    *,
    config: dict[str, Any],
    evaluation: dict[str, Any] | None,
    final_metrics: list[dict[str, Any]] | None,
    evaluation_error: str | None = None,
) -> GateDecision:
    """Decide whether the challenger may be deployed.

    ``config`` is the resolved per-model config (``metric``, ``threshold``, ``higher_is_better``,
    ``tolerance``, ``min_improvement``, ``incompatible_champion``, ``schema_change``). Rules, in order:

    1. the evaluation report must exist and hold a finite challenger ``test`` metric, and the
       ``test:<metric>`` value in ``FinalMetricDataList`` must exist, be finite and agree with it
       (else ``reject``: fail closed);
    2. the challenger must meet the threshold;
    3. no champion → ``deploy``; champion scored → deploy only if the challenger is not worse by more
       than ``tolerance`` and better by at least ``min_improvement``, both measured on the rows the
       champion was scored on (the test rows that did not train it: ``champion.challenger_metrics``);
       champion incompatible → ``incompatible_champion`` policy (``threshold_only`` deploys, ``reject``
       rejects); champion could not be scored → ``reject``;
    4. a candidate that would deploy with a feature set other than the champion's
       (``champion.schema_diff``) follows ``schema_change``: ``manual`` → ``approval_required``
       (RegisterModel then asks for manual approval), ``auto`` → deploy, ``reject`` → reject.

    Returns the :class:`~.records.GateDecision` (without ``metrics``: the Evaluate step adds them).
    """
    metric = config["metric"]
    maximize = bool(config["higher_is_better"])
    threshold = float(config["threshold"])
    champ: dict[str, Any] = {}
    values: dict[str, float | None] = {"challenger": None, "champion": None, "compared": None}

    def result(deploy: bool, rule: str, reason: str) -> GateDecision:
        deploy, rule, reason, required = _schema_policy(champ, deploy, rule, reason, config)
        return {
            "metric": metric,
            "higher_is_better": maximize,
            "threshold": threshold,
            "challenger": values["challenger"],
            "champion": values["champion"],
            "champion_status": champ.get("status") if champ else None,
            "champion_rows_scored": _count(champ.get("rows_scored")),
            "champion_overlap": _count(champ.get("overlap")),
            "challenger_compared": values["compared"],
            "schema_change": champ.get("schema_diff") or None,
            "approval_required": required,
            "deploy": deploy,
            "decision": "deploy" if deploy else "reject",
            "rule": rule,
            "reason": reason,
        }

    if evaluation is None:
        return result(False, "fail_closed", f"evaluation report unavailable: {evaluation_error or 'missing'}")
    report_value = _number(((evaluation.get("metrics") or {}).get("test") or {}).get(metric))
    job_value = final_metric(final_metrics, f"test:{metric}")
    values["challenger"] = report_value
    if report_value is None:
        raw = ((evaluation.get("metrics") or {}).get("test") or {}).get(metric, "absent")
        return result(
            False,
            "fail_closed",
            f"challenger test {metric} is missing or not finite in the evaluation report (value: {raw})",
        )
    if job_value is None:
        return result(False, "fail_closed", f"training job reported no finite test:{metric} in FinalMetricDataList")
    if not math.isclose(job_value, report_value, rel_tol=1e-4, abs_tol=1e-6):
        return result(False, "fail_closed", f"test:{metric} disagrees: job metric {job_value} vs report {report_value}")
    meets = report_value >= threshold if maximize else report_value <= threshold
    if not meets:
        op = ">=" if maximize else "<="
        return result(
            False, "threshold", f"challenger test {metric} {report_value:.4f} does not meet threshold {op} {threshold}"
        )
    found = evaluation.get("champion") or {"status": "absent"}
    champ = found if isinstance(found, dict) else {"status": "error", "reason": "champion is not an object"}
    status = champ.get("status", "absent")
    if status == "absent":
        return result(
            True, "threshold", f"no champion; challenger test {metric} {report_value:.4f} meets threshold {threshold}"
        )
    if status == "incompatible":
        policy = config.get("incompatible_champion", "threshold_only")
        why = _cut(str(champ.get("reason") or "schema changed"))
        if policy == "threshold_only":
            return result(
                True,
                "incompatible_champion:threshold_only",
                f"champion incompatible ({why}); judged on threshold alone: {report_value:.4f} meets {threshold}",
            )
        return result(False, "incompatible_champion:reject", f"champion incompatible ({why}); policy rejects")
    if status != "scored":
        return result(False, "fail_closed", f"champion could not be scored: {_cut(str(champ.get('reason') or status))}")
    return result(*_versus_champion(champ, report_value, values, config))


def _versus_champion(
    champ: dict[str, Any], report_value: float, values: dict[str, float | None], config: dict[str, Any]
) -> tuple[bool, str, str]:
    """Rule 3 for a scored champion: ``(deploy, rule, reason)``; sets ``values["champion"|"compared"]``.

    The challenger's value on the champion's rows (``champion.challenger_metrics``) is compared when the
    report has it (evaluation reports from before manifests do not: then the full test value is).
    """
    metric, maximize = config["metric"], bool(config["higher_is_better"])
    champ_value = _number(((champ.get("metrics") or {}).get("test") or {}).get(metric))
    values["champion"] = champ_value
    if champ_value is None:
        return False, "fail_closed", f"champion test {metric} is missing or not finite"
    same_rows = champ.get("challenger_metrics")
    compared = report_value if same_rows is None else _number(((same_rows or {}).get("test") or {}).get(metric))
    values["compared"] = compared
    if compared is None:
        return False, "fail_closed", f"challenger test {metric} on the champion's rows is missing or not finite"
    rows = _rows_text(champ)
    gain = (compared - champ_value) if maximize else (champ_value - compared)
    tolerance, min_improvement = float(config.get("tolerance", 0.0)), float(config.get("min_improvement", 0.0))
    versus = f"challenger {compared:.4f} vs champion {champ_value:.4f}{rows}"
    if min_improvement > 0 and gain < min_improvement:
        return False, "champion:min_improvement", f"{versus}: gain {gain:.4f} < min_improvement {min_improvement}"
    if gain < -tolerance - 1e-12:
        return False, "champion:tolerance", f"{versus}: worse by {-gain:.4f} > tolerance {tolerance}"
    return (
        True,
        "champion",
        f"{versus}: gain {gain:+.4f} within rules (tolerance {tolerance}, min_improvement {min_improvement})",
    )


def _schema_policy(
    champ: dict[str, Any], deploy: bool, rule: str, reason: str, config: dict[str, Any]
) -> tuple[bool, str, str, bool]:
    """Rule 4: ``(deploy, rule, reason, approval_required)`` after the ``schema_change`` policy."""
    diff = champ.get("schema_diff") if champ else None
    if not (deploy and diff):
        return deploy, rule, reason, False
    policy = config.get("schema_change", "manual")
    what = _cut(schema_change_text(diff))
    if policy == "reject":
        return False, "schema_change:reject", f"{reason}; but {what}: policy rejects", False
    if policy == "manual":
        return True, rule, f"{reason}; {what}: manual approval required (schema_change=manual)", True
    return True, rule, f"{reason}; {what} (schema_change=auto)", False


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _rows_text(champ: dict[str, Any]) -> str:
    """`` on N test rows (K left out: they trained the champion)`` for a reason; ``""`` without counts."""
    rows, overlap = _count(champ.get("rows_scored")), _count(champ.get("overlap"))
    if rows is None:
        return ""
    if overlap is None:
        return f" on {rows} test rows (lineage unknown: none left out)"
    return f" on {rows} test rows ({overlap} left out: they trained the champion)"


def schema_change_text(diff: dict[str, Any]) -> str:
    """One line for a ``schema_diff``: ``feature set changed: added x, y; removed z; retyped w (numeric → categorical)``."""
    counts = diff.get("counts") or {}
    parts = []
    for kind in ("added", "removed"):
        names = [str(n) for n in diff.get(kind) or []]
        if names:
            more = int(counts.get(kind, len(names))) - len(names)
            parts.append(f"{kind} {', '.join(names)}" + (f" (+{more} more)" if more > 0 else ""))
    retyped = diff.get("retyped") or []
    if retyped:
        parts.append(
            "retyped " + ", ".join(f"{r.get('name')} ({r.get('champion')} → {r.get('challenger')})" for r in retyped)
        )
    return "feature set changed: " + ("; ".join(parts) or "yes")
