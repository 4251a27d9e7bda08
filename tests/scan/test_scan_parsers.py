"""Issue 13: real parsers for ONNX, Keras (.keras and legacy .h5), HDF5 and GGUF.

Each malicious input is refused with a finding naming the file and the construct; each benign
control of the same format (built by the format's own library) passes. Files are never loaded by
the format's runtime, and every refusal also checks the file is unchanged.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from chat_templates import CHATML, MISTRAL

from chainproof.scan import FileResult, scan_path

onnx = pytest.importorskip("onnx")
h5py = pytest.importorskip("h5py")
gguf = pytest.importorskip("gguf")
from onnx import TensorProto, helper  # noqa: E402


def scan_one(p: Path) -> FileResult:
    before = p.read_bytes()
    r = scan_path(p).files[0]
    assert p.read_bytes() == before
    return r


def constructs(r: FileResult) -> set[tuple[str, str]]:
    return {(f.opcode, f.name) for f in r.findings}


# ---- ONNX ----------------------------------------------------------------------------------------


def _external(name: str, location: str) -> TensorProto:
    t = helper.make_tensor(name, TensorProto.FLOAT, [1], [1.0])
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    e = t.external_data.add()
    e.key, e.value = "location", location
    return t


def _model(
    nodes: list[Any],
    *,
    functions: list[Any] | None = None,
    sparse: list[Any] | None = None,
    opsets: list[Any] | None = None,
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    if sparse:
        graph.sparse_initializer.extend(sparse)
    return helper.make_model(
        graph,
        functions=functions or [],
        opset_imports=opsets or [helper.make_opsetid("", 18)],
    )


def _save(tmp_path: Path, model: onnx.ModelProto, name: str = "m.onnx") -> Path:
    p = tmp_path / name
    p.write_bytes(model.SerializeToString())
    return p


def test_onnx_benign_model_with_function_and_subgraph_is_clean(tmp_path: Path) -> None:
    fn = helper.make_function(
        "local.fns", "Twice", ["a"], ["b"], [helper.make_node("Add", ["a", "a"], ["b"])],
        [helper.make_opsetid("", 18)],
    )
    then_g = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["t"])], "then", [],
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1])],
    )
    nodes = [
        helper.make_node("Twice", ["x"], ["x2"], domain="local.fns"),
        helper.make_node("Constant", [], ["c"], value=helper.make_tensor(
            "c", TensorProto.BOOL, [], [True])),
        helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=then_g),
    ]
    model = _model(nodes, functions=[fn], opsets=[helper.make_opsetid("", 18),
                                                  helper.make_opsetid("local.fns", 1)])
    onnx.checker.check_model(model)  # a real, valid model
    r = scan_one(_save(tmp_path, model))
    assert (r.format, r.verdict) == ("onnx", "clean"), r


def test_onnx_external_data_in_function_default_attribute(tmp_path: Path) -> None:
    """Issue 13 item 2: this spot scanned clean; ONNX Runtime reads external data from it."""
    attr = helper.make_attribute("value", _external("secret", "../secret.bin"))
    fn = helper.make_function(
        "local.fns", "F", ["a"], ["b"], [helper.make_node("Identity", ["a"], ["b"])],
        [helper.make_opsetid("", 18)], attributes=[], attribute_protos=[attr],
    )
    model = _model([helper.make_node("F", ["x"], ["y"], domain="local.fns")], functions=[fn],
                   opsets=[helper.make_opsetid("", 18), helper.make_opsetid("local.fns", 1)])
    p = _save(tmp_path, model)
    r = scan_one(p)
    assert r.verdict == "malicious"
    f = r.findings[0]
    assert (f.file, f.opcode, f.name) == (str(p), "external_data", "../secret.bin")
    assert "functions[0].attribute_proto[0]" in f.reason


def test_onnx_external_data_in_constant_node_control(tmp_path: Path) -> None:
    node = helper.make_node("Constant", [], ["y"], value=_external("c", "../secret.bin"))
    r = scan_one(_save(tmp_path, _model([node])))
    assert r.verdict == "malicious" and ("external_data", "../secret.bin") in constructs(r)


def test_onnx_external_data_in_subgraph(tmp_path: Path) -> None:
    inner = helper.make_graph(
        [helper.make_node("Constant", [], ["t"], value=_external("c", "/etc/passwd"))],
        "then", [], [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1])],
    )
    node = helper.make_node("If", ["x"], ["y"], then_branch=inner, else_branch=inner)
    r = scan_one(_save(tmp_path, _model([node])))
    assert r.verdict == "malicious"
    assert ("external_data", "/etc/passwd") in constructs(r)
    assert any("then_branch" in f.reason for f in r.findings)


def test_onnx_external_data_in_sparse_initializer(tmp_path: Path) -> None:
    values = _external("s", "../../x.bin")
    indices = helper.make_tensor("i", TensorProto.INT64, [1], [0])
    sparse = helper.make_sparse_tensor(values, indices, [4])
    r = scan_one(_save(tmp_path, _model([helper.make_node("Identity", ["x"], ["y"])],
                                         sparse=[sparse])))
    assert r.verdict == "malicious" and ("external_data", "../../x.bin") in constructs(r)


def test_onnx_custom_operator_domain(tmp_path: Path) -> None:
    node = helper.make_node("RunShell", ["x"], ["y"], domain="evil.ops")
    model = _model([node], opsets=[helper.make_opsetid("", 18), helper.make_opsetid("evil.ops", 1)])
    r = scan_one(_save(tmp_path, model))
    assert r.verdict == "malicious" and ("custom_op", "RunShell") in constructs(r)


def test_onnx_external_data_inside_the_folder_is_clean(tmp_path: Path) -> None:
    (tmp_path / "w.bin").write_bytes(b"\0" * 4)
    node = helper.make_node("Constant", [], ["y"], value=_external("c", "w.bin"))
    assert scan_one(_save(tmp_path, _model([node]))).verdict == "clean"


def test_onnx_external_data_in_training_info(tmp_path: Path) -> None:
    init = helper.make_graph(
        [helper.make_node("Constant", [], ["t"], value=_external("c", "../train.bin"))],
        "init", [], [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1])],
    )
    model = _model([helper.make_node("Identity", ["x"], ["y"])])
    info = model.training_info.add()
    info.initialization.CopyFrom(init)
    r = scan_one(_save(tmp_path, model))
    assert r.verdict == "malicious" and ("external_data", "../train.bin") in constructs(r)
    assert any("training_info[0].initialization" in f.reason for f in r.findings)


def test_onnx_external_data_in_attribute_tensor_list_and_loop_in_function(
    tmp_path: Path,
) -> None:
    """A repeated ``tensors`` attribute, inside a Loop body, inside a local function."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["c"], ["c_out"], ts=[_external("t", "/dev/mem")])],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, [])],
    )
    fn = helper.make_function(
        "local.fns", "L", ["n", "c"], ["o"],
        [helper.make_node("Loop", ["n", "c"], ["o"], body=body)], [helper.make_opsetid("", 18)],
    )
    model = _model([helper.make_node("L", ["x", "x"], ["y"], domain="local.fns")],
                   functions=[fn],
                   opsets=[helper.make_opsetid("", 18), helper.make_opsetid("local.fns", 1)])
    r = scan_one(_save(tmp_path, model))
    assert r.verdict == "malicious" and ("external_data", "/dev/mem") in constructs(r)
    assert any("functions[0].node[0].attribute[0](body)" in f.reason for f in r.findings)


