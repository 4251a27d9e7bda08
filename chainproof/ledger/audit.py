"""The log's key and checkpoints, and ``audit verify``: recompute everything, trust nothing.

Verification recomputes every leaf and every stored interior node from the entries, checks every
signed checkpoint and any checkpoints a witness kept or a client remembers (consistency,
truncation, split views), and replays the log to rebuild the state it describes, comparing that
with the database column by column (:mod:`chainproof.ledger.replay` lists every column and
how). It needs the log's *public* key from outside the database (the workspace's ``log.pub`` or
``CHAINPROOF_LOG_PUBKEY``): someone who can write the database cannot forge it.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from chainproof.db.tables import Base, CheckpointRow, LogHeadRow, LogNodeRow
from chainproof.errors import (
    BadInputError,
    ChainproofError,
    LedgerIntegrityError,
    MalformedFileError,
    WorkspaceError,
)
from chainproof.ledger import checkpoint as cpmod
from chainproof.ledger import merkle
from chainproof.ledger import replay as replay_mod
from chainproof.ledger.log import (
    NODE_INDEX_BITS,
    fold_root,
    frontier_positions,
    iter_entry_rows,
    node_key,
)
from chainproof.ledger.witness import CheckpointMemory
from chainproof.records.log import LogEntry

# --- the log key ---------------------------------------------------------------------------------


def create_log_key(private_path: Path, public_path: Path, origin: str) -> None:
    """Make the Ed25519 checkpoint key: private part 0600 in a file, public part beside it."""
    if private_path.exists():
        raise WorkspaceError(f"a log key already exists at {private_path}",
                             hint="keep it; a new key would not verify old checkpoints")
    key = ed25519.Ed25519PrivateKey.generate()
    private_path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    public_path.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


class LogSigner:
    """Signs checkpoints for one log origin."""

    def __init__(self, origin: str, private_key: ed25519.Ed25519PrivateKey) -> None:
        self.origin = origin
        self._signer = cpmod.CheckpointSigner(origin, private_key)
        #: the public half (PEM), what log.pub holds
        self.public_pem = private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, size: int, root_hash: bytes) -> str:
        return cpmod.sign_checkpoint(cpmod.Checkpoint(self.origin, size, root_hash), self._signer)


def load_log_signer(path: Path, origin: str) -> LogSigner:
    return LogSigner(origin, _load_log_key(path))


def _load_log_key(path: Path) -> ed25519.Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise WorkspaceError(f"the log's checkpoint key {path} does not exist",
                             hint="set CHAINPROOF_LOG_KEY to the key file made by "
                                  "`chainproof init`") from None
    except (OSError, ValueError, TypeError) as exc:
        raise WorkspaceError(f"cannot read the log's checkpoint key {path}: {exc}") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise WorkspaceError(f"{path} is not an Ed25519 private key")
    return key


def public_pem(path: Path, private_path: Path | None = None) -> bytes:
    """The log's public checkpoint key (PEM) from ``path`` (log.pub) — or, when that file is
    absent, derived from the private log key at ``private_path`` (a server host given only
    CHAINPROOF_LOG_KEY). WorkspaceError if neither can be read."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        if private_path is None or not private_path.is_file():
            raise WorkspaceError(f"the log's public key {path} does not exist",
                                 hint="set CHAINPROOF_LOG_PUBKEY to the log.pub made by "
                                      "`chainproof init` (or, on a server host, "
                                      "CHAINPROOF_LOG_KEY to the log's private key)") from None
    except OSError as exc:
        raise WorkspaceError(f"cannot read the log's public key {path}: {exc}") from None
    return _load_log_key(private_path).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_log_verifier(path: Path, origin: str, *,
                      private_path: Path | None = None) -> cpmod.CheckpointVerifier:
    """The checkpoint verifier for ``origin`` with the public key of :func:`public_pem`."""
    try:
        key = serialization.load_pem_public_key(public_pem(path, private_path))
    except ValueError as exc:
        raise WorkspaceError(f"cannot read the log's public key {path}: {exc}") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise WorkspaceError(f"{path} is not an Ed25519 public key")
    return cpmod.CheckpointVerifier(origin, key)


# --- verification --------------------------------------------------------------------------------


NO_WITNESS_WARNING = ("no witness checked: a rollback of the newest entries (deleting them, "
                      "their rows, nodes and checkpoints) would not be detected; verify against "
                      "a witness file (--since) or from a client that remembers an earlier "
                      "checkpoint")


