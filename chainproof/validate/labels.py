"""Label poisoning detector: class priors, class-conditional flips, suspected-issue rate,
conflicting labels and per-class feature shifts, each *relative to the reference version*.

Likely flips use confident learning (Northcutt et al., 2021) on out-of-sample predicted
probabilities: per-class threshold t_j = mean predicted probability of class j over the rows
labelled j; a row is a suspect when the class it confidently belongs to (highest p_ij among the
classes with p_ij >= t_j) is not its label (the off-diagonal of the confident joint). This is the
core of cleanlab's ``find_label_issues(filter_by="confident_learning")``, written out in numpy
(~20 lines) to avoid a dependency whose own pins tend to fight pandas/numpy majors. The confident
joint's columns give the estimated flip rates P(given i | true j), which the reference profile
stores (:class:`LabelStats`) so a new version's rates can be compared with the accepted one's:
noisy labels are normal, a change in them is the poisoning signal. Comparisons use Fisher's exact
test and Benjamini-Hochberg; severities come from significance and effect size (findings.py).
A k-nearest-neighbour label-agreement score is a second, model-free opinion on each suspect.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy import stats

from chainproof.errors import BadInputError, MalformedFileError
from chainproof.validate._io import open_source
from chainproof.validate._profile import _CAMEL_ID, _ID_NAME, MIN_ID_ROWS, Profile, row_keys
from chainproof.validate._types import kind_of, logical_type, to_str_array
from chainproof.validate.drift import benjamini_hochberg
from chainproof.validate.findings import Finding, grade, highest, severity_rank, sort_findings

MAX_LISTED_SUSPECTS = 1000
MAX_CLASSES = 50


@dataclass(frozen=True)
class LabelConfig:
    """Label-check settings and thresholds (names in ``chainproof.validate.thresholds``).

    With a reference that was profiled with the same label column, every rule is *relative* to
    the reference, tested exactly (Fisher) and BH-controlled at ``alpha``; a rule is ``fail``
    when significant with an effect at its fail threshold, ``warn`` at its warn floor:

    * class priors: change of one class's share (``prior_shift_fail`` / ``prior_shift_warn``);
    * class-conditional flips: increase of the confident-learning estimate of
      P(given label i | true class j) over the reference's (``flip_rate_fail`` / ``_warn``);
    * suspected-issue rate: increase over the reference's rate (``max_issue_rate_increase`` or a
      ratio of ``issue_rate_ratio_fail`` with at least the warn increase; warn floor
      ``issue_rate_increase_warn``);
    * conflicting-label rows: increase over the reference's share (``max_conflict_rate`` /
      ``conflict_rate_warn``);
    * per-class feature shift (targeted flips): ``class_shift_wasserstein`` / ``class_shift_warn``
      at ``class_shift_alpha``.

    Without a reference the absolute rules apply: a suspected-issue rate above
    ``max_issue_rate`` is a warning (noisy labels are normal; only a change is a signal) and
    conflicting-label rows above ``max_conflict_rate`` fail.
    """

    max_issue_rate: float = 0.10
    max_issue_rate_increase: float = 0.02
    max_conflict_rate: float = 0.01
    # "auto": gradient boosting from 5,000 rows, else the mean of logistic regression and
    # boosting (boosting overfits small tables; measured in docs/validation.md).
    model: str = "auto"  # "auto" | "ensemble" | "logistic" | "hgb"
    folds: int = 5
    knn_k: int = 10
    max_rows: int = 50_000
    max_onehot: int = 20
    seed: int = 0
    class_shift: bool = True
    class_shift_alpha: float = 0.01
    class_shift_wasserstein: float = 0.15
    alpha: float = 0.01
    prior_shift_fail: float = 0.02
    prior_shift_warn: float = 0.005
    flip_rate_fail: float = 0.05
    flip_rate_warn: float = 0.01
    issue_rate_increase_warn: float = 0.005
    issue_rate_ratio_fail: float = 2.0
    conflict_rate_warn: float = 0.002
    class_shift_warn: float = 0.05
    min_flip_support: int = 20
    max_flip_classes: int = 20


@dataclass(frozen=True)
class LabelStats:
    """What the label detector needs of a version to compare another one with it: exact class
    counts, the confident joint (rows = given label, columns = confidently-true class) of the
    sample the model checked, and the suspect and conflict counts. Stored in the reference
    :class:`Profile` (``label_stats``)."""

    classes: tuple[str, ...]
    counts: tuple[int, ...]
    rows: int
    rows_checked: int
    suspects: int
    conflicting_rows: int
    joint_classes: tuple[str, ...] = ()
    confident_joint: tuple[tuple[int, ...], ...] = ()

    @property
    def issue_rate(self) -> float | None:
        return (
            self.suspects / self.rows_checked if self.rows_checked and self.joint_classes else None
        )

    def flip_rates(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(given, true) -> (rows given ``given`` among rows confidently ``true``, those rows)."""
        out: dict[tuple[str, str], tuple[int, int]] = {}
        cj = np.array(self.confident_joint, dtype=np.int64).reshape(
            len(self.joint_classes), len(self.joint_classes)
        )
        col = cj.sum(axis=0)
        for j, true in enumerate(self.joint_classes):
            for i, given in enumerate(self.joint_classes):
                if i != j:
                    out[(given, true)] = (int(cj[i, j]), int(col[j]))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "classes": list(self.classes),
            "counts": list(self.counts),
            "rows": self.rows,
            "rows_checked": self.rows_checked,
            "suspects": self.suspects,
            "conflicting_rows": self.conflicting_rows,
            "joint_classes": list(self.joint_classes),
            "confident_joint": [list(r) for r in self.confident_joint],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LabelStats:
        try:
            out = cls(
                classes=tuple(str(c) for c in d["classes"]),
                counts=tuple(int(c) for c in d["counts"]),
                rows=int(d["rows"]),
                rows_checked=int(d["rows_checked"]),
                suspects=int(d["suspects"]),
                conflicting_rows=int(d["conflicting_rows"]),
                joint_classes=tuple(str(c) for c in d.get("joint_classes", [])),
                confident_joint=tuple(
                    tuple(int(x) for x in row) for row in d.get("confident_joint", [])
                ),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedFileError(
                f"label statistics in the profile are malformed ({exc!r})",
                hint="recompute the reference profile with profile_reference(..., label_column=)",
            ) from exc
        k = len(out.joint_classes)
        if (
            len(out.counts) != len(out.classes)
            or len(out.confident_joint) != k
            or any(len(r) != k for r in out.confident_joint)
        ):
            raise MalformedFileError(
                "label statistics in the profile are inconsistent",
                hint="recompute the reference profile with profile_reference(..., label_column=)",
            )
        return out


@dataclass(frozen=True)
class LabelSuspect:
    row_id: int
    label: str
    suggested: str
    self_confidence: float
    knn_agreement: float
    key: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "row_id": self.row_id,
            "key": None if self.key is None else {k: _jsonable(v) for k, v in self.key.items()},
            "label": self.label,
            "suggested": self.suggested,
            "self_confidence": round(self.self_confidence, 6),
            "knn_agreement": round(self.knn_agreement, 6),
        }

    def ident(self) -> str:
        """The suspect's key values (``k=v``), or ``row N`` without key columns."""
        if not self.key:
            return f"row {self.row_id}"
        return ", ".join(f"{k}={v}" for k, v in self.key.items())


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return str(x)
    if isinstance(x, str | int | float | bool) or x is None:
        return x
    return str(x)


