"""Feature-meaning checks: did a new feature definition change what its outputs mean?

A feature definition is a Python file defining ``transform(df: pandas.DataFrame) -> DataFrame``.
Both versions run on the same pinned probe data and their outputs are compared column by column.

Why a subprocess and not ``exec`` in this process: feature code is user code. A child process
gets a hard timeout (an infinite loop cannot hang the gate), cannot corrupt this process's
modules or global state (monkey-patching numpy, changing the working directory), and a crash or
memory blow-up kills only the child. It is *not* a security sandbox: the code runs with the
caller's permissions, so only run definitions that are themselves under provenance. The child
runs with ``-I`` (isolated mode: no user site-packages, no PYTHON* variables, no script dir on
``sys.path``) in a fresh temporary working directory.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from scipy import stats

from chainproof.errors import BadInputError, NotFoundError, StepFailedError
from chainproof.validate._io import read_table
from chainproof.validate.findings import Finding, highest, sort_findings

DEFAULT_TIMEOUT = 120.0
# A changed output whose differences touch fewer probe rows than this, with no structural
# kind of change, is a warning rather than a failure.
MINOR_CHANGE_SHARE = 0.01

_RUNNER = r"""
import importlib.util, sys, traceback
import pandas as pd
code, probe, out = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    spec = importlib.util.spec_from_file_location("feature_definition", code)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    fn = getattr(mod, "transform", None)
    if not callable(fn):
        print("feature definition has no callable transform(df)", file=sys.stderr)
        sys.exit(3)
    df = pd.read_parquet(probe)
    res = fn(df)
    if isinstance(res, pd.Series):
        res = res.to_frame()
    if not isinstance(res, pd.DataFrame):
        print(f"transform returned {type(res).__name__}, not a DataFrame", file=sys.stderr)
        sys.exit(3)
    res = res.reset_index(drop=True)
    res.columns = [str(c) for c in res.columns]
    res.to_parquet(out, index=False)
except SystemExit:
    raise
except BaseException:
    traceback.print_exc(limit=8)
    sys.exit(4)
