"""Backend-specific behaviour: local atomicity and tampering, S3 failures, ``open_store``."""

from __future__ import annotations

import errno
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

import chainproof.store._local as local_mod
import chainproof.store._s3 as s3_mod
from chainproof.errors import (
    BadInputError,
    DigestMismatchError,
    NotFoundError,
    StoreError,
)
from chainproof.store import LocalStore, S3Store, open_store

ABC = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


# --- LocalStore ---------------------------------------------------------------------------------


def test_local_layout_and_read_only_blobs(tmp_path: Path) -> None:
    store = LocalStore.for_workspace(tmp_path)
    assert store.root == tmp_path / ".chainproof" / "objects"
    store.put_bytes(b"abc")
    blob = (tmp_path / ".chainproof/objects/sha256/ba"
            / "7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    assert blob.read_bytes() == b"abc"
    assert stat.S_IMODE(blob.stat().st_mode) == 0o444
    assert list((store.root / "tmp").iterdir()) == []


def test_local_existing_good_blob_is_not_rewritten(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    store.put_bytes(b"abc")
    blob = Path(store.location(ABC))
    before = blob.stat()
    time.sleep(0.01)
    store.put_bytes(b"abc")
    src = tmp_path / "f"
    src.write_bytes(b"abc")
    store.put_file(src)
    after = blob.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_local_failing_copy_leaves_no_partial_blob(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(tmp_path / "objects")
    src = tmp_path / "big"
    src.write_bytes(os.urandom(10 * 1024 * 1024))
    real_write = os.write
    calls = {"n": 0}

    def failing_write(fd: int, data: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(local_mod.os, "write", failing_write)
    with pytest.raises(OSError):
        store.put_file(src)
    monkeypatch.undo()
    assert list(store.iter_digests()) == []
    assert list((store.root / "tmp").iterdir()) == []
    assert not (store.root / "sha256").exists() or not any((store.root / "sha256").rglob("*"))


def test_local_crash_before_rename_leaves_no_blob(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(tmp_path / "objects")

    def crash(src: Any, dst: Any) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(local_mod.os, "replace", crash)
    with pytest.raises(StoreError):
        store.put_bytes(b"abc")
    monkeypatch.undo()
    assert not store.exists(ABC)
    assert list((store.root / "tmp").iterdir()) == []


def test_local_failing_fetch_leaves_destination_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(tmp_path / "objects")
    digest = store.put_bytes(os.urandom(9 * 1024 * 1024))
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    dest = deploy / "model.bin"
    dest.write_bytes(b"old")

    def failing_write(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(local_mod.os, "write", failing_write)
    with pytest.raises(OSError):
        store.fetch(digest, dest)
    monkeypatch.undo()
    assert dest.read_bytes() == b"old"
    assert [p.name for p in deploy.iterdir()] == ["model.bin"]


def test_local_blob_replaced_by_symlink_is_refused(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    store.put_bytes(b"abc")
    blob = Path(store.location(ABC))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"abc")  # even pointing at the right bytes
    blob.unlink()
    blob.symlink_to(elsewhere)
    with pytest.raises(DigestMismatchError, match="not a regular file"):
        store.read_bytes(ABC)
    with pytest.raises(DigestMismatchError):
        store.fetch(ABC, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    # A put replaces the link with a real, verified blob.
    store.put_bytes(b"abc")
    assert not blob.is_symlink()
    assert store.read_bytes(ABC) == b"abc"


def test_local_blob_replaced_by_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    store.put_bytes(b"abc")
    blob = Path(store.location(ABC))
    blob.unlink()
    os.mkfifo(blob)
    with pytest.raises(DigestMismatchError):
        store.read_bytes(ABC)


def test_local_truncated_blob_is_refused(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    store.put_bytes(b"abc")
    blob = Path(store.location(ABC))
    blob.chmod(0o644)
    os.truncate(blob, 1)
    with pytest.raises(DigestMismatchError):
        store.read_bytes(ABC)


def test_local_iter_ignores_foreign_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    store.put_bytes(b"abc")
    (store.root / "sha256" / "ba" / "not-a-digest").write_bytes(b"x")
    (store.root / "sha256" / "zz").mkdir()
    (store.root / "tmp" / "blob-leftover.tmp").write_bytes(b"x")
    assert list(store.iter_digests()) == [ABC]


def test_local_unusable_root_is_a_store_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_bytes(b"")
    store = LocalStore(not_a_dir)
    with pytest.raises(StoreError) as info:
        store.put_bytes(b"abc")
    assert str(not_a_dir) in str(info.value)
    assert list(LocalStore(tmp_path / "missing").iter_digests()) == []


# --- S3Store --------------------------------------------------------------------------------------


@pytest.mark.s3
def test_s3_reader_failure_mid_upload_leaves_nothing(
    make_s3_store, s3_client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_s3_store()
    src = tmp_path / "big"
    src.write_bytes(os.urandom(40 * 1024 * 1024))
    real_read = s3_mod._VerifyingReader.read
    calls = {"n": 0}

    def failing_read(self: Any, amount: int | None = -1) -> bytes:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.EIO, "disk went away")
        return real_read(self, amount)

    monkeypatch.setattr(s3_mod._VerifyingReader, "read", failing_read)
    with pytest.raises(OSError):
        store.put_file(src)
    assert list(store.iter_digests()) == []
    assert s3_client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []


@pytest.mark.s3
def test_s3_file_changed_between_hash_and_upload_is_refused(
    make_s3_store, s3_client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_s3_store()
    src = tmp_path / "f"
    src.write_bytes(b"original")
    real_hash = s3_mod.hash_open_file

    def hash_then_swap(*args: Any, **kwargs: Any) -> tuple[str, int]:
        result = real_hash(*args, **kwargs)
        with src.open("r+b") as f:  # same inode, same size, other bytes
            f.write(b"EVIL")
        return result

    monkeypatch.setattr(s3_mod, "hash_open_file", hash_then_swap)
    with pytest.raises(DigestMismatchError, match="aborted"):
        store.put_file(src)
    assert list(store.iter_digests()) == []


@pytest.mark.s3
def test_s3_prefixes_are_isolated(make_s3_store) -> None:
    a = make_s3_store("a")
    b = make_s3_store("b")
    root = make_s3_store("")
    a.put_bytes(b"abc")
    assert a.exists(ABC)
    assert not b.exists(ABC)
    assert list(b.iter_digests()) == []
    assert list(root.iter_digests()) == []  # the root prefix lists only its own sha256/ tree
    assert root.location(ABC).startswith(f"s3://{root.bucket}/sha256/ba/")


@pytest.mark.s3
def test_s3_missing_bucket_is_a_store_error(s3_client) -> None:
    store = S3Store("chainproof-no-such-bucket", "x", client=s3_client)
    with pytest.raises(StoreError) as info:
        store.put_bytes(b"abc")
    assert "chainproof-no-such-bucket" in str(info.value)
    assert not isinstance(info.value, NotFoundError)


def test_s3_unreachable_endpoint_is_a_store_error_naming_it() -> None:
    import socket

    import boto3
    from botocore.config import Config

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="x", aws_secret_access_key="x",
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=1),
    )
    store = S3Store("bucket", "p", client=client)
    for call in (lambda: store.read_bytes(ABC), lambda: store.exists(ABC),
                 lambda: store.put_bytes(b"abc"), lambda: list(store.iter_digests())):
        with pytest.raises(StoreError) as info:
            call()
        assert endpoint in str(info.value)


# --- open_store -----------------------------------------------------------------------------------


def test_open_store_local(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "objs"))
    assert isinstance(store, LocalStore)
    assert store.root == tmp_path / "objs"


@pytest.mark.parametrize("bad", ["", "   ", "gs://bucket/x", "http://host/x", "s3://", "s3:///x"])
def test_open_store_refuses_bad_locations(bad: str) -> None:
    with pytest.raises(BadInputError):
        open_store(bad)


@pytest.mark.s3
@pytest.mark.parametrize("variable", ["CHAINPROOF_S3_ENDPOINT", "AWS_ENDPOINT_URL"])
def test_open_store_s3_uses_the_endpoint_from_the_environment(
    s3_endpoint: str, s3_client, s3_bucket: str, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    for name in ("CHAINPROOF_S3_ENDPOINT", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
                 "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    store = open_store(f"s3://{s3_bucket}/team/objects")
    assert isinstance(store, S3Store)
    assert (store.bucket, store.prefix) == (s3_bucket, "team/objects")
    assert store.endpoint.rstrip("/") == s3_endpoint
    assert store.put_bytes(b"abc") == ABC
    key = f"team/objects/sha256/ba/{ABC.split(':')[1][2:]}"
    assert s3_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read() == b"abc"
