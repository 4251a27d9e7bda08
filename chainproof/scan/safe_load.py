"""Load a model file only after it scanned clean, with the safest loader for its format.

``safe_load(path)`` first runs :func:`~chainproof.scan.scan_path` on the file and refuses (raises)
unless the verdict is ``clean``. It then loads with a loader that cannot run code even if the
scanner missed something:

=====================  ======================================================================
format                 loader
=====================  ======================================================================
safetensors            ``safetensors.numpy.load_file`` if installed, else a numpy reader of the
                       (already validated) layout; returns ``dict[str, numpy.ndarray]``
numpy ``.npy``/``.npz`` ``numpy.load(allow_pickle=False)``; object arrays are refused
PyTorch zip / legacy   ``torch.load(weights_only=True, map_location="cpu")`` (torch's own
                       restricted unpickler); needs torch
pickle / joblib        an unpickler whose ``find_class`` enforces the same allowlist again at
                       load time (joblib files through joblib's own ``NumpyUnpickler``)
ONNX                   ``onnx.load`` (external-data paths were checked to stay in the folder);
                       needs onnx
=====================  ======================================================================

For scikit-learn models a pickle is still a pickle: the allowlisted unpickler is the defence in
depth here. ``skops.io`` was considered and not used: it needs its own file format (not the
pickles teams already have), and its trust model is also a list of type names.
"""

from __future__ import annotations

import json
import pickle
import struct
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from pathlib import Path
from typing import Any

from chainproof.errors import BadInputError, MalformedFileError, ScanFindingError
from chainproof.scan._model import FileResult
from chainproof.scan._scanner import scan_file
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
        try:
            import onnx
        except ImportError as exc:
            raise BadInputError(
                f"{p}: ONNX models need onnx to load", hint="pip install onnx"
            ) from exc
        return onnx.load(str(p))
    raise BadInputError(
        f"{p}: no safe loader for format {fmt!r}",
        hint="unpack archives and load their members one by one",
    )


def _load_safetensors(p: Path) -> dict[str, Any]:
    try:
        from safetensors.numpy import load_file

        return dict(load_file(str(p)))
    except ImportError:
        pass
    import numpy as np

    with open(p, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        header = json.loads(fh.read(n))
        header.pop("__metadata__", None)
        out: dict[str, Any] = {}
        for name, info in header.items():
            if info["dtype"] not in _NUMPY_DTYPES:
                raise BadInputError(
                    f"{p}: tensor {name!r} has dtype {info['dtype']} that numpy cannot hold",
                    hint="pip install safetensors (with torch) to load it",
                )
            begin, end = info["data_offsets"]
            fh.seek(8 + n + begin)
            out[name] = np.frombuffer(fh.read(end - begin), dtype=_NUMPY_DTYPES[info["dtype"]])
            out[name] = out[name].reshape(info["shape"])
        return out


def _checked(allowlist: Allowlist, module: str, name: str, proto: int | None) -> None:
    m, n = module, name
    if proto is None or proto < 3:
        if (m, n) in NAME_MAPPING:
            m, n = NAME_MAPPING[(m, n)]
        elif m in IMPORT_MAPPING:
            m = IMPORT_MAPPING[m]
    if not allowlist.allows(m, n):
        raise ScanFindingError(
            f"load-time check refused {m}.{n}: not on the allowlist",
            hint="the scan passed but the unpickler met a global it did not: report this",
        )


def _load_pickle(p: Path, allowlist: Allowlist, *, joblib_format: bool) -> Any:
    if joblib_format:
        from joblib import numpy_pickle
        # joblib's own decompression helper (a private name, hence the fallback error below).
        try:
            from joblib.numpy_pickle_utils import _validate_fileobject_and_memmap
        except ImportError as exc:  # pragma: no cover - depends on the joblib version
            raise BadInputError(
                f"{p}: this joblib version has no known decompression helper",
                hint="pip install 'joblib>=1.3'",
            ) from exc

        class _JoblibUnpickler(numpy_pickle.NumpyUnpickler):
            def find_class(self, module: str, name: str) -> Any:
                _checked(allowlist, module, name, getattr(self, "proto", None))
                return super().find_class(module, name)

        with open(p, "rb") as fh, _validate_fileobject_and_memmap(fh, str(p), None) as (fobj, _):
            return _JoblibUnpickler(str(p), fobj, True).load()

    class _Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            _checked(allowlist, module, name, None)
            return super().find_class(module, name)

    with open(p, "rb") as fh:
        return _Unpickler(fh).load()
