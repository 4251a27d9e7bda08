"""Hand-assembled attack pickles (never unpickled): every trick must be caught."""

from __future__ import annotations

import copyreg
import pickle
import struct
from pathlib import Path

import pytest
import scan_asm as a

from chainproof.scan import FileResult, scan_path


def scan_bytes(tmp_path: Path, data: bytes, name: str = "model.pkl") -> FileResult:
    p = tmp_path / name
    p.write_bytes(data)
    report = scan_path(p)
    assert len(report.files) == 1
    return report.files[0]


def names(result: FileResult) -> set[str]:
    return {f"{f.module}.{f.name}" for f in result.findings}


DANGEROUS = [
    ("os", "system"),
    ("posix", "system"),
    ("nt", "system"),
    ("subprocess", "Popen"),
    ("subprocess", "check_output"),
    ("builtins", "eval"),
    ("builtins", "exec"),
    ("builtins", "compile"),
    ("builtins", "__import__"),
    ("builtins", "open"),
    ("builtins", "getattr"),
    ("builtins", "setattr"),
    ("builtins", "type"),
    ("builtins", "breakpoint"),
    ("timeit", "timeit"),
    ("cProfile", "run"),
    ("profile", "run"),
    ("pydoc", "pipepager"),
    ("importlib", "import_module"),
    ("marshal", "loads"),
    ("_posixsubprocess", "fork_exec"),
    ("operator", "attrgetter"),
    ("operator", "methodcaller"),
    ("functools", "partial"),
    ("functools", "reduce"),
    ("pickle", "loads"),
    ("_pickle", "loads"),
    ("torch", "load"),
    ("torch.serialization", "load"),
    ("torch.hub", "load"),
    ("torch.jit", "load"),
    ("numpy", "load"),
    ("numpy.lib.npyio", "load"),
    ("numpy.testing._private.utils", "runstring"),
    ("numpy.f2py.diagnose", "run_command"),
    ("joblib", "load"),
    ("runpy", "run_path"),
    ("runpy", "_run_code"),
    ("code", "interact"),
    ("code", "InteractiveInterpreter"),
    ("pdb", "run"),
    ("bdb", "Bdb"),
    ("venv", "create"),
    ("ensurepip", "bootstrap"),
    ("idlelib.pyshell", "main"),
    ("shutil", "rmtree"),
    ("asyncio", "create_subprocess_shell"),
    ("asyncio.unix_events", "_UnixSubprocessTransport"),
    ("ctypes", "CDLL"),
    ("webbrowser", "open"),
    ("requests", "get"),
    ("requests.api", "get"),
    ("http.client", "HTTPSConnection"),
    ("socket", "create_connection"),
    ("sys", "exit"),
    ("pandas", "read_pickle"),
    ("pandas.io.pytables", "HDFStore"),
    ("pandas", "ExcelWriter"),
    ("sklearn.utils._testing", "TempMemmap"),
    ("sklearn.utils._testing", "assert_run_python_script"),
    ("sklearn.callback._transport", "Client"),
    ("sklearn.utils.fixes", "Path"),
    ("sklearn.utils._repr_html.estimator", "Path"),
    ("sklearn.datasets", "fetch_openml"),
    ("sklearn.externals._packaging.version", "Version"),
    ("sklearn.tests.test_base", "T"),
    ("sklearn", "Pipeline"),
    ("sklearnevil", "Foo"),
    ("sklearn.linear_model", "load"),
    ("torch.nn.modules.module", "Module"),
    ("torch.utils.cpp_extension", "load_inline"),
    ("copyreg", "add_extension"),
    ("_codecs", "decode"),
    ("codecs", "open"),
    ("io", "FileIO"),
    ("logging", "FileHandler"),
    ("uuid", "_get_command_stdout"),
    ("imaplib", "IMAP4"),
    ("distutils.file_util", "write_file"),
    ("lib2to3.pgen2.pgen", "ParserGenerator"),
    ("types", "CodeType"),
    ("types", "FunctionType"),
    ("zipimport", "zipimporter"),
    ("multiprocessing.connection", "Client"),
    ("xmlrpc.client", "ServerProxy"),
    ("ftplib", "FTP"),
    ("smtplib", "SMTP"),
    ("telnetlib", "Telnet"),
    ("trace", "Trace"),
    ("doctest", "debug_script"),
    ("site", "main"),
    ("os", "execv"),
    ("pty", "spawn"),
]


