"""The team server: every operation over HTTP, one identity per token, no private keys.

Stateless: any number of processes on one PostgreSQL and one object store behave as one (the
database serialises writes through the log head). Each request authenticates its bearer token,
acts as that token's identity with that identity's roles, and runs one service operation — one
transaction. Statements that need a signature (step provenance, approvals, decisions) use a
prepare/commit pair: ``.../prepare`` returns the exact statement bytes; the client signs them with
its own key and sends the envelope back; the server rebuilds the statement inside the commit's
transaction and accepts the envelope only if the payload is byte-identical and signed by a
registered, unrevoked key of the caller.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import functools
import hashlib
import inspect
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, model_validator
from sqlalchemy.exc import DataError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chainproof.access import grants
from chainproof.errors import (
    BadInputError,
    ChainproofError,
    DatabaseError,
    TooLargeError,
)
from chainproof.lineage.graph import step_dict, version_dict
from chainproof.records.assets import AssetKind
from chainproof.service import Chainproof, RemoteSignature, StepSubmission, StoredOutput
from chainproof.store._base import check_store_digest
from chainproof.workspace import Settings

MAX_JSON_BODY = 2 * 1024 * 1024
# Every integer a caller sends is bounded, so none reaches the database driver out of range.
MAX_VERSION = 2**31 - 1
MAX_SEQ = 2**62
MAX_BLOB = int(os.environ.get("CHAINPROOF_MAX_BLOB_BYTES", str(50 * 1024**3)))
_CHUNK = 1024 * 1024
#: Model files uploaded and registered in one request (their body is bytes, not JSON).
UPLOAD_PATH = "/v1/model-versions/upload"


# --- request bodies (pydantic: every field typed and bounded) -------------------------------------

Name = Annotated[str, Field(min_length=1, max_length=300)]
Text = Annotated[str, Field(max_length=10_000)]


def _refuse_lone_surrogates(value: Any, where: str = "body") -> None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{where}: text is not valid Unicode (a lone surrogate)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_lone_surrogates(key, where)
            _refuse_lone_surrogates(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for item in value:
            _refuse_lone_surrogates(item, where)


class _Body(BaseModel):
    """Every request body: strings must be encodable (JSON allows lone surrogates; UTF-8,
    the database and the log do not)."""

    @model_validator(mode="after")
    def _valid_text(self) -> _Body:
        _refuse_lone_surrogates(self.model_dump(mode="python"))
        return self


class OutputBody(_Body):
    kind: AssetKind
    name: Name
    namespace: Name | None = None
    digest: Name
    size: int = Field(ge=0, le=MAX_SEQ)
    is_directory: bool = False
    media_type: Name = "application/octet-stream"


class StepBody(_Body):
    id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    kind: Name
    namespace: Name = "default"
    inputs: list[Name] = Field(default_factory=list, max_length=10_000)
    outputs: list[OutputBody] = Field(default_factory=list, max_length=10_000)
    command: list[Text] = Field(default_factory=list, max_length=1_000)
    parameters: dict[str, Any] = Field(default_factory=dict)
    started_at: Name
    ended_at: Name
    environment: dict[str, Any] = Field(default_factory=dict)
    code_revision: dict[str, Any] = Field(default_factory=dict)
    error: Text | None = None

    def submission(self) -> StepSubmission:
        return StepSubmission(
            id=self.id, kind=self.kind, namespace=self.namespace, inputs=tuple(self.inputs),
            outputs=tuple(StoredOutput(o.kind, o.name, o.namespace, o.digest, o.size,
                                       o.is_directory, o.media_type) for o in self.outputs),
            command=tuple(self.command), parameters=self.parameters,
            started_at=self.started_at, ended_at=self.ended_at, environment=self.environment,
            code_revision=self.code_revision, error=self.error)


class SignedStepBody(_Body):
    step: StepBody
    envelope: Text | None = None


class AssetBody(_Body):
    namespace: Name = "default"
    name: Name
    kind: AssetKind
    digest: Name
    is_directory: bool = False
    media_type: Name = "application/octet-stream"


class IdentityBody(_Body):
    name: Name
    kind: Name = "person"


class KeyBody(_Body):
    identity: Name
    public_pem: Annotated[str, Field(max_length=20_000)]
    reason: Text = "rotated"


class RevokeBody(_Body):
    reason: Text


class RoleBody(_Body):
    identity: Name
    role: Name
    namespace: Name


class TokenBody(_Body):
    identity: Name
    expires_hours: int = Field(default=24 * 30, ge=1, le=24 * 366)


class ModeBody(_Body):
    mode: Name


class DocumentBody(_Body):
    document: Annotated[str, Field(max_length=1_000_000)]


class ModelBody(_Body):
    model: Name


class ModelVersionBody(_Body):
    """Either ``asset`` (an existing model asset version) or ``digest`` (uploaded bytes, which
    become a model asset version named ``asset_name``, by default the model's name)."""

    model: Name
    asset: Name | None = None
    digest: Name | None = None
    asset_name: Name | None = None
    media_type: Name = "application/octet-stream"
    is_directory: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> ModelVersionBody:
        if (self.asset is None) == (self.digest is None):
            raise ValueError("give exactly one of 'asset' (NAME@VERSION) and 'digest' "
                             "(uploaded bytes)")
        return self


class AliasBody(_Body):
    model: Name
    version: int = Field(ge=1, le=MAX_VERSION)
    alias: Name


class ForceBody(AliasBody):
    reason: Text
    envelope: Text | None = None


class ReviewBody(_Body):
    decision: Annotated[str, Field(pattern="^(approve|reject)$")]
    reason: Text | None = None
    envelope: Text | None = None


class ExecuteBody(_Body):
    auto: bool = False
    envelope: Text | None = None


class WitnessBody(_Body):
    witness_notes: list[Annotated[str, Field(max_length=100_000)]] = Field(
        default_factory=list, max_length=10_000)


# --- the app --------------------------------------------------------------------------------------


class _BodyLimit:
    """Refuse oversized bodies: at once when Content-Length says so, otherwise (chunked
    uploads) as soon as the bytes received pass the limit. Blobs have their own, larger limit.

    Plain ASGI rather than Starlette's ``BaseHTTPMiddleware``, which costs a task and a memory
    stream per request on the hot path of every call."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        limit = MAX_BLOB if path.startswith("/v1/blobs/") or path == UPLOAD_PATH else MAX_JSON_BODY
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None and (not length.isdigit() or int(length) > limit):
            await _too_large(limit)(scope, receive, send)
            return
        received, cut_off, answered = 0, False, False

        async def limited_receive() -> Message:
            # Past the limit the app is told the client went away (it stops reading and
            # changes nothing); its answer to that is replaced by the 413 below.
            nonlocal received, cut_off
            if cut_off:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    cut_off = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal answered
            if cut_off and not answered:
                return
            answered = answered or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not cut_off or answered:
                raise
        if cut_off and not answered:
            await _too_large(limit)(scope, receive, send)


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse({"error": "TooLargeError",
                         "message": f"request body larger than {limit} bytes",
                         "hint": "split the request", "problems": []}, status_code=413)


class _PendingCaller:
    """A request's bearer token, not yet checked: the token is checked in the worker thread
    that runs the endpoint, before the endpoint runs, so a request costs one thread hop."""

    def __init__(self, base: Chainproof, token: str) -> None:
        self._base = base
        self._token = token

    @classmethod
    def of(cls, request: Request) -> _PendingCaller:
        authorization = request.headers.get("authorization") or ""
        return cls(request.app.state.base, authorization.removeprefix("Bearer ").strip())

    def authenticate(self) -> Chainproof:
        """The service acting as the token's identity; AuthenticationError (401) otherwise."""
        return self._base.acting_as(grants.authenticate(self._base.engine, self._token))


async def _caller(request: Request) -> _PendingCaller:
    return _PendingCaller.of(request)


#: A synchronous endpoint's caller, authenticated before the endpoint body runs.
Caller = Annotated[Chainproof, Depends(_caller)]
#: An asynchronous endpoint's caller: it must ``await _authenticated(caller)`` before anything.
PendingCaller = Annotated[_PendingCaller, Depends(_caller)]


def _caller_kind(annotation: Any) -> bool | None:
    """True for a ``Caller`` parameter, False for a ``PendingCaller``, None for anything else
    (annotations may be strings, with ``from __future__ import annotations``, or objects)."""
    if annotation in ("Caller", Caller):
        return True
    if annotation in ("PendingCaller", PendingCaller) or annotation is _PendingCaller:
        return False
    return None


async def _authenticated(caller: _PendingCaller) -> Chainproof:
    return await _in_worker(caller.authenticate)


async def _in_worker(function: Callable[..., Any], *args: Any) -> Any:
    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(
        _WORKERS, functools.partial(context.run, function, *args))


# Blocking work (database, object store, hashing) runs here, off the event loop. Sized like
# Starlette's default thread pool.
_WORKERS = ThreadPoolExecutor(max_workers=40, thread_name_prefix="chainproof-api")


def _call_authenticated(endpoint: Callable[..., Any], arguments: dict[str, Any],
                        status_code: int) -> Any:
    resolved = {name: value.authenticate() if isinstance(value, _PendingCaller) else value
                for name, value in arguments.items()}
    return _respond(endpoint(**resolved), status_code)


def _respond(result: Any, status_code: int) -> Any:
    # Rendered here, in the worker, as orjson bytes: FastAPI would otherwise walk the result
    # with jsonable_encoder on the event loop first.
    return result if isinstance(result, Response) else _JSON(result, status_code=status_code)


def _adapt(endpoint: Callable[..., Any], status_code: int) -> tuple[Callable[..., Any], bool]:
    """The endpoint as FastAPI sees it, and whether it needs a token.

    Its caller parameters are filled from the request's Authorization header here instead of by
    FastAPI's dependency machinery (which costs more than the rest of the request handling),
    and a synchronous endpoint runs in a worker thread together with its authentication."""
    signature = inspect.signature(endpoint)
    callers = {name: kind for name, p in signature.parameters.items()
               if (kind := _caller_kind(p.annotation)) is not None}
    is_async = inspect.iscoroutinefunction(endpoint)
    if is_async and any(callers.values()):
        raise TypeError(f"async endpoint {endpoint.__name__} takes a Caller: take a "
                        "PendingCaller and await _authenticated(it) first")
    if not is_async and not all(callers.values()):
        raise TypeError(f"endpoint {endpoint.__name__} takes a PendingCaller: take a Caller")
    if not callers and is_async:
        return endpoint, False
    parameters = [p for name, p in signature.parameters.items() if name not in callers]
    # FastAPI passes the request to one parameter only: share the endpoint's own, if any.
    own = next((name for name, p in signature.parameters.items()
                if p.annotation in ("Request", Request)), None)
    if callers and own is None:
        parameters.append(inspect.Parameter("_request", inspect.Parameter.KEYWORD_ONLY,
                                            annotation=Request))

    async def run(**arguments: Any) -> Any:
        if callers:
            request = arguments[own] if own else arguments.pop("_request")
            arguments.update(dict.fromkeys(callers, _PendingCaller.of(request)))
        if is_async:
            return await endpoint(**arguments)
        return await _in_worker(_call_authenticated, endpoint, arguments, status_code)

    run.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    run.__name__, run.__qualname__ = endpoint.__name__, endpoint.__qualname__
    run.__doc__, run.__module__ = endpoint.__doc__, endpoint.__module__
    return run, bool(callers)


class _Route(APIRoute):
    """How every endpoint runs.

    * Parameters typed ``Caller`` (synchronous endpoints) or ``PendingCaller`` (asynchronous
      ones, which must ``await _authenticated(...)`` before anything else) come from the
      request's bearer token; the OpenAPI spec lists the bearer scheme for those operations.
    * A synchronous endpoint runs in a worker thread together with its caller's
      authentication, and its result is rendered there.
    * No response models: endpoints return JSON-ready dicts and lists. With one (inferred from
      ``-> dict[str, Any]``) FastAPI would validate every response against ``dict[str, Any]``,
      in yet another thread hop, for nothing.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        kwargs["response_model"] = None
        endpoint, needs_token = _adapt(endpoint, kwargs.get("status_code") or 200)
        if needs_token:
            kwargs["openapi_extra"] = {"security": [{"bearer": []}],
                                       **(kwargs.get("openapi_extra") or {})}
        super().__init__(path, endpoint, **kwargs)


class _JSON(JSONResponse):
    """JSON bodies rendered by orjson (several times faster than the standard library)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _safe(text: str | None) -> str | None:
    """Error texts may quote user input; make sure they can always be encoded."""
    return None if text is None else text.encode("utf-8", "backslashreplace").decode("utf-8")


def _error(exc: ChainproofError) -> JSONResponse:
    return JSONResponse({"error": type(exc).__name__, "message": _safe(exc.message),
                         "hint": _safe(exc.hint),
                         "problems": [_safe(p) for p in getattr(exc, "problems", [])]},
                        status_code=exc.http_status)


def _check_upload(actual_hex: str, expected_hex: str, digest: str) -> None:
    if actual_hex != expected_hex:
        raise BadInputError(f"uploaded bytes hash to sha256:{actual_hex}, not {digest}",
                            hint="upload the right bytes")


async def _store_upload(request: Request, caller: _PendingCaller, digest: str,
                        then: Callable[[Chainproof, int], dict[str, Any]]) -> dict[str, Any]:
    """Store a request body that must hash to ``digest``, then ``then(cp, size)`` in a worker.

    Bodies up to the JSON limit are held in memory and authenticated, checked, stored and
    followed up in one worker-thread hop. Larger ones are authenticated first, then streamed
    to a temporary file with a running hash and the blob size limit."""
    expected = check_store_digest(digest)
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) <= MAX_JSON_BODY:
        data = await request.body()

        def store_small() -> dict[str, Any]:
            cp = caller.authenticate()
            _check_upload(hashlib.sha256(data).hexdigest(), expected, digest)
            cp.store.put_bytes(data)
            return then(cp, len(data))

        return dict(await _in_worker(store_small))
    cp = await _authenticated(caller)
    hasher = hashlib.sha256()
    size = 0
    with tempfile.NamedTemporaryFile(prefix="chainproof-upload-", delete=False) as tmp:
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BLOB:
                    raise TooLargeError(f"blob larger than {MAX_BLOB} bytes",
                                        hint="raise CHAINPROOF_MAX_BLOB_BYTES on the server")
                hasher.update(chunk)
                tmp.write(chunk)
            tmp.close()
            _check_upload(hasher.hexdigest(), expected, digest)
            await _in_worker(cp.store.put_file_expecting, Path(tmp.name), digest)
        finally:
            Path(tmp.name).unlink(missing_ok=True)
    return dict(await _in_worker(then, cp, size))


