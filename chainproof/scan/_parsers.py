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


def parse_onnx(data: bytes | memoryview) -> Any:
    """``onnx.ModelProto`` of ``data`` (bytes, or a memoryview such as one over a read-only
    mmap of the file), or None if it is not an ONNX model (no graph). External data is never
    read here (what ``onnx.load(..., load_external_data=False)`` does, minus its full
    ``bytes`` copy of the file). Raises :class:`ParserMissing` without the onnx package."""
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


#: Keras classes that load or run code from elsewhere even though they live in keras.*:
#: TFSMLayer loads a TensorFlow SavedModel (its graph can run arbitrary TF ops, e.g. file I/O).
KERAS_CODE_LOADING_CLASSES = frozenset({"TFSMLayer"})
#: Modules whose functions a config may name (``class_name: "function"``): pure tensor math.
#: Any other keras.* function is refused: Keras *calls* what it deserializes, and
#: keras.config.enable_unsafe_deserialization (CVE-2025-1550) or keras.utils.get_file
#: (CVE-2025-8747) are keras.* functions too.
KERAS_FUNCTION_MODULES = frozenset({
    f"{root}.{sub}" for root in ("keras", "keras.src")
    for sub in ("activations", "losses", "metrics", "initializers", "regularizers",
                "constraints", "ops")
})


def _keras_module_ok(module: str) -> bool:
    return module == "keras" or module.startswith("keras.")


def _keras_function_ok(module: object, name: object) -> bool:
    return (isinstance(module, str) and isinstance(name, str) and name.isidentifier()
            and not name.startswith("_")
            and any(module == m or module.startswith(m + ".") for m in KERAS_FUNCTION_MODULES))


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
        elif isinstance(cls, str) and cls in KERAS_CODE_LOADING_CLASSES:
            found.append(Construct("keras_layer", str(module or "keras.layers"), cls,
                                   f"{cls} layer at {path} loads a TensorFlow SavedModel "
                                   "(its graph runs when the model is called)"))
        elif cls == "function" and not _keras_function_ok(module, node.get("config")):
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


def hdf5_userblock_offset(read_at: Any, size: int) -> int | None:
    """Offset (> 0) of an HDF5 superblock that follows a user block, or None.

    HDF5 looks for its signature at 0 and then at 512, 1024, 2048, ... (every power of two from
    512 up to the end of the file; HDF5 File Format Specification, "Disk Format: Level 0A",
    and libhdf5's ``H5FD_locate_signature``), so that is where we look too: about 20 reads of
    8 bytes for a terabyte. ``read_at(offset, n)`` returns the bytes at ``offset``.
    """
    off = 512
    while off + 8 <= size:
        if read_at(off, 8) == HDF5_MAGIC:
            return off
        off *= 2
    return None


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
#: Methods plain chat formatting calls (string, dict and list readers in real HF/llama.cpp
#: templates). ``format``/``format_map`` are not here: ``'{0.__class__}'.format(x)`` reaches
#: attributes from inside a string, and no chat template we know needs them.
SAFE_TEMPLATE_METHODS = frozenset({
    "strip", "lstrip", "rstrip", "split", "rsplit", "startswith", "endswith", "lower", "upper",
    "title", "capitalize", "replace", "join", "items", "keys", "values", "get", "count",
    "find", "rfind", "index", "append", "splitlines", "isdigit", "isspace", "isalpha",
    "isalnum", "islower", "isupper", "removeprefix", "removesuffix",
})
#: Functions chat templates call: HF's ``raise_exception`` and ``strftime_now``, Jinja's
#: ``range``/``namespace``/``dict``, llama.cpp's ``len``; plus macros the template defines.
SAFE_TEMPLATE_CALLS = frozenset({"raise_exception", "range", "namespace", "dict",
                                 "strftime_now", "len"})
#: Jinja globals that reach Python objects with code attributes (the usual SSTI entry points).
UNSAFE_TEMPLATE_NAMES = frozenset({"cycler", "joiner", "lipsum", "self", "config", "request",
                                   "url_for", "get_flashed_messages", "g", "session"})
