"""Load a model file only after it scanned clean, with the safest loader for its format.

``safe_load(path)`` first runs :func:`~chainproof.scan.scan_path` on the file and refuses (raises)
unless the verdict is ``clean``. It then loads with a loader that cannot run code even if the
scanner missed something:

=====================  ======================================================================
format                 loader
=====================  ======================================================================
safetensors            ``safetensors.numpy.load_file`` if installed, else a numpy reader of the
                       (already validated) layout; returns ``dict[str, numpy.ndarray]``
                       (BF16/FP8 tensors as ``ml_dtypes`` arrays)
numpy ``.npy``/``.npz`` ``numpy.load(allow_pickle=False)``; object arrays are refused
PyTorch zip / legacy   ``torch.load(weights_only=True, map_location="cpu")`` (torch's own
                       restricted unpickler); needs torch
pickle / joblib        a restricted unpickler (``_unpickler``) that enforces the allowlist and
                       its argument rules again on the real objects (joblib files through a
                       restricted subclass of joblib's ``NumpyUnpickler``), so a scanner miss
                       still cannot run code
ONNX                   the bytes read once, checked again (external data stays in the folder, no
                       custom operator domains), then external data read;
                       needs onnx
=====================  ======================================================================

For scikit-learn models a pickle is still a pickle: the allowlisted unpickler is the defence in
depth here. ``skops.io`` was considered and not used: it needs its own file format (not the
pickles teams already have), and its trust model is also a list of type names.
"""

from __future__ import annotations

import json
import mmap
import struct
from pathlib import Path
from typing import Any

from chainproof.errors import (
    BadInputError,
    ChainproofError,
    MalformedFileError,
    ScanFindingError,
)
from chainproof.scan._model import FileResult
from chainproof.scan._parsers import check_onnx, parse_onnx
from chainproof.scan._scanner import scan_file
from chainproof.scan._unpickler import RestrictedUnpickler, joblib_unpickler
from chainproof.scan.allowlist import Allowlist, default_allowlist

_NUMPY_DTYPES = {
    "BOOL": "?", "U8": "u1", "I8": "i1", "I16": "<i2", "U16": "<u2", "F16": "<f2",
    "I32": "<i4", "U32": "<u4", "F32": "<f4", "F64": "<f8", "I64": "<i8", "U64": "<u8",
    "C64": "<c8",
}


def _require_clean(result: FileResult) -> None:
    if result.verdict == "clean":
        return
    if result.verdict == "malicious":
        raise ScanFindingError(
            f"{result.path}: refusing to load: the scan found callables outside the allowlist",
            hint="inspect `chainproof scan` output; extend the allowlist only for code you trust",
            problems=[
                f"{f.module}.{f.name} via {f.opcode} at offset {f.offset} "
                f"(stream {f.stream_index}, {f.file}): {f.reason}"
                for f in result.findings
            ],
        )
    if result.verdict == "not_inspectable":
        raise ScanFindingError(
            f"{result.path}: refusing to load: the file could not be inspected",
            hint="encrypted or unsupported containers cannot be vouched for; unpack them first",
            problems=[result.error or "not inspectable"],
        )
    raise MalformedFileError(
        f"{result.path}: refusing to load a {result.verdict} file: {result.error}",
        hint="only pickle, joblib, PyTorch, numpy, safetensors and ONNX files can be loaded",
    )


def safe_load(path: Path | str, *, allowlist: Allowlist | None = None) -> Any:
    """Scan ``path``; if clean, load it with the safest loader for its format (see module doc)."""
    al = allowlist if allowlist is not None else default_allowlist()
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"{p}: not a regular file", hint="safe_load loads one model file")
    result = scan_file(p, allowlist=al)
    _require_clean(result)
    fmt = result.format
    if fmt == "safetensors":
        return _load_safetensors(p)
    if fmt in ("numpy-npy", "numpy-npz"):
        import numpy as np

        try:
            return np.load(p, allow_pickle=False)
        except ValueError as exc:
            raise MalformedFileError(
                f"{p}: numpy refused to load without pickle: {exc}",
                hint="object arrays need pickle; store numeric arrays or use safetensors",
            ) from exc
    if fmt in ("pytorch-zip", "pytorch-legacy"):
        try:
            import torch
        except ImportError as exc:
            raise BadInputError(
                f"{p}: a PyTorch checkpoint needs torch to load", hint="pip install torch"
            ) from exc
        return torch.load(p, weights_only=True, map_location="cpu")
    if fmt in ("pickle", "joblib") or fmt.endswith(("+pickle", "+joblib")):
        return _load_pickle(p, al, joblib_format=fmt != "pickle")
    if fmt == "onnx":
        return _load_onnx(p)
    raise BadInputError(
        f"{p}: no safe loader for format {fmt!r}",
        hint="unpack archives and load their members one by one",
    )


