"""Mergeable, cacheable dataset profiles: the reference side of every drift test.

A profile holds, per column, exact counts (rows, nulls, min, max, sum, sum of squares, category
counts) and, for numeric columns, a *bottom-k sample*: every row gets a pseudo-random 64-bit key
computed from ``(seed, global row index)`` and the sample keeps the values of the ``k`` rows with
the smallest keys. Why this design:

* KS needs raw values; exact KS over 1M x 1M rows costs a sort of 2M values per column and its
  p-value is then so sensitive that the effect-size gate does all the work anyway. A 100k uniform
  sample per side keeps KS, Wasserstein and quantile-PSI within ~0.005 of their exact values
  (DKW bound: sup|F_n - F| <= 0.0054 at 95 % for n = 100k), which is far below the thresholds.
* A bottom-k sample is *mergeable*: the union of two samples trimmed to the k smallest keys is
  exactly the sample of the concatenated data, so batch-by-batch profiling equals in-memory
  profiling bit for bit, and ``Profile.merge`` combines batches computed elsewhere.
* It is deterministic (seeded hash, no RNG state), so the same dataset version always yields the
  same profile bytes and the caller can cache it by dataset digest.

A t-digest would be smaller but is neither exact-mergeable nor usable for a KS p-value.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from chainproof.errors import BadInputError, MalformedFileError
from chainproof.validate._io import open_source
from chainproof.validate._types import kind_of, logical_type, to_float, to_str_array

PROFILE_FORMAT_VERSION = 1
_MAGIC = b"CHAINPROOF-PROFILE\n"
DEFAULT_SAMPLE_SIZE = 100_000
DEFAULT_CLASS_SAMPLE_SIZE = 20_000
DEFAULT_MAX_CATEGORIES = 10_000
MAX_CLASSES = 50


def row_keys(start: int, n: int, seed: int) -> np.ndarray:
    """SplitMix64 of ``seed`` and the global row index: a fixed pseudo-random key per row."""
    x = np.arange(start, start + n, dtype=np.uint64)
    x = x + np.uint64((seed * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF)
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _bottom_k(
    values: np.ndarray, keys: np.ndarray, k: int, *, ordered: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    if len(keys) > k:
        idx = np.argpartition(keys, k - 1)[:k]
        values, keys = values[idx], keys[idx]
    if not ordered:
        return values, keys
    order = np.argsort(keys, kind="stable")
    return values[order], keys[order]


@dataclass(frozen=True, eq=False)
class NumericSketch:
    """Exact moments plus a bottom-k sample (values sorted by their row key)."""

    count: int
    min: float
    max: float
    total: float
    total_sq: float
    sample: np.ndarray
    sample_keys: np.ndarray

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else float("nan")

    @property
    def std(self) -> float:
        if self.count < 2:
            return 0.0
        var = (self.total_sq - self.total * self.total / self.count) / (self.count - 1)
        return float(np.sqrt(max(var, 0.0)))


@dataclass(frozen=True)
class ColumnProfile:
    """One column of a profile. ``categories`` is None when the column is numeric, or when it had
    more than ``max_categories`` distinct values (``overflow``)."""

    name: str
    logical: str
    rows: int
    nulls: int
    numeric: NumericSketch | None = None
    categories: dict[str, int] | None = None
    overflow: bool = False
    # True when every row holds a distinct non-null value (integer and string columns only);
    # None when not tracked (other types, merged profiles, older cached profiles).
    unique: bool | None = None

    @property
    def kind(self) -> str:
        if self.numeric is not None:
            return "numeric"
        kind = kind_of(self.logical)
        return "categorical" if kind == "numeric" else kind

    @property
    def null_rate(self) -> float:
        return self.nulls / self.rows if self.rows else 0.0


@dataclass(frozen=True)
class Profile:
    """A dataset's profile. Build with :func:`profile_dataset`; combine with :meth:`merge`."""

    rows: int
    columns: dict[str, ColumnProfile]
    sample_size: int = DEFAULT_SAMPLE_SIZE
    seed: int = 0
    label_column: str | None = None
    by_class: dict[str, Profile] = field(default_factory=dict)
    label_issue_rate: float | None = None
    # The reference side of the label detector (see labels.LabelStats.to_dict): classes,
    # confident joint, rows checked, suspects, conflicting rows. None when not computed.
    label_stats: dict[str, Any] | None = None

    def merge(self, other: Profile) -> Profile:
        """Profile of the concatenation (``self`` rows first, then ``other``'s).

        Exact when ``other`` was built with ``row_offset=self.rows`` (what batching does); when both
        were built from offset 0 the sample is still uniform but no longer equals a single pass.
        """
        if self.sample_size != other.sample_size or self.seed != other.seed:
            raise BadInputError(
                "profiles with different sample_size or seed cannot be merged",
                hint="build both profiles with the same settings",
            )
        if list(self.columns) != list(other.columns):
            raise BadInputError(
                "profiles have different columns and cannot be merged",
                hint=f"left {list(self.columns)}, right {list(other.columns)}",
            )
        if self.label_column != other.label_column:
            raise BadInputError("profiles have different label columns", hint="use the same one")
        cols = {}
        for name, a in self.columns.items():
            b = other.columns[name]
            if a.logical != b.logical:
                raise BadInputError(
                    f"column {name!r} is {a.logical} in one profile and {b.logical} in the other",
                    hint="profiles of batches must share one schema",
                )
            cols[name] = _merge_columns(a, b, self.sample_size)
        classes = {}
        for cls in sorted(set(self.by_class) | set(other.by_class)):
            if cls in self.by_class and cls in other.by_class:
                classes[cls] = self.by_class[cls].merge(other.by_class[cls])
            else:
                classes[cls] = self.by_class.get(cls) or other.by_class[cls]
        return Profile(
            rows=self.rows + other.rows,
            columns=cols,
            sample_size=self.sample_size,
            seed=self.seed,
            label_column=self.label_column,
            by_class=classes,
            label_issue_rate=None,
        )

    def with_label_issue_rate(self, rate: float | None) -> Profile:
        return replace(self, label_issue_rate=rate)

    def with_label_stats(self, stats: dict[str, Any] | None) -> Profile:
        return replace(self, label_stats=stats)

    def to_bytes(self) -> bytes:
        return _dump(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> Profile:
        return _load(data)


def _merge_columns(a: ColumnProfile, b: ColumnProfile, k: int) -> ColumnProfile:
    numeric = None
    if a.numeric is not None and b.numeric is not None:
        x, y = a.numeric, b.numeric
        vals, keys = _bottom_k(
            np.concatenate([x.sample, y.sample]), np.concatenate([x.sample_keys, y.sample_keys]), k
        )
        numeric = NumericSketch(
            count=x.count + y.count,
            min=min(x.min, y.min),
            max=max(x.max, y.max),
            total=x.total + y.total,
            total_sq=x.total_sq + y.total_sq,
            sample=vals,
            sample_keys=keys,
        )
    cats: dict[str, int] | None = None
    overflow = a.overflow or b.overflow
    if not overflow and a.categories is not None and b.categories is not None:
        cats = dict(a.categories)
        for key, n in b.categories.items():
            cats[key] = cats.get(key, 0) + n
    return ColumnProfile(
        name=a.name,
        logical=a.logical,
        rows=a.rows + b.rows,
        nulls=a.nulls + b.nulls,
        numeric=numeric,
        categories=None if overflow else dict(sorted(cats.items())) if cats is not None else None,
        overflow=overflow,
        # Two unique halves may share a value: unknown unless one already repeats.
        unique=False if a.unique is False or b.unique is False else None,
    )


_ID_NAME = re.compile(r"(?:^|[_\-. ])(?:id|key|uuid|guid)$", re.IGNORECASE)
_CAMEL_ID = re.compile(r"[a-z](?:Id|ID|Key|UUID)$")
MIN_ID_ROWS = 20


def id_like(col: ColumnProfile) -> bool:
    """Whether a column looks like a row identifier: an integer or string column with a
    distinct value in every row, and (for integers) an ID-like name or a dense range -- a
    continuous measurement stored as integers (cents) is unique per row by chance."""
    if col.unique is not True or col.rows < MIN_ID_ROWS or col.nulls:
        return False
    if col.logical == "string":
        return True
    if col.logical != "int":
        return False
    name = col.name.strip()
    if _ID_NAME.search(name) or _CAMEL_ID.search(name):
        return True
    num = col.numeric
    return num is not None and num.count > 0 and (num.max - num.min + 1) <= 2 * num.count


class _ColumnAcc:
    """Accumulates one column over batches."""

    def __init__(
        self,
        name: str,
        logical: str,
        k: int,
        max_categories: int,
        as_categorical: bool = False,
        track_unique: bool = True,
    ) -> None:
        self.name, self.logical, self.k, self.max_categories = name, logical, k, max_categories
        self.kind = "categorical" if as_categorical else kind_of(logical)
        self.rows = self.nulls = self.count = 0
        self.min, self.max, self.total, self.total_sq = np.inf, -np.inf, 0.0, 0.0
        self.sample = np.empty(0, dtype=np.float64)
        self.keys = np.empty(0, dtype=np.uint64)  # unordered while streaming; sorted by finish()
        self.kmax = np.uint64(0)
        self.cats: dict[str, int] | None = {} if self.kind == "categorical" else None
        self.overflow = False
        # Uniqueness (ID-like detection): tracked until the first repeated value.
        tracked = track_unique and logical in ("int", "string") and not as_categorical
        self.unique: bool | None = True if tracked else None
        self.hashes: list[np.ndarray] = []

    def _track_unique(self, arr: pa.Array) -> None:
        if self.unique is not True:
            return
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        if pa.types.is_dictionary(arr.type):
            arr = arr.dictionary_decode()
        if arr.null_count or pc.count_distinct(arr).as_py() < len(arr):
            # Most columns repeat a value within their first batch: stop tracking at once.
            self.unique, self.hashes = False, []
            return
        if self.logical == "int":
            h = np.asarray(arr.cast(pa.int64()).to_numpy(zero_copy_only=False)).view(np.uint64)
        else:
            h = pd.util.hash_array(
                np.asarray(to_str_array(arr).to_numpy(zero_copy_only=False), dtype=object)
            )
        h = np.sort(h)
        if len(h) > 1 and bool((h[1:] == h[:-1]).any()):
            self.unique, self.hashes = False, []
            return
        self.hashes.append(h)

    def update(self, arr: pa.Array, keys: np.ndarray) -> None:
        n = len(arr)
        self.rows += n
        self._track_unique(arr)
        if self.kind == "numeric":
            values, valid = to_float(arr)
            v = values[valid]
            self.nulls += n - len(v)
            if len(v) == 0:
                return
            self.count += len(v)
            self.min = min(self.min, float(v.min()))
            self.max = max(self.max, float(v.max()))
            self.total += float(v.sum())
            self.total_sq += float(np.dot(v, v))
            kv = keys[valid]
            if len(self.keys) >= self.k:
                # Most rows of a large dataset cannot enter a full sample: filter them cheaply.
                keep = kv < self.kmax
                v, kv = v[keep], kv[keep]
                if len(v) == 0:
                    return
            self.sample, self.keys = _bottom_k(
                np.concatenate([self.sample, v]),
                np.concatenate([self.keys, kv]),
                self.k,
                ordered=False,
            )
            self.kmax = self.keys.max()
            return
        self.nulls += arr.null_count
        if self.kind != "categorical" or self.overflow:
            return
        assert self.cats is not None
        counts = pc.value_counts(to_str_array(arr))
        for value, cnt in zip(
            counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True
        ):
            if value is not None:
                self.cats[value] = self.cats.get(value, 0) + int(cnt)
        if len(self.cats) > self.max_categories:
            self.overflow, self.cats = True, None

    def finish(self) -> ColumnProfile:
        if self.unique is True and len(self.hashes) > 1:
            h = np.sort(np.concatenate(self.hashes))
            self.unique = not bool((h[1:] == h[:-1]).any())
        self.hashes = []
        if self.rows == 0:
            self.unique = None
        numeric = None
        if self.kind == "numeric":
            self.sample, self.keys = _bottom_k(self.sample, self.keys, self.k)
            numeric = NumericSketch(
                count=self.count,
                min=float(self.min) if self.count else float("nan"),
                max=float(self.max) if self.count else float("nan"),
                total=self.total,
                total_sq=self.total_sq,
                sample=self.sample,
                sample_keys=self.keys,
            )
        return ColumnProfile(
            name=self.name,
            logical=self.logical,
            rows=self.rows,
            nulls=self.nulls,
            numeric=numeric,
            categories=dict(sorted(self.cats.items())) if self.cats is not None else None,
            overflow=self.overflow,
            unique=self.unique,
        )


class _ProfileAcc:
    def __init__(
        self,
        schema: pa.Schema,
        k: int,
        seed: int,
        max_categories: int,
        columns: list[str],
        label_column: str | None = None,
        track_unique: bool = True,
    ) -> None:
        self.k, self.seed = k, seed
        self.accs = {}
        for name in columns:
            logical = logical_type(schema.field(name).type)
            # An integer label is a class id: its shift is a change of class shares (chi-squared),
            # not a change of a numeric distribution.
            as_cat = name == label_column and logical in ("int", "bool", "string")
            self.accs[name] = _ColumnAcc(name, logical, k, max_categories, as_cat, track_unique)
        self.rows = 0

    def update(self, batch: pa.RecordBatch, keys: np.ndarray) -> None:
        self.rows += batch.num_rows
        for name, acc in self.accs.items():
            acc.update(batch.column(name), keys)

    def finish(self, label_column: str | None = None) -> Profile:
        return Profile(
            rows=self.rows,
            columns={n: a.finish() for n, a in self.accs.items()},
            sample_size=self.k,
            seed=self.seed,
            label_column=label_column,
        )


def profile_batches(
    batches: Iterable[pa.RecordBatch],
    schema: pa.Schema,
    *,
    sample_size: int,
    seed: int,
    label_column: str | None,
    class_sample_size: int,
    max_categories: int,
    row_offset: int,
    on_batch: Any = None,
) -> Profile:
    columns = list(schema.names)
    main = _ProfileAcc(schema, sample_size, seed, max_categories, columns, label_column)
    feature_cols = [
        c
        for c in columns
        if c != label_column and kind_of(logical_type(schema.field(c).type)) == "numeric"
    ]
    classes: dict[str, _ProfileAcc] = {}
    too_many_classes = False
    offset = row_offset
    for batch in batches:
        keys = row_keys(offset, batch.num_rows, seed)
        offset += batch.num_rows
        main.update(batch, keys)
        if on_batch is not None:
            on_batch(batch, keys)
        if label_column is None or too_many_classes or not feature_cols:
            continue
        labels = to_str_array(batch.column(label_column))
        for cls in pc.unique(labels).to_pylist():
            if cls is None:
                continue
            if cls not in classes:
                if len(classes) >= MAX_CLASSES:
                    too_many_classes, classes = True, {}
                    break
                classes[cls] = _ProfileAcc(
                    schema,
                    class_sample_size,
                    seed,
                    max_categories,
                    feature_cols,
                    track_unique=False,
                )
            mask = pc.equal(labels, cls).fill_null(False)
            sub = batch.select(feature_cols).filter(mask)
            classes[cls].update(sub, keys[mask.to_numpy(zero_copy_only=False)])
    prof = main.finish(label_column)
    if classes:
        prof = replace(prof, by_class={c: classes[c].finish() for c in sorted(classes)})
    return prof


def profile_dataset(
    data: Any,
    *,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    seed: int = 0,
    label_column: str | None = None,
    class_sample_size: int = DEFAULT_CLASS_SAMPLE_SIZE,
    max_categories: int = DEFAULT_MAX_CATEGORIES,
    row_offset: int = 0,
) -> Profile:
    """Profile a dataset (path, DataFrame or Arrow table) in one batched pass.

    ``row_offset`` is the index of this data's first row in a larger dataset; give it when profiling
    batches separately so that :meth:`Profile.merge` reproduces a single pass exactly.
    """
    if sample_size < 1 or class_sample_size < 1:
        raise BadInputError("sample sizes must be >= 1", hint="use the defaults")
    src = open_source(data)
    if label_column is not None and label_column not in src.schema.names:
        raise BadInputError(
            f"label column {label_column!r} is not in the dataset",
            hint=f"columns are {src.schema.names}",
        )
    return profile_batches(
        src.batches(),
        src.schema,
        sample_size=sample_size,
        seed=seed,
        label_column=label_column,
        class_sample_size=class_sample_size,
        max_categories=max_categories,
        row_offset=row_offset,
    )


# --- serialisation -------------------------------------------------------------------------------
# A small self-describing binary format instead of pickle (never unpickle untrusted bytes) or JSON
# (a 100k-value float sample per column would triple in size as text): magic, a length-prefixed
# canonical JSON header, then raw little-endian arrays the header points into, then a SHA-256 of
# everything before it so a corrupted cache entry is an error rather than a wrong verdict.


def _dump(p: Profile) -> bytes:
    arrays: list[bytes] = []
    offset = 0

    def put(a: np.ndarray, dtype: str) -> dict[str, int]:
        nonlocal offset
        raw = np.ascontiguousarray(a, dtype=dtype).tobytes()
        arrays.append(raw)
        ref = {"offset": offset, "length": len(a)}
        offset += len(raw)
        return ref

    def header(prof: Profile) -> dict[str, Any]:
        cols = []
        for c in prof.columns.values():
            entry: dict[str, Any] = {
                "name": c.name,
                "logical": c.logical,
                "rows": c.rows,
                "nulls": c.nulls,
                "overflow": c.overflow,
                "categories": c.categories,
            }
            if c.unique is not None:
                entry["unique"] = c.unique
            if c.numeric is not None:
                s = c.numeric
                entry["numeric"] = {
                    "count": s.count,
                    "min": _f(s.min),
                    "max": _f(s.max),
                    "total": s.total,
                    "total_sq": s.total_sq,
                    "sample": put(s.sample, "<f8"),
                    "keys": put(s.sample_keys, "<u8"),
                }
            cols.append(entry)
        return {
            "rows": prof.rows,
            "sample_size": prof.sample_size,
            "seed": prof.seed,
            "label_column": prof.label_column,
            "label_issue_rate": prof.label_issue_rate,
            **({"label_stats": prof.label_stats} if prof.label_stats is not None else {}),
            "columns": cols,
            "by_class": {k: header(v) for k, v in prof.by_class.items()},
        }

    head = {"format": "chainproof-profile", "version": PROFILE_FORMAT_VERSION, **header(p)}
    head_bytes = json.dumps(head, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    body = _MAGIC + struct.pack("<Q", len(head_bytes)) + head_bytes + b"".join(arrays)
    return body + hashlib.sha256(body).digest()


def _f(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _load(data: bytes) -> Profile:
    def bad(why: str) -> MalformedFileError:
        return MalformedFileError(
            f"profile bytes are malformed: {why}",
            hint="drop the cached profile and recompute it with profile_dataset()",
        )

    if not isinstance(data, bytes | bytearray | memoryview):
        raise BadInputError("Profile.from_bytes needs bytes", hint="pass the bytes of to_bytes()")
    data = bytes(data)
    n0 = len(_MAGIC)
    if len(data) < n0 + 8 + 32 or not data.startswith(_MAGIC):
        raise bad("not a chainproof profile (bad magic or too short)")
    body, digest = data[:-32], data[-32:]
    if hashlib.sha256(body).digest() != digest:
        raise bad("checksum mismatch (truncated or modified)")
    (hlen,) = struct.unpack("<Q", body[n0 : n0 + 8])
    if n0 + 8 + hlen > len(body):
        raise bad("header length runs past the end")
    try:
        head = json.loads(body[n0 + 8 : n0 + 8 + hlen])
    except ValueError as exc:
        raise bad(f"header is not JSON ({exc})") from exc
    blob = memoryview(body)[n0 + 8 + hlen :]
    if not isinstance(head, dict) or head.get("format") != "chainproof-profile":
        raise bad("header is not a chainproof profile header")
    if head.get("version") != PROFILE_FORMAT_VERSION:
        raise bad(f"unsupported profile version {head.get('version')!r}")

    def arr(ref: Any, dtype: str) -> np.ndarray:
        if not isinstance(ref, dict) or set(ref) != {"offset", "length"}:
            raise bad("array reference malformed")
        off, length = ref["offset"], ref["length"]
        if not (isinstance(off, int) and isinstance(length, int)) or off < 0 or length < 0:
            raise bad("array reference malformed")
        end = off + 8 * length
        if end > len(blob):
            raise bad("array runs past the end")
        return np.frombuffer(blob[off:end], dtype=dtype).astype(dtype[1:], copy=True)

    def build(h: Any) -> Profile:
        try:
            cols = {}
            for c in h["columns"]:
                num = None
                if c.get("numeric") is not None:
                    s = c["numeric"]
                    num = NumericSketch(
                        count=int(s["count"]),
                        min=float("nan") if s["min"] is None else float(s["min"]),
                        max=float("nan") if s["max"] is None else float(s["max"]),
                        total=float(s["total"]),
                        total_sq=float(s["total_sq"]),
                        sample=arr(s["sample"], "<f8"),
                        sample_keys=arr(s["keys"], "<u8"),
                    )
                cats = c["categories"]
                if cats is not None and not (
                    isinstance(cats, dict)
                    and all(isinstance(k, str) and isinstance(v, int) for k, v in cats.items())
                ):
                    raise bad(f"column {c['name']!r} category counts malformed")
                cols[str(c["name"])] = ColumnProfile(
                    name=str(c["name"]),
                    logical=str(c["logical"]),
                    rows=int(c["rows"]),
                    nulls=int(c["nulls"]),
                    numeric=num,
                    categories=cats,
                    overflow=bool(c["overflow"]),
                    unique=None if c.get("unique") is None else bool(c["unique"]),
                )
            return Profile(
                rows=int(h["rows"]),
                columns=cols,
                sample_size=int(h["sample_size"]),
                seed=int(h["seed"]),
                label_column=h["label_column"],
                by_class={str(k): build(v) for k, v in h["by_class"].items()},
                label_issue_rate=h["label_issue_rate"],
                label_stats=_stats(h.get("label_stats")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise bad(f"header field missing or mistyped ({exc!r})") from exc

    def _stats(x: Any) -> dict[str, Any] | None:
        if x is None:
            return None
        if not isinstance(x, dict):
            raise bad("label_stats must be a mapping")
        return x

    return build(head)


def iter_numeric_samples(p: Profile) -> Iterator[tuple[str, np.ndarray]]:
    for name, c in p.columns.items():
        if c.numeric is not None:
            yield name, c.numeric.sample
