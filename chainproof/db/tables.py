"""SQLAlchemy tables. Times are RFC 3339 UTC strings and structured fields canonical JSON text,
so that a row compares byte-for-byte with what the audit log says it should be."""

from __future__ import annotations

from typing import cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


def table(row: type[Base]) -> Table:
    """The Core table behind a mapped class, for statements that bypass the ORM."""
    return cast(Table, row.__table__)


class AssetRow(Base):
    __tablename__ = "assets"
    __table_args__ = (UniqueConstraint("namespace", "name", name="uq_assets_namespace_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    namespace: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))


class AssetVersionRow(Base):
    __tablename__ = "asset_versions"
    __table_args__ = (
        UniqueConstraint("asset_id", "version", name="uq_versions_asset_version"),
        UniqueConstraint("asset_id", "digest", name="uq_versions_asset_digest"),
        Index("ix_versions_digest", "digest"),
        Index("ix_versions_producer", "producer_step"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"))
    version: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(80))
    size: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(128))
    is_directory: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[str] = mapped_column(String(40))
    created_by: Mapped[str] = mapped_column(String(128))
    producer_step: Mapped[str | None] = mapped_column(ForeignKey("steps.id"), nullable=True)
    log_seq: Mapped[int] = mapped_column(BigInteger)


class StepRow(Base):
    __tablename__ = "steps"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    namespace: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(64))
    identity: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    command: Mapped[str] = mapped_column(Text)  # canonical JSON list
    parameters: Mapped[str] = mapped_column(Text)  # canonical JSON object
    started_at: Mapped[str] = mapped_column(String(40))
    ended_at: Mapped[str] = mapped_column(String(40))
    environment: Mapped[str] = mapped_column(Text)
    code_revision: Mapped[str] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    log_seq: Mapped[int] = mapped_column(BigInteger)


class StepInputRow(Base):
    __tablename__ = "step_inputs"

    step_id: Mapped[str] = mapped_column(ForeignKey("steps.id"), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("asset_versions.id"), primary_key=True)
    __table_args__ = (Index("ix_step_inputs_version", "version_id"),)


class StepOutputRow(Base):
    """Outputs of a step. ``reused`` marks an output whose bytes already existed as a version
    (produced earlier): lineage follows only producer edges, which keeps the graph acyclic."""

    __tablename__ = "step_outputs"

    step_id: Mapped[str] = mapped_column(ForeignKey("steps.id"), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("asset_versions.id"), primary_key=True)
    reused: Mapped[bool] = mapped_column(Boolean, default=False)


class LogHeadRow(Base):
    """One row: the log's size and frontier. Writers lock it, which serialises appends into one
    linear log; the frontier (the hashes of the perfect subtrees that make up the tree, left
    first, 32 bytes each) lets a writer append without reading any node. ``audit verify``
    recomputes it from the entries."""

    __tablename__ = "log_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    frontier: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class LogEntryRow(Base):
    __tablename__ = "log_entries"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    body: Mapped[bytes] = mapped_column(LargeBinary)  # canonical JSON bytes (the Merkle leaf data)
    action: Mapped[str] = mapped_column(String(64), index=True)
    actor: Mapped[str] = mapped_column(String(128), index=True)
    object: Mapped[str] = mapped_column(String(300), index=True)
    time: Mapped[str] = mapped_column(String(40))


class LogNodeRow(Base):
    """Hash of the perfect subtree covering leaves [index·2^level, (index+1)·2^level).

    The key packs both numbers into one integer, ``level << 40 | index`` (room for 2^40
    entries), so fetching the ~40 nodes of a proof is one indexed ``IN`` lookup.
    """

    __tablename__ = "log_nodes"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class CheckpointRow(Base):
    __tablename__ = "checkpoints"

    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    note: Mapped[str] = mapped_column(Text)  # the signed note text
    created_at: Mapped[str] = mapped_column(String(40))


class IdentityRow(Base):
    """A person or service account. Roles and tokens refer to it by name."""

    __tablename__ = "identities"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # "person" | "service"
    created_at: Mapped[str] = mapped_column(String(40))
    created_by: Mapped[str] = mapped_column(String(128))
    log_seq: Mapped[int] = mapped_column(BigInteger)


class KeyRow(Base):
    """A registered public key (the private part never reaches the database)."""

    __tablename__ = "signing_keys"

    keyid: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of DER SPKI
    identity: Mapped[str] = mapped_column(ForeignKey("identities.name"), index=True)
    public_pem: Mapped[str] = mapped_column(Text)
    registered_at: Mapped[str] = mapped_column(String(40))
    registered_by: Mapped[str] = mapped_column(String(128))
    revoked_at: Mapped[str | None] = mapped_column(String(40), nullable=True)
    revoked_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    log_seq: Mapped[int] = mapped_column(BigInteger)
    revoke_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class AttestationRow(Base):
    """A DSSE envelope (in-toto Statement) about a step's outputs."""

    __tablename__ = "attestations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    step_id: Mapped[str | None] = mapped_column(ForeignKey("steps.id"), nullable=True, index=True)
    predicate_type: Mapped[str] = mapped_column(String(200))
    envelope: Mapped[str] = mapped_column(Text)  # the DSSE envelope JSON, as signed
    payload_digest: Mapped[str] = mapped_column(String(80))
    keyid: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[str] = mapped_column(String(40))
    created_by: Mapped[str] = mapped_column(String(128))
    log_seq: Mapped[int] = mapped_column(BigInteger)


class TrustPolicyRow(Base):
    __tablename__ = "trust_policies"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    document: Mapped[str] = mapped_column(Text)  # YAML as given
    digest: Mapped[str] = mapped_column(String(80))
    set_at: Mapped[str] = mapped_column(String(40))
    set_by: Mapped[str] = mapped_column(String(128))
    log_seq: Mapped[int] = mapped_column(BigInteger)


class RoleGrantRow(Base):
    __tablename__ = "role_grants"

    identity: Mapped[str] = mapped_column(ForeignKey("identities.name"), primary_key=True)
    role: Mapped[str] = mapped_column(String(32), primary_key=True)
    namespace: Mapped[str] = mapped_column(String(128), primary_key=True)  # name or glob
    granted_at: Mapped[str] = mapped_column(String(40))
    granted_by: Mapped[str] = mapped_column(String(128))
    log_seq: Mapped[int] = mapped_column(BigInteger)


class NamespaceRow(Base):
    __tablename__ = "namespaces"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    mode: Mapped[str] = mapped_column(String(16))  # governed | experiment
    set_at: Mapped[str] = mapped_column(String(40))
    set_by: Mapped[str] = mapped_column(String(128))
    log_seq: Mapped[int] = mapped_column(BigInteger)


class TokenRow(Base):
    """An API token: only its SHA-256 is stored; the token is shown once."""

    __tablename__ = "tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    identity: Mapped[str] = mapped_column(ForeignKey("identities.name"), index=True)
    created_at: Mapped[str] = mapped_column(String(40))
    created_by: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[str] = mapped_column(String(40))
    revoked_at: Mapped[str | None] = mapped_column(String(40), nullable=True)
    log_seq: Mapped[int] = mapped_column(BigInteger)


class ModelRow(Base):
    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("namespace", "name", name="uq_models_namespace_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    namespace: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[str] = mapped_column(String(40))
    created_by: Mapped[str] = mapped_column(String(128))
    log_seq: Mapped[int] = mapped_column(BigInteger)


class ModelVersionRow(Base):
    """A registered model version pins one model asset version by digest (immutable)."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "version", name="uq_model_versions"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    version: Mapped[int] = mapped_column(Integer)
    asset_version_id: Mapped[int] = mapped_column(ForeignKey("asset_versions.id"))
    digest: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[str] = mapped_column(String(40))
    created_by: Mapped[str] = mapped_column(String(128))
    log_seq: Mapped[int] = mapped_column(BigInteger)


class ModelTagRow(Base):
    """A tag of a registered model (``version`` 0) or of one of its versions, as MLflow's
    registered model and model version tags; the description is the reserved tag
    ``chainproof.description``. Annotations only: the gate and the loader never read them."""

    __tablename__ = "model_tags"

    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    set_at: Mapped[str] = mapped_column(String(40))
    set_by: Mapped[str] = mapped_column(String(128))
    log_seq: Mapped[int] = mapped_column(BigInteger)


class AliasRow(Base):
    __tablename__ = "aliases"

    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), primary_key=True)
    alias: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(80))
    moved_at: Mapped[str] = mapped_column(String(40))
    moved_by: Mapped[str] = mapped_column(String(128))
    decision_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    override: Mapped[bool] = mapped_column(Boolean, default=False)
    log_seq: Mapped[int] = mapped_column(BigInteger)


class AliasHistoryRow(Base):
    __tablename__ = "alias_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    alias: Mapped[str] = mapped_column(String(128))
    from_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    to_version: Mapped[int] = mapped_column(Integer)
    moved_at: Mapped[str] = mapped_column(String(40))
    moved_by: Mapped[str] = mapped_column(String(128))
    decision_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    override: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    log_seq: Mapped[int] = mapped_column(BigInteger, unique=True)


class PromotionPolicyRow(Base):
    __tablename__ = "promotion_policies"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    document: Mapped[str] = mapped_column(Text)
    digest: Mapped[str] = mapped_column(String(80))
    set_at: Mapped[str] = mapped_column(String(40))
    set_by: Mapped[str] = mapped_column(String(128))
    log_seq: Mapped[int] = mapped_column(BigInteger)


class PromotionRequestRow(Base):
    __tablename__ = "promotion_requests"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    alias: Mapped[str] = mapped_column(String(128))
    digest: Mapped[str] = mapped_column(String(80))
    policy_version: Mapped[int] = mapped_column(Integer)
    requested_at: Mapped[str] = mapped_column(String(40))
    requested_by: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))  # pending | rejected | executed
    log_seq: Mapped[int] = mapped_column(BigInteger)


class ApprovalRow(Base):
    """A signed approval or rejection of one promotion request by one approver."""

    __tablename__ = "approvals"
    __table_args__ = (UniqueConstraint("request_id", "approver", name="uq_approvals_once"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("promotion_requests.id"), index=True)
    approver: Mapped[str] = mapped_column(String(128))
    decision: Mapped[str] = mapped_column(String(16))  # approve | reject
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    envelope: Mapped[str] = mapped_column(Text)
    keyid: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[str] = mapped_column(String(40))
    log_seq: Mapped[int] = mapped_column(BigInteger)


class DecisionRow(Base):
    """The gate's signed decision: inputs, each rule's outcome, approvals, result."""

    __tablename__ = "promotion_decisions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("promotion_requests.id"), index=True)
    result: Mapped[str] = mapped_column(String(16))  # allowed | override
    envelope: Mapped[str] = mapped_column(Text)
    created_at: Mapped[str] = mapped_column(String(40))
    created_by: Mapped[str] = mapped_column(String(128))
    log_seq: Mapped[int] = mapped_column(BigInteger)