@pytest.mark.parametrize(("module", "name"), DANGEROUS, ids=[f"{m}.{n}" for m, n in DANGEROUS])
def test_dangerous_callable_protocol4(tmp_path: Path, module: str, name: str) -> None:
    r = scan_bytes(tmp_path, a.call1(module, name, "echo pwned"))
    assert r.verdict == "malicious"
    (f,) = r.findings
    assert (f.module, f.name, f.opcode) == (module, name, "STACK_GLOBAL")
    assert (
        f.severity == "critical"
        and f.stream_index == 0
        and f.offset == 2 + 2 + len(module) + 2 + len(name)
    )


@pytest.mark.parametrize(
    ("module", "name"), DANGEROUS[:40], ids=[f"{m}.{n}" for m, n in DANGEROUS[:40]]
)
def test_dangerous_callable_protocol0_global(tmp_path: Path, module: str, name: str) -> None:
    r = scan_bytes(tmp_path, a.call0(module, name, "echo pwned"))
    assert r.verdict == "malicious"
    assert (r.findings[0].module, r.findings[0].name, r.findings[0].opcode) == (
        module,
        name,
        "GLOBAL",
    )
    assert r.findings[0].offset == 0


def test_protocol2_python2_names_are_mapped_like_pickle_does(tmp_path: Path) -> None:
    r = scan_bytes(tmp_path, a.proto(2) + a.call0("__builtin__", "eval", "1")[:-1] + a.STOP)
    assert names(r) == {"builtins.eval"}
    benign = a.proto(2) + a.glob("__builtin__", "set") + a.EMPTY_TUPLE + a.REDUCE + a.STOP
    assert scan_bytes(tmp_path, benign).verdict == "clean"
    # Protocol >= 3 does not map: __builtin__ is then just an unknown module.
    r4 = scan_bytes(tmp_path, a.proto(4) + benign[2:])
    assert names(r4) == {"__builtin__.set"}


def test_inst_and_obj_instead_of_global(tmp_path: Path) -> None:
    inst = a.MARK + a.string0("echo hi") + a.inst("os", "system") + a.STOP
    r = scan_bytes(tmp_path, inst)
    assert r.verdict == "malicious" and r.findings[0].opcode == "INST"
    assert r.findings[0].severity == "critical"
    obj = (
        a.proto(1)
        + a.MARK
        + a.glob("subprocess", "getoutput")
        + a.string0("echo hi")
        + a.OBJ
        + a.STOP
    )
    r = scan_bytes(tmp_path, obj)
    assert names(r) == {"subprocess.getoutput"} and r.findings[0].severity == "critical"


def test_newobj_and_newobj_ex(tmp_path: Path) -> None:
    data = (
        a.proto(4)
        + a.stack_global("subprocess", "Popen")
        + a.MARK
        + a.sbu("echo")
        + a.TUPLE
        + a.NEWOBJ
        + a.STOP
    )
    assert names(scan_bytes(tmp_path, data)) == {"subprocess.Popen"}
    data = (
        a.proto(4)
        + a.stack_global("subprocess", "Popen")
        + a.sbu("echo")
        + a.TUPLE1
        + a.EMPTY_DICT
        + a.NEWOBJ_EX
        + a.STOP
    )
    assert names(scan_bytes(tmp_path, data)) == {"subprocess.Popen"}