@dataclass(frozen=True)
class ClassShift:
    label: str
    feature: str
    ks_d: float
    wasserstein_std: float
    p_value: float
    q_value: float
    flagged: bool
    severity: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "feature": self.feature,
            "severity": self.severity,
            "ks_d": round(self.ks_d, 6),
            "wasserstein_std": round(self.wasserstein_std, 6),
            "p_value": self.p_value,
            "q_value": self.q_value,
            "flagged": self.flagged,
        }


@dataclass(frozen=True)
class RateComparison:
    """A rate of the current version against the reference's (exact one-sided Fisher test for
    an increase, or two-sided for class priors); ``q_value`` after BH over the label tests."""

    check: str  # "label_prior" | "label_flip" | "label_issue_rate" | "label_conflicts"
    label_class: str | None
    true_class: str | None
    reference_count: int
    reference_total: int
    current_count: int
    current_total: int
    p_value: float
    q_value: float
    severity: str | None

    @property
    def reference_rate(self) -> float:
        return self.reference_count / self.reference_total if self.reference_total else 0.0

    @property
    def current_rate(self) -> float:
        return self.current_count / self.current_total if self.current_total else 0.0

    @property
    def difference(self) -> float:
        return self.current_rate - self.reference_rate

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "class": self.label_class,
            "true_class": self.true_class,
            "severity": self.severity,
            "reference_rate": round(self.reference_rate, 6),
            "current_rate": round(self.current_rate, 6),
            "difference": round(self.difference, 6),
            "reference": [self.reference_count, self.reference_total],
            "current": [self.current_count, self.current_total],
            "p_value": _fin(self.p_value),
            "q_value": _fin(self.q_value),
        }


