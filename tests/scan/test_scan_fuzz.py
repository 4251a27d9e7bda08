"""Mutated real pickles and containers: the scanner answers with a verdict, never an exception."""

from __future__ import annotations

import io
import pickle
import random
import zipfile
from pathlib import Path

import numpy as np
import scan_asm as a

from chainproof.scan import scan_path


def _seeds() -> list[bytes]:
    from sklearn.linear_model import LogisticRegression

    X = np.arange(20, dtype=float).reshape(10, 2)
    model = LogisticRegression().fit(X, [0, 1] * 5)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"w": [1.0, 2.0]}, protocol=2))
        zf.writestr("archive/data/0", b"\x80\x04" + bytes(64))
    return [
        pickle.dumps(model, protocol=2),
        pickle.dumps(model, protocol=5),
        pickle.dumps({"a": "é", "b": (1, 2)}, protocol=0),
        a.call1("os", "system", "echo"),
        buf.getvalue(),
    ]


def test_mutations_never_crash(tmp_path: Path) -> None:
    rng = random.Random(1234)
    p = tmp_path / "m.bin"
    for seed in _seeds():
        for _ in range(40):
            data = bytearray(seed)
            for _ in range(rng.randint(1, 4)):
                kind = rng.random()
                i = rng.randrange(len(data))
                if kind < 0.5:
                    data[i] = rng.randrange(256)
                elif kind < 0.75:
                    del data[i : i + rng.randint(1, 8)]
                else:
                    data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            p.write_bytes(bytes(data))
            result = scan_path(p).files[0]
            assert result.verdict in (
                "clean",
                "malicious",
                "malformed",
                "unknown",
                "not_inspectable",
            )
            if result.verdict != "clean" and result.verdict != "malicious":
                assert result.error


def test_invalid_utf8_in_short_binunicode(tmp_path: Path) -> None:
    p = tmp_path / "u.pkl"
    p.write_bytes(a.proto(4) + b"\x8c\x02\xff\xfe" + a.STOP)
    assert scan_path(p).files[0].verdict == "malformed"