#: Attributes that lead from an object to frames, code or module namespaces without an
#: underscore (refused even though the dynamic-lookup rules already close every way to them).
UNSAFE_TEMPLATE_ATTRS = frozenset({
    "mro", "gi_frame", "gi_code", "cr_frame", "cr_code", "ag_frame", "ag_code", "f_globals",
    "f_locals", "f_builtins", "f_back", "f_code", "tb_frame", "tb_next", "func_globals",
    "func_code", "im_func", "im_self", "co_code", "popen", "exec_module", "load_module",
    "import_module",
})
#: Jinja's built-in filters other than ``attr`` (judged on its own): the ones a template can use.
SAFE_TEMPLATE_FILTERS = frozenset({
    "abs", "batch", "capitalize", "center", "count", "d", "default", "dictsort", "e", "escape",
    "filesizeformat", "first", "float", "forceescape", "format", "groupby", "indent", "int",
    "items", "join", "last", "length", "list", "lower", "map", "max", "min", "pprint",
    "random", "reject", "rejectattr", "replace", "reverse", "round", "safe", "select",
    "selectattr", "slice", "sort", "string", "striptags", "sum", "title", "tojson", "trim",
    "truncate", "unique", "upper", "urlencode", "urlize", "wordcount", "wordwrap", "xmlattr",
})
#: Filters that look attributes up by a (dotted) string argument: Jinja's make_attrgetter
#: splits "a.__class__" on dots, so every part of every string argument is checked.
ATTRIBUTE_FILTERS = frozenset({"map", "selectattr", "rejectattr", "sort", "groupby", "sum",
                               "unique", "min", "max", "join"})
#: Loop attributes that are numbers (safe as item keys).
_NUMERIC_LOOP_ATTRS = frozenset({"index", "index0", "revindex", "revindex0", "length",
                                 "depth", "depth0"})
_NUMERIC_FILTERS = frozenset({"length", "count", "int", "float", "abs", "round", "wordcount"})


def _jinja_env() -> Any:
    """A parse-only Jinja environment with what HF's chat-template environment adds to the
    grammar: ``loopcontrols`` (``break``/``continue``) and the ``{% generation %}`` block of
    transformers' AssistantTracker (parsed as a plain scope)."""
    from jinja2 import Environment, nodes
    from jinja2.ext import Extension

    class _GenerationTag(Extension):
        tags = {"generation"}  # noqa: RUF012 - jinja2's Extension API declares it this way

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.Scope(body, lineno=lineno)

    return Environment(extensions=["jinja2.ext.loopcontrols", _GenerationTag])


def _plain_name(value: object) -> bool:
    """A string that names nothing private: no part of it (split on '.') starts with '_'."""
    return isinstance(value, str) and not any(p.startswith("_") for p in value.split("."))


