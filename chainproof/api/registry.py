"""Registry and promotion routes: models, versions, aliases, the policy, requests, reviews,
execution and break-glass (signed statements use prepare/commit pairs)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from chainproof.api._http import (
    UPLOAD_PATH,
    Caller,
    PendingCaller,
    Route,
    gate_after_commit,
    payload,
    proven,
    store_upload,
)
from chainproof.errors import BadInputError, ChainproofError
from chainproof.lineage.graph import version_dict
from chainproof.records.names import MAX_VERSION
from chainproof.service import Chainproof, RemoteSignature
from chainproof.wire import (
    AliasBody,
    DescriptionBody,
    DocumentBody,
    ExecuteBody,
    ForceBody,
    ModelBody,
    ModelVersionBody,
    ReviewBody,
    TagBody,
)

router = APIRouter(route_class=Route)


@router.post("/v1/models", status_code=201)
def create_model(body: ModelBody, cp: Caller) -> dict[str, Any]:
    cp.create_model(body.model)
    return {"model": body.model}

@router.post(UPLOAD_PATH, status_code=201)
async def upload_version(
        request: Request, caller: PendingCaller, model: Annotated[str, Query(max_length=300)],
        digest: Annotated[str, Query(max_length=300)],
        asset_name: Annotated[str | None, Query(max_length=300)] = None,
        media_type: Annotated[str, Query(max_length=300)] = "application/octet-stream",
) -> dict[str, Any]:
    """Upload a model file (the body) and register it as the model's next version: one
    request, one transaction. The bytes are stored only if they hash to ``digest``."""
    def register(cp: Chainproof, size: int) -> dict[str, Any]:
        # The bytes were hashed on arrival and stored by this request: no second re-hash.
        result = cp.register_model_bytes(model, digest, size, False, media_type,
                                          asset_name)
        return {"model": result.model, "version": result.version,
                "asset": version_dict(result.asset), "asset_created": result.asset_created}

    return await store_upload(request, caller, digest, register)

@router.post("/v1/model-versions", status_code=201)
def register_version(body: ModelVersionBody, cp: Caller) -> dict[str, Any]:
    if body.asset is not None:
        return {"model": body.model,
                "version": cp.register_model_version(body.model, body.asset)}
    assert body.digest is not None
    result = cp.register_model_stored(body.model, digest=body.digest,
                                      asset_name=body.asset_name,
                                      media_type=body.media_type,
                                      is_directory=body.is_directory,
                                      proven=proven(cp, body.receipts))
    return {"model": result.model, "version": result.version,
            "asset": version_dict(result.asset), "asset_created": result.asset_created}

@router.get("/v1/models")
def list_models(cp: Caller) -> list[dict[str, Any]]:
    return cp.model_list()


@router.get("/v1/models/{model:path}")
def model_versions(model: str, cp: Caller) -> dict[str, Any]:
    return cp.model_versions(model)

@router.put("/v1/aliases")
def set_alias(body: AliasBody, cp: Caller) -> dict[str, Any]:
    cp.set_alias(body.model, body.version, body.alias)
    return body.model_dump()

@router.put("/v1/model-tags")
def set_tag(body: TagBody, cp: Caller) -> dict[str, Any]:
    cp.set_model_tag(body.model, body.key, body.value, version=body.version)
    return body.model_dump()

@router.delete("/v1/model-tags")
def delete_tag(model: Annotated[str, Query(max_length=300)],
               key: Annotated[str, Query(max_length=300)], cp: Caller,
               version: Annotated[int | None, Query(ge=1, le=MAX_VERSION)] = None
               ) -> dict[str, Any]:
    cp.delete_model_tag(model, key, version=version)
    return {"model": model, "key": key, "version": version}

@router.put("/v1/model-descriptions")
def set_description(body: DescriptionBody, cp: Caller) -> dict[str, Any]:
    cp.set_model_description(body.model, body.description, version=body.version)
    return {"model": body.model, "version": body.version}

@router.get("/v1/aliases/{model:path}")
def resolve_alias(model: str, alias: str, cp: Caller) -> dict[str, Any]:
    return cp.resolve_alias(model, alias)

@router.get("/v1/policy")
def policy(cp: Caller) -> dict[str, Any]:
    version, document = cp.promotion_policy()
    return {"version": version, "document": document}

@router.put("/v1/policy")
def set_policy(body: DocumentBody, cp: Caller) -> dict[str, Any]:
    return {"version": cp.set_promotion_policy(body.document)}

@router.get("/v1/policy/check")
def policy_check(model: str, version: Annotated[int, Query(ge=1, le=MAX_VERSION)], alias: str,
                 cp: Caller) -> dict[str, Any]:
    return cp.check_promotion(model, version, alias).to_dict()

@router.post("/v1/promotions", status_code=201)
def request_promotion(body: AliasBody, cp: Caller) -> dict[str, Any]:
    request_id = cp.request_promotion(body.model, body.version, body.alias)
    return {"id": request_id, **gate_after_commit(cp, request_id)}

@router.get("/v1/promotions")
def list_promotions(cp: Caller, status: str | None = None) -> list[dict[str, Any]]:
    return cp.promotion_requests(status)

@router.get("/v1/promotions/{request_id}/gate")
def gate(request_id: str, cp: Caller) -> dict[str, Any]:
    return cp.check_request(request_id).to_dict()

@router.post("/v1/promotions/{request_id}/reviews/prepare")
def prepare_review(request_id: str, body: ReviewBody, cp: Caller) -> dict[str, Any]:
    return payload(cp.prepare_review(request_id, body.decision, body.reason))

@router.post("/v1/promotions/{request_id}/reviews", status_code=201)
def review(request_id: str, body: ReviewBody, cp: Caller) -> dict[str, Any]:
    if body.envelope is None:
        raise BadInputError("a review needs its signed envelope",
                            hint="POST .../reviews/prepare, sign the payload, send it here")
    cp.review(request_id, body.decision, body.reason, RemoteSignature(body.envelope))
    try:
        auto = cp.auto_executable(request_id)
    except ChainproofError:
        auto = False  # the review is committed; the caller can ask the gate again
    return {"id": request_id, "decision": body.decision, "auto_executable": auto}

@router.post("/v1/promotions/{request_id}/execute/prepare")
def prepare_execute(request_id: str, body: ExecuteBody, cp: Caller) -> dict[str, Any]:
    return payload(cp.prepare_execute(request_id, auto=body.auto))

@router.post("/v1/promotions/{request_id}/execute")
def execute(request_id: str, body: ExecuteBody, cp: Caller) -> dict[str, Any]:
    if body.envelope is None:
        raise BadInputError("executing a promotion needs the signed decision",
                            hint="POST .../execute/prepare, sign the payload, send it here")
    gate_, decision = cp.execute_promotion(request_id, sign=RemoteSignature(body.envelope),
                                           auto=body.auto)
    return {"decision": decision, **gate_.to_dict()}

@router.post("/v1/promotions/force/prepare")
def prepare_force(body: ForceBody, cp: Caller) -> dict[str, Any]:
    return payload(cp.prepare_force(body.model, body.version, body.alias, body.reason))

@router.post("/v1/promotions/force")
def force(body: ForceBody, cp: Caller) -> dict[str, Any]:
    if body.envelope is None:
        raise BadInputError("a forced promotion needs the signed decision")
    gate_, decision = cp.force_promotion(body.model, body.version, body.alias, body.reason,
                                         sign=RemoteSignature(body.envelope))
    return {"decision": decision, "override": True, **gate_.to_dict()}
