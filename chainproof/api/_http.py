"""The team server's request machinery, shared by its routers (:mod:`chainproof.api.app`):
the caller's bearer token checked in the worker thread that runs the endpoint, body limits,
orjson responses, the error schema (``{"error", "message", "hint", "problems"}``), verified
uploads, and upload receipts (:mod:`chainproof.access.receipts`)."""

from __future__ import annotations

import asyncio
import base64
import contextvars
import functools
import hashlib
import inspect
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chainproof.access import grants, receipts
from chainproof.errors import (
    BadInputError,
    ChainproofError,
    RateLimitedError,
    TooLargeError,
)
from chainproof.service import Chainproof
from chainproof.store._base import check_store_digest
from chainproof.wire import (
    MAX_JSON_BODY,
)

# Every integer a caller sends is bounded, so none reaches the database driver out of range.
MAX_BLOB = int(os.environ.get("CHAINPROOF_MAX_BLOB_BYTES", str(50 * 1024**3)))
CHUNK = 1024 * 1024
#: Model files uploaded and registered in one request (their body is bytes, not JSON).
UPLOAD_PATH = "/v1/model-versions/upload"


# --- the app --------------------------------------------------------------------------------------


class RateLimit:
    """Requests per bearer token, per server process: a token bucket refilled at
    ``CHAINPROOF_RATE_LIMIT`` requests a second (default 1000) holding at most
    ``CHAINPROOF_RATE_BURST`` (default twice the rate); 0 turns it off. Over the limit the
    answer is 429 in the error schema, with ``Retry-After``, before any other work. Tokens are
    keyed by their SHA-256 (the bucket table holds no secret); the table is bounded.

    Plain ASGI, like :class:`BodyLimit`, to stay off the hot path's budget."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.rate = float(os.environ.get("CHAINPROOF_RATE_LIMIT", "1000"))
        self.burst = float(os.environ.get("CHAINPROOF_RATE_BURST", str(2 * self.rate)))
        self.buckets: dict[bytes, tuple[float, float]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.rate <= 0:
            await self.app(scope, receive, send)
            return
        token = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        if not token:
            await self.app(scope, receive, send)  # refused later, as unauthenticated
            return
        key = hashlib.sha256(token).digest()
        now = time.monotonic()
        level, last = self.buckets.get(key, (self.burst, now))
        level = min(self.burst, level + (now - last) * self.rate)
        if level < 1:
            wait = (1 - level) / self.rate
            response = error_response(RateLimitedError(
                f"more than {self.rate:g} requests a second with this token",
                hint=f"retry in {wait:.2f} s (the operator sets CHAINPROOF_RATE_LIMIT)"))
            response.headers["Retry-After"] = str(max(1, int(wait + 0.999)))
            await response(scope, receive, send)
            return
        if len(self.buckets) > 100_000:
            self.buckets.clear()  # bounded memory; at worst a burst is granted again
        self.buckets[key] = (level - 1, now)
        await self.app(scope, receive, send)


#: JSON bodies larger than this are parsed only after the caller's token checked out.
AUTH_FIRST_BYTES = 64 * 1024


class BodyLimit:
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
        if length is not None and (not (length.isascii() and length.isdigit())
                                   or int(length) > limit):
            await too_large(limit)(scope, receive, send)
            return
        if limit == MAX_JSON_BODY and scope.get("method") != "GET" and (
                length is None or int(length) > AUTH_FIRST_BYTES):
            # A large (or chunked) JSON body is parsed only for a caller whose token is good:
            # an unauthenticated client cannot make the server parse megabytes.
            token = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
            base = scope["app"].state.base
            try:
                await in_worker(grants.authenticate, base.engine,
                                bearer_token(token.decode("latin-1")))
            except ChainproofError as exc:
                await error_response(exc)(scope, receive, send)
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
            await too_large(limit)(scope, receive, send)


def too_large(limit: int) -> JSONResponse:
    return JSONResponse({"error": "TooLargeError",
                         "message": f"request body larger than {limit} bytes",
                         "hint": "split the request", "problems": []}, status_code=413)


def bearer_token(authorization: str) -> str:
    """The token of an ``Authorization: Bearer <token>`` header (the scheme is
    case-insensitive, RFC 7235)."""
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class PendingCallerToken:
    """A request's bearer token, not yet checked: the token is checked in the worker thread
    that runs the endpoint, before the endpoint runs, so a request costs one thread hop."""

    def __init__(self, base: Chainproof, token: str) -> None:
        self._base = base
        self._token = token

    @classmethod
    def of(cls, request: Request) -> PendingCallerToken:
        return cls(request.app.state.base,
                   bearer_token(request.headers.get("authorization") or ""))

    def authenticate(self) -> Chainproof:
        """The service acting as the token's identity; AuthenticationError (401) otherwise."""
        return self._base.acting_as(grants.authenticate(self._base.engine, self._token))