def test_onnx_external_data_file_is_never_opened(tmp_path: Path) -> None:
    """The external-data file is a FIFO: opening it would block forever. The scan only checks
    where it is, so it finishes, and the model (inside its folder) is clean."""
    import threading

    os.mkfifo(tmp_path / "weights.bin")
    node = helper.make_node("Constant", [], ["y"], value=_external("c", "weights.bin"))
    p = _save(tmp_path, _model([node]))
    out: list[FileResult] = []
    t = threading.Thread(target=lambda: out.append(scan_path(p).files[0]), daemon=True)
    t.start()
    t.join(60)
    assert out and out[0].verdict == "clean", out


def test_onnx_large_model_is_parsed_from_a_map_of_the_file(tmp_path: Path) -> None:
    """A 64 MB self-contained model: parsed from an mmap (no bytes copy of the file), and the
    file is not changed."""
    from chainproof.scan import _scanner

    big = np.ones(16 * 1024 * 1024, dtype=np.float32)
    init = onnx.numpy_helper.from_array(big, "w")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [big.size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [big.size])], initializer=[init],
    )
    p = _save(tmp_path, helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))
    seen: list[type] = []
    real = _scanner.parse_onnx

    def spy(data: bytes | memoryview) -> object:
        seen.append(type(data))
        return real(data)

    _scanner.parse_onnx = spy  # type: ignore[assignment]
    try:
        r = scan_one(p)
    finally:
        _scanner.parse_onnx = real
    assert (r.format, r.verdict) == ("onnx", "clean"), r
    assert seen == [memoryview]


