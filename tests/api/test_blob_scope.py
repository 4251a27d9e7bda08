"""Raw bytes over HTTP are scoped like the assets that hold them: knowing a digest is not enough.

An attacker with a token for one namespace asks for the blobs of another (by digest, and by
naming a directory manifest they may read as the container of a file it does not list)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from chainproof.digest import Manifest
from chainproof.errors import NotFoundError
from chainproof.service import Chainproof


def _headers(client) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"Authorization": client._http.headers["Authorization"]}


def test_blobs_readable_only_through_a_readable_asset(cp: Chainproof, remote, server: str,
                                                      tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    secret = tmp_path / "secret.csv"
    secret.write_text("card,amount\n4111,10\n")
    folder = tmp_path / "weights"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.bin").write_bytes(b"A" * 100)
    (folder / "sub" / "b.bin").write_bytes(b"B" * 50)
    file_version = cp.add(secret, kind="dataset", name="secret", namespace="team-a").version
    dir_version = cp.add(folder, kind="model", name="weights", namespace="team-a").version
    manifest = Manifest.from_bytes(cp.store.read_bytes(dir_version.digest))
    inner = f"sha256:{manifest.entries[0].digest}"

    insider = remote("reader-a", ("reader",), namespace="team-a")
    assert insider.materialize(file_version.ref).read_text() == secret.read_text()
    copy = insider.materialize(dir_version.ref)
    assert (copy / "sub" / "b.bin").read_bytes() == b"B" * 50

    outsider = remote("reader-b", ("reader",), namespace="team-b")
    with pytest.raises(NotFoundError):
        outsider._download(file_version.digest, tmp_path / "stolen")
    for digest, params in ((file_version.digest, {}), (dir_version.digest, {}),
                           (inner, {"within": dir_version.digest}), (inner, {})):
        response = httpx.get(f"{server}/v1/blobs/{digest}", params=params,
                             headers=_headers(outsider))
        assert response.status_code == 404, (digest, params, response.text)
        assert b"4111" not in response.content
    assert not (tmp_path / "stolen").exists()


def test_within_must_list_the_file(cp: Chainproof, remote, server: str,
                                   tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A directory the attacker may read does not unlock files it does not contain."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"not yours")
    target = cp.add(secret, kind="model", name="secret", namespace="team-a").version
    own = tmp_path / "own"
    own.mkdir()
    (own / "x.bin").write_bytes(b"mine")
    mine = cp.add(own, kind="model", name="own", namespace="team-b").version
    attacker = remote("reader-b", ("reader",), namespace="team-b")
    response = httpx.get(f"{server}/v1/blobs/{target.digest}", params={"within": mine.digest},
                         headers=_headers(attacker))
    assert response.status_code == 404
    # the attacker's own directory still works, file by file
    manifest = Manifest.from_bytes(cp.store.read_bytes(mine.digest))
    response = httpx.get(f"{server}/v1/blobs/sha256:{manifest.entries[0].digest}",
                         params={"within": mine.digest}, headers=_headers(attacker))
    assert response.status_code == 200 and response.content == b"mine"


def test_unknown_and_malformed_digests(cp: Chainproof, remote, server: str) -> None:  # type: ignore[no-untyped-def]
    client = remote("reader-a", ("reader",), namespace="team-a")
    unknown = "sha256:" + "00" * 32
    assert httpx.get(f"{server}/v1/blobs/{unknown}",
                     headers=_headers(client)).status_code == 404
    assert httpx.get(f"{server}/v1/blobs/not-a-digest",
                     headers=_headers(client)).status_code == 400
    assert httpx.get(f"{server}/v1/blobs/{unknown}", params={"within": "md5:00"},
                     headers=_headers(client)).status_code == 400


def test_an_identity_with_no_writing_role_stores_no_bytes(cp: Chainproof, server: str,
                                                          remote) -> None:  # type: ignore[no-untyped-def]
    import hashlib

    reader = remote("only-reads", ("reader",))
    nobody = remote("nobody", ())
    data = b"bytes nobody may park here"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    for client in (reader, nobody):
        for body in (data, data * 200_000):  # held in memory, and streamed
            response = httpx.put(f"{server}/v1/blobs/sha256:{hashlib.sha256(body).hexdigest()}",
                                 content=body, timeout=60,
                                 headers=_headers(client))
            assert response.status_code == 403
            assert "may not upload bytes" in response.json()["message"]
    assert not cp.store.exists(digest)
