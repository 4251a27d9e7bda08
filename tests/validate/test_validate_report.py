from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from validate_helpers import DRIFTED, make_table, shared_vectors

from chainproof.errors import (
    BadInputError,
    MalformedFileError,
    NotFoundError,
    ValidationFailedError,
)
from chainproof.validate import (
    LabelConfig,
    Profile,
    ValidationConfig,
    infer_schema,
    profile_reference,
    validate_dataset,
)


def test_end_to_end_gate_and_report(tmp_path: Path) -> None:
    ref = make_table(1, n=10_000)
    cur = make_table(2, n=10_000, drift=True)
    # 50 % range tolerance: the extremes of unbounded normal columns move between 10k samples.
    schema = infer_schema(ref, tolerance=0.5)
    path = tmp_path / "schema.yaml"
    path.write_text(schema.to_yaml())
    rep = validate_dataset(cur, reference=ref, schema=path, label_column="cat2")
    assert not rep.passed
    assert rep.drift is not None and set(rep.drift.flagged) == DRIFTED
    assert rep.schema is not None
    assert "num2" in {f.column for f in rep.schema.findings}
    with pytest.raises(ValidationFailedError) as err:
        rep.raise_for_failure()
    assert err.value.exit_code == 1 and len(err.value.problems) == len(rep.problems)
    doc = rep.to_dict()
    assert json.loads(json.dumps(doc, allow_nan=False)) == doc
    ok = validate_dataset(make_table(3, n=10_000), reference=ref, schema=schema)
    assert ok.passed, ok.problems
    ok.raise_for_failure()


def test_report_is_deterministic_and_batched_equals_in_memory(tmp_path: Path) -> None:
    ref = make_table(4, n=12_000)
    cur = make_table(5, n=12_000, drift=True)
    rp, cp = tmp_path / "ref.parquet", tmp_path / "cur.csv"
    pq.write_table(pa.Table.from_pandas(ref, preserve_index=False), rp, row_group_size=5_000)
    cur.to_csv(cp, index=False)
    # Small batches and samples: many batches, and the sample is full after the first ones.
    cfg = ValidationConfig(
        sample_size=3_000, batch_rows=2_500, labels=LabelConfig(model="logistic")
    )
    when = "2026-01-01T00:00:00Z"
    a = validate_dataset(
        cur, reference=ref, label_column="cat1", config=cfg, created_at=when
    ).to_dict()
    b = validate_dataset(
        cp, reference=rp, label_column="cat1", config=cfg, created_at=when
    ).to_dict()
    c = validate_dataset(
        pa.Table.from_pandas(cur),
        reference=profile_reference(rp, label_column="cat1", config=cfg),
        label_column="cat1",
        config=cfg,
        created_at=when,
    ).to_dict()
    dumps = [json.dumps(x, sort_keys=True) for x in (a, b, c)]
    assert dumps[0] == dumps[1] == dumps[2]


def test_cached_profile_keeps_label_rate() -> None:
    ref = make_table(6, n=3_000)
    prof = profile_reference(ref, label_column="cat0")
    again = Profile.from_bytes(prof.to_bytes())
    assert again.label_issue_rate == prof.label_issue_rate is not None


def test_html_is_self_contained_and_has_no_data_rows() -> None:
    ref = make_table(7, n=5_000)
    cur = make_table(8, n=5_000, drift=True)
    cur["secret"] = [f"SECRET-{i}" for i in range(len(cur))]
    ref["secret"] = [f"SECRET-{i}" for i in range(len(ref))]
    fast = ValidationConfig(labels=LabelConfig(model="logistic"))
    html = validate_dataset(cur, reference=ref, label_column="cat2", config=fast).to_html()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html and "<style>" in html
    assert "<script" not in html.lower()
    assert not re.search(r"(src|href)\s*=\s*\"?https?:", html)
    assert "SECRET-1234" not in html
    # Flagged columns come first.
    first = html.index("<h3>")
    assert any(html[first:].startswith(f"<h3>{c} ") for c in sorted(DRIFTED))


