"""chainproof's operations. Each write is one database transaction that also appends its audit
log entries and signs a checkpoint (I3, I7); blobs are written to the object store first, under
their digest, so a crash leaves at worst an unreferenced blob and never a record without bytes.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import rfc8785
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from chainproof import capture, catalog, identities, provenance, signatures
from chainproof.access import WRITE_PERMISSION, Permission, Role, grants
from chainproof.attest import build_provenance, key_id, load_public_key
from chainproof.catalog import DIRECTORY_MEDIA_TYPE, Staged, media_type_for
from chainproof.context import Context
from chainproof.db import engine as db_engine
from chainproof.db.tables import (
    AssetRow,
    AssetVersionRow,
    AttestationRow,
    CheckpointRow,
    IdentityRow,
    KeyRow,
    LogEntryRow,
    ModelRow,
    NamespaceRow,
    PromotionRequestRow,
    StepInputRow,
    StepOutputRow,
    StepRow,
    TokenRow,
)
from chainproof.digest import hash_bytes
from chainproof.errors import (
    BadInputError,
    ConflictError,
    DigestMismatchError,
    NotFoundError,
    StepFailedError,
    VerificationError,
    WorkspaceError,
)
from chainproof.ledger import audit, checkpoint
from chainproof.ledger.log import prove_consistency, prove_inclusion
from chainproof.ledger.witness import CheckpointMemory, default_checkpoint_folder
from chainproof.lineage import queries
from chainproof.lineage.explain import explain as explain_graphs
from chainproof.lineage.graph import LineageGraph, step_dict, version_dict
from chainproof.records.assets import AssetKind, AssetVersion
from chainproof.records.log import Action
from chainproof.records.names import (
    DEFAULT_NAMESPACE,
    Ref,
    check_alias,
    check_kind,
    check_name,
    check_text,
    is_version,
    parse_ref,
)
from chainproof.records.steps import OutputSpec, Step, StepStatus, now
from chainproof.registry import operations as registry
from chainproof.registry import tags as model_tags
from chainproof.serve.load import load_verified
from chainproof.signatures import RemoteSignature, SignFn, prepare_only, prepared
from chainproof.store import ObjectStore, open_store
from chainproof.transaction import Transaction
from chainproof.workflows import Workflows
from chainproof.workspace import Settings, create_workspace, load_settings

__all__ = ["DIRECTORY_MEDIA_TYPE", "AddResult", "Chainproof", "RegisteredVersion",
           "RemoteSignature", "SignFn", "StepResult", "StepSubmission", "StoredOutput",
           "Transaction", "media_type_for"]

#: A step output whose bytes are already in the object store (what a client submits).
StoredOutput = Staged


def canonical_json(value: Any) -> str:
    return rfc8785.dumps(value).decode()


@dataclass(frozen=True)
class StepSubmission:
    """Everything a step record holds; built from local paths, or sent by a remote client."""

    id: str
    kind: str
    namespace: str
    inputs: tuple[str, ...]
    outputs: tuple[StoredOutput, ...]
    command: tuple[str, ...]
    parameters: dict[str, Any]
    started_at: str
    ended_at: str
    environment: dict[str, Any]
    code_revision: dict[str, Any]
    error: str | None = None


#: Deepest nesting of a step's free-form values (the wire schema applies the same limit).
MAX_VALUE_DEPTH = 32


def _depth(value: Any, limit: int, level: int = 0) -> int:
    if level > limit:
        return level
    if isinstance(value, dict):
        return max((_depth(v, limit, level + 1) for v in value.values()), default=level)
    if isinstance(value, list | tuple):
        return max((_depth(v, limit, level + 1) for v in value), default=level)
    return level


def _require_printable(value: Any, what: str) -> None:
    """Every string (keys too) in a JSON value is printable text: no terminal escapes in what
    ``explain`` and ``step show`` print for auditors (BadInputError naming where)."""
    if isinstance(value, str):
        check_text(value, what=f"a text in {what}", limit=100_000)
    elif isinstance(value, dict):
        for key, item in value.items():
            _require_printable(key, what)
            _require_printable(item, f"{what}.{key}" if isinstance(key, str) else what)
    elif isinstance(value, list | tuple):
        for item in value:
            _require_printable(item, what)


def _require_canonical(value: Any, what: str) -> None:
    """Refuse values RFC 8785 cannot represent exactly (non-finite floats, integers beyond
    ±2^53): they could not be signed or logged byte-for-byte; and values nested deeper than
    :data:`MAX_VALUE_DEPTH` (every reader of the log must be able to parse them)."""
    if _depth(value, MAX_VALUE_DEPTH) > MAX_VALUE_DEPTH:
        raise BadInputError(f"step {what} is nested more than {MAX_VALUE_DEPTH} levels deep",
                            hint="flatten the value")
    try:
        rfc8785.dumps(list(value) if isinstance(value, tuple) else value)
    except (rfc8785.CanonicalizationError, TypeError) as exc:
        raise BadInputError(f"step {what} cannot be recorded as canonical JSON: {exc}",
                            hint="use finite numbers, integers within ±2^53 (or strings for "
                                 "larger ones such as 64-bit seeds), and JSON types only"
                            ) from None


def _signed_decision(sign: RemoteSignature) -> tuple[str, str, str]:
    decision_id, time, request_id = registry.decision_fields(sign.envelope)
    try:
        age = abs(datetime.now(UTC) - datetime.fromisoformat(time))
    except ValueError:
        raise BadInputError(f"the signed decision's time {time!r} is not a timestamp") from None
    if age > timedelta(minutes=10):
        raise BadInputError("the signed decision was prepared more than 10 minutes ago",
                            hint="prepare again and sign the new statement")
    return decision_id, time, request_id


@dataclass
class AddResult:
    version: AssetVersion
    created: bool


@dataclass(frozen=True)
class RegisteredVersion:
    """A model version registered from bytes, and the model asset version that holds them."""

    model: str
    version: int
    asset: AssetVersion
    asset_created: bool


@dataclass
class StepResult:
    step: Step
    outputs: list[AssetVersion] = field(default_factory=list)


def _with_logged_origin(settings: Settings, engine: Engine) -> Settings:
    """``settings`` with the origin the log was started with (its first entry): a host that
    has only CHAINPROOF_DB / CHAINPROOF_STORE / CHAINPROOF_LOG_KEY signs checkpoints for the
    same log. WorkspaceError when a workspace's config names another origin."""
    with Session(engine) as session:
        body = session.execute(select(LogEntryRow.body).where(LogEntryRow.seq == 0)
                               ).scalar_one_or_none()
    if body is None:
        return settings
    logged = json.loads(bytes(body)).get("detail", {}).get("origin")
    if not isinstance(logged, str) or logged == settings.origin:
        return settings
    if settings.workspace is not None:
        raise WorkspaceError(
            f"this workspace's config names the log origin {settings.origin!r}, but its "
            f"database's log was started as {logged!r}",
            hint="point CHAINPROOF_DB at the workspace's own database, or restore its "
                 "config.json")
    return dataclasses.replace(settings, origin=logged)


