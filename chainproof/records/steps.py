"""Steps: executions that consume asset versions and produce new ones."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from chainproof.records.assets import AssetKind


def now() -> str:
    """The current time as chainproof records it: RFC 3339, UTC, microseconds."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class OutputSpec:
    """A path a step produced, and what to register it as."""

    path: Path
    kind: AssetKind
    name: str
    namespace: str | None = None


class StepStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class CodeRevision:
    """Where the code came from: a git commit, and whether the work tree differed from it."""

    commit: str | None
    dirty: bool = False
    diff_digest: str | None = None  # "sha256:<hex>" of `git diff HEAD` when dirty
    repository: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"commit": self.commit, "dirty": self.dirty, "diff_digest": self.diff_digest,
                "repository": self.repository}


@dataclass(frozen=True)
class EnvironmentRecord:
    """The environment a step ran in: enough to tell two runs' environments apart."""

    python: str
    platform: str
    hostname: str
    distributions: tuple[str, ...] = ()  # "name==version", sorted
    distributions_digest: str | None = None

    def summary(self) -> dict[str, Any]:
        """What a step row records. The full distribution list is a blob in the object store,
        addressed by ``distributions_digest``: stored once, however many steps share it."""
        return {"python": self.python, "platform": self.platform, "hostname": self.hostname,
                "distributions_count": len(self.distributions),
                "distributions_digest": self.distributions_digest}


@dataclass(frozen=True)
class Step:
    """A recorded execution. Inputs and outputs are asset version references (``ns/name@v``)."""

    id: str
    namespace: str
    kind: str
    identity: str
    status: StepStatus
    command: tuple[str, ...]
    started_at: str
    ended_at: str
    parameters: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    code_revision: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
