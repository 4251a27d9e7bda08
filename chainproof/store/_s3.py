"""A content-addressed object store in an S3 bucket (AWS S3, MinIO, moto, ...).

We use boto3 rather than s3fs: boto3's s3transfer gives mature parallel multipart transfers, we
keep direct control of checksums, error codes and of *when* a multipart upload completes, and
there is no fsspec/aiobotocore async layer in the way of a synchronous, transactional caller.

Write protocol. An S3 PUT and a CompleteMultipartUpload are atomic per object: readers see the
whole new object or nothing. So blobs go straight to their final key (a temporary key plus a
server-side copy would double the traffic and leave garbage on a crash) and the only rule is to
never let an upload *complete* unless the bytes sent hash to the key's digest. The bytes are fed
to s3transfer through :class:`_VerifyingReader`, which hashes them as they stream and raises at
end of input if they do not match; s3transfer then never sends CompleteMultipartUpload (or the
single PUT) and aborts the parts. ``put_file_expecting`` is therefore one pass over the file;
``put_file`` must know the key before it uploads, so it hashes first (a second, usually
page-cached, local read) and the reader still guards against the file changing in between.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

from chainproof.digest._hashing import hash_open_file, open_regular
from chainproof.errors import DigestMismatchError, NotFoundError, StoreError
from chainproof.store._base import (
    ALGORITHM,
    HashingWriter,
    ObjectStore,
    atomic_fetch_target,
    check_store_digest,
    fsync_dir,
    mismatch,
)

_KEY_RE = re.compile(r"sha256/([0-9a-f]{2})/([0-9a-f]{62})")
_MiB = 1024 * 1024


class _VerifyingReader:
    """A non-seekable reader that hashes what it hands out and vetoes a wrong total at EOF."""

    def __init__(self, fileobj: Any, expected_hex: str, display: str) -> None:
        self._f = fileobj
        self._expected = expected_hex
        self._display = display
        self._hasher = hashlib.sha256()
        self._checked = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        # Non-seekable makes s3transfer read strictly in order, in one thread: the hash is valid.
        return False

    def read(self, amount: int | None = -1) -> bytes:
        want = -1 if amount is None else amount
        data = self._f.read(want)
        self._hasher.update(data)
        if want < 0 or len(data) < want:
            self._check()  # end of input: raise before the last bytes are handed out
        return bytes(data)

    def _check(self) -> None:
        if self._checked:
            return
        self._checked = True
        actual = self._hasher.hexdigest()
        if actual != self._expected:
            raise DigestMismatchError(
                f"{self._display} does not have the expected digest: expected "
                f"sha256:{self._expected}, got sha256:{actual}; the upload was aborted and "
                "nothing was stored",
                hint="the file changed while it was stored, or the wrong file was given",
                problems=[
                    f"{self._display}: expected sha256:{self._expected}, got sha256:{actual}"
                ],
            )


class S3Store(ObjectStore):
    """Blobs at ``s3://<bucket>/<prefix>/sha256/ab/cdef...``.

    The endpoint is ``endpoint_url`` if given, else whatever boto3 resolves (it honours
    ``AWS_ENDPOINT_URL``). Credentials come from boto3's usual chain. ``client`` injects a ready
    boto3 S3 client (tests, custom sessions).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        client: Any | None = None,
    ) -> None:
        if not bucket or "/" in bucket:
            raise StoreError(f"invalid S3 bucket name {bucket!r}",
                             hint="use s3://<bucket>/<prefix>")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if client is None:
            import boto3  # deferred: boto3 takes ~0.3 s to import and many runs never need it
            from botocore.config import Config

            client = boto3.client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=os.environ.get("AWS_REGION")
                or os.environ.get("AWS_DEFAULT_REGION")
                or "us-east-1",
                config=Config(
                    connect_timeout=5,
                    read_timeout=60,
                    retries={"max_attempts": 3, "mode": "standard"},
                ),
            )
        self._client = client

    def __repr__(self) -> str:
        return (f"S3Store(bucket={self.bucket!r}, prefix={self.prefix!r}, "
                f"endpoint={self.endpoint!r})")

    @property
    def endpoint(self) -> str:
        return str(getattr(self._client.meta, "endpoint_url", "<default AWS endpoint>"))

    # --- layout and errors ----------------------------------------------------------------------

    def _key(self, hexdigest: str) -> str:
        key = f"{ALGORITHM}/{hexdigest[:2]}/{hexdigest[2:]}"
        return f"{self.prefix}/{key}" if self.prefix else key

    def location(self, digest: str) -> str:
        return f"s3://{self.bucket}/{self._key(check_store_digest(digest))}"

    def _raise(self, exc: Exception, action: str, where: str) -> NoReturn:
        from botocore.exceptions import ClientError, NoCredentialsError

        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            missing = code in ("404", "NoSuchKey", "NotFound")
            if missing or (status == 404 and code != "NoSuchBucket"):
                raise NotFoundError(f"{where} is not in the object store",
                                    hint="store it first, or check CHAINPROOF_STORE") from None
            if code == "NoSuchBucket":
                raise StoreError(
                    f"cannot {action} {where}: bucket {self.bucket!r} does not exist at "
                    f"{self.endpoint}",
                    hint="create the bucket, or fix CHAINPROOF_STORE",
                ) from None
            raise StoreError(
                f"cannot {action} {where}: S3 at {self.endpoint} answered {code or status}: "
                f"{err.get('Message', '')}",
                hint="check the credentials' permissions on the bucket",
            ) from None
        if isinstance(exc, NoCredentialsError):
            raise StoreError(
                f"cannot {action} {where}: no AWS credentials for {self.endpoint}",
                hint="set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or an AWS profile",
            ) from None
        raise StoreError(
            f"cannot {action} {where}: S3 endpoint {self.endpoint} is unreachable ({exc})",
            hint="check the network and AWS_ENDPOINT_URL / CHAINPROOF_S3_ENDPOINT",
        ) from None

    def check_reachable(self) -> None:
        try:
            self._call("reach", f"s3://{self.bucket}", "head_bucket", Bucket=self.bucket)
        except NotFoundError:  # HEAD answers a bare 404 for a missing bucket
            raise StoreError(f"bucket {self.bucket!r} does not exist at {self.endpoint}",
                             hint="create the bucket, or fix CHAINPROOF_STORE") from None

    def _call(self, action: str, where: str, method: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._client, method)(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            self._raise(exc, action, where)

    def _head(self, hexdigest: str) -> dict[str, Any] | None:
        where = f"s3://{self.bucket}/{self._key(hexdigest)}"
        try:
            head: dict[str, Any] = self._call("inspect", where, "head_object",
                                              Bucket=self.bucket, Key=self._key(hexdigest))
        except NotFoundError:
            return None
        return head

    def _transfer_config(self, size: int = 0) -> Any:
        from boto3.s3.transfer import TransferConfig

        # Bounded memory for streamed (non-seekable) uploads: at most 4 parts in RAM. A stream's
        # length is unknown to s3transfer, so we size parts ourselves to stay under S3's limit of
        # 10,000 parts per upload.
        part = max(16 * _MiB, -(-size // 9_000))
        config = TransferConfig(
            multipart_threshold=16 * _MiB,
            multipart_chunksize=part,
            max_concurrency=4,
            preferred_transfer_client="classic",
        )
        # s3transfer's own knob; boto3's constructor does not take it.
        config.max_in_memory_upload_chunks = 4
        return config

    # --- writes ---------------------------------------------------------------------------------

    def put_bytes(self, data: bytes) -> str:
        hexdigest = hashlib.sha256(data).hexdigest()
        key = self._key(hexdigest)
        if self._head(hexdigest) is None:
            # ChecksumSHA256 makes S3 itself refuse the PUT if the bytes were altered in transit.
            self._call(
                "store", f"s3://{self.bucket}/{key}", "put_object",
                Bucket=self.bucket, Key=key, Body=bytes(data),
                ChecksumSHA256=base64.b64encode(bytes.fromhex(hexdigest)).decode("ascii"),
            )
        return f"{ALGORITHM}:{hexdigest}"

    def put_file(self, path: Path) -> str:
        path = Path(path)
        fd, st = open_regular(path)
        try:
            hexdigest, _ = hash_open_file(fd, st, path, ALGORITHM)
            os.lseek(fd, 0, os.SEEK_SET)
            self._upload_fd(fd, path, hexdigest)
        finally:
            os.close(fd)
        return f"{ALGORITHM}:{hexdigest}"

    def put_file_expecting(self, path: Path, digest: str) -> str:
        hexdigest = check_store_digest(digest)
        path = Path(path)
        fd, st = open_regular(path)
        try:
            if self._head(hexdigest) is not None:
                # Already stored: still prove the caller's file is what they claim.
                actual, _ = hash_open_file(fd, st, path, ALGORITHM)
                if actual != hexdigest:
                    raise DigestMismatchError(
                        f"{path} does not have the expected digest: expected {digest}, got "
                        f"sha256:{actual}; nothing was stored",
                        hint="the file changed since it was hashed, or the wrong file was given",
                        problems=[f"{path}: expected {digest}, got sha256:{actual}"],
                    )
            else:
                self._upload_fd(fd, path, hexdigest, checked_absent=True)
        finally:
            os.close(fd)
        return f"{ALGORITHM}:{hexdigest}"

    def _upload_fd(self, fd: int, path: Path, hexdigest: str, *, checked_absent: bool = False
                   ) -> None:
        size = os.fstat(fd).st_size
        if not checked_absent and self._head(hexdigest) is not None:
            return  # idempotent: content addressing means the object is already right
        key = self._key(hexdigest)
        from botocore.exceptions import BotoCoreError, ClientError
        from s3transfer.exceptions import S3UploadFailedError

        # closefd=False: the caller owns fd.
        with os.fdopen(fd, "rb", buffering=0, closefd=False) as raw:
            reader = _VerifyingReader(raw, hexdigest, str(path))
            try:
                self._client.upload_fileobj(reader, self.bucket, key,
                                            Config=self._transfer_config(size))
            except (ClientError, BotoCoreError, S3UploadFailedError) as exc:
                self._raise(exc, "store", f"s3://{self.bucket}/{key}")

    # --- reads ----------------------------------------------------------------------------------

    def read_bytes(self, digest: str) -> bytes:
        hexdigest = check_store_digest(digest)
        key = self._key(hexdigest)
        where = f"s3://{self.bucket}/{key}"
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
            data = response["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            self._raise(exc, "read", where)
        actual = hashlib.sha256(data).hexdigest()
        if actual != hexdigest:
            raise mismatch(digest, actual, where)
        return bytes(data)

    def verify(self, digest: str) -> int:
        hexdigest = check_store_digest(digest)
        key = self._key(hexdigest)
        where = f"s3://{self.bucket}/{key}"
        from botocore.exceptions import BotoCoreError, ClientError

        hasher = hashlib.sha256()
        size = 0
        try:
            body = self._client.get_object(Bucket=self.bucket, Key=key)["Body"]
            for chunk in body.iter_chunks(chunk_size=1024 * 1024):
                hasher.update(chunk)
                size += len(chunk)
        except (ClientError, BotoCoreError) as exc:
            self._raise(exc, "verify", where)
        if hasher.hexdigest() != hexdigest:
            raise mismatch(digest, hasher.hexdigest(), where)
        return size

    def fetch(self, digest: str, dest: Path) -> Path:
        hexdigest = check_store_digest(digest)
        key = self._key(hexdigest)
        where = f"s3://{self.bucket}/{key}"
        dest = Path(dest)
        from botocore.exceptions import BotoCoreError, ClientError

        fd, tmp = atomic_fetch_target(dest)
        try:
            with os.fdopen(fd, "wb") as out:
                writer = HashingWriter(out)
                try:
                    self._client.download_fileobj(self.bucket, key, writer,
                                                  Config=self._transfer_config())
                except (ClientError, BotoCoreError) as exc:
                    self._raise(exc, "fetch", where)
                out.flush()
                os.fchmod(out.fileno(), 0o644)
                os.fsync(out.fileno())
            actual = writer.hasher.hexdigest()
            if actual != hexdigest:
                raise mismatch(digest, actual, where)
            os.replace(tmp, dest)
        finally:
            if tmp.exists():
                tmp.unlink()
        fsync_dir(dest.parent)
        return dest

    # --- metadata -------------------------------------------------------------------------------

    def exists(self, digest: str) -> bool:
        return self._head(check_store_digest(digest)) is not None

    def size(self, digest: str) -> int:
        hexdigest = check_store_digest(digest)
        head = self._head(hexdigest)
        if head is None:
            raise NotFoundError(f"blob {digest} is not in the object store "
                                f"(looked at {self.location(digest)})", hint="store it first")
        return int(head["ContentLength"])

    def iter_digests(self) -> Iterator[str]:
        start = f"{self.prefix}/" if self.prefix else ""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{start}{ALGORITHM}/"
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    match = _KEY_RE.fullmatch(obj["Key"][len(start):])
                    if match:
                        yield f"{ALGORITHM}:{match.group(1)}{match.group(2)}"
        except (ClientError, BotoCoreError) as exc:
            self._raise(exc, "list", f"s3://{self.bucket}/{start}")

    def delete(self, digest: str) -> None:
        hexdigest = check_store_digest(digest)
        if self._head(hexdigest) is None:
            raise NotFoundError(f"blob {digest} is not in the object store "
                                f"(looked at {self.location(digest)})", hint="nothing to delete")
        key = self._key(hexdigest)
        self._call("delete", f"s3://{self.bucket}/{key}", "delete_object",
                   Bucket=self.bucket, Key=key)
