"""Blob routes: streamed, verified uploads (answered with an upload receipt) and scoped
downloads (only bytes of an asset version the caller may read)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from chainproof.access import receipts
from chainproof.api._http import (
    CHUNK,
    Caller,
    PendingCaller,
    Route,
    store_upload,
)
from chainproof.store._base import check_store_digest

router = APIRouter(route_class=Route)


@router.put("/v1/blobs/{digest}", status_code=201)
async def put_blob(digest: str, request: Request, caller: PendingCaller) -> dict[str, Any]:
    """Upload bytes; stored only if they hash to ``digest`` (streamed, size-limited). The
    answer carries a receipt proving this caller uploaded them: present it when binding
    the bytes (asset, model version, step output, directory manifest)."""
    return await store_upload(request, caller, digest, lambda cp, size: {
        "digest": digest, "size": size,
        "receipt": receipts.issue(cp.ctx.receipt_key, cp.identity, digest)})

@router.get("/v1/blobs/{digest}")
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
                while chunk := fh.read(CHUNK):
                    yield chunk
        finally:
            path.unlink(missing_ok=True)
            os.rmdir(scratch)

    return StreamingResponse(stream(), media_type="application/octet-stream")
