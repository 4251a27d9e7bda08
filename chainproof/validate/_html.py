"""Self-contained HTML for validation reports: inline CSS and SVG, no scripts, no data rows.

Hand-written rather than Jinja templates because the pages are small and must never pull assets
from a CDN; every text value goes through :func:`html.escape`.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from chainproof.validate.findings import Finding

# The report types (DriftReport, Any, Any, Any,
# Any, Any, Any) are the callers of this module: they are taken as
# ``Any`` here, by the attributes the sections read, so the renderer imports none of them
# (no circle between the reports and their HTML).

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;
color:#1f2328;max-width:1100px}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #d0d7de}
h3{font-size:15px;margin:4px 0}
.badge{display:inline-block;padding:2px 10px;border-radius:12px;color:#fff;font-weight:600}
.pass{background:#1a7f37}.fail{background:#cf222e}.warn{background:#9a6700}
.info{background:#656d76}.col.warned{border-color:#9a6700;background:#fffbf0}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
td,th{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}.col{border:1px solid #d0d7de;border-radius:6px;padding:8px 12px;
margin:10px 0}.col.flagged{border-color:#cf222e;background:#fff8f8}
.muted{color:#656d76;font-size:12px}ul{margin:4px 0}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}
"""

_REF, _CUR = "#8c959f", "#0969da"


def badge(ok: bool, text: str | None = None) -> str:
    cls = "pass" if ok else "fail"
    return f'<span class="badge {cls}">{escape(text or ("PASSED" if ok else "FAILED"))}</span>'


def severity_badge(severity: str | None) -> str:
    cls = {"fail": "fail", "warn": "warn", "info": "info"}.get(severity or "", "pass")
    return f'<span class="badge {cls}">{escape((severity or "ok").upper())}</span>'


def render_page(title: str, passed: bool, body: str, severity: str | None = None) -> str:
    extra = f" {severity_badge(severity)}" if severity in ("warn", "fail") and passed else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{escape(title)} {badge(passed)}{extra}</h1>{body}</body></html>\n"
    )


def identity_section(r: Any) -> str:
    rows = [
        ("dataset", r.dataset.name, r.dataset.digest, r.dataset.rows),
    ]
    if r.reference is not None:
        rows.append(("reference", r.reference.name, r.reference.digest, r.reference.rows))
    else:
        rows.append(("reference", "(none)", None, None))
    meta = (
        f'<p class="muted">checked {escape(r.created_at or "(time not recorded)")} by '
        f"chainproof {escape(r.tool_version)}; label column "
        f"{escape(r.label_column or '(none)')}; key columns "
        f"{escape(', '.join(r.key_columns) or '(none)')}; blocking on "
        f"{escape(r.block_on)}</p>"
    )
    return _table(["", "name", "digest", "rows"], rows) + meta


def _effect(f: Finding) -> str:
    if f.effect is None:
        return f.effect_name or ""
    return f"{f.effect_name or 'effect'}={_fmt(f.effect)}"


def findings_section(findings: Sequence[Finding], block_on: str) -> str:
    shown = [f for f in findings if f.severity in ("fail", "warn")]
    infos = [f for f in findings if f.severity == "info"]
    rows = "".join(
        f"<tr><td>{severity_badge(f.severity)}</td><td>{escape(f.check)}</td>"
        f"<td>{escape(f.column or '')}</td><td>{escape(f.label_class or '')}</td>"
        f"<td>{escape(_fmt(f.q_value))}</td>"
        f"<td>{escape(_effect(f))}</td><td>{escape(f.message)}</td></tr>"
        for f in shown[:200]
    )
    table = (
        "<table><tr><th>severity</th><th>check</th><th>column</th><th>class</th>"
        f"<th>q (BH)</th><th>effect</th><th>message</th></tr>{rows}</table>"
        if shown
        else "<p>No failures or warnings.</p>"
    )
    info = "".join(f'<li class="muted">{escape(f.line())}</li>' for f in infos[:50])
    return (
        f'<h2>Findings</h2><p class="muted">severities at or above {escape(block_on)} block'
        f"</p>{table}" + (f"<ul>{info}</ul>" if info else "")
    )


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(_fmt(c))}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(x: object) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    if isinstance(x, list | tuple):
        return ", ".join(_fmt(v) for v in x)
    return "" if x is None else str(x)