@pytest.mark.parametrize("variant", ["binput", "memoize", "long", "text"])
def test_names_assembled_through_the_memo(tmp_path: Path, variant: str) -> None:
    if variant == "binput":
        body = (
            a.sbu("os")
            + a.binput(7)
            + a.sbu("system")
            + a.binput(9)
            + a.POP
            + a.POP
            + a.sbu("decoy")
            + a.POP
            + a.binget(7)
            + a.binget(9)
        )
    elif variant == "memoize":
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
        )
    elif variant == "long":
        body = (
            a.binunicode("os")
            + a.long_binput(70000)
            + a.POP
            + a.binunicode("system")
            + a.long_binput(3)
            + a.POP
            + a.long_binget(70000)
            + a.long_binget(3)
        )
    else:
        body = (
            a.unicode0("os")
            + a.put0(1)
            + a.POP
            + a.unicode0("system")
            + a.put0(2)
            + a.POP
            + a.get0(1)
            + a.get0(2)
        )
    data = a.proto(4) + body + b"\x93" + a.sbu("echo") + a.TUPLE1 + a.REDUCE + a.STOP
    r = scan_bytes(tmp_path, data)
    assert r.verdict == "malicious"
    assert names(r) == {"os.system"}


def test_stack_global_with_dup_and_mark_games(tmp_path: Path) -> None:
    # MARK/POP_MARK and DUP shuffle the stack; the scanner must follow them exactly.
    body = (
        a.sbu("builtins")
        + a.MARK
        + a.sbu("set")
        + b"1"
        + a.sbu("exec")
        + a.DUP
        + a.POP
        + b"\x93"
        + a.sbu("x")
        + a.TUPLE1
        + a.REDUCE
    )
    r = scan_bytes(tmp_path, a.proto(4) + body + a.STOP)
    assert names(r) == {"builtins.exec"}


def test_getattr_import_chain(tmp_path: Path) -> None:
    data = (
        a.glob("builtins", "getattr")
        + a.MARK
        + a.glob("builtins", "__import__")
        + a.MARK
        + a.string0("os")
        + a.TUPLE
        + a.REDUCE
        + a.string0("system")
        + a.TUPLE
        + a.REDUCE
        + a.MARK
        + a.string0("echo pwned")
        + a.TUPLE
        + a.REDUCE
        + a.STOP
    )
    r = scan_bytes(tmp_path, data)
    assert r.verdict == "malicious"
    assert {"builtins.getattr", "builtins.__import__", "?.?"} <= names(r)
    computed = [f for f in r.findings if f.module == "?"]
    assert computed and "not a global reference" in computed[0].reason


def test_unresolvable_stack_global_operands(tmp_path: Path) -> None:
    # The module name is the *result* of an allowlisted call, not a constant.
    data = (
        a.proto(4)
        + a.stack_global("builtins", "str")
        + a.sbu("os")
        + a.TUPLE1
        + a.REDUCE
        + a.sbu("system")
        + b"\x93"
        + a.sbu("echo")
        + a.TUPLE1
        + a.REDUCE
        + a.STOP
    )
    r = scan_bytes(tmp_path, data)
    assert r.verdict == "malicious"
    assert any("not string constants" in f.reason for f in r.findings)
    # Byte-string operands are not str either.
    data = (
        a.proto(4)
        + a.short_binbytes(b"os")
        + a.short_binbytes(b"system")
        + b"\x93"
        + a.EMPTY_TUPLE
        + a.REDUCE
        + a.STOP
    )
    assert scan_bytes(tmp_path, data).verdict == "malicious"


def test_binstring_and_string_operands_resolve(tmp_path: Path) -> None:
    data = (
        a.proto(4)
        + a.binstring("os")
        + a.string0("system")
        + b"\x93"
        + a.EMPTY_TUPLE
        + a.REDUCE
        + a.STOP
    )
    assert names(scan_bytes(tmp_path, data)) == {"os.system"}


def test_malicious_stream_after_a_benign_one(tmp_path: Path) -> None:
    benign = pickle.dumps({"weights": [1.0, 2.0], "name": "ok"}, protocol=4)
    r = scan_bytes(tmp_path, benign + a.call1("os", "system", "echo pwned"))
    assert r.verdict == "malicious"
    (f,) = r.findings
    assert f.stream_index == 1 and f.offset > len(benign)
    # ... and after two benign ones, in protocol 0
    r = scan_bytes(tmp_path, benign + pickle.dumps(3, protocol=0) + a.call0("os", "system", "x"))
    assert [f.stream_index for f in r.findings] == [2]


