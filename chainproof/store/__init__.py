"""Object stores: immutable blobs addressed by the SHA-256 of their bytes (invariant I1).

``open_store(location)`` gives a :class:`LocalStore` for a filesystem path or an :class:`S3Store`
for ``s3://bucket/prefix``. Every read re-hashes the bytes; a mismatch raises
:class:`~chainproof.errors.DigestMismatchError`.
"""

from __future__ import annotations

import os
from pathlib import Path

from chainproof.errors import BadInputError
from chainproof.store._base import ObjectStore
from chainproof.store._local import LocalStore
from chainproof.store._s3 import S3Store

__all__ = ["LocalStore", "ObjectStore", "S3Store", "open_store"]


def open_store(location: str) -> ObjectStore:
    """A store for ``location``: a directory path, or ``s3://bucket[/prefix]``.

    For S3 the endpoint is ``CHAINPROOF_S3_ENDPOINT`` if set, else boto3's own resolution
    (which honours ``AWS_ENDPOINT_URL``).
    """
    if not isinstance(location, str) or not location.strip():
        raise BadInputError("empty object store location",
                            hint="give a directory path or s3://bucket/prefix (CHAINPROOF_STORE)")
    if location.startswith("s3://"):
        bucket, _, prefix = location[len("s3://"):].partition("/")
        if not bucket:
            raise BadInputError(f"no bucket in object store location {location!r}",
                                hint="use s3://bucket/prefix")
        endpoint = os.environ.get("CHAINPROOF_S3_ENDPOINT") or None
        return S3Store(bucket, prefix, endpoint_url=endpoint)
    if "://" in location:
        raise BadInputError(f"unsupported object store location {location!r}",
                            hint="use a directory path or s3://bucket/prefix")
    return LocalStore(Path(location))
