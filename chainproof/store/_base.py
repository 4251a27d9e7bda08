"""The object store interface: immutable blobs addressed by the SHA-256 of their bytes (I1)."""

from __future__ import annotations

import abc
import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, BinaryIO

from chainproof.digest import format_digest, parse_digest
from chainproof.errors import BadInputError, DigestMismatchError

ALGORITHM = "sha256"


def check_store_digest(digest: str) -> str:
    """Return the hex of a ``"sha256:<hex>"`` digest; stores are keyed by SHA-256 only."""
    algorithm, hexdigest = parse_digest(digest)
    if algorithm != ALGORITHM:
        raise BadInputError(
            f"object stores are addressed by SHA-256, got {digest!r}",
            hint="pass a 'sha256:<hex>' digest",
        )
    return hexdigest


def mismatch(digest: str, actual_hex: str, where: str) -> DigestMismatchError:
    """The error for stored bytes that do not hash to their address. The message names the
    blob by its digest only (a server's error must not reveal its file system or bucket
    layout); ``where`` (the file or object) is kept on the error as ``location`` for the
    operator's own logs."""
    error = DigestMismatchError(
        f"the stored blob {digest} does not match its address: it hashes to "
        f"{format_digest(ALGORITHM, actual_hex)}",
        hint="the stored bytes were altered or replaced; restore the blob from a trusted copy "
        "and investigate who could write to the store",
        problems=[f"stored blob {digest}: hashes to sha256:{actual_hex}"],
    )
    error.location = where  # type: ignore[attr-defined]
    return error


class HashingWriter:
    """A write-only, non-seekable file object that hashes what passes through it."""

    def __init__(self, target: IO[bytes]) -> None:
        self._target = target
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        self.size += len(data)
        return self._target.write(data)

    def seekable(self) -> bool:
        # Forces s3transfer to deliver downloaded parts in order, so hashing inline is correct.
        return False

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        self._target.flush()


def atomic_fetch_target(dest: Path) -> tuple[int, Path]:
    """Create a temp file next to ``dest`` (same directory, hence same file system for rename)."""
    dest = Path(dest)
    if dest.is_dir():
        raise BadInputError(f"cannot fetch to {dest}: it is a directory",
                            hint="give the path of the file to create")
    if not dest.parent.is_dir():
        raise BadInputError(f"cannot fetch to {dest}: {dest.parent} is not a directory",
                            hint="create the destination directory first")
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".chainproof-tmp", dir=dest.parent)
    return fd, Path(tmp)


def fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; not every platform lets a directory be opened.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class ObjectStore(abc.ABC):
    """Immutable blobs keyed by ``"sha256:<hex>"``. Every read re-verifies the bytes (I1).

    Writes are atomic and idempotent; a blob that does not hash to its address is an error
    (:class:`~chainproof.errors.DigestMismatchError`), never a warning.
    """

    @abc.abstractmethod
    def check_reachable(self) -> None:
        """Raise :class:`~chainproof.errors.StoreError` saying what is wrong if the store
        cannot be used (no bucket, no credentials, unreachable, a folder that is not one);
        ``init`` and ``server`` call it so a wrong store fails at once, not at the first
        upload."""

    @abc.abstractmethod
    def put_file(self, path: Path) -> str:
        """Store a file's bytes; return their digest."""

    @abc.abstractmethod
    def put_bytes(self, data: bytes) -> str:
        """Store ``data``; return its digest."""

    @abc.abstractmethod
    def put_file_expecting(self, path: Path, digest: str) -> str:
        """Store a file only if its bytes hash to ``digest``; otherwise store nothing and raise."""

    @abc.abstractmethod
    def read_bytes(self, digest: str) -> bytes:
        """The verified bytes of a blob."""

    @abc.abstractmethod
    def fetch(self, digest: str, dest: Path) -> Path:
        """Write a verified copy of a blob to ``dest`` atomically; return ``dest``."""

    @abc.abstractmethod
    def verify(self, digest: str) -> int:
        """Re-hash a stored blob where it lies (no copy); return its size. Raises
        ``NotFoundError`` if it is absent, ``DigestMismatchError`` if its bytes changed."""

    @contextmanager
    def open_verified(self, digest: str) -> Iterator[BinaryIO]:
        """A read-only file holding the blob's verified bytes, removed on exit.

        The bytes are a private copy, verified before the caller sees any of them, so a blob
        tampered with after the check cannot reach the reader (reading the store's own file
        after checking it would leave that window open).
        """
        with tempfile.TemporaryDirectory(prefix="chainproof-verified-") as tmp:
            path = self.fetch(digest, Path(tmp) / "blob")
            with path.open("rb") as f:
                yield f

    @abc.abstractmethod
    def exists(self, digest: str) -> bool:
        """Whether a blob is present (not verified: reads verify)."""

    @abc.abstractmethod
    def size(self, digest: str) -> int:
        """Stored size in bytes of a blob (not verified)."""

    @abc.abstractmethod
    def iter_digests(self) -> Iterator[str]:
        """Every stored digest, as ``"sha256:<hex>"``."""

    @abc.abstractmethod
    def delete(self, digest: str) -> None:
        """Remove a blob (administration and tests only; versions are otherwise immutable)."""

    @abc.abstractmethod
    def location(self, digest: str) -> str:
        """Where the blob lives, for messages (a path or an ``s3://`` URL)."""
