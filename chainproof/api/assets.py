"""Asset, lineage, verification, loading and step routes."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query

from chainproof.api._http import (
    Caller,
    Route,
    payload,
    proven,
)
from chainproof.errors import BadInputError, ChainproofError
from chainproof.lineage.graph import step_dict, version_dict
from chainproof.service import RemoteSignature
from chainproof.wire import (
    AssetBody,
    DeploymentBody,
    PreparedStepBody,
    SignedStepBody,
)

router = APIRouter(route_class=Route)


@router.post("/v1/assets", status_code=201)
def add_asset(body: AssetBody, cp: Caller) -> dict[str, Any]:
    result = cp.add_stored(digest=body.digest, kind=body.kind, name=body.name,
                           namespace=body.namespace, media_type=body.media_type,
                           is_directory=body.is_directory,
                           proven=proven(cp, body.receipts))
    return {"created": result.created, **version_dict(result.version)}

@router.get("/v1/assets")
def list_assets(cp: Caller, namespace: str | None = None,
                kind: str | None = None) -> list[dict[str, Any]]:
    return [version_dict(v) for v in cp.all_versions(namespace=namespace, kind=kind)]

@router.get("/v1/assets/{ref:path}")
def show_asset(ref: str, cp: Caller) -> dict[str, Any]:
    return cp.show(ref)

@router.get("/v1/resolve/{ref:path}")
def resolve(ref: str, cp: Caller) -> dict[str, Any]:
    return version_dict(cp.resolve(ref))

@router.get("/v1/lineage/{ref:path}")
def lineage(ref: str, cp: Caller,
            direction: Annotated[str, Query(pattern="^(upstream|downstream)$")] = "upstream"
            ) -> dict[str, Any]:
    return cp.lineage(ref, direction=direction).to_dict()

@router.get("/v1/explain/{ref:path}")
def explain(ref: str, cp: Caller, verify: bool = True) -> dict[str, Any]:
    return cp.explain(ref, verify=verify)

@router.get("/v1/verify/{ref:path}")
def verify_chain(ref: str, cp: Caller) -> dict[str, Any]:
    """The whole provenance chain under the trust policy; 422 listing every failed link."""
    return dict(cp.verify_chain(ref).to_dict())

@router.get("/v1/verify-bytes")
def verify_all_bytes(cp: Caller) -> dict[str, Any]:
    """Re-hash every stored version (422 listing each mismatch)."""
    return {"ok": True, "verified": [v.ref for v in cp.verify(None)]}

@router.get("/v1/verify-bytes/{ref:path}")
def verify_bytes(ref: str, cp: Caller) -> dict[str, Any]:
    return {"ok": True, "verified": [v.ref for v in cp.verify(ref)]}

@router.post("/v1/deployments", status_code=201)
def record_deployment(body: DeploymentBody, cp: Caller) -> dict[str, Any]:
    """Log that a prediction service now serves these bytes (needs read permission)."""
    cp.record_deployment(body.model, body.alias, body.version, body.digest, body.decision,
                         body.where)
    return body.model_dump()

@router.get("/v1/attestations/{ref:path}")
def attestations(ref: str, cp: Caller) -> list[str]:
    return cp.export_attestations(ref)

@router.get("/v1/load/{ref:path}")
def load(ref: str, cp: Caller, allow_override: bool = False) -> dict[str, Any]:
    """Verify a MODEL@ALIAS for loading (decision, approvals, chain, scan, and that every
    record names the same digest); the client then downloads the blob and re-hashes it."""
    with tempfile.TemporaryDirectory(prefix="chainproof-load-") as scratch:
        loaded = cp.load_model(ref, allow_override=allow_override,
                               dest=Path(scratch) / "model", full_rehash=True)
    return {**loaded.to_dict(), "path": None}


@router.get("/v1/steps")
def list_steps(cp: Caller, namespace: Annotated[str | None, Query(max_length=300)] = None,
               kind: Annotated[str | None, Query(max_length=300)] = None,
               identity: Annotated[str | None, Query(max_length=300)] = None,
               limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> list[dict[str, Any]]:
    """Recorded steps the caller may read, newest first."""
    return [step_dict(s) for s in cp.step_list(namespace=namespace, kind=kind,
                                               identity=identity, limit=limit)]


@router.get("/v1/steps/{step_id}")
def show_step(step_id: str, cp: Caller) -> dict[str, Any]:
    return step_dict(cp.step_record(step_id))


@router.post("/v1/steps/prepare")
def prepare_step(body: PreparedStepBody, cp: Caller) -> dict[str, Any]:
    """The provenance statement to sign for this step (nothing is written)."""
    return payload(cp.prepare_step(body.step.submission(), proven(cp, body.receipts)))

@router.post("/v1/steps", status_code=201)
def submit_step(body: SignedStepBody, cp: Caller) -> dict[str, Any]:
    sub = body.step.submission()
    if sub.outputs and sub.error is None and body.envelope is None:
        raise BadInputError("a step with outputs needs its signed provenance envelope",
                            hint="POST /v1/steps/prepare, sign the payload, send it here")
    sign = RemoteSignature(body.envelope or "")
    try:
        result = cp.submit_step(sub, sign=sign, verify_stored=True,
                                proven=proven(cp, body.receipts))
    except ChainproofError as exc:
        if sub.error is not None and type(exc).__name__ == "StepFailedError":
            return {"step": {"id": sub.id, "status": "failed"}, "outputs": []}
        raise
    return {"step": step_dict(result.step),
            "outputs": [version_dict(v) for v in result.outputs]}
