"""Every validation threshold by name: documented, parsed from ``name=value`` strings, applied.

The same names are used by the CLI (``--threshold name=value``), by a schema contract's
``thresholds:`` mapping and by :func:`apply_thresholds` from Python. See docs/validation.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from chainproof.errors import BadInputError

# ``config`` below is a chainproof.validate.report.ValidationConfig (a frozen dataclass): taken
# as ``Any`` so that report.py, which uses this module, is not imported back (no circle).
ValidationConfig = Any


@dataclass(frozen=True)
class Threshold:
    name: str
    targets: tuple[tuple[str, str], ...]  # (section "drift"|"labels", attribute)
    low: float
    high: float
    doc: str
    open_low: bool = False  # value must be > low (else >= low)


def _t(
    name: str, targets: str, low: float, high: float, doc: str, open_low: bool = False
) -> Threshold:
    pairs = tuple(tuple(t.split(".", 1)) for t in targets.split(","))
    return Threshold(name, pairs, low, high, doc, open_low)  # type: ignore[arg-type]


_ALL = (
    _t(
        "alpha",
        "drift.alpha,labels.alpha,labels.class_shift_alpha",
        0.0,
        1.0,
        "false-discovery rate for Benjamini-Hochberg control of every test family; a test is "
        "significant when its q-value is below it (default 0.01)",
        open_low=True,
    ),
    _t(
        "wasserstein_fail",
        "drift.wasserstein",
        0,
        math.inf,
        "numeric drift: Wasserstein distance in reference standard deviations that fails (0.1)",
    ),
    _t(
        "wasserstein_warn",
        "drift.wasserstein_warn",
        0,
        math.inf,
        "numeric drift: Wasserstein distance (std units) that warns (0.02)",
    ),
    _t(
        "psi_fail",
        "drift.psi",
        0,
        math.inf,
        "numeric drift: population stability index on reference deciles that fails (0.2)",
    ),
    _t("psi_warn", "drift.psi_warn", 0, math.inf, "numeric drift: PSI that warns (0.02)"),
    _t(
        "js_fail",
        "drift.js",
        0,
        1,
        "categorical drift: Jensen-Shannon distance (base 2) that fails (0.1)",
    ),
    _t(
        "js_warn",
        "drift.js_warn",
        0,
        1,
        "categorical drift: Jensen-Shannon distance that warns (0.02)",
    ),
    _t(
        "linf_fail",
        "drift.linf",
        0,
        1,
        "categorical drift: largest change of one category's share that fails (0.05)",
    ),
    _t(
        "linf_warn",
        "drift.linf_warn",
        0,
        1,
        "categorical drift: largest change of one category's share that warns (0.01)",
    ),
    _t(
        "label_linf_fail",
        "drift.label_linf",
        0,
        1,
        "label column's drift test: largest change of one class's share that fails (0.02)",
    ),
    _t(
        "new_category_share",
        "drift.new_category_share",
        0,
        1,
        "share of rows with a category absent from the other version that fails (0.005)",
    ),
    _t(
        "missing_rate_fail",
        "drift.missing_rate_diff",
        0,
        1,
        "change of a column's null rate that fails, significant (0.01 = one point)",
    ),
    _t(
        "missing_rate_warn",
        "drift.missing_rate_warn",
        0,
        1,
        "change of a column's null rate that warns, significant (0.002)",
    ),
    _t(
        "prior_shift_fail",
        "labels.prior_shift_fail",
        0,
        1,
        "labels: change of one class's share vs the reference that fails (0.02)",
    ),
    _t(
        "prior_shift_warn",
        "labels.prior_shift_warn",
        0,
        1,
        "labels: change of one class's share that warns (0.005)",
    ),
    _t(
        "flip_rate_fail",
        "labels.flip_rate_fail",
        0,
        1,
        "labels: increase of an estimated flip rate P(given i | true j) vs the reference that "
        "fails (0.05)",
    ),
    _t(
        "flip_rate_warn",
        "labels.flip_rate_warn",
        0,
        1,
        "labels: increase of an estimated flip rate that warns (0.01)",
    ),
    _t(
        "issue_rate_increase_fail",
        "labels.max_issue_rate_increase",
        0,
        1,
        "labels: increase of the suspected-issue rate over the reference's that fails (0.02)",
    ),
    _t(
        "issue_rate_increase_warn",
        "labels.issue_rate_increase_warn",
        0,
        1,
        "labels: increase of the suspected-issue rate that warns (0.005)",
    ),
    _t(
        "issue_rate_ratio_fail",
        "labels.issue_rate_ratio_fail",
        1,
        math.inf,
        "labels: ratio current/reference suspected-issue rate that fails once the increase "
        "reaches the warn floor (2.0)",
    ),
    _t(
        "issue_rate_max",
        "labels.max_issue_rate",
        0,
        1,
        "labels without a reference: suspected-issue rate that warns (0.10)",
    ),
    _t(
        "conflict_rate_fail",
        "labels.max_conflict_rate",
        0,
        1,
        "labels: share of rows whose features equal a differently-labelled row's; with a "
        "reference its increase, without one its level, that fails (0.01)",
    ),
    _t(
        "conflict_rate_warn",
        "labels.conflict_rate_warn",
        0,
        1,
        "labels: increase of the conflicting-row share that warns (0.002)",
    ),
    _t(
        "class_shift_fail",
        "labels.class_shift_wasserstein",
        0,
        math.inf,
        "labels: Wasserstein distance (overall std units) of a feature within one class that "
        "fails (0.15; targeted flips)",
    ),
    _t(
        "class_shift_warn",
        "labels.class_shift_warn",
        0,
        math.inf,
        "labels: within-class feature shift that warns (0.05)",
    ),
)

THRESHOLDS: Mapping[str, Threshold] = {t.name: t for t in _ALL}
# fail threshold >= warn threshold, checked after every change
_PAIRS = (
    ("wasserstein_fail", "wasserstein_warn"),
    ("psi_fail", "psi_warn"),
    ("js_fail", "js_warn"),
    ("linf_fail", "linf_warn"),
    ("missing_rate_fail", "missing_rate_warn"),
    ("prior_shift_fail", "prior_shift_warn"),
    ("flip_rate_fail", "flip_rate_warn"),
    ("issue_rate_increase_fail", "issue_rate_increase_warn"),
    ("conflict_rate_fail", "conflict_rate_warn"),
    ("class_shift_fail", "class_shift_warn"),
)


def describe_thresholds() -> dict[str, str]:
    """Name -> one-line description (with the default), for help texts and docs."""
    return {t.name: t.doc for t in _ALL}


def _bad(msg: str) -> BadInputError:
    return BadInputError(
        msg,
        hint="known thresholds: " + ", ".join(sorted(THRESHOLDS)) + " (see docs/validation.md)",
    )


def check_threshold(name: Any, value: Any) -> float:
    """The value of threshold ``name`` as a float, or :class:`BadInputError`."""
    if not isinstance(name, str) or name not in THRESHOLDS:
        raise _bad(f"unknown threshold {name!r}")
    t = THRESHOLDS[name]
    if isinstance(value, bool):
        raise _bad(f"threshold {name}: {value!r} is not a number")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise _bad(f"threshold {name}: {value!r} is not a number") from None
    if not isinstance(value, int | float) or not math.isfinite(float(value)):
        raise _bad(f"threshold {name}: {value!r} is not a finite number")
    v = float(value)
    low_ok = v > t.low if t.open_low else v >= t.low
    high_ok = v < t.high if name == "alpha" else v <= t.high
    if not (low_ok and high_ok):
        lo = "(" if t.open_low else "["
        hi = ")" if name == "alpha" or math.isinf(t.high) else "]"
        raise _bad(f"threshold {name}: {v:g} is outside {lo}{t.low:g}, {t.high:g}{hi}")
    return v


def check_thresholds(values: Mapping[str, Any] | None) -> dict[str, float]:
    """Validate a name -> value mapping (from a contract or from Python)."""
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise _bad("thresholds must be a mapping of name to number")
    return {str(k): check_threshold(k, v) for k, v in values.items()}


def parse_thresholds(items: Iterable[str]) -> dict[str, float]:
    """Parse ``name=value`` strings (the CLI's ``--threshold``); later repeats win.

    Raises :class:`BadInputError` with the offending item and the list of known names.
    """
    out: dict[str, float] = {}
    for item in items:
        if not isinstance(item, str) or "=" not in item:
            raise _bad(f"threshold {item!r} must look like name=value, e.g. wasserstein_warn=0.05")
        name, _, value = item.partition("=")
        name = name.strip()
        if not value.strip():
            raise _bad(f"threshold {name!r} has no value (name=value)")
        out[name] = check_threshold(name, value)
    return out


def current_thresholds(config: ValidationConfig) -> dict[str, float]:
    """Name -> value in ``config`` (the first target of each name)."""
    out = {}
    for t in _ALL:
        section, attr = t.targets[0]
        out[t.name] = float(getattr(getattr(config, section), attr))
    return out


def apply_thresholds(config: ValidationConfig, values: Mapping[str, Any]) -> ValidationConfig:
    """``config`` with the named thresholds replaced (validated; fail must stay >= warn)."""
    checked = check_thresholds(values)
    if not checked:
        return config
    drift_changes: dict[str, float] = {}
    label_changes: dict[str, float] = {}
    for name, v in checked.items():
        for section, attr in THRESHOLDS[name].targets:
            (drift_changes if section == "drift" else label_changes)[attr] = v
    new = replace(
        config,
        drift=replace(config.drift, **drift_changes),
        labels=replace(config.labels, **label_changes),
    )
    now = current_thresholds(new)
    for fail, warn in _PAIRS:
        if now[warn] > now[fail]:
            raise _bad(
                f"threshold {warn}={now[warn]:g} is above {fail}={now[fail]:g}; a warning must "
                "start at or below the failure threshold"
            )
    return new