# ---- Keras ---------------------------------------------------------------------------------------


def _weights_h5(path: Path) -> None:
    with h5py.File(path, "w") as f:
        f.create_group("layers/dense/vars").create_dataset("0", data=np.ones((3, 2), "f4"))


def _keras_zip(tmp_path: Path, layers: list[dict[str, Any]], name: str = "m.keras") -> Path:
    """A .keras archive in Keras 3's layout, written without Keras."""
    config = {"module": "keras", "class_name": "Sequential", "registered_name": None,
              "config": {"name": "s", "layers": layers}}
    _weights_h5(tmp_path / "w.h5")
    p = tmp_path / name
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        z.writestr("config.json", json.dumps(config))
        z.write(tmp_path / "w.h5", "model.weights.h5")
    return p


DENSE = {"module": "keras.layers", "class_name": "Dense", "registered_name": None,
         "config": {"units": 2, "kernel_initializer": {
             "module": "keras.initializers", "class_name": "GlorotUniform", "config": {},
             "registered_name": None}}}


def test_keras_zip_benign_is_clean(tmp_path: Path) -> None:
    r = scan_one(_keras_zip(tmp_path, [DENSE]))
    assert (r.format, r.verdict) == ("keras", "clean"), r


@pytest.mark.parametrize(
    ("layer", "construct"),
    [
        ({"module": "keras.layers", "class_name": "Lambda", "registered_name": None,
          "config": {"function": {"class_name": "__lambda__", "config": {"code": "4wEAAA=="}}}},
         ("keras_layer", "Lambda")),
        ({"module": "keras.layers", "class_name": "TFOpLambda", "config": {}},
         ("keras_layer", "TFOpLambda")),
        ({"module": "os", "class_name": "system", "config": {}, "registered_name": None},
         ("keras_object", "system")),
        ({"module": "keras.layers", "class_name": "Dense", "registered_name": "evil>Dense",
          "config": {}}, ("keras_object", "evil>Dense")),
        ({"module": "keras.layers", "class_name": "Dense", "config": {"activation": {
            "module": "builtins", "class_name": "function", "config": "exec",
            "registered_name": "function"}}}, ("keras_object", "exec")),
        # CVE-2025-1550: a keras.* function that turns safe_mode off, called while loading
        ({"module": "keras.layers", "class_name": "Dense", "config": {"activation": {
            "module": "keras.config", "class_name": "function",
            "config": "enable_unsafe_deserialization", "registered_name": "function"}}},
         ("keras_object", "enable_unsafe_deserialization")),
        # CVE-2025-8747: keras.utils.get_file fetches and writes files
        ({"module": "keras.utils", "class_name": "function", "config": "get_file",
          "registered_name": "function"}, ("keras_object", "get_file")),
        ({"module": "keras.layers", "class_name": "TFSMLayer", "registered_name": None,
          "config": {"filepath": "/tmp/saved_model"}}, ("keras_layer", "TFSMLayer")),
    ],
    ids=["lambda", "tfoplambda", "foreign-module", "registered-custom", "function-ref",
         "keras-config-function", "keras-get-file", "tfsmlayer"],
)

def test_keras_zip_code_constructs_refused(
    tmp_path: Path, layer: dict[str, Any], construct: tuple[str, str]
) -> None:
    p = _keras_zip(tmp_path, [DENSE, layer])
    r = scan_one(p)
    assert r.verdict == "malicious"
    assert construct in constructs(r)
    assert all(f.file == f"{p}!config.json" for f in r.findings)


def test_keras_activation_function_reference_is_clean(tmp_path: Path) -> None:
    dense = {**DENSE, "config": {**DENSE["config"], "activation": {
        "module": "keras.activations", "class_name": "function", "config": "relu",
        "registered_name": "function"}}}
    r = scan_one(_keras_zip(tmp_path, [dense]))
    assert (r.format, r.verdict) == ("keras", "clean"), r


