"""The database-backed audit log: appends inside the caller's transaction, proofs, checkpoints.

Storage layout: ``log_entries`` holds each entry's canonical bytes and leaf hash (the level-0
nodes); ``log_nodes`` holds the hash of every larger *perfect, aligned* subtree (level L ≥ 1,
index i covers leaves [i·2^L, (i+1)·2^L)). Appending leaf n writes at most log2(n) nodes; every
root, inclusion and consistency proof is assembled from O(log n) stored nodes, so a proof at a
million entries costs about twenty primary-key reads. ``log_head`` is one row that writers lock,
so two writers can never both take sequence number n.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from chainproof.db.tables import CheckpointRow, LogEntryRow, LogHeadRow, LogNodeRow, table
from chainproof.errors import LedgerIntegrityError
from chainproof.ledger import merkle
from chainproof.records.log import LogEntry

NODE_INDEX_BITS = 40

# Every write transaction runs these. Built once, with bind parameters, they skip SQLAlchemy's
# per-call statement construction; the inserts target the tables (Core), not the ORM classes,
# so a batch is one executemany with no unit-of-work bookkeeping.
_LOCK_HEAD = select(LogHeadRow.size, LogHeadRow.frontier).where(
    LogHeadRow.id == 1).with_for_update()
_LEAVES = select(LogEntryRow.seq, LogEntryRow.leaf_hash).where(
    LogEntryRow.seq.in_(bindparam("seqs", expanding=True)))
_NODES = select(LogNodeRow.id, LogNodeRow.hash).where(
    LogNodeRow.id.in_(bindparam("ids", expanding=True)))
_INSERT_ENTRIES = insert(table(LogEntryRow))
_INSERT_NODES = insert(table(LogNodeRow))
_INSERT_CHECKPOINT = insert(table(CheckpointRow))
_SET_HEAD = update(table(LogHeadRow)).where(table(LogHeadRow).c.id == 1).values(
    size=bindparam("new_size"), frontier=bindparam("new_frontier"))


def node_key(level: int, index: int) -> int:
    """The ``log_nodes`` primary key of node (level, index)."""
    return (level << NODE_INDEX_BITS) | index


def frontier_positions(size: int) -> list[tuple[int, int]]:
    """(level, index) of the perfect subtrees that make up a tree of ``size`` leaves, left first."""
    positions = []
    start = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size & (1 << level):
            positions.append((level, start >> level))
            start += 1 << level
    return positions


def fold_root(frontier: Sequence[bytes]) -> bytes:
    """Root of a tree from its perfect subtrees (left first), as RFC 6962's MTH defines it."""
    if not frontier:
        return merkle.EMPTY_ROOT
    acc = frontier[-1]
    for node in reversed(frontier[:-1]):
        acc = merkle.node_hash(node, acc)
    return acc