@dataclass
class AuditReport:
    """What ``audit verify`` checked. It is only returned when every check passed."""

    size: int
    root_hash: str
    checkpoint_size: int
    witnesses_checked: int
    rows_checked: dict[str, int] = field(default_factory=dict)
    checkpoints_checked: int = 0
    remembered_size: int | None = None
    derived_columns: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def rollback_checked(self) -> bool:
        """Whether anything outside the database (a witness, a remembered checkpoint) was
        compared: without one, a clean rollback of the newest entries passes."""
        return self.witnesses_checked > 0 or self.remembered_size is not None

    @property
    def warning(self) -> str | None:
        return None if self.rollback_checked else NO_WITNESS_WARNING

    def to_dict(self) -> dict[str, Any]:
        return {"ok": True, "size": self.size, "root_hash": self.root_hash,
                "checkpoint_size": self.checkpoint_size,
                "checkpoints_checked": self.checkpoints_checked,
                "witnesses_checked": self.witnesses_checked,
                "remembered_size": self.remembered_size,
                "rollback_checked": self.rollback_checked, "warning": self.warning,
                "rows_checked": self.rows_checked}

    def text(self) -> str:
        """The report as a paragraph for people (the CLI prints it)."""
        rows = ", ".join(f"{n} {t}" for t, n in self.rows_checked.items())
        parts = [f"audit log verified: {self.size} entries, root {self.root_hash}; "
                 f"{self.checkpoints_checked} signed checkpoint(s) match the recomputed tree "
                 f"(newest at size {self.checkpoint_size}); "
                 f"{self.witnesses_checked} witnessed checkpoint(s) consistent"]
        if self.remembered_size is not None:
            parts.append(f"; the remembered checkpoint (size {self.remembered_size}) is "
                         "consistent")
        parts.append(f"; every column of {rows} matches the log")
        text = "".join(parts)
        if self.warning:
            text += f"\nwarning: {self.warning}"
        return text


class _Tree:
    """Every perfect subtree hash of the log, recomputed from the leaves (32 bytes a node)."""

    def __init__(self, leaves: bytearray) -> None:
        self.levels = [bytes(leaves)]
        level = self.levels[0]
        while len(level) >= 64:
            nxt = bytearray()
            for i in range(0, len(level) - 63, 64):
                nxt += merkle.node_hash(level[i:i + 32], level[i + 32:i + 64])
            level = bytes(nxt)
            self.levels.append(level)

    @property
    def size(self) -> int:
        return len(self.levels[0]) // 32

    def node(self, level: int, index: int) -> bytes:
        data = self.levels[level] if level < len(self.levels) else b""
        chunk = data[index * 32:(index + 1) * 32]
        if len(chunk) != 32:
            raise LedgerIntegrityError(f"no node (level {level}, index {index})")
        return chunk

    def root(self, size: int) -> bytes:
        return fold_root([self.node(lv, ix) for lv, ix in frontier_positions(size)])


