"""The run report: one self-contained HTML page built from ``evaluation.json``, the gate decision and lineage.

Inline SVG charts and inline CSS; no script, no external asset (it opens offline, from S3 or a file).

Where the charts are drawn, and why: the training job computes the curve data (``model/diagnostics.py``,
with scikit-learn, for the challenger and the champion on the same test split) and writes it, bounded,
into ``evaluation.json``; this module draws it in the pipeline's evaluate step (and again in the register
step, which adds the model package). So the report exists in the artifacts bucket, next to the model, for
every run that trained - deployed or rejected - and for a user without the CLI; the Lambda layer needs no
plotting library (pure Python, standard library only), and the training container needs none either.

Report key: :func:`report_key` (``models/<model>/<TrainingJobName>/report.html``).
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .gate import schema_change_text

CHALLENGER = "#1f77b4"
CHAMPION = "#e6760b"
REPORT_NAME = "report.html"
CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2733;margin:0;background:#f4f6f8}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 10px;border-bottom:1px solid #d5dbe1;padding-bottom:4px}
h3{font-size:14px;margin:8px 0}
.card{background:#fff;border:1px solid #dde3e9;border-radius:6px;padding:12px 14px;margin:10px 0}
.badge{display:inline-block;padding:2px 10px;border-radius:12px;font-weight:600;color:#fff}
.deploy{background:#2e7d32}.reject{background:#c62828}
.grid{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}.grid .card{margin:0;flex:0 1 auto}
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 9px;border-bottom:1px solid #e6eaee;text-align:right}
th{background:#f0f3f6}td:first-child,th:first-child{text-align:left}
.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;word-break:break-all;text-align:left}
.key{display:inline-block;width:12px;height:12px;border-radius:2px;margin:0 4px -1px 10px}
.muted{color:#5f6b77}.item{white-space:nowrap}svg text{font-family:system-ui,sans-serif}
"""


def report_key(model: str, training_job_name: str) -> str:
    """S3 key of a run's report: next to the model artifact (``models/<model>/<job>/output/model.tar.gz``)."""
    return f"models/{model}/{training_job_name}/{REPORT_NAME}"


def report_uri(model_data_url: str) -> str | None:
    """The report's ``s3://`` URI for a model artifact, where the pipeline writes it (:func:`report_key`).

    ``s3://<bucket>/models/<model>/<job>/output/model.tar.gz`` → ``s3://<bucket>/models/<model>/<job>/report.html``;
    None for an artifact elsewhere.
    """
    head, sep, tail = model_data_url.rpartition("/output/")
    if not sep or "/" in tail or not head.startswith("s3://") or "/models/" not in head:
        return None
    return f"{head}/{REPORT_NAME}"


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, (int, float)):
        if not math.isfinite(float(value)):
            return "-"
        return str(value) if isinstance(value, int) else f"{value:.{digits}f}"
    return _e(value)


