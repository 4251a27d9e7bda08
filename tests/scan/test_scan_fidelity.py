"""Differential test: the static walker resolves exactly the globals the real unpickler looks up.

The real (C) unpickler runs on pickles made here from trusted objects, with a ``find_class`` that
records each (module, name) and returns an inert stub class, so nothing real is ever called.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scan_asm as a

from chainproof.scan import allowlist_from_yaml, scan_path

#: An allowlist that allows nothing: every global reference becomes a finding we can compare.
NOTHING = allowlist_from_yaml("version: nothing\nexact: []\n")


class _Stub:
    def __new__(cls, *args: Any, **kwargs: Any) -> _Stub:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass

    def add(self, value: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> _Stub:
        return _Stub()


class _Recorder(pickle.Unpickler):
    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.seen: set[tuple[str, str]] = set()

    def find_class(self, module: str, name: str) -> Any:
        self.seen.add((module, name))
        return type(name.replace(".", "_"), (_Stub,), {})

    def persistent_load(self, pid: Any) -> Any:
        return _Stub()


def _objects() -> list[Any]:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = np.arange(40, dtype=float).reshape(20, 2)
    y = [0, 1] * 10
    return [
        make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y),
        RandomForestClassifier(n_estimators=2, random_state=0).fit(X, y),
        pd.DataFrame({"a": [1.0, 2.0], "s": ["x", "y"], "t": pd.date_range("2024", periods=2)}),
        {"arr": np.arange(6).reshape(2, 3), "set": {1, 2}, "c": 3j, "r": np.random.RandomState(0)},
    ]


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_walker_resolves_the_same_globals_as_the_unpickler(tmp_path: Path, protocol: int) -> None:
    for i, obj in enumerate(_objects()):
        data = pickle.dumps(obj, protocol=protocol)
        rec = _Recorder(data)
        rec.load()
        p = tmp_path / f"o{i}.pkl"
        p.write_bytes(data)
        result = scan_path(p, allowlist=NOTHING).files[0]
        ours = {(f.module, f.name) for f in result.findings}
        # pickle maps Python 2 names before find_class for protocol < 3; so does the walker.
        theirs = set()
        for m, n in rec.seen:
            if protocol < 3:
                from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING

                m, n = NAME_MAPPING.get((m, n), (IMPORT_MAPPING.get(m, m), n))
            theirs.add((m, n))
        assert ours == theirs, (protocol, i, ours ^ theirs)


def test_memo_trick_resolution_matches_the_unpickler(tmp_path: Path) -> None:
    body = (
        a.sbu("nothing")
        + a.MEMOIZE
        + a.sbu("os")
        + a.MEMOIZE
        + a.sbu("system")
        + a.MEMOIZE
        + a.POP
        + a.POP
        + a.POP
        + a.binget(1)
        + a.binget(2)
        + b"\x93"
        + a.sbu("x")
        + a.TUPLE1
        + a.REDUCE
        + a.STOP
    )
    data = a.proto(4) + body
    rec = _Recorder(data)
    rec.load()
    p = tmp_path / "m.pkl"
    p.write_bytes(data)
    assert {
        (f.module, f.name) for f in scan_path(p, allowlist=NOTHING).files[0].findings
    } == rec.seen
