"""Containers and non-pickle formats, detected by content and read the way loaders read them."""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import scan_asm as a

from chainproof.scan import FileResult, scan_path

PAYLOAD = a.call1("os", "system", "echo pwned")


class Evil:
    """Pickles to os.system('echo pwned'); only ever dumped, never loaded."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned",))


def scan_file_bytes(tmp_path: Path, data: bytes, name: str) -> FileResult:
    p = tmp_path / name
    p.write_bytes(data)
    return scan_path(p).files[0]


def make_zip(members: dict[str, bytes], *, compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


# ---- zips ----------


@pytest.mark.parametrize(
    "name", ["data.pkl", "x/y/z", "weights.bin", "archive/data/0.weird", "a b/..c"]
)
@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_zip_with_pickle_under_any_name(tmp_path: Path, name: str, compression: int) -> None:
    data = make_zip({"readme.txt": b"hello", name: PAYLOAD}, compression=compression)
    r = scan_file_bytes(tmp_path, data, "model.txt")
    assert r.verdict == "malicious"
    assert r.findings[0].file.endswith("!" + name)


def _patch_local(data: bytes, **changes: int) -> bytes:
    """Rewrite fields of the first local header (flags, crc, sizes)."""
    b = bytearray(data)
    assert b[:4] == b"PK\x03\x04"
    if "flags" in changes:
        struct.pack_into("<H", b, 6, changes["flags"])
    if "crc" in changes:
        struct.pack_into("<I", b, 14, changes["crc"])
    if "csize" in changes:
        struct.pack_into("<I", b, 18, changes["csize"])
    return bytes(b)


def _patch_central(data: bytes, **changes: int) -> bytes:
    b = bytearray(data)
    at = b.rfind(b"PK\x01\x02")
    if "flags" in changes:
        struct.pack_into("<H", b, at + 8, changes["flags"])
    if "crc" in changes:
        struct.pack_into("<I", b, at + 16, changes["crc"])
    return bytes(b)


@pytest.mark.parametrize(
    "trick",
    ["flag-0x1", "flag-0x20", "flag-0x40", "crc-local", "crc-both", "local-size-0", "local-name"],
)
def test_zip_whose_local_header_lies(tmp_path: Path, trick: str) -> None:
    data = make_zip({"archive/data.pkl": PAYLOAD, "archive/version": b"3\n"})
    if trick.startswith("flag-"):
        flag = int(trick.split("-")[1], 16)
        data = _patch_central(_patch_local(data, flags=flag), flags=flag)
    elif trick == "crc-local":
        data = _patch_local(data, crc=0xDEADBEEF)
    elif trick == "crc-both":
        data = _patch_central(_patch_local(data, crc=0xDEADBEEF), crc=0xDEADBEEF)
    elif trick == "local-size-0":
        data = _patch_local(data, csize=0)
    else:
        data = data.replace(b"archive/data.pkl", b"archive/dat4.txt", 1)  # only the local one
    r = scan_file_bytes(tmp_path, data, "model.pt")
    assert r.verdict == "malicious", r


def test_torch_zip_skips_tensor_storage_but_scans_every_pickle(tmp_path: Path) -> None:
    benign = pickle.dumps({"w": 1}, protocol=2)
    looks_like_pickle = a.call1("os", "system", "storage bytes are never unpickled")
    ok = make_zip(
        {
            "m/data.pkl": benign,
            "m/data/0": looks_like_pickle,
            "m/byteorder": b"little",
            "m/version": b"3\n",
            "m/.data/serialization_id": b"123",
        }
    )
    r = scan_file_bytes(tmp_path, ok, "m.pt")
    assert (r.verdict, r.format) == ("clean", "pytorch-zip")
    assert any("storage members skipped" in n for n in r.notes)
    bad = make_zip({"m/data.pkl": benign, "m/extra.pkl": PAYLOAD})
    assert scan_file_bytes(tmp_path, bad, "m.pt").verdict == "malicious"
    bad = make_zip({"m/data.pkl": benign, "m/code/__torch__.bin": PAYLOAD})
    assert scan_file_bytes(tmp_path, bad, "m.pt").verdict == "malicious"
    broken = make_zip({"m/data.pkl": benign, "m/other.pkl": b"not a pickle at all"})
    assert scan_file_bytes(tmp_path, broken, "m.pt").verdict == "malformed"


def test_nested_zips_and_depth_bound(tmp_path: Path) -> None:
    inner = make_zip({"data.pkl": PAYLOAD})
    r = scan_file_bytes(
        tmp_path, make_zip({"inner.zip": inner}, compression=zipfile.ZIP_DEFLATED), "o.zip"
    )
    assert r.verdict == "malicious" and "inner.zip!data.pkl" in r.findings[0].file
    deep = PAYLOAD
    for i in range(6):
        deep = make_zip({f"l{i}.zip" if i else "data.pkl": deep})
    r = scan_file_bytes(tmp_path, deep, "deep.zip")
    assert r.verdict in ("not_inspectable", "malicious")
    assert r.verdict != "clean"


def test_zip_bomb_member_is_bounded(tmp_path: Path) -> None:
    zeros = b"\0" * (20 * 1024 * 1024)
    data = bytearray(make_zip({"bomb.bin": zeros}, compression=zipfile.ZIP_DEFLATED))
    # Lie in the central directory: declare 10 bytes uncompressed.
    at = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, at + 24, 10)
    r = scan_file_bytes(tmp_path, bytes(data), "bomb.zip")
    assert r.verdict == "malformed" and "inflates beyond" in (r.error or "")


def test_empty_and_text_only_zip_are_not_passed(tmp_path: Path) -> None:
    assert scan_file_bytes(tmp_path, make_zip({}), "e.zip").verdict == "unknown"
    # A zip of only text is not a model: nothing recognised inside.
    r = scan_file_bytes(tmp_path, make_zip({"a.txt": b"hello"}), "t.zip")
    assert r.verdict == "unknown"


def test_corrupt_zip_is_malformed(tmp_path: Path) -> None:
    data = make_zip({"data.pkl": PAYLOAD})[:-10]
    r = scan_file_bytes(tmp_path, data, "c.zip")
    assert r.verdict in ("malformed", "malicious")
    assert r.verdict != "clean"


def test_polyglot_pickle_with_zip_appended(tmp_path: Path) -> None:
    benign = pickle.dumps([1, 2, 3], protocol=2)
    data = benign + make_zip({"archive/data.pkl": PAYLOAD})
    r = scan_file_bytes(tmp_path, data, "poly.pt")
    assert r.verdict == "malicious"


def test_tar_and_gzip_containers(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("pickle")
        info.size = len(PAYLOAD)
        tf.addfile(info, io.BytesIO(PAYLOAD))
    r = scan_file_bytes(tmp_path, buf.getvalue(), "old.tar")
    assert r.verdict == "malicious" and r.format == "tar"
    assert scan_file_bytes(tmp_path, gzip.compress(PAYLOAD), "m.gz").verdict == "malicious"
    assert scan_file_bytes(tmp_path, zlib.compress(PAYLOAD), "m.z").verdict == "malicious"
    ok = scan_file_bytes(tmp_path, gzip.compress(pickle.dumps([1.5])), "ok.gz")
    assert ok.verdict == "clean" and ok.format == "gzip+pickle"


# ---- numpy ----------


def npy_header(descr: str, shape: tuple[int, ...]) -> bytes:
    text = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    text += b" " * (63 - (10 + len(text)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


def test_npy_object_array_with_malicious_pickle(tmp_path: Path) -> None:
    r = scan_file_bytes(tmp_path, npy_header("|O", (1,)) + PAYLOAD, "a.npy")
    assert (r.verdict, r.format) == ("malicious", "numpy-npy")
    buf = io.BytesIO()
    np.save(buf, np.array([1, "x", None], dtype=object), allow_pickle=True)
    assert scan_file_bytes(tmp_path, buf.getvalue(), "ok.npy").verdict == "clean"


def test_npy_numeric_and_truncated(tmp_path: Path) -> None:
    buf = io.BytesIO()
    np.save(buf, np.arange(100, dtype=np.float32).reshape(10, 10))
    assert scan_file_bytes(tmp_path, buf.getvalue(), "ok.npy").verdict == "clean"
    assert scan_file_bytes(tmp_path, buf.getvalue()[:-8], "t.npy").verdict == "malformed"
    bad = b"\x93NUMPY\x01\x00" + struct.pack("<H", 20) + b"__import__('os')    "
    assert scan_file_bytes(tmp_path, bad, "b.npy").verdict == "malformed"


def test_npz_with_malicious_object_member(tmp_path: Path) -> None:
    ok = io.BytesIO()
    np.savez(ok, a=np.arange(3))
    bad = make_zip(
        {
            "a.npy": ok.getvalue()[:0] or _npy(np.arange(3)),
            "b.npy": npy_header("|O", (1,)) + PAYLOAD,
        }
    )
    r = scan_file_bytes(tmp_path, bad, "x.npz")
    assert r.verdict == "malicious" and r.format == "numpy-npz"
    assert r.findings[0].file.endswith("!b.npy")


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


# ---- joblib ----------


@pytest.mark.parametrize("compress", [0, 3, ("gzip", 3), ("xz", 1)])
def test_joblib_with_malicious_object_after_arrays(tmp_path: Path, compress: object) -> None:
    import joblib

    p = tmp_path / "model.joblib"
    obj = {"w": np.arange(5000, dtype=np.float64), "m": np.ones((30, 30)), "evil": Evil()}
    joblib.dump(obj, p, compress=compress)  # dumping is safe; nothing is ever loaded
    r = scan_path(p).files[0]
    assert r.verdict == "malicious"
    assert {(f.module, f.name) for f in r.findings} in ({("posix", "system")}, {("os", "system")})


def test_joblib_object_array_nested_pickle(tmp_path: Path) -> None:
    import joblib

    p = tmp_path / "obj.joblib"
    joblib.dump({"a": np.arange(10), "o": np.array([1, Evil()], dtype=object)}, p)
    r = scan_path(p).files[0]
    assert r.verdict == "malicious"
    ok = tmp_path / "ok.joblib"
    joblib.dump(
        {"a": np.arange(10), "o": np.array([1, "x", None], dtype=object), "z": np.zeros(3)}, ok
    )
    r = scan_path(ok).files[0]
    assert (r.verdict, r.format) == ("clean", "joblib")


def test_joblib_wrapper_with_lying_shape_is_not_passed(tmp_path: Path) -> None:
    import joblib

    p = tmp_path / "m.joblib"
    joblib.dump({"a": np.arange(100, dtype=np.int64)}, p)
    data = p.read_bytes()
    # Claim fewer elements than are stored: the rest of the raw bytes would be read as opcodes.
    i = data.find(b"shape")
    assert i > 0
    r = scan_file_bytes(tmp_path, data.replace(b"Kd", b"K\x05", 1), "lie.joblib")
    assert r.verdict != "clean"


# ---- legacy torch ----------


def test_legacy_torch_layout_with_malicious_data_pickle(tmp_path: Path) -> None:
    magic = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
    assert magic.startswith(bytes.fromhex("80028a0a6cfc9c46f9206aa850192e"))
    parts = [
        magic,
        pickle.dumps(1001, protocol=2),
        pickle.dumps({"little_endian": True}, protocol=2),
    ]
    keys = pickle.dumps(["0"], protocol=2)
    raw = struct.pack("<q", 4) + PAYLOAD  # raw storage bytes are never unpickled
    ok = b"".join([*parts, pickle.dumps({"w": 1}, protocol=2), keys, raw])
    r = scan_file_bytes(tmp_path, ok, "legacy.pt")
    assert (r.verdict, r.format) == ("clean", "pytorch-legacy")
    bad = b"".join([*parts, a.call1("os", "system", "x", protocol=2), keys, raw])
    r = scan_file_bytes(tmp_path, bad, "legacy.pt")
    assert r.verdict == "malicious" and r.findings[0].stream_index == 3


# ---- safetensors ----------


def safetensors_bytes(header: dict[str, object], body: bytes, pad: bytes = b"") -> bytes:
    raw = json.dumps(header).encode() + pad
    return struct.pack("<Q", len(raw)) + raw + body


GOOD_ST = {
    "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
    "b": {"dtype": "BF16", "shape": [3], "data_offsets": [16, 22]},
    "__metadata__": {"format": "pt"},
}


def test_safetensors_valid(tmp_path: Path) -> None:
    r = scan_file_bytes(tmp_path, safetensors_bytes(GOOD_ST, b"\0" * 22, b"   "), "m.safetensors")
    assert (r.verdict, r.format) == ("clean", "safetensors")


@pytest.mark.parametrize(
    ("header", "body", "why"),
    [
        ({"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}}, b"\0" * 12, "span"),
        (
            {
                "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                "b": {"dtype": "F32", "shape": [1], "data_offsets": [2, 6]},
            },
            b"\0" * 6,
            "overlaps",
        ),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8, "gap"),
        ({"a": {"dtype": "X9", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4, "unknown dtype"),
        ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4, "shape"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 9, "file holds"),
        (
            {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "x": 1}},
            b"\0" * 4,
            "exactly",
        ),
        ({"__metadata__": {"k": 1}}, b"", "__metadata__"),
    ],
)
def test_safetensors_layout_violations(
    tmp_path: Path, header: dict[str, object], body: bytes, why: str
) -> None:
    r = scan_file_bytes(tmp_path, safetensors_bytes(header, body), "m.safetensors")
    assert r.verdict == "malformed" and why in (r.error or ""), r.error


def test_safetensors_duplicate_keys_and_bad_json(tmp_path: Path) -> None:
    entry = b'{"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}'
    raw = b'{"a": ' + entry + b', "a": ' + entry + b"}"
    r = scan_file_bytes(tmp_path, struct.pack("<Q", len(raw)) + raw + b"\0" * 4, "d.safetensors")
    assert r.verdict == "malformed" and "twice" in (r.error or "")
    raw = b'{"a": nope}'
    r = scan_file_bytes(tmp_path, struct.pack("<Q", len(raw)) + raw, "j.safetensors")
    assert r.verdict in ("malformed", "unknown")
    # Header length pointing past the end of the file is never taken for safetensors.
    r = scan_file_bytes(tmp_path, struct.pack("<Q", 1 << 40) + b"{}", "h.safetensors")
    assert r.verdict != "clean"


# ---- ONNX ----------


def _onnx_model(location: str | None) -> bytes:
    pytest.importorskip("onnx", reason="onnx is not installed")
    from onnx import TensorProto, helper

    init = helper.make_tensor("w", TensorProto.FLOAT, [2], [1.0, 2.0])
    if location is not None:
        init.ClearField("float_data")
        init.data_location = TensorProto.EXTERNAL
        entry = init.external_data.add()
        entry.key, entry.value = "location", location
    node = helper.make_node("Add", ["x", "w"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        [init],
    )
    return helper.make_model(graph).SerializeToString()


def test_onnx_model_clean(tmp_path: Path) -> None:
    r = scan_file_bytes(tmp_path, _onnx_model(None), "m.onnx")
    assert (r.verdict, r.format) == ("clean", "onnx")
    (tmp_path / "w.bin").write_bytes(b"\0" * 8)
    r = scan_file_bytes(tmp_path, _onnx_model("w.bin"), "ext.onnx")
    assert r.verdict == "clean"


@pytest.mark.parametrize(
    "location", ["/etc/passwd", "../../etc/passwd", "sub/../../x", "..\\..\\win.ini", "C:\\x"]
)
def test_onnx_external_data_escaping_the_folder(tmp_path: Path, location: str) -> None:
    r = scan_file_bytes(tmp_path, _onnx_model(location), "m.onnx")
    assert r.verdict == "malicious"
    assert r.findings[0].opcode == "external_data" and r.findings[0].name == location


def test_onnx_external_data_symlink_escape(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "w.bin").symlink_to("/etc/hostname")
    r = scan_file_bytes(model_dir, _onnx_model("w.bin"), "m.onnx")
    assert r.verdict == "malicious" and "symlink" in r.findings[0].reason


def test_onnx_truncated_is_malformed(tmp_path: Path) -> None:
    data = _onnx_model(None)
    r = scan_file_bytes(tmp_path, data[: len(data) - 7], "t.onnx")
    assert r.verdict in ("malformed", "unknown")


# ---- directories and unknown files ----------


def test_directory_scan_names_every_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.pkl").write_bytes(pickle.dumps([1]))
    (tmp_path / "sub" / "b.pkl").write_bytes(PAYLOAD)
    (tmp_path / "sub" / "notes.md").write_text("# hello\n")
    report = scan_path(tmp_path)
    got = {Path(r.path).relative_to(tmp_path).as_posix(): r.verdict for r in report.files}
    assert got == {"a.pkl": "clean", "sub/b.pkl": "malicious", "sub/notes.md": "unknown"}
    assert not report.clean and report.exit_code == 1
    d = report.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["counts"] == {"clean": 1, "malicious": 1, "unknown": 1}


def test_unknown_files_are_not_passed(tmp_path: Path) -> None:
    for name, data in [
        ("t.txt", b"just some text\n"),
        ("img.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 20),
        ("e.bin", b""),
    ]:
        r = scan_file_bytes(tmp_path, data, name)
        assert r.verdict in ("unknown", "malformed") and r.error
    assert scan_path(tmp_path).exit_code == 2


def test_missing_path_raises(tmp_path: Path) -> None:
    from chainproof.errors import NotFoundError

    with pytest.raises(NotFoundError):
        scan_path(tmp_path / "nope.pkl")


def test_legacy_torch_written_with_another_protocol_is_recognised(tmp_path: Path) -> None:
    parts = [pickle.dumps(x, protocol=4) for x in (0x1950A86A20F9469CFC6C, 1001, {"le": True})]
    raw = struct.pack("<q", 4) + b"\x80\x04garbage that is raw storage, never unpickled"
    ok = b"".join([*parts, pickle.dumps({"w": 1}, 4), pickle.dumps(["0"], 4), raw])
    r = scan_file_bytes(tmp_path, ok, "legacy4.pt")
    assert (r.verdict, r.format) == ("clean", "pytorch-legacy")


def test_compressed_and_tar_inside_deflated_zip_members(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("inner/data.pkl")
        info.size = len(PAYLOAD)
        tf.addfile(info, io.BytesIO(PAYLOAD))
    members = {"a.gz": gzip.compress(PAYLOAD), "b.tar": buf.getvalue()}
    data = make_zip(members, compression=zipfile.ZIP_DEFLATED)
    r = scan_file_bytes(tmp_path, data, "bundle.zip")
    assert r.verdict == "malicious"
    assert {f.file.split("!", 1)[1] for f in r.findings} == {"a.gz", "b.tar!inner/data.pkl"}


def test_onnx_inside_a_tar(tmp_path: Path) -> None:
    model = _onnx_model("../../escape.bin")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("model.onnx")
        info.size = len(model)
        tf.addfile(info, io.BytesIO(model))
    r = scan_file_bytes(tmp_path, buf.getvalue(), "m.tar")
    assert r.verdict == "malicious" and r.findings[0].format == "onnx"


def test_special_files(tmp_path: Path) -> None:
    from chainproof.errors import BadInputError

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    (tmp_path / "dangling").symlink_to(tmp_path / "missing")
    report = scan_path(tmp_path)
    assert {Path(r.path).name: r.verdict for r in report.files} == {
        "dangling": "not_inspectable",
        "pipe": "not_inspectable",
    }
    with pytest.raises(BadInputError):
        scan_path(fifo)