def test_real_keras_files_if_keras_is_installed(tmp_path: Path) -> None:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    ok = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    ok.save(tmp_path / "ok.keras")
    assert scan_one(tmp_path / "ok.keras").verdict == "clean"
    bad = keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda x: x * 2)])
    bad.save(tmp_path / "bad.keras")
    r = scan_one(tmp_path / "bad.keras")
    assert r.verdict == "malicious" and ("keras_layer", "Lambda") in constructs(r)
    bad.save(tmp_path / "bad.h5")  # legacy HDF5: the config is an attribute
    r = scan_one(tmp_path / "bad.h5")
    assert (r.format, r.verdict) == ("hdf5", "malicious")
    assert ("keras_layer", "Lambda") in constructs(r)


# ---- HDF5 ----------------------------------------------------------------------------------------


def test_hdf5_weights_clean_and_detected_by_magic(tmp_path: Path) -> None:
    p = tmp_path / "weights.bin"  # the extension says nothing: detection is by content
    _weights_h5(p)
    r = scan_one(p)
    assert (r.format, r.verdict) == ("hdf5", "clean"), r


def test_hdf5_external_link_and_external_storage(tmp_path: Path) -> None:
    p = tmp_path / "m.h5"
    with h5py.File(p, "w") as f:
        f["leak"] = h5py.ExternalLink("/etc/passwd", "/")
    r = scan_one(p)
    assert r.verdict == "malicious" and ("hdf5_external_link", "leak") in constructs(r)
    q = tmp_path / "s.h5"
    with h5py.File(q, "w") as f:
        f.create_dataset("d", shape=(4,), dtype="u1", external=[("../outside.bin", 0, 4)])
    r = scan_one(q)
    assert r.verdict == "malicious" and ("hdf5_external_storage", "d") in constructs(r)


def test_legacy_h5_with_lambda_config(tmp_path: Path) -> None:
    p = tmp_path / "legacy.h5"
    with h5py.File(p, "w") as f:
        f.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": {
            "layers": [{"class_name": "Lambda", "config": {"function": ["4wEAAA==", None]}}]}})
    r = scan_one(p)
    assert r.verdict == "malicious" and ("keras_layer", "Lambda") in constructs(r)


# HDF5 with a user block: the superblock sits at 512, 1024, 2048, ... (h5py's userblock_size=).

EVIL_PICKLE = b"cos\nsystem\n(S'id'\ntR."


@pytest.mark.parametrize("userblock", [512, 1024, 2048, 4096, 65536])
def test_hdf5_with_user_block_detected_and_clean(tmp_path: Path, userblock: int) -> None:
    p = tmp_path / "weights.h5"
    with h5py.File(p, "w", userblock_size=userblock) as f:
        f.create_dataset("kernel", data=np.ones((4, 4), dtype=np.float32))
    r = scan_one(p)
    assert (r.format, r.verdict) == ("hdf5", "clean"), r
    assert any(f"superblock at byte {userblock}" in n for n in r.notes)


@pytest.mark.parametrize("userblock", [512, 8192])
def test_legacy_keras_h5_with_user_block_and_lambda_refused(
    tmp_path: Path, userblock: int
) -> None:
    p = tmp_path / "legacy.h5"
    with h5py.File(p, "w", userblock_size=userblock) as f:
        f.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": {
            "layers": [{"class_name": "Lambda", "config": {"function": ["4wEAAA==", None]}}]}})
    r = scan_one(p)
    assert (r.format, r.verdict) == ("hdf5", "malicious"), r
    assert ("keras_layer", "Lambda") in constructs(r)


def test_hdf5_with_user_block_and_external_link_refused(tmp_path: Path) -> None:
    p = tmp_path / "m.h5"
    with h5py.File(p, "w", userblock_size=1024) as f:
        f["leak"] = h5py.ExternalLink("/etc/passwd", "/")
    r = scan_one(p)
    assert r.verdict == "malicious" and ("hdf5_external_link", "leak") in constructs(r)


