"""Issue 13: allowlisted callables turned into gadgets by their arguments.

Every pickle here uses only allowlisted globals. The scanner must refuse each one statically, and
safe_load's restricted unpickler must refuse it on its own (the scan is bypassed for that check),
with nothing executed: each payload writes a marker file, and the marker's absence is checked.
The main gadget is first shown to be live: plain ``pickle.load`` in a child process runs it.
"""

from __future__ import annotations

import importlib
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import scan_asm as a
from test_scan_benign import OBJECTS

from chainproof.errors import MalformedFileError, ScanFindingError
from chainproof.scan import FileResult, default_allowlist, safe_load, scan_path

# the module (the package's ``safe_load`` attribute is the function of the same name)
safe_load_module = importlib.import_module("chainproof.scan.safe_load")

g = a.glob


def issue13_gadget(marker: Path) -> bytes:
    """The pickle of issue 13, step by step (protocol 2, every global allowlisted)."""
    code = f"open({str(marker)!r}, 'w').write('pwned')"
    return (
        a.proto(2)
        # memo 0: an OrderedDict instance (it has a __dict__)
        + g("collections", "OrderedDict") + a.EMPTY_TUPLE + a.REDUCE + a.binput(0) + a.POP
        # memo 1: B = _rebuild_from_type_v2(getattr, dict, (_rebuild_tensor, "__builtins__"), None)
        + g("torch._tensor", "_rebuild_from_type_v2")
        + a.MARK + g("builtins", "getattr") + g("builtins", "dict")
        + g("torch._utils", "_rebuild_tensor") + a.binunicode("__builtins__") + a.TUPLE2
        + a.NONE + a.TUPLE + a.REDUCE + a.binput(1) + a.POP
        # memo 2: S = Series(B, Index(["eval"]))  -> {"eval": eval}
        + g("pandas", "Series") + a.MARK + a.binget(1)
        + g("pandas", "Index") + a.EMPTY_LIST + a.binunicode("eval") + a.APPEND + a.TUPLE1
        + a.REDUCE + a.TUPLE + a.REDUCE + a.binput(2) + a.POP
        # memo 3: T = Series(Index(S), Index(["__setstate__"]))  (relabelled by position)
        + g("pandas", "Series") + a.MARK
        + g("pandas", "Index") + a.binget(2) + a.TUPLE1 + a.REDUCE
        + g("pandas", "Index") + a.EMPTY_LIST + a.binunicode("__setstate__") + a.APPEND
        + a.TUPLE1 + a.REDUCE + a.TUPLE + a.REDUCE + a.binput(3) + a.POP
        # memo 4: D = dict(T) = {"__setstate__": eval}
        + g("builtins", "dict") + a.binget(3) + a.TUPLE1 + a.REDUCE + a.binput(4) + a.POP
        # BUILD od with slot state D (setattr), then BUILD with a string: pickle calls eval
        + a.binget(0) + a.NONE + a.binget(4) + a.TUPLE2 + a.BUILD
        + a.binunicode(code) + a.BUILD
        + a.STOP
    )


def _write(tmp_path: Path, data: bytes, name: str = "model.pkl") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _bypass_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make safe_load's scan say clean, as if the scanner had missed the file."""

    def fake_scan(path: Path, *, allowlist: Any, display: str | None = None) -> FileResult:
        return FileResult(str(path), "pickle", "clean")

    monkeypatch.setattr(safe_load_module, "scan_file", fake_scan)