class DatabaseNodes:
    """A :class:`merkle.NodeSource` reading perfect subtree hashes from ``log_nodes``."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._cache: dict[tuple[int, int], bytes] = {}

    def prefetch(self, positions: Sequence[tuple[int, int]]) -> None:
        wanted = [p for p in positions if p not in self._cache]
        if not wanted:
            return
        leaves = [ix for lv, ix in wanted if lv == 0]
        keys = {node_key(lv, ix): (lv, ix) for lv, ix in wanted if lv > 0}
        if leaves:
            for seq, digest in self._session.connection().execute(_LEAVES, {"seqs": leaves}):
                self._cache[(0, seq)] = bytes(digest)
        if keys:
            for key, digest in self._session.connection().execute(_NODES, {"ids": list(keys)}):
                self._cache[keys[key]] = bytes(digest)

    def node(self, level: int, index: int) -> bytes:
        key = (level, index)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        if level == 0:
            leaf = self._session.execute(select(LogEntryRow.leaf_hash).where(
                LogEntryRow.seq == index)).scalar_one_or_none()
            row = None if leaf is None else LogNodeRow(id=0, hash=leaf)
        else:
            row = self._session.get(LogNodeRow, node_key(level, index))
        if row is None:
            raise LedgerIntegrityError(
                f"the log's stored tree lacks node (level {level}, index {index})",
                hint="run `chainproof audit verify`: the log_nodes table was altered",
            )
        self._cache[key] = bytes(row.hash)
        return self._cache[key]

    def remember(self, level: int, index: int, digest: bytes) -> None:
        self._cache[(level, index)] = digest


@dataclass
class LogAppender:
    """Appends entries within one open transaction. Create it with :func:`open_appender`."""

    session: Session
    size: int
    nodes: DatabaseNodes
    frontier: list[bytes]
    appended: int = 0
    _entry_rows: list[dict[str, object]] = field(default_factory=list)
    _node_rows: list[dict[str, object]] = field(default_factory=list)

    def append(self, entry: LogEntry) -> bytes:
        if entry.seq != self.size:
            raise LedgerIntegrityError(f"log entry numbered {entry.seq}, expected {self.size}")
        body = entry.canonical_bytes()
        leaf = merkle.leaf_hash(body)
        self._entry_rows.append({"seq": entry.seq, "leaf_hash": leaf, "body": body,
                                 "action": entry.action, "actor": entry.actor,
                                 "object": entry.object[:300], "time": entry.time})
        new_nodes = [(0, self.size, leaf)]
        level, index, digest = 0, self.size, leaf
        # The left siblings met while climbing are exactly the frontier's right-most nodes.
        frontier = self.frontier
        while index & 1:
            left = frontier.pop()
            digest = merkle.node_hash(left, digest)
            level, index = level + 1, index >> 1
            new_nodes.append((level, index, digest))
        frontier.append(digest)
        for lvl, idx, h in new_nodes:
            if lvl > 0:  # level 0 is the entry's own leaf_hash column
                self._node_rows.append({"id": node_key(lvl, idx), "hash": h})
            self.nodes.remember(lvl, idx, h)
        self.size += 1
        self.appended += 1
        return leaf

    def root(self) -> bytes:
        return fold_root(self.frontier)

    def flush_head(self) -> None:
        """Write the buffered entries and nodes (bulk inserts) and the new head size."""
        connection = self.session.connection()
        if self._entry_rows:
            connection.execute(_INSERT_ENTRIES, self._entry_rows)
            if self._node_rows:
                connection.execute(_INSERT_NODES, self._node_rows)
            self._entry_rows, self._node_rows = [], []
        connection.execute(_SET_HEAD, {"new_size": self.size,
                                       "new_frontier": b"".join(self.frontier)})

    def record_checkpoint(self, note: str, time: str) -> None:
        """Store the signed checkpoint (``note``) of the tree as it now stands."""
        self.session.connection().execute(_INSERT_CHECKPOINT, {
            "size": self.size, "root_hash": self.root(), "note": note, "created_at": time})


def open_appender(session: Session) -> LogAppender:
    """Lock the log head for this transaction and load the frontier (one query)."""
    head = session.connection().execute(_LOCK_HEAD).one_or_none()
    if head is None:
        session.add(LogHeadRow(id=1, size=0, frontier=b""))
        session.flush()
        size, stored = 0, b""
    else:
        size, stored = head.size, head.frontier
    nodes = DatabaseNodes(session)
    positions = frontier_positions(size)
    if stored is not None and len(stored) == 32 * len(positions):
        frontier = [bytes(stored[i:i + 32]) for i in range(0, len(stored), 32)]
    else:
        # Written before the head kept its frontier (migration 0002): read it from the nodes
        # once; this transaction's flush stores it.
        nodes.prefetch(positions)
        frontier = [nodes.node(level, index) for level, index in positions]
    return LogAppender(session=session, size=size, nodes=nodes, frontier=frontier)


def stored_frontier(session: Session) -> tuple[int, bytes | None] | None:
    """The head's (size, frontier) as stored, for ``audit verify`` to check."""
    head = session.execute(select(LogHeadRow.size, LogHeadRow.frontier)).one_or_none()
    return None if head is None else (head.size, None if head.frontier is None
                                      else bytes(head.frontier))


def log_size(session: Session) -> int:
    head = session.get(LogHeadRow, 1)
    return 0 if head is None else head.size


def root_at(session: Session, size: int) -> bytes:
    nodes = DatabaseNodes(session)
    positions = frontier_positions(size)
    nodes.prefetch(positions)
    return fold_root([nodes.node(level, index) for level, index in positions])


