from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from chainproof.errors import BadInputError, NotFoundError, StepFailedError
from chainproof.validate import compare_feature_definitions

OLD = """
import pandas as pd

def transform(df: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame()
    out["weight_kg"] = df["weight"]
    out["margin"] = df["revenue"] - df["cost"]
    out["age_band"] = pd.cut(df["age"], [0, 18, 65, 200], labels=["minor", "adult", "senior"]
                             ).astype(str)
    out["ratio"] = df["revenue"] / df["cost"]
    out["legacy"] = 1
    return out
"""

REFACTORED = """
import numpy as np
import pandas as pd

def _band(age):
    return np.select([age <= 18, age <= 65], ["minor", "adult"], default="senior")

def transform(df):
    rev, cost = df["revenue"].to_numpy(), df["cost"].to_numpy()
    return pd.DataFrame({
        "weight_kg": df["weight"].astype(float),
        "margin": -(cost - rev),
        "age_band": _band(df["age"].to_numpy()),
        "ratio": rev * (1.0 / cost),
        "legacy": np.ones(len(df), dtype=np.int64),
    })
"""

CHANGED = """
import pandas as pd

def transform(df):
    out = pd.DataFrame()
    out["weight_kg"] = df["weight"] * 1000          # silently grams now
    out["margin"] = df["cost"] - df["revenue"]       # sign flipped
    out["age_band"] = pd.cut(df["age"], [0, 21, 65, 200], labels=["minor", "adult", "senior"]
                             ).astype(str)            # edge moved 18 -> 21
    out["ratio"] = df["revenue"] / df["cost"]
    out["new_feature"] = df["age"] * 2
    return out
"""


def _probe() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 2_000
    return pd.DataFrame(
        {
            "weight": rng.normal(70, 12, n),
            "revenue": rng.gamma(5, 20, n),
            "cost": rng.gamma(5, 15, n) + 1,
            "age": rng.integers(1, 100, n).astype(float),
        }
    )


def _write(tmp: Path, name: str, code: str) -> Path:
    p = tmp / name
    p.write_text(textwrap.dedent(code))
    return p


def test_pure_refactor_reports_no_change(tmp_path: Path) -> None:
    rep = compare_feature_definitions(
        _write(tmp_path, "old.py", OLD), _write(tmp_path, "new.py", REFACTORED), _probe()
    )
    assert rep.passed, rep.to_dict()
    assert rep.changed == ()
    assert {c.details.get("equality") for c in rep.columns} <= {"exact", "approx"}


def test_meaning_changes_are_named(tmp_path: Path) -> None:
    rep = compare_feature_definitions(
        _write(tmp_path, "old.py", OLD), _write(tmp_path, "new.py", CHANGED), _probe()
    )
    by = {c.column: c for c in rep.columns}
    assert not rep.passed
    assert "scale" in by["weight_kg"].kinds
    assert by["weight_kg"].details["slope"] == pytest.approx(1000)
    assert "sign" in by["margin"].kinds
    assert by["margin"].details["correlation"] == pytest.approx(-1)
    assert "bucket_edges" in by["age_band"].kinds
    assert by["age_band"].details["bucket_source"] == "age"
    assert by["age_band"].details["old_edges"] != by["age_band"].details["new_edges"]
    assert by["ratio"].status == "same"
    assert by["legacy"].status == "removed"
    assert by["new_feature"].status == "added"
    d = rep.to_dict()
    assert d["changed"] == ["age_band", "legacy", "margin", "new_feature", "weight_kg"]
    sev = {f.column: f.severity for f in rep.findings}
    assert sev == {
        "age_band": "fail",
        "legacy": "fail",
        "margin": "fail",
        "weight_kg": "fail",
        "new_feature": "warn",
    }
    assert rep.severity == "fail" and d["severity"] == "fail"
    assert all(f["check"] == "feature_meaning" for f in d["findings"])
    assert "<svg" not in rep.to_html() and "weight_kg" in rep.to_html()


def test_failing_and_hanging_definitions(tmp_path: Path) -> None:
    old = _write(tmp_path, "old.py", OLD)
    boom = _write(tmp_path, "boom.py", "def transform(df):\n    raise RuntimeError('kaput')\n")
    with pytest.raises(StepFailedError, match="kaput"):
        compare_feature_definitions(old, boom, _probe())
    hang = _write(tmp_path, "hang.py", "def transform(df):\n    while True:\n        pass\n")
    with pytest.raises(StepFailedError, match="did not finish"):
        compare_feature_definitions(old, hang, _probe(), timeout=3)
    nofn = _write(tmp_path, "nofn.py", "x = 1\n")
    with pytest.raises(StepFailedError, match="no callable transform"):
        compare_feature_definitions(old, nofn, _probe())
    with pytest.raises(NotFoundError):
        compare_feature_definitions(old, tmp_path / "missing.py", _probe())
    with pytest.raises(BadInputError):
        compare_feature_definitions(old, old, _probe().iloc[:0])


def test_user_code_cannot_touch_this_process(tmp_path: Path) -> None:
    evil = _write(
        tmp_path,
        "evil.py",
        "import numpy as np\nnp.mean = lambda *a, **k: 42\n"
        "def transform(df):\n    return df[['age']]\n",
    )
    compare_feature_definitions(evil, evil, _probe())
    assert np.mean([1.0, 3.0]) == 2.0
