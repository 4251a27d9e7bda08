"""Audit-log routes: verification, entries, checkpoints, inclusion and consistency proofs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi import Path as PathParam

from chainproof.api._http import (
    Caller,
    Route,
)
from chainproof.wire import (
    MAX_SEQ,
    WitnessBody,
)

router = APIRouter(route_class=Route)


@router.post("/v1/audit/verify")
def audit_verify(body: WitnessBody, cp: Caller) -> dict[str, Any]:
    return cp.audit_verify(body.witness_notes).to_dict()

@router.get("/v1/audit/log")
def audit_log(cp: Caller, action: str | None = None, actor: str | None = None,
              object: str | None = None,
              limit: Annotated[int, Query(ge=1, le=10_000)] = 50) -> list[dict[str, Any]]:
    return cp.audit_log(action=action, actor=actor, obj=object, limit=limit)

@router.get("/v1/audit/head")
def audit_head(cp: Caller) -> dict[str, Any]:
    """The newest signed checkpoint (any authenticated caller): clients remember it."""
    return cp.log_head()

@router.get("/v1/audit/consistency")
def audit_consistency(cp: Caller, old: Annotated[int, Query(ge=1, le=MAX_SEQ)],
                      new: Annotated[int, Query(ge=1, le=MAX_SEQ)]) -> dict[str, Any]:
    """RFC 6962 consistency proof from tree size ``old`` to ``new`` (hex hashes)."""
    return cp.consistency(old, new)

@router.get("/v1/audit/checkpoint")
def audit_checkpoint(cp: Caller) -> dict[str, Any]:
    return cp.latest_checkpoint()

@router.get("/v1/audit/proof/{seq}")
def audit_proof(seq: Annotated[int, PathParam(ge=0, le=MAX_SEQ)], cp: Caller,
                size: Annotated[int | None, Query(ge=1, le=MAX_SEQ)] = None
                ) -> dict[str, Any]:
    return cp.prove(seq, size)