def test_payload_nested_in_pickle_loads_bytes(tmp_path: Path) -> None:
    inner = a.call1("os", "system", "echo nested")
    data = (
        a.proto(4)
        + a.stack_global("pickle", "loads")
        + a.binbytes(inner)
        + a.TUPLE1
        + a.REDUCE
        + a.STOP
    )
    r = scan_bytes(tmp_path, data)
    assert r.verdict == "malicious"
    assert names(r) == {"pickle.loads", "os.system"}
    nested = next(f for f in r.findings if f.name == "system")
    assert "nested pickle" in nested.reason and "pickle.loads" in nested.reason
    # Protocol 2 style: bytes encoded as latin-1 text through _codecs.encode is still found.
    data = (
        a.proto(2)
        + a.glob("_pickle", "loads")
        + a.glob("_codecs", "encode")
        + a.binunicode(inner.decode("latin-1"))
        + a.binunicode("latin1")
        + a.TUPLE2
        + a.REDUCE
        + a.TUPLE1
        + a.REDUCE
        + a.STOP
    )
    r = scan_bytes(tmp_path, data)
    assert {"_pickle.loads"} <= names(r)


def test_extension_codes(tmp_path: Path) -> None:
    for op in (a.ext1(1), a.ext2(300), a.ext4(70000)):
        r = scan_bytes(tmp_path, a.proto(2) + op + a.EMPTY_TUPLE + a.REDUCE + a.STOP)
        assert r.verdict == "malicious"
        assert "extension code" in r.findings[0].reason
    # A registered code resolves to its name and is judged like any global.
    copyreg.add_extension("os", "system", 0xF1)
    copyreg.add_extension("collections", "OrderedDict", 0xF2)
    try:
        r = scan_bytes(tmp_path, a.proto(2) + a.ext1(0xF1) + a.EMPTY_TUPLE + a.REDUCE + a.STOP)
        assert names(r) == {"os.system"} and r.findings[0].opcode == "EXT1"
        ok = a.proto(2) + a.ext1(0xF2) + a.EMPTY_TUPLE + a.REDUCE + a.STOP
        assert scan_bytes(tmp_path, ok).verdict == "clean"
    finally:
        copyreg.remove_extension("os", "system", 0xF1)
        copyreg.remove_extension("collections", "OrderedDict", 0xF2)
    r = scan_bytes(tmp_path, a.proto(2) + a.ext4(-5) + a.STOP)
    assert r.verdict == "malformed"


@pytest.mark.parametrize(
    "raw",
    [
        b"cos \nsystem\n",
        b"cos\r\nsystem\r\n",
        b"c os\nsystem\n",
        b"cos\nsystem \n",
        b"cos\n system\n",
        b"cos\t\nsystem\n",
        b"cbuiltins\r\nset\r\n",
        b"c\nsystem\n",
    ],
)
def test_protocol0_global_with_odd_whitespace_never_passes(tmp_path: Path, raw: bytes) -> None:
    r = scan_bytes(tmp_path, raw + a.MARK + a.string0("echo") + a.TUPLE + a.REDUCE + a.STOP)
    assert r.verdict == "malicious"


def test_global_name_not_utf8_is_malformed(tmp_path: Path) -> None:
    r = scan_bytes(tmp_path, b"cos\n\xff\xfe\n" + a.STOP)
    assert r.verdict in ("malformed", "unknown")
    assert r.error


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("collections", "OrderedDict.fromkeys"),
        ("builtins", "set.__init__"),
        ("numpy", "ndarray.__reduce__.__globals__"),
        ("torch._utils", "_rebuild_tensor_v2.__globals__"),
    ],
)
def test_dotted_names_reach_attributes_and_never_pass(
    tmp_path: Path, module: str, name: str
) -> None:
    assert scan_bytes(tmp_path, a.call1(module, name, "x")).verdict == "malicious"


