"""Real parsers for the non-pickle model formats: ONNX, Keras (v3 ``.keras`` and HDF5), GGUF.

Each parser uses the format's own maintained library (``onnx``'s protobuf classes, ``h5py``,
``gguf``, ``jinja2``'s parser) and reports :class:`Construct` objects: the things in a file that
make a loader read outside the file or run code. A missing library makes the file ``unknown``
(the scanner says so), never ``clean``.

What each parser checks is listed in docs/scanning.md.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chainproof.scan._formats import external_location_problem


class ParserMissing(Exception):
    """The library that parses this format is not installed."""


class ParseFailed(Exception):
    """The bytes are not valid in the format (a ``malformed`` verdict)."""


@dataclass(frozen=True)
class Construct:
    """One refused construct: ``kind`` (e.g. ``external_data``), ``what`` and ``where``."""

    kind: str
    module: str
    name: str
    reason: str
    offset: int = 0


# ---- ONNX ----------------------------------------------------------------------------------------

#: Operator domains ONNX Runtime implements itself. Any other domain needs a custom-op library
#: (native code) registered by the loading process, unless a model-local function defines it.
STANDARD_ONNX_DOMAINS = frozenset(
    {"", "ai.onnx", "ai.onnx.ml", "ai.onnx.training", "ai.onnx.preview.training",
     "com.microsoft", "com.microsoft.nchwc", "com.microsoft.experimental",
     "com.ms.internal.nhwc", "org.pytorch.aten"}
)
_MAX_MSG_DEPTH = 128


def parse_onnx(data: bytes) -> Any:
    """``onnx.ModelProto`` of ``data``, or None if it is not an ONNX model (no graph)."""
    try:
        import onnx
    except ImportError as exc:
        raise ParserMissing("the onnx package is not installed") from exc
    from google.protobuf.message import DecodeError

    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError):
        return None
    if not model.HasField("graph") or not model.ir_version:
        return None
    return model


def _repeated(fd: Any) -> bool:
    """``is_repeated`` (protobuf >= 5.x; ``label`` is gone in 7.x) or the older ``label``."""
    rep = getattr(fd, "is_repeated", None)
    if rep is not None:
        return bool(rep)
    return bool(fd.label == fd.LABEL_REPEATED)


def _messages(msg: Any, path: str, depth: int = 0) -> Iterator[tuple[str, Any]]:
    """Every protobuf message inside ``msg`` (itself included), found generically by descriptor:
    graphs, subgraphs of If/Loop/Scan attributes, functions and their attribute defaults
    (``attribute_proto``), sparse initializers, training info -- whatever a future ONNX adds."""
    if depth > _MAX_MSG_DEPTH:
        raise ParseFailed(f"ONNX messages nest deeper than {_MAX_MSG_DEPTH} at {path}")
    yield path, msg
    for fd, value in msg.ListFields():
        if fd.type != fd.TYPE_MESSAGE:
            continue
        if _repeated(fd):
            for i, item in enumerate(value):
                label = f"{path}.{fd.name}[{i}]"
                if item.DESCRIPTOR.full_name == "onnx.AttributeProto":
                    label += f"({item.name})"
                yield from _messages(item, label, depth + 1)
        else:
            yield from _messages(value, f"{path}.{fd.name}", depth + 1)


def check_onnx(model: Any, model_dir: Path | None) -> tuple[list[Construct], list[str]]:
    """External-data tensors anywhere (location must stay in the model folder) and nodes of
    operator domains outside the standard ones (custom ops load native libraries)."""
    import onnx

    found: list[Construct] = []
    notes: list[str] = []
    local_functions = {(f.domain, f.name) for f in model.functions}
    externals = 0
    for path, msg in _messages(model, "model"):
        name = msg.DESCRIPTOR.full_name
        if name == "onnx.TensorProto":
            entries = {e.key: e.value for e in msg.external_data}
            if msg.data_location == onnx.TensorProto.EXTERNAL or entries:
                externals += 1
                location = entries.get("location", "")
                problem = external_location_problem(location, model_dir)
                if problem:
                    found.append(Construct("external_data", "onnx.external_data", location,
                                           f"{problem} (tensor {msg.name!r} at {path})"))
                elif model_dir is not None and not (model_dir / location).exists():
                    notes.append(f"external data file {location!r} is missing ({path})")
        elif name == "onnx.NodeProto" and msg.domain not in STANDARD_ONNX_DOMAINS and (
            (msg.domain, msg.op_type) not in local_functions
        ):
            found.append(Construct(
                "custom_op", msg.domain, msg.op_type,
                f"node {msg.name or msg.op_type!r} at {path} uses operator domain "
                f"{msg.domain!r}, which needs a custom-op library (native code) to run",
            ))
    for imp in model.opset_import:
        if imp.domain not in STANDARD_ONNX_DOMAINS and not any(
            d == imp.domain for d, _ in local_functions
        ):
            notes.append(f"opset import of custom domain {imp.domain!r}")
    notes.append(f"ONNX model (ir_version {model.ir_version}), {externals} external tensors, "
                 f"{len(model.functions)} local functions")
    return found, notes


# ---- Keras ---------------------------------------------------------------------------------------

#: Layer classes whose config carries Python code (marshalled bytecode or a function name).
KERAS_CODE_CLASSES = frozenset({"Lambda", "TFOpLambda", "SlicingOpLambda", "__lambda__"})


def _keras_module_ok(module: str) -> bool:
    return module == "keras" or module.startswith("keras.")


def check_keras_config(doc: Any, where: str) -> list[Construct]:
    """Judge a Keras model config (``config.json`` of a ``.keras`` zip, or an HDF5
    ``model_config`` attribute): Lambda-like layers, objects from modules outside ``keras.*``,
    custom registered objects (``registered_name`` of the form ``package>Name``) and references
    to Python functions are refused (Keras imports/unmarshals them when it deserializes)."""
    found: list[Construct] = []
    todo: list[tuple[Any, str, int]] = [(doc, where, 0)]
    while todo:
        node, path, depth = todo.pop()
        if depth > 256:
            found.append(Construct("keras_config", "keras", "?", f"config nests too deeply at "
                                   f"{path}"))
            break
        if isinstance(node, list):
            todo.extend((x, f"{path}[{i}]", depth + 1) for i, x in enumerate(node))
            continue
        if not isinstance(node, dict):
            continue
        cls = node.get("class_name")
        module = node.get("module")
        registered = node.get("registered_name")
        if isinstance(cls, str) and cls in KERAS_CODE_CLASSES:
            found.append(Construct("keras_layer", str(module or "keras.layers"), cls,
                                   f"{cls} layer at {path} carries Python code that Keras runs "
                                   "when the model is loaded or called"))
        elif cls == "function" and isinstance(node.get("config"), str) and not (
            isinstance(module, str) and _keras_module_ok(module)
        ):
            found.append(Construct("keras_object", str(module), str(node.get("config")),
                                   f"reference to the Python function {module}."
                                   f"{node.get('config')} at {path}"))
        elif isinstance(module, str) and not _keras_module_ok(module):
            found.append(Construct("keras_object", module, str(cls),
                                   f"object at {path} comes from module {module!r}, outside "
                                   "keras.* (Keras imports it to deserialize)"))
        elif isinstance(registered, str) and ">" in registered:
            found.append(Construct("keras_object", str(module), registered,
                                   f"custom registered object {registered!r} at {path}"))
        for k, v in node.items():
            if isinstance(v, dict | list):
                todo.append((v, f"{path}.{k}", depth + 1))
    return found


def check_keras_json(raw: bytes, where: str) -> tuple[list[Construct], list[str]]:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ParseFailed(f"{where} is not valid JSON: {exc}") from exc
    found = check_keras_config(doc, where)
    return found, [f"{where}: Keras config with {len(found)} refused constructs"]


# ---- HDF5 ----------------------------------------------------------------------------------------

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def hdf5_at(head: bytes) -> bool:
    """HDF5's superblock is at 0 or, after a user block, at 512, 1024, 2048, ... bytes."""
    return any(head[o : o + 8] == HDF5_MAGIC for o in (0, 512, 1024, 2048) if len(head) >= o + 8)


