"""The governed registry (I4): operations over the service's transactions.

A registered model version pins one model asset version by digest and never changes. Aliases
point at versions; every move is logged with who, when, from, to and under which decision.
Protected aliases move only through a promotion: a request, signed approvals over exactly that
request, and the gate's signed decision listing every rule's outcome. Break-glass moves exist
for admins, need a reason, and are marked as overrides everywhere.
"""

from __future__ import annotations

import functools
import hashlib
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
import yaml
from sqlalchemy import bindparam, func, insert, select, text, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from chainproof import catalog, identities, provenance, signatures
from chainproof.access import Permission
from chainproof.access import grants as access
from chainproof.attest import (
    CHAINPROOF_APPROVAL_V1,
    CHAINPROOF_PROMOTION_DECISION_V1,
    Envelope,
    Statement,
    Subject,
)
from chainproof.context import Context
from chainproof.db.tables import (
    AliasHistoryRow,
    AliasRow,
    ApprovalRow,
    AssetRow,
    AssetVersionRow,
    AttestationRow,
    DecisionRow,
    ModelRow,
    ModelVersionRow,
    PromotionPolicyRow,
    PromotionRequestRow,
    StepInputRow,
    table,
)
from chainproof.errors import (
    BadInputError,
    ChainproofError,
    ConflictError,
    NotFoundError,
    PolicyViolationError,
)
from chainproof.lineage import queries
from chainproof.records.assets import AssetKind, AssetVersion
from chainproof.records.log import Action
from chainproof.records.names import (
    DEFAULT_NAMESPACE,
    MAX_VERSION,
    check_alias,
    check_name,
    check_text,
    parse_ref,
)
from chainproof.registry.policy import (
    DEFAULT_POLICY,
    ApprovalFact,
    Facts,
    Outcome,
    PromotionPolicy,
    Rule,
    evaluate,
    parse_policy,
)
from chainproof.transaction import Transaction

_REPORT_LIMIT = 5_000_000
_DECISION_ID = re.compile(r"[0-9a-f]{16}")


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def model_label(namespace: str, name: str) -> str:
    return name if namespace == DEFAULT_NAMESPACE else f"{namespace}/{name}"


# --- models and versions --------------------------------------------------------------------------


# The lookups every registry call makes, built once with bind parameters (an ad-hoc select()
# is rebuilt and cache-keyed by SQLAlchemy on every call, which costs more than SQLite's work).
_MODEL_BY_NAME = select(ModelRow).where(ModelRow.namespace == bindparam("namespace"),
                                        ModelRow.name == bindparam("name"))
_MODEL_VERSION = select(ModelVersionRow).where(ModelVersionRow.model_id == bindparam("model_id"),
                                               ModelVersionRow.version == bindparam("version"))
_LATEST_MODEL_VERSION = select(func.max(ModelVersionRow.version)).where(
    ModelVersionRow.model_id == bindparam("model_id"))
_LATEST_POLICY = select(PromotionPolicyRow.version, PromotionPolicyRow.document).order_by(
    PromotionPolicyRow.version.desc()).limit(1)
_ALIAS = select(AliasRow.version).where(AliasRow.model_id == bindparam("model_id"),
                                        AliasRow.alias == bindparam("alias"))
_INSERT_MODEL_VERSION = insert(table(ModelVersionRow))
_INSERT_ALIAS = insert(table(AliasRow))
_INSERT_ALIAS_HISTORY = insert(table(AliasHistoryRow))
_UPDATE_ALIAS = update(table(AliasRow)).where(
    table(AliasRow).c.model_id == bindparam("key_model_id"),
    table(AliasRow).c.alias == bindparam("key_alias"))


@dataclass(frozen=True)
class ModelKey:
    """The registry row of a model, as the hot paths need it (no ORM object)."""

    id: int
    namespace: str
    name: str


@dataclass(frozen=True)
class VersionKey:
    version: int
    digest: str


