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
    ``tolerance``, ``min_improvement``, ``incompatible_champion``). Rules, in order:

    1. the evaluation report must exist and hold a finite challenger ``test`` metric, and the
       ``test:<metric>`` value in ``FinalMetricDataList`` must exist, be finite and agree with it
       (else ``reject``: fail closed);
    2. the challenger must meet the threshold;
    3. no champion → ``deploy``; champion scored → deploy only if the challenger is not worse by more
       than ``tolerance`` and better by at least ``min_improvement``; champion incompatible →
       ``incompatible_champion`` policy (``threshold_only`` deploys, ``reject`` rejects); champion
       could not be scored → ``reject``.

    Returns the :class:`~.records.GateDecision` (without ``metrics``: the Evaluate step adds them).
    """
    metric = config["metric"]
    maximize = bool(config["higher_is_better"])
    threshold = float(config["threshold"])
    challenger: float | None = None
    champion: float | None = None
    champion_status: str | None = None

    def result(deploy: bool, rule: str, reason: str) -> GateDecision:
        return {
            "metric": metric,
            "higher_is_better": maximize,
            "threshold": threshold,
            "challenger": challenger,
            "champion": champion,
            "champion_status": champion_status,
            "deploy": deploy,
            "decision": "deploy" if deploy else "reject",
            "rule": rule,
            "reason": reason,
        }

    if evaluation is None:
        return result(False, "fail_closed", f"evaluation report unavailable: {evaluation_error or 'missing'}")
    report_value = _number(((evaluation.get("metrics") or {}).get("test") or {}).get(metric))
    job_value = final_metric(final_metrics, f"test:{metric}")
    challenger = report_value
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
    champ = evaluation.get("champion") or {"status": "absent"}
    status = champ.get("status", "absent")
    champion_status = status
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
    champ_value = _number(((champ.get("metrics") or {}).get("test") or {}).get(metric))
    champion = champ_value
    if champ_value is None:
        return result(False, "fail_closed", f"champion test {metric} is missing or not finite")
    gain = (report_value - champ_value) if maximize else (champ_value - report_value)
    tolerance, min_improvement = float(config.get("tolerance", 0.0)), float(config.get("min_improvement", 0.0))
    if min_improvement > 0 and gain < min_improvement:
        return result(
            False,
            "champion:min_improvement",
            f"challenger {report_value:.4f} vs champion {champ_value:.4f}: gain {gain:.4f} < min_improvement {min_improvement}",
        )
    if gain < -tolerance - 1e-12:
        return result(
            False,
            "champion:tolerance",
            f"challenger {report_value:.4f} is worse than champion {champ_value:.4f} by {-gain:.4f} > tolerance {tolerance}",
        )
    return result(
        True,
        "champion",
        f"challenger {report_value:.4f} vs champion {champ_value:.4f}: gain {gain:+.4f} within rules (tolerance {tolerance}, min_improvement {min_improvement})",
    )
