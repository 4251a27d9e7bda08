"""Findings and severities: the one vocabulary every validation check reports in.

Each check (schema, drift, labels, feature meaning) turns its tests into :class:`Finding`
objects with a severity:

* ``fail`` -- significant after Benjamini-Hochberg control *and* a large effect (or a structural
  event: a missing column, a schema rule broken, a new category);
* ``warn`` -- significant after BH with a small but non-trivial effect;
* ``info`` -- worth knowing, not a signal (significant but negligible effect, skipped checks,
  excluded ID columns).

Whether a severity blocks is the caller's decision (``block_on``, "fail" by default; governed
namespaces use "warn").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chainproof.errors import BadInputError

SEVERITIES = ("info", "warn", "fail")
_RANK = {s: i for i, s in enumerate(SEVERITIES)}


def severity_rank(severity: str | None) -> int:
    """-1 for "no finding", then info < warn < fail."""
    return -1 if severity is None else _RANK[severity]


def check_block_on(block_on: str) -> str:
    if block_on not in ("warn", "fail"):
        raise BadInputError(
            f"block_on must be 'warn' or 'fail', got {block_on!r}",
            hint="'fail' blocks on large effects only; 'warn' also on small significant ones",
        )
    return block_on


def highest(severities: Iterable[str]) -> str | None:
    """The highest severity of ``severities``, None when empty."""
    best: str | None = None
    for s in severities:
        if severity_rank(s) > severity_rank(best):
            best = s
    return best


def grade(significant: bool, effect: float, fail_at: float, warn_at: float) -> str | None:
    """Severity of one test: fail/warn need significance; ``None`` when not significant."""
    if not significant:
        return None
    if effect >= fail_at:
        return "fail"
    if effect >= warn_at:
        return "warn"
    return "info"


def _num(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class Finding:
    """One reported fact. ``column`` is the column (or feature), ``label_class`` the class a
    label finding is about; ``effect`` is the effect size named ``effect_name``."""

    check: str
    severity: str
    message: str
    column: str | None = None
    label_class: str | None = None
    statistic: float | None = None
    q_value: float | None = None
    effect: float | None = None
    effect_name: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "severity": self.severity,
            "column": self.column,
            "class": self.label_class,
            "statistic": _num(self.statistic),
            "q_value": _num(self.q_value),
            "effect": _num(self.effect),
            "effect_name": self.effect_name,
            "message": self.message,
            "details": {k: _clean(v) for k, v in sorted(self.details.items())},
        }

    def line(self) -> str:
        """One line for text output: ``[warn] drift num0: ...``."""
        where = self.column or ""
        if self.label_class is not None:
            where = f"{where} class {self.label_class!r}".strip()
        return f"[{self.severity}] {self.check}{' ' + where if where else ''}: {self.message}"


def _clean(x: Any) -> Any:
    if isinstance(x, float):
        return _num(x)
    if isinstance(x, Mapping):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if hasattr(x, "item") and callable(x.item):
        return _clean(x.item())
    return x


# Within one severity, the order a reviewer wants to read them in.
_CHECK_ORDER = {
    c: i
    for i, c in enumerate(
        (
            "rows",
            "schema",
            "label_flip",
            "label_prior",
            "label_issue_rate",
            "label_conflicts",
            "class_shift",
            "label_drift",
            "drift",
            "feature_meaning",
        )
    )
}


def sort_findings(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    """Most severe first, then by check, column and class (deterministic)."""
    return tuple(
        sorted(
            findings,
            key=lambda f: (
                -severity_rank(f.severity),
                _CHECK_ORDER.get(f.check, len(_CHECK_ORDER)),
                f.check,
                f.column or "",
                f.label_class or "",
                f.message,
            ),
        )
    )