class Chainproof(Workflows):
    """chainproof's operations over an open workspace (embedded mode): the facade composing
    the capabilities. Each write is one transaction that also appends its audit log entries
    and signs a checkpoint (I3, I7). :class:`chainproof.client.RemoteChainproof` implements
    the same :class:`chainproof.surface.Operations` over HTTP."""

    def __init__(self, settings: Settings, engine: Engine, store: ObjectStore) -> None:
        self.ctx = Context(settings, engine, store)
        self._stored_environment: str | None = None

    # The context's parts, as attributes of the facade.
    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    @property
    def engine(self) -> Engine:
        return self.ctx.engine

    @property
    def store(self) -> ObjectStore:
        return self.ctx.store

    @property
    def identity(self) -> str:
        return self.ctx.identity

    # --- opening -------------------------------------------------------------------------------

    @classmethod
    def open(cls, settings: Settings | None = None, *, check: bool = True) -> Chainproof:
        settings = settings or load_settings()
        engine = db_engine.open_engine(settings.db_url)
        if check:
            db_engine.check_schema(engine)
            settings = _with_logged_origin(settings, engine)
        return cls(settings, engine, open_store(settings.store))

    def check_server_ready(self) -> None:
        """What a server host needs, checked before it serves: the log's private key (it signs
        every checkpoint), the object store (bucket and credentials) and, if log.pub is at
        hand, that it is that key's public half.
        WorkspaceError naming what is missing or wrong."""
        derived = self.ctx.checkpoint_signer.public_pem  # loads the key or raises
        self.store.check_reachable()
        if self.settings.log_public_path.is_file():
            from cryptography.hazmat.primitives import serialization

            on_disk = serialization.load_pem_public_key(
                self.settings.log_public_path.read_bytes())
            if on_disk.public_bytes(serialization.Encoding.PEM,
                                    serialization.PublicFormat.SubjectPublicKeyInfo) != derived:
                raise WorkspaceError(
                    f"{self.settings.log_public_path} is not the public half of the log key "
                    f"{self.settings.log_key_path}",
                    hint="use the log.pub made with this key, or unset CHAINPROOF_LOG_PUBKEY")

    @classmethod
    def init(cls, folder: Path, *, db: str | None = None, store: str | None = None,
             identity: str | None = None) -> Chainproof:
        """Create a workspace: config, checkpoint key pair, database schema, first log entry.
        A remote object store (``s3://…``) is checked first (bucket, credentials): nothing is
        written if it cannot be used."""
        if store is not None and "://" in store:
            open_store(store).check_reachable()
        root = create_workspace(folder, db=db, store=store)
        settings = load_settings(folder, identity=identity)
        audit.create_log_key(settings.log_key_path, settings.log_public_path, settings.origin)
        engine = db_engine.open_engine(settings.db_url)
        db_engine.upgrade(engine)
        if settings.store.startswith("/") or "://" not in settings.store:
            Path(settings.store).mkdir(parents=True, exist_ok=True)
        cp = cls(settings, engine, open_store(settings.store))
        key_path = settings.signing_key_path
        if key_path is not None and not key_path.exists():
            identities.generate_key_file(key_path)
        with cp.transaction() as tx:
            if tx.appender.size == 0:
                tx.log(Action.WORKSPACE_INIT, f"workspace:{root}",
                       detail={"origin": settings.origin})
            if tx.session.get(IdentityRow, cp.identity) is None:
                identities.create_identity(tx, cp.identity, "person")
                # Bootstrap: whoever creates the workspace holds every role everywhere; they
                # grant narrower roles to the pipeline's other identities.
                for role in Role:
                    grants.grant(tx, cp.identity, role.value, grants.GLOBAL)
            if key_path is not None:
                pem = identities.public_key_pem(key_path)
                if tx.session.get(KeyRow, key_id(load_public_key(pem))) is None:
                    identities.register_key(tx, cp.identity, pem)
        return cp

    def acting_as(self, identity: str, *, signing_key_path: Path | None = None) -> Chainproof:
        """The same database, store and checkpoint key, acting as ``identity`` (the team server
        makes one per request). Shares the engine's pool and the loaded checkpoint key, so it
        costs no I/O; ``close`` belongs to the original."""
        acting = Chainproof.__new__(Chainproof)
        acting.ctx = self.ctx.acting_as(identity, signing_key_path=signing_key_path)
        acting._stored_environment = None
        return acting

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Chainproof:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transactions and permissions (the context's) ---------------------------------------------

    @property
    def checkpoint_signer(self) -> audit.LogSigner:
        return self.ctx.checkpoint_signer

    @property
    def signer(self) -> Any:
        """This identity's signing key (from a file it controls; never from the database)."""
        return self.ctx.signer

    def transaction(self, actor: str | None = None) -> Any:
        """One write transaction (see :meth:`chainproof.context.Context.transaction`)."""
        return self.ctx.transaction(actor)

    def session(self) -> Any:
        """A read session (see :meth:`chainproof.context.Context.session`)."""
        return self.ctx.session()

    def require(self, session: Session, permission: Permission, namespace: str,
                what: str) -> None:
        self.ctx.require(session, permission, namespace, what)

    def check(self, permission: Permission, namespace: str, what: str) -> None:
        """Refuse (and log the refusal) unless the identity holds ``permission`` there."""
        self.ctx.check(permission, namespace, what)

    def check_read(self, namespace: str, what: str) -> None:
        """Refuse (and log) a read outside the identity's grants."""
        self.ctx.check(Permission.READ, namespace, what)

    def _read_check(self, namespace: str, what: str) -> None:
        if not self.ctx.allowed(Permission.READ, namespace):
            self.ctx.check_read(namespace, what)

    def _local_signature(self, payload: bytes) -> str:
        return signatures.local_signature(self.signer)(payload)

    # --- resolving -------------------------------------------------------------------------------

    def resolve(self, ref: str | Ref, *, namespace: str | None = None) -> AssetVersion:
        """The asset version ``ref`` names (latest if it names none); needs read permission
        in its namespace (unknown and forbidden answer alike)."""
        parsed = parse_ref(ref, namespace=namespace) if isinstance(ref, str) else ref
        self._read_check(parsed.namespace, f"read {parsed}")
        with self.session() as session:
            return catalog.resolve(session, parsed)

    # --- adding assets ---------------------------------------------------------------------------

    def add(self, path: Path | str, *, kind: str | AssetKind, name: str,
            namespace: str = DEFAULT_NAMESPACE, media_type: str | None = None) -> AddResult:
        """Register the bytes at ``path`` as a new version of ``name`` (or return the existing
        version holding exactly these bytes)."""
        path = Path(path)
        asset_kind = AssetKind.parse(kind) if isinstance(kind, str) else kind
        check_name(name)
        check_name(namespace, what="namespace")
        # Permission first: a refused add stores nothing and learns nothing.
        self.check(WRITE_PERMISSION[asset_kind], namespace, f"add {asset_kind.value} assets")
        if not path.exists():
            raise BadInputError(f"no such file or directory: {path}")
        digest, size, is_dir = catalog.stage(self.store, path)
        staged = Staged(asset_kind, name, namespace, digest, size, is_dir,
                        media_type or media_type_for(path, is_dir))
        with self.transaction() as tx:
            self.require(tx.session, WRITE_PERMISSION[asset_kind], namespace,
                         f"add {asset_kind.value} assets")
            version, created, _ = catalog.register(tx, staged, namespace, producer=None)
        return AddResult(version, created)

    def add_stored(self, *, digest: str, kind: str | AssetKind, name: str, namespace: str,
                   media_type: str, is_directory: bool,
                   proven: AbstractSet[str] = frozenset()) -> AddResult:
        """Register bytes already in the store (the team server's ``add``): they are re-hashed
        first; a directory's manifest and every file must be there. The caller must have
        ``proven`` it holds them (uploaded, with a receipt) or be able to read them (I8)."""
        asset_kind = AssetKind.parse(kind) if isinstance(kind, str) else kind
        check_name(name)
        check_name(namespace, what="namespace")
        # The permission answer comes first and does not depend on whether the bytes exist.
        self.check(WRITE_PERMISSION[asset_kind], namespace, f"add {asset_kind.value} assets")
        with self.session() as session:
            catalog.check_digest_claim(self.ctx, session, digest, is_directory, proven)
        size = catalog.uploaded_size(self.store, digest, is_directory)
        staged = Staged(asset_kind, name, namespace, digest, size, is_directory, media_type)
        with self.transaction() as tx:
            self.require(tx.session, WRITE_PERMISSION[asset_kind], namespace,
                         f"add {asset_kind.value} assets")
            version, created, _ = catalog.register(tx, staged, namespace, producer=None)
        return AddResult(version, created)

    def check_blob_readable(self, digest: str, *, within: str | None = None) -> None:
        """Refuse (NotFoundError) unless the identity may read these bytes; see
        :func:`chainproof.catalog.check_blob_readable`."""
        catalog.check_blob_readable(self.ctx, digest, within=within)

    # --- steps -----------------------------------------------------------------------------------

    def record_step(self, *, kind: str, inputs: Sequence[str | Ref], outputs: Sequence[OutputSpec],
                    command: Sequence[str] = (), parameters: dict[str, Any] | None = None,
                    started_at: str, ended_at: str | None = None, error: str | None = None,
                    namespace: str = DEFAULT_NAMESPACE, cwd: Path | None = None) -> StepResult:
        """Record one execution. With ``error`` set the step is recorded as failed and none of
        its outputs are registered."""
        check_kind(kind, what="step kind")
        check_name(namespace, what="namespace")
        if outputs and error is None:
            self.signer  # noqa: B018 - fail before any work if this identity cannot sign
        stored: list[StoredOutput] = []
        if error is None:
            for spec in outputs:
                if not spec.path.exists():
                    error = f"output {spec.path} was not produced by the step"
                    break
            if error is None:
                for spec in outputs:
                    digest, size, is_dir = catalog.stage(self.store, spec.path)
                    stored.append(StoredOutput(spec.kind, spec.name, spec.namespace, digest, size,
                                               is_dir, media_type_for(spec.path, is_dir)))
        submission = StepSubmission(
            id=uuid.uuid4().hex, kind=kind, namespace=namespace,
            inputs=tuple(str(r) for r in inputs), outputs=tuple(stored),
            command=tuple(command), parameters=dict(parameters or {}), started_at=started_at,
            ended_at=ended_at or now(), environment=self._environment(),
            code_revision=capture.code_revision(cwd).to_dict(), error=error)
        return self.submit_step(submission, sign=self._local_signature)

    def submit_step(self, sub: StepSubmission, *, sign: SignFn,
                    verify_stored: bool = False,
                    proven: AbstractSet[str] = frozenset()) -> StepResult:
        """Record a step whose outputs are already in the object store. ``sign`` turns the
        provenance statement into a DSSE envelope: this identity's key locally, or a client's
        pre-signed envelope (see :meth:`remote_signature`). ``verify_stored`` (a client's
        submission): each output's bytes must be ``proven`` (uploaded by the caller) or
        readable by it, and are re-hashed — after the permission checks, so an outsider costs
        nothing and learns nothing."""
        check_kind(sub.kind, what="step kind")
        check_name(sub.namespace, what="namespace")
        for what, value in (("parameters", sub.parameters), ("environment", sub.environment),
                            ("code_revision", sub.code_revision), ("command", sub.command)):
            _require_canonical(value, what)
        for word in sub.command:
            check_text(word, what="a word of the step's command", limit=10_000)
        for what, value in (("parameters", sub.parameters), ("environment", sub.environment),
                            ("code_revision", sub.code_revision)):
            _require_printable(value, f"step {what}")
        if sub.error is not None:
            check_text(sub.error, what="the step's error", limit=10_000)
        latest = datetime.now(UTC) + timedelta(minutes=10)  # clock skew, never the future
        for what, stamp in (("started_at", sub.started_at), ("ended_at", sub.ended_at)):
            try:
                moment = datetime.fromisoformat(stamp)
            except (TypeError, ValueError):
                raise BadInputError(f"step {what} {stamp!r} is not an RFC 3339 time",
                                    hint="e.g. 2026-11-30T12:00:00.000000Z") from None
            if (moment if moment.tzinfo else moment.replace(tzinfo=UTC)) > latest:
                raise BadInputError(f"step {what} {stamp} is in the future",
                                    hint="send the times the step really ran (UTC); the log's "
                                         "own time orders evidence, not these")
        error = sub.error
        outputs = sub.outputs if error is None else ()
        if sub.kind == "train" and any(out.kind is AssetKind.METRICS for out in outputs):
            # The gate counts metrics only from an `evaluate` step that consumes the model (a
            # trainer does not grade its own work): a train step's metrics would never count,
            # so recording them as such is refused rather than silently ignored.
            raise BadInputError(
                "a train step may not output a metrics asset: promotion metrics count only "
                "from an `evaluate` step that consumes the model",
                hint="record the model's metrics in an evaluate step (chainproof run --step "
                     "evaluate --input MODEL@V --output metrics.json:metrics:NAME), or keep "
                     "training curves as a `report` output")
        # Permission before any work or write: the step's own namespace, and every namespace
        # it writes into.
        self._check_step_writer(sub.namespace)
        for out in outputs:
            self.check(WRITE_PERMISSION[out.kind], out.namespace or sub.namespace,
                       f"write {out.kind.value} outputs")
        if verify_stored:
            with self.session() as session:
                for out in outputs:
                    catalog.check_digest_claim(self.ctx, session, out.digest, out.is_directory,
                                               proven)
            for out in outputs:
                self._verify_stored_output(out)
        status = StepStatus.FAILED if error else StepStatus.SUCCEEDED
        with self.transaction() as tx:
            input_rows: list[tuple[AssetVersionRow, AssetRow]] = []
            for ref in sub.inputs:
                parsed = parse_ref(ref, namespace=sub.namespace)
                self.require(tx.session, Permission.READ, parsed.namespace, f"read {parsed}")
                input_rows.append(catalog.find(tx.session, parsed))
            for out in outputs:
                self.require(tx.session, WRITE_PERMISSION[out.kind],
                             out.namespace or sub.namespace, f"write {out.kind.value} outputs")
            if tx.session.get(StepRow, sub.id) is not None:
                raise ConflictError(f"step {sub.id} was already recorded",
                                    hint="each step submission needs a fresh id")
            step_row = StepRow(id=sub.id, namespace=sub.namespace, kind=sub.kind,
                               identity=tx.actor, status=status.value,
                               command=canonical_json(list(sub.command)),
                               parameters=canonical_json(sub.parameters),
                               started_at=sub.started_at, ended_at=sub.ended_at,
                               environment=canonical_json(sub.environment),
                               code_revision=canonical_json(sub.code_revision), error=error,
                               log_seq=tx.appender.size)
            tx.session.add(step_row)
            tx.session.flush()
            seen: set[int] = set()
            input_refs = []
            for row, asset in input_rows:
                if row.id in seen:
                    continue
                seen.add(row.id)
                tx.session.add(StepInputRow(step_id=sub.id, version_id=row.id))
                input_refs.append({"ref": queries.version_from_row(row, asset).ref,
                                   "digest": row.digest})
            produced: list[AssetVersion] = []
            output_refs: list[dict[str, Any]] = []
            for out in outputs:
                version, created, version_id = catalog.register(
                    tx, out, out.namespace or sub.namespace, producer=sub.id)
                produced.append(version)
                output_refs.append({"ref": version.ref, "digest": version.digest,
                                    "reused": not created})
                tx.session.add(StepOutputRow(step_id=sub.id, version_id=version_id,
                                             reused=not created))
            if produced:
                self._attest_step(tx, sub, inputs=input_refs, outputs=produced, sign=sign)
            # The outputs' entries come first, then the step's, which names them all.
            entry = tx.log(
                Action.STEP_RECORD, f"step:{sub.id}",
                digests={o["ref"]: o["digest"] for o in output_refs},
                detail={"id": sub.id, "namespace": sub.namespace, "kind": sub.kind,
                        "identity": tx.actor, "status": status.value,
                        "command": list(sub.command), "parameters": sub.parameters,
                        "started_at": sub.started_at, "ended_at": sub.ended_at,
                        "environment": sub.environment, "code_revision": sub.code_revision,
                        "error": error, "inputs": input_refs, "outputs": output_refs})
            step_row.log_seq = entry.seq
        step = Step(id=sub.id, namespace=sub.namespace, kind=sub.kind, identity=self.identity,
                    status=status, command=tuple(sub.command), started_at=sub.started_at,
                    ended_at=sub.ended_at, parameters=sub.parameters,
                    environment=sub.environment, code_revision=sub.code_revision, error=error,
                    inputs=tuple(i["ref"] for i in input_refs),
                    outputs=tuple(v.ref for v in produced))
        if error:
            raise StepFailedError(f"step {sub.kind} ({sub.id[:12]}) failed: {error}",
                                  hint="the failure is recorded; no outputs were registered")
        return StepResult(step, produced)

    def _check_step_writer(self, namespace: str) -> None:
        """A step is recorded in a namespace only by an identity that may write something
        there (any write permission); refused and logged otherwise."""
        with self.session() as session:
            held = grants.permitted(session, self.identity, namespace)
        if held & set(WRITE_PERMISSION.values()):
            return
        self.check(Permission.WRITE_MODEL, namespace, "record steps")

    def prepare_step(self, sub: StepSubmission,
                     proven: AbstractSet[str] = frozenset()) -> bytes | None:
        """The exact provenance statement :meth:`submit_step` would ask the client to sign
        (nothing is written). None when the step has nothing to attest."""
        return prepared(lambda: self.submit_step(sub, sign=prepare_only, verify_stored=True,
                                                 proven=proven))

    @staticmethod
    def remote_signature(envelope: str) -> RemoteSignature:
        return RemoteSignature(envelope)

    def _verify_stored_output(self, out: StoredOutput) -> None:
        version = AssetVersion(namespace=out.namespace or DEFAULT_NAMESPACE, name=out.name,
                               kind=out.kind, version=0, digest=out.digest, size=out.size,
                               media_type=out.media_type, is_directory=out.is_directory,
                               created_at="", created_by="")
        try:
            size = catalog.verify_stored(self.store, version.digest, version.is_directory)
        except NotFoundError:
            raise BadInputError(f"output {out.name}: no blob {out.digest} in the store",
                                hint="upload the bytes first") from None
        if size != out.size:
            raise BadInputError(f"output {out.name}: declared size {out.size} but the stored "
                                f"bytes are {size} bytes", hint="send the real size")

    def _attest_step(self, tx: Transaction, sub: StepSubmission, *,
                     inputs: list[dict[str, Any]], outputs: list[AssetVersion],
                     sign: SignFn) -> None:
        """Sign an in-toto/SLSA provenance statement for the step, in its own transaction."""
        revision = sub.code_revision
        code = None
        if revision.get("commit"):
            code = {"commit": revision["commit"], "uri": revision.get("repository"),
                    "dirty": revision.get("dirty"), "diff_digest": revision.get("diff_digest")}
        statement = build_provenance(
            step_kind=sub.kind, builder_id=identities.builder_id(tx.actor),
            invocation_id=sub.id, started_at=datetime.fromisoformat(sub.started_at),
            finished_at=datetime.fromisoformat(sub.ended_at), command=list(sub.command),
            parameters=sub.parameters,
            inputs=[(_full_ref(i["ref"]), i["digest"].split(":", 1)[1], None) for i in inputs],
            code_revision=code, environment=sub.environment,
            outputs=sorted({(_full_ref(v.ref), v.hexdigest) for v in outputs}))
        payload = statement.to_json_bytes()
        envelope = sign(payload)
        keyid = signatures.accept_signature(tx, envelope, payload)
        payload_digest = "sha256:" + hash_bytes(payload)
        tx.session.add(AttestationRow(step_id=sub.id, predicate_type=statement.predicate_type,
                                      envelope=envelope, payload_digest=payload_digest,
                                      keyid=keyid, created_at=tx.time,
                                      created_by=tx.actor, log_seq=tx.appender.size))
        tx.log(Action.ATTESTATION_ADD, f"attestation:step:{sub.id}",
               digests={"payload": payload_digest},
               detail={"step_id": sub.id, "predicate_type": statement.predicate_type,
                       "payload_digest": payload_digest, "keyid": keyid,
                       "envelope_digest": "sha256:" + hash_bytes(envelope.encode()),
                       "created_at": tx.time, "created_by": tx.actor})

    def _environment(self) -> dict[str, Any]:
        env = capture.environment()
        if self._stored_environment != env.distributions_digest:
            self.store.put_bytes(capture.distributions_blob(env.distributions))
            self._stored_environment = env.distributions_digest
        return env.summary()

    # --- reading ---------------------------------------------------------------------------------

    def materialize(self, version: AssetVersion | str, dest: Path | None = None) -> Path:
        """A local path holding exactly the version's bytes, verified against its digest."""
        if isinstance(version, str):
            version = self.resolve(version)
        return catalog.materialize(self.ctx, version, dest)

    def verify_blob(self, version: AssetVersion) -> None:
        """Re-hash the stored bytes of one version (and, for a directory, every file)."""
        catalog.verify_blob(self.store, version)

    def verify(self, ref: str | None = None) -> list[AssetVersion]:
        """Re-hash stored bytes of one version or of all; raise listing every mismatch."""
        versions = [self.resolve(ref)] if ref else self.all_versions()
        problems = []
        for version in versions:
            try:
                self.verify_blob(version)
            except (VerificationError, NotFoundError) as exc:
                problems.append(f"{version.ref}: {exc.message}")
        if problems:
            raise DigestMismatchError(f"{len(problems)} of {len(versions)} versions failed "
                                      "verification", problems=problems,
                                      hint="restore the blobs from a backup; never re-add "
                                           "different bytes under the same version")
        return versions

    def all_versions(self, *, namespace: str | None = None,
                     kind: str | None = None) -> list[AssetVersion]:
        with self.session() as session:
            query = select(AssetVersionRow, AssetRow).join(
                AssetRow, AssetRow.id == AssetVersionRow.asset_id)
            if namespace:
                query = query.where(AssetRow.namespace == namespace)
            if kind:
                query = query.where(AssetRow.kind == AssetKind.parse(kind).value)
            rows = session.execute(query.order_by(AssetRow.namespace, AssetRow.name,
                                                  AssetVersionRow.version)).all()
            readable = self._readable(session, {a.namespace for _, a in rows})
            # Only what the caller may read (I8): another namespace's rows are not listed.
            return [queries.version_from_row(v, a) for v, a in rows if a.namespace in readable]

    def _readable(self, session: Session, namespaces: set[str]) -> set[str]:
        return {ns for ns in namespaces
                if Permission.READ in grants.permitted(session, self.identity, ns)}

    def _audits_everything(self, session: Session) -> bool:
        return Permission.AUDIT in grants.permitted(session, self.identity, grants.GLOBAL)

    def show(self, ref: str) -> dict[str, Any]:
        parsed = parse_ref(ref)
        self._read_check(parsed.namespace, f"read {parsed}")
        with self.session() as session:
            row, asset = catalog.find(session, parsed)
            version = queries.version_from_row(row, asset)
            all_versions = session.execute(
                select(AssetVersionRow).where(AssetVersionRow.asset_id == asset.id)
                .order_by(AssetVersionRow.version)).scalars().all()
            consumer_rows = session.execute(
                select(StepInputRow.step_id, StepRow.namespace)
                .join(StepRow, StepRow.id == StepInputRow.step_id)
                .where(StepInputRow.version_id == row.id)).all()
            # A retrained step whose output is byte-identical records that same version as its
            # output: every step that produced these bytes is listed, the first as `producer`.
            producer_rows = session.execute(
                select(StepOutputRow.step_id, StepRow.namespace)
                .join(StepRow, StepRow.id == StepOutputRow.step_id)
                .where(StepOutputRow.version_id == row.id).order_by(StepRow.log_seq)).all()
            # Only steps the caller may read are named (I8): a step of another namespace that
            # consumed these bytes stays unnamed and uncounted.
            readable = self._readable(session, {ns for _, ns in consumer_rows + producer_rows})
            consumers = [sid for sid, ns in consumer_rows if ns in readable]
            producers = [sid for sid, ns in producer_rows if ns in readable]
            first = row.producer_step
            producer = (queries.steps_with_links(session, [first]).get(first)
                        if first is not None and first in producers else None)
            return {
                "version": version_dict(version),
                "producer": step_dict(producer) if producer else None,
                "consumed_by": sorted(consumers),
                "produced_by": list(producers),
                "versions": [{"version": v.version, "digest": v.digest, "size": v.size,
                              "created_at": v.created_at, "created_by": v.created_by}
                             for v in all_versions],
            }

    def lineage(self, ref: str, *, direction: str = "upstream") -> LineageGraph:
        parsed = parse_ref(ref)
        self._read_check(parsed.namespace, f"read the lineage of {parsed}")
        with self.session() as session:
            graph = catalog.lineage(session, parsed, direction, every_producer=True)
            return self._redacted(session, graph)

    def _redacted(self, session: Session, graph: LineageGraph) -> LineageGraph:
        """The graph without what the caller may not read (I8): versions and steps of other
        namespaces are left out, and so are references to them in the steps it keeps."""
        namespaces = ({v.namespace for v in graph.versions.values()}
                      | {s.namespace for s in graph.steps.values()})
        readable = self._readable(session, namespaces)
        if readable == namespaces:
            return graph

        def visible(ref: str) -> bool:
            return parse_ref(ref).namespace in readable

        kept = LineageGraph(root=graph.root, direction=graph.direction)
        kept.versions = {r: v for r, v in graph.versions.items() if v.namespace in readable}
        kept.steps = {i: dataclasses.replace(
            s, inputs=tuple(r for r in s.inputs if visible(r)),
            outputs=tuple(r for r in s.outputs if visible(r)))
            for i, s in graph.steps.items() if s.namespace in readable}
        kept.edges = {(a, b) for a, b in graph.edges
                      if (a in kept.versions or a in kept.steps)
                      and (b in kept.versions or b in kept.steps)}
        kept.reproduced = graph.reproduced & kept.edges
        kept.hidden = (len(graph.versions) - len(kept.versions)
                       + len(graph.steps) - len(kept.steps))
        return kept

    def explain(self, ref: str, *, verify: bool = True) -> dict[str, Any]:
        """Explain ``NAME@VERSION``, or a registered ``MODEL@ALIAS`` (then also which decision,
        rules and approvals justified the alias's position)."""
        model, at, tail = ref.rpartition("@")
        if at and tail and not is_version(tail):
            return self.explain_alias(model, tail, verify=verify)
        up = self.lineage(ref)
        with self.session() as session:
            # validations of its data: downstream of the data, so not in `up` (readable only)
            about = catalog.reports_about(session, [
                parse_ref(v.ref) for v in up.versions.values()
                if v.kind in (AssetKind.DATASET, AssetKind.LABELS, AssetKind.FEATURES)])
            readable = self._readable(session, {v.namespace for v in about})
        return explain_graphs(self.store, up, self.lineage(ref, direction="downstream"),
                              self.verify_blob if verify else None,
                              [v for v in about if v.namespace in readable])

    def explain_alias(self, model: str, alias: str, *, verify: bool = True) -> dict[str, Any]:
        target = self.resolve_alias(model, alias)
        answer = self.explain(target["asset"], verify=verify)
        with self.session() as session:
            decision = registry.decision_for_alias(session, model, alias)
            model_id = registry.find_model(session, model).id
            notes = model_tags.of_models(session, [model_id])
        promotion: dict[str, Any] = {"alias": alias, "version": target["version"],
                                     "moved_by": target["moved_by"],
                                     "moved_at": target["moved_at"],
                                     "override": target["override"], "decision": None}
        if decision is not None and not decision.get("missing"):
            predicate = decision["statement"]["predicate"]
            promotion.update({"decision": decision["id"], "result": decision["result"],
                              "signed_by": decision["created_by"],
                              "rules": predicate.get("rules", []),
                              "approvals": predicate.get("approvals", []),
                              "reason": predicate.get("reason"),
                              "policy_version": predicate.get("policy_version")})
        elif decision is not None:
            promotion["decision"] = f"{decision['id']} (MISSING: the decision record is gone)"
        answer["promotion"] = promotion
        answer["registered_as"] = f"{target['model']}@{target['version']}"
        # annotations for people (never evidence): the model's and this version's
        answer["model_annotations"] = model_tags.split(notes.get((model_id, 0)))
        answer["version_annotations"] = model_tags.split(
            notes.get((model_id, int(target["version"]))))
        if target["override"]:
            answer["verified"] = False if answer["verified"] is False else answer["verified"]
        return answer

    def check_may_upload(self) -> None:
        """Refuse (and log) an upload by an identity with no role that writes assets in any
        namespace: it could never bind the bytes, so the server stores none of them."""
        with self.session() as session:
            if grants.may_upload(session, self.identity):
                return
        with self.transaction():
            raise grants.denied(
                self.identity, Permission.WRITE_DATA, grants.GLOBAL, "upload bytes",
                f"{self.identity} holds no role that writes assets in any namespace, so it may "
                "not upload bytes",
                "an admin can grant a writing role (data-writer, feature-writer, trainer, "
                "evaluator): see docs/access.md")

    def step_list(self, *, namespace: str | None = None, kind: str | None = None,
                  identity: str | None = None, limit: int = 100) -> list[Step]:
        """Recorded steps the caller may read, newest first (by log position), optionally of
        one namespace, kind or identity; at most ``limit`` (1-10,000). BadInputError for a bad
        filter or limit."""
        if namespace is not None:
            check_name(namespace, what="namespace")
        if kind is not None:
            check_kind(kind, what="step kind")
        if identity is not None:
            check_name(identity, what="identity")
        if not 1 <= limit <= 10_000:
            raise BadInputError(f"limit {limit} is out of range", hint="use 1 to 10000")
        with self.session() as session:
            query = select(StepRow.namespace).distinct()
            if namespace is not None:
                query = query.where(StepRow.namespace == namespace)
            readable = self._readable(session, set(session.execute(query).scalars()))
            if not readable:
                return []
            ids = select(StepRow.id).where(StepRow.namespace.in_(sorted(readable)))
            if kind is not None:
                ids = ids.where(StepRow.kind == kind)
            if identity is not None:
                ids = ids.where(StepRow.identity == identity)
            order = list(session.execute(ids.order_by(StepRow.log_seq.desc()).limit(limit))
                         .scalars())
            steps = queries.steps_with_links(session, order)
            return [steps[i] for i in order]

    def step_record(self, step_id: str) -> Step:
        """One recorded step (``show STEP_ID``); unknown and unreadable answer alike. A unique
        prefix of at least 8 hex digits (as ``explain`` shows) names the step too;
        BadInputError if it names several the caller may read."""
        with self.session() as session:
            if 8 <= len(step_id) < 32 and all(c in "0123456789abcdef" for c in step_id):
                candidates = session.execute(
                    select(StepRow.id, StepRow.namespace)
                    .where(StepRow.id.startswith(step_id, autoescape=True)).limit(50)).all()
                readable = self._readable(session, {ns for _, ns in candidates})
                matches = [sid for sid, ns in candidates if ns in readable]
                if len(matches) > 1:
                    raise BadInputError(f"step id prefix {step_id} names {len(matches)} steps",
                                        hint="give more of the id (`step list` shows them)")
                if matches:
                    step_id = matches[0]
            steps = queries.steps_with_links(session, [step_id])
            step = steps.get(step_id)
            if step is None or Permission.READ not in grants.permitted(
                    session, self.identity, step.namespace):
                raise NotFoundError(f"no step with id {step_id} that {self.identity} may read")
        return step

    def record_deployment(self, model: str, alias: str, version: int, digest: str,
                          decision: str | None, where: str) -> None:
        """Log that ``where`` now serves these bytes (a deployment record, I3/I5)."""
        with self.transaction() as tx:
            self.require(tx.session, Permission.READ, parse_ref(model).namespace,
                         f"serve {model}")
            row = registry.find_model(tx.session, model)
            current = registry.alias_target(tx.session, model, alias)
            if (current["version"], current["digest"]) != (version, digest):
                raise BadInputError(
                    f"{model}@{alias} is version {current['version']} ({current['digest']}), "
                    f"not version {version} ({digest})",
                    hint="record the deployment of what the alias points at")
            tx.log(Action.DEPLOYMENT, f"deployment:{row.namespace}/{row.name}@{alias}",
                   digests={"model": digest},
                   detail={"model": f"{row.namespace}/{row.name}", "alias": alias,
                           "version": version, "digest": digest, "decision": decision,
                           "where": where})

    # --- reports (evidence for the promotion gate) -----------------------------------------------

    # --- identities, keys, trust ---------------------------------------------------------------

    def _admin(self, tx: Transaction, what: str, namespace: str = grants.GLOBAL) -> None:
        self.require(tx.session, Permission.ADMIN, namespace, what)

    def create_identity(self, name: str, kind: str = "person") -> None:
        with self.transaction() as tx:
            self._admin(tx, "create identities")
            identities.create_identity(tx, name, kind)

    def register_key(self, identity: str, public_pem: bytes) -> str:
        with self.transaction() as tx:
            self._admin(tx, "register keys")
            return identities.register_key(tx, identity, public_pem)

    def revoke_key(self, keyid: str, reason: str, *, compromised: bool = False) -> None:
        """Revoke a key (admins). ``compromised``: every signature it ever made stops
        counting, not only the ones after now (see :mod:`chainproof.signatures`)."""
        with self.transaction() as tx:
            self._admin(tx, "revoke keys")
            identities.revoke_key(tx, keyid, reason, compromised=compromised)

    def grant_role(self, identity: str, role: str, namespace: str) -> None:
        with self.transaction() as tx:
            self._admin(tx, "grant roles", namespace)
            grants.grant(tx, identity, role, namespace)

    def revoke_role(self, identity: str, role: str, namespace: str) -> None:
        with self.transaction() as tx:
            self._admin(tx, "revoke roles", namespace)
            grants.revoke(tx, identity, role, namespace)

    def set_namespace_mode(self, namespace: str, mode: str) -> None:
        with self.transaction() as tx:
            self._admin(tx, "set namespace modes", namespace)
            grants.set_mode(tx, namespace, mode)

    def create_token(self, identity: str, expires_in: timedelta) -> tuple[str, str]:
        with self.transaction() as tx:
            self._admin(tx, "create tokens")
            return grants.create_token(tx, identity, expires_in)

    def revoke_token(self, token_id: str) -> None:
        with self.transaction() as tx:
            self._admin(tx, "revoke tokens")
            grants.revoke_token(tx, token_id)

    def rotate_key(self, identity: str, public_pem: bytes, reason: str = "rotated") -> str:
        """Register a new key and revoke the identity's active ones, in one transaction."""
        with self.transaction() as tx:
            self._admin(tx, "rotate keys")
            active = tx.session.execute(
                select(KeyRow.keyid).where(KeyRow.identity == identity,
                                           KeyRow.revoked_at.is_(None))).scalars().all()
            keyid = identities.register_key(tx, identity, public_pem)
            for old in active:
                identities.revoke_key(tx, old, f"{reason} (replaced by {keyid[:16]}…)")
            return keyid

    def set_trust_policy(self, text: str) -> int:
        with self.transaction() as tx:
            self._admin(tx, "set the trust policy")
            return identities.set_trust_policy(tx, text)

    # --- registry and promotion ------------------------------------------------------------------

    def create_model(self, model: str) -> None:
        with self.transaction() as tx:
            registry.create_model(self.ctx, tx, model)

    def register_model_version(self, model: str, asset_ref: str) -> int:
        with self.transaction() as tx:
            return registry.register_version(self.ctx, tx, model, asset_ref)

    def register_model_file(self, model: str, path: Path | str, *, asset_name: str | None = None,
                            media_type: str | None = None) -> RegisteredVersion:
        """Store a model file (or directory) and make it ``model``'s next version in one
        transaction: the model asset version (named after the model unless ``asset_name``) and
        the registry version are logged together or not at all."""
        path = Path(path)
        self.check(Permission.WRITE_MODEL, parse_ref(model).namespace, "register model versions")
        digest, size, is_dir = catalog.stage(self.store, path)
        return self.register_model_bytes(model, digest, size, is_dir,
                                          media_type or media_type_for(path, is_dir), asset_name)

    def register_model_stored(self, model: str, *, digest: str, asset_name: str | None = None,
                              media_type: str = "application/octet-stream",
                              is_directory: bool = False,
                              proven: AbstractSet[str] = frozenset()) -> RegisteredVersion:
        """``register_model_file`` for bytes already in the store (re-hashed first). The caller
        must have ``proven`` it holds them or be able to read them already (I8)."""
        # Permission before touching the store: an outsider may not probe which blobs exist.
        self.check(Permission.WRITE_MODEL, parse_ref(model).namespace, "register model versions")
        with self.session() as session:
            catalog.check_digest_claim(self.ctx, session, digest, is_directory, proven)
        size = catalog.uploaded_size(self.store, digest, is_directory)
        return self.register_model_bytes(model, digest, size, is_directory, media_type,
                                          asset_name)

    def register_model_bytes(self, model: str, digest: str, size: int, is_directory: bool,
                             media_type: str, asset_name: str | None) -> RegisteredVersion:
        """Register bytes this caller just stored (and proved, by sending them or staging them
        itself) as ``model``'s next version, with its model asset version: one transaction."""
        ref = parse_ref(model)
        name = check_name(asset_name or ref.name)
        staged = Staged(AssetKind.MODEL, name, ref.namespace, digest, size, is_directory,
                        media_type)
        with self.transaction() as tx:
            # Without an explicit asset name, bytes a recorded step produced keep that
            # provenance: the registered version pins the produced asset version.
            version, asset, created = registry.register_stored_version(
                self.ctx, tx, model, staged, link_produced=asset_name is None)
        return RegisteredVersion(registry.model_label(ref.namespace, ref.name), version, asset,
                                 created)

    def set_alias(self, model: str, version: int, alias: str) -> None:
        with self.transaction() as tx:
            registry.set_alias(self.ctx, tx, model, version, alias)

    def set_model_tag(self, model: str, key: str, value: str, *,
                      version: int | None = None) -> None:
        """Set a tag on a registered model or one of its versions (MLflow's tags). Tags are
        annotations: the gate and the loader never read them."""
        with self.transaction() as tx:
            model_tags.set_tag(self.ctx, tx, model, key, value, version=version)

    def delete_model_tag(self, model: str, key: str, *, version: int | None = None) -> None:
        with self.transaction() as tx:
            model_tags.delete_tag(self.ctx, tx, model, key, version=version)

    def set_model_description(self, model: str, description: str, *,
                              version: int | None = None) -> None:
        """Set (empty: remove) the description of a registered model or one of its versions."""
        with self.transaction() as tx:
            model_tags.set_description(self.ctx, tx, model, description, version=version)

    def set_promotion_policy(self, document: str) -> int:
        with self.transaction() as tx:
            return registry.set_policy(self.ctx, tx, document)

    def request_promotion(self, model: str, version: int, alias: str) -> str:
        with self.transaction() as tx:
            return registry.request_promotion(self.ctx, tx, model, version, alias)

    def check_promotion(self, model: str, version: int, alias: str,
                        request_id: str | None = None) -> registry.GateResult:
        """Dry run of the gate: every rule with its outcome; changes nothing."""
        check_alias(alias)
        self._read_check(parse_ref(model).namespace, f"check promotions of {model}")
        with self.session() as session:
            row = registry.find_model(session, model)
            req = (registry.promotion_request(session, request_id, reader=self.identity)
                   if request_id else None)
            return registry.evaluate_gate(self.ctx, session, row, version, alias, req)

    def check_request(self, request_id: str) -> registry.GateResult:
        """The gate for an open request, rule by rule (read permission on its model's
        namespace; an unreadable request answers like an unknown one)."""
        with self.session() as session:
            req = registry.promotion_request(session, request_id)
            model = session.get(ModelRow, req.model_id)
            assert model is not None
            if Permission.READ not in grants.permitted(session, self.identity, model.namespace):
                raise NotFoundError(f"no promotion request {request_id}",
                                    hint="`chainproof registry requests` lists them")
            return registry.evaluate_gate(self.ctx, session, model, req.version, req.alias, req)

    def approve(self, request_id: str, reason: str | None = None) -> str | None:
        """Sign an approval; returns the decision id if the policy auto-executed the move."""
        self.review(request_id, "approve", reason)
        if self.auto_executable(request_id):
            return self.execute_promotion(request_id, auto=True)[1]
        return None

    def reject(self, request_id: str, reason: str) -> None:
        self.review(request_id, "reject", reason)

    def review(self, request_id: str, decision: str, reason: str | None,
               sign: SignFn | None = None) -> None:
        with self.transaction() as tx:
            registry.review(self.ctx, tx, request_id, decision, reason,
                            sign or self._local_signature)

    def prepare_review(self, request_id: str, decision: str, reason: str | None) -> bytes | None:
        return prepared(lambda: self.review(request_id, decision, reason, prepare_only))

    def auto_executable(self, request_id: str) -> bool:
        """Whether the policy lets this request execute itself now (auto_execute and passing)."""
        with self.session() as session:
            req = registry.promotion_request(session, request_id)
            model = session.get(ModelRow, req.model_id)
            assert model is not None
            policy, _ = registry.current_policy(session)
            if req.status != "pending" or not policy.rule_for(
                    model.namespace, model.name, req.alias).auto_execute:
                return False
            return registry.evaluate_gate(self.ctx, session, model, req.version, req.alias,
                                          req).passed

    def execute_promotion(self, request_id: str, *, sign: SignFn | None = None,
                          auto: bool = False) -> tuple[registry.GateResult, str]:
        decision_id = time = None
        if isinstance(sign, RemoteSignature):
            decision_id, time, _ = _signed_decision(sign)
        with self.transaction() as tx:
            return registry.execute(self.ctx, tx, request_id, sign or self._local_signature,
                                    decision_id=decision_id, time=time, auto=auto)

    def prepare_execute(self, request_id: str, *, auto: bool = False) -> bytes | None:
        return prepared(lambda: self.execute_promotion(request_id, sign=prepare_only,
                                                             auto=auto))

    def force_promotion(self, model: str, version: int, alias: str, reason: str,
                        sign: SignFn | None = None) -> tuple[registry.GateResult, str]:
        """Break-glass: an admin moves the alias whatever the rules say; loudly recorded."""
        request_id = decision_id = time = None
        if isinstance(sign, RemoteSignature):
            decision_id, time, request_id = _signed_decision(sign)
        with self.transaction() as tx:
            self.require(tx.session, Permission.ADMIN, parse_ref(model).namespace,
                         "force a promotion")
            row = registry.find_model(tx.session, model)
            if grants.allowed(tx.session, self.identity, Permission.REQUEST_PROMOTION,
                              row.namespace):
                request_id = registry.request_promotion(self.ctx, tx, model, version, alias,
                                                        request_id)
            else:
                request_id = self._forced_request(tx, model, version, alias, request_id)
            return registry.execute(self.ctx, tx, request_id, sign or self._local_signature,
                                    override_reason=reason, decision_id=decision_id, time=time)

    def prepare_force(self, model: str, version: int, alias: str, reason: str) -> bytes | None:
        return prepared(lambda: self.force_promotion(model, version, alias, reason,
                                                           sign=prepare_only))

    def _forced_request(self, tx: Transaction, model: str, version: int, alias: str,
                        request_id: str | None) -> str:
        # An admin without the requester role still opens the request the override executes.
        row = registry.find_model(tx.session, model)
        mv = registry.model_version(tx.session, row, version)
        policy, _ = registry.current_policy(tx.session)
        request_id = request_id or uuid.uuid4().hex[:16]
        tx.session.add(PromotionRequestRow(id=request_id, model_id=row.id, version=version,
                                           alias=alias, digest=mv.digest,
                                           policy_version=policy.version,
                                           requested_at=tx.time, requested_by=tx.actor,
                                           status="pending", log_seq=tx.appender.size))
        tx.log(Action.PROMOTION_REQUEST, f"promotion:{request_id}", digests={"model": mv.digest},
               detail={"id": request_id, "model": f"{row.namespace}/{row.name}",
                       "version": version, "alias": alias, "digest": mv.digest,
                       "policy_version": policy.version, "requested_at": tx.time,
                       "requested_by": tx.actor})
        return request_id

    def resolve_alias(self, model: str, alias: str) -> dict[str, Any]:
        """Which version and digest an alias points at, and under which decision."""
        namespace = parse_ref(model).namespace
        with self.session() as session:  # one session: the check, then the answer
            if grants.allowed(session, self.identity, Permission.READ, namespace):
                return registry.alias_target(session, model, alias)
        self.check_read(namespace, f"read {model}@{alias}")  # logs the refusal and raises...
        with self.session() as session:  # ...unless the role was granted meanwhile
            return registry.alias_target(session, model, alias)

    def load_model(self, ref: str, *, allow_override: bool = False, dest: Path | None = None,
                   full_rehash: bool = False) -> Any:
        """``MODEL@ALIAS`` verified for serving; see :mod:`chainproof.serve.load`."""
        return load_verified(self.ctx, ref, allow_override=allow_override, dest=dest,
                             full_rehash=full_rehash)

    # --- reads the CLI and the server share ------------------------------------------------------

    def audit_verify(self, witness_notes: Sequence[str] = ()) -> audit.AuditReport:
        self.check(Permission.AUDIT, grants.GLOBAL, "verify the audit log")
        verifier = audit.load_log_verifier(self.settings.log_public_path, self.settings.origin,
                                           private_path=self.settings.log_key_path)
        # The newest checkpoint this machine verified before: a log rolled back behind it is
        # caught even without a witness file (see docs/provenance-and-audit.md).
        # Keyed by origin and log key: two logs never share a memory.
        key_tag = hash_bytes(audit.public_pem(self.settings.log_public_path,
                                              self.settings.log_key_path))[:16]
        memory = CheckpointMemory(default_checkpoint_folder(),
                                  f"{self.settings.origin}#{key_tag}")
        with self.session() as session:
            return audit.verify_log(session, verifier, witness_notes, memory=memory)

    def audit_log(self, *, action: str | None = None, actor: str | None = None,
                  obj: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        self.check(Permission.AUDIT, grants.GLOBAL, "read the audit log")
        query = select(LogEntryRow.body).order_by(LogEntryRow.seq.desc()).limit(
            max(1, min(limit, 10_000)))
        if action:
            query = query.where(LogEntryRow.action == action)
        if actor:
            query = query.where(LogEntryRow.actor == actor)
        if obj:
            query = query.where(LogEntryRow.object.startswith(obj, autoescape=True))
        with self.session() as session:
            return [json.loads(bytes(b)) for b in session.execute(query).scalars()]

    def latest_checkpoint(self) -> dict[str, Any]:
        """The newest signed checkpoint, verified with the log's public key."""
        self.check(Permission.AUDIT, grants.GLOBAL, "read checkpoints")
        with self.session() as session:
            row = session.execute(select(CheckpointRow).order_by(CheckpointRow.size.desc())
                                  .limit(1)).scalar_one_or_none()
        if row is None:
            raise NotFoundError("the log has no checkpoint yet", hint="run `chainproof init`")
        verifier = audit.load_log_verifier(self.settings.log_public_path, self.settings.origin,
                                           private_path=self.settings.log_key_path)
        checkpoint.verify_checkpoint(row.note, verifier)
        return {"size": row.size, "root_hash": bytes(row.root_hash).hex(), "note": row.note}

    def log_head(self) -> dict[str, Any]:
        """The newest signed checkpoint note, for any identity: clients remember it and demand
        a consistency proof from it on their next contact (I11). Reveals only size and root."""
        with self.session() as session:
            row = session.execute(select(CheckpointRow).order_by(CheckpointRow.size.desc())
                                  .limit(1)).scalar_one_or_none()
        if row is None:
            raise NotFoundError("the log has no checkpoint yet", hint="run `chainproof init`")
        return {"size": row.size, "note": row.note}

    def consistency(self, old: int, new: int) -> dict[str, Any]:
        """An RFC 6962 consistency proof between two tree sizes, for any identity."""
        with self.session() as session:
            return prove_consistency(session, old, new)

    def prove(self, seq: int, size: int | None = None) -> dict[str, Any]:
        self.check(Permission.AUDIT, grants.GLOBAL, "read inclusion proofs")
        with self.session() as session:
            return prove_inclusion(session, seq, size)

    def role_list(self) -> list[dict[str, Any]]:
        """Role grants the caller may see: all of them for an auditor or admin of ``*``; else
        its own, and those in namespaces it may read."""
        with self.session() as session:
            rows = grants.describe(session)
            if self._audits_everything(session):
                return rows
            readable = self._readable(session, {r["namespace"] for r in rows})
            return [r for r in rows
                    if r["identity"] == self.identity or r["namespace"] in readable]

    def identity_list(self) -> list[dict[str, Any]]:
        """Identities: all for an auditor or admin of ``*``; else the caller itself."""
        with self.session() as session:
            rows = session.execute(select(IdentityRow).order_by(IdentityRow.name)).scalars()
            everything = self._audits_everything(session)
            return [{"name": r.name, "kind": r.kind, "created_at": r.created_at,
                     "created_by": r.created_by}
                    for r in rows if everything or r.name == self.identity]

    def token_list(self) -> list[dict[str, Any]]:
        """API tokens (never the secrets): all for an auditor or admin of ``*``; else the
        caller's own."""
        with self.session() as session:
            everything = self._audits_everything(session)
            rows = session.execute(select(TokenRow).order_by(TokenRow.created_at)).scalars()
            return [{"id": r.id, "identity": r.identity, "created_at": r.created_at,
                     "created_by": r.created_by, "expires_at": r.expires_at,
                     "revoked_at": r.revoked_at}
                    for r in rows if everything or r.identity == self.identity]

    def model_list(self) -> list[dict[str, Any]]:
        """Registered models in namespaces the caller may read, with their versions' count and
        aliases."""
        with self.session() as session:
            rows = registry.model_summaries(session)
            readable = self._readable(session, {r["namespace"] for r in rows})
            rows = [r for r in rows if r["namespace"] in readable]
            notes = model_tags.of_models(session, [r["id"] for r in rows])
            return [{**{k: v for k, v in r.items() if k != "id"},
                     **model_tags.split(notes.get((r["id"], 0)))} for r in rows]

    def namespace_list(self) -> list[dict[str, Any]]:
        """Namespaces the caller may read (each with its mode), from assets, models, grants
        and modes."""
        with self.session() as session:
            names = set(session.execute(select(AssetRow.namespace).distinct()).scalars())
            names |= set(session.execute(select(ModelRow.namespace).distinct()).scalars())
            modes = dict(session.execute(select(NamespaceRow.name, NamespaceRow.mode)).all())
            names |= set(modes)
            readable = self._readable(session, names)
            return [{"name": n, "mode": modes.get(n, "governed")} for n in sorted(readable)]

    def key_list(self, identity: str | None = None) -> list[dict[str, Any]]:
        """Registered public keys: every identity's for an auditor or admin of ``*``; else the
        caller's own."""
        with self.session() as session:
            if self._audits_everything(session):
                return identities.keys(session, identity)
            if identity not in (None, self.identity):
                return []
            return identities.keys(session, self.identity)

    def trust_document(self) -> tuple[int, str | None]:
        with self.session() as session:
            policy, document = identities.trust_policy(session)
        return policy.version, document

    def promotion_policy(self) -> tuple[int, str]:
        with self.session() as session:
            policy, document = registry.current_policy(session)
        return policy.version, registry.policy_text(policy, document)

    def model_versions(self, model: str) -> dict[str, Any]:
        self._read_check(parse_ref(model).namespace, f"read {model}")
        with self.session() as session:
            info = registry.versions(session, model)
            info["history"] = registry.history(session, model)
            model_id = info.pop("id")
            notes = model_tags.of_models(session, [model_id])
            info.update(model_tags.split(notes.get((model_id, 0))))
            for v in info["versions"]:
                v.update(model_tags.split(notes.get((model_id, v["version"]))))
            return info

    def promotion_requests(self, status: str | None = None) -> list[dict[str, Any]]:
        """Promotion requests for models in namespaces the caller may read."""
        with self.session() as session:
            rows = registry.requests(session, status)
            readable = self._readable(session, {parse_ref(r["model"]).namespace for r in rows})
            return [r for r in rows if parse_ref(r["model"]).namespace in readable]

    def verify_chain(self, ref: str) -> Any:
        model, at, tail = ref.rpartition("@")
        if at and tail and not is_version(tail):  # MODEL@ALIAS: the version it points at
            ref = self.resolve_alias(model, tail)["asset"]
        self._read_check(parse_ref(ref).namespace, f"verify {ref}")
        try:
            report = provenance.verify_chain(self.ctx, ref)
        except VerificationError as exc:
            failed = getattr(exc, "report", None)
            if failed is not None:
                hidden = self._hide_links(failed)
                exc.problems = [f"{link.ref}: {p}" for link in hidden.links
                                for p in link.problems]
            raise
        return self._hide_links(report)

    def _hide_links(self, report: provenance.ChainReport) -> provenance.ChainReport:
        """The chain's verdict covers every link; the caller sees the details of the links in
        namespaces it may read only (the others are counted, not named)."""
        with self.session() as session:
            readable = self._readable(session, {parse_ref(link.ref).namespace
                                                for link in report.links})
        links = [link if parse_ref(link.ref).namespace in readable else provenance.Link(
            ref="(a version in a namespace you may not read)", kind=link.kind, digest="",
            checks=[], problems=["does not verify"] if link.problems else [])
            for link in report.links]
        return provenance.ChainReport(target=report.target,
                                      policy_version=report.policy_version, links=links)

    def export_attestations(self, ref: str) -> list[str]:
        """The DSSE envelopes of every step upstream of ``ref``, oldest first."""
        graph = self.lineage(ref)
        with self.session() as session:
            rows = session.execute(
                select(AttestationRow.envelope).where(
                    AttestationRow.step_id.in_(list(graph.steps)))
                .order_by(AttestationRow.log_seq)).scalars().all()
        return list(rows)


def _full_ref(ref: str) -> str:
    """``name@1`` → ``default/name@1``: statements always name the namespace."""
    return ref if "/" in ref.split("@", 1)[0] else f"{DEFAULT_NAMESPACE}/{ref}"