def bar_chart(h: Any, width: int = 520, height: int = 140) -> str:
    """Grouped bars, reference grey and current blue, shares on a common scale."""
    n = len(h.labels)
    if n == 0:
        return ""
    top = max([*h.reference, *h.current, 1e-9])
    pad_b = 34
    plot_h = height - pad_b - 6
    slot = width / n
    bw = max(1.0, slot * 0.4)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">'
    ]
    for i in range(n):
        x0 = i * slot + slot * 0.1
        for j, (v, color) in enumerate(((h.reference[i], _REF), (h.current[i], _CUR))):
            bh = plot_h * v / top
            parts.append(
                f'<rect x="{x0 + j * bw:.1f}" y="{6 + plot_h - bh:.1f}" width="{bw:.1f}" '
                f'height="{bh:.1f}" fill="{color}"><title>{escape(h.labels[i])}: '
                f"{'reference' if j == 0 else 'current'} {v:.2%}</title></rect>"
            )
        if n <= 14 or i % max(1, n // 7) == 0:
            parts.append(
                f'<text x="{x0:.1f}" y="{height - 18}" font-size="9" fill="#656d76">'
                f"{escape(h.labels[i][:12])}</text>"
            )
    parts.append(
        f'<line x1="0" y1="{6 + plot_h}" x2="{width}" y2="{6 + plot_h}" stroke="#d0d7de"/>'
        f'<text x="0" y="{height - 2}" font-size="9" fill="#656d76">max share {top:.2%}</text>'
        "</svg>"
    )
    return "".join(parts)


def _column_block(c: Any) -> str:
    cls = "col flagged" if c.flagged else "col warned" if c.severity == "warn" else "col"
    reasons = "".join(f"<li>{escape(r)}</li>" for r in c.reasons) or "<li>no drift</li>"
    rows = []
    for t in c.tests:
        eff = "; ".join(f"{k}={v:.4g}" for k, v in sorted(t.effects.items()))
        rows.append(
            (
                t.test,
                t.statistic,
                t.p_value,
                t.q_value,
                eff,
                t.severity or "-",
            )
        )
    chart = bar_chart(c.histogram) if c.histogram else ""
    warns = "".join(
        f"<li>{escape(f.line())}</li>" for f in c.findings if f.severity in ("warn", "info")
    )
    return (
        f'<div class="{cls}"><h3>{escape(c.column)} <span class="muted">{escape(c.kind)}, '
        f"{escape(c.role)}</span> {severity_badge(c.severity)}</h3>"
        f"<ul>{reasons}{warns}</ul>{chart}"
        + (
            _table(["test", "statistic", "p", "q (BH)", "effect sizes", "severity"], rows)
            if rows
            else ""
        )
        + "</div>"
    )


def drift_section(r: Any) -> str:
    legend = (
        f'<p class="legend muted">reference rows {r.reference_rows}, current rows '
        f"{r.current_rows}, {r.n_tests} tests, BH at alpha={r.alpha}"
        f'<span style="background:{_REF}"></span>reference'
        f'<span style="background:{_CUR}"></span>current</p>'
    )
    flagged = ", ".join(r.flagged) or "none"
    warned = ", ".join(r.warned) or "none"
    return (
        f"<h2>Drift {severity_badge(r.severity)}</h2><p>Failing columns: {escape(flagged)}; "
        f"warnings: {escape(warned)}</p>{legend}" + "".join(_column_block(c) for c in r.columns)
    )


def schema_section(r: Any) -> str:
    rows = [
        (
            f.column or "(dataset)",
            f.rule,
            f.count,
            f.message,
            list(f.examples),
            "; ".join(", ".join(f"{k}={v}" for k, v in key.items()) for key in f.keys)
            if f.keys
            else list(f.row_ids),
        )
        for f in r.findings
    ]
    table = (
        _table(["column", "rule", "count", "message", "examples", "keys (or row ids)"], rows)
        if rows
        else "<p>All schema rules hold.</p>"
    )
    return f'<h2>Schema {badge(r.passed)}</h2><p class="muted">{r.rows} rows</p>{table}'


def labels_section(r: Any) -> str:
    probs = (
        "".join(
            f"<li>{severity_badge(f.severity)} {escape(f.message)}</li>"
            for f in r.findings
            if f.severity in ("fail", "warn")
        )
        or "<li>no label problems</li>"
    )
    summary = _table(
        [
            "rows",
            "checked",
            "duplicate rows",
            "conflicting rows",
            "suspected issue rate",
            "corroborated by kNN",
            "reference rate",
        ],
        [
            (
                r.rows,
                r.rows_checked,
                r.duplicate_rows,
                r.conflicting_rows,
                r.issue_rate,
                r.corroborated_rate,
                r.reference_issue_rate,
            )
        ],
    )
    ident = ", ".join(r.key_columns) if r.key_columns else "row (0-based)"
    sus = (
        _table(
            [ident, "label", "suggested", "self-confidence", "kNN agreement"],
            [
                (
                    ", ".join(str(v) for v in s.key.values()) if s.key else s.row_id,
                    s.label,
                    s.suggested,
                    s.self_confidence,
                    s.knn_agreement,
                )
                for s in r.suspects[:25]
            ],
        )
        if r.suspects
        else ""
    )
    shifts = [s for s in r.class_shifts if s.severity in ("warn", "fail")]
    shift_t = (
        _table(
            ["class", "feature", "severity", "KS D", "Wasserstein (std)", "q"],
            [
                (s.label, s.feature, s.severity, s.ks_d, s.wasserstein_std, s.q_value)
                for s in shifts[:25]
            ],
        )
        if shifts
        else ""
    )
    comps = [c for c in r.comparisons if c.severity is not None or c.check != "label_flip"]
    comp_t = (
        _table(
            ["check", "class", "true class", "reference", "current", "q", "severity"],
            [
                (
                    c.check,
                    c.label_class,
                    c.true_class,
                    f"{c.reference_rate:.2%}",
                    f"{c.current_rate:.2%}",
                    c.q_value,
                    c.severity or "-",
                )
                for c in comps[:60]
            ],
        )
        if comps
        else ""
    )
    notes = "".join(f'<li class="muted">{escape(n)}</li>' for n in r.notes)
    return (
        f"<h2>Labels ({escape(r.label_column)}) {severity_badge(r.severity)}</h2>"
        f"<ul>{probs}{notes}</ul>{summary}{comp_t}{shift_t}{sus}"
    )


def features_section(r: Any) -> str:
    rows = [
        (
            c.column,
            c.status,
            list(c.kinds),
            "; ".join(f"{k}={_fmt(v)}" for k, v in sorted(c.details.items())),
        )
        for c in r.columns
    ]
    return (
        f'<p class="muted">old {escape(r.old_code)} → new {escape(r.new_code)}, '
        f"{r.probe_rows} probe rows</p>"
        + _table(["output column", "status", "kind of change", "details"], rows)
    )
