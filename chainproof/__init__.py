"""chainproof: signed, tamper-evident provenance for the whole ML pipeline.

The small public API::

    cp = chainproof.connect()                      # nearest .chainproof/ workspace, or env vars
    with chainproof.step("train", inputs=["features@3"]) as s: ...
    path = chainproof.load("fraud-review-model@2")  # verified local path of a version's bytes
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chainproof.errors import (
    BadInputError,
    ChainproofError,
    VerificationError,
)

__version__ = "0.1.0"

_default: Any = None


def connect(path: str | Path | None = None, *, identity: str | None = None) -> Any:
    """The operations (:class:`chainproof.surface.Operations`): the team server named by
    ``CHAINPROOF_SERVER`` (with ``CHAINPROOF_TOKEN`` and the local key in
    ``CHAINPROOF_SIGNING_KEY``; no workspace needed), else the workspace containing ``path``
    (default: the current folder), or the database and store named by ``CHAINPROOF_DB`` /
    ``CHAINPROOF_STORE``."""
    # Imported here, not at the top: `import chainproof` stays cheap for tools that only need
    # its errors (the CLI's --help), and the facade pulls in the whole package.
    import os

    from chainproof.client import RemoteChainproof
    from chainproof.service import Chainproof
    from chainproof.workspace import load_settings

    server = os.environ.get("CHAINPROOF_SERVER")
    if server and path is None:
        return RemoteChainproof(server, os.environ.get("CHAINPROOF_TOKEN", ""))
    settings = load_settings(Path(path) if path else None, identity=identity)
    return Chainproof.open(settings)


def _connection() -> Any:
    global _default
    if _default is None:
        _default = connect()
    return _default


def step(kind: str, inputs: Sequence[str] = (), *, namespace: str = "default",
         parameters: dict[str, Any] | None = None, connection: Any = None) -> Any:
    """Record a step (a context manager); see :mod:`chainproof.recording`."""
    from chainproof.recording import StepRecorder

    return StepRecorder(connection or _connection(), kind, inputs, namespace=namespace,
                        parameters=parameters)


def load(ref: str, *, connection: Any = None, allow_override: bool = False) -> Path:
    """A verified local path to a model's bytes.

    ``MODEL@ALIAS`` (e.g. ``fraud-review@production``): the bytes its promotion decision
    approved, after re-verifying the decision, approvals, provenance chain, scan report and
    digest (see :mod:`chainproof.serve.load`); each refusal is its own exception type.
    ``NAME@VERSION``: that asset version's bytes, re-hashed against its digest.
    """
    from chainproof.records.names import is_version

    cp = connection or _connection()
    _, at, tail = ref.rpartition("@")
    if at and tail and not is_version(tail):
        return Path(cp.load_model(ref, allow_override=allow_override).path)
    return Path(cp.materialize(cp.resolve(ref)))


__all__ = ["BadInputError", "ChainproofError", "VerificationError", "connect", "load", "step"]
