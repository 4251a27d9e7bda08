"""Label and poisoning suspicion: duplicates, conflicting labels, likely flips, per-class shift.

Likely flips use confident learning (Northcutt et al., 2021) on out-of-sample predicted
probabilities: per-class threshold t_j = mean predicted probability of class j over the rows
labelled j; a row is a suspect when the class it confidently belongs to (highest p_ij among the
classes with p_ij >= t_j) is not its label (the off-diagonal of the confident joint). This is the
core of cleanlab's ``find_label_issues(filter_by="confident_learning")``, written out in numpy
(~20 lines) to avoid a dependency whose own pins tend to fight pandas/numpy majors. A k-nearest-
neighbour label-agreement score is a second, model-free opinion: a true flip sits among
neighbours of its real class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy import stats

from chainproof.errors import BadInputError
from chainproof.validate._io import open_source
from chainproof.validate._profile import Profile, row_keys
from chainproof.validate._types import kind_of, logical_type, to_str_array
from chainproof.validate.drift import benjamini_hochberg

MAX_LISTED_SUSPECTS = 1000
MAX_CLASSES = 50


@dataclass(frozen=True)
class LabelConfig:
    """Label-check settings and gate.

    The gate fails when the suspected-issue rate exceeds ``max_issue_rate``, or exceeds the
    reference version's rate by more than ``max_issue_rate_increase``, or the share of rows in
    conflicting-label groups exceeds ``max_conflict_rate``, or a class's feature distribution moved
    (``class_shift``) while the overall distribution did not explain it.
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


@dataclass(frozen=True)
class LabelSuspect:
    row_id: int
    label: str
    suggested: str
    self_confidence: float
    knn_agreement: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "row_id": self.row_id,
            "label": self.label,
            "suggested": self.suggested,
            "self_confidence": round(self.self_confidence, 6),
            "knn_agreement": round(self.knn_agreement, 6),
        }


@dataclass(frozen=True)
class ClassShift:
    label: str
    feature: str
    ks_d: float
    wasserstein_std: float
    p_value: float
    q_value: float
    flagged: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "feature": self.feature,
            "ks_d": round(self.ks_d, 6),
            "wasserstein_std": round(self.wasserstein_std, 6),
            "p_value": self.p_value,
            "q_value": self.q_value,
            "flagged": self.flagged,
        }


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

    @property
    def conflict_rate(self) -> float:
        return self.conflicting_rows / self.rows if self.rows else 0.0

    @property
    def problems(self) -> tuple[str, ...]:
        out = []
        c = self.config
        if self.issue_rate is not None and self.issue_rate > c.max_issue_rate:
            out.append(
                f"suspected label issues {self.issue_rate:.2%} exceed {c.max_issue_rate:.2%}"
            )
        if (
            self.issue_rate is not None
            and self.reference_issue_rate is not None
            and self.issue_rate > self.reference_issue_rate + c.max_issue_rate_increase
        ):
            out.append(
                f"suspected label issues {self.issue_rate:.2%} exceed the reference's "
                f"{self.reference_issue_rate:.2%} by more than {c.max_issue_rate_increase:.2%}"
            )
        if self.conflict_rate > c.max_conflict_rate:
            out.append(
                f"{self.conflicting_rows} rows ({self.conflict_rate:.2%}) share features with a "
                f"row of a different label"
            )
        shifted = sorted({s.label for s in self.class_shifts if s.flagged})
        if shifted:
            out.append(f"feature distribution shifted within class(es) {shifted}")
        return tuple(out)

    @property
    def passed(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "problems": list(self.problems),
            "label_column": self.label_column,
            "rows": self.rows,
            "rows_checked": self.rows_checked,
            "duplicate_rows": self.duplicate_rows,
            "conflicting_rows": self.conflicting_rows,
            "conflict_examples": list(self.conflict_examples),
            "issue_rate": self.issue_rate,
            "corroborated_rate": self.corroborated_rate,
            "reference_issue_rate": self.reference_issue_rate,
            "suspects": [s.to_dict() for s in self.suspects[:MAX_LISTED_SUSPECTS]],
            "suspects_total": len(self.suspects),
            "class_shifts": [s.to_dict() for s in self.class_shifts if s.flagged],
            "notes": list(self.notes),
        }

    def to_html(self) -> str:
        from chainproof.validate._html import labels_section, render_page

        return render_page("Label check", self.passed, labels_section(self))