def _extra_dtypes() -> dict[str, Any]:
    """safetensors dtypes numpy lacks, through ``ml_dtypes`` (an onnx dependency) if present."""
    try:
        import ml_dtypes
    except ImportError:
        return {}
    out: dict[str, Any] = {}
    for st_name, ml_name in [
        ("BF16", "bfloat16"), ("F8_E4M3", "float8_e4m3fn"), ("F8_E5M2", "float8_e5m2"),
        ("F8_E8M0", "float8_e8m0fnu"),
    ]:
        dt = getattr(ml_dtypes, ml_name, None)
        if dt is not None:
            out[st_name] = dt
    return out


def _load_safetensors(p: Path) -> dict[str, Any]:
    """``dict[str, numpy.ndarray]``; BF16/FP8 tensors as ``ml_dtypes`` arrays.

    ``safetensors.numpy`` raises a bare ``TypeError`` on dtypes numpy lacks (BF16, FP8): those
    files are read here from the layout the scan already validated (offsets in bounds, no
    overlap), with ``ml_dtypes``' numpy dtypes.
    """
    import numpy as np

    with open(p, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        header = json.loads(fh.read(n))
    header.pop("__metadata__", None)
    if all(info["dtype"] in _NUMPY_DTYPES for info in header.values()):
        try:
            from safetensors.numpy import load_file

            return dict(load_file(str(p)))
        except ImportError:
            pass
    dtypes: dict[str, Any] = {**_NUMPY_DTYPES, **_extra_dtypes()}
    out: dict[str, Any] = {}
    with open(p, "rb") as fh:
        for name, info in header.items():
            if info["dtype"] not in dtypes:
                raise BadInputError(
                    f"{p}: tensor {name!r} has dtype {info['dtype']} that numpy cannot hold",
                    hint="load it with safetensors.torch, or pip install ml_dtypes",
                )
            begin, end = info["data_offsets"]
            fh.seek(8 + n + begin)
            arr = np.frombuffer(fh.read(end - begin), dtype=dtypes[info["dtype"]])
            out[name] = arr.reshape(info["shape"])
    return out


def _load_pickle(p: Path, allowlist: Allowlist, *, joblib_format: bool) -> Any:
    """Unpickle with the restricted unpickler (``_unpickler``): the second, independent defence."""
    try:
        with open(p, "rb") as fh:
            if joblib_format:
                # joblib's own decompression helper (a private name, hence the error below).
                try:
                    from joblib.numpy_pickle_utils import _validate_fileobject_and_memmap
                except ImportError as exc:  # pragma: no cover - depends on the joblib version
                    raise BadInputError(
                        f"{p}: this joblib version has no known decompression helper",
                        hint="pip install 'joblib>=1.3'",
                    ) from exc
                with _validate_fileobject_and_memmap(fh, str(p), None) as (fobj, _):
                    return joblib_unpickler(str(p), fobj, allowlist).load()
            return RestrictedUnpickler(fh, allowlist).load()
    except ChainproofError:
        raise
    except RecursionError as exc:
        raise MalformedFileError(f"{p}: pickle nests too deeply to load", hint=None) from exc
    except Exception as exc:  # any failure of the loader is a bad file, never a traceback
        raise MalformedFileError(
            f"{p}: the restricted unpickler could not load the file: "
            f"{type(exc).__name__}: {exc}",
            hint="the file may be damaged or need a callable the allowlist does not cover",
        ) from exc


def _load_onnx(p: Path) -> Any:
    """The ONNX model from one read of the file, checked again before its external data is
    read: what is loaded is exactly what was judged, even if the file changed after the scan
    (the same second defence the restricted unpickler gives pickles)."""
    try:
        from onnx.external_data_helper import load_external_data_for_model
    except ImportError as exc:
        raise BadInputError(f"{p}: ONNX models need onnx to load",
                            hint="pip install onnx") from exc
    # Memory-mapped like the scanner reads it: a large model is not copied into memory twice.
    try:
        with p.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            view = memoryview(mapped)
            model = parse_onnx(view)
            view.release()
    except ValueError:  # an empty file cannot be mapped
        model = None
    if model is None:
        raise MalformedFileError(f"{p}: not an ONNX model any more (it changed after the scan)",
                                 hint="scan and load again from a trusted copy")
    found, _ = check_onnx(model, p.parent)
    if found:
        raise ScanFindingError(f"{p}: refusing to load: {found[0].reason}",
                               hint="the file changed after the scan; investigate who can "
                                    "write to it",
                               problems=[c.reason for c in found])
    load_external_data_for_model(model, str(p.parent))
    return model