async def caller_of(request: Request) -> PendingCallerToken:
    return PendingCallerToken.of(request)


#: A synchronous endpoint's caller, authenticated before the endpoint body runs.
Caller = Annotated[Chainproof, Depends(caller_of)]
#: An asynchronous endpoint's caller: it must ``await authenticated(caller)`` before anything.
PendingCaller = Annotated[PendingCallerToken, Depends(caller_of)]


def caller_kind(annotation: Any) -> bool | None:
    """True for a ``Caller`` parameter, False for a ``PendingCaller``, None for anything else
    (annotations may be strings, with ``from __future__ import annotations``, or objects)."""
    if annotation in ("Caller", Caller):
        return True
    if annotation in ("PendingCaller", PendingCaller) or annotation is PendingCallerToken:
        return False
    return None


async def authenticated(caller: PendingCallerToken) -> Chainproof:
    return await in_worker(caller.authenticate)


async def in_worker(function: Callable[..., Any], *args: Any) -> Any:
    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(
        WORKERS, functools.partial(context.run, function, *args))


# Blocking work (database, object store, hashing) runs here, off the event loop. Sized like
# Starlette's default thread pool.
WORKERS = ThreadPoolExecutor(max_workers=40, thread_name_prefix="chainproof-api")


def call_authenticated(endpoint: Callable[..., Any], arguments: dict[str, Any],
                        status_code: int) -> Any:
    resolved = {name: value.authenticate() if isinstance(value, PendingCallerToken) else value
                for name, value in arguments.items()}
    return respond(endpoint(**resolved), status_code)


def respond(result: Any, status_code: int) -> Any:
    # Rendered here, in the worker, as orjson bytes: FastAPI would otherwise walk the result
    # with jsonable_encoder on the event loop first.
    return result if isinstance(result, Response) else ORJSON(result, status_code=status_code)


def adapt(endpoint: Callable[..., Any], status_code: int) -> tuple[Callable[..., Any], bool]:
    """The endpoint as FastAPI sees it, and whether it needs a token.

    Its caller parameters are filled from the request's Authorization header here instead of by
    FastAPI's dependency machinery (which costs more than the rest of the request handling),
    and a synchronous endpoint runs in a worker thread together with its authentication."""
    # Annotations are resolved in the endpoint's own module (its routers use postponed
    # annotations): the wrapper below lives here, where FastAPI would look them up otherwise.
    try:
        signature = inspect.signature(endpoint, eval_str=True)
    except NameError:  # an annotation naming something its module does not define
        signature = inspect.signature(endpoint)
    callers = {name: kind for name, p in signature.parameters.items()
               if (kind := caller_kind(p.annotation)) is not None}
    is_async = inspect.iscoroutinefunction(endpoint)
    if is_async and any(callers.values()):
        raise TypeError(f"async endpoint {endpoint.__name__} takes a Caller: take a "
                        "PendingCaller and await authenticated(it) first")
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
            arguments.update(dict.fromkeys(callers, PendingCallerToken.of(request)))
        if is_async:
            return await endpoint(**arguments)
        return await in_worker(call_authenticated, endpoint, arguments, status_code)

    run.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    run.__name__, run.__qualname__ = endpoint.__name__, endpoint.__qualname__
    run.__doc__, run.__module__ = endpoint.__doc__, endpoint.__module__
    return run, bool(callers)


