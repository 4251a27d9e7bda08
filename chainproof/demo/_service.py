"""The demo's prediction service: chainproof's reference model server, run in-process.

Each replica is ``chainproof.serve.app.create_app`` (verified loading, atomic swaps, keeps the
last verified model when a new one is refused, deployment records) driven over HTTP with
FastAPI's TestClient, so the demo exercises the same ``/status`` and ``/predict`` a real
deployment would. Every replica gets its own cache folder, as a separate machine would have.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import pandas as pd

from chainproof.service import Chainproof
from chainproof.workspace import Settings


@dataclass(frozen=True)
class Serving:
    """What one replica reports for one model (from ``/status``)."""

    ref: str  # MODEL@ALIAS it serves
    version: int | None
    digest: str | None
    verified_at: str | None
    refusal: str | None  # why the newest target was refused, if it was


class Replica:
    """One running replica of the reference prediction service."""

    def __init__(self, settings: Settings, refs: list[str], where: str) -> None:
        with warnings.catch_warnings():
            # Starlette asks for a newer HTTP client package; the TestClient is only the
            # demo's in-process transport, so the notice would just be noise in the output.
            warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
            from fastapi.testclient import TestClient

        from chainproof.serve.app import create_app

        self._settings = settings
        self.refs = refs
        # poll_seconds=0: no background watcher thread; the demo polls explicitly, so what
        # happens (and when) is deterministic.
        self.app = create_app(self._connect, refs, poll_seconds=0)
        self.app.state.server.where = where
        self.where = where
        self._client = TestClient(self.app)
        self._client.__enter__()  # runs the app's start-up: the first verified load

    def _connect(self) -> Chainproof:
        return Chainproof.open(self._settings, check=False)

    def close(self) -> None:
        self._client.__exit__(None, None, None)

    def __enter__(self) -> Replica:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def poll(self) -> None:
        """One round of the watcher: follow alias moves, verifying before any swap."""
        self.app.state.server.check_once()

    def status(self) -> dict[str, Serving]:
        """Model name (without namespace) -> what this replica serves."""
        response = self._client.get("/status")
        response.raise_for_status()
        out = {}
        for item in response.json()["models"]:
            name = item["ref"].rsplit("@", 1)[0].rsplit("/", 1)[-1]
            out[name] = Serving(item["ref"], item.get("version"), item.get("digest"),
                                item.get("verified_at"), item.get("last_refusal"))
        return out

    def predict(self, ref: str, rows: pd.DataFrame) -> dict[str, Any]:
        """POST ``/predict/{model}``; returns the service's answer (version, digest, values)."""
        model = ref.rsplit("@", 1)[0]
        response = self._client.post(f"/predict/{model}",
                                     json={"rows": rows.to_dict(orient="records")})
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer
