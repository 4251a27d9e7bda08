"""Audit log entries: one per state change, canonical JSON, hashed into the Merkle log (I3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson
import rfc8785

from chainproof.errors import MalformedFileError


class Action(StrEnum):
    """Every kind of state change chainproof makes. Each one is a log entry."""

    WORKSPACE_INIT = "workspace.init"
    ASSET_VERSION_ADD = "asset.version.add"
    STEP_RECORD = "step.record"
    IDENTITY_CREATE = "identity.create"
    ROLE_GRANT = "role.grant"
    ROLE_REVOKE = "role.revoke"
    TOKEN_CREATE = "token.create"
    TOKEN_REVOKE = "token.revoke"
    KEY_REGISTER = "key.register"
    KEY_REVOKE = "key.revoke"
    ATTESTATION_ADD = "attestation.add"
    TRUST_POLICY_SET = "trust.policy.set"
    MODEL_CREATE = "registry.model.create"
    MODEL_VERSION_ADD = "registry.version.add"
    ALIAS_MOVE = "registry.alias.move"
    MODEL_TAG_SET = "registry.tag.set"
    MODEL_TAG_DELETE = "registry.tag.delete"
    PROMOTION_REQUEST = "promotion.request"
    PROMOTION_APPROVE = "promotion.approve"
    PROMOTION_REJECT = "promotion.reject"
    PROMOTION_DECISION = "promotion.decision"
    PROMOTION_POLICY_SET = "promotion.policy.set"
    ACCESS_DENIED = "access.denied"
    NAMESPACE_SET = "namespace.set"
    DEPLOYMENT = "deployment.record"


# The detail of each action must carry these keys: enough to rebuild the row it describes, so
# that `audit verify` can replay the log and compare with the database.
REQUIRED_DETAIL: dict[str, frozenset[str]] = {
    Action.WORKSPACE_INIT: frozenset({"origin"}),
    Action.ASSET_VERSION_ADD: frozenset({"namespace", "name", "kind", "version", "digest", "size",
                                         "media_type", "is_directory", "created_at",
                                         "created_by", "producer_step"}),
    Action.IDENTITY_CREATE: frozenset({"name", "kind", "created_at", "created_by"}),
    Action.KEY_REGISTER: frozenset({"keyid", "identity", "public_pem", "registered_at",
                                    "registered_by"}),
    Action.KEY_REVOKE: frozenset({"keyid", "revoked_at", "reason"}),
    Action.ATTESTATION_ADD: frozenset({"step_id", "predicate_type", "payload_digest", "keyid",
                                       "envelope_digest", "created_at", "created_by"}),
    Action.TRUST_POLICY_SET: frozenset({"version", "digest", "document", "set_at", "set_by"}),
    Action.ROLE_GRANT: frozenset({"identity", "role", "namespace", "granted_at", "granted_by"}),
    Action.ROLE_REVOKE: frozenset({"identity", "role", "namespace"}),
    Action.NAMESPACE_SET: frozenset({"name", "mode", "set_at", "set_by"}),
    Action.TOKEN_CREATE: frozenset({"id", "identity", "token_hash", "created_at", "created_by",
                                    "expires_at"}),
    Action.TOKEN_REVOKE: frozenset({"id", "revoked_at"}),
    Action.ACCESS_DENIED: frozenset({"identity", "permission", "namespace", "what"}),
    Action.MODEL_CREATE: frozenset({"namespace", "name", "created_at", "created_by"}),
    Action.MODEL_VERSION_ADD: frozenset({"model", "version", "asset", "digest", "created_at",
                                         "created_by"}),
    Action.MODEL_TAG_SET: frozenset({"model", "version", "key", "value", "set_at", "set_by"}),
    Action.MODEL_TAG_DELETE: frozenset({"model", "version", "key"}),
    Action.ALIAS_MOVE: frozenset({"model", "alias", "from_version", "to_version", "digest",
                                  "moved_at", "moved_by", "decision_id", "override", "reason"}),
    Action.PROMOTION_POLICY_SET: frozenset({"version", "digest", "document", "set_at",
                                            "set_by"}),
    Action.PROMOTION_REQUEST: frozenset({"id", "model", "version", "alias", "digest",
                                         "policy_version", "requested_at", "requested_by"}),
    Action.PROMOTION_APPROVE: frozenset({"request_id", "approver", "decision", "reason",
                                         "keyid", "envelope_digest", "created_at"}),
    Action.PROMOTION_REJECT: frozenset({"request_id", "approver", "decision", "reason",
                                        "keyid", "envelope_digest", "created_at"}),
    Action.PROMOTION_DECISION: frozenset({"id", "request_id", "result", "envelope_digest",
                                          "created_at", "created_by", "override"}),
    Action.STEP_RECORD: frozenset({"id", "namespace", "kind", "identity", "status", "command",
                                   "parameters", "started_at", "ended_at", "environment",
                                   "code_revision", "error", "inputs", "outputs"}),
}


@dataclass(frozen=True)
class LogEntry:
    """One entry of the audit log. ``canonical_bytes`` is the Merkle leaf data."""

    seq: int
    time: str
    actor: str
    action: str
    object: str
    digests: dict[str, str] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        required = REQUIRED_DETAIL.get(self.action)
        if required is not None:
            missing = required - self.detail.keys()
            if missing:
                raise MalformedFileError(
                    f"log entry {self.seq} ({self.action}) lacks detail fields {sorted(missing)}"
                )

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "time": self.time, "actor": self.actor, "action": self.action,
                "object": self.object, "digests": dict(self.digests), "detail": self.detail}

    def canonical_bytes(self) -> bytes:
        """RFC 8785 canonical JSON: the same entry always hashes the same, on any machine."""
        return rfc8785.dumps(self.to_dict())

    @classmethod
    def from_bytes(cls, data: bytes) -> LogEntry:
        try:
            # orjson: verification parses every entry, and it is ~5x faster than json here.
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise MalformedFileError(f"log entry is not valid JSON: {exc}") from None
        if not isinstance(obj, dict) or set(obj) != {"seq", "time", "actor", "action", "object",
                                                     "digests", "detail"}:
            raise MalformedFileError("log entry does not have exactly the expected fields")
        return cls(seq=obj["seq"], time=obj["time"], actor=obj["actor"], action=obj["action"],
                   object=obj["object"], digests=obj["digests"], detail=obj["detail"])