class Route(APIRoute):
    """How every endpoint runs.

    * Parameters typed ``Caller`` (synchronous endpoints) or ``PendingCaller`` (asynchronous
      ones, which must ``await authenticated(...)`` before anything else) come from the
      request's bearer token; the OpenAPI spec lists the bearer scheme for those operations.
    * A synchronous endpoint runs in a worker thread together with its caller's
      authentication, and its result is rendered there.
    * No response models: endpoints return JSON-ready dicts and lists. With one (inferred from
      ``-> dict[str, Any]``) FastAPI would validate every response against ``dict[str, Any]``,
      in yet another thread hop, for nothing.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        kwargs["response_model"] = None
        endpoint, needs_token = adapt(endpoint, kwargs.get("status_code") or 200)
        if needs_token:
            kwargs["openapi_extra"] = {"security": [{"bearer": []}],
                                       **(kwargs.get("openapi_extra") or {})}
        super().__init__(path, endpoint, **kwargs)


class ORJSON(JSONResponse):
    """JSON bodies rendered by orjson (several times faster than the standard library)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def safe_text(text: str | None) -> str | None:
    """Error texts may quote user input; make sure they can always be encoded."""
    return None if text is None else text.encode("utf-8", "backslashreplace").decode("utf-8")


def error_response(exc: ChainproofError) -> JSONResponse:
    return JSONResponse({"error": type(exc).__name__, "message": safe_text(exc.message),
                         "hint": safe_text(exc.hint),
                         "problems": [safe_text(p) for p in getattr(exc, "problems", [])]},
                        status_code=exc.http_status)


def invalid_response(exc: RequestValidationError) -> JSONResponse:
    """A request the wire schema refuses: 422 in the server's error schema, naming each field
    and what is wrong with it (never echoing the value, which may not even be JSON)."""
    problems = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
                for e in exc.errors()][:50]
    return JSONResponse({"error": "BadInputError", "message": "invalid request: "
                         + (problems[0] if problems else "malformed body"),
                         "hint": "see /openapi.json for the request schema",
                         "problems": [safe_text(p) for p in problems]}, status_code=422)


def check_upload(actual_hex: str, expected_hex: str, digest: str) -> None:
    if actual_hex != expected_hex:
        raise BadInputError(f"uploaded bytes hash to sha256:{actual_hex}, not {digest}",
                            hint="upload the right bytes")


async def store_upload(request: Request, caller: PendingCallerToken, digest: str,
                        then: Callable[[Chainproof, int], dict[str, Any]]) -> dict[str, Any]:
    """Store a request body that must hash to ``digest``, then ``then(cp, size)`` in a worker.

    Bodies up to the JSON limit are held in memory and authenticated, checked, stored and
    followed up in one worker-thread hop. Larger ones are authenticated first, then streamed
    to a temporary file with a running hash and the blob size limit."""
    expected = check_store_digest(digest)
    length = request.headers.get("content-length", "")
    if length.isascii() and length.isdigit() and int(length) <= MAX_JSON_BODY:
        data = await request.body()

        def store_small() -> dict[str, Any]:
            cp = caller.authenticate()
            cp.check_may_upload()
            check_upload(hashlib.sha256(data).hexdigest(), expected, digest)
            cp.store.put_bytes(data)
            return then(cp, len(data))

        return dict(await in_worker(store_small))
    cp = await authenticated(caller)
    await in_worker(cp.check_may_upload)  # before a byte is read
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
            check_upload(hasher.hexdigest(), expected, digest)
            await in_worker(cp.store.put_file_expecting, Path(tmp.name), digest)
        finally:
            Path(tmp.name).unlink(missing_ok=True)
    return dict(await in_worker(then, cp, size))


def gate_after_commit(cp: Chainproof, request_id: str) -> dict[str, Any]:
    """The gate for a request just committed. If evaluating it fails, the write still stands:
    answer 201 with the reason instead of an error that would hide the committed request."""
    try:
        return dict(cp.check_request(request_id).to_dict())
    except ChainproofError as exc:
        return {"gate_error": exc.message}


def payload(data: bytes | None) -> dict[str, Any]:
    return {"payload": base64.b64encode(data).decode() if data is not None else None}


def proven(cp: Chainproof, presented: list[str]) -> frozenset[str]:
    """The digests the caller's upload receipts prove it holds (I8)."""
    return frozenset(receipts.proven_digests(cp.ctx.receipt_key, cp.identity, presented))
