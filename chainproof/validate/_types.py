"""Mapping Arrow types onto the few logical types the checks reason about."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

LOGICAL_TYPES = ("int", "float", "bool", "string", "timestamp", "date", "other")
NUMERIC_LOGICAL = frozenset({"int", "float", "timestamp", "date"})
CATEGORICAL_LOGICAL = frozenset({"bool", "string"})


def logical_type(t: pa.DataType) -> str:
    if pa.types.is_dictionary(t):
        return logical_type(t.value_type)
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "float"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_date(t):
        return "date"
    return "other"


def kind_of(logical: str) -> str:
    if logical in NUMERIC_LOGICAL:
        return "numeric"
    if logical in CATEGORICAL_LOGICAL:
        return "categorical"
    return "other"


def compatible(expected: str, actual: str) -> bool:
    """Whether data of logical type ``actual`` satisfies a contract saying ``expected``.

    Only the lossless widening int -> float is accepted: CSV readers and pandas turn an integer
    column with a missing value into floats, which is not a change of meaning.
    """
    return expected == actual or (expected == "float" and actual == "int")


def to_float(arr: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(values, valid)``: float64 values (garbage where invalid) and a validity mask.

    NaN and +-inf count as missing: they cannot be placed in a distribution and pandas uses NaN for
    missing floats.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    t = arr.type
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        arr = arr.cast(pa.int64()) if pa.types.is_timestamp(t) else arr.cast(pa.int32())
    if not pa.types.is_float64(arr.type):
        arr = pc.cast(arr, pa.float64(), safe=False)
    values = arr.fill_null(0.0).to_numpy(zero_copy_only=False)
    valid = np.isfinite(values)
    if arr.null_count:
        valid &= arr.is_valid().to_numpy(zero_copy_only=False)
    return values, valid


def to_str_array(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Categorical values as strings (bool as ``true``/``false``); nulls stay null."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if pa.types.is_string(arr.type):
        return arr
    return pc.cast(arr, pa.string())
