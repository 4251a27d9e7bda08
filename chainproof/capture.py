"""Capturing what a step ran with: the environment and the code revision."""

from __future__ import annotations

import functools
import hashlib
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import rfc8785

from chainproof.records.names import printable
from chainproof.records.steps import CodeRevision, EnvironmentRecord


@functools.cache
def environment() -> EnvironmentRecord:
    """The current interpreter's environment (computed once per process: it is ~50 ms)."""
    dists = sorted({f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions()
                    if d.metadata and d.metadata["Name"]})
    digest = hashlib.sha256(distributions_blob(tuple(dists))).hexdigest()
    return EnvironmentRecord(
        python=printable(sys.version.split()[0]),
        platform=printable(platform.platform()),
        hostname=printable(socket.gethostname()),
        distributions=tuple(dists),
        distributions_digest=f"sha256:{digest}",
    )


def distributions_blob(distributions: tuple[str, ...]) -> bytes:
    """The installed-distribution list as stored in the object store (canonical JSON)."""
    return rfc8785.dumps(list(distributions))


def _git(args: list[str], cwd: Path) -> bytes | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=30,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def code_revision(cwd: Path | None = None) -> CodeRevision:
    """The git commit of ``cwd`` and whether the work tree differs from it."""
    where = cwd or Path.cwd()
    head = _git(["rev-parse", "HEAD"], where)
    if head is None:
        return CodeRevision(commit=None)
    status = _git(["status", "--porcelain", "--untracked-files=no"], where) or b""
    dirty = bool(status.strip())
    diff_digest = None
    if dirty:
        diff = _git(["diff", "HEAD", "--binary"], where) or b""
        diff_digest = "sha256:" + hashlib.sha256(diff).hexdigest()
    remote = _git(["config", "--get", "remote.origin.url"], where)
    return CodeRevision(commit=head.decode().strip(), dirty=dirty, diff_digest=diff_digest,
                        repository=remote.decode().strip() if remote else None)
