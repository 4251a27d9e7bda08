"""Static scanning of model files: allowlist-based, never imports or runs anything from a file.

``scan_path(path)`` detects each file's format by content (pickle protocols 0-5, joblib,
PyTorch zip / legacy / tar checkpoints, numpy .npy/.npz, safetensors, ONNX, Keras .keras, HDF5,
GGUF, zip/tar/gzip/... containers), walks every pickle stream a loader would unpickle, and judges
every callable reference and what it is called with against an allowlist
(``default_allowlist.yaml``, extensible with ``load_allowlist``); the other formats are parsed
with their own libraries (onnx, h5py, gguf, jinja2). ``safe_load(path)`` loads a file that
scanned clean with the safest loader for its format; pickles through a restricted unpickler that
enforces the same rules again on the real objects. See docs/scanning.md.
"""

from chainproof.scan._model import FileResult, Finding, ScanReport, Verdict
from chainproof.scan._scanner import scan_file, scan_path
from chainproof.scan.allowlist import (
    Allowlist,
    ExactEntry,
    PatternEntry,
    allowlist_from_yaml,
    default_allowlist,
    load_allowlist,
)
from chainproof.scan.safe_load import safe_load

__all__ = [
    "Allowlist",
    "ExactEntry",
    "FileResult",
    "Finding",
    "PatternEntry",
    "ScanReport",
    "Verdict",
    "allowlist_from_yaml",
    "default_allowlist",
    "load_allowlist",
    "safe_load",
    "scan_file",
    "scan_path",
]
