from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from validate_helpers import DRIFTED, make_table

from chainproof.validate import (
    ColumnThresholds,
    DriftConfig,
    benjamini_hochberg,
    detect_drift,
    profile_dataset,
)


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_injected_drifts_caught_and_clean_columns_quiet(seed: int) -> None:
    ref = make_table(seed)
    cur = make_table(seed + 100, drift=True)
    rep = detect_drift(cur, ref)
    assert set(rep.flagged) == DRIFTED
    reasons = {c.column: " ".join(c.reasons) for c in rep.columns}
    assert "missing_rate" in reasons["num2"]
    assert "chi2" in reasons["cat0"]


@pytest.mark.parametrize("seed", [21, 22, 23, 24])
def test_no_false_alarms_on_clean_versions(seed: int) -> None:
    rep = detect_drift(make_table(seed + 1), make_table(seed))
    assert rep.passed, rep.flagged
    assert rep.n_tests == 2 * make_table(0, n=10).shape[1]


def test_large_n_trivial_shift_not_flagged() -> None:
    # 200k rows: a 0.02 sd shift is "significant" but far below the effect threshold.
    rng = np.random.default_rng(5)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 200_000)})
    cur = pd.DataFrame({"x": rng.normal(0.02, 1, 200_000)})
    rep = detect_drift(cur, ref)
    test = rep.columns[0].tests[0]
    assert test.significant and not test.large_effect
    assert rep.passed


@pytest.mark.parametrize("share", [0.01, 0.02])
def test_new_category_flagged_regardless_of_pvalue(share: float) -> None:
    rng = np.random.default_rng(9)
    n = 5_000
    ref = pd.DataFrame({"c": rng.choice(["a", "b", "c"], n)})
    cur = ref.copy()
    cur.loc[: int(n * share) - 1, "c"] = "new"
    rep = detect_drift(cur, ref)
    col = rep.columns[0]
    assert col.flagged and "new" in col.new_categories
    assert col.new_categories["new"] == pytest.approx(share)


def test_vanished_category_and_type_change_and_missing_column() -> None:
    rng = np.random.default_rng(2)
    ref = pd.DataFrame(
        {"c": rng.choice(["a", "b", "c"], 3_000), "x": rng.random(3_000), "y": rng.random(3_000)}
    )
    cur = ref.assign(c=ref["c"].replace("c", "b"), x=ref["x"].astype(str)).drop(columns=["y"])
    rep = detect_drift(cur, ref)
    cols = {c.column: c for c in rep.columns}
    assert "c" in cols["c"].vanished_categories
    assert any("type changed" in r for r in cols["x"].reasons)
    assert cols["y"].reasons == ("column missing in current",)
    assert set(rep.flagged) == {"c", "x", "y"}


def test_per_column_thresholds() -> None:
    ref, cur = make_table(1), make_table(2, drift=True)
    cfg = DriftConfig(
        per_column={
            "num0": ColumnThresholds(wasserstein=1.0, psi=5.0),
            "cat0": ColumnThresholds(ignore=True),
        }
    )
    rep = detect_drift(cur, ref, cfg)
    assert "num0" not in rep.flagged and "cat0" not in {c.column for c in rep.columns}
    assert "num1" in rep.flagged


def test_reference_profile_roundtrip_gives_same_report() -> None:
    ref, cur = make_table(1, n=5_000), make_table(2, n=5_000, drift=True)
    prof = profile_dataset(ref)
    a = detect_drift(cur, prof).to_dict()
    b = detect_drift(cur, type(prof).from_bytes(prof.to_bytes())).to_dict()
    c = detect_drift(cur, ref).to_dict()
    assert a == b == c


def test_benjamini_hochberg_matches_definition() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.5])
    q = benjamini_hochberg(p)
    # sorted p: .005 .01 .03 .04 .5 -> p*m/rank: .025 .025 .05 .05 .5 (monotone from the top)
    assert np.allclose(q, [0.025, 0.05, 0.05, 0.025, 0.5])
    assert benjamini_hochberg(np.array([])).size == 0


def test_empty_current_dataset() -> None:
    ref = make_table(1, n=1_000)
    rep = detect_drift(ref.iloc[:0], ref)
    # No values: distributions untestable, every column is 100 % rows-less, nothing crashes.
    assert rep.current_rows == 0


def test_integer_label_shift_is_a_class_share_test() -> None:
    rng = np.random.default_rng(3)
    n = 20_000
    ref = pd.DataFrame({"x": rng.normal(0, 1, n), "y": rng.choice([0, 1, 2], n, p=[0.5, 0.3, 0.2])})
    cur = ref.assign(y=rng.choice([0, 1, 2], n, p=[0.47, 0.33, 0.2]))
    rep = detect_drift(cur, ref, label_column="y")
    col = {c.column: c for c in rep.columns}["y"]
    assert col.role == "label" and col.kind == "categorical"
    assert col.tests[0].test == "chi2"
    # 3 points on the label is flagged (label L-inf threshold 2 points), not on a feature.
    assert col.flagged
    assert not detect_drift(cur.rename(columns={"y": "z"}), ref.rename(columns={"y": "z"})).flagged
