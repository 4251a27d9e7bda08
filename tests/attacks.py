"""What an attacker with direct access to the object store does, and what the tests read back
from the log to see what a refused request wrote; shared by the attack tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import text

from chainproof.service import Chainproof
from chainproof.store import ObjectStore


def log_entries_since(cp: Chainproof, seq: int) -> list[dict[str, Any]]:
    """The audit log entries from ``seq`` on, parsed."""
    with cp.engine.connect() as conn:
        rows = conn.execute(text("SELECT body FROM log_entries WHERE seq >= :s ORDER BY seq"),
                            {"s": seq}).all()
    return [json.loads(bytes(r[0])) for r in rows]


def overwrite_blob(store: ObjectStore, digest: str, data: bytes) -> None:
    """Replace the bytes stored under ``digest`` (local file or S3 object) without chainproof."""
    location = store.location(digest)
    if location.startswith("s3://"):
        bucket, key = location.removeprefix("s3://").split("/", 1)
        store._client.put_object(Bucket=bucket, Key=key, Body=data)  # type: ignore[attr-defined]
    else:
        Path(location).chmod(0o644)
        Path(location).write_bytes(data)