def test_pickle_in_the_user_block_of_a_clean_hdf5_refused(tmp_path: Path) -> None:
    """A polyglot: h5py sees a clean HDF5, pickle.load / torch.load see the user block."""
    p = tmp_path / "poly.h5"
    with h5py.File(p, "w", userblock_size=1024) as f:
        f["w"] = np.zeros(2)
    data = bytearray(p.read_bytes())
    data[: len(EVIL_PICKLE)] = EVIL_PICKLE
    p.write_bytes(bytes(data))
    r = scan_one(p)
    assert r.verdict == "malicious", r
    assert ("os", "system") in {(f.module, f.name) for f in r.findings}


def test_hdf5_with_user_block_inside_a_zip(tmp_path: Path) -> None:
    h = tmp_path / "in.h5"
    with h5py.File(h, "w", userblock_size=512) as f:
        f["leak"] = h5py.ExternalLink("/etc/shadow", "/")
    z = tmp_path / "bundle.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(h, "model.h5")
    r = scan_one(z)
    assert r.verdict == "malicious" and r.findings[0].file == f"{z}!model.h5", r


def test_hdf5_signature_by_chance_decides_nothing(tmp_path: Path) -> None:
    """The signature at 512 inside some other file's bytes: if h5py does not accept the file,
    the content scan alone decides (a benign pickle stays clean, an evil one is refused)."""
    import pickle

    magic = b"\x89HDF\r\n\x1a\n"

    def magic_at_512(prefix: bytes) -> bytes:
        for n in range(1024):
            data = prefix + pickle.dumps({"blob": b"x" * n + magic + b"y" * 600}, protocol=4)
            if data.find(magic) == 512:
                return data
        raise AssertionError("no padding puts the signature at 512")

    p = tmp_path / "benign.pkl"
    p.write_bytes(magic_at_512(b""))
    r = scan_one(p)
    assert (r.format, r.verdict) == ("pickle", "clean"), r
    assert any("not HDF5" in n for n in r.notes)
    q = tmp_path / "evil.pkl"
    # call os.system, pop the result, then the benign-looking dict
    q.write_bytes(magic_at_512(b"\x80\x04cos\nsystem\n(S'id'\ntR0"))
    r = scan_one(q)
    assert r.verdict == "malicious", r


# ---- GGUF ----------------------------------------------------------------------------------------

NAMESPACED = (
    "{%- set ns = namespace(system='') -%}{%- for m in messages|selectattr('role', 'equalto', "
    "'system') -%}{%- set ns.system = ns.system + m.content -%}{%- endfor -%}{{ ns.system }}"
    "{%- for m in messages -%}{{ m.role ~ ': ' ~ m.content.strip() | trim }}{%- endfor -%}"
)
SSTI = {
    "mro": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "cycler": "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "attr-filter": "{{ ''|attr('__class__') }}",
    "concat-key": "{{ messages['_' ~ '_class__'] }}",
    "self-context": "{{ self._TemplateReference__context }}",
    "method-call": "{{ messages.pop() }}",
}


