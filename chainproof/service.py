"""chainproof's operations. Each write is one database transaction that also appends its audit
log entries and signs a checkpoint (I3, I7); blobs are written to the object store first, under
their digest, so a crash leaves at worst an unreferenced blob and never a record without bytes.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import mimetypes
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import rfc8785
from sqlalchemy import Engine, Insert, bindparam, func, insert, select
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session

from chainproof import capture, identities
from chainproof.access import WRITE_PERMISSION, Permission, Role, grants
from chainproof.attest import (
    IN_TOTO_PAYLOAD_TYPE,
    Envelope,
    Signer,
    Verifier,
    build_provenance,
    load_public_key,
    sign_envelope,
    verify_envelope,
)
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
    PromotionRequestRow,
    StepInputRow,
    StepOutputRow,
    StepRow,
    table,
)
from chainproof.digest import Manifest, digest_path, hash_bytes
from chainproof.errors import (
    BadInputError,
    ChainproofError,
    ConflictError,
    DatabaseError,
    DigestMismatchError,
    NotFoundError,
    PermissionDeniedError,
    SignatureError,
    StepFailedError,
    VerificationError,
    WorkspaceError,
)
from chainproof.ledger import audit
from chainproof.ledger.log import LogAppender, open_appender
from chainproof.lineage import queries
from chainproof.lineage.graph import LineageGraph, step_dict, version_dict
from chainproof.records.assets import AssetKind, AssetVersion
from chainproof.records.log import Action, LogEntry
from chainproof.records.names import DEFAULT_NAMESPACE, Ref, check_name, parse_ref
from chainproof.records.steps import OutputSpec, Step, StepStatus, now
from chainproof.registry import operations as registry
from chainproof.store import ObjectStore, open_store
from chainproof.workflows import Workflows
from chainproof.workspace import Settings, create_workspace, load_settings

DIRECTORY_MEDIA_TYPE = "application/vnd.chainproof.directory+json"
_MEDIA_TYPES = {
    ".csv": "text/csv",
    ".parquet": "application/vnd.apache.parquet",
    ".json": "application/json",
    ".jsonl": "application/jsonl",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
    ".pkl": "application/x-pickle",
    ".pickle": "application/x-pickle",
    ".joblib": "application/x-joblib",
    ".pt": "application/x-pytorch",
    ".safetensors": "application/x-safetensors",
    ".onnx": "application/x-onnx",
    ".py": "text/x-python",
    ".ipynb": "application/x-ipynb+json",
}


def canonical_json(value: Any) -> str:
    return rfc8785.dumps(value).decode()


def media_type_for(path: Path, is_directory: bool) -> str:
    if is_directory:
        return DIRECTORY_MEDIA_TYPE
    suffix = path.suffix.lower()
    if suffix in _MEDIA_TYPES:
        return _MEDIA_TYPES[suffix]
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed or "application/octet-stream"


@dataclass
class Transaction:
    """An open write transaction: the session, and the log appender bound to it."""

    session: Session
    appender: LogAppender
    actor: str
    time: str

    def log(self, action: Action, obj: str, *, digests: dict[str, str] | None = None,
            detail: dict[str, Any] | None = None) -> LogEntry:
        entry = LogEntry(seq=self.appender.size, time=self.time, actor=self.actor,
                         action=action.value, object=obj, digests=digests or {},
                         detail=detail or {})
        self.appender.append(entry)
        return entry


@dataclass(frozen=True)
class StagedOutput:
    spec: OutputSpec
    digest: str
    size: int
    is_directory: bool
    media_type: str


@dataclass(frozen=True)
class StoredOutput:
    """A step output whose bytes are already in the object store under ``digest``."""

    kind: AssetKind
    name: str
    namespace: str | None
    digest: str
    size: int
    is_directory: bool
    media_type: str


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


# Registering a version runs these on every add, step output and model upload; built once with
# bind parameters they skip SQLAlchemy's per-call statement construction, and the inserts skip
# the ORM's unit of work (they need nothing from it).
_ASSET_BY_NAME = select(AssetRow.id, AssetRow.kind).where(
    AssetRow.namespace == bindparam("namespace"), AssetRow.name == bindparam("name"))
_VERSION_BY_DIGEST = select(AssetVersionRow.id).where(
    AssetVersionRow.asset_id == bindparam("asset_id"),
    AssetVersionRow.digest == bindparam("digest"))
_LATEST_ASSET_VERSION = select(func.max(AssetVersionRow.version)).where(
    AssetVersionRow.asset_id == bindparam("asset_id"))
_NAMESPACES_HOLDING = select(AssetRow.namespace).join(
    AssetVersionRow, AssetVersionRow.asset_id == AssetRow.id).where(
    AssetVersionRow.digest == bindparam("digest"),
    AssetVersionRow.is_directory.in_(bindparam("directory", expanding=True))).distinct()
_INSERT_ASSET = insert(table(AssetRow))
_INSERT_ASSET_VERSION = insert(table(AssetVersionRow))

def _insert(session: Session, statement: Insert, values: dict[str, Any]) -> int:
    """Run a Core insert in the session's transaction; the new row's integer key."""
    key = session.connection().execute(statement, values).inserted_primary_key
    assert key is not None
    return int(key[0])


#: The write transaction in progress in this context, keyed by its connection pool.
_ACTIVE: ContextVar[tuple[Any, Session] | None] = ContextVar("chainproof_transaction",
                                                             default=None)

#: Turns a statement's payload into a DSSE envelope (JSON).
SignFn = Callable[[bytes], str]


class _Prepared(Exception):
    """Carries the payload a client must sign out of a transaction that is then rolled back."""

    def __init__(self, payload: bytes) -> None:
        super().__init__("prepared")
        self.payload = payload


def _prepare_only(payload: bytes) -> str:
    raise _Prepared(payload)


def _require_canonical(value: Any, what: str) -> None:
    """Refuse values RFC 8785 cannot represent exactly (non-finite floats, integers beyond
    ±2^53): they could not be signed or logged byte-for-byte."""
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


class RemoteSignature:
    """A ``sign`` for a statement a client signed with its own key (private keys never reach
    the server): accepted only if its payload is byte-identical to the statement the server
    rebuilds inside the transaction."""

    def __init__(self, envelope: str) -> None:
        self.envelope = envelope

    def __call__(self, payload: bytes) -> str:
        try:
            signed = Envelope.from_json(self.envelope)
        except ChainproofError as exc:
            raise SignatureError(f"the signed envelope is malformed: {exc.message}") from None
        if signed.payload != payload:
            raise SignatureError(
                "the signed statement differs from the one this change would record",
                hint="prepare again and sign the returned statement unchanged (the state may "
                     "have changed in between)")
        return self.envelope


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


class Chainproof(Workflows):
    """An open chainproof: database, object store, checkpoint key and acting identity."""

    def __init__(self, settings: Settings, engine: Engine, store: ObjectStore) -> None:
        self.settings = settings
        self.engine = engine
        self._write_engine = engine.execution_options(**{db_engine.WRITE_OPTION: True})
        self.store = store
        self.identity = check_name(settings.identity, what="identity")
        self._checkpoint_signer: audit.LogSigner | None = None
        self._stored_environment: str | None = None
        self._signer: Signer | None = None

    # --- opening -------------------------------------------------------------------------------

    @classmethod
    def open(cls, settings: Settings | None = None, *, check: bool = True) -> Chainproof:
        settings = settings or load_settings()
        engine = db_engine.open_engine(settings.db_url)
        if check:
            db_engine.check_schema(engine)
        return cls(settings, engine, open_store(settings.store))

    @classmethod
    def init(cls, folder: Path, *, db: str | None = None, store: str | None = None,
             identity: str | None = None) -> Chainproof:
        """Create a workspace: config, checkpoint key pair, database schema, first log entry."""
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
                identities.create_identity(cp, tx, cp.identity, "person")
                # Bootstrap: whoever creates the workspace holds every role everywhere; they
                # grant narrower roles to the pipeline's other identities.
                for role in Role:
                    grants.grant(tx, cp.identity, role.value, grants.GLOBAL)
            if key_path is not None:
                pem = identities.public_key_pem(key_path)
                from chainproof.attest import key_id, load_public_key

                if tx.session.get(KeyRow, key_id(load_public_key(pem))) is None:
                    identities.register_key(cp, tx, cp.identity, pem)
        return cp

    def acting_as(self, identity: str, *, signing_key_path: Path | None = None) -> Chainproof:
        """The same database, store and checkpoint key, acting as ``identity`` (the team server
        makes one per request). Shares the engine's pool and the loaded checkpoint key, so it
        costs no I/O; ``close`` belongs to the original."""
        acting = copy.copy(self)
        acting.settings = dataclasses.replace(self.settings, identity=identity,
                                              signing_key_path=signing_key_path)
        acting.identity = check_name(identity, what="identity")
        acting._checkpoint_signer = self.checkpoint_signer
        acting._stored_environment = None
        acting._signer = None
        return acting

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Chainproof:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transactions ----------------------------------------------------------------------------

    @property
    def checkpoint_signer(self) -> audit.LogSigner:
        if self._checkpoint_signer is None:
            self._checkpoint_signer = audit.load_log_signer(self.settings.log_key_path,
                                                            self.settings.origin)
        return self._checkpoint_signer

    @contextmanager
    def transaction(self, actor: str | None = None) -> Iterator[Transaction]:
        """One write transaction: changes, their log entries and a signed checkpoint commit
        together or not at all."""
        signer = self.checkpoint_signer  # fail before writing if the key is unusable
        try:
            with Session(self._write_engine, expire_on_commit=False) as session, \
                    session.begin():
                appender = open_appender(session)
                tx = Transaction(session, appender, actor or self.identity, now())
                token = _ACTIVE.set((self.engine.pool, session))
                try:
                    yield tx
                finally:
                    _ACTIVE.reset(token)
                if appender.appended:
                    appender.flush_head()
                    appender.record_checkpoint(signer.sign(appender.size, appender.root()),
                                               tx.time)
        except PermissionDeniedError as exc:
            # The refused change was rolled back; the refusal itself is evidence (I3, I6).
            detail = getattr(exc, "detail", None)
            if detail is not None:
                with Session(self._write_engine) as session, session.begin():
                    appender = open_appender(session)
                    time = now()
                    appender.append(LogEntry(seq=appender.size, time=time,
                                             actor=actor or self.identity,
                                             action=Action.ACCESS_DENIED.value,
                                             object=f"namespace:{detail['namespace']}",
                                             detail=detail))
                    appender.flush_head()
                    appender.record_checkpoint(signer.sign(appender.size, appender.root()), time)
            raise
        except OperationalError as exc:
            raise DatabaseError(f"database error: {exc.orig}",
                                hint="check that the database is reachable; nothing was "
                                     "changed") from None
        except DataError as exc:
            raise BadInputError(f"the database refused a value: {exc.orig}",
                                hint="remove NUL characters and out-of-range values; nothing "
                                     "was changed") from None
        except PoolTimeoutError:
            raise DatabaseError("no database connection became free in time",
                                hint="the server is overloaded; retry (nothing was changed)"
                                ) from None

    @property
    def signer(self) -> Signer:
        """This identity's signing key (from a file it controls; never from the database)."""
        if self._signer is None:
            if self.settings.signing_key_path is None:
                raise WorkspaceError(f"no signing key configured for {self.identity}",
                                     hint="set CHAINPROOF_SIGNING_KEY")
            self._signer = identities.load_signer(self.settings.signing_key_path)
        return self._signer

    def require(self, session: Session, permission: Permission, namespace: str,
                what: str) -> None:
        grants.require(session, self.identity, permission, namespace, what)

    def check_read(self, namespace: str, what: str) -> None:
        """Refuse (and log) a read outside the identity's grants."""
        self.check(Permission.READ, namespace, what)

    def check(self, permission: Permission, namespace: str, what: str) -> None:
        """Refuse (and log the refusal) unless the identity holds ``permission`` there."""
        with self.session() as session:
            if grants.allowed(session, self.identity, permission, namespace):
                return
            if _ACTIVE.get() is not None:
                # Inside a transaction: raise; the transaction logs the refusal as it ends.
                grants.require(session, self.identity, permission, namespace, what)
        with self.transaction() as tx:
            grants.require(tx.session, self.identity, permission, namespace, what)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session for reads. Inside a write transaction on the same database it is that
        transaction's own session: an operation never needs a second pooled connection while
        it holds the log-head lock (which, under load, would deadlock the pool), and its reads
        see its own writes."""
        active = _ACTIVE.get()
        if active is not None and active[0] is self.engine.pool:
            yield active[1]
            return
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    # --- resolving -------------------------------------------------------------------------------

    def _find(self, session: Session, ref: Ref) -> tuple[AssetVersionRow, AssetRow]:
        asset = session.execute(
            select(AssetRow).where(AssetRow.namespace == ref.namespace, AssetRow.name == ref.name)
        ).scalar_one_or_none()
        if asset is None:
            raise NotFoundError(f"no asset named {ref.name!r} in namespace {ref.namespace!r}",
                                hint="`chainproof ls` lists the assets")
        query = select(AssetVersionRow).where(AssetVersionRow.asset_id == asset.id)
        if ref.version is not None:
            query = query.where(AssetVersionRow.version == ref.version)
        else:
            query = query.order_by(AssetVersionRow.version.desc()).limit(1)
        row = session.execute(query).scalar_one_or_none()
        if row is None:
            raise NotFoundError(f"{ref} does not exist",
                                hint=f"`chainproof show {ref.name}` lists its versions")
        return row, asset

    def resolve(self, ref: str | Ref, *, namespace: str | None = None) -> AssetVersion:
        parsed = parse_ref(ref, namespace=namespace) if isinstance(ref, str) else ref
        with self.session() as session:
            row, asset = self._find(session, parsed)
            return queries.version_from_row(row, asset)

    # --- adding assets ---------------------------------------------------------------------------

    def _stage(self, path: Path) -> tuple[str, int, bool]:
        """Hash ``path`` and put its bytes in the store; returns (digest, size, is_directory)."""
        computed = digest_path(path)
        if computed.is_directory:
            assert computed.manifest is not None
            for entry in computed.manifest.entries:
                self.store.put_file_expecting(path / entry.path, f"sha256:{entry.digest}")
            manifest_digest = self.store.put_bytes(computed.manifest.canonical_bytes())
            if manifest_digest != computed.ref:
                raise DigestMismatchError(f"manifest of {path} changed while it was stored")
        else:
            stored = self.store.put_file_expecting(path, computed.ref)
            if stored != computed.ref:
                raise DigestMismatchError(f"{path} changed while it was being stored",
                                          hint="add it again once nothing is writing to it")
        return computed.ref, computed.size, computed.is_directory

    def add(self, path: Path | str, *, kind: str | AssetKind, name: str,
            namespace: str = DEFAULT_NAMESPACE, media_type: str | None = None) -> AddResult:
        """Register the bytes at ``path`` as a new version of ``name`` (or return the existing
        version holding exactly these bytes)."""
        path = Path(path)
        asset_kind = AssetKind.parse(kind) if isinstance(kind, str) else kind
        check_name(name)
        check_name(namespace, what="namespace")
        digest, size, is_dir = self._stage(path)
        staged = StagedOutput(OutputSpec(path, asset_kind, name, namespace), digest, size, is_dir,
                               media_type or media_type_for(path, is_dir))
        with self.transaction() as tx:
            self.require(tx.session, WRITE_PERMISSION[asset_kind], namespace,
                         f"add {asset_kind.value} assets")
            version, created, _ = self._register(tx, staged, namespace, producer=None)
        return AddResult(version, created)

    def add_stored(self, *, digest: str, kind: str | AssetKind, name: str, namespace: str,
                   media_type: str, is_directory: bool) -> AddResult:
        """Register bytes a client already uploaded (the team server's ``add``): they are
        re-hashed in the store first; a directory's manifest and every file must be there."""
        asset_kind = AssetKind.parse(kind) if isinstance(kind, str) else kind
        check_name(name)
        check_name(namespace, what="namespace")
        size = self._uploaded_size(digest, is_directory)
        staged = StagedOutput(OutputSpec(Path(name), asset_kind, name, namespace), digest, size,
                              is_directory, media_type)
        with self.transaction() as tx:
            self.require(tx.session, WRITE_PERMISSION[asset_kind], namespace,
                         f"add {asset_kind.value} assets")
            version, created, _ = self._register(tx, staged, namespace, producer=None)
        return AddResult(version, created)

    def _uploaded_size(self, digest: str, is_directory: bool) -> int:
        """Re-hash uploaded bytes in the store (a directory: its manifest and every file)."""
        try:
            if is_directory:
                manifest = Manifest.from_bytes(self.store.read_bytes(digest))
                for entry in manifest.entries:
                    self._verify_stored(f"sha256:{entry.digest}")
                return sum(e.size for e in manifest.entries)
            return self.store.verify(digest)
        except NotFoundError:
            raise BadInputError(f"no blob {digest} in the store",
                                hint="upload the bytes first (PUT /v1/blobs/DIGEST)") from None

    def check_blob_readable(self, digest: str, *, within: str | None = None) -> None:
        """Refuse (NotFoundError, as for a blob that does not exist) unless the identity may read
        an asset version whose bytes are ``digest`` or, with ``within``, a directory asset
        version whose manifest is ``within`` and lists ``digest``. Knowing a digest is not
        enough to read the bytes."""
        missing = NotFoundError(f"no blob {digest} that {self.identity} may read",
                                hint="blobs are readable through an asset version in a "
                                     "namespace you may read")
        holder = within or digest
        with self.session() as session:
            namespaces = set(session.connection().execute(
                _NAMESPACES_HOLDING, {"digest": holder, "directory": [True] if within
                                      else [True, False]}).scalars())
            if not any(grants.allowed(session, self.identity, Permission.READ, ns)
                       for ns in namespaces):
                raise missing
        if within is not None:
            manifest = Manifest.from_bytes(self.store.read_bytes(within))
            if all(f"sha256:{entry.digest}" != digest for entry in manifest.entries):
                raise missing

    def _register(self, tx: Transaction, staged: StagedOutput, namespace: str,
                  producer: str | None) -> tuple[AssetVersion, bool, int]:
        session = tx.session
        spec = staged.spec
        connection = session.connection()
        asset = connection.execute(_ASSET_BY_NAME, {"namespace": namespace, "name": spec.name}
                                ).one_or_none()
        if asset is None:
            asset_id = _insert(session, _INSERT_ASSET, {"namespace": namespace,
                                                        "name": spec.name,
                                                        "kind": spec.kind.value})
        elif asset.kind != spec.kind.value:
            raise ConflictError(
                f"asset {namespace}/{spec.name} is a {asset.kind}, not a {spec.kind.value}",
                hint="use another name, or the asset's own kind",
            )
        else:
            asset_id = asset.id
        existing = session.connection().execute(_VERSION_BY_DIGEST, {"asset_id": asset_id,
                                                        "digest": staged.digest}).scalar()
        if existing is not None:
            row, asset_row = self._find_by_id(session, existing)
            return queries.version_from_row(row, asset_row), False, existing
        latest = connection.execute(_LATEST_ASSET_VERSION, {"asset_id": asset_id}).scalar_one()
        version = AssetVersion(namespace=namespace, name=spec.name, kind=spec.kind,
                               version=(latest or 0) + 1, digest=staged.digest, size=staged.size,
                               media_type=staged.media_type, is_directory=staged.is_directory,
                               created_at=tx.time, created_by=tx.actor, producer_step=producer)
        try:
            row_id = _insert(session, _INSERT_ASSET_VERSION, {
                "asset_id": asset_id, "version": version.version, "digest": version.digest,
                "size": version.size, "media_type": version.media_type,
                "is_directory": version.is_directory, "created_at": version.created_at,
                "created_by": version.created_by, "producer_step": producer,
                "log_seq": tx.appender.size})
        except IntegrityError:
            raise ConflictError(f"{version.ref} was written concurrently",
                                hint="retry the operation") from None
        tx.log(Action.ASSET_VERSION_ADD, f"asset:{version.namespace}/{version.name}@"
               f"{version.version}",
               digests={"content": staged.digest},
               detail={"namespace": version.namespace, "name": version.name,
                       "kind": version.kind.value, "version": version.version,
                       "digest": version.digest, "size": version.size,
                       "media_type": version.media_type, "is_directory": version.is_directory,
                       "created_at": version.created_at, "created_by": version.created_by,
                       "producer_step": producer})
        return version, True, row_id

    @staticmethod
    def _find_by_id(session: Session, version_id: int) -> tuple[AssetVersionRow, AssetRow]:
        row = session.get(AssetVersionRow, version_id)
        assert row is not None
        asset = session.get(AssetRow, row.asset_id)
        assert asset is not None
        return row, asset

    # --- steps -----------------------------------------------------------------------------------

    def record_step(self, *, kind: str, inputs: Sequence[str | Ref], outputs: Sequence[OutputSpec],
                    command: Sequence[str] = (), parameters: dict[str, Any] | None = None,
                    started_at: str, ended_at: str | None = None, error: str | None = None,
                    namespace: str = DEFAULT_NAMESPACE, cwd: Path | None = None) -> StepResult:
        """Record one execution. With ``error`` set the step is recorded as failed and none of
        its outputs are registered."""
        check_name(kind, what="step kind")
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
                    digest, size, is_dir = self._stage(spec.path)
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
                    verify_stored: bool = False) -> StepResult:
        """Record a step whose outputs are already in the object store. ``sign`` turns the
        provenance statement into a DSSE envelope: this identity's key locally, or a client's
        pre-signed envelope (see :meth:`remote_signature`)."""
        check_name(sub.kind, what="step kind")
        check_name(sub.namespace, what="namespace")
        for what, value in (("parameters", sub.parameters), ("environment", sub.environment),
                            ("code_revision", sub.code_revision), ("command", sub.command)):
            _require_canonical(value, what)
        if verify_stored:
            for out in sub.outputs:
                self._verify_stored_output(out)
        error = sub.error
        status = StepStatus.FAILED if error else StepStatus.SUCCEEDED
        with self.transaction() as tx:
            input_rows: list[tuple[AssetVersionRow, AssetRow]] = []
            for ref in sub.inputs:
                parsed = parse_ref(ref, namespace=sub.namespace)
                self.require(tx.session, Permission.READ, parsed.namespace, f"read {parsed}")
                input_rows.append(self._find(tx.session, parsed))
            outputs = sub.outputs if error is None else ()
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
                staged = StagedOutput(OutputSpec(Path(out.name), out.kind, out.name,
                                                  out.namespace), out.digest, out.size,
                                       out.is_directory, out.media_type)
                version, created, version_id = self._register(
                    tx, staged, out.namespace or sub.namespace, producer=sub.id)
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

    def prepare_step(self, sub: StepSubmission) -> bytes | None:
        """The exact provenance statement :meth:`submit_step` would ask the client to sign
        (nothing is written). None when the step has nothing to attest."""
        return self._prepared(lambda: self.submit_step(sub, sign=_prepare_only,
                                                       verify_stored=True))

    def _prepared(self, action: Callable[[], Any]) -> bytes | None:
        try:
            action()
        except _Prepared as prepared:
            return prepared.payload
        return None

    def _local_signature(self, payload: bytes) -> str:
        return sign_envelope(payload, IN_TOTO_PAYLOAD_TYPE, [self.signer]).to_json()

    @staticmethod
    def remote_signature(envelope: str) -> RemoteSignature:
        return RemoteSignature(envelope)

    def _verify_stored_output(self, out: StoredOutput) -> None:
        version = AssetVersion(namespace=out.namespace or DEFAULT_NAMESPACE, name=out.name,
                               kind=out.kind, version=0, digest=out.digest, size=out.size,
                               media_type=out.media_type, is_directory=out.is_directory,
                               created_at="", created_by="")
        try:
            self.verify_blob(version)
        except NotFoundError:
            raise BadInputError(f"output {out.name}: no blob {out.digest} in the store",
                                hint="upload the bytes first") from None

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
        keyid = self._accept_signature(tx, envelope, payload)
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

    def _accept_signature(self, tx: Transaction, envelope: str, payload: bytes) -> str:
        """The keyid that signed ``payload`` in ``envelope``; it must be registered to the
        acting identity and not revoked (the verifier refuses anything else too; this fails
        early, inside the transaction, so nothing is written)."""
        signed = Envelope.from_json(envelope)
        if signed.payload != payload:
            raise SignatureError("the envelope does not carry the statement being recorded")
        keys = tx.session.execute(select(KeyRow).where(KeyRow.identity == tx.actor)).scalars()
        trusted = {}
        revoked = {}
        for key in keys:
            if key.revoked_at is None:
                trusted[key.keyid] = Verifier.from_public_key(
                    load_public_key(key.public_pem.encode()))
            else:
                revoked[key.keyid] = key
        for sig in signed.signatures:
            if sig.keyid in revoked:
                key = revoked[sig.keyid]
                raise SignatureError(f"the signing key {sig.keyid[:16]}… was revoked at "
                                     f"{key.revoked_at} ({key.revoked_reason})",
                                     hint="rotate to a new key: `chainproof key rotate`")
        try:
            verify_envelope(signed, trusted, threshold=1)
        except SignatureError:
            raise SignatureError(
                f"the statement is not signed by a registered key of {tx.actor}",
                hint="register the key: `chainproof key register IDENTITY PUBLIC.pem`"
            ) from None
        for sig in signed.signatures:
            if sig.keyid in trusted:
                return sig.keyid
        return next(iter(trusted))

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
        with self.session() as session:
            permitted = grants.allowed(session, self.identity, Permission.READ, version.namespace)
        if not permitted:
            self.check_read(version.namespace, f"read {version.ref}")
        target = dest or self.settings.cache_dir / version.hexdigest / version.name
        if target.exists():
            self._verify_local(target, version)
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        if version.is_directory:
            manifest = Manifest.from_bytes(self.store.read_bytes(version.digest))
            staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".partial-"))
            try:
                for entry in manifest.entries:
                    out = staging / entry.path
                    out.parent.mkdir(parents=True, exist_ok=True)
                    self.store.fetch(f"sha256:{entry.digest}", out)
                os.replace(staging, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        else:
            self.store.fetch(version.digest, target)
        return target

    def _verify_local(self, path: Path, version: AssetVersion) -> None:
        computed = digest_path(path)
        if computed.ref != version.digest:
            raise DigestMismatchError(
                f"the cached copy of {version.ref} at {path} does not match {version.digest}",
                hint=f"delete {path}; it will be fetched and verified again")

    def verify_blob(self, version: AssetVersion) -> None:
        """Re-hash the stored bytes of one version (and, for a directory, every file)."""
        if version.is_directory:
            manifest = Manifest.from_bytes(self.store.read_bytes(version.digest))
            for entry in manifest.entries:
                self._verify_stored(f"sha256:{entry.digest}")
        else:
            self._verify_stored(version.digest)

    def _verify_stored(self, digest: str) -> None:
        self.store.verify(digest)  # re-hashes the bytes and refuses a mismatch (I1)

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
            return [queries.version_from_row(v, a) for v, a in rows]

    def _read_check(self, namespace: str, what: str) -> None:
        with self.session() as session:
            permitted = grants.allowed(session, self.identity, Permission.READ, namespace)
        if not permitted:
            self.check_read(namespace, what)

    def show(self, ref: str) -> dict[str, Any]:
        parsed = parse_ref(ref)
        self._read_check(parsed.namespace, f"read {parsed}")
        with self.session() as session:
            row, asset = self._find(session, parsed)
            version = queries.version_from_row(row, asset)
            all_versions = session.execute(
                select(AssetVersionRow).where(AssetVersionRow.asset_id == asset.id)
                .order_by(AssetVersionRow.version)).scalars().all()
            consumers = session.execute(
                select(StepInputRow.step_id).where(StepInputRow.version_id == row.id)
            ).scalars().all()
            producer = (queries.steps_with_links(session, [row.producer_step])
                        .get(row.producer_step) if row.producer_step else None)
            return {
                "version": version_dict(version),
                "producer": step_dict(producer) if producer else None,
                "consumed_by": sorted(consumers),
                "versions": [{"version": v.version, "digest": v.digest, "size": v.size,
                              "created_at": v.created_at, "created_by": v.created_by}
                             for v in all_versions],
            }

    def lineage(self, ref: str, *, direction: str = "upstream") -> LineageGraph:
        if direction not in ("upstream", "downstream"):
            raise BadInputError(f"unknown direction {direction!r}",
                                hint="use upstream or downstream")
        parsed = parse_ref(ref)
        self._read_check(parsed.namespace, f"read the lineage of {parsed}")
        with self.session() as session:
            row, asset = self._find(session, parsed)
            root = queries.version_from_row(row, asset).ref
            return queries.lineage(session, row.id, root, direction)

    def explain(self, ref: str, *, verify: bool = True) -> dict[str, Any]:
        """Explain ``NAME@VERSION``, or a registered ``MODEL@ALIAS`` (then also which decision,
        rules and approvals justified the alias's position)."""
        from chainproof.lineage.explain import explain

        model, at, tail = ref.rpartition("@")
        if at and tail and not tail.isdigit():
            return self.explain_alias(model, tail, verify=verify)
        return explain(self, ref, verify=verify)

    def explain_alias(self, model: str, alias: str, *, verify: bool = True) -> dict[str, Any]:
        from chainproof.lineage.explain import explain

        target = self.resolve_alias(model, alias)
        answer = explain(self, target["asset"], verify=verify)
        with self.session() as session:
            decision = registry.decision_for_alias(session, model, alias)
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
        if target["override"]:
            answer["verified"] = False if answer["verified"] is False else answer["verified"]
        return answer

    def step_record(self, step_id: str) -> Step:
        with self.session() as session:
            steps = queries.steps_with_links(session, [step_id])
        if step_id not in steps:
            raise NotFoundError(f"no step with id {step_id}")
        return steps[step_id]

    def record_deployment(self, model: str, alias: str, version: int, digest: str,
                          decision: str | None, where: str) -> None:
        """Log that ``where`` now serves these bytes (a deployment record, I3/I5)."""
        with self.transaction() as tx:
            row = registry.find_model(tx.session, model)
            self.require(tx.session, Permission.READ, row.namespace, f"serve {model}")
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
            identities.create_identity(self, tx, name, kind)

    def register_key(self, identity: str, public_pem: bytes) -> str:
        with self.transaction() as tx:
            self._admin(tx, "register keys")
            return identities.register_key(self, tx, identity, public_pem)

    def revoke_key(self, keyid: str, reason: str) -> None:
        with self.transaction() as tx:
            self._admin(tx, "revoke keys")
            identities.revoke_key(self, tx, keyid, reason)

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
            keyid = identities.register_key(self, tx, identity, public_pem)
            for old in active:
                identities.revoke_key(self, tx, old, f"{reason} (replaced by {keyid[:16]}…)")
            return keyid

    def set_trust_policy(self, text: str) -> int:
        with self.transaction() as tx:
            self._admin(tx, "set the trust policy")
            return identities.set_trust_policy(self, tx, text)

    # --- registry and promotion ------------------------------------------------------------------

    def create_model(self, model: str) -> None:
        with self.transaction() as tx:
            registry.create_model(self, tx, model)

    def register_model_version(self, model: str, asset_ref: str) -> int:
        with self.transaction() as tx:
            return registry.register_version(self, tx, model, asset_ref)

    def register_model_file(self, model: str, path: Path | str, *, asset_name: str | None = None,
                            media_type: str | None = None) -> RegisteredVersion:
        """Store a model file (or directory) and make it ``model``'s next version in one
        transaction: the model asset version (named after the model unless ``asset_name``) and
        the registry version are logged together or not at all."""
        path = Path(path)
        self.check(Permission.WRITE_MODEL, parse_ref(model).namespace, "register model versions")
        digest, size, is_dir = self._stage(path)
        return self._register_model_bytes(model, digest, size, is_dir,
                                          media_type or media_type_for(path, is_dir), asset_name)

    def register_model_stored(self, model: str, *, digest: str, asset_name: str | None = None,
                              media_type: str = "application/octet-stream",
                              is_directory: bool = False) -> RegisteredVersion:
        """``register_model_file`` for bytes a client already uploaded (re-hashed first)."""
        # Permission before touching the store: an outsider may not probe which blobs exist.
        self.check(Permission.WRITE_MODEL, parse_ref(model).namespace, "register model versions")
        size = self._uploaded_size(digest, is_directory)
        return self._register_model_bytes(model, digest, size, is_directory, media_type,
                                          asset_name)

    def _register_model_bytes(self, model: str, digest: str, size: int, is_directory: bool,
                              media_type: str, asset_name: str | None) -> RegisteredVersion:
        ref = parse_ref(model)
        name = check_name(asset_name or ref.name)
        staged = StagedOutput(OutputSpec(Path(name), AssetKind.MODEL, name, ref.namespace),
                              digest, size, is_directory, media_type)
        with self.transaction() as tx:
            version, asset, created = registry.register_stored_version(self, tx, model, staged)
        return RegisteredVersion(registry.model_label(ref.namespace, ref.name), version, asset,
                                 created)

    def set_alias(self, model: str, version: int, alias: str) -> None:
        with self.transaction() as tx:
            registry.set_alias(self, tx, model, version, alias)

    def set_promotion_policy(self, document: str) -> int:
        with self.transaction() as tx:
            return registry.set_policy(self, tx, document)

    def request_promotion(self, model: str, version: int, alias: str) -> str:
        with self.transaction() as tx:
            return registry.request_promotion(self, tx, model, version, alias)

    def check_promotion(self, model: str, version: int, alias: str,
                        request_id: str | None = None) -> registry.GateResult:
        """Dry run of the gate: every rule with its outcome; changes nothing."""
        with self.session() as session:
            row = registry.find_model(session, model)
            self._read_check(row.namespace, f"check promotions of {model}")
            req = registry._request(session, request_id) if request_id else None
            return registry.evaluate_gate(self, session, row, version, alias, req)

    def check_request(self, request_id: str) -> registry.GateResult:
        with self.session() as session:
            req = registry._request(session, request_id)
            model = session.get(ModelRow, req.model_id)
            assert model is not None
            return registry.evaluate_gate(self, session, model, req.version, req.alias, req)

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
            registry.review(self, tx, request_id, decision, reason,
                            sign or self._local_signature)

    def prepare_review(self, request_id: str, decision: str, reason: str | None) -> bytes | None:
        return self._prepared(lambda: self.review(request_id, decision, reason, _prepare_only))

    def auto_executable(self, request_id: str) -> bool:
        """Whether the policy lets this request execute itself now (auto_execute and passing)."""
        with self.session() as session:
            req = registry._request(session, request_id)
            model = session.get(ModelRow, req.model_id)
            assert model is not None
            policy, _ = registry.current_policy(session)
            if req.status != "pending" or not policy.rule_for(
                    model.namespace, model.name, req.alias).auto_execute:
                return False
            return registry.evaluate_gate(self, session, model, req.version, req.alias,
                                          req).passed

    def execute_promotion(self, request_id: str, *, sign: SignFn | None = None,
                          auto: bool = False) -> tuple[registry.GateResult, str]:
        decision_id = time = None
        if isinstance(sign, RemoteSignature):
            decision_id, time, _ = _signed_decision(sign)
        with self.transaction() as tx:
            return registry.execute(self, tx, request_id, sign or self._local_signature,
                                    decision_id=decision_id, time=time, auto=auto)

    def prepare_execute(self, request_id: str, *, auto: bool = False) -> bytes | None:
        return self._prepared(lambda: self.execute_promotion(request_id, sign=_prepare_only,
                                                             auto=auto))

    def force_promotion(self, model: str, version: int, alias: str, reason: str,
                        sign: SignFn | None = None) -> tuple[registry.GateResult, str]:
        """Break-glass: an admin moves the alias whatever the rules say; loudly recorded."""
        request_id = decision_id = time = None
        if isinstance(sign, RemoteSignature):
            decision_id, time, request_id = _signed_decision(sign)
        with self.transaction() as tx:
            row = registry.find_model(tx.session, model)
            self.require(tx.session, Permission.ADMIN, row.namespace, "force a promotion")
            if grants.allowed(tx.session, self.identity, Permission.REQUEST_PROMOTION,
                              row.namespace):
                request_id = registry.request_promotion(self, tx, model, version, alias,
                                                        request_id)
            else:
                request_id = self._forced_request(tx, model, version, alias, request_id)
            return registry.execute(self, tx, request_id, sign or self._local_signature,
                                    override_reason=reason, decision_id=decision_id, time=time)

    def prepare_force(self, model: str, version: int, alias: str, reason: str) -> bytes | None:
        return self._prepared(lambda: self.force_promotion(model, version, alias, reason,
                                                           sign=_prepare_only))

    def _forced_request(self, tx: Transaction, model: str, version: int, alias: str,
                        request_id: str | None) -> str:
        # An admin without the requester role still opens the request the override executes.
        row = registry.find_model(tx.session, model)
        mv = registry._version(tx.session, row, version)
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
        from chainproof.serve.load import load_verified

        return load_verified(self, ref, allow_override=allow_override, dest=dest,
                             full_rehash=full_rehash)

    # --- reads the CLI and the server share ------------------------------------------------------

    def audit_verify(self, witness_notes: Sequence[str] = ()) -> audit.AuditReport:
        self.check(Permission.AUDIT, grants.GLOBAL, "verify the audit log")
        verifier = audit.load_log_verifier(self.settings.log_public_path, self.settings.origin)
        with self.session() as session:
            return audit.verify_log(session, verifier, witness_notes)

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
        from chainproof.ledger import checkpoint

        self.check(Permission.AUDIT, grants.GLOBAL, "read checkpoints")
        with self.session() as session:
            row = session.execute(select(CheckpointRow).order_by(CheckpointRow.size.desc())
                                  .limit(1)).scalar_one_or_none()
        if row is None:
            raise NotFoundError("the log has no checkpoint yet", hint="run `chainproof init`")
        verifier = audit.load_log_verifier(self.settings.log_public_path, self.settings.origin)
        checkpoint.verify_checkpoint(row.note, verifier)
        return {"size": row.size, "root_hash": bytes(row.root_hash).hex(), "note": row.note}

    def prove(self, seq: int, size: int | None = None) -> dict[str, Any]:
        from chainproof.ledger.log import prove_inclusion

        self.check(Permission.AUDIT, grants.GLOBAL, "read inclusion proofs")
        with self.session() as session:
            return prove_inclusion(session, seq, size)

    def role_list(self) -> list[dict[str, Any]]:
        with self.session() as session:
            return grants.describe(session)

    def key_list(self, identity: str | None = None) -> list[dict[str, Any]]:
        return identities.keys(self, identity)

    def trust_document(self) -> tuple[int, str | None]:
        policy, document = identities.trust_policy(self)
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
            return info

    def promotion_requests(self, status: str | None = None) -> list[dict[str, Any]]:
        with self.session() as session:
            return registry.requests(session, status)

    def verify_chain(self, ref: str) -> Any:
        from chainproof.provenance import verify_chain

        return verify_chain(self, ref)

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


