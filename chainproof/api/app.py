"""The team server: every operation over HTTP, one identity per token, no private keys.

Stateless: any number of processes on one PostgreSQL and one object store behave as one (the
database serialises writes through the log head). Each request authenticates its bearer token,
acts as that token's identity with that identity's roles, and runs one operation — one
transaction. Statements that need a signature (step provenance, approvals, decisions) use a
prepare/commit pair: ``.../prepare`` returns the exact statement bytes (and writes nothing); the
client checks it is the statement it asked for, signs it with its own key and sends the envelope
back; the server rebuilds the statement inside the commit's transaction and accepts the envelope
only if the payload is byte-identical and signed by a registered, unrevoked key of the caller.

Request bodies are the models of :mod:`chainproof.wire` (shared with the client). The routes are
grouped by router: :mod:`.blobs`, :mod:`.assets`, :mod:`.access`, :mod:`.registry`,
:mod:`.audit`; the request machinery they share is in :mod:`._http`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DataError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from chainproof.api import access, assets, audit, blobs, registry
from chainproof.api._http import (
    ORJSON,
    BodyLimit,
    RateLimit,
    Route,
    error_response,
    invalid_response,
)
from chainproof.errors import BadInputError, ChainproofError, DatabaseError
from chainproof.ledger import audit as audit_mod
from chainproof.service import Chainproof
from chainproof.workspace import Settings


def create_app(settings: Settings) -> FastAPI:
    """The server for one database and one object store (``settings``)."""
    base = Chainproof.open(settings)
    base.check_server_ready()  # no log key: refuse to start, never a 500 on each request

    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        base.close()

    app = FastAPI(title="chainproof", version="1",
                  description="Signed, tamper-evident provenance for the ML pipeline.",
                  lifespan=lifespan, default_response_class=ORJSON)  # type: ignore[arg-type]
    app.router.route_class = Route
    app.add_middleware(BodyLimit)
    app.add_middleware(RateLimit)  # outermost: a throttled request costs nothing else
    app.exception_handler(ChainproofError)(lambda _r, exc: error_response(exc))
    app.exception_handler(RequestValidationError)(lambda _r, exc: invalid_response(exc))
    # FastAPI's own refusals (an unparsable body, a wrong method) in the same error schema.
    app.exception_handler(StarletteHTTPException)(lambda _r, exc: ORJSON(
        {"error": "NotFoundError" if exc.status_code == 404 else "BadInputError",
         "message": str(exc.detail), "hint": None, "problems": []},
        status_code=exc.status_code))
    # Reads outside a write transaction reach the driver directly: map its refusals too.
    app.exception_handler(DataError)(lambda _r, exc: error_response(BadInputError(
        f"the database refused a value: {getattr(exc, 'orig', exc)}",
        hint="remove NUL characters and out-of-range values")))
    app.exception_handler(PoolTimeoutError)(lambda _r, exc: error_response(DatabaseError(
        "no database connection became free in time", hint="retry; the server is busy")))
    app.state.base = base

    @app.get("/v1/health")
    def health() -> dict[str, Any]:
        """Liveness; no authentication."""
        return {"ok": True}

    @app.get("/v1/log-key")
    def log_key() -> dict[str, Any]:
        """The log's origin and public checkpoint key, to verify checkpoints independently."""
        return {"origin": base.settings.origin,
                "public_pem": audit_mod.public_pem(base.settings.log_public_path,
                                                   base.settings.log_key_path).decode()}

    for module in (blobs, assets, access, registry, audit):
        app.include_router(module.router)

    build_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build_openapi()
            schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
                "type": "http", "scheme": "bearer",
                "description": "an API token from `chainproof token create`"}
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
    return app
