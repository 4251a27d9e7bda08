"""Identity, key, role, token, namespace and trust-policy routes (admins write)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter

from chainproof.api._http import (
    Caller,
    Route,
)
from chainproof.wire import (
    DocumentBody,
    IdentityBody,
    KeyBody,
    ModeBody,
    RevokeBody,
    RoleBody,
    TokenBody,
)

router = APIRouter(route_class=Route)


@router.post("/v1/identities", status_code=201)
def create_identity(body: IdentityBody, cp: Caller) -> dict[str, Any]:
    cp.create_identity(body.name, body.kind)
    return {"name": body.name, "kind": body.kind}

@router.post("/v1/keys", status_code=201)
def register_key(body: KeyBody, cp: Caller) -> dict[str, Any]:
    return {"keyid": cp.register_key(body.identity, body.public_pem.encode())}

@router.post("/v1/keys/rotate", status_code=201)
def rotate_key(body: KeyBody, cp: Caller) -> dict[str, Any]:
    return {"keyid": cp.rotate_key(body.identity, body.public_pem.encode(), body.reason)}

@router.post("/v1/keys/{keyid}/revoke")
def revoke_key(keyid: str, body: RevokeBody, cp: Caller) -> dict[str, Any]:
    cp.revoke_key(keyid, body.reason, compromised=body.compromised)
    return {"keyid": keyid, "revoked": True}

@router.get("/v1/keys")
def list_keys(cp: Caller, identity: str | None = None) -> list[dict[str, Any]]:
    return cp.key_list(identity)

@router.post("/v1/roles", status_code=201)
def grant_role(body: RoleBody, cp: Caller) -> dict[str, Any]:
    cp.grant_role(body.identity, body.role, body.namespace)
    return body.model_dump()

@router.post("/v1/roles/revoke")
def revoke_role(body: RoleBody, cp: Caller) -> dict[str, Any]:
    cp.revoke_role(body.identity, body.role, body.namespace)
    return body.model_dump()

@router.get("/v1/roles")
def list_roles(cp: Caller) -> list[dict[str, Any]]:
    return cp.role_list()

@router.post("/v1/tokens", status_code=201)
def create_token(body: TokenBody, cp: Caller) -> dict[str, Any]:
    token_id, token = cp.create_token(body.identity, timedelta(hours=body.expires_hours))
    return {"id": token_id, "identity": body.identity, "token": token}

@router.post("/v1/tokens/{token_id}/revoke")
def revoke_token(token_id: str, cp: Caller) -> dict[str, Any]:
    cp.revoke_token(token_id)
    return {"id": token_id, "revoked": True}

@router.put("/v1/namespaces/{name}")
def set_namespace(name: str, body: ModeBody, cp: Caller) -> dict[str, Any]:
    cp.set_namespace_mode(name, body.mode)
    return {"name": name, "mode": body.mode}

@router.get("/v1/trust")
def trust(cp: Caller) -> dict[str, Any]:
    version, document = cp.trust_document()
    return {"version": version, "document": document}

@router.put("/v1/trust")
def set_trust(body: DocumentBody, cp: Caller) -> dict[str, Any]:
    return {"version": cp.set_trust_policy(body.document)}


@router.get("/v1/identities")
def list_identities(cp: Caller) -> list[dict[str, Any]]:
    return cp.identity_list()


@router.get("/v1/tokens")
def list_tokens(cp: Caller) -> list[dict[str, Any]]:
    """Tokens without their secrets (only hashes are stored)."""
    return cp.token_list()


@router.get("/v1/namespaces")
def list_namespaces(cp: Caller) -> list[dict[str, Any]]:
    return cp.namespace_list()
