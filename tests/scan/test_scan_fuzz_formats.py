"""Mutated ONNX, GGUF, HDF5, Keras and 7z files get a verdict, never an exception; mutated pickles
given to safe_load's restricted unpickler (scan bypassed) raise only chainproof errors."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from chainproof.errors import ChainproofError
from chainproof.scan import FileResult, safe_load, scan_path

onnx = pytest.importorskip("onnx")
h5py = pytest.importorskip("h5py")
gguf = pytest.importorskip("gguf")
py7zr = pytest.importorskip("py7zr")

VERDICTS = {"clean", "malicious", "malformed", "unknown", "not_inspectable"}


def _mutate(rng: random.Random, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(rng.randint(1, 6)):
        i = rng.randrange(len(data))
        r = rng.random()
        if r < 0.5:
            data[i] = rng.randrange(256)
        elif r < 0.75:
            del data[i : i + rng.randint(1, 16)]
        else:
            data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    return bytes(data)


def _seeds(tmp: Path) -> dict[str, bytes]:
    from onnx import TensorProto, helper

    t = helper.make_tensor("w", TensorProto.FLOAT, [2], [1.0, 2.0])
    g = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], [t])
    out = {"onnx": helper.make_model(g).SerializeToString()}
    w = gguf.GGUFWriter(tmp / "s.gguf", "llama")
    w.add_chat_template("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    w.add_tensor("w", np.ones((2, 2), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    out["gguf"] = (tmp / "s.gguf").read_bytes()
    with h5py.File(tmp / "s.h5", "w") as f:
        f.create_dataset("a/b", data=np.arange(6))
        f.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": {}})
    out["h5"] = (tmp / "s.h5").read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("metadata.json", "{}")
        z.writestr("config.json", json.dumps({"module": "keras", "class_name": "Sequential"}))
        z.writestr("model.weights.h5", out["h5"])
    out["keras"] = buf.getvalue()
    with py7zr.SevenZipFile(tmp / "s.7z", "w") as z:
        z.writestr(pickle.dumps({"a": 1}), "m.pkl")
    out["7z"] = (tmp / "s.7z").read_bytes()
    return out


def test_mutated_format_files_get_a_verdict(tmp_path: Path) -> None:
    rng = random.Random(4321)
    for kind, seed in _seeds(tmp_path).items():
        p = tmp_path / f"m.{kind}"
        for _ in range(25):
            p.write_bytes(_mutate(rng, seed))
            r = scan_path(p).files[0]
            assert r.verdict in VERDICTS, (kind, r)
            if r.verdict not in ("clean", "malicious"):
                assert r.error


def test_mutated_pickles_in_the_restricted_unpickler_raise_only_chainproof_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.linear_model import LogisticRegression

    module = importlib.import_module("chainproof.scan.safe_load")

    def fake_scan(path: Path, *, allowlist: Any, display: str | None = None) -> FileResult:
        return FileResult(str(path), "pickle", "clean")

    monkeypatch.setattr(module, "scan_file", fake_scan)
    model = LogisticRegression().fit(np.arange(20.0).reshape(10, 2), [0, 1] * 5)
    rng = random.Random(99)
    p = tmp_path / "m.pkl"
    for seed in (pickle.dumps(model, protocol=2), pickle.dumps(model, protocol=5)):
        for _ in range(60):
            p.write_bytes(_mutate(rng, seed))
            with contextlib.suppress(ChainproofError):  # anything else fails the test
                safe_load(p)


def test_zip_claiming_an_unknown_version_is_not_inspectable(tmp_path: Path) -> None:
    """Found by fuzzing: zipfile raises NotImplementedError for 'version needed' 19.5."""
    import struct

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"a": 1}, protocol=2))
    data = bytearray(buf.getvalue())
    cd = data.find(b"PK\x01\x02")
    data[cd + 6 : cd + 8] = struct.pack("<H", 195)
    p = tmp_path / "v.zip"
    p.write_bytes(bytes(data))
    r = scan_path(p).files[0]
    assert r.verdict == "not_inspectable" and "version" in (r.error or "")