# --- confident learning ---------------------------------------------------------------------------


def confident_learning_suspects(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Boolean mask of rows off the diagonal of the confident joint.

    ``labels`` are class indexes 0..K-1, ``probs`` out-of-sample probabilities (n x K).
    """
    k = probs.shape[1]
    thresholds = np.array(
        [probs[labels == j, j].mean() if np.any(labels == j) else 1.0 for j in range(k)]
    )
    above = probs >= thresholds[None, :] - 1e-12
    masked = np.where(above, probs, -1.0)
    confident = masked.argmax(axis=1)
    has = above.any(axis=1)
    return has & (confident != labels)


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
    ) -> None:
        self.cfg = config or LabelConfig()
        names = arrow_schema.names
        if label_column not in names:
            raise BadInputError(
                f"label column {label_column!r} is not in the dataset", hint=f"columns: {names}"
            )
        self.features = (
            list(feature_columns)
            if feature_columns is not None
            else [
                n
                for n in names
                if n != label_column
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
        self.rows = 0
        self.sampler = _RowSampler(self.cfg.max_rows, self.cfg.seed)

    def update(self, batch: pa.RecordBatch, offset: int) -> None:
        self.rows += batch.num_rows
        frame = (
            batch.select(self.features).to_pandas()
            if self.features
            else pd.DataFrame(index=range(batch.num_rows))
        )
        self.fhash.append(pd.util.hash_pandas_object(frame, index=False).to_numpy(np.uint64))
        lab = pd.Series(to_str_array(batch.column(self.label_column)).to_pylist(), dtype="string")
        self.lhash.append(pd.util.hash_pandas_object(lab, index=False).to_numpy(np.uint64))
        self.sampler.update(batch.select([*self.features, self.label_column]), offset)

    def finish(self, reference_issue_rate: float | None = None) -> LabelReport:
        cfg, label_column, features = self.cfg, self.label_column, self.features
        if self.rows == 0:
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
            )
        dup_rows, conflict_mask = _duplicates(
            np.concatenate(self.fhash), np.concatenate(self.lhash)
        )
        conflict_ids = tuple(int(i) for i in np.flatnonzero(conflict_mask)[:5])
        notes: list[str] = []
        table, ids = self.sampler.finish(
            self.schema.empty_table().select([*features, label_column]).schema
        )
        if self.rows > cfg.max_rows:
            notes.append(f"label-flip checks ran on a uniform sample of {cfg.max_rows} rows")
        valid = to_str_array(table.column(label_column)).is_valid().to_numpy(zero_copy_only=False)
        table, ids = table.filter(pa.array(valid)), ids[valid]
        y_str = np.array(to_str_array(table.column(label_column)).to_pylist(), dtype=str)
        classes, y = np.unique(y_str, return_inverse=True)
        issue_rate = corroborated = None
        suspects: list[LabelSuspect] = []
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
            sus = confident_learning_suspects(y, probs)
            sus_rows = np.flatnonzero(sus)
            agree = np.ones(len(y))
            agree[sus_rows] = knn_agreement(x, y, cfg.knn_k, sus_rows)
            self_conf = probs[np.arange(len(y)), y]
            issue_rate = float(sus.mean())
            corroborated = float((sus & (agree < 0.5)).mean())
            for i in np.flatnonzero(sus)[np.argsort(self_conf[sus], kind="stable")]:
                suspects.append(
                    LabelSuspect(
                        row_id=int(ids[i]),
                        label=str(classes[y[i]]),
                        suggested=str(classes[int(np.argmax(probs[i]))]),
                        self_confidence=float(self_conf[i]),
                        knn_agreement=float(agree[i]),
                    )
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
            config=cfg,
            notes=tuple(notes),
        )


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
    reference: Profile, current: Profile, config: LabelConfig | None = None
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
    out = [
        ClassShift(
            cls,
            feat,
            d,
            w,
            p,
            float(qq),
            bool(qq < cfg.class_shift_alpha and w >= cfg.class_shift_wasserstein),
        )
        for (cls, feat, d, w, p), qq in zip(found, q, strict=True)
    ]
    out.sort(key=lambda s: (not s.flagged, -s.wasserstein_std, s.label, s.feature))
    return tuple(out)