class _TemplateJudge:
    """Walks a parsed chat template and records everything that reaches past formatting.

    The rule is positive: attribute and item lookups must use constant, non-underscore keys
    (or provably numeric ones), calls must name an allowlisted method or function, filters
    must be Jinja's own with constant attribute arguments. Whatever builds a dunder name --
    ``~``, ``+``, ``join``, ``format``, ``dict(__cla=1)``, a ``set`` or a loop -- can only use
    it through a dynamic lookup, and every dynamic lookup is refused.
    """

    def __init__(self, where: str) -> None:
        from jinja2 import nodes

        self.n = nodes
        self.where = where
        self.found: list[Construct] = []
        self.macros: set[str] = set()
        self.numeric_names: set[str] = set()
        n = nodes
        self.allowed = (
            n.Template, n.Output, n.TemplateData, n.For, n.If, n.Macro, n.Assign, n.AssignBlock,
            n.With, n.Scope, n.FilterBlock, n.Break, n.Continue, n.ScopedEvalContextModifier,
            n.EvalContextModifier, n.Const, n.Name, n.NSRef, n.Getattr, n.Getitem, n.Slice,
            n.Call, n.Filter, n.Test, n.CondExpr, n.Tuple, n.List, n.Dict, n.Pair, n.Keyword,
            n.Concat, n.Compare, n.Operand, n.And, n.Or, n.Not, n.Neg, n.Pos, n.Add, n.Sub,
            n.Mul, n.Div, n.FloorDiv, n.Mod, n.Pow,
        )

    def add(self, name: str, reason: str) -> None:
        self.found.append(Construct("chat_template", "jinja2", name, f"{self.where}: {reason}"))

    def prepare(self, ast: Any) -> None:
        n = self.n
        self.macros = {m.name for m in ast.find_all(n.Macro)}
        # Names bound only as targets of `for x in range(...)` loops are numbers.
        bound: dict[str, list[bool]] = {}
        for node in ast.find_all((n.For, n.Assign, n.AssignBlock, n.With, n.Macro)):
            from_range = (isinstance(node, n.For) and isinstance(node.iter, n.Call)
                          and isinstance(node.iter.node, n.Name) and node.iter.node.name == "range")
            targets = (node.target if isinstance(node, n.For | n.Assign | n.AssignBlock)
                       else None)
            if targets is None:  # With / Macro: their own Name nodes
                names = [a.name for a in [*getattr(node, "args", []),
                                          *getattr(node, "targets", [])]
                         if isinstance(a, n.Name)]
            elif isinstance(targets, n.Name):
                names = [targets.name]
            else:  # a tuple target (find_all yields descendants only)
                names = [t.name for t in targets.find_all(n.Name)]
            for name in names:
                bound.setdefault(name, []).append(from_range)
        self.numeric_names = {k for k, v in bound.items() if all(v)}

    def numeric(self, e: Any) -> bool:
        """True when ``e`` can only evaluate to a number (or fail): a safe item key."""
        n = self.n
        if isinstance(e, n.Const):
            return isinstance(e.value, int | float)
        if isinstance(e, n.Neg | n.Pos):
            return self.numeric(e.node)
        if isinstance(e, n.Sub | n.Div | n.FloorDiv | n.Pow):
            return True  # no str/list result exists for these operators
        if isinstance(e, n.Add | n.Mul | n.Mod):
            return self.numeric(e.left) and self.numeric(e.right)
        if isinstance(e, n.Getattr):
            return (isinstance(e.node, n.Name) and e.node.name == "loop"
                    and e.attr in _NUMERIC_LOOP_ATTRS)
        if isinstance(e, n.Filter):
            return e.name in _NUMERIC_FILTERS
        if isinstance(e, n.Call):
            return isinstance(e.node, n.Name) and e.node.name == "len"
        if isinstance(e, n.Name):
            return e.name in self.numeric_names
        if isinstance(e, n.CondExpr):
            return self.numeric(e.expr1) and (e.expr2 is None or self.numeric(e.expr2))
        return False

    def key_ok(self, key: Any) -> bool:
        n = self.n
        if isinstance(key, n.Const):
            if isinstance(key.value, str):
                return not key.value.startswith("_")
            return isinstance(key.value, int | float) or key.value is None
        if isinstance(key, n.Slice):
            return all(part is None or self.numeric(part)
                       for part in (key.start, key.stop, key.step))
        return self.numeric(key)

    def visit(self, ast: Any) -> None:
        n = self.n
        for node in ast.find_all(n.Node):
            self.judge(node)

    def judge(self, node: Any) -> None:
        n = self.n
        if isinstance(node, n.Extends | n.Include | n.Import | n.FromImport):
            self.add(type(node).__name__.lower(),
                     f"uses {{% {type(node).__name__.lower()} %}} (loads other templates)")
            return
        if isinstance(node, n.Block | n.CallBlock):
            self.add(type(node).__name__.lower(),
                     f"uses a {type(node).__name__} (reaches self / caller machinery)")
            return
        if not isinstance(node, self.allowed):
            self.add(type(node).__name__, f"contains an unexpected construct "
                     f"{type(node).__name__}")
            return
        if isinstance(node, n.Getattr):
            if node.attr.startswith("_") or node.attr in UNSAFE_TEMPLATE_ATTRS:
                self.add(node.attr, f"reads attribute {node.attr!r}")
        elif isinstance(node, n.NSRef):
            if node.attr.startswith("_"):
                self.add(node.attr, f"sets namespace attribute {node.attr!r}")
        elif isinstance(node, n.Getitem):
            if not self.key_ok(node.arg):
                key = node.arg
                label = (key.value if isinstance(key, n.Const) else "getitem")
                self.add(str(label), "looks an item up by a computed or underscore key "
                         "(Jinja falls back to attributes)")
        elif isinstance(node, n.Name):
            if node.name in UNSAFE_TEMPLATE_NAMES or node.name.startswith("_"):
                self.add(node.name, f"uses the name {node.name!r}")
        elif isinstance(node, n.Keyword):
            if node.key.startswith("_"):
                self.add(node.key, f"passes the keyword argument {node.key!r}")
        elif isinstance(node, n.Call):
            self.judge_call(node)
        elif isinstance(node, n.Filter):  # also the filter of a FilterBlock (a child node)
            self.judge_filter(node)
        elif isinstance(node, n.Macro) and node.name.startswith("_"):
            self.add(node.name, f"defines the macro {node.name!r}")

    def judge_call(self, node: Any) -> None:
        n = self.n
        if node.dyn_args is not None or node.dyn_kwargs is not None:
            self.add("call", "calls with *args/**kwargs (arguments not visible statically)")
        target = node.node
        if isinstance(target, n.Getattr):
            if target.attr not in SAFE_TEMPLATE_METHODS:
                self.add(target.attr, f"calls method {target.attr!r}")
            for arg in node.args if target.attr == "get" else []:
                if isinstance(arg, n.Const) and isinstance(arg.value, str) and (
                        arg.value.startswith("_")):
                    self.add(arg.value, f"reads item {arg.value!r} through get()")
        elif isinstance(target, n.Name):
            if target.name not in SAFE_TEMPLATE_CALLS and target.name not in self.macros:
                self.add(target.name, f"calls {target.name!r}")
        else:
            self.add("call", "calls a computed callable")

    def judge_filter(self, node: Any) -> None:
        n = self.n
        args = [*node.args, *(kw.value for kw in node.kwargs)]
        if node.dyn_args is not None or node.dyn_kwargs is not None:
            self.add(node.name, f"filter {node.name!r} with *args/**kwargs")
        if node.name == "attr":
            if not (len(args) == 1 and isinstance(args[0], n.Const)
                    and isinstance(args[0].value, str) and args[0].value.isidentifier()
                    and not args[0].value.startswith("_")):
                self.add("attr", "uses the filter 'attr' with a computed or underscore name")
            return
        if node.name not in SAFE_TEMPLATE_FILTERS:
            self.add(node.name, f"uses the filter {node.name!r}, not one of Jinja's own")
            return
        if node.name not in ATTRIBUTE_FILTERS:
            return
        if node.name == "map" and node.args and not node.kwargs:
            # map('filtername', *args): the filter it applies must itself pass.
            first = node.args[0]
            if not (isinstance(first, n.Const) and isinstance(first.value, str)):
                self.add("map", "filter 'map' applies a computed filter name")
                return
            inner = n.Filter(None, first.value, node.args[1:], [], None, None)
            self.judge_filter(inner)
            return
        test_args = (node.args[2:] if node.name in ("selectattr", "rejectattr") else [])
        for arg in args:
            if any(arg is t for t in test_args):
                continue  # selectattr('role', 'equalto', value): the value is data
            if not isinstance(arg, n.Const):
                self.add(node.name, f"filter {node.name!r} with a computed argument")
            elif not _plain_name(arg.value) and isinstance(arg.value, str):
                self.add(str(arg.value), f"filter {node.name!r} reaches attribute "
                         f"{arg.value!r}")