def verify_log(session: Session, verifier: cpmod.CheckpointVerifier,
               witness_notes: Iterable[str] = (), *, max_problems: int = 200,
               memory: CheckpointMemory | None = None) -> AuditReport:
    """Verify the whole log; raise :class:`LedgerIntegrityError` listing every discrepancy.

    Recomputes every leaf and stored node and the head; checks EVERY stored checkpoint
    (signature, columns, root against the recomputed tree); checks consistency with every
    ``witness_notes`` checkpoint and with the checkpoint ``memory`` remembers (rollback, split
    view); and replays the log to rebuild every column of every state table (see
    :mod:`chainproof.ledger.replay`), comparing them with the database. With ``memory``, the
    newest checkpoint is remembered once everything passed.
    """
    problems: list[str] = []

    def problem(text: str) -> None:
        if len(problems) < max_problems:
            problems.append(text)

    if session.get_bind().dialect.name == "postgresql" and not session.in_transaction():
        # One snapshot for every query below: appends committed meanwhile must not look like
        # entries without rows or rows without entries.
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    metadata = Base.metadata
    uncovered = replay_mod.schema_problems(metadata)
    if uncovered:
        raise LedgerIntegrityError(
            f"audit verify cannot vouch for {len(uncovered)} table(s) or column(s) it does not "
            "know", problems=uncovered,
            hint="a developer added them without deciding how the log rebuilds them: list each "
                 "in chainproof.ledger.replay.COMPARED (and rebuild it in Replay) or DERIVED")
    replay = replay_mod.Replay(problem)
    handlers = replay.handlers
    # Sizes of the stored checkpoints: each one's created_at is its newest entry's time.
    checkpoint_sizes = set(session.execute(select(CheckpointRow.size)).scalars())
    entry_times: dict[int, str] = {}
    leaves = bytearray()
    expected_seq = 0
    for seq, stored_leaf, raw_body, action, actor, obj, time in iter_entry_rows(session):
        if seq != expected_seq:
            problem(f"log entries {expected_seq}..{seq - 1} are missing (deleted or renumbered)"
                    if seq > expected_seq else f"log entry {seq} is out of order")
            expected_seq = seq
        # A column rewritten as text by an editing tool is tampering, never a crash.
        body = raw_body.encode("utf-8", "surrogateescape") if isinstance(raw_body, str) \
            else bytes(raw_body)
        leaf = merkle.leaf_hash(body)
        if not isinstance(stored_leaf, bytes | bytearray | memoryview) \
                or bytes(stored_leaf) != leaf:
            problem(f"log entry {seq}: stored leaf hash does not match its contents "
                    "(the entry was edited)")
        leaves += leaf
        if seq + 1 in checkpoint_sizes:
            entry_times[seq + 1] = time
        try:
            fields = orjson.loads(body)
            claimed = (fields["seq"], fields["action"], fields["actor"], fields["time"],
                       fields["object"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            problem(f"log entry {seq}: not a valid log entry")
        else:
            if claimed[0] != seq:
                problem(f"log entry stored at {seq} says it is entry {claimed[0]} "
                        "(entries were swapped or moved)")
            if (action, actor, time) != claimed[1:4] or not isinstance(claimed[4], str) \
                    or obj != claimed[4][:300]:
                problem(f"log entry {seq}: indexed columns (action, actor, object, time) "
                        "disagree with the signed entry")
            if claimed[1] in handlers:
                try:
                    handlers[claimed[1]](_entry(fields))
                except ChainproofError as exc:
                    problem(f"log entry {seq}: {exc.message}")
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    problem(f"log entry {seq}: its detail cannot be replayed ({exc!r})")
        expected_seq += 1
    tree = _Tree(leaves)
    size = tree.size
    root = tree.root(size)

    _check_nodes(session, tree, problem)
    _check_head(session, tree, problem)
    checkpoint_size, checked, newest_note = _check_checkpoints(session, verifier, tree,
                                                               entry_times, problem)
    witnessed = _check_witnesses(witness_notes, verifier, tree, problem)
    remembered_size = None
    if memory is not None:
        try:
            remembered = memory.remembered(verifier)
        except ChainproofError as exc:
            problem(exc.message)
        else:
            if remembered is not None:
                remembered_size = remembered.size
                _check_one(remembered, tree, problem, f"the checkpoint remembered in "
                                                      f"{memory.path}")
    rows = replay.compare(session, metadata, problem)
    if problems:
        raise LedgerIntegrityError(
            f"audit verification failed: {len(problems)} problem(s) in a log of {size} entries",
            problems=problems,
            hint="the database was changed outside chainproof; restore it from a backup taken "
                 "before the first entry named here, and find out who had write access",
        )
    if memory is not None and newest_note is not None:
        memory.remember_verified(newest_note, verifier)
    return AuditReport(size=size, root_hash=root.hex(), checkpoint_size=checkpoint_size,
                       witnesses_checked=witnessed, rows_checked=rows,
                       checkpoints_checked=checked, remembered_size=remembered_size,
                       derived_columns=replay_mod.DERIVED)


def _entry(fields: dict[str, Any]) -> LogEntry:
    """A parsed entry body as a LogEntry (its detail's required fields checked)."""
    if set(fields) != {"seq", "time", "actor", "action", "object", "digests", "detail"}:
        raise MalformedFileError("log entry does not have exactly the expected fields")
    if not isinstance(fields["detail"], dict):
        raise MalformedFileError("log entry detail is not an object")
    return LogEntry(seq=fields["seq"], time=fields["time"], actor=fields["actor"],
                    action=fields["action"], object=fields["object"],
                    digests=fields["digests"], detail=fields["detail"])


def _check_nodes(session: Session, tree: _Tree, problem: Callable[[str], None]) -> None:
    """Compare every stored node with the recomputed tree, one level at a time as one byte
    string (a per-row comparison in Python costs seconds at a million entries)."""
    stray = session.execute(select(func.count()).where(LogNodeRow.id < node_key(1, 0))
                            ).scalar_one()
    if stray:
        problem(f"{stray} stored tree node(s) at level 0: leaves live in log_entries, so these "
                "rows were inserted outside chainproof")
    top = session.execute(select(func.max(LogNodeRow.id))).scalar_one()
    stored_top = -1 if top is None else top >> NODE_INDEX_BITS
    # Level 0 is each entry's leaf_hash, already checked against its body.
    for level in range(1, max(stored_top + 1, len(tree.levels) if tree.size else 0)):
        expected = tree.levels[level] if level < len(tree.levels) and tree.size else b""
        low, high = node_key(level, 0), node_key(level + 1, 0)
        in_level = (LogNodeRow.id >= low) & (LogNodeRow.id < high)
        count, first, last = session.execute(
            select(func.count(), func.min(LogNodeRow.id), func.max(LogNodeRow.id))
            .where(in_level)).one()
        if count == len(expected) // 32 and (count == 0 or (first == low
                                                          and last == low + count - 1)):
            joined = b"".join(session.execute(
                select(LogNodeRow.hash).where(in_level).order_by(LogNodeRow.id)).scalars())
            if joined == expected:
                continue
        have = {key - low: bytes(digest) for key, digest in session.execute(
            select(LogNodeRow.id, LogNodeRow.hash).where(in_level))}
        for index in sorted(set(have) | set(range(len(expected) // 32))):
            if index not in have:
                problem(f"stored tree node (level {level}, index {index}) is missing")
            elif index * 32 >= len(expected):
                problem(f"stored tree node (level {level}, index {index}) covers entries "
                        "that do not exist")
            elif have[index] != expected[index * 32:(index + 1) * 32]:
                problem(f"stored tree node (level {level}, index {index}) does not match the "
                        "entries below it")


def _check_head(session: Session, tree: _Tree, problem: Callable[[str], None]) -> None:
    """The head's size and frontier are what the next append builds on: a forged frontier would
    make every later node and checkpoint wrong, so it must match the entries now."""
    heads = {row.id: (row.size, None if row.frontier is None else bytes(row.frontier))
             for row in session.execute(select(LogHeadRow.id, LogHeadRow.size,
                                               LogHeadRow.frontier))}
    if set(heads) - {1}:
        problem(f"the log head must be one row with id 1, found ids {sorted(heads)}")
    if 1 not in heads:
        if tree.size:
            problem("the log has entries but no head row (id 1)")
        return
    size, frontier = heads[1]
    if size != tree.size:
        problem(f"the log head says {size} entries, but {tree.size} are stored")
        return
    expected = b"".join(tree.node(lv, ix) for lv, ix in frontier_positions(tree.size))
    if frontier is not None and frontier != expected:
        problem("the log head's frontier does not match the tree recomputed from the entries "
                "(the head row was edited)")


def _check_checkpoints(session: Session, verifier: cpmod.CheckpointVerifier, tree: _Tree,
                       entry_times: dict[int, str], problem: Callable[[str], None],
                       batch: int = 5000) -> tuple[int, int, str | None]:
    """Every stored checkpoint, oldest first, in batches: its signature, its columns against
    its signed note, its root against the recomputed tree, its time against its newest entry's.
    Returns (newest size, how many were checked, newest note)."""
    last, checked = -1, 0
    newest: tuple[int, str] | None = None
    while True:
        rows = session.execute(
            select(CheckpointRow.size, CheckpointRow.root_hash, CheckpointRow.note,
                   CheckpointRow.created_at).where(CheckpointRow.size > last)
            .order_by(CheckpointRow.size).limit(batch)).all()
        if not rows:
            break
        last = rows[-1][0]
        for row_size, row_root, note, created_at in rows:
            checked += 1
            want_time = entry_times.get(row_size)
            if 0 < row_size <= tree.size:
                expected_root = tree.root(row_size)
                if _signed_as_expected(note, row_size, expected_root, verifier):
                    newest = (row_size, note)
                    if bytes(row_root) != expected_root:
                        problem(f"stored checkpoint at size {row_size}: its columns disagree "
                                "with its signed note")
                    if want_time is not None and created_at != want_time:
                        problem(f"stored checkpoint at size {row_size}: created_at is "
                                f"{created_at!r} but its newest entry ({row_size - 1}) was "
                                f"logged at {want_time!r}")
                    continue
            # Anything else gets the strict parser, for a precise message.
            try:
                cp = cpmod.verify_checkpoint(note, verifier, origin=verifier.name)
            except ChainproofError as exc:
                problem(f"stored checkpoint at size {row_size}: {exc.message}")
                continue
            newest = (row_size, note)
            if cp.size != row_size or cp.root_hash != bytes(row_root):
                problem(f"stored checkpoint at size {row_size}: its columns disagree with its "
                        "signed note")
            if cp.size > tree.size:
                problem(f"checkpoint at size {cp.size} is ahead of the log's {tree.size} "
                        "entries: entries were deleted (truncation)")
                continue
            if cp.root_hash != tree.root(cp.size):
                problem(f"checkpoint at size {cp.size}: the signed root does not match the root "
                        "recomputed from the entries (history was rewritten)")
            want_time = entry_times.get(cp.size)
            if want_time is not None and created_at != want_time:
                problem(f"stored checkpoint at size {row_size}: created_at is {created_at!r} "
                        f"but its newest entry ({cp.size - 1}) was logged at {want_time!r}")
    if last < 0:
        if tree.size:
            problem("the log has entries but no signed checkpoint")
        return 0, 0, None
    if last < tree.size:
        problem(f"{tree.size - last} entries after the newest checkpoint (size "
                f"{last}) are covered by no signature: they were inserted outside "
                "chainproof")
    return last, checked, None if newest is None else newest[1]


def _signed_as_expected(note: str, size: int, root: bytes,
                        verifier: cpmod.CheckpointVerifier) -> bool:
    """Whether ``note`` is exactly the checkpoint (origin, size, root) the recomputed tree says,
    with one valid signature by the log's key and nothing else: the common case, checked
    without the general signed-note parser (which costs more than the signature at a million
    checkpoints). False sends the note to :func:`cpmod.verify_checkpoint`."""
    body = f"{verifier.name}\n{size}\n{base64.b64encode(root).decode()}\n"
    prefix = f"{body}\n\u2014 {verifier.name} "
    if not note.startswith(prefix) or not note.endswith("\n"):
        return False
    encoded = note[len(prefix):-1]
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return False
    if len(raw) != 68 or raw[:4] != verifier.key_id or base64.b64encode(raw).decode() != encoded:
        return False
    try:
        verifier.public_key.verify(raw[4:], body.encode())
    except InvalidSignature:
        return False
    return True


def _check_one(cp: cpmod.Checkpoint, tree: _Tree, problem: Callable[[str], None],
               what: str) -> None:
    """Consistency of the current tree with one verified checkpoint kept outside the database
    (a witness's, or a client's memory): a larger one means rollback, another root a fork."""
    now = merkle_head(tree.size, tree.root(tree.size)) if tree.size else "the empty tree"
    then = merkle_head(cp.size, cp.root_hash)
    if cp.size > tree.size:
        problem(f"{what} is at size {cp.size} but the log has only {tree.size} entries: the "
                f"log was truncated or rolled back (kept: {then}; log now: {now})")
        return
    if cp.size == 0:
        return
    if cp.root_hash != tree.root(cp.size):
        problem(f"{what} (size {cp.size}) is not consistent with the current log: history "
                f"before it was rewritten (kept: {then}; log now: {now})")


def merkle_head(size: int, root: bytes) -> str:
    return f"size {size}, root {bytes(root).hex()}"


def _check_witnesses(notes: Iterable[str], verifier: cpmod.CheckpointVerifier, tree: _Tree,
                     problem: Callable[[str], None]) -> int:
    roots_by_size: dict[int, bytes] = {}
    count = 0
    for n, note in enumerate(notes, 1):
        count += 1
        try:
            cp = cpmod.verify_checkpoint(note, verifier, origin=verifier.name)
        except ChainproofError as exc:
            problem(f"witnessed checkpoint #{n}: {exc.message}")
            continue
        earlier = roots_by_size.setdefault(cp.size, cp.root_hash)
        if earlier != cp.root_hash:
            problem(f"split view: two validly signed checkpoints of size {cp.size} have "
                    f"different roots ({earlier.hex()[:16]}… and {cp.root_hash.hex()[:16]}…)")
        _check_one(cp, tree, problem, f"witnessed checkpoint #{n}")
    return count


def parse_witness_file(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"cannot read checkpoint file {path}: {exc}") from None
    notes = cpmod.parse_checkpoint_file(text)
    if not notes:
        raise MalformedFileError(f"{path} holds no checkpoints",
                                 hint="make one with `chainproof audit checkpoint --out FILE`")
    return notes