def test_build_and_setitem_on_a_global_object(tmp_path: Path) -> None:
    # BUILD with slot state on a class does setattr(cls, ...): overwriting library attributes.
    data = (
        a.proto(4)
        + a.stack_global("collections", "OrderedDict")
        + a.NONE
        + a.EMPTY_DICT
        + a.sbu("__reduce__")
        + a.NONE
        + a.SETITEM
        + a.TUPLE2
        + a.BUILD
        + a.STOP
    )
    r = scan_bytes(tmp_path, data)
    assert r.verdict == "malicious" and "mutates a global" in r.findings[0].reason
    data = (
        a.proto(4) + a.stack_global("numpy", "dtype") + a.sbu("k") + a.sbu("v") + a.SETITEM + a.STOP
    )
    assert scan_bytes(tmp_path, data).verdict == "malicious"


def test_call_of_a_computed_value(tmp_path: Path) -> None:
    data = a.proto(4) + a.EMPTY_DICT + a.EMPTY_TUPLE + a.REDUCE + a.STOP
    r = scan_bytes(tmp_path, data)
    assert r.verdict == "malicious" and r.findings[0].module == "?"


def test_copyreg_reconstructor_needs_allowlisted_class_arguments(tmp_path: Path) -> None:
    ok = (
        a.glob("copyreg", "_reconstructor")
        + a.MARK
        + a.glob("collections", "OrderedDict")
        + a.glob("builtins", "object")
        + b"N"
        + a.TUPLE
        + a.REDUCE
        + a.STOP
    )
    assert scan_bytes(tmp_path, ok).verdict == "clean"
    bad = (
        a.glob("copyreg", "_reconstructor")
        + a.MARK
        + a.glob("builtins", "str")
        + a.MARK
        + a.string0("x")
        + a.TUPLE
        + a.REDUCE
        + a.glob("builtins", "object")
        + b"N"
        + a.TUPLE
        + a.REDUCE
        + a.STOP
    )
    r = scan_bytes(tmp_path, bad)
    assert r.verdict == "malicious" and r.findings[0].name == "_reconstructor"


def test_codecs_encode_only_latin1(tmp_path: Path) -> None:
    ok = (
        a.proto(2)
        + a.glob("_codecs", "encode")
        + a.binunicode("abc")
        + a.binunicode("latin1")
        + a.TUPLE2
        + a.REDUCE
        + a.STOP
    )
    assert scan_bytes(tmp_path, ok).verdict == "clean"
    bad = (
        a.proto(2)
        + a.glob("_codecs", "encode")
        + a.binunicode("abc")
        + a.binunicode("rot13")
        + a.TUPLE2
        + a.REDUCE
        + a.STOP
    )
    assert scan_bytes(tmp_path, bad).verdict == "malicious"


def test_payload_then_truncation_is_still_malicious(tmp_path: Path) -> None:
    # pickle runs REDUCE before it notices the stream is broken.
    r = scan_bytes(tmp_path, a.call1("os", "system", "echo")[:-1] + b"X\xff\xff\xff\x7f")
    assert r.verdict == "malicious" and r.error
    # A bare reference to an unknown module also runs its import before the break.
    r = scan_bytes(tmp_path, a.proto(4) + a.stack_global("antigravity", "x") + b"X\xff\xff")
    assert r.verdict == "malicious"
    # ... but a builtin that is never called before the stream breaks is just malformed.
    r = scan_bytes(tmp_path, a.glob("builtins", "exec") + a.MARK + b"X\xff\xff\xff\x7fabc")
    assert r.verdict == "malformed"
    assert r.findings and r.findings[0].severity == "medium"


def test_trailing_garbage_after_a_benign_stream_is_malformed(tmp_path: Path) -> None:
    r = scan_bytes(tmp_path, pickle.dumps([1, 2], protocol=4) + b"\xff\xfe garbage")
    assert r.verdict == "malformed" and "not a pickle stream" in (r.error or "")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello world",
        b"\xff" * 64,
        a.proto(4) + b"\x8e" + struct.pack("<Q", 1 << 60),  # BINBYTES8 claiming an exabyte
        a.proto(4) + a.MARK * 100_000 + a.STOP,
        a.proto(9) + a.STOP,
        a.proto(4) + a.binget(3) + a.STOP,
        a.proto(4) + a.SETITEMS + a.STOP,
        a.proto(4) + a.REDUCE,
    ],
    ids=[
        "empty",
        "text",
        "ff",
        "binbytes8",
        "marks",
        "proto9",
        "badget",
        "setitems",
        "reduce-empty",
    ],
)
def test_hostile_structure_never_crashes_and_never_passes(tmp_path: Path, data: bytes) -> None:
    r = scan_bytes(tmp_path, data)
    assert r.verdict in ("malformed", "unknown"), r
    assert r.error