#: the HDF5 walk runs in a child process: the HDF5 C library can crash (SIGSEGV) on hostile
#: files, and the scanner runs inside the prediction service (safe_load).
HDF5_CHILD_TIMEOUT = 120.0
_HDF5_CHILD = (
    "import sys; from chainproof.scan._parsers import hdf5_child_main; hdf5_child_main()"
)


def check_hdf5(path: Path, model_dir: Path | None) -> tuple[list[Construct], list[str]]:
    """Walk every group, dataset and attribute with h5py (nothing is read but metadata):
    external links and external/virtual dataset storage point at other files; a legacy Keras
    ``model_config`` attribute is judged like a ``.keras`` config.

    The walk runs in a child Python process; a crash or a timeout there is a
    :class:`ParseFailed` (the file is ``malformed``), never a crash of the caller.
    """
    import subprocess
    import sys

    if importlib.util.find_spec("h5py") is None:
        raise ParserMissing("the h5py package is not installed")
    try:
        run = subprocess.run(
            [sys.executable, "-c", _HDF5_CHILD, str(path), str(model_dir or "")],
            capture_output=True, timeout=HDF5_CHILD_TIMEOUT, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ParseFailed(f"the HDF5 walk took longer than {HDF5_CHILD_TIMEOUT:.0f} s") from exc
    if run.returncode != 0:
        why = (f"signal {-run.returncode}" if run.returncode < 0
               else f"exit {run.returncode}: {run.stderr.decode(errors='replace')[-300:]}")
        raise ParseFailed(f"the HDF5 library failed on this file ({why})")
    try:
        doc = json.loads(run.stdout)
    except ValueError as exc:
        raise ParseFailed("the HDF5 walk gave no result") from exc
    if doc.get("error"):
        raise ParseFailed(str(doc["error"]))
    found = [Construct(**c) for c in doc["found"]]
    return found, list(doc["notes"])


def hdf5_child_main() -> None:
    """Entry point of the HDF5 child process: argv = [path, model_dir or ""]; prints JSON."""
    import dataclasses
    import sys

    path, model_dir = Path(sys.argv[1]), (Path(sys.argv[2]) if sys.argv[2] else None)
    try:
        found, notes = _hdf5_in_process(path, model_dir)
        out: dict[str, Any] = {"found": [dataclasses.asdict(c) for c in found], "notes": notes}
    except (ParseFailed, ParserMissing) as exc:
        out = {"error": str(exc)}
    sys.stdout.write(json.dumps(out))


def _hdf5_in_process(path: Path, model_dir: Path | None) -> tuple[list[Construct], list[str]]:
    try:
        import h5py
    except ImportError as exc:
        raise ParserMissing("the h5py package is not installed") from exc
    found: list[Construct] = []
    notes: list[str] = []
    try:
        f = h5py.File(path, "r")
    except Exception as exc:  # h5py on hostile bytes: OSError, KeyError, ValueError, ...
        raise ParseFailed(f"HDF5 file does not open: {exc}") from exc
    try:
        with f:
            count = _walk_hdf5(f, h5py, found, notes, model_dir)
    except ParseFailed:
        raise
    except Exception as exc:  # any failure of the HDF5 library on this file: malformed
        raise ParseFailed(f"HDF5 structure does not walk: {type(exc).__name__}: {exc}") from exc
    notes.append(f"HDF5 with {count} links walked")
    return found, notes


def _walk_hdf5(
    f: Any, h5py: Any, found: list[Construct], notes: list[str], model_dir: Path | None
) -> int:
    """Judge the root attributes and every link of an open file; returns the links walked."""
    count = 0
    errors: list[BaseException] = []
    for attr in ("model_config", "training_config"):
        if attr in f.attrs:
            raw = f.attrs[attr]
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            got, _ = check_keras_json(text.encode(), f"HDF5 attribute {attr}")
            found.extend(got)
            notes.append(f"legacy Keras HDF5 model ({attr} judged)")

    def visit(name: str, link: Any) -> bool | None:
        try:
            _visit(name, link)
        except Exception as exc:
            errors.append(exc)
            return True  # stops the walk
        return None

    def _visit(name: str, link: Any) -> None:
        nonlocal count
        count += 1
        if isinstance(link, h5py.ExternalLink):
            found.append(Construct("hdf5_external_link", link.filename, name,
                                   f"external link {name!r} -> {link.filename}:{link.path} "
                                   "(h5py opens the other file when it is read)"))
            return
        if not isinstance(link, h5py.HardLink):
            return
        obj = f.get(name)
        if isinstance(obj, h5py.Dataset):
            if obj.external:
                for fname, *_ in obj.external:
                    loc = fname.decode() if isinstance(fname, bytes) else str(fname)
                    problem = external_location_problem(loc, model_dir)
                    found.append(Construct("hdf5_external_storage", loc, name,
                                           problem or f"dataset {name!r} stores its data "
                                           f"in the external file {loc!r}"))
            if obj.is_virtual:
                for src in obj.virtual_sources():
                    found.append(Construct("hdf5_virtual_dataset", src.file_name, name,
                                           f"virtual dataset {name!r} reads "
                                           f"{src.file_name}:{src.dset_name}"))

    f.visititems_links(visit)
    if errors:
        raise ParseFailed(
            f"HDF5 structure does not walk: {type(errors[0]).__name__}: {errors[0]}"
        )
    return count


# ---- GGUF ----------------------------------------------------------------------------------------

GGUF_MAGIC = b"GGUF"
#: What plain chat formatting calls: string methods, dict/list readers, Jinja's data helpers.
SAFE_TEMPLATE_METHODS = frozenset({
    "strip", "lstrip", "rstrip", "split", "rsplit", "startswith", "endswith", "lower", "upper",
    "title", "capitalize", "replace", "join", "items", "keys", "values", "get", "format",
    "count", "find", "index", "append", "splitlines", "isdigit", "isspace",
})
SAFE_TEMPLATE_CALLS = frozenset({"raise_exception", "range", "namespace", "dict",
                                 "strftime_now", "len"})
#: Jinja globals that reach Python objects with code attributes (the usual SSTI entry points).
UNSAFE_TEMPLATE_NAMES = frozenset({"cycler", "joiner", "lipsum", "self", "config", "request",
                                   "url_for", "get_flashed_messages", "g"})
#: Filters that look an attribute up by a string; ``attr`` is refused outright, the others only
#: when the attribute name is computed or starts with an underscore.
ATTRIBUTE_FILTERS = frozenset({"map", "selectattr", "rejectattr", "sort", "groupby", "sum",
                               "unique", "min", "max"})


def check_chat_template(template: str, where: str) -> list[Construct]:
    """Parse a Jinja chat template (never render it) and refuse what reaches past formatting:
    underscore attributes or keys, attribute access by computed name, calls other than plain
    string/dict methods and the helpers chat templates use, Jinja globals that lead to Python
    internals, and the ``attr``-style filters that look attributes up by string."""
    try:
        from jinja2 import nodes
        from jinja2.exceptions import TemplateSyntaxError
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError as exc:
        raise ParserMissing("jinja2 is not installed") from exc
    try:
        ast = ImmutableSandboxedEnvironment().parse(template)
    except TemplateSyntaxError as exc:
        return [Construct("chat_template", "jinja2", "syntax",
                          f"{where}: chat template does not parse: {exc}")]
    found: list[Construct] = []

    def add(name: str, reason: str) -> None:
        found.append(Construct("chat_template", "jinja2", name, f"{where}: {reason}"))

    for node in ast.find_all(nodes.Node):
        if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
            add(node.attr, f"reads attribute {node.attr!r}")
        elif isinstance(node, nodes.Getitem):
            key = node.arg
            if isinstance(key, nodes.Const) and isinstance(key.value, str):
                if key.value.startswith("_"):
                    add(key.value, f"reads item/attribute {key.value!r}")
            elif not isinstance(key, nodes.Const | nodes.Name | nodes.Getattr | nodes.Slice
                                | nodes.Sub | nodes.Add | nodes.Neg):
                add("getitem", "looks up an item by a computed name (Jinja falls back to "
                    "attributes)")
        elif isinstance(node, nodes.Call):
            target = node.node
            if isinstance(target, nodes.Getattr):
                if target.attr not in SAFE_TEMPLATE_METHODS:
                    add(target.attr, f"calls method {target.attr!r}")
            elif isinstance(target, nodes.Name):
                if target.name not in SAFE_TEMPLATE_CALLS:
                    add(target.name, f"calls {target.name!r}")
            else:
                add("call", "calls a computed callable")
        elif isinstance(node, nodes.Name) and node.name in UNSAFE_TEMPLATE_NAMES:
            add(node.name, f"uses the Jinja global {node.name!r}")
        elif isinstance(node, nodes.Filter) and node.name == "attr":
            add("attr", "uses the filter 'attr', which looks attributes up by name")
        elif isinstance(node, nodes.Filter) and node.name in ATTRIBUTE_FILTERS:
            for arg in [*node.args, *(kw.value for kw in node.kwargs)]:
                if not isinstance(arg, nodes.Const):
                    add(node.name, f"filter {node.name!r} with a computed argument")
                elif isinstance(arg.value, str) and arg.value.startswith("_"):
                    add(arg.value, f"filter {node.name!r} reaches attribute {arg.value!r}")
        elif isinstance(node, nodes.Concat):
            for part in node.nodes:
                if (isinstance(part, nodes.Const) and isinstance(part.value, str)
                        and part.value.startswith("_")):
                    add(part.value, "builds a name starting with an underscore by concatenation")
    return found


def check_gguf(path: Path) -> tuple[list[Construct], list[str]]:
    """Parse the header and metadata with ``gguf.GGUFReader`` (tensor data is memory-mapped,
    not read) and judge every chat template in the metadata."""
    try:
        from gguf import GGUFReader
    except ImportError as exc:
        raise ParserMissing("the gguf package is not installed") from exc
    try:
        reader = GGUFReader(path)
    except Exception as exc:  # gguf on hostile bytes: ValueError, IndexError, numpy errors, ...
        raise ParseFailed(f"GGUF does not parse: {type(exc).__name__}: {exc}") from exc
    found: list[Construct] = []
    templates = 0
    for key, fld in reader.fields.items():
        if not key.startswith("tokenizer.chat_template"):
            continue
        try:
            value = fld.contents()
        except (ValueError, IndexError, UnicodeDecodeError) as exc:
            raise ParseFailed(f"GGUF field {key} does not decode: {exc}") from exc
        if isinstance(value, str):
            templates += 1
            found.extend(check_chat_template(value, f"metadata {key}"))
    notes = [f"GGUF v{_gguf_version(reader)}: {len(reader.fields)} metadata fields, "
             f"{len(reader.tensors)} tensors (data not read), {templates} chat templates judged"]
    return found, notes


def _gguf_version(reader: Any) -> str:
    fld = reader.fields.get("GGUF.version")
    try:
        return str(fld.contents()) if fld is not None else "?"
    except (ValueError, IndexError):
        return "?"