class _Model(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def namespace(self) -> str: ...
    @property
    def name(self) -> str: ...


class _Version(Protocol):
    @property
    def version(self) -> int: ...
    @property
    def digest(self) -> str: ...


_MODEL_KEY = select(ModelRow.id, ModelRow.namespace, ModelRow.name).where(
    ModelRow.namespace == bindparam("namespace"), ModelRow.name == bindparam("name"))
_VERSION_KEY = select(ModelVersionRow.version, ModelVersionRow.digest).where(
    ModelVersionRow.model_id == bindparam("model_id"),
    ModelVersionRow.version == bindparam("version"))


def model_key(session: Session, model: str) -> ModelKey:
    """``find_model`` without the ORM object, for the per-request write paths."""
    ref = parse_ref(model)
    row = session.connection().execute(_MODEL_KEY, {"namespace": ref.namespace,
                                                   "name": ref.name}).one_or_none()
    if row is None:
        raise NotFoundError(f"no registered model {model!r}",
                            hint="`chainproof registry create NAME` registers one")
    return ModelKey(row.id, row.namespace, row.name)


_MODEL_AND_VERSION = (
    select(ModelRow.id, ModelRow.namespace, ModelRow.name, ModelVersionRow.version,
           ModelVersionRow.digest)
    .outerjoin(ModelVersionRow, (ModelVersionRow.model_id == ModelRow.id)
               & (ModelVersionRow.version == bindparam("version")))
    .where(ModelRow.namespace == bindparam("namespace"), ModelRow.name == bindparam("name")))


def model_and_version(session: Session, model: str, version: int) -> tuple[ModelKey, VersionKey]:
    """``model_key`` and ``version_key`` in one query (an alias move needs both)."""
    ref = parse_ref(model)
    row = session.connection().execute(_MODEL_AND_VERSION, {
        "namespace": ref.namespace, "name": ref.name,
        "version": version if 1 <= version <= MAX_VERSION else 0}).one_or_none()
    if row is None:
        raise NotFoundError(f"no registered model {model!r}",
                            hint="`chainproof registry create NAME` registers one")
    key = ModelKey(row.id, row.namespace, row.name)
    if row.version is None:
        return key, version_key(session, key, version)  # raises the precise NotFoundError
    return key, VersionKey(row.version, row.digest)


def version_key(session: Session, model: _Model, version: int) -> VersionKey:
    """``_version`` without the ORM object."""
    if 1 <= version <= MAX_VERSION:
        row = session.connection().execute(_VERSION_KEY, {"model_id": model.id,
                                                         "version": version}).one_or_none()
        if row is not None:
            return VersionKey(row.version, row.digest)
    model_version(session, model, version)  # raises the precise NotFoundError
    raise NotFoundError(f"{model_label(model.namespace, model.name)} has no version {version}")


def find_model(session: Session, model: str) -> ModelRow:
    ref = parse_ref(model)
    row = session.execute(_MODEL_BY_NAME, {"namespace": ref.namespace, "name": ref.name}
                          ).scalar_one_or_none()
    if row is None:
        raise NotFoundError(f"no registered model {model!r}",
                            hint="`chainproof registry create NAME` registers one")
    return row


def create_model(ctx: Context, tx: Transaction, model: str) -> ModelRow:
    ref = parse_ref(model)
    ctx.require(tx.session, Permission.WRITE_MODEL, ref.namespace, "register models")
    exists = tx.session.execute(select(ModelRow).where(
        ModelRow.namespace == ref.namespace, ModelRow.name == ref.name)).scalar_one_or_none()
    if exists is not None:
        raise ConflictError(f"model {model} is already registered")
    row = ModelRow(namespace=ref.namespace, name=ref.name, created_at=tx.time,
                   created_by=tx.actor, log_seq=tx.appender.size)
    tx.session.add(row)
    tx.session.flush()
    tx.log(Action.MODEL_CREATE, f"model:{ref.namespace}/{ref.name}",
           detail={"namespace": ref.namespace, "name": ref.name, "created_at": tx.time,
                   "created_by": tx.actor})
    return row


def register_version(ctx: Context, tx: Transaction, model: str, asset_ref: str) -> int:
    """Pin an existing model asset version as ``model``'s next version."""
    # Permission first: an outsider learns nothing, not even whether the model exists.
    ctx.require(tx.session, Permission.WRITE_MODEL, parse_ref(model).namespace,
               "register model versions")
    row = find_model(tx.session, model)
    asset_ref_parsed = parse_ref(asset_ref, namespace=row.namespace)
    # Pinning bytes needs read access to them (I8): permission first, then the lookup, so an
    # outsider learns nothing about another namespace's assets.
    ctx.require(tx.session, Permission.READ, asset_ref_parsed.namespace, f"read {asset_ref}")
    version_row, asset = catalog.find(tx.session, asset_ref_parsed)
    if asset.kind != AssetKind.MODEL.value:
        raise BadInputError(f"{asset_ref} is a {asset.kind}, not a model",
                            hint="register the model file as a model asset first")
    return _pin(tx, row, version_row.id, version_row.digest,
                f"{asset.namespace}/{asset.name}@{version_row.version}")


def register_stored_version(ctx: Context, tx: Transaction, model: str,
                            staged: catalog.Staged, *,
                            link_produced: bool = False) -> tuple[int, AssetVersion, bool]:
    """Register stored bytes as a model asset version (or find the version that holds exactly
    these bytes) and pin it as ``model``'s next version: one transaction, two log entries.
    With ``link_produced``, bytes that a recorded step already produced as a model asset
    version in the model's namespace (readable by the caller) are pinned to that version, so
    the registered version keeps its provenance. Returns (model version, asset version,
    whether the asset version is new)."""
    ctx.require(tx.session, Permission.WRITE_MODEL, parse_ref(model).namespace,
               "register model versions")
    row = model_key(tx.session, model)
    if staged.kind is not AssetKind.MODEL:
        raise BadInputError(f"{staged.name} is registered as a {staged.kind.value}, "
                            "not a model")
    if link_produced and Permission.READ in access.permitted(tx.session, tx.actor,
                                                            row.namespace):
        produced = tx.session.execute(
            select(AssetVersionRow, AssetRow)
            .join(AssetRow, AssetRow.id == AssetVersionRow.asset_id)
            .where(AssetRow.namespace == row.namespace,
                   AssetRow.kind == AssetKind.MODEL.value,
                   AssetVersionRow.digest == staged.digest,
                   AssetVersionRow.is_directory == staged.is_directory,
                   AssetVersionRow.producer_step.is_not(None))
            .order_by(AssetVersionRow.log_seq).limit(1)).one_or_none()
        if produced is not None:
            found = queries.version_from_row(*produced)
            return (_pin(tx, row, produced[0].id, found.digest,
                         f"{found.namespace}/{found.name}@{found.version}"), found, False)
    asset, created, version_row_id = catalog.register(tx, staged, row.namespace, producer=None)
    return (_pin(tx, row, version_row_id, asset.digest,
                 f"{asset.namespace}/{asset.name}@{asset.version}"), asset, created)


def _pin(tx: Transaction, row: _Model, asset_version_id: int, digest: str,
         asset_label: str) -> int:
    connection = tx.session.connection()
    latest = connection.execute(_LATEST_MODEL_VERSION, {"model_id": row.id}).scalar_one() or 0
    version = latest + 1
    connection.execute(_INSERT_MODEL_VERSION, {
        "model_id": row.id, "version": version, "asset_version_id": asset_version_id,
        "digest": digest, "created_at": tx.time, "created_by": tx.actor,
        "log_seq": tx.appender.size})
    tx.log(Action.MODEL_VERSION_ADD, f"model:{row.namespace}/{row.name}@{version}",
           digests={"model": digest},
           detail={"model": f"{row.namespace}/{row.name}", "version": version,
                   "asset": asset_label, "digest": digest, "created_at": tx.time,
                   "created_by": tx.actor})
    return version


def model_version(session: Session, model: _Model, version: int) -> ModelVersionRow:
    if not 1 <= version <= MAX_VERSION:
        raise NotFoundError(f"{model_label(model.namespace, model.name)} has no version "
                            f"{version}", hint="versions run from 1")
    row = session.execute(_MODEL_VERSION, {"model_id": model.id, "version": version}
                          ).scalar_one_or_none()
    if row is None:
        raise NotFoundError(f"{model_label(model.namespace, model.name)} has no version {version}",
                            hint=f"`chainproof registry versions {model.name}` lists them")
    return row


def asset_ref_of(session: Session, mv: ModelVersionRow) -> str:
    v = session.get(AssetVersionRow, mv.asset_version_id)
    assert v is not None
    a = session.get(AssetRow, v.asset_id)
    assert a is not None
    return f"{a.namespace}/{a.name}@{v.version}"


# --- policy ---------------------------------------------------------------------------------------


def policy_version(session: Session, version: int) -> PromotionPolicy:
    """The promotion policy as it was at ``version`` (0: the built-in default)."""
    if version == 0:
        return DEFAULT_POLICY
    row = session.execute(select(PromotionPolicyRow.document).where(
        PromotionPolicyRow.version == version)).scalar_one_or_none()
    if row is None:
        raise NotFoundError(f"promotion policy version {version} does not exist",
                            hint="run `chainproof audit verify`: the policy history was edited")
    return _parsed_policy(row, version)


def current_policy(session: Session) -> tuple[PromotionPolicy, str | None]:
    row = session.connection().execute(_LATEST_POLICY).one_or_none()
    if row is None:
        return DEFAULT_POLICY, None
    return _parsed_policy(row.document, row.version), row.document


@functools.lru_cache(maxsize=16)
def _parsed_policy(document: str, version: int) -> PromotionPolicy:
    # Parsing YAML on every alias move would cost more than the move; the parsed policy is
    # immutable and a pure function of its text.
    return parse_policy(document, version=version)


def set_policy(ctx: Context, tx: Transaction, document: str) -> int:
    ctx.require(tx.session, Permission.ADMIN, access.GLOBAL, "set the promotion policy")
    parse_policy(document)
    latest = tx.session.execute(select(func.max(PromotionPolicyRow.version))).scalar_one() or 0
    digest = _sha(document.encode())
    tx.session.add(PromotionPolicyRow(version=latest + 1, document=document, digest=digest,
                                      set_at=tx.time, set_by=tx.actor,
                                      log_seq=tx.appender.size))
    tx.log(Action.PROMOTION_POLICY_SET, f"promotion-policy:{latest + 1}",
           digests={"policy": digest},
           detail={"version": latest + 1, "digest": digest, "document": document,
                   "set_at": tx.time, "set_by": tx.actor})
    return latest + 1


# --- aliases --------------------------------------------------------------------------------------


def _move(tx: Transaction, model: _Model, alias: str, mv: _Version, *,
          decision_id: str | None, override: bool, reason: str | None) -> None:
    check_name(alias, what="alias")
    session = tx.session
    session.flush()  # ORM changes made earlier in this transaction land before these rows
    connection = session.connection()
    previous = connection.execute(_ALIAS, {"model_id": model.id, "alias": alias}
                                  ).scalar_one_or_none()
    seq = tx.appender.size
    values = {"version": mv.version, "digest": mv.digest, "moved_at": tx.time,
              "moved_by": tx.actor, "decision_id": decision_id, "override": override,
              "log_seq": seq}
    if previous is None:
        connection.execute(_INSERT_ALIAS, {"model_id": model.id, "alias": alias, **values})
    else:
        connection.execute(_UPDATE_ALIAS, {"key_model_id": model.id, "key_alias": alias,
                                           **values})
        stale = session.identity_map.get(identity_key(AliasRow, (model.id, alias)))
        if stale is not None:
            session.expire(stale)  # a copy loaded earlier in this transaction re-reads
    connection.execute(_INSERT_ALIAS_HISTORY, {
        "model_id": model.id, "alias": alias, "from_version": previous,
        "to_version": mv.version, "moved_at": tx.time, "moved_by": tx.actor,
        "decision_id": decision_id, "override": override, "reason": reason, "log_seq": seq})
    tx.log(Action.ALIAS_MOVE, f"alias:{model.namespace}/{model.name}@{alias}",
           digests={"model": mv.digest},
           detail={"model": f"{model.namespace}/{model.name}", "alias": alias,
                   "from_version": previous, "to_version": mv.version, "digest": mv.digest,
                   "moved_at": tx.time, "moved_by": tx.actor, "decision_id": decision_id,
                   "override": override, "reason": reason})


def set_alias(ctx: Context, tx: Transaction, model: str, version: int, alias: str) -> None:
    """Move an unprotected alias directly (experiment work: ``staging``, ``candidate``...)."""
    check_alias(alias)
    namespace = parse_ref(model).namespace
    policy, _ = current_policy(tx.session)
    if policy.is_protected(alias):
        raise access.denied(
            tx.actor, Permission.MOVE_ALIAS, namespace, f"move protected alias {alias}",
            f"alias {alias!r} is protected: it moves only through a promotion",
            f"`chainproof promote {model}@{version} --to {alias}` opens a request")
    # Permission before the lookup: an outsider learns nothing, not even whether it exists.
    ctx.require(tx.session, Permission.MOVE_ALIAS, namespace, f"move alias {alias}")
    row, pinned = model_and_version(tx.session, model, version)
    _move(tx, row, alias, pinned, decision_id=None, override=False, reason=None)


_ALIAS_TARGET = (
    select(ModelRow.namespace, ModelRow.name, AliasRow.version, AliasRow.digest,
           AliasRow.override, AliasRow.decision_id, AliasRow.moved_at, AliasRow.moved_by,
           AssetRow.namespace.label("asset_namespace"), AssetRow.name.label("asset_name"),
           AssetVersionRow.version.label("asset_version"))
    .join(AliasRow, AliasRow.model_id == ModelRow.id)
    .outerjoin(ModelVersionRow, (ModelVersionRow.model_id == ModelRow.id)
               & (ModelVersionRow.version == AliasRow.version))
    .outerjoin(AssetVersionRow, AssetVersionRow.id == ModelVersionRow.asset_version_id)
    .outerjoin(AssetRow, AssetRow.id == AssetVersionRow.asset_id)
    .where(ModelRow.namespace == bindparam("namespace"), ModelRow.name == bindparam("name"),
           AliasRow.alias == bindparam("alias")))


def alias_target(session: Session, model: str, alias: str) -> dict[str, Any]:
    """Where ``model@alias`` points (version, digest, the model asset, the decision), in one
    query: this is what a serving fleet asks on every refresh."""
    ref = parse_ref(model)
    row = session.connection().execute(_ALIAS_TARGET, {"namespace": ref.namespace, "name": ref.name,
                                          "alias": alias}).one_or_none()
    if row is None:
        resolve_alias(session, model, alias)  # raises the precise NotFoundError
        raise NotFoundError(f"{model} has no alias {alias!r}")
    if row.asset_name is None:
        raise NotFoundError(f"{model_label(row.namespace, row.name)}@{alias} points at version "
                            f"{row.version}, which does not exist",
                            hint="run `chainproof audit verify`: the registry was altered")
    return {"model": model_label(row.namespace, row.name), "alias": alias,
            "version": row.version, "digest": row.digest,
            "asset": f"{row.asset_namespace}/{row.asset_name}@{row.asset_version}",
            "override": bool(row.override), "decision": row.decision_id,
            "moved_at": row.moved_at, "moved_by": row.moved_by}


def resolve_alias(session: Session, model: str, alias: str) -> tuple[ModelRow, AliasRow]:
    row = find_model(session, model)
    target = session.get(AliasRow, (row.id, alias))
    if target is None:
        raise NotFoundError(f"{model} has no alias {alias!r}",
                            hint="`chainproof registry versions` shows the aliases")
    return row, target


# --- promotion ------------------------------------------------------------------------------------


def request_promotion(ctx: Context, tx: Transaction, model: str, version: int,
                      alias: str, request_id: str | None = None) -> str:
    check_alias(alias)
    # Permission first: an outsider learns nothing, not even whether the model exists.
    ctx.require(tx.session, Permission.REQUEST_PROMOTION, parse_ref(model).namespace,
                "request promotions")
    row = find_model(tx.session, model)
    mv = model_version(tx.session, row, version)
    policy, _ = current_policy(tx.session)
    if request_id is None:
        # One open request per version and alias: asking again returns the open one.
        open_id = tx.session.execute(select(PromotionRequestRow.id).where(
            PromotionRequestRow.model_id == row.id, PromotionRequestRow.version == version,
            PromotionRequestRow.alias == alias, PromotionRequestRow.status == "pending")
        ).scalars().first()
        if open_id is not None:
            return str(open_id)
    request_id = request_id or uuid.uuid4().hex[:16]
    if tx.session.get(PromotionRequestRow, request_id) is not None:
        raise ConflictError(f"promotion request {request_id} already exists")
    tx.session.add(PromotionRequestRow(id=request_id, model_id=row.id, version=version,
                                       alias=alias, digest=mv.digest,
                                       policy_version=policy.version, requested_at=tx.time,
                                       requested_by=tx.actor, status="pending",
                                       log_seq=tx.appender.size))
    tx.log(Action.PROMOTION_REQUEST, f"promotion:{request_id}", digests={"model": mv.digest},
           detail={"id": request_id, "model": f"{row.namespace}/{row.name}",
                   "version": version, "alias": alias, "digest": mv.digest,
                   "policy_version": policy.version, "requested_at": tx.time,
                   "requested_by": tx.actor})
    return request_id


def promotion_request(session: Session, request_id: str, *,
                      reader: str | None = None) -> PromotionRequestRow:
    """The request ``request_id``; NotFoundError if there is none — or, with ``reader``, if
    that identity may not read the model's namespace (unknown and forbidden answer alike)."""
    row = session.get(PromotionRequestRow, request_id)
    if row is not None and reader is not None:
        model = session.get(ModelRow, row.model_id)
        if model is None or not access.allowed(session, reader, Permission.READ,
                                               model.namespace):
            row = None
    if row is None:
        raise NotFoundError(f"no promotion request {request_id}",
                            hint="`chainproof registry requests` lists them")
    return row


def _approval_statement(req: PromotionRequestRow, model: ModelRow, decision: str,
                        reason: str | None, approver: str) -> Statement:
    return Statement(
        subjects=(Subject(f"{model.namespace}/{model.name}@{req.version}",
                          {"sha256": req.digest.split(":", 1)[1]}),),
        predicate_type=CHAINPROOF_APPROVAL_V1,
        predicate={"request": req.id, "model": f"{model.namespace}/{model.name}",
                   "version": req.version, "alias": req.alias, "digest": req.digest,
                   "policy_version": req.policy_version, "decision": decision,
                   "reason": reason, "approver": approver})


def review(ctx: Context, tx: Transaction, request_id: str, decision: str,
           reason: str | None, sign: Callable[[bytes], str]) -> None:
    """Record one approver's signed approval or rejection of a request."""
    if reason is not None:
        check_text(reason, what="reason", limit=10_000)
    req = promotion_request(tx.session, request_id, reader=tx.actor)
    model = tx.session.get(ModelRow, req.model_id)
    assert model is not None
    ctx.require(tx.session, Permission.APPROVE, model.namespace, "approve promotions")
    if req.status != "pending":
        raise ConflictError(f"promotion request {request_id} is {req.status}, not pending")
    if decision == "reject" and not (reason or "").strip():
        raise BadInputError("a rejection needs a reason", hint='--reason "metrics regressed"')
    already = tx.session.execute(select(ApprovalRow).where(
        ApprovalRow.request_id == request_id, ApprovalRow.approver == tx.actor)
    ).scalar_one_or_none()
    if already is not None:
        raise ConflictError(f"{tx.actor} already reviewed request {request_id}",
                            hint="each approver counts once; ask another approver")
    if decision not in ("approve", "reject"):
        raise BadInputError(f"unknown review decision {decision!r}", hint="approve or reject")
    payload = _approval_statement(req, model, decision, reason, tx.actor).to_json_bytes()
    envelope = sign(payload)
    keyid = signatures.accept_signature(tx, envelope, payload)
    tx.session.add(ApprovalRow(request_id=request_id, approver=tx.actor, decision=decision,
                               reason=reason, envelope=envelope, keyid=keyid,
                               created_at=tx.time, log_seq=tx.appender.size))
    if decision == "reject":
        req.status = "rejected"
    tx.log(Action.PROMOTION_APPROVE if decision == "approve" else Action.PROMOTION_REJECT,
           f"promotion:{request_id}", digests={"approval": _sha(envelope.encode())},
           detail={"request_id": request_id, "approver": tx.actor, "decision": decision,
                   "reason": reason, "keyid": keyid,
                   "envelope_digest": _sha(envelope.encode()), "created_at": tx.time})
    tx.session.flush()


@dataclass
class GateResult:
    request_id: str | None
    model: str
    version: int
    alias: str
    digest: str
    policy_version: int
    outcomes: list[Outcome]
    rule: Rule
    #: The provenance check the gate made (``load`` reuses it rather than verifying twice).
    chain: provenance.ChainReport | None = field(default=None, compare=False, repr=False)

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outcomes)

    def to_dict(self) -> dict[str, Any]:
        return {"request": self.request_id, "model": self.model, "version": self.version,
                "alias": self.alias, "digest": self.digest,
                "policy_version": self.policy_version, "passed": self.passed,
                "auto_execute": self.rule.auto_execute,
                "rules": [o.to_dict() for o in self.outcomes]}