def test_deep_but_valid_structure_is_clean(tmp_path: Path) -> None:
    data = a.proto(4) + a.sbu("x") * 50_000 + a.TUPLE1 * 40_000 + a.STOP
    assert scan_bytes(tmp_path, data).verdict == "clean"


@pytest.mark.parametrize("protocol", range(6))
def test_benign_builtin_values_every_protocol(tmp_path: Path, protocol: int) -> None:
    import collections

    value = {
        "s": {1, 2},
        "f": frozenset([3]),
        "sl": slice(1, 9, 2),
        "c": 2j,
        "ba": bytearray(b"xy"),
        "od": collections.OrderedDict(a=1),
        "b": b"raw",
        "t": (1, 2.5, None, True),
        "big": 2**80,
    }
    r = scan_bytes(tmp_path, pickle.dumps(value, protocol=protocol))
    assert r.verdict == "clean", r.findings


def test_getattr_only_on_allowlisted_globals_with_allowlisted_result(tmp_path: Path) -> None:
    def getattr_call(module: str, name: str, attr: str) -> bytes:
        return (
            a.proto(4)
            + a.stack_global("builtins", "getattr")
            + a.stack_global(module, name)
            + a.sbu(attr)
            + a.TUPLE2
            + a.REDUCE
        )

    ok = (
        getattr_call("zoneinfo", "ZoneInfo", "_unpickle")
        + a.sbu("UTC")
        + a.binint1(1)
        + a.TUPLE2
        + a.REDUCE
        + a.STOP
    )
    assert scan_bytes(tmp_path, ok).verdict == "clean"
    bad = getattr_call("collections", "OrderedDict", "fromkeys") + a.STOP
    r = scan_bytes(tmp_path, bad)
    assert names(r) == {"collections.OrderedDict.fromkeys"}
    # getattr on a computed value: the getattr itself is the finding.
    bad = (
        a.proto(4)
        + a.stack_global("builtins", "getattr")
        + a.stack_global("builtins", "str")
        + a.sbu("x")
        + a.TUPLE1
        + a.REDUCE
        + a.sbu("join")
        + a.TUPLE2
        + a.REDUCE
        + a.STOP
    )
    r = scan_bytes(tmp_path, bad)
    assert names(r) == {"builtins.getattr"} and r.findings[0].opcode == "STACK_GLOBAL"


def test_text_that_looks_like_a_global_is_not_an_attack(tmp_path: Path) -> None:
    # A vocabulary file starting with "c": GLOBAL 'at' 'dog', then the stream breaks.
    r = scan_bytes(tmp_path, b"cat\ndog\nmouse\nhorse\n", "vocab.txt")
    assert r.verdict in ("malformed", "unknown")


def test_sparse_memo_indices_switch_representation(tmp_path: Path) -> None:
    # BINPUT far ahead of the dense prefix, then MEMOIZE (index = number of entries, as in C).
    body = (
        a.sbu("os")
        + a.binput(200)
        + a.POP
        + a.sbu("system")
        + a.MEMOIZE
        + a.POP
        + a.binget(200)
        + a.binget(1)
        + b"\x93"
        + a.EMPTY_TUPLE
        + a.REDUCE
    )
    assert names(scan_bytes(tmp_path, a.proto(4) + body + a.STOP)) == {"os.system"}
    assert (
        scan_bytes(tmp_path, a.proto(4) + a.sbu("x") + a.MEMOIZE + a.binget(5) + a.STOP).verdict
        == "malformed"
    )