# ------------------------------------------------------------------------------------------ SVG
class _Plot:
    """A plot area of ``w`` x ``h`` px with axes mapping data ranges ``xr``/``yr`` onto it."""

    def __init__(
        self,
        w: int,
        h: int,
        xr: tuple[float, float],
        yr: tuple[float, float],
        *,
        xlabel: str = "",
        ylabel: str = "",
        title: str = "",
    ) -> None:
        self.w, self.h, self.xr, self.yr = w, h, xr, yr
        self.left, self.right, self.top, self.bottom = 52, 12, 26, 40
        self.parts: list[str] = []
        self.xlabel, self.ylabel, self.title = xlabel, ylabel, title
        self.xticks, self.yticks = True, True

    def x(self, v: float) -> float:
        lo, hi = self.xr
        return self.left + (v - lo) / ((hi - lo) or 1.0) * (self.w - self.left - self.right)

    def y(self, v: float) -> float:
        lo, hi = self.yr
        return self.h - self.bottom - (v - lo) / ((hi - lo) or 1.0) * (self.h - self.top - self.bottom)

    def add(self, svg: str) -> None:
        self.parts.append(svg)

    def polyline(self, xs: Sequence[Any], ys: Sequence[Any], color: str, *, dash: str = "", width: float = 2) -> None:
        pts = " ".join(f"{self.x(a):.1f},{self.y(b):.1f}" for a, b in zip(xs, ys, strict=False) if _finite(a, b))
        if pts:
            d = f' stroke-dasharray="{dash}"' if dash else ""
            self.add(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="{width}"{d}/>')

    def dots(self, xs: Sequence[Any], ys: Sequence[Any], color: str, r: float = 2.4, opacity: float = 0.55) -> None:
        self.add(
            "".join(
                f'<circle cx="{self.x(a):.1f}" cy="{self.y(b):.1f}" r="{r}" fill="{color}" fill-opacity="{opacity}"/>'
                for a, b in zip(xs, ys, strict=False)
                if _finite(a, b)
            )
        )

    def svg(self) -> str:
        axes = [
            (
                f'<rect x="{self.left}" y="{self.top}" width="{self.w - self.left - self.right}" '
                f'height="{self.h - self.top - self.bottom}" fill="#fff" stroke="#9aa5b1"/>'
            )
        ]
        for v in _ticks(self.xr[0], self.xr[1]) if self.xticks else []:
            axes.append(
                f'<line x1="{self.x(v):.1f}" x2="{self.x(v):.1f}" y1="{self.top}" y2="{self.h - self.bottom}" '
                f'stroke="#eef1f4"/><text x="{self.x(v):.1f}" y="{self.h - self.bottom + 14}" font-size="10" '
                f'text-anchor="middle" fill="#5f6b77">{_tick(v)}</text>'
            )
        for v in _ticks(min(self.yr), max(self.yr)) if self.yticks else []:
            axes.append(
                f'<line x1="{self.left}" x2="{self.w - self.right}" y1="{self.y(v):.1f}" y2="{self.y(v):.1f}" '
                f'stroke="#eef1f4"/><text x="{self.left - 5}" y="{self.y(v) + 3:.1f}" font-size="10" '
                f'text-anchor="end" fill="#5f6b77">{_tick(v)}</text>'
            )
        labels = [
            (
                f'<text x="{self.w / 2:.0f}" y="16" font-size="12" font-weight="600" text-anchor="middle">'
                f"{_e(self.title)}</text>"
            ),
            (
                f'<text x="{(self.left + self.w - self.right) / 2:.0f}" y="{self.h - 6}" font-size="11" '
                f'text-anchor="middle" fill="#3a4550">{_e(self.xlabel)}</text>'
            ),
            (
                f'<text transform="translate(13,{(self.top + self.h - self.bottom) / 2:.0f}) rotate(-90)" font-size="11" '
                f'text-anchor="middle" fill="#3a4550">{_e(self.ylabel)}</text>'
            ),
        ]
        body = "".join(axes) + "".join(self.parts) + "".join(labels)
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.w}" height="{self.h}" '
            f'viewBox="0 0 {self.w} {self.h}" role="img" aria-label="{_e(self.title)}">{body}</svg>'
        )


def _finite(*values: Any) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values in [lo, hi]."""
    if not _finite(lo, hi) or hi <= lo:
        return [lo] if _finite(lo) else []
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    out, v = [], first
    while v <= hi + step * 1e-9:
        out.append(round(v, 10))
        v += step
    return out


def _tick(v: float) -> str:
    a = abs(v)
    if a >= 10000:
        return f"{v:.3g}"
    if a >= 100 or v == int(v):
        return f"{v:.0f}"
    return f"{v:.2f}".rstrip("0").rstrip(".")


def _range(values: Iterable[Any], pad: float = 0.04) -> tuple[float, float]:
    vals = [float(v) for v in values if _finite(v)]
    if not vals:
        return 0.0, 1.0
    lo, hi = min(vals), max(vals)
    if hi == lo:
        return lo - 1.0, hi + 1.0
    span = hi - lo
    return lo - span * pad, hi + span * pad


def _legend(items: Sequence[tuple[str, str]], width: int | None = None) -> str:
    style = f' style="max-width:{width}px"' if width else ""
    return (
        f'<div class="muted"{style}>'
        + " ".join(
            f'<span class="item"><span class="key" style="background:{c}"></span>{_e(n)}</span>' for n, c in items
        )
        + "</div>"
    )


# ------------------------------------------------------------------------------ classifier charts
def _series(models: list[tuple[str, str, dict[str, Any] | None]], kind: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(name, color, curve) for every model's curves of ``kind`` (roc | pr).

    One curve per model (binary): the model's color. One-vs-rest curves (multiclass): one color per class,
    the same for both models (the champion's are dashed), so a class is compared at a glance.
    """
    out = []
    for name, color, curves in models:
        found = (curves or {}).get(kind) or []
        for i, c in enumerate(found):
            out.append((name, color if len(found) == 1 else _PALETTE[i % len(_PALETTE)], c))
    return out


