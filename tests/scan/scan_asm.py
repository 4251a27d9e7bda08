"""Hand-assembled pickle opcodes for the scanner tests. Nothing here is ever unpickled."""

from __future__ import annotations

import struct
from pathlib import Path


def pickle_vectors_dir() -> Path | None:
    """`<repo>/../shared/vectors/pickles`, or None when the shared corpus is not beside the repo."""
    repo = Path(__file__).resolve().parents[2]
    path = (repo / ".." / "shared" / "vectors" / "pickles").resolve()
    return path if (path / "LABELS.tsv").is_file() else None


def proto(n: int) -> bytes:
    return b"\x80" + bytes([n])


def frame(n: int) -> bytes:
    return b"\x95" + struct.pack("<Q", n)


def sbu(s: str) -> bytes:
    """SHORT_BINUNICODE."""
    raw = s.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def binunicode(s: str) -> bytes:
    raw = s.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def unicode0(s: str) -> bytes:
    """Protocol 0 UNICODE (raw-unicode-escape, newline terminated)."""
    return b"V" + s.encode("raw-unicode-escape") + b"\n"


def string0(s: str) -> bytes:
    """Protocol 0 STRING (quoted)."""
    return b"S'" + s.encode() + b"'\n"


def binstring(s: str) -> bytes:
    raw = s.encode()
    return b"T" + struct.pack("<i", len(raw)) + raw


def short_binbytes(b: bytes) -> bytes:
    return b"C" + bytes([len(b)]) + b


def binbytes(b: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(b)) + b


def glob(module: str, name: str) -> bytes:
    """Protocol 0 GLOBAL."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def stack_global(module: str, name: str) -> bytes:
    return sbu(module) + sbu(name) + b"\x93"


MARK = b"("
STOP = b"."
REDUCE = b"R"
BUILD = b"b"
TUPLE = b"t"
TUPLE1 = b"\x85"
TUPLE2 = b"\x86"
TUPLE3 = b"\x87"
EMPTY_TUPLE = b")"
EMPTY_DICT = b"}"
EMPTY_LIST = b"]"
MEMOIZE = b"\x94"
NEWOBJ = b"\x81"
NEWOBJ_EX = b"\x92"
OBJ = b"o"
NONE = b"N"
POP = b"0"
DUP = b"2"
SETITEM = b"s"
SETITEMS = b"u"
APPEND = b"a"


def binput(i: int) -> bytes:
    return b"q" + bytes([i])


def binget(i: int) -> bytes:
    return b"h" + bytes([i])


def long_binput(i: int) -> bytes:
    return b"r" + struct.pack("<I", i)


def long_binget(i: int) -> bytes:
    return b"j" + struct.pack("<I", i)


def put0(i: int) -> bytes:
    return b"p" + str(i).encode() + b"\n"


def get0(i: int) -> bytes:
    return b"g" + str(i).encode() + b"\n"


def binint1(i: int) -> bytes:
    return b"K" + bytes([i])


def inst(module: str, name: str) -> bytes:
    return b"i" + module.encode() + b"\n" + name.encode() + b"\n"


def ext1(code: int) -> bytes:
    return b"\x82" + bytes([code])


def ext2(code: int) -> bytes:
    return b"\x83" + struct.pack("<H", code)


def ext4(code: int) -> bytes:
    return b"\x84" + struct.pack("<i", code)


def call1(module: str, name: str, arg: str, *, protocol: int = 4) -> bytes:
    """A complete stream calling module.name(arg) -- the classic payload shape."""
    return proto(protocol) + stack_global(module, name) + sbu(arg) + TUPLE1 + REDUCE + STOP


def call0(module: str, name: str, arg: str) -> bytes:
    """The same payload in protocol 0 text opcodes."""
    return glob(module, name) + MARK + string0(arg) + TUPLE + REDUCE + STOP
