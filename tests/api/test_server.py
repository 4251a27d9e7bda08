"""The team server end to end: remote identities with tokens and their own keys run the governed
pipeline; every attack a remote caller can try is refused with a 4xx and changes nothing."""

from __future__ import annotations

import base64
import json
import pickle
import sys
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

import chainproof
from chainproof.errors import (
    AuthenticationError,
    BadInputError,
    PermissionDeniedError,
    SignatureError,
)
from chainproof.records.assets import AssetKind
from chainproof.scan import scan_path
from chainproof.service import Chainproof, OutputSpec

NS = "warehouse"
MODEL = f"{NS}/fraud-review"


def test_governed_pipeline_over_http(cp: Chainproof, remote, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = remote("data-eng", ("data-writer",))
    feats = remote("svc-feature-job", ("feature-writer",))
    trainer = remote("svc-trainer", ("trainer",))
    evaluator = remote("svc-evaluator", ("evaluator",))
    alice = remote("alice", ("approver",))
    bob = remote("bob", ("approver",))
    deployer = remote("deployer", ("deployer",))
    (tmp_path / "orders.csv").write_text("amount,fraud\n1,0\n2,1\n")
    added = data.add(tmp_path / "orders.csv", kind="dataset", name="orders", namespace=NS)
    assert added.created and added.version.ref == f"{NS}/orders@1"
    out = tmp_path / "feats.csv"
    feats.run(kind="features", namespace=NS, inputs=[f"{NS}/orders@1"],
              outputs=[OutputSpec(out, AssetKind.FEATURES, "feats")],
              command=[sys.executable, "-c", f"import os, shutil; shutil.copy("
                       f"os.environ['CHAINPROOF_INPUT_ORDERS'], {str(out)!r})"])
    model = tmp_path / "model.pkl"
    model.write_bytes(pickle.dumps({"weights": [1.0]}, protocol=4))
    trainer.record_step(kind="train", namespace=NS, inputs=[f"{NS}/feats@1"],
                        outputs=[OutputSpec(model, AssetKind.MODEL, "fraud-model")],
                        started_at=chainproof.service.now())
    asset = f"{NS}/fraud-model@1"
    evaluator.record_report(report_kind="scan", subjects=[asset],
                            report=scan_path(model).to_dict(), passed=True, name="model-scan")
    trainer.create_model(MODEL)
    version = trainer.register_model_version(MODEL, asset)
    cp.set_promotion_policy("protected_aliases: [production]\nrules:\n"
                            "  - match: {alias: production}\n"
                            "    approvals: {min: 2, role: approver, independent: true}\n"
                            "    evidence: [scan]\n")
    request = trainer.request_promotion(MODEL, version, "production")
    with pytest.raises(PermissionDeniedError):
        trainer.approve(request)  # 403 over HTTP, mapped back to the same error
    alice.approve(request)
    bob.approve(request)
    gate, decision = deployer.execute_promotion(request)
    assert gate.passed and decision
    assert cp.resolve_alias(MODEL, "production")["decision"] == decision
    loaded = deployer.load_model(f"{MODEL}@production", dest=tmp_path / "served.pkl")
    assert loaded.path.read_bytes() == model.read_bytes()
    assert cp.verify_chain(asset).ok  # signatures made by remote clients verify embedded too
    auditor = remote("auditor", ("auditor",), namespace="*")
    assert auditor.audit_verify().size > 0
    explained = auditor.explain(f"{MODEL}@production")
    assert explained["promotion"]["result"] == "allowed"


def test_tokens_refused(cp: Chainproof, remote, server: str) -> None:  # type: ignore[no-untyped-def]
    client = remote("svc-x", ("reader",))
    assert client.all_versions() == []
    assert httpx.get(f"{server}/v1/assets").status_code == 401  # no token at all
    for token in ("cpt_unknown", "not-a-token"):
        response = httpx.get(f"{server}/v1/assets",
                             headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401
    token_id, token = cp.create_token("svc-x", timedelta(hours=1))
    cp.revoke_token(token_id)
    response = httpx.get(f"{server}/v1/assets", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401 and "revoked" in response.json()["message"]


def test_namespace_a_token_on_namespace_b(cp: Chainproof, remote, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    writer = remote("writer-a", ("data-writer",), namespace="team-a")
    (tmp_path / "x.csv").write_text("x\n1\n")
    writer.add(tmp_path / "x.csv", kind="dataset", name="x", namespace="team-a")
    with pytest.raises(PermissionDeniedError, match="team-b"):
        writer.add(tmp_path / "x.csv", kind="dataset", name="x", namespace="team-b")
    assert [v.namespace for v in cp.all_versions()] == ["team-a"]


def test_tampered_prepared_statement_refused(cp: Chainproof, remote, server: str,
                                             tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    trainer = remote("svc-trainer", ("trainer", "data-writer"))
    (tmp_path / "d.csv").write_text("d\n")
    trainer.add(tmp_path / "d.csv", kind="dataset", name="d", namespace=NS)
    model = tmp_path / "m.bin"
    model.write_bytes(b"model")
    digest, size, _ = trainer._upload(model)
    receipts = trainer._take_receipts()
    body = {"id": "ab" * 16, "kind": "train", "namespace": NS, "inputs": [f"{NS}/d@1"],
            "outputs": [{"kind": "model", "name": "m", "digest": digest, "size": size}],
            "command": ["train"], "parameters": {}, "started_at": "2026-01-01T00:00:00Z",
            "ended_at": "2026-01-01T00:00:01Z", "environment": {}, "code_revision": {}}
    prepared = trainer._call("POST", "/v1/steps/prepare",
                             json={"step": body, "receipts": receipts})
    payload = base64.b64decode(prepared["payload"])
    forged = payload.replace(b'"train"', b'"trust-me"')
    from chainproof.attest import IN_TOTO_PAYLOAD_TYPE, sign_envelope

    envelope = sign_envelope(forged, IN_TOTO_PAYLOAD_TYPE, [trainer.signer]).to_json()
    with pytest.raises(SignatureError, match="differs from the one this change would record"):
        trainer._call("POST", "/v1/steps", json={"step": body, "envelope": envelope,
                                                 "receipts": receipts})
    # a correctly signed statement by a key of *another* identity is refused too
    other = remote("svc-other", ("trainer",))
    envelope = sign_envelope(payload, IN_TOTO_PAYLOAD_TYPE, [other.signer]).to_json()
    with pytest.raises(SignatureError, match="not signed by a registered key of svc-trainer"):
        trainer._call("POST", "/v1/steps", json={"step": body, "envelope": envelope,
                                                 "receipts": receipts})
    assert [v.name for v in cp.all_versions(namespace=NS)] == ["d"]


def test_bad_requests_are_4xx(cp: Chainproof, remote, server: str) -> None:  # type: ignore[no-untyped-def]
    client = remote("svc-y", ("data-writer",))
    headers = {"Authorization": client._http.headers["Authorization"]}
    wrong = "sha256:" + "00" * 32
    response = httpx.put(f"{server}/v1/blobs/{wrong}", content=b"hello", headers=headers)
    assert response.status_code == 400 and "hash to" in response.json()["message"]
    response = httpx.put(f"{server}/v1/blobs/not-a-digest", content=b"x", headers=headers)
    assert response.status_code == 400
    response = httpx.post(f"{server}/v1/assets", content=b"{not json",
                          headers={**headers, "Content-Type": "application/json"})
    assert response.status_code == 422
    big = json.dumps({"document": "x" * 3_000_000})
    response = httpx.put(f"{server}/v1/trust", content=big,
                         headers={**headers, "Content-Type": "application/json"})
    assert response.status_code == 413
    response = httpx.get(f"{server}/v1/resolve/{NS}/ghost@1", headers=headers)
    assert response.status_code == 404
    # in a namespace the caller may not read, unknown and existing answer alike: 403
    response = httpx.get(f"{server}/v1/resolve/ghost@1", headers=headers)
    assert response.status_code == 403
    with pytest.raises(BadInputError):
        client.add(Path("/nonexistent/file.csv"), kind="dataset", name="z", namespace=NS)


def test_cli_talks_to_the_server(cp: Chainproof, remote, server: str, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    from chainproof.cli.main import main

    client = remote("svc-cli", ("data-writer",))
    token = client._http.headers["Authorization"].removeprefix("Bearer ")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.csv").write_text("c\n1\n")
    assert main(["--server", server, "--token", token, "add", "c.csv", "--kind", "dataset",
                 "--name", "c", "--namespace", NS]) == 0
    capsys.readouterr()
    assert main(["--server", server, "--token", token, "ls", "--json"]) == 0
    assert [v["ref"] for v in json.loads(capsys.readouterr().out)] == [f"{NS}/c@1"]
    assert main(["--server", server, "--token", "cpt_wrong", "ls"]) == 2
    assert main(["--server", server, "--token", token, "audit", "verify"]) == 2  # not an auditor
    assert AuthenticationError
