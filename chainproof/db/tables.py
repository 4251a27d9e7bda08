"""SQLAlchemy tables. Times are RFC 3339 UTC strings and structured fields canonical JSON text,
so that a row compares byte-for-byte with what the audit log says it should be."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


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
    """One row: the log's size. Writers lock it, which serialises appends into one linear log."""

    __tablename__ = "log_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)


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
