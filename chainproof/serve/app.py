"""A reference prediction service that serves models only through verified loading (I5).

At start it loads each ``MODEL@ALIAS`` through :func:`load_verified` and deserialises it with the
scanner's allowlist-enforcing :func:`safe_load`. A watcher polls the registry; when an alias moves
it verifies and loads the new version off to the side and swaps it in atomically — or, if any
check fails, keeps serving the last verified model and reports the refusal in ``/status``.
Every model it starts serving is recorded as a ``deployment.record`` log entry.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from chainproof.errors import ChainproofError, DigestMismatchError
from chainproof.scan import safe_load
from chainproof.serve.load import split_alias_ref


class PredictRequest(BaseModel):
    rows: list[dict[str, Any]] = Field(..., min_length=1, max_length=10_000,
                                       description="Feature rows, one object per row.")


@dataclass
class Served:
    ref: str
    loaded: Any = None
    predictor: Any = None
    verified_at: str | None = None
    last_checked: str | None = None
    last_error: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def status(self) -> dict[str, Any]:
        info: dict[str, Any] = {"ref": self.ref, "serving": self.loaded is not None,
                                "verified_at": self.verified_at,
                                "last_checked": self.last_checked,
                                "last_refusal": self.last_error}
        if self.loaded is not None:
            info.update({"model": self.loaded.model, "version": self.loaded.version,
                         "digest": self.loaded.digest, "decision": self.loaded.decision,
                         "override": self.loaded.override, "checks": list(self.loaded.checks)})
        return info


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _store_copy_swapped(cp: Any, asset_ref: str) -> bool:
    """Whether the stored bytes of ``asset_ref`` fail their digest (and nothing else is
    known to be wrong)."""
    try:
        cp.verify(asset_ref)
    except DigestMismatchError:
        return True
    except ChainproofError:
        return False
    return False


class ModelServer:
    """Holds the served models and swaps them only after verification."""

    def __init__(self, connect: Callable[[], Any], refs: list[str], *,
                 allow_override: bool = False, where: str | None = None,
                 reverify_seconds: float = 300.0) -> None:
        for ref in refs:
            split_alias_ref(ref)
        self._connect = connect
        self._lock = threading.Lock()
        self.allow_override = allow_override
        self.where = where or f"{socket.gethostname()}:{os.getpid()}"
        self.models = {ref: Served(ref) for ref in refs}
        self.reverify_seconds = reverify_seconds
        self._log_size: int | None = None
        self._verified_at = 0.0

    def check_once(self) -> None:
        """Verify each alias's current target; swap in a new model only if it verifies.

        The model being served is verified again in full whenever the audit log has grown
        (any change anywhere: an edited registry shows up as a failed re-check) and at least
        every ``reverify_seconds``; if it no longer verifies it stops being served and
        ``/status`` says why."""
        cp = self._connect()
        try:
            try:
                size = int(cp.log_head()["size"])
            except (ChainproofError, KeyError, TypeError, ValueError):
                size = None
            due = (size is None or size != self._log_size
                   or time.monotonic() - self._verified_at >= self.reverify_seconds)
            for served in self.models.values():
                self._refresh(cp, served, reverify=due)
            if due:
                self._log_size, self._verified_at = size, time.monotonic()
        finally:
            cp.close()

    def _refresh(self, cp: Any, served: Served, *, reverify: bool = True) -> None:
        served.last_checked = _now()
        model, alias = split_alias_ref(served.ref)
        try:
            target = cp.resolve_alias(model, alias)
        except ChainproofError as exc:
            served.last_error = exc.message
            return
        current = served.loaded
        if current is not None and (current.version, current.digest, current.decision) == (
                target["version"], target["digest"], target["decision"]):
            if not reverify:
                return
            try:
                cp.load_model(served.ref, allow_override=self.allow_override,
                              full_rehash=True)
            except ChainproofError as exc:
                if _store_copy_swapped(cp, current.asset):
                    # Only the stored copy changed; the model in memory was verified when
                    # loaded and is unchanged: keep serving it, and say so.
                    served.last_error = (f"kept serving the verified in-memory copy of "
                                         f"{current.model}@{current.version}; the stored bytes "
                                         f"no longer verify: {exc.message}")
                else:
                    # The approval behind what is served no longer holds (decision, approvals,
                    # provenance, records that disagree): stop serving it (fail closed).
                    with self._lock:
                        served.loaded, served.predictor = None, None
                    served.last_error = (f"stopped serving {current.model}@{current.version}: "
                                         f"{type(exc).__name__}: {exc.message}")
            return
        try:
            # Verified by the one loader (embedded, or the team server's plus a local
            # re-hash), with a full re-hash: a served model never rests on a cache shortcut.
            loaded = cp.load_model(served.ref, allow_override=self.allow_override,
                                   full_rehash=True)
            predictor = safe_load(loaded.path)
            if not hasattr(predictor, "predict"):
                raise TypeError(f"{type(predictor).__name__} has no predict()")
        except (ChainproofError, TypeError) as exc:
            # Keep serving the last verified model; say why the new one was refused.
            served.last_error = f"{type(exc).__name__}: {getattr(exc, 'message', str(exc))}"
            return
        with self._lock:
            served.loaded, served.predictor = loaded, predictor
            served.verified_at, served.last_error = _now(), None
        cp.record_deployment(model, alias, loaded.version, loaded.digest, loaded.decision,
                             self.where)

    def predict(self, model: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
        served = next((s for s in self.models.values()
                       if s.loaded is not None and model in (s.loaded.model, s.ref)), None)
        if served is None:
            raise KeyError(model)
        with self._lock:
            loaded, predictor = served.loaded, served.predictor
        assert loaded is not None
        import pandas as pd

        frame = pd.DataFrame(rows)
        result: dict[str, Any] = {"model": loaded.model, "version": loaded.version,
                                  "digest": loaded.digest,
                                  "predictions": predictor.predict(frame).tolist()}
        if hasattr(predictor, "predict_proba"):
            result["probabilities"] = predictor.predict_proba(frame).tolist()
        return result


def create_app(connect: Callable[[], Any], refs: list[str], *,
               poll_seconds: float = 5.0, allow_override: bool = False) -> FastAPI:
    server = ModelServer(connect, refs, allow_override=allow_override)
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(poll_seconds):
            try:
                server.check_once()
            except Exception as exc:
                for served in server.models.values():
                    served.last_error = f"watcher: {exc}"

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        server.check_once()
        thread = threading.Thread(target=watch, name="chainproof-watcher", daemon=True)
        if poll_seconds > 0:
            thread.start()
        yield
        stop.set()

    app = FastAPI(title="chainproof model server", version="1", lifespan=lifespan)
    app.state.server = server

    # Errors in the team server's schema: {"error", "message", "hint", "problems"}.
    @app.exception_handler(HTTPException)
    async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
        kind = "NotFoundError" if exc.status_code == 404 else "BadInputError"
        return JSONResponse({"error": kind, "message": str(exc.detail), "hint": None,
                             "problems": []}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}"
                    for e in exc.errors()][:50]
        return JSONResponse({"error": "BadInputError",
                             "message": "invalid request: " + (problems[0] if problems else
                                                               "malformed body"),
                             "hint": 'send {"rows": [{"feature": value, ...}, ...]}',
                             "problems": problems}, status_code=422)

    @app.get("/status")
    def status() -> dict[str, Any]:
        """Which version and digest each model serves, when it was verified, and the last
        refusal (a newer version that failed verification)."""
        return {"where": server.where, "models": [s.status() for s in server.models.values()]}

    @app.post("/predict/{model:path}")
    def predict(model: str, body: PredictRequest) -> dict[str, Any]:
        try:
            return server.predict(model, body.rows)
        except KeyError:
            raise HTTPException(404, f"no verified model {model!r} is being served") from None
        except (ValueError, TypeError) as exc:
            raise HTTPException(422, f"bad feature rows: {exc}") from None

    return app