def _curve_legend(series: list[tuple[str, str, dict[str, Any]]], value: str, key: str) -> str:
    """Legend of :func:`_series`: per model (binary) or per class with both models' values (multiclass)."""
    labels = list(dict.fromkeys(c["label"] for _, _, c in series))
    if len(series) == len({n for n, _, _ in series}):  # one curve per model
        return _legend([(f"{n} {c['label']}: {value} {_fmt(c.get(key), 3)}", col) for n, col, c in series], 360)
    items = []
    for lbl in labels:
        vals = " / ".join(f"{_fmt(c.get(key), 3)}" for _, _, c in series if c["label"] == lbl)
        color = next(col for _, col, c in series if c["label"] == lbl)
        items.append((f"{lbl}: {vals}", color))
    models = " / ".join(dict.fromkeys(n for n, _, _ in series))
    return _legend(items, 360) + f'<div class="muted">{value} {_e(models)} (champion dashed)</div>'


_PALETTE = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#e6760b", "#d62728", "#bcbd22", "#7f7f7f"]


def _roc_chart(models: list[tuple[str, str, dict[str, Any] | None]]) -> str:
    p = _Plot(360, 320, (0, 1), (0, 1), xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    p.polyline([0, 1], [0, 1], "#b0b8c0", dash="4 4", width=1)
    series = _series(models, "roc")
    for name, color, c in series:
        p.polyline(c["fpr"], c["tpr"], color, dash="" if name == "challenger" else "6 3")
    return p.svg() + _curve_legend(series, "AUC", "auc")


def _pr_chart(models: list[tuple[str, str, dict[str, Any] | None]]) -> str:
    p = _Plot(360, 320, (0, 1), (0, 1), xlabel="recall", ylabel="precision", title="Precision-recall")
    series = _series(models, "pr")
    for name, color, c in series:
        p.polyline(c["recall"], c["precision"], color, dash="" if name == "challenger" else "6 3")
    if len(series) <= 2 and series and _finite(series[0][2].get("prevalence")):  # no-skill line (binary)
        p.polyline([0, 1], [series[0][2]["prevalence"]] * 2, "#b0b8c0", dash="4 4", width=1)
    return p.svg() + _curve_legend(series, "AP", "average_precision")


def _calibration_chart(models: list[tuple[str, str, dict[str, Any] | None]]) -> str:
    kinds = {((c or {}).get("calibration") or {}).get("kind") for _, _, c in models if c}
    top = "top_class" in kinds
    p = _Plot(
        360,
        320,
        (0, 1),
        (0, 1),
        xlabel="mean predicted probability" + (" (top class)" if top else ""),
        ylabel="observed frequency" + (" (correct)" if top else " (positive)"),
        title="Calibration",
    )
    p.polyline([0, 1], [0, 1], "#b0b8c0", dash="4 4", width=1)
    legend = []
    for name, color, curves in models:
        bins = ((curves or {}).get("calibration") or {}).get("bins") or []
        if not bins:
            continue
        xs, ys = [b["mean_predicted"] for b in bins], [b["observed"] for b in bins]
        p.polyline(xs, ys, color, dash="" if name == "challenger" else "6 3")
        p.dots(xs, ys, color, r=3.2, opacity=0.9)
        legend.append((f"{name} ({sum(b['count'] for b in bins)} rows)", color))
    return p.svg() + _legend(legend)


def _confusion_chart(name: str, curves: dict[str, Any] | None) -> str:
    conf = (curves or {}).get("confusion")
    if not conf:
        return ""
    full, matrix = conf["labels"], conf["matrix"]
    prefix = _common_prefix(full)
    labels = [lbl[len(prefix) :] for lbl in full]
    n = len(labels)
    cell = max(26, min(70, 260 // max(n, 1)))
    left, top = 112, 40
    w, h = left + cell * n + 12, top + cell * n + 44
    peak = max((max(r) for r in matrix), default=1) or 1
    parts = [
        (
            f'<text x="{w / 2:.0f}" y="16" font-size="12" font-weight="600" text-anchor="middle">'
            f"Confusion matrix - {_e(name)}</text>"
        ),
        (
            f'<text x="{left + cell * n / 2:.0f}" y="{h - 6}" font-size="11" text-anchor="middle">predicted'
            f"{_e(f' (labels {prefix}…)' if prefix else '')}</text>"
        ),
        (
            f'<text transform="translate(12,{top + cell * n / 2:.0f}) rotate(-90)" font-size="11" '
            'text-anchor="middle">actual</text>'
        ),
    ]
    for i, row in enumerate(matrix):
        total = sum(row) or 1
        parts.append(
            f'<text x="{left - 6}" y="{top + cell * i + cell / 2 + 4:.0f}" font-size="11" text-anchor="end">'
            f"{_e(_short(labels[i]))}</text>"
        )
        for j, v in enumerate(row):
            a = v / peak
            fill = f"rgb({int(255 - 200 * a)},{int(255 - 140 * a)},{int(255 - 75 * a)})"
            ink = "#fff" if a > 0.55 else "#1d2733"
            parts.append(
                f'<rect x="{left + cell * j}" y="{top + cell * i}" width="{cell}" height="{cell}" fill="{fill}" '
                f'stroke="#fff"/><text x="{left + cell * j + cell / 2:.0f}" y="{top + cell * i + cell / 2:.0f}" '
                f'font-size="{11 if cell > 34 else 9}" text-anchor="middle" fill="{ink}">{v}</text>'
                f'<text x="{left + cell * j + cell / 2:.0f}" y="{top + cell * i + cell / 2 + 12:.0f}" font-size="9" '
                f'text-anchor="middle" fill="{ink}">{_row_share(v, total)}</text>'
                if cell > 34
                else f'<rect x="{left + cell * j}" y="{top + cell * i}" width="{cell}" height="{cell}" '
                f'fill="{fill}" stroke="#fff"/><text x="{left + cell * j + cell / 2:.0f}" '
                f'y="{top + cell * i + cell / 2 + 3:.0f}" font-size="9" text-anchor="middle" fill="{ink}">{v}</text>'
            )
    for j, lbl in enumerate(labels):
        parts.append(
            f'<text x="{left + cell * j + cell / 2:.0f}" y="{top + cell * n + 14}" font-size="11" '
            f'text-anchor="middle">{_e(_short(lbl))}</text>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
        f'aria-label="confusion matrix {_e(name)}">{"".join(parts)}</svg>'
    )


def _common_prefix(labels: Sequence[str]) -> str:
    """The prefix every label shares, cut back to a ``_``/``-``/space boundary; else empty.

    Only when it leaves each label its own text: ``area_code_408``, ``area_code_415`` → ``area_code_``.
    """
    if len(labels) < 2:
        return ""
    first, last = min(labels), max(labels)
    i = 0
    while i < min(len(first), len(last)) and first[i] == last[i]:
        i += 1
    cut = max(first.rfind(sep, 0, i) for sep in "_- ") + 1
    prefix = first[:cut]
    return prefix if len(prefix) >= 3 and all(len(lbl) > len(prefix) for lbl in labels) else ""


def _short(label: Any, n: int = 12) -> str:
    s = str(label)
    return s if len(s) <= n else s[: n - 1] + "…"


def _row_share(v: int, total: int) -> str:
    """``v`` as a share of its row, never rounded to a misleading 100% or 0%: 639 of 642 is "99.5%"."""
    share = 100 * v / total if total else 0.0
    text = f"{share:.0f}%"
    if (text == "100%" and v < total) or (text == "0%" and v > 0):
        text = f"{share:.1f}%" if 0.05 <= share <= 99.95 else ("<0.1%" if v > 0 and share < 1 else ">99.9%")
    return text


def _per_class_table(models: list[tuple[str, str, dict[str, Any] | None]]) -> str:
    rows = []
    for name, _, curves in models:
        for c in (curves or {}).get("per_class") or []:
            rows.append(
                f"<tr><td>{_e(name)}</td><td>{_e(c['label'])}</td><td>{_fmt(c['precision'])}</td>"
                f"<td>{_fmt(c['recall'])}</td><td>{_fmt(c['f1'])}</td><td>{c['support']}</td></tr>"
            )
    if not rows:
        return ""
    return (
        "<h3>Per-class metrics (test split)</h3><table><tr><th>model</th><th>class</th><th>precision</th>"
        f"<th>recall</th><th>f1</th><th>support</th></tr>{''.join(rows)}</table>"
    )


# ------------------------------------------------------------------------------ regression charts
def _regression_charts(models: list[tuple[str, str, dict[str, Any] | None]]) -> list[str]:
    present = [(n, c, r) for n, c, r in models if r and r.get("sample")]
    if not present:
        return []
    lo, hi = _range(v for _, _, r in present for v in (r.get("range") or []))
    scatter = _Plot(380, 340, (lo, hi), (lo, hi), xlabel="actual", ylabel="predicted", title="Predicted vs actual")
    scatter.polyline([lo, hi], [lo, hi], "#b0b8c0", dash="4 4", width=1)
    resid_vals = [
        a - p
        for _, _, r in present
        for a, p in zip(r["sample"]["actual"], r["sample"]["predicted"], strict=False)
        if _finite(a, p)
    ]
    rlo, rhi = _range(resid_vals)
    m = max(abs(rlo), abs(rhi))
    resid = _Plot(
        380, 340, (lo, hi), (-m, m), xlabel="predicted", ylabel="residual (actual - predicted)", title="Residuals"
    )
    resid.polyline([lo, hi], [0, 0], "#b0b8c0", dash="4 4", width=1)
    legend = []
    for name, color, r in present:
        a, p = r["sample"]["actual"], r["sample"]["predicted"]
        scatter.dots(a, p, color)
        resid.dots(p, [x - y if _finite(x, y) else None for x, y in zip(a, p, strict=False)], color)
        legend.append((f"{name} ({len(a)} sampled rows)", color))
    hist = _histogram_chart(present)
    return [scatter.svg() + _legend(legend), resid.svg() + _legend(legend), hist]


def _histogram_chart(present: list[tuple[str, str, dict[str, Any]]]) -> str:
    hists = [(n, c, r["residual_histogram"]) for n, c, r in present if r.get("residual_histogram")]
    if not hists:
        return ""
    xlo, xhi = _range(e for _, _, h in hists for e in h["edges"])
    top = max((max(h["counts"]) / (sum(h["counts"]) or 1) for _, _, h in hists), default=1.0)
    p = _Plot(380, 340, (xlo, xhi), (0, top * 1.1), xlabel="residual", ylabel="share of rows", title="Residuals")
    p.title = "Residual distribution"
    for name, color, h in reversed(hists):  # the challenger drawn last, on top
        total = sum(h["counts"]) or 1
        edges = h["edges"]
        for i, count in enumerate(h["counts"]):
            x0, x1 = p.x(edges[i]), p.x(edges[i + 1])
            y = p.y(count / total)
            p.add(
                f'<rect x="{x0:.1f}" y="{y:.1f}" width="{max(x1 - x0 - 1, 1):.1f}" height="{p.y(0) - y:.1f}" '
                f'fill="{color}" fill-opacity="{0.6 if name == "challenger" else 0.35}"/>'
            )
    return p.svg() + _legend([(n, c) for n, c, _ in hists])


# ------------------------------------------------------------------------------------- shared charts
def _importance_chart(importance: dict[str, Any] | None) -> str:
    if not importance:
        return '<p class="muted">No feature importance (no validation split).</p>'
    if importance.get("error"):
        return f'<p class="muted">Feature importance unavailable: {_e(importance["error"])}</p>'
    feats = importance.get("features") or []
    if not feats:
        return ""
    row, left, w = 20, 150, 560
    h = 34 + row * len(feats) + 30
    peak = max((abs(f["mean"] or 0) + (f["std"] or 0) for f in feats), default=1.0) or 1.0
    lo = min(0.0, min((f["mean"] or 0) for f in feats))
    p = _Plot(w, h, (lo, peak * 1.05), (0, 1), xlabel=f"drop in {importance.get('scoring')} when permuted")
    p.left, p.top = left, 28
    p.yr = (len(feats), 0)
    parts = []
    for i, f in enumerate(feats):
        y0 = p.y(i) + 3
        x0, x1 = p.x(0), p.x(f["mean"] or 0)
        parts.append(
            f'<rect x="{min(x0, x1):.1f}" y="{y0:.1f}" width="{abs(x1 - x0):.1f}" height="{row - 6}" fill="{CHALLENGER}"/>'
            f'<text x="{left - 6}" y="{y0 + row / 2:.1f}" font-size="11" text-anchor="end">{_e(_short(f["feature"], 22))}</text>'
        )
        if f.get("std"):
            a, b = p.x((f["mean"] or 0) - f["std"]), p.x((f["mean"] or 0) + f["std"])
            parts.append(
                f'<line x1="{a:.1f}" x2="{b:.1f}" y1="{y0 + (row - 6) / 2:.1f}" y2="{y0 + (row - 6) / 2:.1f}" '
                'stroke="#1d2733" stroke-width="1"/>'
            )
    p.parts = parts
    p.yticks = False  # the y axis is categorical: feature names
    svg = p.svg()
    return (
        svg + f'<div class="muted">Permutation importance on the {_e(importance.get("split"))} split '
        f"({importance.get('rows')} rows, mean ± std over repeats), challenger model.</div>"
    )


def _distribution_chart(d: dict[str, Any]) -> str:
    n = len(d["train"])
    top = max([v or 0 for v in d["train"] + d["test"]] + [0.01])
    p = _Plot(360, 250, (0, n), (0, top * 1.1), ylabel="share of rows", title=d["feature"])
    p.bottom = 56 if d["type"] == "categorical" else 40
    bw = (p.w - p.left - p.right) / max(n, 1)
    for i in range(n):
        for k, (vals, color) in enumerate(((d["train"], CHALLENGER), (d["test"], CHAMPION))):
            v = vals[i] or 0
            y = p.y(v)
            p.add(
                f'<rect x="{p.left + bw * i + 2 + k * (bw - 4) / 2:.1f}" y="{y:.1f}" width="{max((bw - 4) / 2, 1):.1f}" '
                f'height="{p.y(0) - y:.1f}" fill="{color}" fill-opacity="0.75"/>'
            )
    if d["type"] == "categorical":
        for i, c in enumerate(d["categories"]):
            p.add(
                f'<text transform="translate({p.left + bw * i + bw / 2:.1f},{p.h - p.bottom + 10}) rotate(30)" '
                f'font-size="10">{_e(_short(c, 10))}</text>'
            )
    else:
        edges = d["edges"]
        p.xlabel = f"{_tick(edges[0])} … {_tick(edges[-1])} ({len(edges) - 1} equal-width bins)"
    p.xticks = False
    svg = p.svg()
    return svg + _legend([("train", CHALLENGER), ("test", CHAMPION)])


# ------------------------------------------------------------------------------------------- page
def _metrics_table(evaluation: dict[str, Any], decision: Mapping[str, Any]) -> str:
    metrics = evaluation.get("metrics") or decision.get("metrics") or {}
    champ = ((evaluation.get("champion") or {}).get("metrics") or {}).get("test") or {}
    names = list(dict.fromkeys(k for split in metrics.values() for k in (split or {})))
    gate_metric = decision.get("metric")
    head = "".join(
        f"<th>{'<u>' if n == gate_metric else ''}{_e(n)}{'</u>' if n == gate_metric else ''}</th>" for n in names
    )
    rows = []
    for split in ("train", "validation", "test"):
        vals = (metrics.get(split) or {}) if isinstance(metrics, dict) else {}
        rows.append(f"<tr><td>challenger · {split}</td>{''.join(f'<td>{_fmt(vals.get(n))}</td>' for n in names)}</tr>")
    same_rows = (((evaluation.get("champion") or {}).get("challenger_metrics")) or {}).get("test") or {}
    if same_rows:  # the challenger on the test rows that did not train the champion: what the gate compares
        rows.append(
            "<tr><td>challenger · test, champion's rows</td>"
            + "".join(f"<td>{_fmt(same_rows.get(n))}</td>" for n in names)
            + "</tr>"
        )
    rows.append(
        "<tr><td>champion · test</td>"
        + "".join(f"<td>{_fmt(champ.get(n)) if champ else '-'}</td>" for n in names)
        + "</tr>"
    )
    return f"<table><tr><th>model · split</th>{head}</tr>{''.join(rows)}</table>"


def _selection_section(selection: Mapping[str, Any] | None) -> str:
    """The model-selection table: each candidate's validation metric, the choice and the runner-up.

    Reads ``evaluation.json`` ``model_selection`` (``model/candidates.py``); None for older models.
    """
    if not selection:
        return '<p class="muted">No model selection in evaluation.json (a model trained before candidates).</p>'
    metric = str(selection.get("metric") or "")
    name = metric.split(":", 1)[-1]
    rows = []
    for cand in selection.get("candidates") or []:
        role = (
            "chosen"
            if cand.get("name") == selection.get("chosen")
            else "runner-up"
            if cand.get("name") == selection.get("runner_up")
            else ""
        )
        params = ", ".join(f"{k}={v}" for k, v in (cand.get("params") or {}).items() if v is not None)
        grown = ""
        if cand.get("iterations") is not None:
            grown = f"{cand.get('iterations')} (best {cand.get('best_iteration') or '-'})"
        rows.append(
            f"<tr><td>{_e(cand.get('name'))}</td><td>{_e(role)}</td>"
            f"<td>{_fmt((cand.get('validation') or {}).get(name))}</td><td>{_fmt(cand.get('validation_se'))}</td>"
            f"<td>{_e(grown)}</td><td>{_fmt(cand.get('fit_seconds'))}</td><td>{_e(params)}</td></tr>"
        )
    return (
        f"<div>{_e(selection.get('reason'))}</div>"
        f"<table><tr><th>candidate</th><th>role</th><th>{_e(metric)}</th><th>± s.e.</th><th>iterations</th>"
        f"<th>fit s</th><th>parameters</th></tr>{''.join(rows)}</table>"
        f'<p class="muted">Rule: {_e(selection.get("rule"))} (the simplest candidate that trails the best '
        "validation score by at most the bootstrap standard error of the difference).</p>"
    )


def _scored_line(champ: Mapping[str, Any]) -> str:
    rows, overlap = champ.get("rows_scored"), champ.get("overlap")
    if rows is None:
        return "champion scored on the same test split"
    if overlap is None:
        return f"champion scored on {rows} test rows (lineage unknown: {champ.get('lineage') or 'no split manifest'})"
    return (
        f"champion and challenger compared on the {rows} test rows the champion never trained on ({overlap} left out)"
    )


def _decision_card(decision: Mapping[str, Any], evaluation: dict[str, Any]) -> str:
    verdict = "deploy" if decision.get("decision") == "deploy" else "reject"
    label = "passed the gate" if verdict == "deploy" else "rejected by the gate"
    op = ">=" if decision.get("higher_is_better", True) else "<="
    champ = evaluation.get("champion") or {}
    status = champ.get("status") or decision.get("champion_status") or "absent"
    champ_line = {
        "absent": "no champion (first model of this name)",
        "scored": _scored_line(champ),
        "incompatible": f"champion incompatible: {champ.get('reason')}",
        "error": f"champion could not be scored: {champ.get('reason')}",
    }.get(status, status)
    extra = decision.get("approval")
    approval_line = ""
    if decision.get("schema_change"):
        approval_line += (
            f"<div>API contract: {_e(schema_change_text(decision['schema_change']))}"
            f"{' (manual approval required)' if decision.get('approval_required') else ''}</div>"
        )
    if isinstance(extra, dict):
        approval_line += f"<div>approval: {'approved' if extra.get('approved') else 'rejected'} by {_e(extra.get('by'))}: {_e(extra.get('reason'))}</div>"
    return (
        f'<div class="card"><span class="badge {verdict}">{verdict}</span> <b>{label}</b>'
        f"<div>{_e(decision.get('reason'))}</div>"
        f'<div class="muted">rule <b>{_e(decision.get("rule"))}</b> · metric <b>{_e(decision.get("metric"))}</b> '
        f"(test split, {op} threshold {_fmt(decision.get('threshold'))}) · challenger "
        f"<b>{_fmt(decision.get('challenger'))}</b> · champion <b>{_fmt(decision.get('champion'))}</b> · "
        f"{_e(champ_line)}</div>{approval_line}</div>"
    )


def _profile_section(profile: dict[str, Any] | None, problem_type: str) -> str:
    if not profile:
        return '<p class="muted">No data profile in evaluation.json.</p>'
    rows = profile.get("rows") or {}
    splits = list(rows)
    parts = [
        "<table><tr><th>split</th>"
        + "".join(f"<th>{_e(s)}</th>" for s in splits)
        + "</tr><tr><td>rows</td>"
        + "".join(f"<td>{rows[s]}</td>" for s in splits)
        + "</tr>"
    ]
    balance = profile.get("class_balance") or {}
    labels = list(dict.fromkeys(lbl for s in splits for lbl in (balance.get(s) or {})))
    for lbl in labels:
        cells = []
        for s in splits:
            n, total = (balance.get(s) or {}).get(lbl, 0), rows.get(s) or 1
            cells.append(f"<td>{n} ({100 * n / total:.1f}%)</td>")
        parts.append(f"<tr><td>class {_e(lbl)}</td>{''.join(cells)}</tr>")
    for s, summ in (profile.get("target_summary") or {}).items():
        parts.append(
            f"<tr><td>target {_e(s)}</td><td colspan='{len(splits)}'>mean {_fmt(summ.get('mean'))}, "
            f"min {_fmt(summ.get('min'))}, max {_fmt(summ.get('max'))}</td></tr>"
        )
    parts.append("</table>")
    missing = profile.get("missing") or {}
    with_missing = {c: v for c, v in missing.items() if any(v.values())}
    if with_missing:
        parts.append(
            "<h3>Missing values per column</h3><table><tr><th>column</th>"
            + "".join(f"<th>{_e(s)}</th>" for s in splits)
            + "</tr>"
            + "".join(
                f"<tr><td>{_e(c)}</td>" + "".join(f"<td>{v.get(s, 0)}</td>" for s in splits) + "</tr>"
                for c, v in with_missing.items()
            )
            + "</table>"
        )
    else:
        parts.append(f'<p class="muted">No missing values in any of the {len(missing)} columns.</p>')
    dists = profile.get("distributions") or []
    if dists:
        parts.append("<h3>Train vs test distributions of the top features</h3><div class='grid'>")
        parts.extend(f'<div class="card">{_distribution_chart(d)}</div>' for d in dists)
        parts.append("</div>")
    return "".join(parts)


def _lineage_table(lineage: Mapping[str, Any]) -> str:
    rows = "".join(f'<tr><td>{_e(k)}</td><td class="mono">{_e(v)}</td></tr>' for k, v in lineage.items() if v)
    return f"<table>{rows}</table>"


def render(
    evaluation: dict[str, Any] | None,
    *,
    decision: Mapping[str, Any],
    lineage: Mapping[str, Any],
    model: str,
    execution: str,
    generated_at: str,
) -> str:
    """Build the report page.

    Args:
        evaluation: ``evaluation.json`` (``metrics``, ``champion``, ``model_selection`` from
            ``model/candidates.py``, ``diagnostics`` from ``model/diagnostics.py``); None when it could not be read (the page then says so).
        decision: the gate's decision record (:func:`sagepipe_core.gate.decide`), optionally with
            ``approval`` (``{"approved", "by", "reason"}``).
        lineage: ordered ``{label: value}`` (data key and version, training job, model package,
            endpoint config); empty values are left out.
        model: the model name.
        execution: the execution (run) name.
        generated_at: ISO 8601 time shown in the footer (passed in: the page is deterministic).

    Returns:
        The HTML document (UTF-8 text; no script, no external reference; typically 60-120 kB).
    """
    ev = evaluation or {}
    diag = ev.get("diagnostics") or {}
    problem_type = ev.get("problem_type") or "unknown"
    challenger = diag.get("challenger")
    champion = diag.get("champion")
    models: list[tuple[str, str, dict[str, Any] | None]] = [("challenger", CHALLENGER, challenger)]
    if champion and not champion.get("error"):
        models.append(("champion", CHAMPION, champion))
    body = [
        f"<h1>sagepipe run report · {_e(model)}</h1>",
        f'<div class="muted">run <b>{_e(execution)}</b> · {_e(problem_type)} · target <b>{_e(ev.get("target"))}</b></div>',
        _decision_card(decision, ev),
    ]
    if evaluation is None:
        body.append('<div class="card">evaluation.json could not be read: no metrics or charts for this run.</div>')
    body.append("<h2>Metrics</h2>" + _metrics_table(ev, decision))
    if evaluation is not None:
        body.append("<h2>Model selection</h2>" + _selection_section(ev.get("model_selection")))
    charts: list[str] = []
    if challenger and challenger.get("error"):
        body.append(f'<p class="muted">Challenger curves unavailable: {_e(challenger["error"])}</p>')
    elif problem_type == "regression":
        charts = _regression_charts(models)
    elif challenger:
        charts = [_roc_chart(models), _pr_chart(models), _calibration_chart(models)]
        charts += [_confusion_chart(n, c) for n, _, c in models]
    if charts:
        note = (
            "both models on the same test split"
            if len(models) == 2
            else "challenger only: " + ((champion or {}).get("error") or "no champion curves")
        )
        dash_note = " (the champion's curves are dashed)" if len(models) == 2 and problem_type != "regression" else ""
        body.append(
            f"<h2>Challenger vs champion</h2>{_legend([(n, c) for n, c, _ in models])}"
            f'<p class="muted">{_e(note)}{dash_note}.</p><div class="grid">'
            + "".join(f'<div class="card">{c}</div>' for c in charts if c)
            + "</div>"
        )
        if problem_type != "regression":
            body.append(_per_class_table(models))
    body.append("<h2>Feature importance</h2>" + _importance_chart(diag.get("importance")))
    body.append("<h2>Data profile</h2>" + _profile_section(diag.get("profile"), problem_type))
    body.append("<h2>Lineage</h2>" + _lineage_table(lineage))
    body.append(f'<p class="muted">Generated {_e(generated_at)} by sagepipe (evaluate/register step).</p>')
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(model)} · {_e(execution)} · {_e(decision.get('decision'))}</title>"
        f"<style>{CSS}</style></head><body><main>{''.join(body)}</main></body></html>"
    )