def evaluate_gate(ctx: Context, session: Session, model: ModelRow, version: int, alias: str,
                  request: PromotionRequestRow | None, *, policy: PromotionPolicy | None = None,
                  as_of: int | None = None) -> GateResult:
    """Gather every fact the policy needs (verifying as it goes) and evaluate each rule.

    The one gate: ``policy check``, ``execute`` and ``load`` all call it. By default it judges
    now, under the current policy. ``load`` re-checks a past decision with the ``policy`` it
    recorded and ``as_of`` its audit-log position: approvers' roles are those they held then
    (from the log), so a later departure or a stricter policy does not unmake production.
    Keys are always judged at the log position of each signature; a key revoked as
    compromised withdraws its signatures whenever they were made."""
    if policy is None:
        policy, _ = current_policy(session)
    rule = policy.rule_for(model.namespace, model.name, alias)
    mv = model_version(session, model, version)
    asset_ref = asset_ref_of(session, mv)

    chain = provenance.check_chain(ctx, asset_ref, session=session)
    chain_problems = [f"{link.ref}: {p}" for link in chain.links for p in link.problems]
    graph = catalog.lineage(session, parse_ref(asset_ref))
    authors = ({s.identity for s in graph.steps.values()}
               | {v.created_by for v in graph.versions.values()})
    inputs = sorted({(v.namespace, v.name) for v in graph.versions.values()
                     if v.kind in (AssetKind.DATASET, AssetKind.LABELS)})
    found = _evidence(ctx, session, graph.versions.values(), asset_ref, model.namespace, rule,
                      as_of)
    current = session.get(AliasRow, (model.id, alias))
    current_metrics = None
    if current is not None and current.version != version:
        current_ref = asset_ref_of(session, model_version(session, model, current.version))
        current_metrics = _evidence(ctx, session, [], current_ref, model.namespace, rule,
                                    as_of).metrics
    approvals, rejections = [], []
    if request is not None:
        for row in session.execute(select(ApprovalRow).where(
                ApprovalRow.request_id == request.id)).scalars():
            fact = _check_approval(session, row, request, model, rule, authors)
            if row.decision == "reject" and fact.signature_ok:
                rejections.append(row.approver)
            elif row.decision == "approve":
                approvals.append(fact)
    facts = Facts(provenance_problems=chain_problems, evidence=found.passed,
                  metrics=found.metrics, current_metrics=current_metrics, inputs=inputs,
                  approvals=approvals, rejections=rejections, untrusted=found.untrusted,
                  uncovered=found.uncovered)
    return GateResult(request_id=request.id if request else None,
                      model=model_label(model.namespace, model.name), version=version,
                      alias=alias, digest=mv.digest, policy_version=policy.version,
                      outcomes=evaluate(rule, facts), rule=rule, chain=chain)


