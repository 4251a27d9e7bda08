"""What an attacker with direct access to the object store does, shared by the attack tests."""

from __future__ import annotations

from pathlib import Path

from chainproof.store import ObjectStore


def overwrite_blob(store: ObjectStore, digest: str, data: bytes) -> None:
    """Replace the bytes stored under ``digest`` (local file or S3 object) without chainproof."""
    location = store.location(digest)
    if location.startswith("s3://"):
        bucket, key = location.removeprefix("s3://").split("/", 1)
        store._client.put_object(Bucket=bucket, Key=key, Body=data)  # type: ignore[attr-defined]
    else:
        Path(location).chmod(0o644)
        Path(location).write_bytes(data)