def _fin(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


@dataclass(frozen=True)
class LabelReport:
    label_column: str
    rows: int
    rows_checked: int
    duplicate_rows: int
    conflicting_rows: int
    conflict_examples: tuple[int, ...]
    issue_rate: float | None
    corroborated_rate: float | None
    suspects: tuple[LabelSuspect, ...]
    reference_issue_rate: float | None = None
    class_shifts: tuple[ClassShift, ...] = ()
    config: LabelConfig = field(default_factory=LabelConfig)
    notes: tuple[str, ...] = ()
    stats: LabelStats | None = None
    reference_stats: LabelStats | None = None
    comparisons: tuple[RateComparison, ...] = ()
    findings: tuple[Finding, ...] = ()
    key_columns: tuple[str, ...] = ()

    @property
    def conflict_rate(self) -> float:
        return self.conflicting_rows / self.rows if self.rows else 0.0

    @property
    def severity(self) -> str | None:
        return highest(f.severity for f in self.findings)

    @property
    def problems(self) -> tuple[str, ...]:
        """Messages of the ``fail`` findings."""
        return tuple(f.message for f in self.findings if f.severity == "fail")

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(f.message for f in self.findings if f.severity == "warn")

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def noise_matrix(self) -> dict[str, dict[str, float]] | None:
        """Estimated P(given label | true class), as {true: {given: rate}}."""
        return _noise_matrix(self.stats)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "severity": self.severity,
            "problems": list(self.problems),
            "warnings": list(self.warnings),
            "label_column": self.label_column,
            "key_columns": list(self.key_columns),
            "rows": self.rows,
            "rows_checked": self.rows_checked,
            "duplicate_rows": self.duplicate_rows,
            "conflicting_rows": self.conflicting_rows,
            "conflict_examples": list(self.conflict_examples),
            "issue_rate": self.issue_rate,
            "corroborated_rate": self.corroborated_rate,
            "reference_issue_rate": self.reference_issue_rate,
            "class_counts": (
                dict(zip(self.stats.classes, self.stats.counts, strict=True))
                if self.stats
                else None
            ),
            "noise_matrix": _round_matrix(_noise_matrix(self.stats)),
            "reference_noise_matrix": _round_matrix(_noise_matrix(self.reference_stats)),
            "comparisons": [c.to_dict() for c in self.comparisons],
            "suspects": [s.to_dict() for s in self.suspects[:MAX_LISTED_SUSPECTS]],
            "suspects_total": len(self.suspects),
            "class_shifts": [s.to_dict() for s in self.class_shifts if s.severity is not None],
            "findings": [f.to_dict() for f in self.findings],
            "notes": list(self.notes),
        }

    def to_html(self) -> str:
        from chainproof.validate._html import labels_section, render_page

        return render_page("Label check", self.passed, labels_section(self), self.severity)


def _noise_matrix(stats: LabelStats | None) -> dict[str, dict[str, float]] | None:
    if stats is None or not stats.joint_classes:
        return None
    out: dict[str, dict[str, float]] = {}
    rates = stats.flip_rates()
    for true in stats.joint_classes:
        row: dict[str, float] = {}
        total = 0
        for given in stats.joint_classes:
            if given != true:
                x, n = rates[(given, true)]
                row[given] = x / n if n else 0.0
                total = n
        row[true] = 1.0 - sum(row.values()) if total else 1.0
        out[true] = dict(sorted(row.items()))
    return out


def _round_matrix(m: dict[str, dict[str, float]] | None) -> dict[str, dict[str, float]] | None:
    if m is None:
        return None
    return {t: {g: round(v, 6) for g, v in row.items()} for t, row in m.items()}


# --- confident learning ---------------------------------------------------------------------------


