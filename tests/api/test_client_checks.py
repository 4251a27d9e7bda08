"""Clients don't trust the server blindly (I11), tried with a malicious transport between a real
client and a real server: a prepared statement for another request is refused before anything is
signed; a server that answers with an older log head than the client already verified (a
rollback) is an error naming both heads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from chainproof.client import RemoteChainproof
from chainproof.errors import LedgerIntegrityError, SignatureError
from chainproof.service import Chainproof

NS = "warehouse"


class Rewriting(httpx.HTTPTransport):
    """A man in the middle: rewrites request paths and, for one path, the answer."""

    def __init__(self, swap_path: tuple[str, str] | None = None,
                 answer_for: dict[str, bytes] | None = None) -> None:
        super().__init__()
        self.swap_path = swap_path
        self.answer_for = answer_for or {}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path in self.answer_for:
            return httpx.Response(200, content=self.answer_for[request.url.path],
                                  headers={"content-type": "application/json"})
        if self.swap_path and self.swap_path[0] in request.url.path:
            request.url = request.url.copy_with(
                path=request.url.path.replace(*self.swap_path))
        return super().handle_request(request)


def _client(cp: Chainproof, server: str, remote: Any, name: str, role: str,
            transport: httpx.BaseTransport, tmp_path: Path) -> RemoteChainproof:
    honest = remote(name, (role,))
    token = honest._http.headers["Authorization"].removeprefix("Bearer ")
    return RemoteChainproof(server, token, signing_key_path=honest.settings.signing_key_path,
                            cache_dir=tmp_path / "mitm-cache", transport=transport)


def _two_requests(cp: Chainproof, tmp_path: Path) -> tuple[str, str]:
    (tmp_path / "m.bin").write_bytes(b"model")
    cp.add(tmp_path / "m.bin", kind="model", name="m", namespace=NS)
    cp.create_model(f"{NS}/mdl")
    cp.register_model_version(f"{NS}/mdl", f"{NS}/m@1")
    return (cp.request_promotion(f"{NS}/mdl", 1, "production"),
            cp.request_promotion(f"{NS}/mdl", 1, "staging"))


def test_a_swapped_request_is_refused_before_signing(cp: Chainproof, server: str, remote: Any,
                                                     tmp_path: Path) -> None:
    wanted, other = _two_requests(cp, tmp_path)
    mitm = Rewriting(swap_path=(f"/promotions/{wanted}/reviews/prepare",
                                f"/promotions/{other}/reviews/prepare"))
    approver = _client(cp, server, remote, "alice", "approver", mitm, tmp_path)
    with pytest.raises(SignatureError, match="other than the one requested"):
        approver.approve(wanted)
    assert all(r["reviews"] == [] for r in cp.promotion_requests())
    approver.close()


def test_a_rolled_back_log_is_seen_without_a_witness(cp: Chainproof, server: str, remote: Any,
                                                     tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAINPROOF_CHECKPOINTS", str(tmp_path / "remembered"))
    old_head = json.dumps(cp.log_head()).encode()
    reader = remote("reader-1", ("reader",))
    reader.all_versions()  # first contact: the newest head is remembered
    _two_requests(cp, tmp_path)  # the log grows
    reader.check_log()  # a consistent, larger head: remembered
    # now the server (or someone in the middle) answers with the older head: a rollback
    lying = _client(cp, server, remote, "reader-2", "reader",
                    Rewriting(answer_for={"/v1/audit/head": old_head}), tmp_path)
    with pytest.raises(LedgerIntegrityError) as caught:
        lying.all_versions()
    assert str(json.loads(old_head)["size"]) in caught.value.message
    lying.close()