def _gate_after_commit(cp: Chainproof, request_id: str) -> dict[str, Any]:
    """The gate for a request just committed. If evaluating it fails, the write still stands:
    answer 201 with the reason instead of an error that would hide the committed request."""
    try:
        return dict(cp.check_request(request_id).to_dict())
    except ChainproofError as exc:
        return {"gate_error": exc.message}


def _payload(data: bytes | None) -> dict[str, Any]:
    return {"payload": base64.b64encode(data).decode() if data is not None else None}


def create_app(settings: Settings) -> FastAPI:
    """The server for one database and one object store (``settings``)."""
    base = Chainproof.open(settings)

    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        base.close()

    app = FastAPI(title="chainproof", version="1",
                  description="Signed, tamper-evident provenance for the ML pipeline.",
                  lifespan=lifespan, default_response_class=_JSON)  # type: ignore[arg-type]
    app.router.route_class = _Route
    app.add_middleware(_BodyLimit)
    app.exception_handler(ChainproofError)(lambda _r, exc: _error(exc))
    # Reads outside a write transaction reach the driver directly: map its refusals too.
    app.exception_handler(DataError)(lambda _r, exc: _error(BadInputError(
        f"the database refused a value: {getattr(exc, 'orig', exc)}",
        hint="remove NUL characters and out-of-range values")))
    app.exception_handler(PoolTimeoutError)(lambda _r, exc: _error(DatabaseError(
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
                "public_pem": base.settings.log_public_path.read_text()}

    # --- blobs ------------------------------------------------------------------------------------

    @app.put("/v1/blobs/{digest}", status_code=201)
    async def put_blob(digest: str, request: Request, caller: PendingCaller) -> dict[str, Any]:
        """Upload bytes; stored only if they hash to ``digest`` (streamed, size-limited)."""
        return await _store_upload(request, caller, digest,
                                   lambda _cp, size: {"digest": digest, "size": size})

    @app.get("/v1/blobs/{digest}")
    def get_blob(digest: str, cp: Caller,
                 within: Annotated[str | None, Query(max_length=300)] = None
                 ) -> StreamingResponse:
        """Download bytes, verified against ``digest`` before the first byte is sent. Only the
        bytes of an asset version the caller may read, or (``within=MANIFEST_DIGEST``) a file
        listed in the manifest of a directory asset version the caller may read."""
        check_store_digest(digest)
        if within is not None:
            check_store_digest(within)
        cp.check_blob_readable(digest, within=within)
        scratch = tempfile.mkdtemp(prefix="chainproof-download-")
        path = Path(scratch) / "blob"
        cp.store.fetch(digest, path)

        def stream() -> Iterator[bytes]:
            try:
                with path.open("rb") as fh:
                    while chunk := fh.read(_CHUNK):
                        yield chunk
            finally:
                path.unlink(missing_ok=True)
                os.rmdir(scratch)

        return StreamingResponse(stream(), media_type="application/octet-stream")

    # --- assets, lineage, verification ------------------------------------------------------------

    @app.post("/v1/assets", status_code=201)
    def add_asset(body: AssetBody, cp: Caller) -> dict[str, Any]:
        result = cp.add_stored(digest=body.digest, kind=body.kind, name=body.name,
                               namespace=body.namespace, media_type=body.media_type,
                               is_directory=body.is_directory)
        return {"created": result.created, **version_dict(result.version)}

    @app.get("/v1/assets")
    def list_assets(cp: Caller, namespace: str | None = None,
                    kind: str | None = None) -> list[dict[str, Any]]:
        return [version_dict(v) for v in cp.all_versions(namespace=namespace, kind=kind)]

    @app.get("/v1/assets/{ref:path}")
    def show_asset(ref: str, cp: Caller) -> dict[str, Any]:
        return cp.show(ref)

    @app.get("/v1/resolve/{ref:path}")
    def resolve(ref: str, cp: Caller) -> dict[str, Any]:
        version = cp.resolve(ref)
        cp._read_check(version.namespace, f"read {ref}")
        return version_dict(version)

    @app.get("/v1/lineage/{ref:path}")
    def lineage(ref: str, cp: Caller,
                direction: Annotated[str, Query(pattern="^(upstream|downstream)$")] = "upstream"
                ) -> dict[str, Any]:
        return cp.lineage(ref, direction=direction).to_dict()

    @app.get("/v1/explain/{ref:path}")
    def explain(ref: str, cp: Caller, verify: bool = True) -> dict[str, Any]:
        return cp.explain(ref, verify=verify)

    @app.get("/v1/verify/{ref:path}")
    def verify_chain(ref: str, cp: Caller) -> dict[str, Any]:
        """The whole provenance chain under the trust policy; 422 listing every failed link."""
        return dict(cp.verify_chain(ref).to_dict())

    @app.get("/v1/verify-bytes")
    def verify_all_bytes(cp: Caller) -> dict[str, Any]:
        """Re-hash every stored version (422 listing each mismatch)."""
        return {"ok": True, "verified": [v.ref for v in cp.verify(None)]}

    @app.get("/v1/verify-bytes/{ref:path}")
    def verify_bytes(ref: str, cp: Caller) -> dict[str, Any]:
        return {"ok": True, "verified": [v.ref for v in cp.verify(ref)]}

    @app.get("/v1/attestations/{ref:path}")
    def attestations(ref: str, cp: Caller) -> list[str]:
        return cp.export_attestations(ref)

    @app.get("/v1/load/{ref:path}")
    def load(ref: str, cp: Caller, allow_override: bool = False) -> dict[str, Any]:
        """Verify a MODEL@ALIAS for loading (decision, approvals, chain, scan); the client then
        downloads the blob and re-hashes it."""
        with tempfile.TemporaryDirectory(prefix="chainproof-load-") as scratch:
            loaded = cp.load_model(ref, allow_override=allow_override,
                                   dest=Path(scratch) / "model")
        return {**loaded.to_dict(), "path": None}

    # --- steps ------------------------------------------------------------------------------------

    @app.post("/v1/steps/prepare")
    def prepare_step(body: StepBody, cp: Caller) -> dict[str, Any]:
        """The provenance statement to sign for this step (nothing is written)."""
        return _payload(cp.prepare_step(body.submission()))

    @app.post("/v1/steps", status_code=201)
    def submit_step(body: SignedStepBody, cp: Caller) -> dict[str, Any]:
        sub = body.step.submission()
        if sub.outputs and sub.error is None and body.envelope is None:
            raise BadInputError("a step with outputs needs its signed provenance envelope",
                                hint="POST /v1/steps/prepare, sign the payload, send it here")
        sign = RemoteSignature(body.envelope or "")
        try:
            result = cp.submit_step(sub, sign=sign, verify_stored=True)
        except ChainproofError as exc:
            if sub.error is not None and type(exc).__name__ == "StepFailedError":
                return {"step": {"id": sub.id, "status": "failed"}, "outputs": []}
            raise
        return {"step": step_dict(result.step),
                "outputs": [version_dict(v) for v in result.outputs]}

    # --- identities, keys, roles, tokens, namespaces, trust ---------------------------------------

    @app.post("/v1/identities", status_code=201)
    def create_identity(body: IdentityBody, cp: Caller) -> dict[str, Any]:
        cp.create_identity(body.name, body.kind)
        return {"name": body.name, "kind": body.kind}

    @app.post("/v1/keys", status_code=201)
    def register_key(body: KeyBody, cp: Caller) -> dict[str, Any]:
        return {"keyid": cp.register_key(body.identity, body.public_pem.encode())}

    @app.post("/v1/keys/rotate", status_code=201)
    def rotate_key(body: KeyBody, cp: Caller) -> dict[str, Any]:
        return {"keyid": cp.rotate_key(body.identity, body.public_pem.encode(), body.reason)}

    @app.post("/v1/keys/{keyid}/revoke")
    def revoke_key(keyid: str, body: RevokeBody, cp: Caller) -> dict[str, Any]:
        cp.revoke_key(keyid, body.reason)
        return {"keyid": keyid, "revoked": True}

    @app.get("/v1/keys")
    def list_keys(cp: Caller, identity: str | None = None) -> list[dict[str, Any]]:
        return cp.key_list(identity)

    @app.post("/v1/roles", status_code=201)
    def grant_role(body: RoleBody, cp: Caller) -> dict[str, Any]:
        cp.grant_role(body.identity, body.role, body.namespace)
        return body.model_dump()

    @app.post("/v1/roles/revoke")
    def revoke_role(body: RoleBody, cp: Caller) -> dict[str, Any]:
        cp.revoke_role(body.identity, body.role, body.namespace)
        return body.model_dump()

    @app.get("/v1/roles")
    def list_roles(cp: Caller) -> list[dict[str, Any]]:
        return cp.role_list()

    @app.post("/v1/tokens", status_code=201)
    def create_token(body: TokenBody, cp: Caller) -> dict[str, Any]:
        from datetime import timedelta

        token_id, token = cp.create_token(body.identity, timedelta(hours=body.expires_hours))
        return {"id": token_id, "identity": body.identity, "token": token}

    @app.post("/v1/tokens/{token_id}/revoke")
    def revoke_token(token_id: str, cp: Caller) -> dict[str, Any]:
        cp.revoke_token(token_id)
        return {"id": token_id, "revoked": True}

    @app.put("/v1/namespaces/{name}")
    def set_namespace(name: str, body: ModeBody, cp: Caller) -> dict[str, Any]:
        cp.set_namespace_mode(name, body.mode)
        return {"name": name, "mode": body.mode}

    @app.get("/v1/trust")
    def trust(cp: Caller) -> dict[str, Any]:
        version, document = cp.trust_document()
        return {"version": version, "document": document}

    @app.put("/v1/trust")
    def set_trust(body: DocumentBody, cp: Caller) -> dict[str, Any]:
        return {"version": cp.set_trust_policy(body.document)}

    # --- registry and promotion -------------------------------------------------------------------

    @app.post("/v1/models", status_code=201)
    def create_model(body: ModelBody, cp: Caller) -> dict[str, Any]:
        cp.create_model(body.model)
        return {"model": body.model}

    @app.post(UPLOAD_PATH, status_code=201)
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
            result = cp._register_model_bytes(model, digest, size, False, media_type,
                                              asset_name)
            return {"model": result.model, "version": result.version,
                    "asset": version_dict(result.asset), "asset_created": result.asset_created}

        return await _store_upload(request, caller, digest, register)

    @app.post("/v1/model-versions", status_code=201)
    def register_version(body: ModelVersionBody, cp: Caller) -> dict[str, Any]:
        if body.asset is not None:
            return {"model": body.model,
                    "version": cp.register_model_version(body.model, body.asset)}
        assert body.digest is not None
        result = cp.register_model_stored(body.model, digest=body.digest,
                                          asset_name=body.asset_name,
                                          media_type=body.media_type,
                                          is_directory=body.is_directory)
        return {"model": result.model, "version": result.version,
                "asset": version_dict(result.asset), "asset_created": result.asset_created}

    @app.get("/v1/models/{model:path}")
    def model_versions(model: str, cp: Caller) -> dict[str, Any]:
        return cp.model_versions(model)

    @app.put("/v1/aliases")
    def set_alias(body: AliasBody, cp: Caller) -> dict[str, Any]:
        cp.set_alias(body.model, body.version, body.alias)
        return body.model_dump()

    @app.get("/v1/aliases/{model:path}")
    def resolve_alias(model: str, alias: str, cp: Caller) -> dict[str, Any]:
        return cp.resolve_alias(model, alias)

    @app.get("/v1/policy")
    def policy(cp: Caller) -> dict[str, Any]:
        version, document = cp.promotion_policy()
        return {"version": version, "document": document}

    @app.put("/v1/policy")
    def set_policy(body: DocumentBody, cp: Caller) -> dict[str, Any]:
        return {"version": cp.set_promotion_policy(body.document)}

    @app.get("/v1/policy/check")
    def policy_check(model: str, version: Annotated[int, Query(ge=1, le=MAX_VERSION)], alias: str,
                     cp: Caller) -> dict[str, Any]:
        return cp.check_promotion(model, version, alias).to_dict()

    @app.post("/v1/promotions", status_code=201)
    def request_promotion(body: AliasBody, cp: Caller) -> dict[str, Any]:
        request_id = cp.request_promotion(body.model, body.version, body.alias)
        return {"id": request_id, **_gate_after_commit(cp, request_id)}

    @app.get("/v1/promotions")
    def list_promotions(cp: Caller, status: str | None = None) -> list[dict[str, Any]]:
        return cp.promotion_requests(status)

    @app.get("/v1/promotions/{request_id}/gate")
    def gate(request_id: str, cp: Caller) -> dict[str, Any]:
        return cp.check_request(request_id).to_dict()

    @app.post("/v1/promotions/{request_id}/reviews/prepare")
    def prepare_review(request_id: str, body: ReviewBody, cp: Caller) -> dict[str, Any]:
        return _payload(cp.prepare_review(request_id, body.decision, body.reason))

    @app.post("/v1/promotions/{request_id}/reviews", status_code=201)
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

    @app.post("/v1/promotions/{request_id}/execute/prepare")
    def prepare_execute(request_id: str, body: ExecuteBody, cp: Caller) -> dict[str, Any]:
        return _payload(cp.prepare_execute(request_id, auto=body.auto))

    @app.post("/v1/promotions/{request_id}/execute")
    def execute(request_id: str, body: ExecuteBody, cp: Caller) -> dict[str, Any]:
        if body.envelope is None:
            raise BadInputError("executing a promotion needs the signed decision",
                                hint="POST .../execute/prepare, sign the payload, send it here")
        gate_, decision = cp.execute_promotion(request_id, sign=RemoteSignature(body.envelope),
                                               auto=body.auto)
        return {"decision": decision, **gate_.to_dict()}

    @app.post("/v1/promotions/force/prepare")
    def prepare_force(body: ForceBody, cp: Caller) -> dict[str, Any]:
        return _payload(cp.prepare_force(body.model, body.version, body.alias, body.reason))

    @app.post("/v1/promotions/force")
    def force(body: ForceBody, cp: Caller) -> dict[str, Any]:
        if body.envelope is None:
            raise BadInputError("a forced promotion needs the signed decision")
        gate_, decision = cp.force_promotion(body.model, body.version, body.alias, body.reason,
                                             sign=RemoteSignature(body.envelope))
        return {"decision": decision, "override": True, **gate_.to_dict()}

    # --- audit ------------------------------------------------------------------------------------

    @app.post("/v1/audit/verify")
    def audit_verify(body: WitnessBody, cp: Caller) -> dict[str, Any]:
        return cp.audit_verify(body.witness_notes).to_dict()

    @app.get("/v1/audit/log")
    def audit_log(cp: Caller, action: str | None = None, actor: str | None = None,
                  object: str | None = None,
                  limit: Annotated[int, Query(ge=1, le=10_000)] = 50) -> list[dict[str, Any]]:
        return cp.audit_log(action=action, actor=actor, obj=object, limit=limit)

    @app.get("/v1/audit/checkpoint")
    def audit_checkpoint(cp: Caller) -> dict[str, Any]:
        return cp.latest_checkpoint()

    @app.get("/v1/audit/proof/{seq}")
    def audit_proof(seq: Annotated[int, PathParam(ge=0, le=MAX_SEQ)], cp: Caller,
                    size: Annotated[int | None, Query(ge=1, le=MAX_SEQ)] = None
                    ) -> dict[str, Any]:
        return cp.prove(seq, size)

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
