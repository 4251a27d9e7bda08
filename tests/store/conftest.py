"""Fixtures for the object store tests: a moto S3 server over real HTTP, and a store per backend."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from s3server import start_moto_server

from chainproof.store import LocalStore, ObjectStore, S3Store

CREDENTIALS = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "region_name": "us-east-1",
}


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server in a subprocess, shared by the session."""
    url, stop = start_moto_server()
    try:
        yield url
    finally:
        stop()


@pytest.fixture
def s3_client(s3_endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=s3_endpoint, config=Config(retries={"max_attempts": 1}),
                        **CREDENTIALS)


@pytest.fixture
def s3_bucket(s3_client: Any) -> str:
    name = f"chainproof-{uuid.uuid4().hex[:16]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def make_s3_store(s3_client: Any, s3_bucket: str) -> Callable[[str], S3Store]:
    def _make(prefix: str = "objects") -> S3Store:
        return S3Store(s3_bucket, prefix, client=s3_client)

    return _make


class Backend:
    """Test-side access to a store's raw storage, to play the attacker."""

    def __init__(self, kind: str, store: ObjectStore, client: Any = None) -> None:
        self.kind = kind
        self.store = store
        self.client = client

    def overwrite(self, digest: str, data: bytes) -> None:
        if isinstance(self.store, LocalStore):
            blob = Path(self.store.location(digest))
            blob.chmod(0o644)
            blob.write_bytes(data)
        else:
            assert isinstance(self.store, S3Store)
            self.client.put_object(Bucket=self.store.bucket,
                                   Key=self.store._key(digest.split(":")[1]), Body=data)

    def raw(self, digest: str) -> bytes:
        if isinstance(self.store, LocalStore):
            return Path(self.store.location(digest)).read_bytes()
        assert isinstance(self.store, S3Store)
        key = self.store._key(digest.split(":")[1])
        return self.client.get_object(Bucket=self.store.bucket, Key=key)["Body"].read()

    def pending_uploads(self) -> list[Any]:
        if isinstance(self.store, S3Store):
            return self.client.list_multipart_uploads(Bucket=self.store.bucket).get("Uploads", [])
        return list((self.store.root / "tmp").glob("*")) if (self.store.root / "tmp").exists() \
            else []


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        return Backend("local", LocalStore(tmp_path / "objects"))
    client = request.getfixturevalue("s3_client")
    store = request.getfixturevalue("make_s3_store")("team/objects")
    return Backend("s3", store, client)


@pytest.fixture
def store(backend: Backend) -> ObjectStore:
    return backend.store