def test_html_escapes_hostile_names() -> None:
    ref = make_table(9, n=2_000)
    ref["<script>alert(1)</script>"] = "x"
    cur = ref.copy()
    cur["<script>alert(1)</script>"] = "<img src=x onerror=alert(1)>"
    html = validate_dataset(cur, reference=ref).to_html()
    assert "<script>" not in html and "<img" not in html


def test_non_utf8_csv_is_a_clear_error(tmp_path: Path) -> None:
    p = tmp_path / "latin1.csv"
    p.write_bytes("name,x\nJosé,1\nZoë,2\n".encode("latin-1"))
    with pytest.raises(MalformedFileError, match="UTF-8") as err:
        validate_dataset(p)
    assert err.value.hint and "UTF-8" in err.value.hint


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("ragged.csv", b"a,b\n1,2\n3\n4,5,6\n"),
        ("empty.csv", b""),
        ("garbage.parquet", b"PAR1 this is not parquet at all PAR1"),
        ("binary.csv", bytes(range(256)) * 8),
    ],
)
def test_malformed_files(tmp_path: Path, name: str, content: bytes) -> None:
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(MalformedFileError):
        validate_dataset(p)


def test_type_change_mid_csv_is_a_clear_error(tmp_path: Path) -> None:
    p = tmp_path / "late.csv"
    lines = ["a,b"] + [f"{i},{i}" for i in range(400_000)] + ["oops,1"]
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(MalformedFileError):
        validate_dataset(p)


def test_missing_and_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        validate_dataset(tmp_path / "nope.parquet")
    with pytest.raises(BadInputError):
        validate_dataset(object())
    with pytest.raises(BadInputError):
        validate_dataset(make_table(1, n=10), label_column="nope")
    with pytest.raises(BadInputError):
        validate_dataset(make_table(1, n=10), key_columns=["nope"])


def test_empty_current_dataset_fails_closed() -> None:
    ref = make_table(1, n=2_000)
    rep = validate_dataset(ref.iloc[:0], reference=ref, label_column="cat0")
    assert not rep.passed and "dataset has no rows" in rep.problems
    rep.to_html()


def test_column_changes_type_between_versions() -> None:
    ref = make_table(1, n=2_000)
    cur = ref.assign(num3=ref["num3"].map(lambda v: f"{v:.1f}kg"))
    rep = validate_dataset(cur, reference=ref, schema=infer_schema(ref))
    assert rep.drift is not None and "num3" in rep.drift.flagged
    assert rep.schema is not None
    assert ("num3", "type_changed") in {(f.column, f.rule) for f in rep.schema.findings}


def test_key_uniqueness_without_schema() -> None:
    df = make_table(1, n=1_000).assign(id=np.arange(1_000))
    assert validate_dataset(df, key_columns=["id"]).passed
    df.loc[5, "id"] = 4
    rep = validate_dataset(df, key_columns=["id"])
    assert rep.schema is not None and rep.schema.findings[0].row_ids == (5,)


def test_shared_vectors_helper_locates_or_skips() -> None:
    path = shared_vectors()
    assert path.is_dir()


def test_polars_input_matches_pandas() -> None:
    pl = pytest.importorskip("polars")
    df = make_table(10, n=3_000)
    a = validate_dataset(df, reference=df).to_dict()
    b = validate_dataset(pl.from_pandas(df), reference=df).to_dict()
    assert a == b


def test_each_report_renders_on_its_own() -> None:
    from chainproof.validate import check_schema, detect_drift, find_label_issues

    ref, cur = make_table(1, n=2_000), make_table(2, n=2_000, drift=True)
    pages = [
        detect_drift(cur, ref).to_html(),
        check_schema(cur, infer_schema(ref)).to_html(),
        find_label_issues(cur, "cat2", config=LabelConfig(model="logistic")).to_html(),
    ]
    for page in pages:
        assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    assert "FAILED" in pages[0] and "num0" in pages[0]
