"""Real models made here (scikit-learn, numpy, pandas, PyTorch) scan clean and load safely."""

from __future__ import annotations

import collections
import os
import pickle
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from chainproof.errors import MalformedFileError, ScanFindingError
from chainproof.scan import safe_load, scan_path


def _sklearn_models() -> list[tuple[str, Any]]:
    from sklearn.compose import ColumnTransformer
    from sklearn.decomposition import PCA
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
    from sklearn.svm import SVC

    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    df = pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": ["x", "y", "z", "w"] * 20})
    return [
        ("pipeline", make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)),
        ("forest", RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y)),
        ("gb", GradientBoostingClassifier(n_estimators=3).fit(X, y)),
        ("hgb", HistGradientBoostingClassifier(max_iter=3).fit(X, y)),
        ("knn", KNeighborsClassifier().fit(X, y)),
        ("svc", SVC().fit(X, y)),
        ("pca", PCA(2).fit(X)),
        ("grid", GridSearchCV(LogisticRegression(), {"C": [1.0, 2.0]}, cv=2).fit(X, y)),
        (
            "columns",
            make_pipeline(
                ColumnTransformer(
                    [("n", StandardScaler(), ["a", "b"]), ("c", OneHotEncoder(), ["c"])]
                ),
                LogisticRegression(),
            ).fit(df, y),
        ),
        (
            "tfidf",
            make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(
                ["alpha beta", "beta gamma", "gamma delta", "delta alpha"], [0, 1, 0, 1]
            ),
        ),
        ("log1p", FunctionTransformer(np.log1p).fit(np.abs(X))),
    ]


def _data_objects() -> list[tuple[str, Any]]:
    df = pd.DataFrame(
        {
            "x": [1.0, 2.5],
            "s": ["a", "b"],
            "c": pd.Categorical(["p", "q"]),
            "t": pd.date_range("2024-01-01", periods=2, tz="UTC"),
        }
    )
    return [
        ("frame", df),
        ("indexed", df.set_index("t")),
        ("series", pd.Series([1, 2], name="n")),
        ("multi", pd.MultiIndex.from_tuples([(1, "a"), (2, "b")])),
        ("array", np.arange(12, dtype=np.float32).reshape(3, 4)),
        ("structured", np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8")])),
        ("objects", np.array([1, "x", None], dtype=object)),
        ("scalars", [np.float64(1.5), np.int32(3), np.datetime64("2024-01-01")]),
        ("rng", [np.random.RandomState(0), np.random.default_rng(1)]),
        ("sparse", [sp.csr_matrix(np.eye(3)), sp.coo_matrix(np.eye(2)), sp.csc_array(np.eye(2))]),
        ("masked", np.ma.masked_array([1, 2], [False, True])),
        ("builtins", {"s": {1}, "o": collections.OrderedDict(a=1), "c": 1j, "r": range(3)}),
    ]


OBJECTS = _sklearn_models() + _data_objects()


@pytest.mark.parametrize(("label", "obj"), OBJECTS, ids=[o[0] for o in OBJECTS])
def test_real_objects_scan_clean_in_pickle_and_joblib(tmp_path: Path, label: str, obj: Any) -> None:
    paths = []
    for protocol in (2, 4, 5):
        p = tmp_path / f"{label}.p{protocol}.pkl"
        p.write_bytes(pickle.dumps(obj, protocol=protocol))
        paths.append(p)
    for compress in (0, 3):
        p = tmp_path / f"{label}.c{compress}.joblib"
        joblib.dump(obj, p, compress=compress)
        paths.append(p)
    for p in paths:
        result = scan_path(p).files[0]
        assert result.verdict == "clean", (p.name, result.findings, result.error)
        assert result.findings == ()


def test_safe_load_round_trips_clean_pickles_and_joblib(tmp_path: Path) -> None:
    model = _sklearn_models()[0][1]
    p = tmp_path / "m.joblib"
    joblib.dump({"model": model, "w": np.arange(5.0)}, p)
    loaded = safe_load(p)
    assert np.array_equal(loaded["w"], np.arange(5.0))
    assert type(loaded["model"]).__name__ == "Pipeline"
    q = tmp_path / "m.pkl"
    q.write_bytes(pickle.dumps(model, protocol=4))
    assert type(safe_load(q)).__name__ == "Pipeline"
    z = tmp_path / "m.z.joblib"
    joblib.dump(np.arange(3), z, compress=3)
    assert safe_load(z).tolist() == [0, 1, 2]


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned",))


def test_safe_load_refuses_malicious_and_unknown(tmp_path: Path) -> None:
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps({"x": _Evil()}))  # dumped, never loaded
    with pytest.raises(ScanFindingError) as err:
        safe_load(p)
    assert err.value.problems and "system" in err.value.problems[0]
    t = tmp_path / "notes.txt"
    t.write_text("hello")
    with pytest.raises(MalformedFileError):
        safe_load(t)


def test_safe_load_numpy_and_safetensors(tmp_path: Path) -> None:
    a = tmp_path / "a.npy"
    np.save(a, np.arange(4))
    assert safe_load(a).tolist() == [0, 1, 2, 3]
    o = tmp_path / "o.npy"
    np.save(o, np.array([1, "x"], dtype=object), allow_pickle=True)
    with pytest.raises(MalformedFileError):
        safe_load(o)  # clean, but numpy without pickle cannot load object arrays
    st = pytest.importorskip("safetensors.numpy")
    s = tmp_path / "w.safetensors"
    st.save_file({"w": np.ones((2, 3), dtype=np.float32)}, str(s))
    assert scan_path(s).files[0].verdict == "clean"
    assert safe_load(s)["w"].shape == (2, 3)
