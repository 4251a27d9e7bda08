from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv
import pyarrow.parquet as pq
import pytest
from validate_helpers import make_table

from chainproof.errors import BadInputError, MalformedFileError
from chainproof.validate import Profile, profile_dataset


def _same(a: Profile, b: Profile) -> None:
    assert a.to_bytes() == b.to_bytes()


def test_batched_file_equals_in_memory(tmp_path: Path) -> None:
    df = make_table(3, n=30_000)
    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path, row_group_size=4_000)
    mem = profile_dataset(df, sample_size=5_000, label_column="cat1")
    disk = profile_dataset(path, sample_size=5_000, label_column="cat1")
    _same(mem, disk)
    assert disk.columns["num3"].numeric is not None
    assert len(disk.columns["num3"].numeric.sample) == 5_000


def test_merge_of_offset_batches_equals_one_pass() -> None:
    df = make_table(4, n=9_000)
    whole = profile_dataset(df, sample_size=1_000)
    parts = [
        profile_dataset(df.iloc[i : i + 3_000], sample_size=1_000, row_offset=i)
        for i in range(0, 9_000, 3_000)
    ]
    merged = parts[0].merge(parts[1]).merge(parts[2])
    for name, col in whole.columns.items():
        other = merged.columns[name]
        assert (col.rows, col.nulls, col.categories) == (other.rows, other.nulls, other.categories)
        if col.numeric is not None:
            assert other.numeric is not None
            # Samples and counts are exact; sums differ only by float rounding order.
            assert np.array_equal(col.numeric.sample, other.numeric.sample)
            assert np.array_equal(col.numeric.sample_keys, other.numeric.sample_keys)
            assert col.numeric.std == pytest.approx(other.numeric.std, rel=1e-12)
    assert merged.columns["cat0"].categories == whole.columns["cat0"].categories


def test_merge_refuses_mismatched_profiles() -> None:
    df = make_table(5, n=500)
    with pytest.raises(BadInputError):
        profile_dataset(df, sample_size=100).merge(profile_dataset(df, sample_size=200))
    with pytest.raises(BadInputError):
        profile_dataset(df).merge(profile_dataset(df.drop(columns=["num0"])))


def test_bytes_roundtrip_and_tamper_detection() -> None:
    p = profile_dataset(make_table(6, n=2_000), label_column="cat2")
    raw = p.to_bytes()
    q = Profile.from_bytes(raw)
    assert q.to_bytes() == raw
    assert np.array_equal(q.columns["num1"].numeric.sample, p.columns["num1"].numeric.sample)  # type: ignore[union-attr]
    assert set(q.by_class) == {"c2_0", "c2_1", "c2_2", "c2_3"}
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 1
    for bad in (bytes(flipped), raw[:-1], raw[:10], b"PK\x03\x04" + raw[4:], b""):
        with pytest.raises(MalformedFileError):
            Profile.from_bytes(bad)


def test_profile_is_deterministic_and_exact_counts() -> None:
    df = make_table(7, n=5_000)
    a, b = profile_dataset(df), profile_dataset(df)
    _same(a, b)
    c = a.columns["num2"]
    assert c.numeric is not None and c.numeric.count == 5_000
    assert c.numeric.mean == pytest.approx(df["num2"].mean())
    assert a.columns["cat0"].categories == df["cat0"].value_counts().sort_index().to_dict()


def test_high_cardinality_overflow() -> None:
    df = make_table(8, n=3_000).assign(uid=[f"u{i}" for i in range(3_000)])
    p = profile_dataset(df, max_categories=100)
    assert p.columns["uid"].overflow and p.columns["uid"].categories is None


def test_csv_stream_equals_in_memory(tmp_path: Path) -> None:
    df = make_table(9, n=40_000)
    path = tmp_path / "d.csv"
    df.to_csv(path, index=False)
    from_csv = profile_dataset(path, sample_size=2_000)
    in_mem = profile_dataset(pa.csv.read_csv(path), sample_size=2_000)
    _same(from_csv, in_mem)