def _check_approval(session: Session, row: ApprovalRow, request: PromotionRequestRow,
                    model: ModelRow, rule: Rule, authors: set[str]) -> ApprovalFact:
    role = rule.approvals.role if rule.approvals else "approver"
    independent = row.approver not in authors
    problem = None
    try:
        # Keys trusted when the log recorded the approval (one authority: signatures).
        payload, _ = signatures.verify_signed(session, row.envelope, row.approver, row.log_seq)
        statement = Statement.from_bytes(payload)
        p = statement.predicate
        if statement.predicate_type != CHAINPROOF_APPROVAL_V1:
            problem = "not an approval statement"
        elif (p.get("request"), p.get("digest"), p.get("alias"), p.get("version"),
              p.get("approver"), p.get("decision")) != (
                request.id, request.digest, request.alias, request.version, row.approver,
                row.decision):
            problem = ("the signed approval is for another request, model, alias or approver "
                       "(replayed)")
    except ChainproofError as exc:
        problem = f"approval signature invalid: {exc.message}"
    # The role must have been held when the approval was recorded, through a grant (in the
    # log) made by someone else: a role granted afterwards, or a row written into the
    # database directly, never makes an earlier approval count.
    return ApprovalFact(approver=row.approver, signature_ok=problem is None,
                        has_role=access.holds_role_from_another(
                            session, row.approver, role, model.namespace, row.log_seq),
                        authored_in_chain=not independent, problem=problem)