def check_chat_template(template: str, where: str) -> list[Construct]:
    """Parse a Jinja chat template with Jinja's own parser (never render it) and walk the AST.

    Refused: attribute or item lookups by computed or underscore keys (only constant names,
    ints and numeric expressions pass), calls other than allowlisted string/dict methods, the
    helpers chat templates use and the template's own macros, Jinja globals that lead to
    Python internals (``cycler``, ``lipsum``, ``self``, ...), the ``attr`` filter with anything
    but a constant plain name, attribute filters with computed or dotted-underscore arguments,
    filters that are not Jinja's, ``include``/``import``/``extends``/``block``/``call`` blocks.
    Returns one :class:`Construct` per problem (empty: clean); raises :class:`ParserMissing`
    without jinja2.
    """
    try:
        from jinja2.exceptions import TemplateSyntaxError
    except ImportError as exc:
        raise ParserMissing("jinja2 is not installed") from exc
    try:
        ast = _jinja_env().parse(template)
    except TemplateSyntaxError as exc:
        return [Construct("chat_template", "jinja2", "syntax",
                          f"{where}: chat template does not parse: {exc}")]
    except RecursionError:
        return [Construct("chat_template", "jinja2", "syntax",
                          f"{where}: chat template nests too deeply to parse")]
    judge = _TemplateJudge(where)
    try:
        judge.prepare(ast)
        judge.visit(ast)
    except RecursionError:
        judge.add("depth", "chat template nests too deeply to judge")
    return judge.found


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
