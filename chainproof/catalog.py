"""Asset versions: staging bytes in the object store, registering and finding versions (I1).

A version is identified by the SHA-256 digest of its bytes (a directory: of its canonical
manifest). Bytes are written to the store first, under their digest, so a crash leaves at worst
an unreferenced blob and never a record without bytes; every read re-hashes.

Binding bytes by digest (I8): knowing a digest grants nothing. A caller may register bytes it
uploaded in the same request, or bytes it can already read through another asset version
(:func:`check_digest_claim`).
"""

from __future__ import annotations

import mimetypes
import os
import shutil
import tempfile
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Insert, bindparam, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chainproof.access import Permission, grants
from chainproof.context import Context
from chainproof.db.tables import (
    AssetRow,
    AssetVersionRow,
    StepInputRow,
    StepOutputRow,
    StepRow,
    table,
)
from chainproof.digest import Manifest, digest_path
from chainproof.errors import (
    BadInputError,
    ConflictError,
    DigestMismatchError,
    NotFoundError,
)
from chainproof.lineage import queries
from chainproof.lineage.graph import LineageGraph
from chainproof.records.assets import AssetKind, AssetVersion
from chainproof.records.log import Action
from chainproof.records.names import Ref
from chainproof.store import ObjectStore
from chainproof.transaction import Transaction

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


def media_type_for(path: Path, is_directory: bool) -> str:
    """The media type recorded for ``path`` (by suffix; directories have their own)."""
    if is_directory:
        return DIRECTORY_MEDIA_TYPE
    suffix = path.suffix.lower()
    if suffix in _MEDIA_TYPES:
        return _MEDIA_TYPES[suffix]
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed or "application/octet-stream"


@dataclass(frozen=True)
class Staged:
    """Bytes already in the object store under ``digest``, to be registered as an asset
    version of ``kind`` called ``name`` (in ``namespace``, or the operation's own)."""

    kind: AssetKind
    name: str
    namespace: str | None
    digest: str
    size: int
    is_directory: bool
    media_type: str


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
_DIRECTORIES_IN = select(AssetVersionRow.digest, AssetRow.namespace).join(
    AssetRow, AssetRow.id == AssetVersionRow.asset_id).where(
    AssetVersionRow.is_directory.is_(True))
_INSERT_ASSET = insert(table(AssetRow))
_INSERT_ASSET_VERSION = insert(table(AssetVersionRow))


def _insert(session: Session, statement: Insert, values: dict[str, Any]) -> int:
    """Run a Core insert in the session's transaction; the new row's integer key."""
    key = session.connection().execute(statement, values).inserted_primary_key
    assert key is not None
    return int(key[0])


# --- staging --------------------------------------------------------------------------------------


def stage(store: ObjectStore, path: Path) -> tuple[str, int, bool]:
    """Hash ``path`` and put its bytes in the store; (digest, size, is_directory).
    DigestMismatchError if the bytes change while they are stored."""
    computed = digest_path(path)
    if computed.is_directory:
        assert computed.manifest is not None
        for entry in computed.manifest.entries:
            store.put_file_expecting(path / entry.path, f"sha256:{entry.digest}")
        manifest_digest = store.put_bytes(computed.manifest.canonical_bytes())
        if manifest_digest != computed.ref:
            raise DigestMismatchError(f"manifest of {path} changed while it was stored")
    else:
        stored = store.put_file_expecting(path, computed.ref)
        if stored != computed.ref:
            raise DigestMismatchError(f"{path} changed while it was being stored",
                                      hint="add it again once nothing is writing to it")
    return computed.ref, computed.size, computed.is_directory


def verify_stored(store: ObjectStore, digest: str, is_directory: bool) -> int:
    """Re-hash stored bytes (a directory: its manifest, and each distinct file once — a
    manifest listing one blob many times costs one re-hash). Returns the total size;
    NotFoundError if a blob is missing, DigestMismatchError if one does not match."""
    if not is_directory:
        return store.verify(digest)  # re-hashes the bytes and refuses a mismatch (I1)
    manifest = Manifest.from_bytes(store.read_bytes(digest))
    for file_digest in sorted({entry.digest for entry in manifest.entries}):
        store.verify(f"sha256:{file_digest}")
    return sum(e.size for e in manifest.entries)


def verify_blob(store: ObjectStore, version: AssetVersion) -> None:
    """Re-hash the stored bytes of one version (and, for a directory, every file)."""
    verify_stored(store, version.digest, version.is_directory)


