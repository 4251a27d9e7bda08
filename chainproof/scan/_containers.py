"""Readers for container formats, written to read members the way the real loaders do.

Zip: :mod:`zipfile` is used only to parse the central directory. Member bytes are read like
PyTorch's reader (miniz) reads them: data offset = local header offset + 30 + the *local*
header's name and extra lengths; general-purpose flag bits and CRC-32 are ignored. Python's own
``ZipFile.open`` refuses members whose "encrypted" (0x1), "patched" (0x20) or "strong
encryption" (0x40) bits are set and raises on a CRC mismatch, which is exactly how malicious
checkpoints slipped past other scanners while ``torch.load`` still loaded them.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import IO

_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_LOCAL_MAGIC = b"PK\x03\x04"


class ContainerError(Exception):
    """A member cannot be read (unsupported compression, truncated, out of bounds)."""


@dataclass(frozen=True)
class ZipMember:
    name: str
    header_offset: int
    compress_type: int
    compress_size: int
    file_size: int
    flag_bits: int
    is_dir: bool

    @property
    def encrypted_flag(self) -> bool:
        return bool(self.flag_bits & 0x1)


def zip_members(fh: IO[bytes]) -> list[ZipMember]:
    """The central directory entries, in directory order. Raises zipfile.BadZipFile."""
    with zipfile.ZipFile(fh) as zf:
        return [
            ZipMember(
                name=i.filename,
                header_offset=i.header_offset,
                compress_type=i.compress_type,
                compress_size=i.compress_size,
                file_size=i.file_size,
                flag_bits=i.flag_bits,
                is_dir=i.is_dir(),
            )
            for i in zf.infolist()
        ]


class _Window(io.RawIOBase):
    """A read-only, seekable view of ``length`` bytes of ``fh`` starting at ``start``."""

    def __init__(self, fh: IO[bytes], start: int, length: int) -> None:
        self._fh = fh
        self._start = start
        self._len = length
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 0:
            new = offset
        elif whence == 1:
            new = self._pos + offset
        else:
            new = self._len + offset
        self._pos = max(0, new)
        return self._pos

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(b), self._len - self._pos)
        if n <= 0:
            return 0
        self._fh.seek(self._start + self._pos)
        data = self._fh.read(n)
        b[: len(data)] = data
        self._pos += len(data)
        return len(data)


class _Inflate(io.RawIOBase):
    """Streaming raw-deflate reader that stops at ``limit`` output bytes (zip-bomb bound)."""

    def __init__(self, raw: IO[bytes], limit: int) -> None:
        self._raw = raw
        self._d = zlib.decompressobj(-15)
        self._limit = limit
        self._out = 0
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            if self._d.eof:
                return 0
            data = self._d.unconsumed_tail
            if not data:
                data = self._raw.read(1 << 16)
                if not data:
                    self._pending = self._d.flush()
                    if not self._pending:
                        return 0
                    break
            # Bounded output per call: a small compressed input cannot balloon in memory.
            self._pending = self._d.decompress(data, 1 << 20)
        n = min(len(b), len(self._pending))
        b[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self._out += n
        if self._out > self._limit:
            raise ContainerError(
                f"member inflates beyond {self._limit} bytes (declared size exceeded)"
            )
        return n


class Prefixed(io.RawIOBase):
    """Replays ``prefix`` before the rest of ``rest`` (a stream that was already read from)."""

    def __init__(self, prefix: bytes, rest: IO[bytes]) -> None:
        self._prefix = prefix
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._prefix:
            n = min(len(b), len(self._prefix))
            b[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._rest.read(len(b))
        b[: len(data)] = data
        return len(data)


def open_member(fh: IO[bytes], member: ZipMember, file_size: int) -> tuple[IO[bytes], int | None]:
    """A binary stream of the member's uncompressed bytes and its length if known.

    Reads like PyTorch/miniz: ignores flag bits and CRC; uses the local header only for the
    data offset. Raises :class:`ContainerError` for anything it cannot read.
    """
    fh.seek(member.header_offset)
    head = fh.read(_LOCAL.size)
    if len(head) < _LOCAL.size or head[:4] != _LOCAL_MAGIC:
        raise ContainerError(
            f"member {member.name!r}: no local header at offset {member.header_offset}"
        )
    fields = _LOCAL.unpack(head)
    name_len, extra_len = fields[9], fields[10]
    data_start = member.header_offset + _LOCAL.size + name_len + extra_len
    if data_start + member.compress_size > file_size:
        raise ContainerError(f"member {member.name!r}: data runs past the end of the archive")
    window = _Window(fh, data_start, member.compress_size)
    if member.compress_type == zipfile.ZIP_STORED:
        return io.BufferedReader(window, 1 << 20), member.compress_size
    if member.compress_type == zipfile.ZIP_DEFLATED:
        # 1 KiB of slack: a member may not inflate past what its directory entry declares.
        inflate = _Inflate(io.BufferedReader(window, 1 << 20), member.file_size + 1024)
        return io.BufferedReader(inflate, 1 << 20), None
    raise ContainerError(
        f"member {member.name!r}: compression method {member.compress_type} is not supported"
    )
