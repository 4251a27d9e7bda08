"""The state the audit log describes, rebuilt from the log alone, and compared with the database
column by column — driven by the table metadata, so that no column can be forgotten.

Every column of every table in :data:`chainproof.db.tables.Base.metadata` is listed here,
either in :data:`COMPARED` (its value is rebuilt from the log and compared) or in
:data:`DERIVED` (with the reason it is not a copy of a logged value, and how it is checked
instead). A table or column in neither — a developer added one and did not decide — makes
``audit verify`` fail, naming it (:func:`schema_problems`).

The log tables themselves (``log_entries``, ``log_nodes``, ``log_head``, ``checkpoints``) are
checked by :mod:`chainproof.ledger.audit` against the tree recomputed from the entries; they are
listed here too, so the coverage rule holds for every table.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Boolean, MetaData, select
from sqlalchemy.orm import Session

from chainproof.records.log import Action, LogEntry

Problem = Callable[[str], None]

ROW_ID = ("surrogate key (autoincrement): rows are matched by their logged natural key; every "
          "column that refers to it is resolved to that key and compared; ids must increase in "
          "log order (writers hold the log-head lock, so ids are allocated in log order)")
LOG_SEQ = "seq of the log entry that wrote the row's current state (compared)"

# table -> column -> the logged field (in the entry's detail, unless said otherwise) whose value
# the column must equal. Keys of the natural key are compared by matching rows to entries.
COMPARED: dict[str, dict[str, str]] = {
    "assets": {"namespace": "namespace", "name": "name",
               "kind": "kind (the same in every asset.version.add of the asset)"},
    "asset_versions": {
        "asset_id": "namespace/name (resolved through assets)", "version": "version",
        "digest": "digest", "size": "size", "media_type": "media_type",
        "is_directory": "is_directory", "created_at": "created_at",
        "created_by": "created_by", "producer_step": "producer_step", "log_seq": LOG_SEQ},
    "steps": {"id": "id", "namespace": "namespace", "kind": "kind", "identity": "identity",
              "status": "status", "command": "command (as JSON)",
              "parameters": "parameters (as JSON)", "started_at": "started_at",
              "ended_at": "ended_at", "environment": "environment (as JSON)",
              "code_revision": "code_revision (as JSON)", "error": "error",
              "log_seq": "seq of the step.record entry"},
    "step_inputs": {"step_id": "step.record id",
                    "version_id": "inputs[].ref (resolved through asset_versions)"},
    "step_outputs": {"step_id": "step.record id",
                     "version_id": "outputs[].ref (resolved through asset_versions)",
                     "reused": "outputs[].reused"},
    "identities": {"name": "name", "kind": "kind", "created_at": "created_at",
                   "created_by": "created_by", "log_seq": LOG_SEQ},
    "signing_keys": {"keyid": "keyid", "identity": "identity", "public_pem": "public_pem",
                     "registered_at": "registered_at", "registered_by": "registered_by",
                     "revoked_at": "key.revoke revoked_at", "revoked_reason": "key.revoke reason",
                     "log_seq": "seq of the key.register entry",
                     "revoke_seq": "seq of the key.revoke entry (None while not revoked)"},
    "attestations": {"step_id": "step_id", "predicate_type": "predicate_type",
                     "envelope": "envelope_digest (SHA-256 of the stored envelope)",
                     "payload_digest": "payload_digest", "keyid": "keyid",
                     "created_at": "created_at", "created_by": "created_by", "log_seq": LOG_SEQ},
    "trust_policies": {"version": "version", "document": "document", "digest": "digest",
                       "set_at": "set_at", "set_by": "set_by", "log_seq": LOG_SEQ},
    "role_grants": {"identity": "identity", "role": "role", "namespace": "namespace",
                    "granted_at": "granted_at", "granted_by": "granted_by", "log_seq": LOG_SEQ},
    "namespaces": {"name": "name", "mode": "mode", "set_at": "set_at", "set_by": "set_by",
                   "log_seq": "seq of the newest namespace.set of it"},
    "tokens": {"id": "id", "token_hash": "token_hash", "identity": "identity",
               "created_at": "created_at", "created_by": "created_by",
               "expires_at": "expires_at", "revoked_at": "token.revoke revoked_at",
               "log_seq": "seq of the token.create entry"},
    "models": {"namespace": "namespace", "name": "name", "created_at": "created_at",
               "created_by": "created_by", "log_seq": LOG_SEQ},
    "model_versions": {
        "model_id": "model (resolved through models)", "version": "version",
        "asset_version_id": "asset: NAMESPACE/NAME@VERSION (resolved through asset_versions)",
        "digest": "digest", "created_at": "created_at", "created_by": "created_by",
        "log_seq": LOG_SEQ},
    "aliases": {"model_id": "model (resolved through models)", "alias": "alias",
                "version": "to_version", "digest": "digest", "moved_at": "moved_at",
                "moved_by": "moved_by", "decision_id": "decision_id", "override": "override",
                "log_seq": "seq of the newest registry.alias.move of it"},
    "model_tags": {"model_id": "model (resolved through models)",
                   "version": "version (0: the registered model itself)", "key": "key",
                   "value": "value", "set_at": "set_at", "set_by": "set_by",
                   "log_seq": "seq of the newest registry.tag.set of it"},
    "alias_history": {"model_id": "model (resolved through models)", "alias": "alias",
                      "from_version": "from_version", "to_version": "to_version",
                      "moved_at": "moved_at", "moved_by": "moved_by",
                      "decision_id": "decision_id", "override": "override", "reason": "reason",
                      "log_seq": LOG_SEQ},
    "promotion_policies": {"version": "version", "document": "document", "digest": "digest",
                           "set_at": "set_at", "set_by": "set_by", "log_seq": LOG_SEQ},
    "promotion_requests": {
        "id": "id", "model_id": "model (resolved through models)", "version": "version",
        "alias": "alias", "digest": "digest", "policy_version": "policy_version",
        "requested_at": "requested_at", "requested_by": "requested_by",
        "status": "pending, then rejected (promotion.reject) or executed (promotion.decision)",
        "log_seq": "seq of the promotion.request entry"},
    "approvals": {"request_id": "request_id", "approver": "approver", "decision": "decision",
                  "reason": "reason", "envelope": "envelope_digest (SHA-256 of the envelope)",
                  "keyid": "keyid", "created_at": "created_at", "log_seq": LOG_SEQ},
    "promotion_decisions": {
        "id": "id", "request_id": "request_id", "result": "result",
        "envelope": "envelope_digest (SHA-256 of the envelope)", "created_at": "created_at",
        "created_by": "created_by", "log_seq": LOG_SEQ},
    # The log itself: checked against the tree recomputed from the entries (audit.py).
    "log_entries": {"seq": "position in the log and the entry's own seq",
                    "leaf_hash": "SHA-256(0x00 || body)", "body": "the signed tree's leaf data",
                    "action": "body action", "actor": "body actor",
                    "object": "body object (first 300 characters)", "time": "body time"},
    "log_nodes": {"id": "(level, index) of a perfect subtree that exists at the log's size",
                  "hash": "the recomputed subtree hash"},
    "log_head": {"size": "number of entries", "frontier": "recomputed frontier hashes"},
    "checkpoints": {"size": "signed note tree size", "root_hash": "signed note root",
                    "note": "signed by the log key; its root equals the recomputed root",
                    "created_at": "time of the newest entry it covers"},
}

# table -> column -> why the column is not a copy of a logged value, and how it is checked.
DERIVED: dict[str, dict[str, str]] = {
    "assets": {"id": ROW_ID},
    "asset_versions": {"id": ROW_ID},
    "attestations": {"id": ROW_ID},
    "models": {"id": ROW_ID},
    "model_versions": {"id": ROW_ID},
    "alias_history": {"id": ROW_ID},
    "approvals": {"id": ROW_ID},
    "log_head": {"id": "the single head row is id 1 (writers lock it by that id); checked"},
}

# Foreign-key columns: value -> the natural key of the row it points at.
_RESOLVED = {"asset_id": "assets", "version_id": "asset_versions",
             "asset_version_id": "asset_versions", "model_id": "models"}
_JSON_COLUMNS = {"steps": ("command", "parameters", "environment", "code_revision")}
LEDGER_TABLES = frozenset({"log_entries", "log_nodes", "log_head", "checkpoints"})


def schema_problems(metadata: MetaData) -> list[str]:
    """Every table or column of ``metadata`` that is neither compared nor declared derived (and
    every listed one that no longer exists): each must be decided by a developer."""
    out = []
    for name, table in metadata.tables.items():
        if name not in COMPARED and name not in DERIVED:
            out.append(f"table {name} is unknown to audit verify: add its columns to "
                       "chainproof.ledger.replay.COMPARED (rebuilt from the log) or DERIVED "
                       "(with the reason)")
            continue
        compared, derived = COMPARED.get(name, {}), DERIVED.get(name, {})
        for column in table.columns:
            if column.name in compared and column.name in derived:
                out.append(f"column {name}.{column.name} is listed both as compared and as "
                           "derived")
            elif column.name not in compared and column.name not in derived:
                out.append(f"column {name}.{column.name} is unknown to audit verify: nothing "
                           "checks it; list it in chainproof.ledger.replay.COMPARED (and rebuild "
                           "it from the log) or DERIVED (with the reason)")
        listed = set(compared) | set(derived)
        for column_name in sorted(listed - {c.name for c in table.columns}):
            out.append(f"column {name}.{column_name} is listed for audit verify but does not "
                       "exist")
    for name in sorted((set(COMPARED) | set(DERIVED)) - set(metadata.tables)):
        out.append(f"table {name} is listed for audit verify but does not exist")
    return out


@dataclass(frozen=True)
class _Spec:
    label: str
    key: Callable[[Mapping[str, Any]], Any]
    show: Callable[[Any], str]


def _at(key: Any) -> str:
    return f"{key[0]}@{key[1]}"


def _plain(key: Any) -> str:
    return str(key)


def _tuple(key: Any) -> str:
    return repr(key)


# How a row (after foreign keys are resolved) is matched with its entry, and named in messages.
SPECS: dict[str, _Spec] = {
    "assets": _Spec("asset", lambda r: f"{r['namespace']}/{r['name']}", _plain),
    "asset_versions": _Spec("asset version", lambda r: (r["asset_id"], r["version"]), _at),
    "steps": _Spec("step", lambda r: r["id"], _plain),
    "step_inputs": _Spec("input of step", lambda r: (r["step_id"], r["version_id"]),
                         lambda k: f"{k[0]}: {k[1]}"),
    "step_outputs": _Spec("output of step", lambda r: (r["step_id"], r["version_id"]),
                          lambda k: f"{k[0]}: {k[1]}"),
    "identities": _Spec("identity", lambda r: r["name"], _plain),
    "signing_keys": _Spec("key", lambda r: r["keyid"], _plain),
    "attestations": _Spec("attestation of step", lambda r: r["step_id"], _plain),
    "trust_policies": _Spec("trust policy version", lambda r: r["version"], _plain),
    "role_grants": _Spec("role grant", lambda r: (r["identity"], r["role"], r["namespace"]),
                         _tuple),
    "namespaces": _Spec("namespace", lambda r: r["name"], _plain),
    "tokens": _Spec("token", lambda r: r["id"], _plain),
    "models": _Spec("model", lambda r: f"{r['namespace']}/{r['name']}", _plain),
    "model_versions": _Spec("model version", lambda r: (r["model_id"], r["version"]), _at),
    "aliases": _Spec("alias", lambda r: (r["model_id"], r["alias"]), _at),
    "model_tags": _Spec("tag", lambda r: (r["model_id"], r["version"], r["key"]), _tuple),
    "alias_history": _Spec("alias history entry", lambda r: r["log_seq"], _plain),
    "promotion_policies": _Spec("promotion policy", lambda r: r["version"], _plain),
    "promotion_requests": _Spec("promotion request", lambda r: r["id"], _plain),
    "approvals": _Spec("approval", lambda r: (r["request_id"], r["approver"]), _tuple),
    "promotion_decisions": _Spec("promotion decision", lambda r: r["id"], _plain),
}

# Messages name a column by the logged field it is compared with where the names differ.
_FIELD = {("aliases", "version"): "to_version", ("aliases", "model_id"): "model",
          ("attestations", "envelope"): "envelope_digest",
          ("approvals", "envelope"): "envelope_digest",
          ("promotion_decisions", "envelope"): "envelope_digest",
          ("model_versions", "asset_version_id"): "asset",
          ("model_versions", "model_id"): "model", ("alias_history", "model_id"): "model",
          ("model_tags", "model_id"): "model",
          ("promotion_requests", "model_id"): "model", ("asset_versions", "asset_id"): "asset"}


def full_ref(ref: str) -> str:
    """``name@1`` → ``default/name@1``: link labels always carry the namespace."""
    body = ref.split("@", 1)[0]
    return ref if "/" in body else f"default/{ref}"


def _sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


class Replay:
    """Rebuilds, from the log alone, every row the database should hold: ``expected[table]``
    maps a row's natural key to (seq of the entry that wrote it, {column: value})."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.expected: dict[str, dict[Any, tuple[int, dict[str, Any]]]] = {
            name: {} for name in SPECS}
        self.handlers: dict[str, Callable[[LogEntry], None]] = {
            Action.ASSET_VERSION_ADD: self._asset_version,
            Action.STEP_RECORD: self._step,
            Action.IDENTITY_CREATE: self._simple("identities", "name"),
            Action.KEY_REGISTER: self._key_register,
            Action.KEY_REVOKE: self._key_revoke,
            Action.ATTESTATION_ADD: self._attestation,
            Action.TRUST_POLICY_SET: self._simple("trust_policies", "version"),
            Action.MODEL_CREATE: self._model,
            Action.MODEL_VERSION_ADD: self._model_version,
            Action.ALIAS_MOVE: self._alias_move,
            Action.MODEL_TAG_SET: self._tag_set,
            Action.MODEL_TAG_DELETE: self._tag_delete,
            Action.PROMOTION_POLICY_SET: self._simple("promotion_policies", "version"),
            Action.PROMOTION_REQUEST: self._request,
            Action.PROMOTION_APPROVE: self._review,
            Action.PROMOTION_REJECT: self._review,
            Action.PROMOTION_DECISION: self._decision,
            Action.TOKEN_CREATE: self._token_create,
            Action.TOKEN_REVOKE: self._token_revoke,
            Action.ROLE_GRANT: self._grant,
            Action.ROLE_REVOKE: self._role_revoke,
            Action.NAMESPACE_SET: self._namespace,
        }

    def apply(self, entry: LogEntry) -> None:
        handler = self.handlers.get(entry.action)
        if handler is not None:
            handler(entry)

    # --- handlers ------------------------------------------------------------------------------

    def _put(self, table: str, key: Any, seq: int, row: dict[str, Any], *,
             replace: bool = False) -> None:
        state = self.expected[table]
        if not replace and key in state:
            self.problem(f"log entry {seq} writes {SPECS[table].label} "
                         f"{SPECS[table].show(key)} a second time")
        state[key] = (seq, row)

    def _columns(self, table: str, d: Mapping[str, Any], seq: int) -> dict[str, Any]:
        """The logged fields named like the table's compared columns, and log_seq."""
        row = {c: d[c] for c in COMPARED[table] if c in d}
        if "log_seq" in COMPARED[table]:
            row["log_seq"] = seq
        return row

    def _simple(self, table: str, key_field: str) -> Callable[[LogEntry], None]:
        def handler(entry: LogEntry) -> None:
            d = entry.detail
            self._put(table, d[key_field], entry.seq, self._columns(table, d, entry.seq))
        return handler

    def _asset_version(self, entry: LogEntry) -> None:
        d, seq = entry.detail, entry.seq
        asset = f"{d['namespace']}/{d['name']}"
        known = self.expected["assets"].get(asset)
        if known is None:
            self.expected["assets"][asset] = (seq, {"namespace": d["namespace"],
                                                    "name": d["name"], "kind": d["kind"]})
        elif known[1]["kind"] != d["kind"]:
            self.problem(f"log entry {seq} adds a {d['kind']} version to asset {asset}, "
                         f"logged as a {known[1]['kind']} at entry {known[0]}")
        row = self._columns("asset_versions", d, seq)
        row["asset_id"] = asset
        self._put("asset_versions", (asset, d["version"]), seq, row)

    def _step(self, entry: LogEntry) -> None:
        d, seq = entry.detail, entry.seq
        self._put("steps", d["id"], seq, self._columns("steps", d, seq))
        for i in d["inputs"]:
            ref = full_ref(i["ref"])
            self.expected["step_inputs"][(d["id"], ref)] = (
                seq, {"step_id": d["id"], "version_id": ref})
        for o in d["outputs"]:
            ref = full_ref(o["ref"])
            self.expected["step_outputs"][(d["id"], ref)] = (
                seq, {"step_id": d["id"], "version_id": ref, "reused": bool(o["reused"])})

    def _key_register(self, entry: LogEntry) -> None:
        d = entry.detail
        row = {**self._columns("signing_keys", d, entry.seq), "revoked_at": None,
               "revoked_reason": None, "revoke_seq": None}
        self._put("signing_keys", d["keyid"], entry.seq, row)

    def _key_revoke(self, entry: LogEntry) -> None:
        keyid = entry.detail["keyid"]
        found = self.expected["signing_keys"].get(keyid)
        if found is None:
            self.problem(f"log entry {entry.seq} revokes key {keyid[:16]}…, never registered")
            return
        row = found[1]
        if row["revoked_at"] is not None:
            self.problem(f"log entry {entry.seq} revokes key {keyid[:16]}… a second time")
        row.update(revoked_at=entry.detail["revoked_at"], revoked_reason=entry.detail["reason"],
                   revoke_seq=entry.seq)

    def _attestation(self, entry: LogEntry) -> None:
        d = entry.detail
        row = self._columns("attestations", d, entry.seq)
        row["envelope"] = d["envelope_digest"]
        self._put("attestations", d["step_id"], entry.seq, row)

    def _model(self, entry: LogEntry) -> None:
        d = entry.detail
        self._put("models", f"{d['namespace']}/{d['name']}", entry.seq,
                  self._columns("models", d, entry.seq))

    def _model_version(self, entry: LogEntry) -> None:
        d, seq = entry.detail, entry.seq
        asset = full_ref(str(d["asset"]))
        if d["model"] not in self.expected["models"]:
            self.problem(f"log entry {seq} adds a version to model {d['model']}, never created")
        body, _, number = asset.rpartition("@")
        pinned = self.expected["asset_versions"].get((body, int(number))
                                                     if number.isdigit() else None)
        if pinned is None:
            self.problem(f"log entry {seq} pins {d['model']}@{d['version']} to {asset}, which "
                         "no earlier entry added")
        elif pinned[1]["digest"] != d["digest"]:
            self.problem(f"log entry {seq} pins {d['model']}@{d['version']} to {asset} with "
                         f"digest {d['digest']}, but {asset} was logged with "
                         f"{pinned[1]['digest']}")
        row = {**self._columns("model_versions", d, seq), "model_id": d["model"],
               "asset_version_id": asset}
        self._put("model_versions", (d["model"], d["version"]), seq, row)

    def _alias_move(self, entry: LogEntry) -> None:
        d, seq = entry.detail, entry.seq
        key = (d["model"], d["alias"])
        before = self.expected["aliases"].get(key)
        previous = None if before is None else before[1]["version"]
        if d["from_version"] != previous:
            self.problem(f"log entry {seq} moves {d['model']}@{d['alias']} from version "
                         f"{d['from_version']}, but the log had it at {previous}")
        self.expected["aliases"][key] = (seq, {
            "model_id": d["model"], "alias": d["alias"], "version": d["to_version"],
            "digest": d["digest"], "moved_at": d["moved_at"], "moved_by": d["moved_by"],
            "decision_id": d["decision_id"], "override": bool(d["override"]), "log_seq": seq})
        row = self._columns("alias_history", d, seq)
        row.update(model_id=d["model"], override=bool(d["override"]))
        self._put("alias_history", seq, seq, row)

    def _tag_set(self, entry: LogEntry) -> None:
        d, seq = entry.detail, entry.seq
        if d["model"] not in self.expected["models"]:
            self.problem(f"log entry {seq} tags model {d['model']}, never created")
        elif d["version"] and (d["model"], d["version"]) not in self.expected["model_versions"]:
            self.problem(f"log entry {seq} tags {d['model']}@{d['version']}, never registered")
        row = {**self._columns("model_tags", d, seq), "model_id": d["model"]}
        self._put("model_tags", (d["model"], d["version"], d["key"]), seq, row, replace=True)

    def _tag_delete(self, entry: LogEntry) -> None:
        d = entry.detail
        if self.expected["model_tags"].pop((d["model"], d["version"], d["key"]), None) is None:
            self.problem(f"log entry {entry.seq} deletes tag {d['key']!r} of "
                         f"{d['model']}@{d['version']}, which was not set")

    def _request(self, entry: LogEntry) -> None:
        d = entry.detail
        row = {**self._columns("promotion_requests", d, entry.seq), "model_id": d["model"],
               "status": "pending"}
        self._put("promotion_requests", d["id"], entry.seq, row)

    def _set_status(self, entry: LogEntry, status: str) -> None:
        rid = entry.detail["request_id"]
        found = self.expected["promotion_requests"].get(rid)
        if found is None:
            self.problem(f"log entry {entry.seq} refers to unknown request {rid}")
            return
        found[1]["status"] = status

    def _review(self, entry: LogEntry) -> None:
        d = entry.detail
        row = self._columns("approvals", d, entry.seq)
        row["envelope"] = d["envelope_digest"]
        self._put("approvals", (d["request_id"], d["approver"]), entry.seq, row)
        if entry.action == Action.PROMOTION_REJECT:
            self._set_status(entry, "rejected")

    def _decision(self, entry: LogEntry) -> None:
        d = entry.detail
        row = self._columns("promotion_decisions", d, entry.seq)
        row["envelope"] = d["envelope_digest"]
        self._put("promotion_decisions", d["id"], entry.seq, row)
        self._set_status(entry, "executed")

    def _token_create(self, entry: LogEntry) -> None:
        d = entry.detail
        row = {**self._columns("tokens", d, entry.seq), "revoked_at": None}
        self._put("tokens", d["id"], entry.seq, row)

    def _token_revoke(self, entry: LogEntry) -> None:
        tid = entry.detail["id"]
        found = self.expected["tokens"].get(tid)
        if found is None:
            self.problem(f"log entry {entry.seq} revokes unknown token {tid}")
            return
        if found[1]["revoked_at"] is not None:
            self.problem(f"log entry {entry.seq} revokes token {tid} a second time")
        found[1]["revoked_at"] = entry.detail["revoked_at"]

    def _grant(self, entry: LogEntry) -> None:
        d = entry.detail
        key = (d["identity"], d["role"], d["namespace"])
        self._put("role_grants", key, entry.seq, self._columns("role_grants", d, entry.seq))

    def _role_revoke(self, entry: LogEntry) -> None:
        d = entry.detail
        key = (d["identity"], d["role"], d["namespace"])
        if self.expected["role_grants"].pop(key, None) is None:
            self.problem(f"log entry {entry.seq} revokes a role that was not granted")

    def _namespace(self, entry: LogEntry) -> None:
        d = entry.detail
        self._put("namespaces", d["name"], entry.seq, self._columns("namespaces", d, entry.seq),
                  replace=True)

    # --- comparison ----------------------------------------------------------------------------

    def compare(self, session: Session, metadata: MetaData, problem: Problem) -> dict[str, int]:
        """Compare every row of every state table with the rebuilt state; return row counts."""
        labels: dict[str, dict[Any, str]] = {}
        raw: dict[str, list[dict[str, Any]]] = {}
        # Read each table once; foreign keys are resolved through the tables they point at,
        # so assets, asset_versions and models are read first.
        order = ["assets", "models", "asset_versions"] + [
            t for t in SPECS if t not in ("assets", "models", "asset_versions")]
        counts: dict[str, int] = {}
        for name in order:
            table = metadata.tables.get(name)
            if table is None:
                continue  # schema_problems() reported it
            booleans = {c.name for c in table.columns if isinstance(c.type, Boolean)}
            rows = []
            for mapping in session.execute(select(table)).mappings():
                row = dict(mapping)
                for column in booleans:
                    if row[column] is not None:
                        row[column] = bool(row[column])
                for column, target in _RESOLVED.items():
                    if column in row and row[column] is not None:
                        ids = labels.get(target, {})
                        row[column] = ids.get(row[column], f"<no {target} row {row[column]}>")
                for column in _JSON_COLUMNS.get(name, ()):
                    try:
                        row[column] = orjson.loads(row[column])
                    except (orjson.JSONDecodeError, TypeError):
                        row[column] = f"<not JSON: {str(row[column])[:40]!r}>"
                if "envelope" in row and isinstance(row["envelope"], str):
                    row["envelope"] = _sha(row["envelope"])
                rows.append(row)
            raw[name] = rows
            counts[name] = len(rows)
            if name == "assets":
                labels["assets"] = {r["id"]: f"{r['namespace']}/{r['name']}" for r in rows}
            elif name == "models":
                labels["models"] = {r["id"]: f"{r['namespace']}/{r['name']}" for r in rows}
            elif name == "asset_versions":
                labels["asset_versions"] = {r["id"]: f"{r['asset_id']}@{r['version']}"
                                            for r in rows}
            self._compare_table(name, rows, problem)
        return counts

    def _compare_table(self, name: str, rows: list[dict[str, Any]], problem: Problem) -> None:
        spec, logged = SPECS[name], self.expected[name]
        compared = COMPARED[name]
        seen: set[Any] = set()
        order: list[tuple[int, int, Any]] = []  # (seq, row id, key) to check id order
        for row in rows:
            key = spec.key(row)
            shown = spec.show(key)
            if key in seen:
                problem(f"{spec.label} {shown} appears twice in the database")
                continue
            seen.add(key)
            found = logged.get(key)
            if found is None:
                where = f" (row id {row['id']})" if "id" in DERIVED.get(name, {}) else ""
                if name == "assets":
                    problem(f"asset {shown}{where} has no version in the log: it was written "
                            "to the database directly")
                else:
                    problem(f"{spec.label} {shown}{where} has no log entry: it was written to "
                            "the database directly")
                continue
            seq, want = found
            for column in compared:
                if column not in want:
                    problem(f"{spec.label} {shown}: the log replay does not rebuild column "
                            f"{name}.{column} (a developer must add it to "
                            "chainproof.ledger.replay.Replay)")
                    continue
                if row[column] != want[column]:
                    field = _FIELD.get((name, column), column)
                    problem(f"{spec.label} {shown}: {field} is {row[column]!r} in the database "
                            f"but {want[column]!r} in log entry {seq}")
            if "id" in DERIVED.get(name, {}):
                order.append((seq, row["id"], key))
        for key, (seq, _) in logged.items():
            if key not in seen:
                problem(f"log entry {seq}: {spec.label} {spec.show(key)} is missing from the "
                        "database (deleted)")
        order.sort(key=lambda t: (t[0], t[1]))
        for (seq_a, id_a, key_a), (seq_b, id_b, key_b) in itertools.pairwise(order):
            if id_b <= id_a:
                problem(f"{name}: row id {id_b} ({spec.label} {spec.show(key_b)}, logged at "
                        f"entry {seq_b}) is not after row id {id_a} ({spec.show(key_a)}, logged "
                        f"at entry {seq_a}): row ids were changed or swapped")