def uploaded_size(store: ObjectStore, digest: str, is_directory: bool) -> int:
    """Re-hash bytes a client uploaded; BadInputError if they are not in the store."""
    try:
        return verify_stored(store, digest, is_directory)
    except NotFoundError:
        raise BadInputError(f"no blob {digest} in the store",
                            hint="upload the bytes first (PUT /v1/blobs/DIGEST)") from None


# --- reading --------------------------------------------------------------------------------------


def find(session: Session, ref: Ref) -> tuple[AssetVersionRow, AssetRow]:
    """The version row ``ref`` names (its latest version when it names none);
    NotFoundError otherwise."""
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


def find_by_id(session: Session, version_id: int) -> tuple[AssetVersionRow, AssetRow]:
    row = session.get(AssetVersionRow, version_id)
    assert row is not None
    asset = session.get(AssetRow, row.asset_id)
    assert asset is not None
    return row, asset


def resolve(session: Session, ref: Ref) -> AssetVersion:
    row, asset = find(session, ref)
    return queries.version_from_row(row, asset)


def readable_holders(session: Session, identity: str, digest: str, *,
                     directories_only: bool = False) -> bool:
    """Whether ``identity`` may read some asset version whose bytes are ``digest``."""
    namespaces = set(session.connection().execute(
        _NAMESPACES_HOLDING, {"digest": digest,
                              "directory": [True] if directories_only else [True, False]}
    ).scalars())
    return any(grants.allowed(session, identity, Permission.READ, ns) for ns in namespaces)


def check_digest_claim(ctx: Context, session: Session, digest: str, is_directory: bool,
                       proven: AbstractSet[str]) -> None:
    """Binding existing bytes needs read access to something that already holds them (I8).

    ``proven``: digests the caller proved it holds (sent in this request, staged from its own
    files, or uploaded with a receipt: :mod:`chainproof.access.receipts`). A file digest must be
    proven or readable through an asset version (or a readable directory's manifest) the caller
    may read; a directory's every listed file must be. The refusal is the same BadInputError
    whether or not the bytes exist, so it tells nothing about other namespaces."""
    refusal = BadInputError(f"no blob {digest} that {ctx.identity} uploaded or may read",
                            hint="upload the bytes yourself (their receipt proves it); knowing "
                                 "a digest is not enough to bind bytes")
    if not is_directory:
        if digest not in proven and not readable_holders(session, ctx.identity, digest):
            raise refusal
        return
    if digest in proven or readable_holders(session, ctx.identity, digest):
        try:
            manifest = Manifest.from_bytes(ctx.store.read_bytes(digest))
        except NotFoundError:
            raise refusal from None
    else:
        raise refusal
    listed: set[str] | None = None  # files of readable directories, read once if needed
    for file_digest in sorted({f"sha256:{e.digest}" for e in manifest.entries}):
        if file_digest in proven or readable_holders(session, ctx.identity, file_digest):
            continue
        if listed is None:
            listed = {f"sha256:{e.digest}" for d in _directories_holding(session, ctx.identity)
                      for e in Manifest.from_bytes(ctx.store.read_bytes(d)).entries}
        if file_digest not in listed:
            raise refusal


def _directories_holding(session: Session, identity: str) -> list[str]:
    return [d for d, ns in session.execute(_DIRECTORIES_IN).all()
            if grants.allowed(session, identity, Permission.READ, ns)]


def _lists(store: ObjectStore, manifest_digest: str, file_digest: str) -> bool:
    manifest = Manifest.from_bytes(store.read_bytes(manifest_digest))
    return any(f"sha256:{e.digest}" == file_digest for e in manifest.entries)


def check_blob_readable(ctx: Context, digest: str, *, within: str | None = None) -> None:
    """Refuse (NotFoundError, as for a blob that does not exist) unless the identity may read
    an asset version whose bytes are ``digest`` or, with ``within``, a directory asset version
    whose manifest is ``within`` and lists ``digest``. Knowing a digest is not enough."""
    missing = NotFoundError(f"no blob {digest} that {ctx.identity} may read",
                            hint="blobs are readable through an asset version in a "
                                 "namespace you may read")
    with ctx.session() as session:
        if not readable_holders(session, ctx.identity, within or digest,
                                directories_only=within is not None):
            raise missing
    if within is not None and not _lists(ctx.store, within, digest):
        raise missing