def test_issue13_gadget_is_live_with_plain_pickle(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    p = _write(tmp_path, issue13_gadget(marker))
    subprocess.run(
        [sys.executable, "-c", "import pickle,sys; pickle.load(open(sys.argv[1],'rb'))", str(p)],
        check=False, capture_output=True, timeout=120,
    )
    assert marker.read_text() == "pwned"  # the control: this input really executes code


def test_issue13_gadget_refused_by_scan_naming_the_construct(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    p = _write(tmp_path, issue13_gadget(marker))
    before = p.read_bytes()
    r = scan_path(p).files[0]
    assert r.verdict == "malicious"
    first = r.findings[0]
    assert first.file == str(p)
    assert (first.module, first.name, first.opcode) == (
        "torch._tensor", "_rebuild_from_type_v2", "REDUCE"
    )
    assert "builtins.getattr" in first.reason
    assert not marker.exists() and p.read_bytes() == before


def test_issue13_gadget_safe_load_refuses_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    p = _write(tmp_path, issue13_gadget(marker))
    with pytest.raises(ScanFindingError):
        safe_load(p)
    assert not marker.exists()


def test_issue13_gadget_restricted_unpickler_alone_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "marker"
    p = _write(tmp_path, issue13_gadget(marker))
    _bypass_scan(monkeypatch)
    with pytest.raises(ScanFindingError) as err:
        safe_load(p)
    assert "builtins.getattr" in str(err.value)
    assert not marker.exists()


def test_issue13_gadget_torch_weights_only_refuses_too(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    marker = tmp_path / "marker"
    p = _write(tmp_path, issue13_gadget(marker))
    with pytest.raises(pickle.UnpicklingError):
        torch.load(p, weights_only=True)
    assert not marker.exists()


# ---- variants: each a different way to hand a callable to a call or set a dunder ------------


def _eval_marker(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').write('pwned')"


VARIANTS: dict[str, Any] = {
    # BUILD with a literal dict whose key is __setstate__ (value: an allowlisted function).
    "build-dunder-dict": lambda m: (
        a.proto(2) + g("collections", "OrderedDict") + a.EMPTY_TUPLE + a.REDUCE
        + a.EMPTY_DICT + a.binunicode("__setstate__") + g("numpy", "log") + a.SETITEM
        + a.BUILD + a.STOP
    ),
    # The same through slot state (setattr).
    "build-dunder-slots": lambda m: (
        a.proto(2) + g("collections", "OrderedDict") + a.EMPTY_TUPLE + a.REDUCE
        + a.NONE + a.EMPTY_DICT + a.binunicode("__reduce__") + g("numpy", "log") + a.SETITEM
        + a.TUPLE2 + a.BUILD + a.STOP
    ),
    # An allowlisted class whose own __setstate__ updates __dict__ (sklearn's BaseEstimator):
    # the instance __setstate__ it stores would shadow the class's at the next BUILD.
    "build-dunder-via-class-setstate": lambda m: (
        a.proto(2) + g("sklearn.linear_model._logistic", "LogisticRegression") + a.EMPTY_TUPLE
        + a.NEWOBJ + a.EMPTY_DICT + a.binunicode("__setstate__") + g("numpy", "log")
        + a.SETITEM + a.BUILD + a.binunicode("x") + a.BUILD + a.STOP
    ),
    # A function hidden in a list handed to a constructor.
    "function-in-list-arg": lambda m: (
        a.proto(2) + g("pandas", "Series") + a.EMPTY_LIST + g("builtins", "getattr")
        + a.APPEND + a.TUPLE1 + a.REDUCE + a.STOP
    ),
    # A function hidden in a dict value handed to a constructor.
    "function-in-dict-arg": lambda m: (
        a.proto(2) + g("builtins", "dict") + a.EMPTY_DICT + a.binunicode("k")
        + g("torch._utils", "_rebuild_tensor") + a.SETITEM + a.TUPLE1 + a.REDUCE + a.STOP
    ),
    # A class where the callee expects data (Series calls/indexes what it is handed).
    "class-at-undeclared-position": lambda m: (
        a.proto(2) + g("pandas", "Series") + g("builtins", "dict") + a.TUPLE1 + a.REDUCE
        + a.STOP
    ),
    # defaultdict declares a class factory; a function there is refused.
    "function-as-defaultdict-factory": lambda m: (
        a.proto(2) + g("collections", "defaultdict") + g("builtins", "getattr") + a.TUPLE1
        + a.REDUCE + a.STOP
    ),
    # A function stored into an object built by a call (not a dict/list literal).
    "function-stored-into-object": lambda m: (
        a.proto(2) + g("collections", "OrderedDict") + a.EMPTY_TUPLE + a.REDUCE
        + a.binunicode("k") + g("builtins", "getattr") + a.SETITEM + a.STOP
    ),
    # Calling a constant.
    "calls-a-value": lambda m: (
        a.proto(2) + g("torch", "float32") + a.EMPTY_TUPLE + a.REDUCE + a.STOP
    ),
    # A callable in NEWOBJ_EX keyword arguments.
    "function-in-kwargs": lambda m: (
        a.proto(4) + g("collections", "OrderedDict") + a.EMPTY_TUPLE + a.EMPTY_DICT
        + a.sbu("x") + g("builtins", "getattr") + a.SETITEM + a.NEWOBJ_EX + a.STOP
    ),
    # _rebuild_from_type_v2 with its declared function but an undeclared one in its args.
    "rebuild-with-getattr-inside-args": lambda m: (
        a.proto(2) + g("torch._tensor", "_rebuild_from_type_v2")
        + a.MARK + g("torch._utils", "_rebuild_tensor_v2") + g("torch", "Tensor")
        + g("builtins", "getattr") + a.binunicode("__builtins__") + a.TUPLE2
        + a.NONE + a.TUPLE + a.REDUCE + a.STOP
    ),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variants_refused_by_scan(tmp_path: Path, name: str) -> None:
    p = _write(tmp_path, VARIANTS[name](tmp_path / "marker"))
    before = p.read_bytes()
    r = scan_path(p).files[0]
    assert r.verdict == "malicious", (name, r)
    assert any(f.severity == "critical" for f in r.findings)
    assert p.read_bytes() == before


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variants_refused_by_restricted_unpickler_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    marker = tmp_path / "marker"
    p = _write(tmp_path, VARIANTS[name](marker))
    _bypass_scan(monkeypatch)
    with pytest.raises(ScanFindingError, match="load-time check refused"):
        safe_load(p)
    assert not marker.exists()


def test_restricted_unpickler_refuses_unlisted_global_and_computed_callable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _bypass_scan(monkeypatch)
    marker = tmp_path / "marker"
    p = _write(tmp_path, a.call0("builtins", "eval", _eval_marker(marker)), "plain.pkl")
    with pytest.raises(ScanFindingError, match="not on the allowlist"):
        safe_load(p)
    assert not marker.exists()


@pytest.mark.parametrize(("label", "obj"), OBJECTS, ids=[o[0] for o in OBJECTS])
def test_restricted_unpickler_loads_every_benign_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, label: str, obj: Any
) -> None:
    """The second defence must not refuse real models (the scan is bypassed to test it alone)."""
    _bypass_scan(monkeypatch)
    for protocol in (2, 5):
        p = tmp_path / f"{label}.p{protocol}.pkl"
        p.write_bytes(pickle.dumps(obj, protocol=protocol))
        got = safe_load(p)
        assert type(got) is type(obj)
    j = tmp_path / f"{label}.joblib"
    joblib.dump(obj, j)
    monkeypatch.setattr(
        safe_load_module, "scan_file",
        lambda path, *, allowlist, display=None: FileResult(str(path), "joblib", "clean"),
    )
    assert type(safe_load(j)) is type(obj)


def test_joblib_object_array_is_read_by_the_restricted_unpickler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """joblib reads an object array's nested pickle with its own Unpickler: ours must not."""
    j = tmp_path / "o.joblib"
    joblib.dump({"a": np.array([1, "x", None], dtype=object)}, j)
    assert safe_load(j)["a"].tolist() == [1, "x", None]
    # Splice the gadget's nested-pickle shape in: an object array whose nested stream calls eval.
    marker = tmp_path / "marker"
    raw = j.read_bytes()
    nested_at = raw.index(b"\x80", raw.index(b"NumpyArrayWrapper") + 20)
    evil = raw[:nested_at] + a.call1("builtins", "eval", _eval_marker(marker))
    bad = _write(tmp_path, evil, "evil.joblib")
    monkeypatch.setattr(
        safe_load_module, "scan_file",
        lambda path, *, allowlist, display=None: FileResult(str(path), "joblib", "clean"),
    )
    with pytest.raises((ScanFindingError, MalformedFileError)):
        safe_load(bad)
    assert not marker.exists()


def test_allowlist_kinds_and_declared_positions() -> None:
    al = default_allowlist()
    rules = al.rules("torch._tensor", "_rebuild_from_type_v2")
    assert rules is not None and rules.kind == "function"
    assert "torch._utils._rebuild_tensor_v2" in rules.functions_at(0)
    assert "builtins.getattr" not in rules.functions_at(0)
    assert rules.class_args == frozenset({1})
    assert al.rules("torch", "float32").kind == "value"  # type: ignore[union-attr]
    assert al.rules("builtins", "dict").kind == "class"  # type: ignore[union-attr]
    assert al.rules("sklearn.linear_model._logistic", "LogisticRegression").kind == "class"  # type: ignore[union-attr]
    assert al.rules("os", "system") is None


@pytest.mark.parametrize("dtype", ["bfloat16", "float8_e4m3fn", "float8_e5m2"])
def test_safe_load_bf16_and_fp8_safetensors(tmp_path: Path, dtype: str) -> None:
    """Issue 13 item 7: these raised a bare TypeError from safetensors.numpy."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    t = torch.arange(6, dtype=torch.float32).reshape(2, 3).to(getattr(torch, dtype))
    p = tmp_path / "w.safetensors"
    save_file({"w": t, "f": torch.ones(2)}, str(p))
    assert scan_path(p).files[0].verdict == "clean"
    got = safe_load(p)
    assert got["w"].shape == (2, 3) and str(got["w"].dtype) == dtype
    assert got["w"].astype(np.float32).tolist() == [[0, 1, 2], [3, 4, 5]]
    assert got["f"].dtype == np.float32