def _evidence(ctx: Context, session: Session, upstream: Iterable[AssetVersion],
              model_ref: str, governed: str, rule: Rule | None = None,
              as_of: int | None = None) -> _Evidence:
    """Reports about the model or its inputs (report kind → passed) and the newest metrics
    recorded about the model, counting only trustworthy evidence (I9):

    * the producing step is of the report's kind (``scan``, ``validation``...; metrics come
      from any step consuming the model), carries a signed attestation, and its signer is
      trusted for that kind **in the governed namespace** ``governed`` — an explicit trust
      policy rule for it there, or else (out of the box) the ``evaluator`` role there, granted
      by someone else — wherever the step itself was recorded;
    * every subject of a report names a version of the chain with its exact digest, and a
      report other than a validation (which judges data) names the candidate itself;
    * metrics come from an ``evaluate`` step that consumed the candidate;
    * order comes from the audit log (the step's log position), never from a client-chosen
      time: the latest report about the same subjects supersedes earlier ones (a passing
      re-validation of the same bytes replaces a failing one; both stay in the log);
    * validation must cover every dataset, labels and features version the candidate's own
      training step consumed: a passing validation of one input does not vouch for another
      (clean data cannot carry an unvalidated, poisoned table along).
    A validation report carrying severities passes when nothing reaches the rule's
    ``block_on`` severity for it (``fail`` by default)."""
    chain_versions = {_full_ref(v.ref): v for v in upstream}
    model = catalog.resolve(session, parse_ref(model_ref))
    chain_versions[_full_ref(model.ref)] = model
    ids = [catalog.find(session, parse_ref(ref))[0].id for ref in chain_versions]
    produced = session.execute(text(
        # step_outputs, not producer edges: a report or metrics file byte-identical to an
        # earlier one is the same version, but still evidence about this step's inputs.
        "SELECT DISTINCT av.id, a.kind, av.digest, av.size, s.log_seq, si.version_id, s.id, "
        "s.kind, s.identity FROM step_inputs si "
        "JOIN step_outputs so ON so.step_id = si.step_id "
        "JOIN asset_versions av ON av.id = so.version_id "
        "JOIN assets a ON a.id = av.asset_id JOIN steps s ON s.id = si.step_id "
        "WHERE s.status = 'succeeded' AND si.version_id IN (" + ",".join(map(str, ids)) + ")"
        " AND a.kind IN ('report', 'metrics') ORDER BY s.log_seq")).all() if ids else []
    model_id = catalog.find(session, parse_ref(model_ref))[0].id
    trust, _ = identities.trust_policy(session)
    attested = set(session.execute(select(AttestationRow.step_id).where(
        AttestationRow.step_id.in_([r[6] for r in produced]))).scalars()) if produced else set()
    block_on = dict(rule.evidence_block_on) if rule is not None else {}
    label_checks = rule.evidence_label_checks if rule is not None else frozenset()

    def trusted(step_kind: str, signer: str) -> bool:
        step_rule = trust.explicit_step_rule(governed, step_kind)
        if step_rule is not None:
            return step_rule.allows_signer(
                signer, governed, lambda i, r, n: access.holds_role_from_another(
                    session, i, r, n, as_of))
        return access.holds_role_from_another(session, signer, "evaluator", governed, as_of)

    latest: dict[tuple[str, frozenset[str]], bool] = {}
    metrics: dict[str, float] = {}
    untrusted: dict[str, list[str]] = {}
    validated: dict[str, bool] = {}  # full ref -> its latest trusted validation passed
    for _vid, kind, digest, size, seq, about, step_id, step_kind, signer in produced:
        if size > _REPORT_LIMIT or step_id not in attested or (
                as_of is not None and seq >= as_of):
            continue
        try:
            doc = orjson.loads(ctx.store.read_bytes(digest))
        except (ChainproofError, orjson.JSONDecodeError):
            continue
        if not isinstance(doc, dict):
            continue
        if kind == "report" and isinstance(doc.get("report_kind"), str):
            report_kind = doc["report_kind"]
            subjects = doc.get("subjects")
            if report_kind != step_kind or not isinstance(subjects, list) or not subjects:
                continue
            if not trusted(step_kind, signer):
                if signer not in untrusted.setdefault(report_kind, []):
                    untrusted[report_kind].append(signer)
                continue
            refs = []
            for subject in subjects:
                version = chain_versions.get(_full_ref(str(subject.get("ref")))) \
                    if isinstance(subject, dict) else None
                if version is None or subject.get("digest") != version.digest:
                    break  # judged something outside the chain, or other bytes
                refs.append(version.ref)
            else:
                if report_kind != "validation" and model.ref not in refs:
                    # A scan (or any report about a model) counts only about the candidate's
                    # own bytes, never about an upstream version it was built from.
                    continue
                report = doc.get("report")
                unlabelled = report_kind in label_checks and not (
                    isinstance(report, dict) and report.get("label_checked") is True)
                passed = not unlabelled and _report_passed(report_kind, doc,
                                                           block_on.get(report_kind))
                latest[(report_kind, frozenset(refs))] = passed
                if report_kind == "validation":
                    for ref in refs:
                        validated[_full_ref(ref)] = passed
        elif (kind == "metrics" and about == model_id and step_kind == "evaluate"
              and trusted(step_kind, signer)):
            values = doc.get("metrics", doc)
            metrics = {k: float(v) for k, v in values.items()
                       if isinstance(v, int | float) and not isinstance(v, bool)}
    evidence: dict[str, bool] = {}
    for (report_kind, _), passed in latest.items():
        evidence[report_kind] = evidence.get(report_kind, True) and passed
    uncovered: dict[str, list[str]] = {}
    if "validation" in evidence:
        missing = [ref for ref in _training_data(session, model.producer_step)
                   if validated.get(ref) is not True]
        if missing:
            evidence["validation"] = False
            uncovered["validation"] = missing
    return _Evidence(evidence, metrics, untrusted, uncovered)