def materialize(ctx: Context, version: AssetVersion, dest: Path | None = None) -> Path:
    """A local path holding exactly the version's bytes, verified against its digest
    (a cached copy is re-hashed). Needs read permission in the version's namespace."""
    if not ctx.allowed(Permission.READ, version.namespace):
        ctx.check_read(version.namespace, f"read {version.ref}")
    target = dest or ctx.settings.cache_dir / version.hexdigest / version.name
    if target.exists():
        computed = digest_path(target)
        if computed.ref != version.digest:
            raise DigestMismatchError(
                f"the cached copy of {version.ref} at {target} does not match "
                f"{version.digest}", hint=f"delete {target}; it will be fetched and verified "
                                          "again")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if version.is_directory:
        manifest = Manifest.from_bytes(ctx.store.read_bytes(version.digest))
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".partial-"))
        try:
            for entry in manifest.entries:
                out = staging / entry.path
                out.parent.mkdir(parents=True, exist_ok=True)
                ctx.store.fetch(f"sha256:{entry.digest}", out)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    else:
        ctx.store.fetch(version.digest, target)
    return target


# --- registering ----------------------------------------------------------------------------------


def register(tx: Transaction, staged: Staged, namespace: str,
             producer: str | None) -> tuple[AssetVersion, bool, int]:
    """Register stored bytes as the next version of ``namespace/staged.name`` (or find the
    version holding exactly these bytes). Returns (version, created, row id); logs
    ``asset.version.add`` when created. ConflictError on a kind mismatch or a race."""
    session = tx.session
    connection = session.connection()
    asset = connection.execute(_ASSET_BY_NAME, {"namespace": namespace, "name": staged.name}
                               ).one_or_none()
    if asset is None:
        asset_id = _insert(session, _INSERT_ASSET, {"namespace": namespace,
                                                    "name": staged.name,
                                                    "kind": staged.kind.value})
    elif asset.kind != staged.kind.value:
        raise ConflictError(
            f"asset {namespace}/{staged.name} is a {asset.kind}, not a {staged.kind.value}",
            hint="use another name, or the asset's own kind",
        )
    else:
        asset_id = asset.id
    existing = connection.execute(_VERSION_BY_DIGEST, {"asset_id": asset_id,
                                                       "digest": staged.digest}).scalar()
    if existing is not None:
        row, asset_row = find_by_id(session, existing)
        return queries.version_from_row(row, asset_row), False, existing
    latest = connection.execute(_LATEST_ASSET_VERSION, {"asset_id": asset_id}).scalar_one()
    version = AssetVersion(namespace=namespace, name=staged.name, kind=staged.kind,
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


def reports_about(session: Session, refs: list[Ref]) -> list[AssetVersion]:
    """Report assets output by succeeded steps that consumed any of ``refs`` (a dataset's
    validation reports, which sit downstream of the data, not upstream of a model)."""
    ids = []
    for ref in refs:
        try:
            ids.append(find(session, ref)[0].id)
        except NotFoundError:
            continue
    if not ids:
        return []
    rows = session.execute(
        select(AssetVersionRow, AssetRow).distinct()
        .join(AssetRow, AssetRow.id == AssetVersionRow.asset_id)
        .join(StepOutputRow, StepOutputRow.version_id == AssetVersionRow.id)
        .join(StepInputRow, StepInputRow.step_id == StepOutputRow.step_id)
        .join(StepRow, StepRow.id == StepOutputRow.step_id)
        .where(StepInputRow.version_id.in_(ids), StepRow.status == "succeeded",
               AssetRow.kind == AssetKind.REPORT.value)).all()
    return [queries.version_from_row(v, a) for v, a in rows]


def lineage(session: Session, ref: Ref, direction: str = "upstream", *,
            every_producer: bool = False) -> LineageGraph:
    """The lineage graph of ``ref`` (``upstream``: what produced it; ``downstream``: what was
    produced from it; ``every_producer``: also the steps that later reproduced a version's
    exact bytes, for display). BadInputError for another direction; NotFoundError for no
    version."""
    if direction not in ("upstream", "downstream"):
        raise BadInputError(f"unknown direction {direction!r}",
                            hint="use upstream or downstream")
    row, asset = find(session, ref)
    root = queries.version_from_row(row, asset).ref
    return queries.lineage(session, row.id, root, direction, every_producer=every_producer)
