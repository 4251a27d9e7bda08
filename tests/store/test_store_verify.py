"""``ObjectStore.verify``: re-hash a blob where it lies, on both backends, against an attacker
who can write to the store (swapped, truncated, deleted, linked or special-file blobs)."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from chainproof.errors import BadInputError, DigestMismatchError, NotFoundError
from chainproof.store import LocalStore, ObjectStore

ABSENT = "sha256:" + "ab" * 32


def test_verify_returns_the_size(backend: Any) -> None:
    store = backend.store
    big = os.urandom(3 * 1024 * 1024 + 7)  # several read chunks
    for data in (b"", b"abc", big):
        digest = store.put_bytes(data)
        assert store.verify(digest) == len(data)
    assert backend.raw(store.put_bytes(b"abc")) == b"abc"  # verifying changed nothing


def test_verify_absent_blob_is_not_found(backend: Any) -> None:
    with pytest.raises(NotFoundError):
        backend.store.verify(ABSENT)


@pytest.mark.parametrize("swap", ["other bytes", "same size", "truncated", "appended", "empty"])
def test_verify_swapped_blob_is_a_mismatch(backend: Any, swap: str) -> None:
    """The attacker rewrites the object under its address; verify names both digests."""
    original = b"the reviewed model weights"
    digest = backend.store.put_bytes(original)
    forged = {"other bytes": b"a backdoored model", "same size": original.upper(),
              "truncated": original[:5], "appended": original + b"\x00", "empty": b""}[swap]
    backend.overwrite(digest, forged)
    with pytest.raises(DigestMismatchError) as info:
        backend.store.verify(digest)
    assert digest in info.value.message
    assert f"sha256:{hashlib.sha256(forged).hexdigest()}" in info.value.message
    assert info.value.problems


def test_verify_deleted_blob_is_not_found(backend: Any) -> None:
    digest = backend.store.put_bytes(b"abc")
    backend.store.delete(digest)
    with pytest.raises(NotFoundError):
        backend.store.verify(digest)


@pytest.mark.parametrize("digest", ["blake3:" + "ab" * 32, "sha256:" + "AB" * 32,
                                    "sha256:abc", "sha256:" + "ab" * 32 + "/../x", "", "abc"])
def test_verify_refuses_non_sha256_or_malformed_digests(store: ObjectStore, digest: str) -> None:
    with pytest.raises(BadInputError):
        store.verify(digest)


def test_local_verify_reads_in_place(tmp_path: Path) -> None:
    """No copy, no temp file, no rewrite: the blob keeps its inode, mode and mtime."""
    store = LocalStore(tmp_path / "objects")
    digest = store.put_bytes(os.urandom(2 * 1024 * 1024))
    blob = Path(store.location(digest))
    before = blob.stat()
    assert store.verify(digest) == 2 * 1024 * 1024
    after = blob.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_mode) == \
        (before.st_ino, before.st_mtime_ns, before.st_mode)
    assert list((store.root / "tmp").iterdir()) == []


def test_local_verify_refuses_a_link_even_to_the_right_bytes(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    digest = store.put_bytes(b"abc")
    blob = Path(store.location(digest))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"abc")
    blob.unlink()
    blob.symlink_to(elsewhere)
    with pytest.raises(DigestMismatchError, match="not a regular file"):
        store.verify(digest)


def test_local_verify_refuses_a_directory(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    digest = store.put_bytes(b"abc")
    blob = Path(store.location(digest))
    blob.unlink()
    blob.mkdir()
    with pytest.raises(DigestMismatchError, match="not a regular file"):
        store.verify(digest)


def test_local_verify_refuses_a_fifo_without_hanging(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    digest = store.put_bytes(b"abc")
    blob = Path(store.location(digest))
    blob.unlink()
    os.mkfifo(blob)
    outcome: list[BaseException | int] = []

    def run() -> None:
        try:
            outcome.append(store.verify(digest))
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "verify blocked on a FIFO planted at the blob's address"
    [result] = outcome
    assert isinstance(result, DigestMismatchError)


def test_verify_is_part_of_the_store_interface() -> None:
    """A backend that forgot ``verify`` could not be instantiated."""
    assert "verify" in ObjectStore.__abstractmethods__
