"""Tags and descriptions of registered models and model versions (MLflow's registered model /
model version tags and descriptions).

A tag is a key → value pair on a registered model (``version`` 0) or on one model version; the
description is the reserved tag ``chainproof.description``. Setting or deleting one needs
``write-model`` in the model's namespace (the permission that registers versions), is one
transaction and one audit log entry (``registry.tag.set`` / ``registry.tag.delete``), and
``audit verify`` rebuilds every tag from the log.

Tags are annotations for people and tools: **the gate, ``load`` and ``serve`` never read them**,
so a tag such as ``validated=true`` proves nothing; evidence is a signed report (see
docs/promotion.md).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from chainproof.access import Permission
from chainproof.context import Context
from chainproof.db.tables import ModelTagRow
from chainproof.errors import NotFoundError
from chainproof.records.log import Action
from chainproof.records.names import (
    DESCRIPTION_TAG,
    MAX_DESCRIPTION,
    MAX_TAG_VALUE,
    check_tag_key,
    check_text,
    parse_ref,
)
from chainproof.registry.operations import model_key, model_label, version_key
from chainproof.transaction import Transaction

#: (model row id, version) → {key: value}; version 0 is the registered model itself.
Annotations = dict[tuple[int, int], dict[str, str]]


def set_tag(ctx: Context, tx: Transaction, model: str, key: str, value: str, *,
            version: int | None = None) -> None:
    """Set (or replace) tag ``key`` of ``model`` (or of its ``version``).

    Raises InvalidNameError for a bad key or value (checked before anything is read),
    PermissionDeniedError without ``write-model`` in the model's namespace (before the lookup,
    so an outsider learns nothing), NotFoundError for an unknown model or version."""
    check_tag_key(key)
    check_text(value, what=f"value of tag {key!r}", limit=MAX_TAG_VALUE)
    _write(ctx, tx, model, key, value, version)


def set_description(ctx: Context, tx: Transaction, model: str, description: str, *,
                    version: int | None = None) -> None:
    """Set the description of ``model`` (or of its ``version``); an empty text removes it.
    Errors as :func:`set_tag`."""
    check_text(description, what="description", limit=MAX_DESCRIPTION)
    if description:
        _write(ctx, tx, model, DESCRIPTION_TAG, description, version)
    else:
        _remove(ctx, tx, model, DESCRIPTION_TAG, version, missing_ok=True)


def delete_tag(ctx: Context, tx: Transaction, model: str, key: str, *,
               version: int | None = None) -> None:
    """Delete tag ``key``. NotFoundError if it is not set; other errors as :func:`set_tag`."""
    check_tag_key(key)
    _remove(ctx, tx, model, key, version, missing_ok=False)


def _target(ctx: Context, tx: Transaction, model: str,
            version: int | None) -> tuple[int, str, int]:
    ctx.require(tx.session, Permission.WRITE_MODEL, parse_ref(model).namespace,
                "tag or describe registered models")
    row = model_key(tx.session, model)
    number = 0
    if version is not None:
        number = version_key(tx.session, row, version).version
    return row.id, model_label(row.namespace, row.name), number


def _write(ctx: Context, tx: Transaction, model: str, key: str, value: str,
           version: int | None) -> None:
    model_id, label, number = _target(ctx, tx, model, version)
    row = tx.session.get(ModelTagRow, (model_id, number, key))
    if row is None:
        row = ModelTagRow(model_id=model_id, version=number, key=key)
        tx.session.add(row)
    row.value, row.set_at, row.set_by, row.log_seq = value, tx.time, tx.actor, tx.appender.size
    tx.session.flush()
    tx.log(Action.MODEL_TAG_SET, f"model:{label}" + (f"@{number}" if number else ""),
           detail={"model": label, "version": number, "key": key, "value": value,
                   "set_at": tx.time, "set_by": tx.actor})


def _remove(ctx: Context, tx: Transaction, model: str, key: str, version: int | None, *,
            missing_ok: bool) -> None:
    model_id, label, number = _target(ctx, tx, model, version)
    row = tx.session.get(ModelTagRow, (model_id, number, key))
    where = label + (f"@{number}" if number else "")
    if row is None:
        if missing_ok:
            return
        raise NotFoundError(f"{where} has no tag {key!r}",
                            hint="`chainproof registry versions MODEL` lists the tags")
    tx.session.delete(row)
    tx.session.flush()
    tx.log(Action.MODEL_TAG_DELETE, f"model:{where}",
           detail={"model": label, "version": number, "key": key})


def of_models(session: Session, model_ids: Iterable[int] | None = None) -> Annotations:
    """Every tag (description included) of the given models (all when None)."""
    query = select(ModelTagRow.model_id, ModelTagRow.version, ModelTagRow.key,
                   ModelTagRow.value).order_by(ModelTagRow.key)
    if model_ids is not None:
        query = query.where(ModelTagRow.model_id.in_(list(model_ids)))
    found: Annotations = {}
    for model_id, version, key, value in session.execute(query):
        found.setdefault((model_id, version), {})[key] = value
    return found


def split(tags: dict[str, str] | None) -> dict[str, object]:
    """``{"description": text or None, "tags": {user tags}}`` for one model or version."""
    tags = dict(tags or {})
    return {"description": tags.pop(DESCRIPTION_TAG, None), "tags": tags}