def confident_learning_suspects(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Boolean mask of rows off the diagonal of the confident joint.

    ``labels`` are class indexes 0..K-1, ``probs`` out-of-sample probabilities (n x K).
    """
    return _confident_joint_rows(labels, probs)[0]


def knn_agreement(
    x: np.ndarray, labels: np.ndarray, k: int, rows: np.ndarray | None = None
) -> np.ndarray:
    """Share of each row's k nearest neighbours (itself excluded) that carry the same label.

    ``rows`` limits the queries to those row indexes (the neighbours still come from all rows):
    only confident-learning suspects need a second opinion, which makes this ~10x cheaper.
    """
    from sklearn.neighbors import NearestNeighbors

    query = np.arange(len(labels)) if rows is None else np.asarray(rows, dtype=np.int64)
    k = min(k, len(labels) - 1)
    if k < 1 or len(query) == 0:
        return np.ones(len(query))
    nn = NearestNeighbors(n_neighbors=k + 1).fit(x)
    _, idx = nn.kneighbors(x[query])
    # Drop the row itself; with exact duplicates the row may not come first, so drop by identity.
    neigh = np.where(idx == query[:, None], -1, idx)
    own = labels[query]
    agree = np.zeros(len(query))
    counted = np.zeros(len(query))
    for j in range(neigh.shape[1]):
        col = neigh[:, j]
        ok = (col >= 0) & (counted < k)
        agree += ok & (labels[np.where(col >= 0, col, 0)] == own)
        counted += ok
    return agree / np.maximum(counted, 1)


def _design_matrix(df: pd.DataFrame, features: Sequence[str], max_onehot: int) -> np.ndarray:
    parts = []
    for f in features:
        s = df[f]
        if pd.api.types.is_bool_dtype(s) or not pd.api.types.is_numeric_dtype(s):
            s = s.astype("string")
            top = s.value_counts().index[:max_onehot]
            parts.append(
                np.stack([(s == v).fillna(False).to_numpy(bool) for v in top], axis=1).astype(
                    np.float64
                )
                if len(top)
                else np.zeros((len(s), 0))
            )
            continue
        v = pd.to_numeric(s, errors="coerce").to_numpy(np.float64, na_value=np.nan)
        finite = np.isfinite(v)
        med = float(np.median(v[finite])) if finite.any() else 0.0
        v = np.where(finite, v, med)
        sd = v.std()
        cols = [(v - v.mean()) / (sd if sd > 0 else 1.0)]
        if not finite.all():
            cols.append((~finite).astype(np.float64))
        parts.append(np.stack(cols, axis=1))
    return np.hstack(parts) if parts else np.zeros((len(df), 0))


def _oos_probabilities(x: np.ndarray, y: np.ndarray, cfg: LabelConfig) -> np.ndarray:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from threadpoolctl import threadpool_limits

    names = {"hgb": ["hgb"], "logistic": ["logistic"], "ensemble": ["logistic", "hgb"]}
    choice = cfg.model
    if choice == "auto":
        choice = "hgb" if len(y) >= 5_000 else "ensemble"
    if choice not in names:
        raise BadInputError(
            f"unknown label model {cfg.model!r}", hint="use 'auto', 'ensemble', 'logistic' or 'hgb'"
        )
    folds = min(cfg.folds, int(np.bincount(y).min()))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=cfg.seed)
    total = np.zeros((len(y), int(y.max()) + 1))
    for name in names[choice]:
        model: Any
        if name == "hgb":
            model = HistGradientBoostingClassifier(
                max_iter=200, early_stopping=True, random_state=cfg.seed
            )
        else:
            model = LogisticRegression(max_iter=500, C=1.0)
        # One thread: on a shared 2-core machine OpenMP oversubscription made gradient boosting
        # 10-30x slower (measured), and results do not depend on the thread count.
        with threadpool_limits(limits=1):
            total += cross_val_predict(model, x, y, cv=cv, method="predict_proba")
    return total / len(names[choice])


class _RowSampler:
    """Streaming bottom-k row sample with the same row keys as the profiles."""

    def __init__(self, k: int, seed: int) -> None:
        self.k, self.seed = k, seed
        self.tables: list[pa.Table] = []
        self.keys: list[np.ndarray] = []
        self.ids: list[np.ndarray] = []
        self.total = 0
        self.threshold = np.uint64(np.iinfo(np.uint64).max)

    def update(self, batch: pa.RecordBatch, offset: int) -> None:
        keys = row_keys(offset, batch.num_rows, self.seed)
        sel = np.flatnonzero(keys <= self.threshold)
        self.tables.append(pa.Table.from_batches([batch]).take(sel))
        self.keys.append(keys[sel])
        self.ids.append(np.arange(offset, offset + batch.num_rows)[sel])
        self.total += len(sel)
        if self.total > 2 * self.k:
            self._trim()

    def _trim(self) -> None:
        t = pa.concat_tables(self.tables)
        kk, ii = np.concatenate(self.keys), np.concatenate(self.ids)
        if len(kk) > self.k:
            part = np.argpartition(kk, self.k - 1)[: self.k]
            t, kk, ii = t.take(part), kk[part], ii[part]
            self.threshold = kk.max()
        self.tables, self.keys, self.ids, self.total = [t], [kk], [ii], len(kk)

    def finish(self, schema: pa.Schema) -> tuple[pa.Table, np.ndarray]:
        if not self.tables:
            return schema.empty_table(), np.empty(0, dtype=np.int64)
        self._trim()
        t, ii = self.tables[0], self.ids[0]
        order = np.argsort(ii, kind="stable")
        return t.take(order), ii[order]


class LabelChecker:
    """Streaming label checks: ``update`` per batch, then ``finish``; one pass feeds all checks."""

    def __init__(
        self,
        arrow_schema: pa.Schema,
        label_column: str,
        feature_columns: Sequence[str] | None = None,
        config: LabelConfig | None = None,
        *,
        key_columns: Sequence[str] = (),
    ) -> None:
        self.cfg = config or LabelConfig()
        names = arrow_schema.names
        if label_column not in names:
            raise BadInputError(
                f"label column {label_column!r} is not in the dataset", hint=f"columns: {names}"
            )
        missing_keys = [k for k in key_columns if k not in names]
        if missing_keys:
            raise BadInputError(
                f"key columns {missing_keys} are not in the dataset", hint=str(names)
            )
        self.key_columns = [k for k in key_columns if k != label_column]
        self.features = (
            list(feature_columns)
            if feature_columns is not None
            else [
                n
                for n in names
                if n != label_column
                and n not in self.key_columns
                and kind_of(logical_type(arrow_schema.field(n).type)) != "other"
            ]
        )
        missing = [f for f in self.features if f not in names]
        if missing:
            raise BadInputError(
                f"feature columns {missing} are not in the dataset", hint=str(names)
            )
        self.schema, self.label_column = arrow_schema, label_column
        self.fhash: list[np.ndarray] = []
        self.lhash: list[np.ndarray] = []
        self.counts: dict[str, int] = {}
        self.rows = 0
        self.sampler = _RowSampler(self.cfg.max_rows, self.cfg.seed)
        self.sample_columns = list(dict.fromkeys([*self.features, label_column, *self.key_columns]))
        self.auto_features = feature_columns is None
        self.too_many_classes = False
        self.id_features: list[str] = []

    def update(self, batch: pa.RecordBatch, offset: int) -> None:
        if self.rows == 0 and batch.num_rows and self.auto_features:
            ids = [f for f in self.features if _id_in_batch(f, batch.column(f))]
            if ids:
                # An ID is no feature: it would make every row unique (no conflicts found) and
                # let the label model memorise positions. Decided on the first batch so that
                # every batch hashes the same columns; the whole-column check is in drift.
                self.id_features = ids
                self.features = [f for f in self.features if f not in ids]
                self.sample_columns = [c for c in self.sample_columns if c not in ids]
        self.rows += batch.num_rows
        frame = (
            batch.select(self.features).to_pandas()
            if self.features
            else pd.DataFrame(index=range(batch.num_rows))
        )
        self.fhash.append(pd.util.hash_pandas_object(frame, index=False).to_numpy(np.uint64))
        labels = to_str_array(batch.column(self.label_column))
        lab = pd.Series(labels.to_pylist(), dtype="string")
        self.lhash.append(pd.util.hash_pandas_object(lab, index=False).to_numpy(np.uint64))
        if not self.too_many_classes:
            vc = pc.value_counts(labels)
            for value, cnt in zip(
                vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True
            ):
                if value is not None:
                    self.counts[value] = self.counts.get(value, 0) + int(cnt)
            if len(self.counts) > MAX_CLASSES:
                # A regression target, not classes: no class priors to compare.
                self.too_many_classes, self.counts = True, {}
        self.sampler.update(batch.select(self.sample_columns), offset)

    def finish(
        self,
        reference_issue_rate: float | None = None,
        *,
        reference: Profile | None = None,
        current: Profile | None = None,
        drifted: Collection[str] = (),
        drop_features: Collection[str] = (),
    ) -> LabelReport:
        """The label report. ``reference``/``current``: profiles for the relative checks (the
        reference's ``label_stats``) and the per-class shifts; ``drifted``: features whose
        marginal drifted (their class shifts are not counted again); ``drop_features``: columns
        left out of the label model (ID-like columns)."""
        cfg, label_column = self.cfg, self.label_column
        features = [f for f in self.features if f not in set(drop_features)]
        notes: list[str] = []
        dropped = self.id_features + [f for f in self.features if f in set(drop_features)]
        if dropped:
            notes.append(f"ID-like columns {dropped} left out of the label model")
        ref_stats: LabelStats | None = None
        if reference is not None:
            if reference.label_column != label_column:
                notes.append(
                    f"reference profile was built without label column {label_column!r}: no "
                    "relative label checks; rebuild it with profile_reference(..., label_column=)"
                )
            else:
                if reference.label_stats is not None:
                    ref_stats = LabelStats.from_dict(reference.label_stats)
                else:
                    notes.append(
                        "reference profile has no label statistics (built by an older version): "
                        "class priors and flip estimates are not compared; rebuild it"
                    )
                if reference_issue_rate is None:
                    reference_issue_rate = reference.label_issue_rate
        keys = self.key_columns
        if self.rows == 0:
            stats = LabelStats((), (), 0, 0, 0, 0)
            comps, findings = _evaluate(
                label_column, cfg, stats, ref_stats, reference_issue_rate, (), (), ()
            )
            return LabelReport(
                label_column,
                0,
                0,
                0,
                0,
                (),
                None,
                None,
                (),
                reference_issue_rate,
                config=cfg,
                notes=("empty dataset",),
                stats=stats,
                reference_stats=ref_stats,
                comparisons=comps,
                findings=findings,
                key_columns=tuple(keys),
            )
        dup_rows, conflict_mask = _duplicates(
            np.concatenate(self.fhash), np.concatenate(self.lhash)
        )
        if not features:
            # With no feature column (a labels file holding only keys and labels) every row
            # "shares features" with every other: there is nothing to conflict on.
            conflict_mask = np.zeros_like(conflict_mask)
            notes.append("label-conflict check skipped: no feature columns (only the label "
                         "and key or ID columns)")
        conflict_ids = tuple(int(i) for i in np.flatnonzero(conflict_mask)[:5])
        table, ids = self.sampler.finish(
            self.schema.empty_table().select(self.sample_columns).schema
        )
        if self.rows > cfg.max_rows:
            notes.append(f"label-flip checks ran on a uniform sample of {cfg.max_rows} rows")
        valid = to_str_array(table.column(label_column)).is_valid().to_numpy(zero_copy_only=False)
        table, ids = table.filter(pa.array(valid)), ids[valid]
        y_str = np.array(to_str_array(table.column(label_column)).to_pylist(), dtype=str)
        classes, y = np.unique(y_str, return_inverse=True)
        issue_rate = corroborated = None
        suspects: list[LabelSuspect] = []
        joint: np.ndarray | None = None
        n_sus = 0
        counts = np.bincount(y, minlength=len(classes)) if len(classes) else np.zeros(0, int)
        if len(classes) > MAX_CLASSES:
            notes.append(
                f"label-flip check skipped: {len(classes)} distinct labels (more than "
                f"{MAX_CLASSES}) look like a regression target, not classes"
            )
        elif len(classes) < 2 or counts.min() < 2 or not features:
            notes.append(
                "label-flip check skipped: needs features and >= 2 rows in each of >= 2 classes"
            )
        else:
            x = _design_matrix(table.select(features).to_pandas(), features, cfg.max_onehot)
            probs = _oos_probabilities(x, y, cfg)
            sus, confident = _confident_joint_rows(y, probs)
            joint = np.zeros((len(classes), len(classes)), dtype=np.int64)
            has = confident >= 0
            np.add.at(joint, (y[has], confident[has]), 1)
            sus_rows = np.flatnonzero(sus)
            n_sus = len(sus_rows)
            agree = np.ones(len(y))
            agree[sus_rows] = knn_agreement(x, y, cfg.knn_k, sus_rows)
            self_conf = probs[np.arange(len(y)), y]
            issue_rate = float(sus.mean())
            corroborated = float((sus & (agree < 0.5)).mean())
            key_values = {k: table.column(k).to_pylist() for k in keys}
            for i in np.flatnonzero(sus)[np.argsort(self_conf[sus], kind="stable")]:
                suspects.append(
                    LabelSuspect(
                        row_id=int(ids[i]),
                        label=str(classes[y[i]]),
                        suggested=str(classes[int(np.argmax(probs[i]))]),
                        self_confidence=float(self_conf[i]),
                        knn_agreement=float(agree[i]),
                        key={k: key_values[k][i] for k in keys} if keys else None,
                    )
                )
        all_classes = tuple(sorted(self.counts))
        stats = LabelStats(
            classes=all_classes,
            counts=tuple(self.counts[c] for c in all_classes),
            rows=self.rows,
            rows_checked=len(ids),
            suspects=n_sus,
            conflicting_rows=int(conflict_mask.sum()),
            joint_classes=tuple(str(c) for c in classes) if joint is not None else (),
            confident_joint=tuple(tuple(int(v) for v in r) for r in joint)
            if joint is not None
            else (),
        )
        shifts: tuple[ClassShift, ...] = ()
        if reference is not None and current is not None and cfg.class_shift:
            skip = {*drop_features, *self.key_columns}
            shifts = class_shifts(reference, current, cfg, drifted=drifted, exclude=skip)
        comps, findings = _evaluate(
            label_column, cfg, stats, ref_stats, reference_issue_rate, shifts, suspects, notes
        )
        return LabelReport(
            label_column=label_column,
            rows=self.rows,
            rows_checked=len(ids),
            duplicate_rows=int(dup_rows),
            conflicting_rows=int(conflict_mask.sum()),
            conflict_examples=conflict_ids,
            issue_rate=issue_rate,
            corroborated_rate=corroborated,
            suspects=tuple(suspects),
            reference_issue_rate=reference_issue_rate,
            class_shifts=shifts,
            config=cfg,
            notes=tuple(notes),
            stats=stats,
            reference_stats=ref_stats,
            comparisons=comps,
            findings=findings,
            key_columns=tuple(keys),
        )


def _id_in_batch(name: str, arr: pa.Array) -> bool:
    """Whether a column looks like a row ID in one batch (see ``_profile.id_like``)."""
    if len(arr) < MIN_ID_ROWS or arr.null_count:
        return False
    logical = logical_type(arr.type)
    if logical not in ("int", "string") or pc.count_distinct(arr).as_py() < len(arr):
        return False
    if logical == "string" or _ID_NAME.search(name) or _CAMEL_ID.search(name):
        return True
    lo, hi = pc.min_max(arr).values()
    return bool(hi.as_py() - lo.as_py() + 1 <= 2 * len(arr))


def _confident_joint_rows(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(suspect mask, confidently-true class per row or -1): see confident_learning_suspects."""
    k = probs.shape[1]
    thresholds = np.array(
        [probs[labels == j, j].mean() if np.any(labels == j) else 1.0 for j in range(k)]
    )
    above = probs >= thresholds[None, :] - 1e-12
    masked = np.where(above, probs, -1.0)
    confident = np.where(above.any(axis=1), masked.argmax(axis=1), -1)
    return (confident >= 0) & (confident != labels), confident


def _fisher(a: int, n: int, b: int, m: int, alternative: str) -> float:
    """p-value of Fisher's exact test that ``a/n`` (current) differs from / exceeds ``b/m``."""
    if n <= 0 or m <= 0:
        return 1.0
    table = [[a, n - a], [b, m - b]]
    return float(stats.fisher_exact(table, alternative=alternative).pvalue)


def _evaluate(
    label_column: str,
    cfg: LabelConfig,
    cur: LabelStats,
    ref: LabelStats | None,
    reference_issue_rate: float | None,
    shifts: Sequence[ClassShift],
    suspects: Sequence[LabelSuspect],
    notes: Sequence[str],
) -> tuple[tuple[RateComparison, ...], tuple[Finding, ...]]:
    findings: list[Finding] = [Finding("labels", "info", n, column=label_column) for n in notes]
    # (check, class, true class, ref count, ref total, cur count, cur total, p, fail?, warn?)
    raw: list[tuple[str, str | None, str | None, int, int, int, int, float]] = []
    if ref is not None and (not cur.classes or not ref.classes):
        findings.append(
            Finding(
                "label_prior",
                "info",
                f"class priors not compared: no class counts (more than {MAX_CLASSES} distinct "
                "labels, or an empty version)",
                column=label_column,
            )
        )
    if ref is not None and cur.classes and ref.classes:
        rc = dict(zip(ref.classes, ref.counts, strict=True))
        cc = dict(zip(cur.classes, cur.counts, strict=True))
        rn, cn = sum(ref.counts), sum(cur.counts)
        for name in sorted(set(rc) | set(cc)):
            a, b = cc.get(name, 0), rc.get(name, 0)
            raw.append(
                ("label_prior", name, None, b, rn, a, cn, _fisher(a, cn, b, rn, "two-sided"))
            )
        if (
            cur.joint_classes
            and ref.joint_classes
            and len(cur.joint_classes) <= cfg.max_flip_classes
        ):
            rflips = ref.flip_rates()
            for pair, (x, n) in sorted(cur.flip_rates().items()):
                if pair not in rflips:
                    continue
                xr, nr = rflips[pair]
                if n < cfg.min_flip_support or nr < cfg.min_flip_support:
                    continue
                raw.append(
                    ("label_flip", pair[0], pair[1], xr, nr, x, n, _fisher(x, n, xr, nr, "greater"))
                )
        elif cur.joint_classes and ref.joint_classes:
            findings.append(
                Finding(
                    "label_flip",
                    "info",
                    f"flip estimates not compared: more than {cfg.max_flip_classes} classes",
                )
            )
        if cur.issue_rate is not None and ref.issue_rate is not None:
            raw.append(
                (
                    "label_issue_rate",
                    None,
                    None,
                    ref.suspects,
                    ref.rows_checked,
                    cur.suspects,
                    cur.rows_checked,
                    _fisher(
                        cur.suspects, cur.rows_checked, ref.suspects, ref.rows_checked, "greater"
                    ),
                )
            )
        raw.append(
            (
                "label_conflicts",
                None,
                None,
                ref.conflicting_rows,
                ref.rows,
                cur.conflicting_rows,
                cur.rows,
                _fisher(cur.conflicting_rows, cur.rows, ref.conflicting_rows, ref.rows, "greater"),
            )
        )
    q = benjamini_hochberg(np.array([r[7] for r in raw], dtype=np.float64))
    comps: list[RateComparison] = []
    for (check, cls, true, b, rn, a, cn, p), qq in zip(raw, q, strict=True):
        comp = RateComparison(check, cls, true, b, rn, a, cn, p, float(qq), None)
        sig = bool(qq < cfg.alpha)
        d = comp.difference
        sev: str | None
        if check == "label_prior":
            sev = grade(sig, abs(d), cfg.prior_shift_fail, cfg.prior_shift_warn)
            msg = (
                f"share of class {cls!r} moved {comp.reference_rate:.2%} -> "
                f"{comp.current_rate:.2%} ({d * 100:+.2f} points, q={qq:.2g})"
            )
            eff_name = "share_change"
        elif check == "label_flip":
            sev = grade(sig, d, cfg.flip_rate_fail, cfg.flip_rate_warn)
            examples = [s.ident() for s in suspects if s.label == cls and s.suggested == true][:5]
            msg = (
                f"estimated share of true-{true!r} rows labelled {cls!r} rose "
                f"{comp.reference_rate:.2%} -> {comp.current_rate:.2%} (q={qq:.2g})"
                + (f"; e.g. {'; '.join(examples)}" if examples else "")
            )
            eff_name = "flip_rate_increase"
        elif check == "label_issue_rate":
            ratio = comp.current_rate / comp.reference_rate if comp.reference_rate else math.inf
            sev = grade(sig, d, cfg.max_issue_rate_increase, cfg.issue_rate_increase_warn)
            if sev == "warn" and ratio >= cfg.issue_rate_ratio_fail:
                sev = "fail"
            examples = [s.ident() for s in suspects[:5]]
            msg = (
                f"suspected label issues {comp.current_rate:.2%} vs the reference's "
                f"{comp.reference_rate:.2%} ({ratio:.2g}x, q={qq:.2g})"
                + (f"; most suspicious: {'; '.join(examples)}" if examples else "")
            )
            eff_name = "issue_rate_increase"
        else:
            sev = grade(sig, d, cfg.max_conflict_rate, cfg.conflict_rate_warn)
            msg = (
                f"{a} rows ({comp.current_rate:.2%}) share features with a row of a different "
                f"label (reference {comp.reference_rate:.2%}, q={qq:.2g})"
            )
            eff_name = "conflict_rate_increase"
        comp = replace(comp, severity=sev)
        comps.append(comp)
        if sev is not None and sev != "info":
            findings.append(
                Finding(
                    check,
                    sev,
                    msg,
                    column=label_column,
                    label_class=cls,
                    statistic=comp.current_rate,
                    q_value=float(qq),
                    effect=d,
                    effect_name=eff_name,
                    details={"true_class": true} if true is not None else {},
                )
            )
    if ref is None:
        rate = cur.issue_rate
        if reference_issue_rate is not None and rate is not None:
            d = rate - reference_issue_rate
            sev = (
                "fail"
                if d > cfg.max_issue_rate_increase
                else "warn"
                if d > cfg.issue_rate_increase_warn
                else None
            )
            if sev is not None:
                findings.append(
                    Finding(
                        "label_issue_rate",
                        sev,
                        f"suspected label issues {rate:.2%} exceed the reference's "
                        f"{reference_issue_rate:.2%} by {d * 100:.2f} points (no counts in the "
                        "reference profile: effect only, no test)",
                        effect=d,
                        effect_name="issue_rate_increase",
                    )
                )
        elif rate is not None and rate > cfg.max_issue_rate:
            findings.append(
                Finding(
                    "label_issue_rate",
                    "warn",
                    f"suspected label issues {rate:.2%} exceed {cfg.max_issue_rate:.2%} (no "
                    "reference to compare with; noisy labels are normal, a jump against the "
                    "accepted version is the signal)",
                    effect=rate,
                    effect_name="issue_rate",
                )
            )
        conflict = cur.conflicting_rows / cur.rows if cur.rows else 0.0
        if conflict > cfg.max_conflict_rate:
            findings.append(
                Finding(
                    "label_conflicts",
                    "fail",
                    f"{cur.conflicting_rows} rows ({conflict:.2%}) share features with a row of "
                    "a different label",
                    effect=conflict,
                    effect_name="conflict_rate",
                )
            )
    for s in shifts:
        if s.severity in ("warn", "fail"):
            findings.append(
                Finding(
                    "class_shift",
                    s.severity,
                    f"feature {s.feature!r} shifted within class {s.label!r} "
                    f"(Wasserstein {s.wasserstein_std:.3g} std, q={s.q_value:.2g})",
                    column=s.feature,
                    label_class=s.label,
                    statistic=s.ks_d,
                    q_value=s.q_value,
                    effect=s.wasserstein_std,
                    effect_name="wasserstein_std",
                )
            )
    return tuple(comps), sort_findings(findings)


def find_label_issues(
    data: Any,
    label_column: str,
    *,
    feature_columns: Sequence[str] | None = None,
    config: LabelConfig | None = None,
    reference_issue_rate: float | None = None,
) -> LabelReport:
    """Duplicates, conflicting labels and likely flipped labels of one dataset version."""
    src = open_source(data)
    checker = LabelChecker(src.schema, label_column, feature_columns, config)
    offset = 0
    for batch in src.batches():
        checker.update(batch, offset)
        offset += batch.num_rows
    return checker.finish(reference_issue_rate)


def _duplicates(fh: np.ndarray, lh: np.ndarray) -> tuple[int, np.ndarray]:
    """(rows repeating an earlier identical row, mask of rows in a conflicting-label group)."""
    df = pd.DataFrame({"f": fh, "l": lh})
    dup = int(df.duplicated().sum())
    nlab = df.groupby("f")["l"].transform("nunique").to_numpy()
    return dup, nlab > 1


def class_shifts(
    reference: Profile,
    current: Profile,
    config: LabelConfig | None = None,
    *,
    drifted: Collection[str] = (),
    exclude: Collection[str] = (),
) -> tuple[ClassShift, ...]:
    """Per-class feature shifts between two profiles built with the same ``label_column``.

    A targeted flip (rows of class A relabelled B) leaves the marginal feature distribution
    unchanged but moves class B's: this compares each class's numeric features separately.
    """
    cfg = config or LabelConfig()
    found: list[tuple[str, str, float, float, float]] = []
    for cls in sorted(set(reference.by_class) & set(current.by_class)):
        rp, cp = reference.by_class[cls], current.by_class[cls]
        for feat, rc in rp.columns.items():
            if feat in exclude:
                continue
            cc = cp.columns.get(feat)
            if rc.numeric is None or cc is None or cc.numeric is None:
                continue
            r, c = rc.numeric.sample, cc.numeric.sample
            if len(r) < 5 or len(c) < 5:
                continue
            ks = stats.ks_2samp(r, c)
            overall = reference.columns.get(feat)
            scale = overall.numeric.std if overall is not None and overall.numeric else 0.0
            scale = scale if scale > 0 else max(float(np.std(r)), 1e-12)
            w = float(stats.wasserstein_distance(r, c)) / scale
            found.append((cls, feat, float(ks.statistic), w, float(ks.pvalue)))
    if not found:
        return ()
    q = benjamini_hochberg(np.array([f[4] for f in found]))
    out = []
    for (cls, feat, d, w, p), qq in zip(found, q, strict=True):
        sev = grade(
            bool(qq < cfg.class_shift_alpha), w, cfg.class_shift_wasserstein, cfg.class_shift_warn
        )
        # A feature whose whole distribution drifted moves within every class too; that is
        # already a drift finding, so only within-class moves the marginal hides count here.
        if sev is not None and feat in drifted:
            sev = "info"
        out.append(ClassShift(cls, feat, d, w, p, float(qq), sev == "fail", sev))
    out.sort(key=lambda s: (-severity_rank(s.severity), -s.wasserstein_std, s.label, s.feature))
    return tuple(out)
