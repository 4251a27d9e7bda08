"""Parsers for numpy ``.npy`` headers and safetensors, and the external-data location rule.

All of them read through :class:`~chainproof.scan._pickle.Source` and skip tensor bytes.
"""

from __future__ import annotations

import ast
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chainproof.scan._pickle import Source

NPY_MAGIC = b"\x93NUMPY"
_MAX_NPY_HEADER = 1 << 20


class FormatError(Exception):
    """The file is not valid in the format it claims (becomes a ``malformed`` verdict)."""


# ---- numpy .npy ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NpyHeader:
    descr: Any
    fortran_order: bool
    shape: tuple[int, ...]
    has_object: bool
    itemsize: int
    data_offset: int

    @property
    def nbytes(self) -> int:
        n = self.itemsize
        for d in self.shape:
            n *= d
        return n


def _descr_has_object(descr: Any) -> bool:
    if isinstance(descr, str):
        return descr.lstrip("<>=|").startswith("O")
    if isinstance(descr, list | tuple):
        return any(_descr_has_object(x) for x in descr)
    return False


def parse_npy_header(src: Source) -> NpyHeader:
    """Parse the header at the source's position (numpy's own rules, literal_eval only)."""
    head = src.read(8)
    if head is None or head[:6] != NPY_MAGIC:
        raise FormatError("not a .npy file (bad magic)")
    major = head[6]
    if major == 1:
        raw = src.read(2)
        hlen = struct.unpack("<H", raw)[0] if raw else -1
    elif major in (2, 3):
        raw = src.read(4)
        hlen = struct.unpack("<I", raw)[0] if raw else -1
    else:
        raise FormatError(f".npy format version {major} is not supported")
    if hlen < 0 or hlen > _MAX_NPY_HEADER:
        raise FormatError(f".npy header length {hlen} is not sane")
    text = src.read(hlen)
    if text is None:
        raise FormatError(".npy header is truncated")
    try:
        header = ast.literal_eval(text.decode("utf-8" if major == 3 else "latin-1"))
    except (ValueError, SyntaxError, UnicodeDecodeError, MemoryError, RecursionError) as exc:
        raise FormatError(f".npy header is not a Python literal: {exc}") from exc
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise FormatError(".npy header must have exactly descr, fortran_order and shape")
    shape = header["shape"]
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise FormatError(f".npy shape {shape!r} is not a tuple of non-negative ints")
    descr = header["descr"]
    has_object = _descr_has_object(descr)
    try:
        import numpy as np

        # np.dtype on a literal descr parses type strings only; it runs no code from the file.
        itemsize = int(np.dtype(descr).itemsize) if not has_object else 8
    except (TypeError, ValueError) as exc:
        raise FormatError(f".npy descr {descr!r} is not a valid dtype: {exc}") from exc
    return NpyHeader(
        descr, bool(header["fortran_order"]), shape, has_object, itemsize, src.offset()
    )


# ---- safetensors ---------------------------------------------------------------------------------

#: Bits per element of every dtype the safetensors format defines.
SAFETENSORS_DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "I16": 16,
    "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "F64": 64, "I64": 64,
    "U64": 64, "C64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}
MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024


def looks_like_safetensors(head: bytes, size: int | None) -> bool:
    if len(head) < 9:
        return False
    n = struct.unpack("<Q", head[:8])[0]
    if n < 2 or n > MAX_SAFETENSORS_HEADER or (size is not None and 8 + n > size):
        return False
    return head[8:9] == b"{"


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise FormatError(f"safetensors header has the key {k!r} twice")
        out[k] = v
    return out


def check_safetensors(src: Source, size: int | None) -> tuple[int, list[str]]:
    """Validate header and layout; returns (number of tensors, notes). Raises FormatError."""
    raw = src.read(8)
    if raw is None:
        raise FormatError("safetensors file is shorter than its 8-byte header length")
    n = struct.unpack("<Q", raw)[0]
    if n > MAX_SAFETENSORS_HEADER:
        raise FormatError(f"safetensors header length {n} exceeds {MAX_SAFETENSORS_HEADER}")
    if size is not None and 8 + n > size:
        raise FormatError(f"safetensors header length {n} runs past the end of the file")
    text = src.read(n)
    if text is None:
        raise FormatError("safetensors header is truncated")
    try:
        header = json.loads(text.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormatError(f"safetensors header is not valid JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise FormatError("safetensors header is not a JSON object")
    notes: list[str] = []
    meta = header.pop("__metadata__", None)
    if meta is not None and (
        not isinstance(meta, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())
    ):
        raise FormatError("safetensors __metadata__ must map strings to strings")
    spans: list[tuple[int, int, str]] = []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise FormatError(
                f"tensor {name!r}: entry must have exactly dtype, shape and data_offsets"
            )
        dtype, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in SAFETENSORS_DTYPE_BITS:
            raise FormatError(f"tensor {name!r}: unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise FormatError(f"tensor {name!r}: shape {shape!r} is not a list of ints >= 0")
        if (
            not isinstance(offs, list)
            or len(offs) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offs)
            or not 0 <= offs[0] <= offs[1]
        ):
            raise FormatError(f"tensor {name!r}: data_offsets {offs!r} are not [begin, end]")
        count = 1
        for d in shape:
            count *= d
        bits = count * SAFETENSORS_DTYPE_BITS[dtype]
        if bits % 8:
            raise FormatError(f"tensor {name!r}: {count} x {dtype} is not a whole number of bytes")
        if offs[1] - offs[0] != bits // 8:
            raise FormatError(
                f"tensor {name!r}: shape {shape} x {dtype} is {bits // 8} bytes but "
                f"data_offsets span {offs[1] - offs[0]}"
            )
        spans.append((offs[0], offs[1], name))
    spans.sort()
    cursor = 0
    for begin, end, name in spans:
        if begin != cursor:
            what = "overlaps the previous tensor" if begin < cursor else "leaves a gap"
            raise FormatError(f"tensor {name!r} at byte {begin} {what} (expected {cursor})")
        cursor = end
    if size is not None:
        body = size - 8 - n
        if cursor != body:
            raise FormatError(
                f"tensors cover {cursor} bytes but the file holds {body} bytes of data"
            )
    return len(spans), notes


# ---- external data locations (ONNX, HDF5) -------------------------------------------------------


def external_location_problem(location: str, model_dir: Path | None) -> str | None:
    """Why an ONNX external-data ``location`` is unsafe, or None if it stays in the model folder."""
    if not location:
        return "external data has an empty location"
    if "\x00" in location:
        return "external data location contains a NUL byte"
    norm = location.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":") or os.path.isabs(location):
        return f"external data location {location!r} is an absolute path"
    if any(part == ".." for part in norm.split("/")):
        return f"external data location {location!r} climbs out of the model folder with '..'"
    if model_dir is not None:
        base = os.path.realpath(model_dir)
        target = os.path.realpath(os.path.join(base, norm))
        if os.path.commonpath([base, target]) != base:
            return (
                f"external data location {location!r} resolves outside the model folder "
                "(symlink)"
            )
    return None