def prove_inclusion(session: Session, seq: int, size: int | None = None) -> dict[str, object]:
    """An RFC 6962 inclusion proof for entry ``seq`` in the tree of ``size`` (default: now)."""
    tree_size = log_size(session) if size is None else size
    if not 0 <= seq < tree_size:
        from chainproof.errors import NotFoundError

        raise NotFoundError(f"log entry {seq} does not exist in a log of size {tree_size}",
                            hint="`chainproof audit log` lists the entries")
    row = session.get(LogEntryRow, seq)
    if row is None:
        raise LedgerIntegrityError(f"log entry {seq} is missing from the database")
    nodes = DatabaseNodes(session)
    nodes.prefetch(merkle.required_nodes_for_inclusion(seq, tree_size)
                   + merkle.required_nodes_for_root(tree_size))
    proof = merkle.inclusion_proof(seq, tree_size, nodes)
    return {"seq": seq, "tree_size": tree_size, "leaf_hash": bytes(row.leaf_hash).hex(),
            "proof": [h.hex() for h in proof], "root_hash": merkle.root(nodes, tree_size).hex(),
            "entry": bytes(row.body).decode()}


def prove_consistency(session: Session, old_size: int,
                      new_size: int | None = None) -> dict[str, object]:
    """An RFC 6962 §2.1.2 consistency proof that the tree of ``old_size`` entries is a prefix of
    the tree of ``new_size`` (default: the log's size now), from the stored nodes (O(log n)
    reads). Hashes are hex. A client that remembers (old_size, old_root) from a signed
    checkpoint checks it with :func:`merkle.verify_consistency` (or
    :meth:`chainproof.ledger.witness.CheckpointMemory.update`) against the new signed root.

    Returns ``{"old_size", "new_size", "old_root", "new_root", "proof"}``; the roots are what
    the stored tree says, for convenience only: a verifier must take both roots from signed
    checkpoints, never from this answer.
    """
    from chainproof.errors import BadInputError, NotFoundError

    current = log_size(session)
    tree_size = current if new_size is None else new_size
    for value, what in ((old_size, "old tree size"), (tree_size, "new tree size")):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise BadInputError(f"{what} must be a non-negative integer, got {value!r}")
    if old_size > tree_size:
        raise BadInputError(
            f"old tree size {old_size} is larger than new tree size {tree_size}",
            hint="a consistency proof goes from an older (smaller) tree to a newer one; a "
                 "client that remembers a larger tree than the server has is seeing a rollback")
    if tree_size > current:
        raise NotFoundError(f"the log has {current} entries, not {tree_size}",
                            hint="ask for a proof up to the size of the newest checkpoint")
    nodes = DatabaseNodes(session)
    nodes.prefetch(merkle.required_nodes_for_consistency(old_size, tree_size)
                   + merkle.required_nodes_for_root(old_size)
                   + merkle.required_nodes_for_root(tree_size))
    proof = merkle.consistency_proof(old_size, tree_size, nodes)
    return {"old_size": old_size, "new_size": tree_size,
            "old_root": merkle.root(nodes, old_size).hex(),
            "new_root": merkle.root(nodes, tree_size).hex(),
            "proof": [h.hex() for h in proof]}


def iter_entries(session: Session, batch: int = 50000) -> Iterator[Any]:
    """(seq, leaf_hash, body, action, actor, time) of every entry in sequence order, fetched in
    keyset-paginated batches of plain tuples (bounded memory, no ORM objects)."""
    last = -1
    columns = (LogEntryRow.seq, LogEntryRow.leaf_hash, LogEntryRow.body, LogEntryRow.action,
               LogEntryRow.actor, LogEntryRow.time)
    while True:
        rows = session.execute(
            select(*columns).where(LogEntryRow.seq > last).order_by(LogEntryRow.seq).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1][0]


def iter_entry_rows(session: Session, batch: int = 50000) -> Iterator[Any]:
    """Like :func:`iter_entries`, with every column of ``log_entries``: (seq, leaf_hash, body,
    action, actor, object, time), so that ``audit verify`` compares each with the entry."""
    last = -1
    columns = (LogEntryRow.seq, LogEntryRow.leaf_hash, LogEntryRow.body, LogEntryRow.action,
               LogEntryRow.actor, LogEntryRow.object, LogEntryRow.time)
    while True:
        rows = session.execute(
            select(*columns).where(LogEntryRow.seq > last).order_by(LogEntryRow.seq).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1][0]
