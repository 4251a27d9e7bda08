"""A content-addressed object store in a local directory (``<workspace>/.chainproof/objects``)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from chainproof.digest._hashing import open_regular, read_buffer
from chainproof.errors import DigestMismatchError, NotFoundError, StoreError
from chainproof.store._base import (
    ALGORITHM,
    ObjectStore,
    atomic_fetch_target,
    check_store_digest,
    fsync_dir,
    mismatch,
)

_HEX2 = re.compile(r"[0-9a-f]{2}")
_HEX62 = re.compile(r"[0-9a-f]{62}")


def _copy_hashing(src_fd: int, dst_fd: int) -> tuple[str, int]:
    """Copy ``src_fd`` to ``dst_fd`` in one pass, hashing as we go; ``(hex, size)``."""
    hasher = hashlib.sha256()
    view = read_buffer()
    size = 0
    while True:
        n = os.readv(src_fd, [view])
        if n == 0:
            break
        chunk = view[:n]
        hasher.update(chunk)
        written = 0
        while written < n:
            written += os.write(dst_fd, chunk[written:])
        size += n
    return hasher.hexdigest(), size


class LocalStore(ObjectStore):
    """Blobs at ``<root>/sha256/ab/cdef...``; writes go through ``<root>/tmp`` then ``os.replace``.

    The temp file cannot sit in the blob's own directory because that directory depends on the
    digest, known only once the copy (hashed as it is written) is complete; ``<root>/tmp`` is on
    the same file system, which is all ``os.replace`` needs to be atomic. The temp file is
    fsynced before the rename and the directory after it, so a crash leaves either no blob or
    the whole blob (at worst a stray file in ``tmp/``, never read).

    Blobs are made read-only (0444) as a guard against accidents; integrity rests on re-hashing
    every read, not on file modes.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def check_reachable(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"the object store {self.root} is not a folder",
                             hint="point CHAINPROOF_STORE at a folder")

    @classmethod
    def for_workspace(cls, workspace: Path) -> LocalStore:
        """The default store of a workspace: ``<workspace>/.chainproof/objects``."""
        return cls(Path(workspace) / ".chainproof" / "objects")

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    # --- layout ---------------------------------------------------------------------------------

    def _blob(self, hexdigest: str) -> Path:
        return self.root / ALGORITHM / hexdigest[:2] / hexdigest[2:]

    def location(self, digest: str) -> str:
        return str(self._blob(check_store_digest(digest)))

    def _tmp_dir(self) -> Path:
        tmp = self.root / "tmp"
        try:
            tmp.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot use local object store {self.root}: {exc.strerror}",
                hint="check that the store directory exists and is writable",
            ) from None
        return tmp

    # --- writes ---------------------------------------------------------------------------------

    def put_file(self, path: Path) -> str:
        return self._put_file(Path(path), None)

    def put_file_expecting(self, path: Path, digest: str) -> str:
        return self._put_file(Path(path), check_store_digest(digest))

    def put_bytes(self, data: bytes) -> str:
        fd, tmp = self._new_temp()
        try:
            try:
                view = memoryview(data)
                written = 0
                while written < len(view):
                    written += os.write(fd, view[written:])
                os.fsync(fd)
            finally:
                os.close(fd)
            return self._commit(tmp, hashlib.sha256(data).hexdigest())
        finally:
            _unlink_quietly(tmp)

    def _new_temp(self) -> tuple[int, Path]:
        try:
            fd, name = tempfile.mkstemp(prefix="blob-", suffix=".tmp", dir=self._tmp_dir())
        except OSError as exc:
            raise StoreError(f"cannot write to local object store {self.root}: {exc.strerror}",
                             hint="check that the store directory is writable") from None
        return fd, Path(name)

    def _put_file(self, path: Path, expected: str | None) -> str:
        src_fd, _ = open_regular(path)
        try:
            fd, tmp = self._new_temp()
            try:
                try:
                    hexdigest, _ = _copy_hashing(src_fd, fd)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                if expected is not None and hexdigest != expected:
                    raise DigestMismatchError(
                        f"{path} does not have the expected digest: expected "
                        f"sha256:{expected}, got sha256:{hexdigest}; nothing was stored",
                        hint="the file changed since it was hashed, or the wrong file was given",
                        problems=[f"{path}: expected sha256:{expected}, got sha256:{hexdigest}"],
                    )
                return self._commit(tmp, hexdigest)
            finally:
                _unlink_quietly(tmp)
        finally:
            os.close(src_fd)

    def _commit(self, tmp: Path, hexdigest: str) -> str:
        """Move a fully written, fsynced temp file into place, unless a good copy is there."""
        digest = f"{ALGORITHM}:{hexdigest}"
        final = self._blob(hexdigest)
        if os.path.lexists(final):
            try:
                self._verify_blob(hexdigest)
                return digest  # idempotent: a correct blob is never rewritten
            except DigestMismatchError:
                pass  # a damaged or swapped blob: replace it with the bytes we just verified
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp, 0o444)
            os.replace(tmp, final)
        except OSError as exc:
            raise StoreError(f"cannot store blob at {final}: {exc.strerror}",
                             hint="check that the store directory is writable") from None
        fsync_dir(final.parent)
        return digest

    # --- reads ----------------------------------------------------------------------------------

    def _open_blob(self, hexdigest: str) -> tuple[int, Path]:
        blob = self._blob(hexdigest)
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(blob, flags)
        except FileNotFoundError:
            raise NotFoundError(
                f"blob sha256:{hexdigest} is not in the object store (looked at {blob})",
                hint="store it first, or check CHAINPROOF_STORE points at the right store",
            ) from None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENXIO):
                raise DigestMismatchError(
                    f"blob {blob} is not a regular file (it was replaced by a link or a "
                    "special file)",
                    hint="the store was tampered with; restore the blob from a trusted copy",
                    problems=[f"{blob}: not a regular file"],
                ) from None
            raise StoreError(f"cannot read blob {blob}: {exc.strerror}") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise DigestMismatchError(
                f"blob {blob} is not a regular file",
                hint="the store was tampered with; restore the blob from a trusted copy",
                problems=[f"{blob}: not a regular file"],
            )
        return fd, blob

    def _verify_blob(self, hexdigest: str) -> int:
        fd, blob = self._open_blob(hexdigest)
        size = 0
        try:
            hasher = hashlib.sha256()
            view = read_buffer()
            while n := os.readv(fd, [view]):
                hasher.update(view[:n])
                size += n
        finally:
            os.close(fd)
        if hasher.hexdigest() != hexdigest:
            raise mismatch(f"sha256:{hexdigest}", hasher.hexdigest(), str(blob))
        return size

    def verify(self, digest: str) -> int:
        return self._verify_blob(check_store_digest(digest))

    def read_bytes(self, digest: str) -> bytes:
        hexdigest = check_store_digest(digest)
        fd, blob = self._open_blob(hexdigest)
        try:
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read()
        finally:
            os.close(fd)
        actual = hashlib.sha256(data).hexdigest()
        if actual != hexdigest:
            raise mismatch(digest, actual, str(blob))
        return data

    def fetch(self, digest: str, dest: Path) -> Path:
        hexdigest = check_store_digest(digest)
        dest = Path(dest)
        src_fd, blob = self._open_blob(hexdigest)
        try:
            fd, tmp = atomic_fetch_target(dest)
            try:
                try:
                    actual, _ = _copy_hashing(src_fd, fd)
                    os.fchmod(fd, 0o644)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                if actual != hexdigest:
                    raise mismatch(digest, actual, str(blob))
                os.replace(tmp, dest)
            finally:
                _unlink_quietly(tmp)
        finally:
            os.close(src_fd)
        fsync_dir(dest.parent)
        return dest

    # --- metadata -------------------------------------------------------------------------------

    def exists(self, digest: str) -> bool:
        return os.path.lexists(self._blob(check_store_digest(digest)))

    def size(self, digest: str) -> int:
        hexdigest = check_store_digest(digest)
        blob = self._blob(hexdigest)
        try:
            return os.lstat(blob).st_size
        except FileNotFoundError:
            raise NotFoundError(f"blob {digest} is not in the object store (looked at {blob})",
                                hint="store it first") from None

    def iter_digests(self) -> Iterator[str]:
        base = self.root / ALGORITHM
        if not base.is_dir():
            return
        for fan in sorted(os.listdir(base)):
            if not _HEX2.fullmatch(fan) or not (base / fan).is_dir():
                continue
            for rest in sorted(os.listdir(base / fan)):
                if _HEX62.fullmatch(rest):
                    yield f"{ALGORITHM}:{fan}{rest}"

    def delete(self, digest: str) -> None:
        blob = self._blob(check_store_digest(digest))
        try:
            os.unlink(blob)
        except FileNotFoundError:
            raise NotFoundError(f"blob {digest} is not in the object store (looked at {blob})",
                                hint="nothing to delete") from None
        except OSError as exc:
            raise StoreError(f"cannot delete {blob}: {exc.strerror}") from None


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
