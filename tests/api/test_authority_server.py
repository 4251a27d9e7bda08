"""Issue 17's attacks performed through the real team server (SQLite and PostgreSQL + S3), as
tokens holding one role each: scoped reads and listings, digests claimed without the bytes,
existence oracles, forged evidence from an experiment namespace, steps without a role, prepare
writing nothing, deeply nested values, models from nowhere, the gate's floor, a self-granted
approver, and Unicode digits. Every refusal also checks that nothing changed."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from chainproof.errors import (
    BadInputError,
    NotFoundError,
    PermissionDeniedError,
    PolicyViolationError,
    ProvenanceError,
)
from chainproof.records.assets import AssetKind
from chainproof.records.steps import OutputSpec, now
from chainproof.service import Chainproof

NS = "warehouse"


def _count(cp: Chainproof, table: str) -> int:
    from sqlalchemy import text

    with cp.session() as session:
        return int(session.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one())


def _state(cp: Chainproof) -> dict[str, int]:
    return {t: _count(cp, t) for t in ("asset_versions", "steps", "model_versions", "aliases",
                                       "approvals", "promotion_decisions")}


def _headers(client: Any) -> dict[str, str]:
    return {"Authorization": client._http.headers["Authorization"]}


def test_reads_listings_and_digest_claims(cp: Chainproof, server: str, remote: Any,
                                          tmp_path: Path) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"only the secret namespace holds these bytes")
    cp.add(secret, kind="model", name="crown-jewels", namespace="secret")
    digest = "sha256:" + hashlib.sha256(secret.read_bytes()).hexdigest()
    thief = remote("lab-trainer", ("trainer",), "lab")
    # listings answer only with what the caller may read
    assert thief.all_versions() == []
    assert all(r["namespace"] == "lab" or r["identity"] == "lab-trainer"
               for r in thief.role_list())
    assert [k["identity"] for k in thief.key_list()] == ["lab-trainer"]
    assert thief.promotion_requests() == [] and thief.model_list() == []
    assert thief.verify() == [] and thief.step_list() == []  # verify-bytes re-hashes nothing
    with pytest.raises((NotFoundError, PermissionDeniedError)):
        thief.verify("secret/crown-jewels@1")
    # the bytes cannot be read, nor claimed by their digest; unknown digests answer the same
    before = _state(cp)
    with pytest.raises(NotFoundError):
        thief._download(digest, tmp_path / "stolen.bin")
    answers = []
    for claimed in (digest, "sha256:" + "ab" * 32):
        response = httpx.post(f"{server}/v1/assets", headers=_headers(thief), json={
            "namespace": "lab", "name": "stolen", "kind": "model", "digest": claimed})
        answers.append((response.status_code, response.json()["message"].replace(claimed, "D")))
    assert answers[0] == answers[1] and answers[0][0] == 400
    thief.create_model("lab/thief")
    with pytest.raises(BadInputError, match="uploaded or may read"):
        thief.register_model_stored("lab/thief", digest=digest)
    with pytest.raises(PermissionDeniedError):
        thief.register_model_version("lab/thief", "secret/crown-jewels@1")
    assert _state(cp) == before
    # bytes the caller uploads itself (its receipt proves it) are fine
    mine = tmp_path / "mine.bin"
    mine.write_bytes(b"my own weights")
    assert thief.add(mine, kind="model", name="mine", namespace="lab").created


def test_governance_through_the_server(cp: Chainproof, server: str, remote: Any,
                                       tmp_path: Path) -> None:
    data = remote("data-eng", ("data-writer",))
    trainer = remote("svc-trainer", ("trainer",))
    evaluator = remote("svc-evaluator", ("evaluator",))
    alice = remote("alice", ("approver",))
    deployer = remote("deployer", ("deployer",))
    nobody = remote("nobody", ())
    cp.set_namespace_mode("lab", "experiment")
    cp.grant_role("svc-trainer", "trainer", "lab")
    (tmp_path / "orders.csv").write_text("a,b\n1,2\n")
    data.add(tmp_path / "orders.csv", kind="dataset", name="orders", namespace=NS)
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights")
    trained = trainer.record_step(kind="train", inputs=[f"{NS}/orders@1"], namespace=NS,
                                  outputs=[OutputSpec(model, AssetKind.MODEL, "m", NS)],
                                  started_at=now())
    asset = trained.outputs[0].ref
    trainer.create_model(f"{NS}/mdl")
    trainer.register_model_version(f"{NS}/mdl", asset)
    # forged evidence: the trainer's own passing scan, recorded in its sandbox
    trainer.record_report(report_kind="scan", subjects=[asset], passed=True,
                          report={"verdict": "clean"}, name="self-scan", namespace="lab")
    rules = {r["rule"]: r["passed"] for r in
             trainer.check_promotion(f"{NS}/mdl", 1, "production").to_dict()["rules"]}
    assert rules["evidence:scan"] is False
    # a policy below the floor does not lower it: no approval, no move
    cp.set_promotion_policy("protected_aliases: []\nrules:\n  - match: {alias: production}\n"
                            "    approvals: {min: 0}\n    provenance: false\n")
    evaluator.record_report(report_kind="scan", subjects=[asset], passed=True,
                            report={"verdict": "clean"}, name="scan", namespace=NS)
    request = trainer.request_promotion(f"{NS}/mdl", 1, "production")
    before = _state(cp)
    with pytest.raises(PolicyViolationError, match="approvals"):
        deployer.execute_promotion(request)
    # an admin granting itself approver does not count
    cp.grant_role(cp.identity, "approver", NS)
    cp.approve(request)
    with pytest.raises(PolicyViolationError, match="approvals"):
        deployer.execute_promotion(request)
    assert _state(cp)["promotion_decisions"] == before["promotion_decisions"]
    alice.approve(request)
    deployer.execute_promotion(request)
    assert deployer.load_model(f"{NS}/mdl@production").to_dict()["digest"] == \
        trained.outputs[0].digest
    # an identity with no role records nothing; prepare writes nothing; deep values are 4xx
    before = _state(cp)
    with pytest.raises(PermissionDeniedError):
        nobody.record_step(kind="train", inputs=[], outputs=[], namespace=NS, started_at=now())
    step = {"id": "cd" * 16, "kind": "note", "namespace": NS, "inputs": [], "outputs": [],
            "started_at": now(), "ended_at": now()}
    response = httpx.post(f"{server}/v1/steps/prepare", headers=_headers(trainer),
                          json={"step": step, "receipts": []})
    assert response.status_code == 200 and response.json()["payload"] is None
    deep: dict[str, Any] = {}
    cursor = deep
    for _ in range(300):
        cursor["x"] = {}
        cursor = cursor["x"]
    response = httpx.post(f"{server}/v1/steps", headers=_headers(trainer), timeout=30,
                          content=json.dumps({"step": {**step, "parameters": deep}}).encode())
    assert 400 <= response.status_code < 500
    assert _state(cp) == before
    auditor = remote("auditor", ("auditor",), "*")
    assert httpx.get(f"{server}/v1/audit/log", headers=_headers(auditor)).status_code == 200
    # a model from nowhere (code only) does not verify
    code = tmp_path / "train.py"
    code.write_text("pass\n")
    code_ref = trainer.add(code, kind="code", name="train.py", namespace=NS).version.ref
    other = tmp_path / "nowhere.bin"
    other.write_bytes(b"from nowhere")
    trainer.record_step(kind="train", inputs=[code_ref], namespace=NS, started_at=now(),
                        outputs=[OutputSpec(other, AssetKind.MODEL, "nowhere", NS)])
    with pytest.raises(ProvenanceError, match="registered source data"):
        trainer.verify_chain(f"{NS}/nowhere@1")
    # Unicode digits are bad input, never a server error
    response = httpx.get(f"{server}/v1/resolve/{NS}/orders@²", headers=_headers(trainer))
    assert response.status_code == 400


def test_identical_retrain_and_reads_through_the_server(cp: Chainproof, server: str,
                                                        remote: Any, tmp_path: Path) -> None:
    data = remote("data-eng", ("data-writer",))
    trainer = remote("svc-trainer", ("trainer",))
    (tmp_path / "orders.csv").write_text("a,b\n1,2\n")
    data.add(tmp_path / "orders.csv", kind="dataset", name="orders", namespace=NS)
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights")
    steps = [trainer.record_step(kind="train", inputs=[f"{NS}/orders@1"], namespace=NS,
                                 outputs=[OutputSpec(model, AssetKind.MODEL, "m", NS)],
                                 started_at=now()) for _ in range(2)]
    # both runs name the one version as their output; lineage shows both producers
    assert [s.outputs[0].ref for s in steps] == [f"{NS}/m@1"] * 2
    graph = trainer.lineage(f"{NS}/m@1")
    first, second = steps[0].step.id, steps[1].step.id
    assert (first, f"{NS}/m@1") in graph.edges - graph.reproduced
    assert graph.reproduced == {(second, f"{NS}/m@1")}
    assert trainer.show(f"{NS}/m@1")["produced_by"] == [first, second]
    # a train step's own metrics are refused (the gate counts only an evaluate step's)
    before = _state(cp)
    metrics = tmp_path / "metrics.json"
    metrics.write_text('{"auc": 0.99}')
    with pytest.raises(BadInputError, match="evaluate"):
        trainer.record_step(kind="train", inputs=[f"{NS}/orders@1"], namespace=NS,
                            outputs=[OutputSpec(metrics, AssetKind.METRICS, "mm", NS)],
                            started_at=now())
    assert _state(cp) == before
    # registering the same bytes by file pins the produced version (its provenance kept)
    trainer.create_model(f"{NS}/by-file")
    registered = trainer.register_model_file(f"{NS}/by-file", model)
    assert (registered.asset.ref, registered.asset_created) == (f"{NS}/m@1", False)


def test_a_roleless_token_cannot_grow_the_log_at_will(cp: Chainproof, tmp_path: Path) -> None:
    from api.conftest import start_server

    url, proc = start_server(cp, extra_env={"CHAINPROOF_DENIALS_PER_MINUTE": "2"})
    try:
        cp.create_identity("nobody")
        _, token = cp.create_token("nobody", timedelta(days=1))
        before = cp.audit_log(limit=10_000)
        answers = {httpx.get(f"{url}/v1/resolve/secret{i}/x@1",
                             headers={"Authorization": f"Bearer {token}"}).status_code
                   for i in range(6)}
        assert answers == {403}
        added = [e for e in cp.audit_log(limit=10_000) if e not in before]
        assert [e["action"] for e in added] == ["access.denied"] * 2
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _scan_document(subject: str, digest: str, passed: bool) -> bytes:
    import rfc8785

    return rfc8785.dumps({"report_kind": "scan", "passed": passed,
                          "subjects": [{"ref": subject, "digest": digest}],
                          "report": {"verdict": "clean" if passed else "malicious"}})


def test_step_namespaces_and_client_times_through_the_server(
        cp: Chainproof, server: str, remote: Any, tmp_path: Path) -> None:
    data = remote("data-eng", ("data-writer",))
    trainer = remote("svc-trainer", ("trainer",))
    rogue = remote("rogue-trainer", ("trainer",))
    evaluator = remote("svc-evaluator", ("evaluator",))
    cp.grant_role("rogue-trainer", "trainer", "elsewhere")
    cp.set_trust_policy("namespaces:\n"
                        f"  {NS}:\n    steps:\n      train: {{signers: [svc-trainer]}}\n"
                        "      '*': {signers: ['*']}\n"
                        "  '*':\n    steps:\n      '*': {signers: ['*']}\n")
    (tmp_path / "orders.csv").write_text("a,b\n1,2\n")
    data.add(tmp_path / "orders.csv", kind="dataset", name="orders", namespace=NS)
    # a step declared in a lenient namespace is judged where it writes
    model = tmp_path / "rogue.bin"
    model.write_bytes(b"rogue weights")
    rogue.record_step(kind="train", inputs=[f"{NS}/orders@1"], namespace="elsewhere",
                      outputs=[OutputSpec(model, AssetKind.MODEL, "rogue", NS)],
                      started_at=now())
    with pytest.raises(ProvenanceError, match=f"may not attest train steps in {NS}"):
        trainer.verify_chain(f"{NS}/rogue@1")
    # a passing scan dated in the future is refused, and a later-dated one does not beat a
    # later failing one: order is the log's
    good = tmp_path / "good.bin"
    good.write_bytes(b"weights")
    asset = trainer.record_step(kind="train", inputs=[f"{NS}/orders@1"], namespace=NS,
                                outputs=[OutputSpec(good, AssetKind.MODEL, "m", NS)],
                                started_at=now()).outputs[0]
    early = tmp_path / "future-scan.json"
    early.write_bytes(_scan_document(asset.ref, asset.digest, True))
    before = _state(cp)
    with pytest.raises(BadInputError, match="in the future"):
        evaluator.record_step(kind="scan", inputs=[asset.ref], namespace=NS,
                              outputs=[OutputSpec(early, AssetKind.REPORT, "scan", NS)],
                              parameters={"passed": True},
                              started_at="2099-01-01T00:00:00+00:00",
                              ended_at="2099-01-01T00:00:01+00:00")
    assert _state(cp) == before
    # within the clock-skew allowance, a "later" time still does not order evidence
    from datetime import UTC, datetime

    soon = (datetime.now(UTC) + timedelta(minutes=9)).isoformat()
    evaluator.record_step(kind="scan", inputs=[asset.ref], namespace=NS,
                          outputs=[OutputSpec(early, AssetKind.REPORT, "scan", NS)],
                          parameters={"passed": True}, started_at=soon, ended_at=soon)
    trainer.create_model(f"{NS}/mdl")
    trainer.register_model_version(f"{NS}/mdl", asset.ref)

    def scan_rule() -> bool:
        rules = trainer.check_promotion(f"{NS}/mdl", 1, "production").to_dict()["rules"]
        return bool({r["rule"]: r["passed"] for r in rules}["evidence:scan"])

    assert scan_rule() is True
    evaluator.record_report(report_kind="scan", subjects=[asset.ref], passed=False,
                            report={"verdict": "malicious"}, name="scan", namespace=NS)
    assert scan_rule() is False


def test_ids_and_aliases_a_client_cannot_bend(cp: Chainproof, server: str, remote: Any,
                                              tmp_path: Path) -> None:
    import base64

    from chainproof.attest import IN_TOTO_PAYLOAD_TYPE, Statement, sign_envelope

    trainer = remote("svc-trainer", ("trainer",))
    deployer = remote("deployer", ("deployer",))
    other_ns = remote("other-approver", ("approver",), "beta")
    model = tmp_path / "m.bin"
    model.write_bytes(b"weights")
    asset = trainer.add(model, kind="model", name="m", namespace=NS).version.ref
    trainer.create_model(f"{NS}/mdl")
    trainer.register_model_version(f"{NS}/mdl", asset)
    cp.set_promotion_policy("protected_aliases: [production]\nrules:\n"
                            "  - match: {alias: staging}\n    provenance: false\n")
    # a numeric alias could never be resolved (MODEL@1 is version 1): refused, nothing moved
    before = _state(cp)
    for attempt in (lambda: deployer.set_alias(f"{NS}/mdl", 1, "1"),
                    lambda: trainer.request_promotion(f"{NS}/mdl", 1, "007"),
                    lambda: trainer.check_promotion(f"{NS}/mdl", 1, "2")):
        with pytest.raises(BadInputError, match="is a number"):
            attempt()
    assert _state(cp) == before
    request = trainer.request_promotion(f"{NS}/mdl", 1, "staging")
    # another namespace's approver: the request answers like an unknown one
    answers = []
    for rid in (request, "0" * 16):
        response = httpx.post(f"{server}/v1/promotions/{rid}/reviews/prepare",
                              headers=_headers(other_ns), json={"decision": "approve"})
        answers.append((response.status_code, response.json()["message"].replace(rid, "R")))
    assert answers[0] == answers[1] and answers[0][0] == 404
    # a decision id the client made up (escape codes, markup, paths) is refused
    prepared = httpx.post(f"{server}/v1/promotions/{request}/execute/prepare",
                          headers=_headers(deployer), json={}).json()
    statement = Statement.from_bytes(base64.b64decode(prepared["payload"]))
    before = _state(cp)
    for forged in ("\x1b[2J[bold green]OK[/]", "../../etc/passwd", "A" * 16):
        doc = statement.to_dict()
        doc["predicate"]["decision"] = forged
        payload = Statement.from_dict(doc).to_json_bytes()
        envelope = sign_envelope(payload, IN_TOTO_PAYLOAD_TYPE, [deployer.signer]).to_json()
        response = httpx.post(f"{server}/v1/promotions/{request}/execute",
                              headers=_headers(deployer), json={"envelope": envelope})
        assert response.status_code == 400, response.text
        assert "16 lowercase hex digits" in response.json()["message"]
    assert _state(cp) == before
    # free text with terminal escapes is refused by the server's schema too
    response = httpx.post(f"{server}/v1/promotions/{request}/reviews/prepare",
                          headers=_headers(deployer),
                          json={"decision": "reject", "reason": "\x1b[2Jfine"})
    assert response.status_code == 422 and "control character" in response.text
    assert _state(cp) == before
    deployer.execute_promotion(request)
    assert deployer.resolve_alias(f"{NS}/mdl", "staging")["version"] == 1
