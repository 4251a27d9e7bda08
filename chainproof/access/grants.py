"""Role grants, namespace modes and API tokens: logged operations and permission checks."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, bindparam, select
from sqlalchemy.orm import Session

from chainproof.access.matrix import (
    UPLOADING_ROLES,
    NamespaceMode,
    Permission,
    Role,
    permissions,
)
from chainproof.db.engine import query_driver
from chainproof.db.tables import IdentityRow, LogEntryRow, NamespaceRow, RoleGrantRow, TokenRow
from chainproof.errors import (
    AuthenticationError,
    BadInputError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
)
from chainproof.records.log import Action
from chainproof.records.names import check_name
from chainproof.transaction import Transaction

TOKEN_PREFIX = "cpt_"
GLOBAL = "*"


def _check_pattern(namespace: str) -> str:
    if namespace != GLOBAL and not namespace.endswith("*"):
        check_name(namespace, what="namespace")
    return namespace


# Every request runs these; built once with bind parameters they cost a fifth of an ad-hoc
# ORM query (SQLAlchemy builds and cache-keys a new select() on every call otherwise).
_GRANTS_OF = select(RoleGrantRow.role, RoleGrantRow.namespace).where(
    RoleGrantRow.identity == bindparam("identity"))
# One round trip for a permission check: the identity's grants, each carrying the mode of the
# namespace asked about.
_GRANTS_WITH_MODE = select(
    RoleGrantRow.role, RoleGrantRow.namespace,
    select(NamespaceRow.mode).where(NamespaceRow.name == bindparam("namespace"))
    .scalar_subquery().label("mode"),
).where(RoleGrantRow.identity == bindparam("identity"))
_TOKEN_BY_HASH = select(TokenRow.id, TokenRow.identity, TokenRow.expires_at,
                        TokenRow.revoked_at).where(TokenRow.token_hash == bindparam("hash"))


def grants_of(session: Session, identity: str) -> list[tuple[str, str]]:
    return [(role, namespace) for role, namespace in
            session.connection().execute(_GRANTS_OF, {"identity": identity})]


def permitted(session: Session, identity: str, namespace: str) -> frozenset[Permission]:
    """Every permission ``identity`` holds in ``namespace`` (one query). The one place a
    permission is decided: every other check calls this."""
    rows = session.connection().execute(
        _GRANTS_WITH_MODE, {"identity": identity, "namespace": namespace}).all()
    if not rows:
        return frozenset()  # no grants at all: nothing is allowed, whatever the mode
    mode = NamespaceMode(rows[0].mode) if rows[0].mode and namespace != GLOBAL \
        else NamespaceMode.GOVERNED
    return permissions([(r.role, r.namespace) for r in rows], namespace, mode)


def allowed(session: Session, identity: str, permission: Permission, namespace: str) -> bool:
    return permission in permitted(session, identity, namespace)


def has_role(session: Session, identity: str, role: str, namespace: str) -> bool:
    return any(r == role and (p == namespace or fnmatch.fnmatchcase(namespace, p))
               for r, p in grants_of(session, identity))


def holds_role_from_another(session: Session, identity: str, role: str, namespace: str,
                            as_of: int | None = None) -> bool:
    """Whether ``identity`` held ``role`` in ``namespace`` (now, or just before audit-log
    position ``as_of``) through a grant made by another identity. Past roles are replayed from
    the log's ``role.grant``/``role.revoke`` entries, not read from editable rows."""
    held: dict[tuple[str, str], str] = {}
    if as_of is None:
        for r in session.execute(select(RoleGrantRow).where(
                RoleGrantRow.identity == identity, RoleGrantRow.role == role)).scalars():
            held[(r.role, r.namespace)] = r.granted_by
    else:
        for action, body in session.execute(
                select(LogEntryRow.action, LogEntryRow.body).where(
                    LogEntryRow.object.startswith(f"role:{identity}:{role}:", autoescape=True),
                    LogEntryRow.seq < as_of).order_by(LogEntryRow.seq)):
            try:
                detail = json.loads(body if isinstance(body, str) else bytes(body))["detail"]
            except (ValueError, KeyError, TypeError):
                continue  # an unreadable entry grants nothing (audit verify reports it)
            key = (str(detail["role"]), str(detail["namespace"]))
            if action == Action.ROLE_GRANT.value:
                held[key] = str(detail.get("granted_by"))
            else:
                held.pop(key, None)
    return any(r == role and granter != identity
               and (p == namespace or fnmatch.fnmatchcase(namespace, p))
               for (r, p), granter in held.items())


def may_upload(session: Session, identity: str) -> bool:
    """Whether ``identity`` holds a role that writes assets in some namespace: bytes are
    stored only for those who could bind them (a token with no such role stores nothing)."""
    return any(role in UPLOADING_ROLES for role, _ in grants_of(session, identity))


def denied(identity: str, permission: Permission, namespace: str, what: str, message: str,
           hint: str) -> PermissionDeniedError:
    """A refusal carrying what the transaction logs as an ``access.denied`` entry."""
    error = PermissionDeniedError(message, hint=hint)
    error.detail = {"identity": identity, "permission": permission.value,  # type: ignore[attr-defined]
                    "namespace": namespace, "what": what}
    return error


def require(session: Session, identity: str, permission: Permission, namespace: str,
            what: str) -> None:
    """Raise :class:`PermissionDeniedError` (logged by the transaction) unless allowed."""
    if not allowed(session, identity, permission, namespace):
        raise denied(identity, permission, namespace, what,
                     f"{identity} may not {what} in namespace {namespace!r} (needs permission "
                     f"{permission.value})",
                     "an admin can grant a role with this permission: see docs/access.md")


