"""Rollback and split views seen without a trusted database: remembered checkpoints, witnesses.

Someone who can write the database can delete the newest entries, their rows, nodes and
checkpoints and rewrite the head: what is left is a shorter log that verifies perfectly on its
own. Only a party that saw the longer log notices. Two such parties exist here:

* :class:`CheckpointMemory`, a client's memory of the newest checkpoint it verified for one log
  (like Go's checksum-database client, ``GOFLAGS=-mod=mod`` remembering ``latest``): on every
  contact the client takes the server's newest signed checkpoint and a consistency proof from
  the size it remembers, and :meth:`CheckpointMemory.update` refuses a smaller tree (rollback) or
  an inconsistent one (split view), naming both tree heads, before remembering the new head.
* witnesses: :func:`publish_checkpoint` appends each new signed checkpoint to any number of
  files and HTTP(S) URLs the operator configures (``CHAINPROOF_WITNESSES``); ``audit verify
  --since FILE`` checks a log against every checkpoint a witness kept.

Nothing here trusts the database: a checkpoint counts only with a valid signature by the log's
key, which lives outside it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chainproof.errors import (
    BadInputError,
    ChainproofError,
    LedgerIntegrityError,
    MalformedFileError,
)
from chainproof.ledger import checkpoint as cpmod
from chainproof.ledger import merkle

__all__ = [
    "WITNESSES_ENV",
    "CheckpointMemory",
    "PublishResult",
    "default_checkpoint_folder",
    "head_text",
    "publish_checkpoint",
    "witness_targets",
]

WITNESSES_ENV = "CHAINPROOF_WITNESSES"
"""Comma-separated witness targets: file paths (or ``file://`` URLs) and ``http(s)://`` URLs."""

CHECKPOINTS_ENV = "CHAINPROOF_CHECKPOINTS"
"""Overrides the folder where clients remember checkpoints."""

_FORMAT = "chainproof-remembered-checkpoint/v1"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")

ProofInput = Sequence[str] | Sequence[bytes] | Mapping[str, Any]


def default_checkpoint_folder() -> Path:
    """``$CHAINPROOF_CHECKPOINTS``, else ``$XDG_CONFIG_HOME/chainproof/checkpoints``, else
    ``~/.config/chainproof/checkpoints``."""
    explicit = os.environ.get(CHECKPOINTS_ENV)
    if explicit:
        return Path(explicit).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME")
    base = Path(config).expanduser() if config else Path.home() / ".config"
    return base / "chainproof" / "checkpoints"


def head_text(size: int, root_hash: bytes) -> str:
    """A tree head as error messages name it: ``size 42, root 3f2a…`` (full hex root)."""
    return f"size {size}, root {bytes(root_hash).hex()}"


def _safe_name(key: str) -> str:
    """A file name for ``key`` (a server URL or log origin): readable, and unique by hash."""
    slug = _SAFE.sub("_", key).strip("._")[:80] or "log"
    return f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def _proof_hashes(proof: ProofInput) -> list[bytes]:
    """A consistency proof as raw hashes, from a list of hex strings or bytes, or the dict
    :func:`chainproof.ledger.log.prove_consistency` returns (its ``proof`` list)."""
    items: Any = proof.get("proof") if isinstance(proof, Mapping) else proof
    if isinstance(items, (str, bytes, bytearray)) or not isinstance(items, Sequence):
        raise MalformedFileError("a consistency proof is a list of hashes")
    out: list[bytes] = []
    for i, item in enumerate(items):
        if isinstance(item, (bytes, bytearray, memoryview)):
            out.append(bytes(item))
        elif isinstance(item, str):
            try:
                out.append(bytes.fromhex(item))
            except ValueError:
                raise MalformedFileError(f"consistency proof hash #{i} is not hex") from None
        else:
            raise MalformedFileError(f"consistency proof hash #{i} is a "
                                     f"{type(item).__name__}, not hex text or bytes")
    return out


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (advisory, POSIX), so that two processes of one user
    updating the same memory never lose the newer head."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: the atomic rename still holds
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (mode 0600) so that a crash leaves the old or the new file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename durable where directories fsync
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


class CheckpointMemory:
    """The newest checkpoint this client verified for one log, kept in ``folder``.

    ``name`` says which log: the server URL for a remote client, or the workspace's log origin
    for an embedded one. The file is ``folder/<safe name>.json`` (0600, in a 0700 folder),
    holding the signed note itself, so a file edited by hand (say to a smaller size, to make a
    rollback pass) fails its signature or disagrees with its note and is refused, never
    silently trusted.

    Use :meth:`update` on every contact::

        memory = CheckpointMemory(default_checkpoint_folder(), server_url)
        note = server.latest_checkpoint()["note"]
        old = memory.size_to_prove(verifier)          # None on first contact
        proof = server.consistency(old, size_of(note)) if old else []
        memory.update(note, proof, verifier)           # raises on rollback or split view
    """

    def __init__(self, folder: Path, name: str) -> None:
        if not name:
            raise BadInputError("a checkpoint memory needs the name of the log or server")
        self.folder = Path(folder).expanduser()
        self.name = name
        self.path = self.folder / f"{_safe_name(name)}.json"

    def __repr__(self) -> str:
        return f"CheckpointMemory({str(self.path)!r})"

    # --- reading -------------------------------------------------------------------------------

    def remembered_note(self) -> str | None:
        """The remembered signed note as stored (unverified), or None if nothing is remembered."""
        data = self._read_file()
        return None if data is None else str(data["note"])

    def remembered(self, verifier: cpmod.CheckpointVerifier) -> cpmod.Checkpoint | None:
        """The remembered checkpoint, re-verified with the log's key; None on first contact.

        Raises LedgerIntegrityError when the file was altered (bad signature, or its recorded
        size or root disagree with its signed note) or belongs to another log.
        """
        data = self._read_file()
        if data is None:
            return None
        try:
            cp = cpmod.verify_checkpoint(str(data["note"]), verifier, origin=verifier.name)
        except ChainproofError as exc:
            raise self._tampered(f"its checkpoint does not verify with the log's key: "
                                 f"{exc.message}") from None
        if data.get("size") != cp.size or data.get("root_hash") != cp.root_hash.hex():
            raise self._tampered(
                f"it records {data.get('size')!r}/{str(data.get('root_hash'))[:16]}… but its "
                f"signed checkpoint says {head_text(cp.size, cp.root_hash)}")
        if data.get("name") not in (None, self.name):
            raise self._tampered(f"it belongs to {data.get('name')!r}, not {self.name!r}")
        return cp

    def size_to_prove(self, verifier: cpmod.CheckpointVerifier) -> int | None:
        """The tree size a consistency proof must start from (the remembered size), or None
        when nothing is remembered yet (first contact: the signature alone is checked)."""
        cp = self.remembered(verifier)
        return None if cp is None else cp.size

    # --- updating ------------------------------------------------------------------------------

    def update(self, note: str, proof: ProofInput,
               verifier: cpmod.CheckpointVerifier) -> cpmod.Checkpoint:
        """Verify the server's newest signed checkpoint ``note`` and the consistency ``proof``
        from the remembered head to it, then remember it; return it.

        ``proof`` is the list of hashes (hex or bytes) proving the remembered size is a prefix
        of the note's size, or the dict :func:`chainproof.ledger.log.prove_consistency` returns
        (only its ``proof`` list is used: both roots come from signed checkpoints). On first
        contact, or when the sizes are equal, it is empty.

        Raises LedgerIntegrityError naming both tree heads when the note's tree is smaller than
        the remembered one (rollback) or not consistent with it (split view / rewritten
        history); SignatureError when the note is not signed by the log's key. Nothing is
        remembered unless every check passed. A smaller note never replaces a larger memory.
        """
        hashes = _proof_hashes(proof)
        return self._update(note, lambda old, new: hashes, verifier, given=bool(hashes))

    def refresh(self, note: str | Callable[[], str],
                consistency: Callable[[int, int], ProofInput],
                verifier: cpmod.CheckpointVerifier) -> cpmod.Checkpoint:
        """:meth:`update`, asking ``consistency(old_size, new_size)`` for the proof only when one
        is needed (there is a remembered head, smaller than the note's).

        ``note`` may be a function that fetches the server's newest checkpoint: it is then
        called with the memory locked, so that two processes of one user contacting the server
        at once never see each other's newer head as a rollback. The memory stays locked from
        reading the remembered head to writing the new one."""
        def proof_for(old: int, new: int) -> list[bytes]:
            return _proof_hashes(consistency(old, new)) if 0 < old < new else []
        return self._update(note, proof_for, verifier, given=False)

    def _update(self, note: str | Callable[[], str],
                proof_for: Callable[[int, int], list[bytes]],
                verifier: cpmod.CheckpointVerifier, *, given: bool) -> cpmod.Checkpoint:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with _locked(self.folder / f".{self.path.stem}.lock"):
            if callable(note):
                note = note()
            new = cpmod.verify_checkpoint(note, verifier, origin=verifier.name)
            old = self.remembered(verifier)
            if old is not None:
                hashes = proof_for(old.size, new.size) if new.size > old.size or given else []
                self._check_consistent(old, new, hashes)
                if new.size == old.size:
                    return new  # same head: nothing new to remember
            elif given:
                raise LedgerIntegrityError(
                    "a consistency proof was given but this client remembers no checkpoint "
                    f"for {self.name}",
                    hint="on first contact pass an empty proof")
            self._write(note, new)
        return new

    def remember_verified(self, note: str, verifier: cpmod.CheckpointVerifier) -> None:
        """Remember ``note`` after the caller established consistency another way (``audit
        verify`` recomputed the whole tree from the entries). Never moves the memory back: a
        note smaller than the remembered one is ignored; one of equal size must match."""
        new = cpmod.verify_checkpoint(note, verifier, origin=verifier.name)
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with _locked(self.folder / f".{self.path.stem}.lock"):
            old = self.remembered(verifier)
            if old is not None and new.size <= old.size:
                if new.size == old.size and new.root_hash != old.root_hash:
                    raise self._split(old, new)
                return
            self._write(note, new)

    def forget(self) -> None:
        """Delete the memory (after checking out of band that the log was legitimately reset)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    # --- internals -----------------------------------------------------------------------------

    def _check_consistent(self, old: cpmod.Checkpoint, new: cpmod.Checkpoint,
                          hashes: list[bytes]) -> None:
        old_head, new_head = head_text(old.size, old.root_hash), head_text(new.size,
                                                                            new.root_hash)
        if new.size < old.size:
            raise LedgerIntegrityError(
                f"rollback: the server's newest checkpoint is the tree ({new_head}), smaller "
                f"than the tree this client already verified ({old_head})",
                hint="entries were deleted from the log (or this is another, older copy of "
                     f"it); keep {self.path} as evidence and contact the log's operator",
                problems=[f"remembered: {old_head}", f"server:     {new_head}"])
        if new.size == old.size:
            if new.root_hash != old.root_hash:
                raise self._split(old, new)
            if hashes:
                raise LedgerIntegrityError(
                    f"both trees have size {new.size}: the consistency proof must be empty")
            return
        if old.size == 0:
            return  # the empty tree is a prefix of every tree
        try:
            merkle.verify_consistency(old.size, new.size, old.root_hash, new.root_hash, hashes)
        except (LedgerIntegrityError, BadInputError) as exc:
            raise LedgerIntegrityError(
                f"split view: the server's tree ({new_head}) is not an extension of the tree "
                f"this client already verified ({old_head}): {exc.message}",
                hint="the log rewrote history or shows different clients different logs; keep "
                     f"{self.path} and the server's checkpoint as evidence",
                problems=[f"remembered: {old_head}", f"server:     {new_head}"]) from None

    def _split(self, old: cpmod.Checkpoint, new: cpmod.Checkpoint) -> LedgerIntegrityError:
        return LedgerIntegrityError(
            f"split view: two validly signed trees of size {new.size} differ: the server's "
            f"({head_text(new.size, new.root_hash)}) and the one this client already verified "
            f"({head_text(old.size, old.root_hash)})",
            hint="together the two signed checkpoints prove the log forked; keep both",
            problems=[f"remembered: {head_text(old.size, old.root_hash)}",
                      f"server:     {head_text(new.size, new.root_hash)}"])

    def _tampered(self, why: str) -> LedgerIntegrityError:
        return LedgerIntegrityError(
            f"the remembered checkpoint {self.path} cannot be trusted: {why}",
            hint="someone edited this client's memory of the log; if you cannot restore it, "
                 "delete the file to trust the server's next checkpoint on first use, after "
                 "checking its size and root out of band (a witness file, another client)")

    def _read_file(self) -> dict[str, Any] | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BadInputError(f"cannot read the remembered checkpoint {self.path}: {exc}"
                                ) from None
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise self._tampered("it is not valid JSON") from None
        if (not isinstance(data, dict) or data.get("format") != _FORMAT
                or not isinstance(data.get("note"), str)):
            raise self._tampered(f"it is not a {_FORMAT} file")
        return data

    def _write(self, note: str, cp: cpmod.Checkpoint) -> None:
        data = {"format": _FORMAT, "name": self.name, "origin": cp.origin, "size": cp.size,
                "root_hash": cp.root_hash.hex(), "note": note}
        _write_atomically(self.path, json.dumps(data, indent=1).encode() + b"\n")


# --- witnesses -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishResult:
    """What happened when one checkpoint was sent to one witness."""

    target: str
    ok: bool
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "ok": self.ok, "error": self.error}


def witness_targets(value: str | None = None) -> list[str]:
    """The operator's witnesses: ``value`` or ``$CHAINPROOF_WITNESSES``, comma-separated file
    paths (``file://`` optional) and ``http://``/``https://`` URLs; blanks ignored."""
    text = os.environ.get(WITNESSES_ENV, "") if value is None else value
    return [t.strip() for t in text.split(",") if t.strip()]


def _append_to_file(path: Path, note: str) -> None:
    text = cpmod.format_checkpoint_file([note]).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)  # one note at a time, never interleaved
        except ImportError:  # pragma: no cover
            pass
        os.write(fd, text)
        os.fsync(fd)
    finally:
        os.close(fd)


def publish_checkpoint(note: str, targets: Sequence[str] | None = None, *,
                       timeout: float = 5.0, strict: bool = False,
                       post: Callable[[str, str, float], None] | None = None
                       ) -> list[PublishResult]:
    """Send one signed checkpoint ``note`` to every witness in ``targets`` (default:
    :func:`witness_targets`): appended to a file in the format ``audit verify --since`` reads,
    or POSTed as ``text/plain`` to an HTTP(S) URL (any 2xx is success).

    Every target is tried; the result says which failed and why. With ``strict`` the first
    failure is raised (BadInputError) after all were tried. The note is parsed first: a
    malformed note is never sent. ``post`` replaces the HTTP call (tests).
    """
    cpmod.parse_signed_checkpoint(note)  # MalformedFileError: never publish garbage
    chosen = witness_targets() if targets is None else list(targets)
    results: list[PublishResult] = []
    for target in chosen:
        try:
            if target.startswith(("http://", "https://")):
                (post or _http_post)(target, note, timeout)
            else:
                path = Path(target[len("file://"):] if target.startswith("file://") else target)
                _append_to_file(path.expanduser(), note)
        except Exception as exc:  # a witness being down must not lose the others
            results.append(PublishResult(target, False, f"{type(exc).__name__}: {exc}"))
        else:
            results.append(PublishResult(target, True))
    failed = [r for r in results if not r.ok]
    if strict and failed:
        raise BadInputError(
            f"{len(failed)} of {len(results)} witness(es) did not take the checkpoint",
            hint="check the witnesses in " + WITNESSES_ENV + ": "
                 + "; ".join(f"{r.target}: {r.error}" for r in failed))
    return results


def _http_post(url: str, note: str, timeout: float) -> None:
    import httpx

    response = httpx.post(url, content=note.encode(), timeout=timeout,
                          headers={"Content-Type": "text/plain; charset=utf-8"})
    if not 200 <= response.status_code < 300:
        raise BadInputError(f"HTTP {response.status_code} from {url}")