@dataclass(frozen=True)
class _Evidence:
    passed: dict[str, bool]  # report kind -> passed (absent: no trusted report)
    metrics: dict[str, float]
    untrusted: dict[str, list[str]]  # report kind -> signers whose reports did not count
    uncovered: dict[str, list[str]]  # report kind -> inputs no passing report covers


def _training_data(session: Session, step_id: str | None) -> list[str]:
    """Full refs of the dataset, labels and features versions step ``step_id`` consumed."""
    if step_id is None:
        return []
    rows = session.execute(
        select(AssetRow.namespace, AssetRow.name, AssetVersionRow.version)
        .join(AssetVersionRow, AssetVersionRow.asset_id == AssetRow.id)
        .join(StepInputRow, StepInputRow.version_id == AssetVersionRow.id)
        .where(StepInputRow.step_id == step_id,
               AssetRow.kind.in_([AssetKind.DATASET.value, AssetKind.LABELS.value,
                                  AssetKind.FEATURES.value]))).all()
    return sorted(f"{ns}/{name}@{version}" for ns, name, version in rows)


def candidate_evidence(ctx: Context, session: Session, asset_ref: str, governed: str,
                       as_of: int | None = None) -> dict[str, bool]:
    """The trusted evidence about the model asset version ``asset_ref`` for a gate in
    namespace ``governed`` (report kind → passed), by the gate's own rules; what ``load``
    checks its scan with (one authority)."""
    graph = catalog.lineage(session, parse_ref(asset_ref))
    return _evidence(ctx, session, graph.versions.values(), asset_ref, governed, None,
                     as_of).passed


