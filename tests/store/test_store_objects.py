"""Object store behaviour common to every backend (local directory and S3 over real HTTP)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from chainproof.digest import hash_file
from chainproof.errors import BadInputError, DigestMismatchError, NotFoundError
from chainproof.store import ObjectStore

ABC = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
EMPTY = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
ABSENT = "sha256:" + "00" * 32


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_put_bytes_round_trip(store: ObjectStore) -> None:
    assert store.put_bytes(b"abc") == ABC
    assert store.exists(ABC)
    assert store.size(ABC) == 3
    assert store.read_bytes(ABC) == b"abc"
    assert list(store.iter_digests()) == [ABC]


def test_zero_byte_blob(store: ObjectStore, tmp_path: Path) -> None:
    assert store.put_bytes(b"") == EMPTY
    assert store.read_bytes(EMPTY) == b""
    out = tmp_path / "out"
    store.fetch(EMPTY, out)
    assert out.read_bytes() == b""


def test_put_file_round_trip_and_fetch(store: ObjectStore, tmp_path: Path) -> None:
    # Above the S3 multipart threshold (16 MiB), so S3 exercises the multipart path too.
    data = os.urandom(17 * 1024 * 1024 + 5)
    src = tmp_path / "model.bin"
    src.write_bytes(data)
    digest = store.put_file(src)
    assert digest == "sha256:" + hash_file(src)
    assert store.size(digest) == len(data)
    out = tmp_path / "fetched" / "model.bin"
    out.parent.mkdir()
    assert store.fetch(digest, out) == out
    assert out.read_bytes() == data
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.bin"]  # no temp left


def test_put_is_idempotent(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"abc")
    assert store.put_file(src) == ABC
    assert store.put_bytes(b"abc") == ABC
    assert store.put_file_expecting(src, ABC) == ABC
    assert list(store.iter_digests()) == [ABC]
    assert store.read_bytes(ABC) == b"abc"


def test_put_file_expecting_refuses_wrong_bytes(backend, tmp_path: Path) -> None:
    store = backend.store
    src = tmp_path / "f"
    src.write_bytes(b"not abc")
    with pytest.raises(DigestMismatchError, match="nothing was stored"):
        store.put_file_expecting(src, ABC)
    assert not store.exists(ABC)
    assert not store.exists(_sha(b"not abc"))
    assert list(store.iter_digests()) == []
    assert backend.pending_uploads() == []


def test_put_file_expecting_refuses_wrong_bytes_in_multipart(backend, tmp_path: Path) -> None:
    store = backend.store
    src = tmp_path / "big"
    src.write_bytes(os.urandom(40 * 1024 * 1024))
    with pytest.raises(DigestMismatchError):
        store.put_file_expecting(src, ABSENT)
    assert list(store.iter_digests()) == []
    assert backend.pending_uploads() == []


def test_put_file_expecting_checks_the_file_even_if_the_blob_exists(store, tmp_path) -> None:
    store.put_bytes(b"abc")
    src = tmp_path / "f"
    src.write_bytes(b"evil")
    with pytest.raises(DigestMismatchError):
        store.put_file_expecting(src, ABC)
    assert store.read_bytes(ABC) == b"abc"


def test_put_file_expecting_stores_the_right_bytes(store, tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"abc")
    assert store.put_file_expecting(src, ABC) == ABC
    assert store.read_bytes(ABC) == b"abc"


def test_missing_blob(store: ObjectStore, tmp_path: Path) -> None:
    assert not store.exists(ABSENT)
    with pytest.raises(NotFoundError):
        store.read_bytes(ABSENT)
    with pytest.raises(NotFoundError):
        store.size(ABSENT)
    with pytest.raises(NotFoundError):
        store.delete(ABSENT)
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    with pytest.raises(NotFoundError):
        store.fetch(ABSENT, deploy / "out")
    assert list(deploy.iterdir()) == []


def test_open_verified(backend) -> None:
    store = backend.store
    store.put_bytes(b"abc")
    with store.open_verified(ABC) as f:
        assert f.read() == b"abc"
        backend.overwrite(ABC, b"evil")  # too late to matter: the reader holds a verified copy
        f.seek(0)
        assert f.read() == b"abc"
    with pytest.raises(DigestMismatchError), store.open_verified(ABC):
        pytest.fail("tampered bytes were handed out")
    with pytest.raises(NotFoundError), store.open_verified(ABSENT):
        pytest.fail("missing blob was opened")


def test_delete(store: ObjectStore) -> None:
    store.put_bytes(b"abc")
    store.put_bytes(b"")
    store.delete(ABC)
    assert not store.exists(ABC)
    assert list(store.iter_digests()) == [EMPTY]


@pytest.mark.parametrize(
    "bad",
    ["abc", "sha256:" + "AB" * 32, "sha256:" + "0" * 63, "md5:" + "0" * 32,
     "blake3:" + "00" * 32, ""],
)
def test_malformed_digests_are_refused(store: ObjectStore, bad: str, tmp_path: Path) -> None:
    with pytest.raises(BadInputError):
        store.read_bytes(bad)
    with pytest.raises(BadInputError):
        store.exists(bad)
    with pytest.raises(BadInputError):
        store.fetch(bad, tmp_path / "x")
    src = tmp_path / "f"
    src.write_bytes(b"abc")
    with pytest.raises(BadInputError):
        store.put_file_expecting(src, bad)


def test_location_names_the_blob(backend) -> None:
    loc = backend.store.location(ABC)
    assert "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"[2:] in loc
    if backend.kind == "s3":
        assert loc.startswith(f"s3://{backend.store.bucket}/team/objects/sha256/ba/")
    else:
        assert loc.endswith(
            "/sha256/ba/7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


def test_put_refuses_special_and_missing_files(store: ObjectStore, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(BadInputError):
        store.put_file(fifo)
    with pytest.raises(NotFoundError):
        store.put_file(tmp_path / "missing")
    with pytest.raises(BadInputError):
        store.put_file(tmp_path)  # a directory
    assert list(store.iter_digests()) == []


def test_fetch_destination_must_be_usable(store: ObjectStore, tmp_path: Path) -> None:
    store.put_bytes(b"abc")
    with pytest.raises(BadInputError):
        store.fetch(ABC, tmp_path)  # a directory
    with pytest.raises(BadInputError):
        store.fetch(ABC, tmp_path / "no" / "such" / "dir" / "f")


# --- the attacker's view: every read re-verifies ------------------------------------------------


@pytest.mark.parametrize("tamper", [b"abd", b"ab", b"", b"abc\n", b"x" * 5000])
def test_swapped_blob_is_an_error_on_every_read(backend, tmp_path: Path, tamper: bytes) -> None:
    store = backend.store
    store.put_bytes(b"abc")
    backend.overwrite(ABC, tamper)
    with pytest.raises(DigestMismatchError) as info:
        store.read_bytes(ABC)
    assert ABC in str(info.value)
    # the operator's logs get the file or object; the message (a server's answer) does not
    assert info.value.location == store.location(ABC)  # type: ignore[attr-defined]
    assert store.location(ABC) not in str(info.value)
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    dest = deploy / "deployed.bin"
    dest.write_bytes(b"previous good version")
    with pytest.raises(DigestMismatchError):
        store.fetch(ABC, dest)
    # The destination is untouched and no temp file is left behind.
    assert dest.read_bytes() == b"previous good version"
    assert sorted(p.name for p in deploy.iterdir()) == ["deployed.bin"]


def test_blob_swapped_for_another_valid_blob_is_detected(backend) -> None:
    store = backend.store
    store.put_bytes(b"abc")
    store.put_bytes(b"other model")
    backend.overwrite(ABC, b"other model")  # a real, signed-looking blob, at the wrong address
    with pytest.raises(DigestMismatchError):
        store.read_bytes(ABC)
    assert store.read_bytes(_sha(b"other model")) == b"other model"


def test_put_repairs_or_keeps_verifying_a_tampered_blob(backend) -> None:
    store = backend.store
    store.put_bytes(b"abc")
    backend.overwrite(ABC, b"evil")
    store.put_bytes(b"abc")
    # Local stores re-verify and repair on put; S3 trusts an existing key on put (it would have
    # to download it) but reads still refuse it. Either way a read never returns the evil bytes.
    if backend.kind == "local":
        assert store.read_bytes(ABC) == b"abc"
    else:
        with pytest.raises(DigestMismatchError):
            store.read_bytes(ABC)


def test_concurrent_puts_of_the_same_and_different_blobs(backend, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store = backend.store
    blobs = [os.urandom(100_000) for _ in range(4)]
    jobs = [blobs[i % 4] for i in range(16)]
    with ThreadPoolExecutor(8) as pool:
        digests = list(pool.map(store.put_bytes, jobs))
    assert digests == [_sha(b) for b in jobs]
    assert sorted(store.iter_digests()) == sorted({_sha(b) for b in blobs})
    for data in blobs:
        assert store.read_bytes(_sha(data)) == data
    assert backend.pending_uploads() == []


def test_init_checks_a_remote_store_first_and_writes_nothing(s3_env: str,
                                                             tmp_path: Path) -> None:
    from chainproof.errors import StoreError
    from chainproof.service import Chainproof

    with pytest.raises(StoreError, match="bucket 'no-such-bucket' does not exist"):
        Chainproof.init(tmp_path / "ws", store="s3://no-such-bucket/x")
    assert not (tmp_path / "ws").exists()
    # the bucket that exists is fine
    with Chainproof.init(tmp_path / "ws", store=s3_env) as cp:
        cp.check_server_ready()