"""


@dataclass(frozen=True)
class ColumnChange:
    """How one output column differs between the old and the new definition."""

    column: str
    status: str  # "same" | "changed" | "added" | "removed"
    kinds: tuple[str, ...] = ()  # e.g. ("scale", "sign", "bucket_edges", "values", "type")
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "status": self.status,
            "kinds": list(self.kinds),
            "details": _clean(self.details),
        }


@dataclass(frozen=True)
class FeatureMeaningReport:
    old_code: str
    new_code: str
    probe_rows: int
    columns: tuple[ColumnChange, ...]

    @property
    def changed(self) -> tuple[str, ...]:
        return tuple(c.column for c in self.columns if c.status != "same")

    @property
    def findings(self) -> tuple[Finding, ...]:
        """One finding per output column that is not the same: a removed output or a changed
        meaning is ``fail``; a change confined to under ``MINOR_CHANGE_SHARE`` of the probe rows
        with no structural kind (scale, sign, buckets, type...) and an added output are
        ``warn`` (nothing downstream consumed an added output yet)."""
        out = []
        for c in self.columns:
            if c.status == "same":
                continue
            share = c.details.get("changed_share")
            minor = (
                c.status == "changed"
                and set(c.kinds) <= {"values"}
                and isinstance(share, float)
                and share < MINOR_CHANGE_SHARE
            )
            sev = "warn" if c.status == "added" or minor else "fail"
            what = {
                "added": "output added",
                "removed": "output removed",
            }.get(c.status, "meaning changed: " + "/".join(c.kinds))
            if isinstance(share, float):
                what += f" ({share:.2%} of probe rows)"
            slope = c.details.get("slope")
            if "scale" in c.kinds and isinstance(slope, float):
                what += f", slope {slope:.4g}"
            out.append(
                Finding(
                    "feature_meaning",
                    sev,
                    what,
                    column=c.column,
                    effect=share if isinstance(share, float) else None,
                    effect_name="changed_share" if isinstance(share, float) else None,
                    details={"kinds": list(c.kinds), "status": c.status},
                )
            )
        return sort_findings(out)

    @property
    def severity(self) -> str | None:
        return highest(f.severity for f in self.findings)

    @property
    def passed(self) -> bool:
        """True when no output column changed meaning or disappeared (a pure refactor, or only
        added outputs, which are warnings)."""
        return self.severity != "fail"

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "severity": self.severity,
            "findings": [f.to_dict() for f in self.findings],
            "old_code": self.old_code,
            "new_code": self.new_code,
            "probe_rows": self.probe_rows,
            "changed": list(self.changed),
            "columns": [c.to_dict() for c in self.columns],
        }

    def to_html(self) -> str:
        from chainproof.validate._html import features_section, render_page

        return render_page(
            "Feature meaning check", self.passed, features_section(self), self.severity
        )


def _clean(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in sorted(x.items(), key=lambda kv: str(kv[0]))}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float):
        return round(x, 9) if math.isfinite(x) else None
    return x


def run_feature_definition(
    code: Path | str, probe: Any, *, timeout: float = DEFAULT_TIMEOUT
) -> pd.DataFrame:
    """Run ``transform`` from ``code`` on ``probe`` in a child process and return its output."""
    code = Path(code)
    if not code.is_file():
        raise NotFoundError(f"{code}: feature definition not found", hint="pass a .py file")
    table = read_table(probe)
    with tempfile.TemporaryDirectory(prefix="chainproof-feature-") as tmp:
        probe_path = Path(tmp) / "probe.parquet"
        out_path = Path(tmp) / "out.parquet"
        pq.write_table(table, probe_path)
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "HOME")}
        env["OMP_NUM_THREADS"] = "1"
        try:
            proc = subprocess.run(
                [
                    sys.executable,
                    "-I",
                    "-c",
                    _RUNNER,
                    str(code.resolve()),
                    str(probe_path),
                    str(out_path),
                ],
                cwd=tmp,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise StepFailedError(
                f"{code}: transform did not finish within {timeout:g} s",
                hint="make the feature definition terminate on the probe data or raise timeout=",
            ) from exc
        if proc.returncode != 0:
            tail = (proc.stderr or "").strip().splitlines()[-3:]
            raise StepFailedError(
                f"{code}: transform failed (exit {proc.returncode}): " + " | ".join(tail),
                hint="run the feature definition on the probe data locally and fix the error",
            )
        return pq.read_table(out_path).to_pandas()


def _is_numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def _contiguous_edges(key: np.ndarray, values: np.ndarray) -> list[tuple[str, float]] | None:
    """If ``values`` is a bucketing of ``key`` (runs when sorted by key), its bucket edges."""
    order = np.argsort(key, kind="stable")
    k, v = key[order], values[order]
    change = np.flatnonzero(v[1:] != v[:-1])
    if len(change) == 0 or len(change) + 1 != len(set(v.tolist())):
        return None
    # An edge lies between the last key of one run and the first of the next.
    return [(str(v[i + 1]), float((k[i] + k[i + 1]) / 2)) for i in change]


def _compare_column(
    name: str, a: pd.Series, b: pd.Series, probe: pd.DataFrame, rtol: float, atol: float
) -> ColumnChange:
    details: dict[str, Any] = {"old_dtype": str(a.dtype), "new_dtype": str(b.dtype)}
    kinds: list[str] = []
    if len(a) != len(b):
        details.update(old_rows=len(a), new_rows=len(b))
        return ColumnChange(name, "changed", ("row_count",), details)
    na_a, na_b = a.isna().to_numpy(), b.isna().to_numpy()
    if (na_a != na_b).any():
        kinds.append("missing")
        details["missing_changed_rows"] = int((na_a != na_b).sum())
    both = ~na_a & ~na_b
    if _is_numeric(a) and _is_numeric(b):
        x = a.to_numpy(np.float64, na_value=np.nan)[both]
        y = b.to_numpy(np.float64, na_value=np.nan)[both]
        if np.array_equal(x, y):
            details["equality"] = "exact"
        elif np.allclose(x, y, rtol=rtol, atol=atol):
            details["equality"] = "approx"
            details["max_abs_diff"] = float(np.max(np.abs(x - y))) if len(x) else 0.0
        else:
            diff = np.abs(x - y)
            close = np.isclose(x, y, rtol=rtol, atol=atol)
            details.update(
                equality="different",
                changed_rows=int((~close).sum()),
                changed_share=float((~close).mean()),
                max_abs_diff=float(diff.max()),
                mean_abs_diff=float(diff.mean()),
            )
            kinds.append("values")
            if len(x) >= 3 and np.std(x) > 0 and np.std(y) > 0:
                r = float(np.corrcoef(x, y)[0, 1])
                slope, intercept = np.polyfit(x, y, 1)
                details.update(correlation=r, slope=float(slope), intercept=float(intercept))
                sx, sy = float(np.std(x)), float(np.std(y))
                details["scale_ratio"] = sy / sx
                if r < -0.5:
                    kinds.append("sign")
                if abs(r) > 0.99 and not (0.98 < abs(slope) < 1.02):
                    kinds.append("scale")
                if abs(r) > 0.99 and 0.98 < abs(slope) < 1.02 and abs(intercept) > atol:
                    kinds.append("offset")
                ks = stats.ks_2samp(x, y)
                details.update(ks_d=float(ks.statistic), ks_p=float(ks.pvalue))
                if abs(r) <= 0.99:
                    kinds.append("relationship")
            uniq = set(np.unique(x).tolist()) | set(np.unique(y).tolist())
            if len(uniq) <= 20:
                kinds.extend(_bucket_changes(x, y, probe[both], details))
    else:
        sa, sb = a.astype("string")[both], b.astype("string")[both]
        if str(a.dtype) != str(b.dtype) and (_is_numeric(a) or _is_numeric(b)):
            kinds.append("type")
        same = sa.to_numpy() == sb.to_numpy()
        if same.all():
            details["equality"] = "exact"
        else:
            details.update(
                equality="different",
                changed_rows=int((~same).sum()),
                changed_share=float((~same).mean()),
            )
            kinds.append("values")
            trans = pd.Series(list(zip(sa[~same], sb[~same], strict=True))).value_counts()
            details["transitions"] = {f"{o} -> {n}": int(c) for (o, n), c in trans.head(10).items()}
            mapping = pd.crosstab(sa.to_numpy(), sb.to_numpy())
            if (mapping.gt(0).sum(axis=1) == 1).all() and (mapping.gt(0).sum(axis=0) == 1).all():
                kinds.append("relabel")
            elif sa.nunique() <= 50:
                kinds.extend(_bucket_changes(sa.to_numpy(), sb.to_numpy(), probe[both], details))
    if (
        str(a.dtype) != str(b.dtype)
        and "type" not in kinds
        and details.get("equality") not in ("exact", "approx")
    ):
        kinds.append("type")
    status = "changed" if kinds else "same"
    return ColumnChange(name, status, tuple(dict.fromkeys(kinds)), details)


def _bucket_changes(
    old: np.ndarray, new: np.ndarray, probe: pd.DataFrame, details: dict[str, Any]
) -> list[str]:
    """Find the probe column the output buckets and report old vs new bucket edges."""
    for col in probe.columns:
        s = probe[col]
        if not _is_numeric(s) or s.isna().any():
            continue
        key = s.to_numpy(np.float64)
        eo = _contiguous_edges(key, np.asarray(old))
        en = _contiguous_edges(key, np.asarray(new))
        if eo is not None and en is not None and eo != en:
            details["bucket_source"] = str(col)
            details["old_edges"] = [e for _, e in eo]
            details["new_edges"] = [e for _, e in en]
            return ["bucket_edges"]
    return []


def compare_feature_outputs(
    old: pd.DataFrame,
    new: pd.DataFrame,
    probe: pd.DataFrame,
    *,
    rtol: float = 1e-9,
    atol: float = 1e-12,
) -> tuple[ColumnChange, ...]:
    """Column-by-column comparison of two transform outputs on the same probe rows."""
    out: list[ColumnChange] = []
    for name in old.columns:
        if name not in new.columns:
            out.append(ColumnChange(str(name), "removed", ("removed",)))
            continue
        out.append(_compare_column(str(name), old[name], new[name], probe, rtol, atol))
    for name in new.columns:
        if name not in old.columns:
            out.append(
                ColumnChange(str(name), "added", ("added",), {"dtype": str(new[name].dtype)})
            )
    out.sort(key=lambda c: (c.status == "same", c.column))
    return tuple(out)


def compare_feature_definitions(
    old_code: Path | str,
    new_code: Path | str,
    probe: Any,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    rtol: float = 1e-9,
    atol: float = 1e-12,
) -> FeatureMeaningReport:
    """Run two feature definitions on the same probe data and report what changed meaning."""
    if not (timeout > 0):
        raise BadInputError("timeout must be positive", hint="seconds, e.g. 120")
    table = read_table(probe)
    if table.num_rows == 0:
        raise BadInputError(
            "the probe dataset is empty", hint="pin a probe with representative rows"
        )
    probe_df = _probe_frame(table)
    old = run_feature_definition(old_code, table, timeout=timeout)
    new = run_feature_definition(new_code, table, timeout=timeout)
    cols = compare_feature_outputs(old, new, probe_df, rtol=rtol, atol=atol)
    return FeatureMeaningReport(str(old_code), str(new_code), table.num_rows, cols)


def _probe_frame(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas()