def _report_passed(report_kind: str, doc: dict[str, Any], block_on: str | None) -> bool:
    """A validation report passes when none of its findings reaches ``block_on`` (the
    validation package's own rule); any other report by its recorded ``passed``."""
    report = doc.get("report")
    if report_kind == "validation" and isinstance(report, dict):
        # Imported here for start-up time only (validate pulls in pandas and scipy), not to
        # dodge a cycle: the gate needs it only when a validation report is evidence.
        from chainproof.validate import report_passes

        return report_passes(report, block_on or "fail")
    return doc.get("passed") is True


def _full_ref(ref: str) -> str:
    return ref if "/" in ref.split("@", 1)[0] else f"{DEFAULT_NAMESPACE}/{ref}"


def _decide(ctx: Context, tx: Transaction, req: PromotionRequestRow, model: ModelRow,
            gate: GateResult, result: str, sign: Callable[[bytes], str], reason: str | None,
            decision_id: str, time: str) -> str:
    approvals = [{"approver": a.approver, "decision": a.decision, "keyid": a.keyid,
                  "envelope_digest": _sha(a.envelope.encode())}
                 for a in tx.session.execute(select(ApprovalRow).where(
                     ApprovalRow.request_id == req.id)).scalars()]
    statement = Statement(
        subjects=(Subject(f"{model.namespace}/{model.name}@{req.version}",
                          {"sha256": req.digest.split(":", 1)[1]}),),
        predicate_type=CHAINPROOF_PROMOTION_DECISION_V1,
        predicate={"decision": decision_id, "request": req.id, "result": result,
                   "reason": reason, **gate.to_dict(), "approvals": approvals,
                   "executor": tx.actor, "time": time})
    payload = statement.to_json_bytes()
    envelope = sign(payload)
    signatures.accept_signature(tx, envelope, payload)
    if tx.session.get(DecisionRow, decision_id) is not None:
        raise ConflictError(f"decision {decision_id} already exists")
    tx.session.add(DecisionRow(id=decision_id, request_id=req.id, result=result,
                               envelope=envelope, created_at=tx.time, created_by=tx.actor,
                               log_seq=tx.appender.size))
    tx.log(Action.PROMOTION_DECISION, f"promotion:{req.id}",
           digests={"decision": _sha(envelope.encode()), "model": req.digest},
           detail={"id": decision_id, "request_id": req.id, "result": result,
                   "envelope_digest": _sha(envelope.encode()), "created_at": tx.time,
                   "created_by": tx.actor, "override": result == "override",
                   "reason": reason, "rules": [o.to_dict() for o in gate.outcomes]})
    tx.session.flush()
    return decision_id


def decision_fields(envelope: str) -> tuple[str, str, str]:
    """(decision id, time, request id) of a client-signed decision statement, so the server can
    rebuild it."""
    try:
        predicate = Statement.from_bytes(Envelope.from_json(envelope).payload).predicate
        fields = str(predicate["decision"]), str(predicate["time"]), str(predicate["request"])
    except (ChainproofError, KeyError, TypeError):
        raise BadInputError("the envelope does not hold a promotion decision statement",
                            hint="sign the statement returned by the prepare call") from None
    # The id is the server's format (what prepare returned), never free text a client chose:
    # it is shown to auditors and used as a key.
    for what, value in (("decision id", fields[0]), ("request id", fields[2])):
        if not _DECISION_ID.fullmatch(value):
            raise BadInputError(f"{what} {value[:40]!r} is not 16 lowercase hex digits",
                                hint="sign the statement returned by the prepare call "
                                     "unchanged")
    return fields


def execute(ctx: Context, tx: Transaction, request_id: str, sign: Callable[[bytes], str], *,
            override_reason: str | None = None, decision_id: str | None = None,
            time: str | None = None, auto: bool = False) -> tuple[GateResult, str]:
    """Evaluate the gate for a pending request and, if it passes, move the alias under a signed
    decision. With ``override_reason`` (admins only) the alias moves even if rules fail, and
    the decision is marked as a break-glass override."""
    req = promotion_request(tx.session, request_id, reader=tx.actor)
    model = tx.session.get(ModelRow, req.model_id)
    assert model is not None
    if override_reason is not None:
        check_text(override_reason, what="reason", limit=10_000)
        if not override_reason.strip():
            raise BadInputError("a break-glass override needs a reason",
                                hint='--reason "incident 4711: roll back now"')
        ctx.require(tx.session, Permission.ADMIN, model.namespace, "force a promotion")
    elif auto:
        # "The request itself" executes when the policy allows it: only an approver who has
        # approved this request may trigger that, and only if the rule says auto_execute.
        policy, _ = current_policy(tx.session)
        approved = tx.session.execute(select(ApprovalRow).where(
            ApprovalRow.request_id == request_id, ApprovalRow.approver == tx.actor,
            ApprovalRow.decision == "approve")).scalar_one_or_none()
        if not policy.rule_for(model.namespace, model.name, req.alias).auto_execute or \
                approved is None:
            raise access.denied(tx.actor, Permission.EXECUTE_PROMOTION, model.namespace,
                                "auto-execute a promotion",
                                "auto-execution needs a policy with auto_execute: true and "
                                "an approval of this request by the caller",
                                "ask a deployer to run `chainproof execute`")
    else:
        ctx.require(tx.session, Permission.EXECUTE_PROMOTION, model.namespace,
                    "execute promotions")
        reviewed = tx.session.execute(select(ApprovalRow.approver).where(
            ApprovalRow.request_id == request_id, ApprovalRow.approver == tx.actor)
        ).scalar_one_or_none()
        if reviewed is not None:
            raise PolicyViolationError(
                f"{tx.actor} reviewed promotion {request_id} and may not also execute it "
                "(separation of duties)", hint="another deployer executes it")
    if req.status != "pending":
        raise ConflictError(f"promotion request {request_id} is {req.status}, not pending")
    mv = model_version(tx.session, model, req.version)
    if mv.digest != req.digest:
        raise PolicyViolationError(f"request {request_id} was for digest {req.digest}, but the "
                                   f"registered version now says {mv.digest}")
    gate = evaluate_gate(ctx, tx.session, model, req.version, req.alias, req)
    if not gate.passed and override_reason is None:
        failed = [f"{o.rule}: {o.detail}" for o in gate.outcomes if not o.passed]
        error = PolicyViolationError(
            f"promotion {request_id} of {gate.model}@{gate.version} to {gate.alias} is blocked "
            f"by policy v{gate.policy_version}", problems=failed,
            hint="`chainproof policy check` explains each rule; nothing was moved")
        error.gate = gate  # type: ignore[attr-defined]
        raise error
    result = "allowed" if gate.passed else "override"
    decision_id = _decide(ctx, tx, req, model, gate, result, sign, override_reason,
                          decision_id or uuid.uuid4().hex[:16], time or tx.time)
    req.status = "executed"
    _move(tx, model, req.alias, mv, decision_id=decision_id,
          override=result == "override", reason=override_reason)
    return gate, decision_id


