"""Schema contracts: infer, review as YAML, check."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from chainproof.errors import BadInputError, MalformedFileError
from chainproof.validate._io import open_source
from chainproof.validate._types import (
    LOGICAL_TYPES,
    compatible,
    kind_of,
    logical_type,
    to_float,
    to_str_array,
)
from chainproof.validate.findings import Finding
from chainproof.validate.thresholds import check_thresholds

SCHEMA_FORMAT_VERSION = 1
DEFAULT_MAX_DOMAIN = 50
MAX_EXAMPLES = 5


@dataclass(frozen=True)
class ColumnSchema:
    """The contract for one column. ``None`` bounds/domains mean "not constrained"."""

    name: str
    type: str
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] | None = None
    unique: bool = False


@dataclass(frozen=True)
class Schema:
    """A dataset contract, versioned and reviewable as YAML.

    Beyond the column rules a contract may declare the dataset's ``label_column`` and
    ``key_columns`` and validation ``thresholds`` (names in
    :mod:`chainproof.validate.thresholds`): ``validate_dataset`` uses them whenever the caller
    gives none, so leaving out ``--label`` does not skip the label checks of a contracted
    dataset.
    """

    columns: tuple[ColumnSchema, ...]
    key_columns: tuple[str, ...] = ()
    min_rows: int | None = None
    max_rows: int | None = None
    version: int = SCHEMA_FORMAT_VERSION
    label_column: str | None = None
    thresholds: Mapping[str, float] = field(default_factory=dict)

    def column(self, name: str) -> ColumnSchema | None:
        for c in self.columns:
            if c.name == name:
                return c
        return None

    def to_dict(self) -> dict[str, Any]:
        cols = []
        for c in self.columns:
            entry: dict[str, Any] = {"name": c.name, "type": c.type, "nullable": c.nullable}
            if c.min is not None:
                entry["min"] = c.min
            if c.max is not None:
                entry["max"] = c.max
            if c.categories is not None:
                entry["categories"] = list(c.categories)
            if c.unique:
                entry["unique"] = True
            cols.append(entry)
        rows: dict[str, Any] = {}
        if self.min_rows is not None:
            rows["min"] = self.min_rows
        if self.max_rows is not None:
            rows["max"] = self.max_rows
        out: dict[str, Any] = {"chainproof_schema": self.version}
        if self.label_column is not None:
            out["label_column"] = self.label_column
        out["key_columns"] = list(self.key_columns)
        if self.thresholds:
            out["thresholds"] = dict(sorted(self.thresholds.items()))
        out["rows"] = rows
        out["columns"] = cols
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, width=100)

    @classmethod
    def from_yaml(cls, text: str | bytes) -> Schema:
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise MalformedFileError(
                f"schema is not valid YAML: {exc}", hint="fix the YAML syntax"
            ) from exc
        return _parse_schema(doc)


def _parse_schema(doc: Any) -> Schema:
    def bad(why: str) -> MalformedFileError:
        return MalformedFileError(
            f"schema is malformed: {why}",
            hint="regenerate it with infer_schema(...).to_yaml() and edit the values only",
        )

    if not isinstance(doc, dict):
        raise bad("top level must be a mapping")
    extra = set(doc) - {
        "chainproof_schema",
        "key_columns",
        "rows",
        "columns",
        "label_column",
        "thresholds",
    }
    if extra:
        raise bad(f"unknown top-level keys {sorted(extra)}")
    version = doc.get("chainproof_schema")
    if version != SCHEMA_FORMAT_VERSION or isinstance(version, bool):
        raise bad(f"chainproof_schema must be {SCHEMA_FORMAT_VERSION}, got {version!r}")
    keys = doc.get("key_columns", [])
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise bad("key_columns must be a list of column names")
    rows = doc.get("rows", {}) or {}
    if not isinstance(rows, dict) or set(rows) - {"min", "max"}:
        raise bad("rows must be a mapping with optional 'min' and 'max'")
    for k, v in rows.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise bad(f"rows.{k} must be a non-negative integer")
    cols_doc = doc.get("columns")
    if not isinstance(cols_doc, list) or not cols_doc:
        raise bad("columns must be a non-empty list")
    cols: list[ColumnSchema] = []
    seen: set[str] = set()
    allowed = {"name", "type", "nullable", "min", "max", "categories", "unique"}
    for i, c in enumerate(cols_doc):
        if not isinstance(c, dict):
            raise bad(f"columns[{i}] must be a mapping")
        if set(c) - allowed:
            raise bad(f"columns[{i}] has unknown keys {sorted(set(c) - allowed)}")
        name = c.get("name")
        if not isinstance(name, str) or not name:
            raise bad(f"columns[{i}].name must be a non-empty string")
        if name in seen:
            raise bad(f"column {name!r} is listed twice")
        seen.add(name)
        typ = c.get("type")
        if typ not in LOGICAL_TYPES:
            raise bad(f"column {name!r}: type must be one of {list(LOGICAL_TYPES)}, got {typ!r}")
        nullable = c.get("nullable", True)
        unique = c.get("unique", False)
        if not isinstance(nullable, bool) or not isinstance(unique, bool):
            raise bad(f"column {name!r}: nullable and unique must be true/false")
        bounds: dict[str, float | None] = {}
        for b in ("min", "max"):
            v = c.get(b)
            if v is not None and (
                isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)
            ):
                raise bad(f"column {name!r}: {b} must be a finite number")
            bounds[b] = None if v is None else float(v)
        lo, hi = bounds["min"], bounds["max"]
        if lo is not None and hi is not None and lo > hi:
            raise bad(f"column {name!r}: min {lo} is greater than max {hi}")
        cats = c.get("categories")
        if cats is not None:
            if not isinstance(cats, list) or not all(isinstance(x, str) for x in cats):
                raise bad(f"column {name!r}: categories must be a list of strings")
            cats = tuple(cats)
        cols.append(ColumnSchema(name, typ, nullable, lo, hi, cats, unique))
    for k in keys:
        if k not in seen:
            raise bad(f"key column {k!r} is not a listed column")
    lo_r, hi_r = rows.get("min"), rows.get("max")
    if lo_r is not None and hi_r is not None and lo_r > hi_r:
        raise bad("rows.min is greater than rows.max")
    label = doc.get("label_column")
    if label is not None and (not isinstance(label, str) or label not in seen):
        raise bad(f"label_column {label!r} is not a listed column")
    if label is not None and label in keys:
        raise bad(f"label_column {label!r} cannot also be a key column")
    raw_th = doc.get("thresholds", {}) or {}
    if not isinstance(raw_th, dict):
        raise bad("thresholds must be a mapping of threshold name to number")
    try:
        th = check_thresholds(raw_th)
    except BadInputError as exc:
        raise MalformedFileError(
            f"schema is malformed: {exc.message}", hint=exc.hint or ""
        ) from exc
    return Schema(tuple(cols), tuple(keys), lo_r, hi_r, version, label, th)


# --- inference ------------------------------------------------------------------------------------


def infer_schema(
    data: Any,
    *,
    key_columns: tuple[str, ...] | list[str] = (),
    tolerance: float = 0.1,
    max_domain: int = DEFAULT_MAX_DOMAIN,
) -> Schema:
    """Infer a contract from a (trusted) dataset version.

    Numeric ranges are widened by ``tolerance`` x (max - min) on each side (integers to whole
    numbers); the row-count expectation is ``rows x (1 +- tolerance)``. String columns with at most
    ``max_domain`` distinct values get a category domain. Key columns must be unique.
    """
    if not 0 <= tolerance <= 10:
        raise BadInputError("tolerance must be between 0 and 10", hint="0.1 means 10 %")
    src = open_source(data)
    names = src.schema.names
    for k in key_columns:
        if k not in names:
            raise BadInputError(f"key column {k!r} is not in the dataset", hint=f"columns: {names}")
    logical = {n: logical_type(src.schema.field(n).type) for n in names}
    nulls = dict.fromkeys(names, 0)
    lo = dict.fromkeys(names, math.inf)
    hi = dict.fromkeys(names, -math.inf)
    domains: dict[str, set[str] | None] = {
        n: set() if logical[n] == "string" else None for n in names
    }
    rows = 0
    for batch in src.batches():
        rows += batch.num_rows
        for n in names:
            arr = batch.column(n)
            kind = kind_of(logical[n])
            if kind == "numeric":
                values, valid = to_float(arr)
                nulls[n] += int((~valid).sum())
                if valid.any():
                    v = values[valid]
                    lo[n], hi[n] = min(lo[n], float(v.min())), max(hi[n], float(v.max()))
            else:
                nulls[n] += arr.null_count
            dom = domains[n]
            if dom is not None:
                dom.update(x for x in pc.unique(to_str_array(arr)).to_pylist() if x is not None)
                if len(dom) > max_domain:
                    domains[n] = None
    if rows == 0:
        raise BadInputError(
            "cannot infer a schema from an empty dataset", hint="infer from a populated version"
        )
    cols = []
    for n in names:
        mn = mx = None
        if kind_of(logical[n]) == "numeric" and math.isfinite(lo[n]):
            span = hi[n] - lo[n]
            pad = tolerance * (span if span > 0 else max(abs(hi[n]), 1.0))
            mn, mx = lo[n] - pad, hi[n] + pad
            if logical[n] == "int":
                mn, mx = float(math.floor(mn)), float(math.ceil(mx))
        dom = domains[n]
        cols.append(
            ColumnSchema(
                name=n,
                type=logical[n],
                nullable=nulls[n] > 0,
                min=mn,
                max=mx,
                categories=tuple(sorted(dom)) if dom is not None else None,
                unique=n in key_columns and len(key_columns) == 1,
            )
        )
    return Schema(
        columns=tuple(cols),
        key_columns=tuple(key_columns),
        min_rows=math.floor(rows * (1 - tolerance)) if tolerance < 1 else 0,
        max_rows=math.ceil(rows * (1 + tolerance)),
    )


# --- checking -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SchemaFinding:
    """One broken rule. ``examples`` are offending values, ``row_ids`` 0-based row indexes.

    For a ``unique`` finding ``examples`` are the repeated key values (most repeated first; a
    tuple of column values for a composite key), ``occurrences`` how often each appears,
    ``keys`` the same values by column, and ``count`` the rows that repeat an earlier one."""

    column: str | None
    rule: str
    message: str
    count: int = 0
    examples: tuple[Any, ...] = ()
    row_ids: tuple[int, ...] = ()
    keys: tuple[Mapping[str, Any], ...] = ()  # key-column values of the example rows
    occurrences: tuple[int, ...] = ()  # unique: how often each example value appears

    def to_dict(self) -> dict[str, Any]:
        out = {
            "column": self.column,
            "rule": self.rule,
            "message": self.message,
            "count": self.count,
            "examples": [_jsonable(x) for x in self.examples],
            "row_ids": list(self.row_ids),
            "keys": [dict(k) for k in self.keys],
        }
        if self.occurrences:
            out["occurrences"] = list(self.occurrences)
        return out


@dataclass(frozen=True)
class SchemaReport:
    rows: int
    findings: tuple[SchemaFinding, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        return not self.findings

    @property
    def severity(self) -> str | None:
        return "fail" if self.findings else None

    def as_findings(self) -> tuple[Finding, ...]:
        """Every broken contract rule is a ``fail``: a contract is a promise, not a statistic."""
        return tuple(
            Finding(
                "schema",
                "fail",
                f.message,
                column=f.column,
                statistic=float(f.count),
                details={
                    "rule": f.rule,
                    "row_ids": list(f.row_ids),
                    "keys": [dict(k) for k in f.keys],
                    **({"occurrences": list(f.occurrences)} if f.occurrences else {}),
                },
            )
            for f in self.findings
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "severity": self.severity,
            "rows": self.rows,
            "findings": [f.to_dict() for f in self.findings],
        }

    def to_html(self) -> str:
        from chainproof.validate._html import render_page, schema_section

        return render_page("Schema check", self.passed, schema_section(self))


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, str | int | float | bool) or x is None:
        return x
    return str(x)


class _Violations:
    def __init__(self) -> None:
        self.count = 0
        self.examples: list[Any] = []
        self.rows: list[int] = []
        self.keys: list[dict[str, Any]] = []
        self.batch_keys: dict[str, pa.Array] = {}

    def add(self, mask: np.ndarray, values: Any, offset: int) -> None:
        n = int(mask.sum())
        if not n:
            return
        self.count += n
        if len(self.rows) < MAX_EXAMPLES:
            idx = np.flatnonzero(mask)[: MAX_EXAMPLES - len(self.rows)]
            self.rows.extend(int(i) + offset for i in idx)
            if values is not None:
                self.examples.extend(_jsonable(values[int(i)]) for i in idx)
            if self.batch_keys:
                self.keys.extend(
                    {k: _jsonable(a[int(i)].as_py()) for k, a in self.batch_keys.items()}
                    for i in idx
                )


def check_schema(data: Any, schema: Schema) -> SchemaReport:
    """Check a dataset against a contract in one batched pass; every broken rule is a finding."""
    if not isinstance(schema, Schema):
        raise BadInputError("schema must be a Schema", hint="use Schema.from_yaml(text)")
    src = open_source(data)
    checker = SchemaChecker(schema, src.schema)
    offset = 0
    for batch in src.batches():
        checker.update(batch, offset)
        offset += batch.num_rows
    return checker.finish()


class SchemaChecker:
    """Streaming schema check: ``update`` per batch, then ``finish``; one pass feeds all checks."""

    def __init__(self, schema: Schema, arrow_schema: pa.Schema) -> None:
        self.schema = schema
        self.findings: list[SchemaFinding] = []
        actual = {n: logical_type(arrow_schema.field(n).type) for n in arrow_schema.names}
        self.actual = actual
        expected = {c.name: c for c in schema.columns}
        for c in schema.columns:
            if c.name not in actual:
                self.findings.append(
                    SchemaFinding(c.name, "missing_column", f"column {c.name!r} is missing")
                )
            elif not compatible(c.type, actual[c.name]):
                self.findings.append(
                    SchemaFinding(
                        c.name,
                        "type_changed",
                        f"column {c.name!r} is {actual[c.name]}, the schema says {c.type}",
                    )
                )
        for n in actual:
            if n not in expected:
                self.findings.append(
                    SchemaFinding(
                        n, "extra_column", f"column {n!r} ({actual[n]}) is not in the schema"
                    )
                )
        self.checked = [
            expected[n] for n in actual if n in expected and compatible(expected[n].type, actual[n])
        ]
        self.nulls = {c.name: _Violations() for c in self.checked}
        self.low = {c.name: _Violations() for c in self.checked}
        self.high = {c.name: _Violations() for c in self.checked}
        self.unknown = {c.name: _Violations() for c in self.checked}
        self.domains = {
            c.name: pa.array(list(c.categories), type=pa.string())
            for c in self.checked
            if c.categories is not None
        }
        keys_ok = all(k in actual for k in schema.key_columns)
        unique_cols = [c.name for c in self.checked if c.unique]
        self.key_sets: list[tuple[str, tuple[str, ...]]] = []
        if schema.key_columns and keys_ok:
            self.key_sets.append(("key_columns", schema.key_columns))
        self.key_sets += [(n, (n,)) for n in unique_cols if (n,) != tuple(schema.key_columns)]
        self.key_hashes: dict[str, list[np.ndarray]] = {label: [] for label, _ in self.key_sets}
        # The key columns themselves (Arrow, compact), to name repeated values in a finding.
        self.key_values: dict[str, list[pa.RecordBatch]] = {label: [] for label, _ in self.key_sets}
        self.rows = 0

    def update(self, batch: pa.RecordBatch, offset: int) -> None:
        self.rows += batch.num_rows
        keys = {k: batch.column(k) for k in self.schema.key_columns if k in self.actual}
        for viols in (self.nulls, self.low, self.high, self.unknown):
            for v in viols.values():
                v.batch_keys = keys
        for c in self.checked:
            arr = batch.column(c.name)
            if kind_of(self.actual[c.name]) == "numeric":
                values, valid = to_float(arr)
                if not c.nullable:
                    self.nulls[c.name].add(~valid, None, offset)
                if c.min is not None:
                    self.low[c.name].add(valid & (values < c.min), values, offset)
                if c.max is not None:
                    self.high[c.name].add(valid & (values > c.max), values, offset)
                continue
            if not c.nullable and arr.null_count:
                self.nulls[c.name].add(arr.is_null().to_numpy(zero_copy_only=False), None, offset)
            if c.name in self.domains:
                s = to_str_array(arr)
                bad_mask = pc.and_(
                    pc.invert(pc.is_in(s, value_set=self.domains[c.name])), pc.is_valid(s)
                )
                m = bad_mask.to_numpy(zero_copy_only=False)
                if m.any():
                    self.unknown[c.name].add(m, _LazyList(s), offset)
        for label, cols in self.key_sets:
            selected = batch.select(list(cols))
            self.key_values[label].append(selected)
            frame = selected.to_pandas()
            self.key_hashes[label].append(
                pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)
            )

    def finish(self) -> SchemaReport:
        findings = list(self.findings)
        schema, rows = self.schema, self.rows
        if schema.min_rows is not None and rows < schema.min_rows:
            findings.append(
                SchemaFinding(
                    None, "row_count", f"{rows} rows, expected at least {schema.min_rows}", rows
                )
            )
        if schema.max_rows is not None and rows > schema.max_rows:
            findings.append(
                SchemaFinding(
                    None, "row_count", f"{rows} rows, expected at most {schema.max_rows}", rows
                )
            )
        for c in self.checked:
            v = self.nulls[c.name]
            if v.count:
                findings.append(
                    SchemaFinding(
                        c.name,
                        "not_null",
                        f"{v.count} nulls in non-nullable column {c.name!r}",
                        v.count,
                        (),
                        tuple(v.rows),
                        tuple(v.keys),
                    )
                )
            for viol, rule, bound in (
                (self.low[c.name], "min", c.min),
                (self.high[c.name], "max", c.max),
            ):
                if viol.count:
                    findings.append(
                        SchemaFinding(
                            c.name,
                            f"range_{rule}",
                            f"{viol.count} values of {c.name!r} beyond {rule} {bound}",
                            viol.count,
                            tuple(viol.examples),
                            tuple(viol.rows),
                            tuple(viol.keys),
                        )
                    )
            u = self.unknown[c.name]
            if u.count:
                findings.append(
                    SchemaFinding(
                        c.name,
                        "unknown_category",
                        f"{u.count} values of {c.name!r} outside its category domain",
                        u.count,
                        tuple(u.examples),
                        tuple(u.rows),
                        tuple(u.keys),
                    )
                )
        for label, cols in self.key_sets:
            parts = self.key_hashes[label]
            hashes = np.concatenate(parts) if parts else np.empty(0, np.uint64)
            dup = _duplicate_mask(hashes)
            if dup.any():
                findings.append(self._duplicates(label, cols, hashes, dup))
        return SchemaReport(rows=rows, findings=tuple(findings))


    def _duplicates(
        self, label: str, cols: tuple[str, ...], hashes: np.ndarray, dup: np.ndarray
    ) -> SchemaFinding:
        """A ``unique`` finding that names the repeated values: "customer_id 1043 appears 3
        times", most repeated first, then by first appearance; and how many values repeat."""
        # 64-bit hashes: a false collision among a billion keys is unlikely (~3 %), and the
        # row ids let a reviewer look at the duplicates themselves.
        ids = np.flatnonzero(dup)
        repeated = np.unique(hashes[ids])
        involved = np.flatnonzero(np.isin(hashes, repeated))  # every row of a repeated value
        values, first_at, counts = np.unique(
            hashes[involved], return_index=True, return_counts=True
        )
        first_rows = involved[first_at]
        order = np.lexsort((first_rows, -counts))[:MAX_EXAMPLES]
        batches = self.key_values[label]
        starts = np.cumsum([0] + [b.num_rows for b in batches])
        examples: list[Any] = []
        keys: list[dict[str, Any]] = []
        for i in order:
            row = int(first_rows[i])
            b = int(np.searchsorted(starts, row, side="right")) - 1
            batch, at = batches[b], row - int(starts[b])
            key = {c: _jsonable(batch.column(c)[at].as_py()) for c in cols}
            keys.append(key)
            examples.append(key[cols[0]] if len(cols) == 1 else tuple(key.values()))
        occurrences = tuple(int(counts[i]) for i in order)
        named = ", ".join(
            f"{_key_text(k)} appears {n} times" for k, n in zip(keys, occurrences, strict=True)
        )
        more = len(values) - len(order)
        subject = f"{cols[0]!r}" if len(cols) == 1 else f"key {list(cols)}"
        what = "value of {} appears" if len(values) == 1 else "values of {} appear"
        extra = "extra row" if len(ids) == 1 else "extra rows"
        return SchemaFinding(
            cols[0] if len(cols) == 1 else None,
            "unique",
            f"{len(values)} {what.format(subject)} more than once ({len(ids)} {extra}): "
            f"{named}" + (f", and {more} more" if more else ""),
            len(ids),
            tuple(examples),
            tuple(int(i) for i in ids[:MAX_EXAMPLES]),
            tuple(keys),
            occurrences,
        )


def _key_text(key: Mapping[str, Any]) -> str:
    """``customer_id 1043``, ``country 'de'``; a composite key ``(order_id=1, line=2)``."""
    if len(key) == 1:
        ((col, value),) = key.items()
        return f"{col} {_value_text(value)}"
    return "(" + ", ".join(f"{c}={_value_text(v)}" for c, v in key.items()) + ")"


def _value_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return repr(value)
    return str(value)


class _LazyList:
    """Index access into an Arrow array without converting all of it to Python."""

    def __init__(self, arr: pa.Array) -> None:
        self.arr = arr

    def __getitem__(self, i: int) -> Any:
        return self.arr[i].as_py()


def _duplicate_mask(hashes: np.ndarray) -> np.ndarray:
    """True for every row whose key already occurred in an earlier row."""
    if len(hashes) == 0:
        return np.zeros(0, dtype=bool)
    order = np.argsort(hashes, kind="stable")
    s = hashes[order]
    repeat = np.zeros(len(s), dtype=bool)
    repeat[1:] = s[1:] == s[:-1]
    out = np.zeros(len(s), dtype=bool)
    out[order] = repeat
    return out
