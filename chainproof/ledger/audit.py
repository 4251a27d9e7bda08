"""The log's key and checkpoints, and ``audit verify``: recompute everything, trust nothing.

Verification recomputes every leaf and every stored interior node from the entries, checks the
newest signed checkpoint and any checkpoints a witness kept (consistency, truncation, split
views), and replays the log to rebuild the state it describes, comparing that with the database
row by row. It needs the log's *public* key from outside the database (the workspace's
``log.pub`` or ``CHAINPROOF_LOG_PUBKEY``): someone who can write the database cannot forge it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from chainproof.db.tables import (
    AliasHistoryRow,
    AliasRow,
    ApprovalRow,
    AssetRow,
    AssetVersionRow,
    AttestationRow,
    CheckpointRow,
    DecisionRow,
    IdentityRow,
    KeyRow,
    LogNodeRow,
    ModelRow,
    ModelVersionRow,
    NamespaceRow,
    PromotionPolicyRow,
    PromotionRequestRow,
    RoleGrantRow,
    StepInputRow,
    StepOutputRow,
    StepRow,
    TokenRow,
    TrustPolicyRow,
)
from chainproof.errors import (
    BadInputError,
    ChainproofError,
    LedgerIntegrityError,
    MalformedFileError,
    WorkspaceError,
)
from chainproof.ledger import checkpoint as cpmod
from chainproof.ledger import merkle
from chainproof.ledger.log import (
    NODE_INDEX_BITS,
    fold_root,
    frontier_positions,
    iter_entries,
    node_key,
    stored_frontier,
)
from chainproof.records.log import Action, LogEntry

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

    def sign(self, size: int, root_hash: bytes) -> str:
        return cpmod.sign_checkpoint(cpmod.Checkpoint(self.origin, size, root_hash), self._signer)


def load_log_signer(path: Path, origin: str) -> LogSigner:
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
    return LogSigner(origin, key)


def load_log_verifier(path: Path, origin: str) -> cpmod.CheckpointVerifier:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except FileNotFoundError:
        raise WorkspaceError(f"the log's public key {path} does not exist",
                             hint="set CHAINPROOF_LOG_PUBKEY to the log.pub made by "
                                  "`chainproof init`") from None
    except (OSError, ValueError) as exc:
        raise WorkspaceError(f"cannot read the log's public key {path}: {exc}") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise WorkspaceError(f"{path} is not an Ed25519 public key")
    return cpmod.CheckpointVerifier(origin, key)


# --- verification --------------------------------------------------------------------------------


@dataclass
class AuditReport:
    """What ``audit verify`` checked. It is only returned when every check passed."""

    size: int
    root_hash: str
    checkpoint_size: int
    witnesses_checked: int
    rows_checked: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": True, "size": self.size, "root_hash": self.root_hash,
                "checkpoint_size": self.checkpoint_size,
                "witnesses_checked": self.witnesses_checked, "rows_checked": self.rows_checked}


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
               witness_notes: Iterable[str] = (), *, max_problems: int = 200) -> AuditReport:
    """Verify the whole log; raise :class:`LedgerIntegrityError` listing every discrepancy."""
    problems: list[str] = []

    def problem(text: str) -> None:
        if len(problems) < max_problems:
            problems.append(text)

    replay = _Replay(problem)
    leaves = bytearray()
    expected_seq = 0
    for seq, stored_leaf, raw_body, action, actor, time in iter_entries(session):
        if seq != expected_seq:
            problem(f"log entries {expected_seq}..{seq - 1} are missing (deleted or renumbered)"
                    if seq > expected_seq else f"log entry {seq} is out of order")
            expected_seq = seq
        body = bytes(raw_body)
        leaf = merkle.leaf_hash(body)
        if bytes(stored_leaf) != leaf:
            problem(f"log entry {seq}: stored leaf hash does not match its contents "
                    "(the entry was edited)")
        leaves += leaf
        try:
            fields = orjson.loads(body)
            claimed = (fields["seq"], fields["action"], fields["actor"], fields["time"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            problem(f"log entry {seq}: not a valid log entry")
        else:
            if claimed[0] != seq:
                problem(f"log entry stored at {seq} says it is entry {claimed[0]} "
                        "(entries were swapped or moved)")
            if (action, actor, time) != claimed[1:]:
                problem(f"log entry {seq}: indexed columns disagree with the signed entry")
            if claimed[1] in replay.handlers:
                try:
                    replay.apply(LogEntry.from_bytes(body))
                except ChainproofError as exc:
                    problem(f"log entry {seq}: {exc.message}")
        expected_seq += 1
    tree = _Tree(leaves)
    size = tree.size
    root = tree.root(size)

    _check_nodes(session, tree, problem)
    _check_head(session, tree, problem)
    checkpoint_size = _check_checkpoints(session, verifier, tree, problem)
    witnessed = _check_witnesses(witness_notes, verifier, tree, problem)
    rows = replay.compare(session, problem)
    if problems:
        raise LedgerIntegrityError(
            f"audit verification failed: {len(problems)} problem(s) in a log of {size} entries",
            problems=problems,
            hint="the database was changed outside chainproof; restore it from a backup taken "
                 "before the first entry named here, and find out who had write access",
        )
    return AuditReport(size=size, root_hash=root.hex(), checkpoint_size=checkpoint_size,
                       witnesses_checked=witnessed, rows_checked=rows)


def _check_nodes(session: Session, tree: _Tree, problem: Callable[[str], None]) -> None:
    """Compare every stored node with the recomputed tree, one level at a time as one byte
    string (a per-row comparison in Python costs seconds at a million entries)."""
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
    head = stored_frontier(session)
    if head is None:
        if tree.size:
            problem("the log has entries but no head row")
        return
    size, frontier = head
    if size != tree.size:
        problem(f"the log head says {size} entries, but {tree.size} are stored")
        return
    expected = b"".join(tree.node(lv, ix) for lv, ix in frontier_positions(tree.size))
    if frontier is not None and frontier != expected:
        problem("the log head's frontier does not match the tree recomputed from the entries "
                "(the head row was edited)")


def _check_checkpoints(session: Session, verifier: cpmod.CheckpointVerifier, tree: _Tree,
                       problem: Callable[[str], None], recent: int = 100) -> int:
    rows = session.execute(
        select(CheckpointRow).order_by(CheckpointRow.size.desc()).limit(recent)
    ).scalars().all()
    if not rows:
        if tree.size:
            problem("the log has entries but no signed checkpoint")
        return 0
    for i, row in enumerate(rows):
        try:
            cp = cpmod.verify_checkpoint(row.note, verifier)
        except ChainproofError as exc:
            problem(f"stored checkpoint at size {row.size}: {exc.message}")
            continue
        if cp.size != row.size or cp.root_hash != bytes(row.root_hash):
            problem(f"stored checkpoint at size {row.size}: its columns disagree with its "
                    "signed note")
        if cp.size > tree.size:
            problem(f"checkpoint at size {cp.size} is ahead of the log's {tree.size} entries: "
                    "entries were deleted (truncation)")
        elif cp.root_hash != tree.root(cp.size):
            problem(f"checkpoint at size {cp.size}: the signed root does not match the root "
                    "recomputed from the entries (history was rewritten)")
        if i == 0 and cp.size < tree.size:
            problem(f"{tree.size - cp.size} entries after the newest checkpoint (size "
                    f"{cp.size}) are covered by no signature: they were inserted outside "
                    "chainproof")
    return rows[0].size


def _check_witnesses(notes: Iterable[str], verifier: cpmod.CheckpointVerifier, tree: _Tree,
                     problem: Callable[[str], None]) -> int:
    roots_by_size: dict[int, bytes] = {}
    count = 0
    for n, note in enumerate(notes, 1):
        count += 1
        try:
            cp = cpmod.verify_checkpoint(note, verifier)
        except ChainproofError as exc:
            problem(f"witnessed checkpoint #{n}: {exc.message}")
            continue
        earlier = roots_by_size.setdefault(cp.size, cp.root_hash)
        if earlier != cp.root_hash:
            problem(f"split view: two validly signed checkpoints of size {cp.size} have "
                    f"different roots ({earlier.hex()[:16]}… and {cp.root_hash.hex()[:16]}…)")
        if cp.size > tree.size:
            problem(f"witnessed checkpoint #{n} is at size {cp.size} but the log has only "
                    f"{tree.size} entries: the log was truncated or rolled back")
            continue
        if cp.size == 0:
            continue
        proof = merkle.consistency_proof(cp.size, tree.size, tree)
        try:
            merkle.verify_consistency(cp.size, tree.size, cp.root_hash, tree.root(tree.size),
                                      proof)
        except LedgerIntegrityError:
            problem(f"witnessed checkpoint #{n} (size {cp.size}) is not consistent with the "
                    "current log: history before it was rewritten")
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


# --- state replay ---------------------------------------------------------------------------------


def _json(text: str) -> Any:
    return json.loads(text)


class _Replay:
    """Rebuilds, from the log alone, the rows the database should hold."""

    def __init__(self, problem: Callable[[str], None]) -> None:
        self.problem = problem
        self.versions: dict[tuple[str, str, int], tuple[int, dict[str, Any]]] = {}
        self.steps: dict[str, tuple[int, dict[str, Any]]] = {}
        self.handlers: dict[str, Callable[[LogEntry], None]] = {
            Action.ASSET_VERSION_ADD: self._version,
            Action.STEP_RECORD: self._step,
        }
        # Every other table: name -> {key: (seq of the entry that made the row, its state)}.
        self.state: dict[str, dict[Any, tuple[int, dict[str, Any]]]] = {
            name: {} for name in ("identities", "keys", "attestations", "trust", "models",
                                  "model_versions", "aliases", "alias_history", "policies",
                                  "requests", "reviews", "decisions", "tokens", "grants",
                                  "namespaces")}

        def put(table: str, key_of: Callable[[dict[str, Any]], Any],
                defaults: dict[str, Any] | None = None) -> Callable[[LogEntry], None]:
            def handler(entry: LogEntry) -> None:
                key = key_of(entry.detail)
                if table not in ("aliases", "grants", "namespaces") and key in self.state[table]:
                    self.problem(f"log entry {entry.seq} ({entry.action}) repeats {key!r}")
                self.state[table][key] = (entry.seq, {**(defaults or {}), **entry.detail})
            return handler

        def on_key_revoke(entry: LogEntry) -> None:
            keyid = entry.detail["keyid"]
            if keyid not in self.state["keys"]:
                self.problem(f"log entry {entry.seq} revokes key {keyid[:16]}…, never "
                             "registered")
                return
            seq, d = self.state["keys"][keyid]
            if d["revoked_at"] is not None:
                self.problem(f"log entry {entry.seq} revokes key {keyid[:16]}… a second time")
            self.state["keys"][keyid] = (seq, {**d, "revoked_at": entry.detail["revoked_at"],
                                               "revoked_reason": entry.detail["reason"]})

        self.handlers.update({
            Action.IDENTITY_CREATE: put("identities", lambda d: d["name"]),
            Action.KEY_REGISTER: put("keys", lambda d: d["keyid"],
                                     {"revoked_at": None, "revoked_reason": None}),
            Action.KEY_REVOKE: on_key_revoke,
            Action.ATTESTATION_ADD: put("attestations", lambda d: d["step_id"]),
            Action.TRUST_POLICY_SET: put("trust", lambda d: d["version"]),
        })

        alias_state = put("aliases", lambda d: (d["model"], d["alias"]))
        alias_history = put("alias_history", lambda d: None)

        def alias_move(entry: LogEntry) -> None:
            alias_state(entry)
            self.state["alias_history"][entry.seq] = (entry.seq, dict(entry.detail))

        del alias_history

        def request_status(status: str) -> Callable[[LogEntry], None]:
            def handler(entry: LogEntry) -> None:
                rid = entry.detail["request_id"]
                if rid in self.state["requests"]:
                    seq, d = self.state["requests"][rid]
                    self.state["requests"][rid] = (seq, {**d, "status": status})
                else:
                    self.problem(f"log entry {entry.seq} refers to unknown request {rid}")
            return handler

        review = put("reviews", lambda d: (d["request_id"], d["approver"]))
        reject_status = request_status("rejected")
        decide = put("decisions", lambda d: d["id"])
        executed = request_status("executed")

        def on_reject(entry: LogEntry) -> None:
            review(entry)
            reject_status(entry)

        def on_decision(entry: LogEntry) -> None:
            decide(entry)
            executed(entry)

        def on_request(entry: LogEntry) -> None:
            put("requests", lambda d: d["id"])(entry)
            seq, d = self.state["requests"][entry.detail["id"]]
            self.state["requests"][entry.detail["id"]] = (seq, {**d, "status": "pending"})

        def on_token_revoke(entry: LogEntry) -> None:
            tid = entry.detail["id"]
            if tid not in self.state["tokens"]:
                self.problem(f"log entry {entry.seq} revokes unknown token {tid}")
                return
            seq, d = self.state["tokens"][tid]
            self.state["tokens"][tid] = (seq, {**d, "revoked_at": entry.detail["revoked_at"]})

        grant = put("grants", lambda d: (d["identity"], d["role"], d["namespace"]))

        def on_role_revoke(entry: LogEntry) -> None:
            key = (entry.detail["identity"], entry.detail["role"], entry.detail["namespace"])
            if self.state["grants"].pop(key, None) is None:
                self.problem(f"log entry {entry.seq} revokes a role that was not granted")

        self.handlers.update({
            Action.MODEL_CREATE: put("models", lambda d: (d["namespace"], d["name"])),
            Action.MODEL_VERSION_ADD: put("model_versions", lambda d: (d["model"], d["version"])),
            Action.ALIAS_MOVE: alias_move,
            Action.PROMOTION_POLICY_SET: put("policies", lambda d: d["version"]),
            Action.PROMOTION_REQUEST: on_request,
            Action.PROMOTION_APPROVE: review,
            Action.PROMOTION_REJECT: on_reject,
            Action.PROMOTION_DECISION: on_decision,
            Action.TOKEN_CREATE: put("tokens", lambda d: d["id"], {"revoked_at": None}),
            Action.TOKEN_REVOKE: on_token_revoke,
            Action.ROLE_GRANT: grant,
            Action.ROLE_REVOKE: on_role_revoke,
            Action.NAMESPACE_SET: put("namespaces", lambda d: d["name"]),
        })

    def apply(self, entry: LogEntry) -> None:
        handler = self.handlers.get(entry.action)
        if handler is not None:
            handler(entry)

    def _version(self, entry: LogEntry) -> None:
        d = entry.detail
        key = (d["namespace"], d["name"], d["version"])
        if key in self.versions:
            self.problem(f"log entry {entry.seq} adds {key[0]}/{key[1]}@{key[2]} a second time")
        self.versions[key] = (entry.seq, d)

    def _step(self, entry: LogEntry) -> None:
        d = entry.detail
        if d["id"] in self.steps:
            self.problem(f"log entry {entry.seq} records step {d['id']} a second time")
        self.steps[d["id"]] = (entry.seq, d)

    def compare(self, session: Session, problem: Callable[[str], None]) -> dict[str, int]:
        counts = {"asset_versions": 0, "steps": 0}
        rows = session.execute(
            select(AssetVersionRow, AssetRow).join(AssetRow,
                                                   AssetRow.id == AssetVersionRow.asset_id)
        ).all()
        by_id: dict[int, str] = {}
        actual_keys = set()
        for v, a in rows:
            counts["asset_versions"] += 1
            key = (a.namespace, a.name, v.version)
            label = f"{a.namespace}/{a.name}@{v.version}"
            by_id[v.id] = label
            actual_keys.add(key)
            logged = self.versions.get(key)
            if logged is None:
                problem(f"asset version {label} (row id {v.id}) has no log entry: it was "
                        "written to the database directly")
                continue
            seq, d = logged
            actual = {"namespace": a.namespace, "name": a.name, "kind": a.kind,
                      "version": v.version, "digest": v.digest, "size": v.size,
                      "media_type": v.media_type, "is_directory": bool(v.is_directory),
                      "created_at": v.created_at, "created_by": v.created_by,
                      "producer_step": v.producer_step}
            for name, value in actual.items():
                if d.get(name) != value:
                    problem(f"asset version {label}: {name} is {value!r} in the database but "
                            f"{d.get(name)!r} in log entry {seq}")
            if v.log_seq != seq:
                problem(f"asset version {label}: points at log entry {v.log_seq}, "
                        f"but was logged as entry {seq}")
        for key, (seq, _) in self.versions.items():
            if key not in actual_keys:
                problem(f"log entry {seq} adds {key[0]}/{key[1]}@{key[2]}, which is missing "
                        "from the database (deleted)")
        links_in: dict[str, set[str]] = {}
        for sid, vid in session.execute(select(StepInputRow.step_id, StepInputRow.version_id)):
            links_in.setdefault(sid, set()).add(by_id.get(vid, f"row {vid}"))
        links_out: dict[str, set[tuple[str, bool]]] = {}
        for sid, vid, reused in session.execute(
                select(StepOutputRow.step_id, StepOutputRow.version_id, StepOutputRow.reused)):
            links_out.setdefault(sid, set()).add((by_id.get(vid, f"row {vid}"), bool(reused)))
        seen_steps = set()
        for s in session.execute(select(StepRow)).scalars():
            counts["steps"] += 1
            seen_steps.add(s.id)
            logged_step = self.steps.get(s.id)
            if logged_step is None:
                problem(f"step {s.id} has no log entry: it was written to the database directly")
                continue
            seq, d = logged_step
            actual_step = {"namespace": s.namespace, "kind": s.kind, "identity": s.identity,
                           "status": s.status, "command": _json(s.command),
                           "parameters": _json(s.parameters), "started_at": s.started_at,
                           "ended_at": s.ended_at, "environment": _json(s.environment),
                           "code_revision": _json(s.code_revision), "error": s.error}
            for name, value in actual_step.items():
                if d.get(name) != value:
                    problem(f"step {s.id}: {name} differs from log entry {seq}")
            if s.log_seq != seq:
                problem(f"step {s.id}: points at log entry {s.log_seq}, but was logged as {seq}")
            want_in = {_full(i["ref"]) for i in d["inputs"]}
            if links_in.get(s.id, set()) != want_in:
                problem(f"step {s.id}: its inputs in the database differ from log entry {seq}")
            want_out = {(_full(o["ref"]), bool(o["reused"])) for o in d["outputs"]}
            if links_out.get(s.id, set()) != want_out:
                problem(f"step {s.id}: its outputs in the database differ from log entry {seq}")
        for sid, (seq, _) in self.steps.items():
            if sid not in seen_steps:
                problem(f"log entry {seq} records step {sid}, which is missing from the "
                        "database (deleted)")
        self._compare_tables(session, problem, counts)
        return counts

    def _compare_tables(self, session: Session, problem: Callable[[str], None],
                        counts: dict[str, int]) -> None:
        """Every remaining table, row by row, against the state the log rebuilds."""
        def sha(text_: str) -> str:
            return "sha256:" + hashlib.sha256(text_.encode()).hexdigest()

        models = {m.id: f"{m.namespace}/{m.name}" for m in session.execute(
            select(ModelRow)).scalars()}
        requests = {r.id: r for r in session.execute(select(PromotionRequestRow)).scalars()}
        tables: list[tuple[str, str, Any, Callable[[Any], tuple[Any, int, dict[str, Any]]]]] = [
            ("identities", "identity", IdentityRow, lambda r: (r.name, r.log_seq, {
                "kind": r.kind, "created_at": r.created_at, "created_by": r.created_by})),
            ("keys", "key", KeyRow, lambda r: (r.keyid, r.log_seq, {
                "identity": r.identity, "public_pem": r.public_pem,
                "registered_at": r.registered_at, "registered_by": r.registered_by,
                "revoked_at": r.revoked_at, "revoked_reason": r.revoked_reason})),
            ("attestations", "attestation of step", AttestationRow, lambda r: (
                r.step_id, r.log_seq, {
                    "predicate_type": r.predicate_type, "payload_digest": r.payload_digest,
                    "keyid": r.keyid, "envelope_digest": sha(r.envelope),
                    "created_at": r.created_at, "created_by": r.created_by})),
            ("trust", "trust policy version", TrustPolicyRow, lambda r: (r.version, r.log_seq, {
                "digest": r.digest, "document": r.document, "set_at": r.set_at,
                "set_by": r.set_by})),
            ("models", "model", ModelRow, lambda r: ((r.namespace, r.name), r.log_seq, {
                "namespace": r.namespace, "name": r.name, "created_at": r.created_at,
                "created_by": r.created_by})),
            ("model_versions", "model version", ModelVersionRow, lambda r: (
                (models.get(r.model_id), r.version), r.log_seq, {
                    "digest": r.digest, "created_at": r.created_at,
                    "created_by": r.created_by})),
            ("aliases", "alias", AliasRow, lambda r: ((models.get(r.model_id), r.alias),
                                                      r.log_seq, {
                "to_version": r.version, "digest": r.digest, "moved_at": r.moved_at,
                "moved_by": r.moved_by, "decision_id": r.decision_id,
                "override": bool(r.override)})),
            ("alias_history", "alias history entry", AliasHistoryRow, lambda r: (
                r.log_seq, r.log_seq, {
                    "model": models.get(r.model_id), "alias": r.alias,
                    "from_version": r.from_version, "to_version": r.to_version,
                    "moved_at": r.moved_at, "moved_by": r.moved_by,
                    "decision_id": r.decision_id, "override": bool(r.override),
                    "reason": r.reason})),
            ("policies", "promotion policy", PromotionPolicyRow, lambda r: (
                r.version, r.log_seq, {"digest": r.digest, "document": r.document,
                                       "set_at": r.set_at, "set_by": r.set_by})),
            ("requests", "promotion request", PromotionRequestRow, lambda r: (
                r.id, r.log_seq, {"model": models.get(r.model_id), "version": r.version,
                                  "alias": r.alias, "digest": r.digest,
                                  "policy_version": r.policy_version,
                                  "requested_at": r.requested_at,
                                  "requested_by": r.requested_by, "status": r.status})),
            ("reviews", "approval", ApprovalRow, lambda r: (
                (r.request_id, r.approver), r.log_seq, {
                    "decision": r.decision, "reason": r.reason, "keyid": r.keyid,
                    "envelope_digest": sha(r.envelope), "created_at": r.created_at})),
            ("decisions", "promotion decision", DecisionRow, lambda r: (
                r.id, r.log_seq, {"request_id": r.request_id, "result": r.result,
                                  "envelope_digest": sha(r.envelope),
                                  "created_at": r.created_at, "created_by": r.created_by})),
            ("tokens", "token", TokenRow, lambda r: (r.id, r.log_seq, {
                "identity": r.identity, "token_hash": r.token_hash, "created_at": r.created_at,
                "expires_at": r.expires_at, "revoked_at": r.revoked_at})),
            ("grants", "role grant", RoleGrantRow, lambda r: (
                (r.identity, r.role, r.namespace), r.log_seq, {
                    "granted_at": r.granted_at, "granted_by": r.granted_by})),
            ("namespaces", "namespace", NamespaceRow, lambda r: (r.name, r.log_seq, {
                "mode": r.mode, "set_at": r.set_at, "set_by": r.set_by})),
        ]
        del requests
        for state, label, model, extract in tables:
            logged = self.state[state]
            seen = set()
            for row in session.execute(select(model)).scalars():
                counts[model.__tablename__] = counts.get(model.__tablename__, 0) + 1
                key, row_seq, actual = extract(row)
                seen.add(key)
                found = logged.get(key)
                if found is None:
                    problem(f"{label} {key} has no log entry: it was written to the database "
                            "directly")
                    continue
                seq, detail = found
                for name, value in actual.items():
                    want = detail.get(name)
                    if want != value:
                        problem(f"{label} {key}: {name} is {value!r} in the database but "
                                f"{want!r} in log entry {seq}")
                if row_seq != seq:
                    problem(f"{label} {key}: points at log entry {row_seq}, but was logged "
                            f"as {seq}")
            for key, (seq, _) in logged.items():
                if key not in seen:
                    problem(f"log entry {seq}: {label} {key} is missing from the database "
                            "(deleted)")


def _full(ref: str) -> str:
    """``name@1`` → ``default/name@1``: link labels always carry the namespace."""
    body = ref.split("@", 1)[0]
    return ref if "/" in body else f"default/{ref}"