def model_summaries(session: Session) -> list[dict[str, Any]]:
    """Every registered model: row id, namespace, name, number of versions, aliases (name →
    version), ``overrides`` (the aliases a break-glass override put where they are)."""
    counts = dict(session.execute(select(ModelVersionRow.model_id, func.count())
                                  .group_by(ModelVersionRow.model_id)).all())
    aliases: dict[int, dict[str, int]] = {}
    overrides: dict[int, list[str]] = {}
    for a in session.execute(select(AliasRow).order_by(AliasRow.alias)).scalars():
        aliases.setdefault(a.model_id, {})[a.alias] = a.version
        if a.override:
            overrides.setdefault(a.model_id, []).append(a.alias)
    return [{"id": m.id, "model": model_label(m.namespace, m.name), "namespace": m.namespace,
             "name": m.name, "versions": int(counts.get(m.id, 0)),
             "aliases": aliases.get(m.id, {}), "overrides": overrides.get(m.id, []),
             "created_at": m.created_at,
             "created_by": m.created_by}
            for m in session.execute(select(ModelRow).order_by(ModelRow.namespace,
                                                               ModelRow.name)).scalars()]


def history(session: Session, model: str) -> list[dict[str, Any]]:
    row = find_model(session, model)
    return [{"alias": h.alias, "from_version": h.from_version, "to_version": h.to_version,
             "moved_at": h.moved_at, "moved_by": h.moved_by, "decision": h.decision_id,
             "override": h.override, "reason": h.reason, "log_seq": h.log_seq}
            for h in session.execute(select(AliasHistoryRow).where(
                AliasHistoryRow.model_id == row.id).order_by(AliasHistoryRow.log_seq)).scalars()]


def versions(session: Session, model: str) -> dict[str, Any]:
    row = find_model(session, model)
    aliases = {a.alias: {"version": a.version, "override": a.override,
                         "decision": a.decision_id, "moved_at": a.moved_at}
               for a in session.execute(select(AliasRow).where(
                   AliasRow.model_id == row.id)).scalars()}
    return {"id": row.id, "model": model_label(row.namespace, row.name), "aliases": aliases,
            "versions": [{"version": v.version, "asset": asset_ref_of(session, v),
                          "digest": v.digest, "created_at": v.created_at,
                          "created_by": v.created_by,
                          "aliases": sorted(a for a, x in aliases.items()
                                            if x["version"] == v.version)}
                         for v in session.execute(select(ModelVersionRow).where(
                             ModelVersionRow.model_id == row.id)
                             .order_by(ModelVersionRow.version)).scalars()]}


def requests(session: Session, status: str | None = None) -> list[dict[str, Any]]:
    query = select(PromotionRequestRow, ModelRow).join(
        ModelRow, ModelRow.id == PromotionRequestRow.model_id).order_by(
        PromotionRequestRow.requested_at)
    if status:
        query = query.where(PromotionRequestRow.status == status)
    out = []
    for req, model in session.execute(query).all():
        reviews = [{"approver": a.approver, "decision": a.decision, "reason": a.reason}
                   for a in session.execute(select(ApprovalRow).where(
                       ApprovalRow.request_id == req.id)).scalars()]
        out.append({"id": req.id, "model": model_label(model.namespace, model.name),
                    "version": req.version, "alias": req.alias, "digest": req.digest,
                    "status": req.status, "requested_by": req.requested_by,
                    "requested_at": req.requested_at, "reviews": reviews})
    return out


def decision_for_alias(session: Session, model: str, alias: str) -> dict[str, Any] | None:
    """The decision behind an alias's current position, with its signed statement."""
    _, target = resolve_alias(session, model, alias)
    if target.decision_id is None:
        return None
    row = session.get(DecisionRow, target.decision_id)
    if row is None:
        return {"id": target.decision_id, "missing": True}
    env = Envelope.from_json(row.envelope)
    return {"id": row.id, "result": row.result, "created_by": row.created_by,
            "created_at": row.created_at, "statement": orjson.loads(env.payload)}


def policy_text(policy: PromotionPolicy, document: str | None) -> str:
    if document is not None:
        return document
    return ("# built-in default; protected aliases never go below this floor, whatever a\n"
            "# policy says (lower is break-glass: promote --force)\n") + yaml.safe_dump(
        {"protected_aliases": list(policy.protected_aliases),
         "rules": [{"match": {"alias": a}, "approvals": {"min": 1, "role": "approver",
                                                         "independent": True},
                    "provenance": True, "evidence": ["scan"]}
                   for a in policy.protected_aliases]}, sort_keys=False)
