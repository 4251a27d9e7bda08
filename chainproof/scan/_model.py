"""Typed results of a scan: pure data, no I/O.

A :class:`ScanReport` holds one :class:`FileResult` per scanned file (a directory is scanned file by
file), and each result lists the :class:`Finding` objects that made it fail. ``to_dict()`` returns
plain JSON-ready structures so the CLI can print them and the registry can record them as assets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Verdict = Literal["clean", "malicious", "unknown", "not_inspectable", "malformed"]
Severity = Literal["critical", "high", "medium"]

#: Verdicts that let a file through. Everything else fails closed.
PASSING_VERDICTS: frozenset[str] = frozenset({"clean"})


@dataclass(frozen=True)
class Finding:
    """One callable reference (or structure) outside the allowlist.

    ``file`` names the scanned file; members of containers are written ``outer!member``.
    ``stream_index`` is the index of the pickle stream inside that (member) file, ``offset`` the
    byte offset of the opcode inside the member (or file) that holds the stream.
    """

    file: str
    format: str
    stream_index: int
    offset: int
    module: str
    name: str
    opcode: str
    severity: Severity
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "format": self.format,
            "stream_index": self.stream_index,
            "offset": self.offset,
            "module": self.module,
            "name": self.name,
            "opcode": self.opcode,
            "severity": self.severity,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class FileResult:
    """The verdict for one file on disk.

    ``error`` explains any verdict other than ``clean``/``malicious`` (and may add detail to
    ``malicious``, e.g. a stream that was cut short after its payload ran). ``notes`` are
    informational lines (what was skipped and why); they never change the verdict.
    """

    path: str
    format: str
    verdict: Verdict
    findings: tuple[Finding, ...] = ()
    error: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        return self.verdict in PASSING_VERDICTS

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "verdict": self.verdict,
            "findings": [f.to_dict() for f in self.findings],
            "error": self.error,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class ScanReport:
    """All file results of one scan, plus the allowlist version that judged them."""

    files: tuple[FileResult, ...]
    allowlist_version: str = ""
    scanner_version: str = "1"

    @property
    def clean(self) -> bool:
        """True only if there was at least one file and every file is ``clean``."""
        return bool(self.files) and all(f.clean for f in self.files)

    @property
    def findings(self) -> tuple[Finding, ...]:
        return tuple(f for r in self.files for f in r.findings)

    @property
    def exit_code(self) -> int:
        """CLI convention: 0 all clean, 1 any file malicious, 2 otherwise (unreadable/malformed/
        unknown/not inspectable input, or no file at all)."""
        if self.clean:
            return 0
        if any(r.verdict == "malicious" for r in self.files):
            return 1
        return 2

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.files:
            out[r.verdict] = out.get(r.verdict, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "scanner_version": self.scanner_version,
            "allowlist_version": self.allowlist_version,
            "clean": self.clean,
            "exit_code": self.exit_code,
            "counts": self.counts(),
            "files": [r.to_dict() for r in self.files],
        }