def _gguf(path: Path, template: str | None) -> Path:
    w = gguf.GGUFWriter(path, "llama")
    if template is not None:
        w.add_chat_template(template)
    w.add_tensor("w", np.ones((2, 3), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.mark.parametrize("template", [None, CHATML, MISTRAL, NAMESPACED],
                         ids=["none", "chatml", "mistral", "namespace"])
def test_gguf_benign_headers_and_templates_are_clean(tmp_path: Path, template: str | None) -> None:
    r = scan_one(_gguf(tmp_path / "m.gguf", template))
    assert (r.format, r.verdict) == ("gguf", "clean"), r


@pytest.mark.parametrize("name", sorted(SSTI))
def test_gguf_chat_template_injection_refused(tmp_path: Path, name: str) -> None:
    p = _gguf(tmp_path / "m.gguf", SSTI[name])
    r = scan_one(p)
    assert r.verdict == "malicious", r
    assert all(f.opcode == "chat_template" and f.file == str(p) for f in r.findings)


def test_gguf_truncated_is_malformed_not_pickle(tmp_path: Path) -> None:
    p = _gguf(tmp_path / "m.gguf", CHATML)
    p.write_bytes(p.read_bytes()[:40])
    r = scan_one(p)
    assert r.format == "gguf" and r.verdict == "malformed"


def test_gguf_and_hdf5_inside_a_zip(tmp_path: Path) -> None:
    g = _gguf(tmp_path / "in.gguf", SSTI["mro"])
    z = tmp_path / "bundle.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(g, "model.gguf")
    r = scan_one(z)
    assert r.verdict == "malicious" and r.findings[0].file == f"{z}!model.gguf"


# ---- unknown -------------------------------------------------------------------------------------


def test_unparsed_formats_are_unknown_not_clean(tmp_path: Path) -> None:
    p = tmp_path / "model.tflite"
    p.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 64)
    r = scan_one(p)
    assert r.verdict == "unknown" and "not a recognised model format" in (r.error or "")


# ---- 7z (py7zr) ----------------------------------------------------------------------------------


def _sevenzip(path: Path, members: dict[str, bytes], password: str | None = None) -> Path:
    py7zr = pytest.importorskip("py7zr")
    with py7zr.SevenZipFile(path, "w", password=password) as z:
        if password:
            z.set_encrypted_header(True)
        for name, data in members.items():
            z.writestr(data, name)
    return path


def test_7z_members_are_opened_and_scanned(tmp_path: Path) -> None:
    """LZMA-compressed members: carving for stored pickles finds nothing, py7zr opens them."""
    import io
    import pickle

    import scan_asm as a

    arr = io.BytesIO()
    np.save(arr, np.arange(4))
    good = _sevenzip(tmp_path / "ok.7z", {"w.npy": arr.getvalue(),
                                         "m.pkl": pickle.dumps({"a": 1}, protocol=4)})
    r = scan_one(good)
    assert (r.format, r.verdict) == ("7z", "clean"), r
    payload = a.call1("os", "system", "true") * 40  # compressible: not stored as-is
    bad = _sevenzip(tmp_path / "bad.7z", {"dir/model.pkl": payload})
    assert a.call1("os", "system", "true") not in bad.read_bytes()  # really compressed
    r = scan_one(bad)
    assert r.verdict == "malicious"
    assert r.findings[0].file == f"{bad}!dir/model.pkl" and r.findings[0].name == "system"


def test_7z_encrypted_is_not_inspectable(tmp_path: Path) -> None:
    enc = _sevenzip(tmp_path / "enc.7z", {"m.pkl": b"\x80\x04K\x01."}, password="secret")
    r = scan_one(enc)
    assert r.verdict == "not_inspectable", r


def test_hdf5_that_crashes_the_hdf5_library_is_malformed_not_a_crash() -> None:
    """A mutated HDF5 file (found by fuzzing) on which libhdf5 1.14 segfaults when h5py reads an
    attribute: the walk runs in a child process, so the scan survives and refuses the file."""
    p = Path(__file__).parent / "data" / "hdf5_crashes_libhdf5.h5"
    r = scan_one(p)
    assert (r.format, r.verdict) == ("hdf5", "malformed"), r
    assert "HDF5" in (r.error or "")


def test_safe_load_judges_the_onnx_bytes_it_loads(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A file swapped between the scan and the load: the bytes loaded are checked again, so an
    external-data escape planted after the scan is refused, not read."""
    import importlib

    from chainproof.errors import ScanFindingError

    safe_load_module = importlib.import_module("chainproof.scan.safe_load")

    (tmp_path / "w.bin").write_bytes(b"\0\0\x80\x3f")  # 1.0 as float32
    good = _save(tmp_path, _model([helper.make_node("Constant", [], ["y"],
                                                    value=_external("c", "w.bin"))]))
    loaded = safe_load_module.safe_load(good)
    assert loaded.graph.node[0].attribute[0].t.raw_data == b"\0\0\x80\x3f"
    # a node of a custom operator domain (onnx.load itself accepts it; running it would load
    # a native custom-op library)
    evil = _model([helper.make_node("Evil", ["x"], ["y"], domain="com.attacker")],
                  opsets=[helper.make_opsetid("", 18),
                          helper.make_opsetid("com.attacker", 1)]).SerializeToString()
    real_scan = safe_load_module.scan_file

    def scan_then_swap(path: Path, **kwargs: Any) -> Any:
        result = real_scan(path, **kwargs)
        path.write_bytes(evil)  # the attacker wins the race
        return result

    monkeypatch.setattr(safe_load_module, "scan_file", scan_then_swap)
    with pytest.raises(ScanFindingError, match=r"com\.attacker"):
        safe_load_module.safe_load(good)