def grant(tx: Transaction, identity: str, role: str, namespace: str) -> None:
    parsed = Role.parse(role)
    _check_pattern(namespace)
    if tx.session.get(IdentityRow, identity) is None:
        raise NotFoundError(f"no identity named {identity!r}",
                            hint="`chainproof identity create NAME` first")
    if tx.session.get(RoleGrantRow, (identity, parsed.value, namespace)) is not None:
        raise ConflictError(f"{identity} already holds {parsed.value} in {namespace}")
    tx.session.add(RoleGrantRow(identity=identity, role=parsed.value, namespace=namespace,
                                granted_at=tx.time, granted_by=tx.actor,
                                log_seq=tx.appender.size))
    tx.log(Action.ROLE_GRANT, f"role:{identity}:{parsed.value}:{namespace}",
           detail={"identity": identity, "role": parsed.value, "namespace": namespace,
                   "granted_at": tx.time, "granted_by": tx.actor})


def revoke(tx: Transaction, identity: str, role: str, namespace: str) -> None:
    parsed = Role.parse(role)
    row = tx.session.get(RoleGrantRow, (identity, parsed.value, namespace))
    if row is None:
        raise NotFoundError(f"{identity} does not hold {parsed.value} in {namespace}")
    tx.session.delete(row)
    tx.log(Action.ROLE_REVOKE, f"role:{identity}:{parsed.value}:{namespace}",
           detail={"identity": identity, "role": parsed.value, "namespace": namespace})


def set_mode(tx: Transaction, namespace: str, mode: str) -> None:
    check_name(namespace, what="namespace")
    try:
        parsed = NamespaceMode(mode)
    except ValueError:
        raise BadInputError(f"unknown namespace mode {mode!r}",
                            hint="use governed or experiment") from None
    row = tx.session.get(NamespaceRow, namespace)
    if row is None:
        tx.session.add(NamespaceRow(name=namespace, mode=parsed.value, set_at=tx.time,
                                    set_by=tx.actor, log_seq=tx.appender.size))
    else:
        row.mode, row.set_at, row.set_by, row.log_seq = (parsed.value, tx.time, tx.actor,
                                                         tx.appender.size)
    tx.log(Action.NAMESPACE_SET, f"namespace:{namespace}",
           detail={"name": namespace, "mode": parsed.value, "set_at": tx.time,
                   "set_by": tx.actor})


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(tx: Transaction, identity: str, expires_in: timedelta) -> tuple[str, str]:
    """A new 256-bit token for ``identity``: (token id, the token — shown once, never stored)."""
    if tx.session.get(IdentityRow, identity) is None:
        raise NotFoundError(f"no identity named {identity!r}")
    if expires_in <= timedelta(0) or expires_in > timedelta(days=366):
        raise BadInputError("a token must expire within a year", hint="--expires 30d")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token_id = secrets.token_hex(8)
    expires = (datetime.fromisoformat(tx.time) + expires_in).isoformat(
        timespec="microseconds").replace("+00:00", "Z")
    tx.session.add(TokenRow(id=token_id, token_hash=hash_token(token), identity=identity,
                            created_at=tx.time, created_by=tx.actor, expires_at=expires,
                            log_seq=tx.appender.size))
    tx.log(Action.TOKEN_CREATE, f"token:{token_id}",
           detail={"id": token_id, "identity": identity, "token_hash": hash_token(token),
                   "created_at": tx.time, "created_by": tx.actor, "expires_at": expires})
    return token_id, token


def revoke_token(tx: Transaction, token_id: str) -> None:
    row = tx.session.get(TokenRow, token_id)
    if row is None:
        raise NotFoundError(f"no token {token_id}")
    if row.revoked_at is not None:
        raise ConflictError(f"token {token_id} was already revoked")
    row.revoked_at = tx.time
    tx.log(Action.TOKEN_REVOKE, f"token:{token_id}",
           detail={"id": token_id, "revoked_at": tx.time})


def authenticate(engine: Engine, token: str, now: datetime | None = None) -> str:
    """The identity a token carries; AuthenticationError if unknown, expired or revoked."""
    if not token or not token.startswith(TOKEN_PREFIX):
        raise AuthenticationError("missing or malformed token",
                                  hint="set CHAINPROOF_TOKEN to a token from "
                                       "`chainproof token create`")
    rows = query_driver(engine, _TOKEN_BY_HASH, {"hash": hash_token(token)})
    if not rows:
        raise AuthenticationError("unknown token", hint="ask an admin for a new token")
    token_id, identity, expires_at, revoked_at = rows[0]
    if revoked_at is not None:
        raise AuthenticationError(f"token {token_id} was revoked at {revoked_at}")
    moment = now or datetime.now(UTC)
    if datetime.fromisoformat(expires_at) <= moment:
        raise AuthenticationError(f"token {token_id} expired at {expires_at}",
                                  hint="ask an admin for a new token")
    return str(identity)


def describe(session: Session) -> list[dict[str, Any]]:
    return [{"identity": r.identity, "role": r.role, "namespace": r.namespace,
             "granted_at": r.granted_at, "granted_by": r.granted_by}
            for r in session.execute(select(RoleGrantRow).order_by(
                RoleGrantRow.identity, RoleGrantRow.namespace, RoleGrantRow.role)).scalars()]
