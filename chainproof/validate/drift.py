"""Distribution drift of a dataset version against a reference profile.

Every column yields one distribution test (KS for numeric, chi-squared for categorical) and one
missing-rate test (two-proportion z). All p-values of a run go through Benjamini-Hochberg, and a
column is flagged only when a test is significant after BH *and* its effect size clears a per-type
threshold: with 1M rows every difference is "significant", so significance alone would flag noise,
while effect size alone would flag noise on small tables. See docs/validation.md for the defaults.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon

from chainproof.errors import BadInputError
from chainproof.validate._profile import ColumnProfile, Profile, id_like, profile_dataset
from chainproof.validate._types import compatible
from chainproof.validate.findings import Finding, highest, severity_rank, sort_findings


@dataclass(frozen=True)
class ColumnThresholds:
    """Per-column overrides of :class:`DriftConfig`; ``None`` keeps the run-wide value."""

    wasserstein: float | None = None
    psi: float | None = None
    js: float | None = None
    linf: float | None = None
    new_category_share: float | None = None
    missing_rate_diff: float | None = None
    ignore: bool = False


@dataclass(frozen=True)
class DriftConfig:
    """Drift thresholds. Effect sizes: numeric Wasserstein distance in units of the reference
    standard deviation and PSI on reference deciles; categorical Jensen-Shannon distance (base 2)
    and L-infinity (largest change of one category's share).

    A test significant after BH (q < ``alpha``) is ``fail`` when an effect reaches its fail
    threshold (``wasserstein``, ``psi``, ``js``, ``linf``, ``missing_rate_diff``), ``warn`` when
    it reaches the ``*_warn`` floor, else ``info``. ``id_columns`` says whether columns unique
    per row (ID-like) are excluded from drift (they always "drift": every value is new).
    """

    alpha: float = 0.01
    wasserstein: float = 0.1
    psi: float = 0.2
    js: float = 0.1
    linf: float = 0.05
    label_linf: float = 0.02
    new_category_share: float = 0.005
    missing_rate_diff: float = 0.01
    psi_bins: int = 10
    per_column: Mapping[str, ColumnThresholds] = field(default_factory=dict)
    wasserstein_warn: float = 0.02
    psi_warn: float = 0.02
    js_warn: float = 0.02
    linf_warn: float = 0.01
    missing_rate_warn: float = 0.002
    exclude_id_columns: bool = True

    def for_column(self, name: str) -> ColumnThresholds:
        o = self.per_column.get(name, ColumnThresholds())
        return ColumnThresholds(
            wasserstein=self.wasserstein if o.wasserstein is None else o.wasserstein,
            psi=self.psi if o.psi is None else o.psi,
            js=self.js if o.js is None else o.js,
            linf=self.linf if o.linf is None else o.linf,
            new_category_share=(
                self.new_category_share if o.new_category_share is None else o.new_category_share
            ),
            missing_rate_diff=(
                self.missing_rate_diff if o.missing_rate_diff is None else o.missing_rate_diff
            ),
            ignore=o.ignore,
        )


@dataclass(frozen=True)
class DriftTest:
    """One statistical test. ``q_value`` is the BH-adjusted p-value across the whole run."""

    test: str
    statistic: float
    p_value: float
    q_value: float
    effects: Mapping[str, float]
    significant: bool
    large_effect: bool
    severity: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "test": self.test,
            "statistic": _num(self.statistic),
            "p_value": _num(self.p_value),
            "q_value": _num(self.q_value),
            "effects": {k: _num(v) for k, v in sorted(self.effects.items())},
            "significant": self.significant,
            "large_effect": self.large_effect,
        }


@dataclass(frozen=True)
class Histogram:
    """Aggregated shares for the report chart: ``labels[i]`` has ``reference[i]``/``current[i]``."""

    labels: tuple[str, ...]
    reference: tuple[float, ...]
    current: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels": list(self.labels),
            "reference": [round(x, 6) for x in self.reference],
            "current": [round(x, 6) for x in self.current],
        }


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    kind: str
    role: str  # "feature" | "label"
    flagged: bool
    reasons: tuple[str, ...]
    tests: tuple[DriftTest, ...] = ()
    new_categories: Mapping[str, float] = field(default_factory=dict)
    vanished_categories: Mapping[str, float] = field(default_factory=dict)
    histogram: Histogram | None = None
    reference_rows: int = 0
    current_rows: int = 0
    severity: str | None = None
    findings: tuple[Finding, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "kind": self.kind,
            "role": self.role,
            "severity": self.severity,
            "flagged": self.flagged,
            "reasons": list(self.reasons),
            "tests": [t.to_dict() for t in self.tests],
            "new_categories": {k: _num(v) for k, v in sorted(self.new_categories.items())},
            "vanished_categories": {
                k: _num(v) for k, v in sorted(self.vanished_categories.items())
            },
            "histogram": self.histogram.to_dict() if self.histogram else None,
        }


@dataclass(frozen=True)
class DriftReport:
    columns: tuple[ColumnDrift, ...]
    alpha: float
    n_tests: int
    reference_rows: int
    current_rows: int

    @property
    def flagged(self) -> tuple[str, ...]:
        return tuple(c.column for c in self.columns if c.flagged)

    @property
    def passed(self) -> bool:
        return not self.flagged

    @property
    def findings(self) -> tuple[Finding, ...]:
        return sort_findings(f for c in self.columns for f in c.findings)

    @property
    def warned(self) -> tuple[str, ...]:
        """Columns whose highest severity is ``warn``."""
        return tuple(c.column for c in self.columns if c.severity == "warn")

    @property
    def severity(self) -> str | None:
        return highest(c.severity for c in self.columns if c.severity is not None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "severity": self.severity,
            "warned": list(self.warned),
            "alpha": self.alpha,
            "n_tests": self.n_tests,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "flagged": list(self.flagged),
            "columns": [c.to_dict() for c in self.columns],
        }

    def to_html(self) -> str:
        from chainproof.validate._html import drift_section, render_page

        return render_page("Drift check", self.passed, drift_section(self))


def _num(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """BH-adjusted p-values (q-values), same order as ``p``.

    Hand-written (10 lines) rather than importing statsmodels for one function.
    """
    p = np.asarray(p, dtype=np.float64)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    ranked = p[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.clip(q, 0.0, 1.0)
    return out


# --- raw tests (before BH) ------------------------------------------------------------------------


@dataclass
class _Raw:
    test: str
    statistic: float
    p_value: float
    effects: dict[str, float]
    large: bool
    warn: bool = False
    effect_name: str = ""


def _numeric_tests(
    ref: ColumnProfile,
    cur: ColumnProfile,
    th: ColumnThresholds,
    bins: int,
    warn: tuple[float, float] = (0.02, 0.02),
) -> tuple[_Raw | None, Histogram | None]:
    assert ref.numeric is not None and cur.numeric is not None
    r, c = np.sort(ref.numeric.sample), np.sort(cur.numeric.sample)
    n, m = len(r), len(c)
    if n < 2 or m < 2:
        return None, None
    # KS, Wasserstein and PSI from one merged sort: scipy's ks_2samp and wasserstein_distance
    # would each sort both samples again (3x the work, measured as most of the drift time).
    u = np.sort(np.concatenate([r, c]))
    fr = np.searchsorted(r, u, side="right") / n
    fc = np.searchsorted(c, u, side="right") / m
    gap = np.abs(fr - fc)
    d = float(gap.max())
    if n * m <= 10_000:
        p = float(stats.ks_2samp(r, c).pvalue)
    else:
        # What ks_2samp(method="asymp") computes for the two-sided test.
        en = n * m / (n + m)
        p = float(np.clip(stats.kstwo.sf(d, np.round(en)), 0.0, 1.0))
    scale = ref.numeric.std
    if not scale > 0:
        scale = max(abs(ref.numeric.mean), 1.0)
    w = float(np.sum(gap[:-1] * np.diff(u))) / scale
    psi = _psi(r, c, bins)
    assert th.wasserstein is not None and th.psi is not None
    large = w >= th.wasserstein or psi >= th.psi
    small = w >= warn[0] or psi >= warn[1]
    name = "wasserstein_std" if w / th.wasserstein >= psi / th.psi else "psi"
    raw = _Raw("ks", d, p, {"wasserstein_std": w, "psi": psi, "ks_d": d}, large, small, name)
    integer = ref.logical == "int" and cur.logical == "int"
    return raw, _numeric_hist(r, c, u, integer=integer)


def _sorted_quantile(s: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``np.quantile(s, q)`` (linear interpolation) for an already sorted ``s``, without a copy."""
    pos = q * (len(s) - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _psi(r: np.ndarray, c: np.ndarray, bins: int) -> float:
    """PSI on the reference's quantile bins; ``r`` and ``c`` sorted."""
    edges = np.unique(_sorted_quantile(r, np.linspace(0, 1, bins + 1)[1:-1]))
    rp = np.diff(np.searchsorted(r, edges, side="right"), prepend=0, append=len(r)) / len(r)
    cp = np.diff(np.searchsorted(c, edges, side="right"), prepend=0, append=len(c)) / len(c)
    # The usual epsilon keeps an empty bin from making PSI infinite.
    rp, cp = np.clip(rp, 1e-4, None), np.clip(cp, 1e-4, None)
    return float(np.sum((cp - rp) * np.log(cp / rp)))


def _numeric_hist(
    r: np.ndarray, c: np.ndarray, u: np.ndarray, n: int = 20, *, integer: bool = False
) -> Histogram:
    """20 equal-width bins over the central 99 % of both samples (all sorted).

    Integer columns get whole-number bins (one per value when there are at most ``n`` values,
    else ``k`` values per bin), so a count column is not drawn in 0.4-wide slivers with empty
    bins between the integers.
    """
    lo, hi = (float(x) for x in _sorted_quantile(u, np.array([0.005, 0.995])))
    if not hi > lo:
        lo, hi = float(u[0]), float(u[-1])
    if integer:
        ilo, ihi = math.floor(lo), math.ceil(hi)
        width = max(1, math.ceil((ihi - ilo + 1) / n))
        nb = max(1, math.ceil((ihi - ilo + 1) / width))
        edges = ilo - 0.5 + width * np.arange(nb + 1)
        starts = [ilo + width * i for i in range(nb)]
        labels = tuple(str(a) if width == 1 else f"{a}-{a + width - 1}" for a in starts)
        n = nb
    else:
        if not hi > lo:
            hi = lo + 1.0
        edges = np.linspace(lo, hi, n + 1)
        labels = tuple(f"{edges[i]:.4g}" for i in range(n))
    inner = edges[1:-1]
    rh = np.diff(np.searchsorted(r, inner, side="left"), prepend=0, append=len(r)) / len(r)
    ch = np.diff(np.searchsorted(c, inner, side="left"), prepend=0, append=len(c)) / len(c)
    return Histogram(labels, tuple(float(x) for x in rh), tuple(float(x) for x in ch))


def _categorical_tests(
    ref: ColumnProfile,
    cur: ColumnProfile,
    th: ColumnThresholds,
    linf_threshold: float,
    warn: tuple[float, float] = (0.02, 0.01),
) -> tuple[_Raw | None, dict[str, float], dict[str, float], Histogram | None]:
    assert ref.categories is not None and cur.categories is not None
    cats = sorted(set(ref.categories) | set(cur.categories))
    rc = np.array([ref.categories.get(k, 0) for k in cats], dtype=np.float64)
    cc = np.array([cur.categories.get(k, 0) for k in cats], dtype=np.float64)
    if rc.sum() == 0 or cc.sum() == 0:
        return None, {}, {}, None
    rp, cp = rc / rc.sum(), cc / cc.sum()
    assert th.new_category_share is not None
    new = {
        k: float(cp[i]) for i, k in enumerate(cats) if rc[i] == 0 and cp[i] >= th.new_category_share
    }
    vanished = {
        k: float(rp[i]) for i, k in enumerate(cats) if cc[i] == 0 and rp[i] >= th.new_category_share
    }
    if len(cats) >= 2:
        chi = stats.chi2_contingency(np.vstack([rc, cc]), correction=False)
        stat, p = float(chi.statistic), float(chi.pvalue)
    else:
        stat, p = 0.0, 1.0
    js = float(jensenshannon(rp, cp, base=2))
    linf = float(np.max(np.abs(rp - cp)))
    assert th.js is not None
    large = js >= th.js or linf >= linf_threshold
    small = js >= warn[0] or linf >= warn[1]
    name = "js_distance" if js / th.js >= linf / linf_threshold else "linf"
    raw = _Raw("chi2", stat, p, {"js_distance": js, "linf": linf}, large, small, name)
    top = sorted(range(len(cats)), key=lambda i: (-max(rp[i], cp[i]), cats[i]))[:12]
    labels = [cats[i] for i in top]
    rs, cs = [float(rp[i]) for i in top], [float(cp[i]) for i in top]
    if len(cats) > len(top):
        labels.append("(other)")
        rs.append(max(0.0, 1.0 - sum(rs)))
        cs.append(max(0.0, 1.0 - sum(cs)))
    return raw, new, vanished, Histogram(tuple(labels), tuple(rs), tuple(cs))


def _missing_test(
    ref: ColumnProfile, cur: ColumnProfile, th: ColumnThresholds, warn: float = 0.002
) -> _Raw:
    n1, n2 = ref.rows, cur.rows
    x1, x2 = ref.nulls, cur.nulls
    p1 = x1 / n1 if n1 else 0.0
    p2 = x2 / n2 if n2 else 0.0
    pooled = (x1 + x2) / (n1 + n2) if n1 + n2 else 0.0
    if n1 == 0 or n2 == 0 or pooled in (0.0, 1.0):
        z, p = 0.0, 1.0
    else:
        se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
        z = (p2 - p1) / se
        p = float(2 * stats.norm.sf(abs(z)))
    assert th.missing_rate_diff is not None
    diff = p2 - p1
    return _Raw(
        "missing_rate",
        z,
        p,
        {"missing_rate_diff": diff, "reference_rate": p1, "current_rate": p2},
        abs(diff) >= th.missing_rate_diff,
        abs(diff) >= warn,
        "missing_rate_diff",
    )


def compare_profiles(
    reference: Profile,
    current: Profile,
    config: DriftConfig | None = None,
    *,
    label_column: str | None = None,
    exclude: Mapping[str, str] | None = None,
) -> DriftReport:
    """Drift of ``current`` against ``reference``, column by column, BH-corrected over the run.

    ``exclude`` maps columns to leave out of drift (e.g. key columns) to the reason shown in the
    report; with ``config.exclude_id_columns`` integer/string columns unique per row in either
    profile (ID-like) are left out too.
    """
    cfg = config or DriftConfig()
    if not 0 < cfg.alpha < 1:
        raise BadInputError("alpha must be in (0, 1)", hint="0.01 is the default")
    label_column = label_column or current.label_column or reference.label_column
    excluded: dict[str, str] = dict(exclude or {})
    if cfg.exclude_id_columns:
        for name, col in reference.columns.items():
            other = current.columns.get(name)
            if name in excluded or name == label_column:
                continue
            # The accepted version decides; the current one only when the reference did not
            # track uniqueness (an old cached profile) and the type is unchanged -- a column
            # that *became* unique strings is a type or meaning change, not an ID.
            if id_like(col) or (
                col.unique is None
                and other is not None
                and other.logical == col.logical
                and id_like(other)
            ):
                excluded[name] = "ID-like (unique per row)"
    # Gather every raw test first; BH needs the whole run's p-values before any verdict.
    pending: list[_Pending] = []
    for name in reference.columns:
        ref = reference.columns[name]
        role = "label" if name == label_column else "feature"
        th = cfg.for_column(name)
        if th.ignore:
            continue
        if name in excluded:
            pending.append(_Pending(name, ref.kind, "id", [f"excluded: {excluded[name]}"]))
            continue
        cur = current.columns.get(name)
        if cur is None:
            pending.append(_Pending(name, ref.kind, role, ["column missing in current"], hard=True))
            continue
        if not (compatible(ref.logical, cur.logical) or compatible(cur.logical, ref.logical)):
            pending.append(
                _Pending(
                    name,
                    ref.kind,
                    role,
                    [f"type changed {ref.logical} -> {cur.logical}"],
                    hard=True,
                )
            )
            continue
        item = _Pending(name, ref.kind, role, [])
        if ref.numeric is not None and cur.numeric is not None:
            raw, item.hist = _numeric_tests(
                ref, cur, th, cfg.psi_bins, (cfg.wasserstein_warn, cfg.psi_warn)
            )
            if raw is not None:
                item.raws.append(raw)
        elif ref.categories is not None and cur.categories is not None:
            linf = cfg.label_linf if role == "label" else th.linf
            assert linf is not None
            raw, item.new, item.vanished, item.hist = _categorical_tests(
                ref, cur, th, linf, (cfg.js_warn, cfg.linf_warn)
            )
            if raw is not None:
                item.raws.append(raw)
        elif ref.overflow or cur.overflow:
            item.info.append("high cardinality: distribution test skipped")
        item.raws.append(_missing_test(ref, cur, th, cfg.missing_rate_warn))
        if item.new:
            item.notes.append(
                "new categories "
                + ", ".join(f"{k!r} ({v:.2%})" for k, v in sorted(item.new.items()))
            )
            item.hard = True
        if item.vanished:
            item.notes.append(
                "vanished categories "
                + ", ".join(f"{k!r} ({v:.2%})" for k, v in sorted(item.vanished.items()))
            )
            item.hard = True
        pending.append(item)
    for name in current.columns:
        if name not in reference.columns and not cfg.for_column(name).ignore:
            pending.append(
                _Pending(
                    name,
                    current.columns[name].kind,
                    "feature",
                    ["column added in current"],
                    hard=True,
                )
            )
    all_p = np.array([r.p_value for item in pending for r in item.raws], dtype=np.float64)
    all_q = benjamini_hochberg(all_p)
    qi = 0
    out: list[ColumnDrift] = []
    for item in pending:
        tests = []
        reasons = list(item.notes) + list(item.info)
        findings: list[Finding] = []
        check = "label_drift" if item.role == "label" else "drift"
        if item.role == "id":
            findings.append(Finding("drift", "info", item.notes[0], column=item.name))
        for msg in item.info:
            findings.append(Finding(check, "info", msg, column=item.name))
        if item.hard:
            for msg in item.notes:
                findings.append(Finding(check, "fail", msg, column=item.name))
        for r in item.raws:
            q = float(all_q[qi])
            qi += 1
            sig = q < cfg.alpha
            sev = None if not sig else "fail" if r.large else "warn" if r.warn else "info"
            tests.append(DriftTest(r.test, r.statistic, r.p_value, q, r.effects, sig, r.large, sev))
            if sev is None:
                continue
            eff = ", ".join(f"{k}={v:.3g}" for k, v in sorted(r.effects.items()))
            what = "missing-rate change" if r.test == "missing_rate" else f"{r.test} shift"
            msg = f"{what} (q={q:.2g}; {eff})"
            if sev == "fail":
                reasons.append(msg)
            findings.append(
                Finding(
                    check,
                    sev,
                    msg if sev != "info" else msg + "; effect below the warn floor",
                    column=item.name,
                    statistic=r.statistic,
                    q_value=q,
                    effect=r.effects.get(r.effect_name),
                    effect_name=r.effect_name,
                    details={"test": r.test},
                )
            )
        severity = highest(f.severity for f in findings)
        out.append(
            ColumnDrift(
                column=item.name,
                kind=item.kind,
                role=item.role,
                flagged=severity == "fail",
                reasons=tuple(reasons),
                tests=tuple(tests),
                new_categories=item.new,
                vanished_categories=item.vanished,
                histogram=item.hist,
                reference_rows=reference.rows,
                current_rows=current.rows,
                severity=severity,
                findings=sort_findings(findings),
            )
        )
    out.sort(key=lambda c: (-severity_rank(c.severity), c.column))
    return DriftReport(tuple(out), cfg.alpha, len(all_p), reference.rows, current.rows)


@dataclass
class _Pending:
    name: str
    kind: str
    role: str
    notes: list[str]
    hard: bool = False
    raws: list[_Raw] = field(default_factory=list)
    new: dict[str, float] = field(default_factory=dict)
    vanished: dict[str, float] = field(default_factory=dict)
    hist: Histogram | None = None
    info: list[str] = field(default_factory=list)


def detect_drift(
    current: Any,
    reference: Any,
    config: DriftConfig | None = None,
    *,
    label_column: str | None = None,
    sample_size: int | None = None,
    seed: int = 0,
) -> DriftReport:
    """Drift of ``current`` against ``reference``; each may be data (path/frame) or a Profile."""
    ref = reference if isinstance(reference, Profile) else None
    if ref is None:
        ref = profile_dataset(
            reference,
            label_column=label_column,
            seed=seed,
            **({"sample_size": sample_size} if sample_size else {}),
        )
    cur = (
        current
        if isinstance(current, Profile)
        else profile_dataset(
            current, label_column=label_column, seed=ref.seed, sample_size=ref.sample_size
        )
    )
    return compare_profiles(ref, cur, config, label_column=label_column)
