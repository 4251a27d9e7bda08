"""Identities and their signing keys (I2, I6): operations over the service's transactions.

Private keys stay with their identity, in a file the identity controls; the database holds public
keys only, each registered, rotated or revoked by a logged change.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.orm import Session

from chainproof.attest import (
    Signer,
    generate_private_key,
    key_id,
    load_private_key,
    load_public_key,
    private_key_to_pem,
    public_key_to_pem,
)
from chainproof.attest.trust import DEFAULT_POLICY, TrustPolicy, parse_trust_policy
from chainproof.db.tables import IdentityRow, KeyRow, TrustPolicyRow
from chainproof.digest import hash_bytes
from chainproof.errors import BadInputError, ConflictError, NotFoundError, WorkspaceError
from chainproof.records.log import Action
from chainproof.records.names import check_name
from chainproof.transaction import Transaction

IDENTITY_KINDS = ("person", "service")
BUILDER_PREFIX = "https://chainproof.dev/identity/"


def builder_id(identity: str) -> str:
    return BUILDER_PREFIX + identity


def generate_key_file(path: Path, passphrase: bytes | None = None) -> str:
    """Write a new P-256 private key (PKCS#8 PEM, 0600) and ``.pub`` beside it; return keyid."""
    if path.exists():
        raise ConflictError(f"{path} already exists", hint="choose another path; keys are "
                                                          "never overwritten")
    key = generate_private_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private_key_to_pem(key, passphrase))
    public_path(path).write_bytes(public_key_to_pem(key.public_key()))
    return key_id(key.public_key())


def public_path(private: Path) -> Path:
    return private.with_name(private.name.removesuffix(".pem") + ".pub.pem")


def load_signer(path: Path) -> Signer:
    passphrase = os.environ.get("CHAINPROOF_KEY_PASSPHRASE")
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        raise WorkspaceError(f"no signing key at {path}",
                             hint="create one with `chainproof key generate --out PATH` and "
                                  "register it, or set CHAINPROOF_SIGNING_KEY") from None
    key = load_private_key(pem, passphrase.encode() if passphrase else None)
    return Signer.from_private_key(key)


def create_identity(tx: Transaction, name: str, kind: str = "person") -> None:
    check_name(name, what="identity")
    if kind not in IDENTITY_KINDS:
        raise BadInputError(f"unknown identity kind {kind!r}", hint="use person or service")
    if tx.session.get(IdentityRow, name) is not None:
        raise ConflictError(f"identity {name!r} already exists")
    row = IdentityRow(name=name, kind=kind, created_at=tx.time, created_by=tx.actor,
                      log_seq=tx.appender.size)
    tx.session.add(row)
    tx.log(Action.IDENTITY_CREATE, f"identity:{name}",
           detail={"name": name, "kind": kind, "created_at": tx.time, "created_by": tx.actor})


def register_key(tx: Transaction, identity: str, public_pem: bytes) -> str:
    if tx.session.get(IdentityRow, identity) is None:
        raise NotFoundError(f"no identity named {identity!r}",
                            hint="create it first: `chainproof identity create NAME`")
    public = load_public_key(public_pem)
    keyid = key_id(public)
    if tx.session.get(KeyRow, keyid) is not None:
        raise ConflictError(f"key {keyid[:16]}… is already registered",
                            hint="a key is registered once; rotate to a new key instead")
    canonical = public_key_to_pem(public).decode()
    tx.session.add(KeyRow(keyid=keyid, identity=identity, public_pem=canonical,
                          registered_at=tx.time, registered_by=tx.actor,
                          log_seq=tx.appender.size))
    tx.log(Action.KEY_REGISTER, f"key:{keyid}", digests={"key": f"sha256:{keyid}"},
           detail={"keyid": keyid, "identity": identity, "public_pem": canonical,
                   "registered_at": tx.time, "registered_by": tx.actor})
    return keyid


def revoke_key(tx: Transaction, keyid: str, reason: str, *, compromised: bool = False) -> None:
    """Revoke a key from now on. ``compromised``: also withdraw every signature it ever made
    (approvals, decisions and provenance it signed stop counting; see
    :mod:`chainproof.signatures`)."""
    if not reason.strip():
        raise BadInputError("a revocation needs a reason", hint='--reason "laptop stolen"')
    row = tx.session.get(KeyRow, keyid)
    if row is None:
        raise NotFoundError(f"no registered key {keyid}", hint="`chainproof key list`")
    if row.revoked_at is not None:
        raise ConflictError(f"key {keyid[:16]}… was already revoked at {row.revoked_at}")
    row.revoked_at = tx.time
    row.revoked_reason = reason
    row.revoke_seq = tx.appender.size
    tx.log(Action.KEY_REVOKE, f"key:{keyid}",
           detail={"keyid": keyid, "revoked_at": tx.time, "reason": reason,
                   "compromised": compromised})


def keys(session: Session, identity: str | None = None) -> list[dict[str, Any]]:
    query = select(KeyRow).order_by(KeyRow.registered_at)
    if identity:
        query = query.where(KeyRow.identity == identity)
    return [{"keyid": k.keyid, "identity": k.identity, "registered_at": k.registered_at,
             "revoked_at": k.revoked_at, "revoked_reason": k.revoked_reason}
            for k in session.execute(query).scalars()]


def set_trust_policy(tx: Transaction, text: str) -> int:
    parse_trust_policy(text)  # refuse a bad document before anything is written
    latest = tx.session.execute(
        select(TrustPolicyRow.version).order_by(TrustPolicyRow.version.desc()).limit(1)
    ).scalar_one_or_none()
    version = (latest or 0) + 1
    digest = "sha256:" + hash_bytes(text.encode())
    tx.session.add(TrustPolicyRow(version=version, document=text, digest=digest, set_at=tx.time,
                                  set_by=tx.actor, log_seq=tx.appender.size))
    tx.log(Action.TRUST_POLICY_SET, f"trust-policy:{version}", digests={"policy": digest},
           detail={"version": version, "digest": digest, "document": text, "set_at": tx.time,
                   "set_by": tx.actor})
    return version


def trust_policy(session: Session) -> tuple[TrustPolicy, str | None]:
    """The newest trust policy and its document (the built-in default when none was set)."""
    row = session.execute(select(TrustPolicyRow).order_by(TrustPolicyRow.version.desc())
                          .limit(1)).scalar_one_or_none()
    if row is None:
        return DEFAULT_POLICY, None
    return parse_trust_policy(row.document, version=row.version), row.document


def public_key_pem(private: Path) -> bytes:
    passphrase = os.environ.get("CHAINPROOF_KEY_PASSPHRASE")
    key = load_private_key(private.read_bytes(), passphrase.encode() if passphrase else None)
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
