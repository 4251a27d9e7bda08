"""The governed registry and promotion gate (I4) under attack, on both backends."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from pipeline_fixtures import NS, Pipeline, act_as
from sqlalchemy import text

from chainproof.access import grants
from chainproof.errors import (
    AuthenticationError,
    ConflictError,
    LedgerIntegrityError,
    PermissionDeniedError,
    PolicyViolationError,
)
from chainproof.ledger import audit
from chainproof.service import Chainproof

MODEL = f"{NS}/fraud-review"


def audit_problems(cp: Chainproof) -> str:
    verifier = audit.load_log_verifier(cp.settings.log_public_path, cp.settings.origin)
    with cp.session() as session, pytest.raises(LedgerIntegrityError) as info:
        audit.verify_log(session, verifier)
    return "\n".join(info.value.problems)


def audit_ok(cp: Chainproof) -> None:
    verifier = audit.load_log_verifier(cp.settings.log_public_path, cp.settings.origin)
    with cp.session() as session:
        audit.verify_log(session, verifier)


def denials(cp: Chainproof) -> list[dict[str, object]]:
    with cp.session() as session:
        rows = session.execute(text("SELECT body FROM log_entries WHERE action = "
                                    "'access.denied' ORDER BY seq")).all()
    return [json.loads(bytes(r[0]))["detail"] for r in rows]


def test_governed_promotion_end_to_end(pipe: Pipeline) -> None:
    v1 = pipe.train("a", 0.90)
    request = pipe.trainer.request_promotion(MODEL, v1, "production")
    gate = pipe.trainer.check_request(request)
    assert {o.rule: o.passed for o in gate.outcomes} == {
        "approvals": False, "provenance": True, "evidence:scan": True, "metrics:auc": True,
        "regression:auc": True, "inputs": True}
    pipe.alice.approve(request)
    with pytest.raises(PolicyViolationError, match="blocked"):
        pipe.deployer.execute_promotion(request)  # one approval of two
    pipe.bob.approve(request)
    gate, decision = pipe.deployer.execute_promotion(request)
    assert gate.passed
    at = pipe.admin.resolve_alias(MODEL, "production")
    assert at["version"] == v1 and at["decision"] == decision and not at["override"]
    explained = pipe.admin.explain_alias(MODEL, "production")
    assert explained["promotion"]["result"] == "allowed"
    assert {a["approver"] for a in explained["promotion"]["approvals"]} == {"alice", "bob"}
    audit_ok(pipe.admin)


def test_trainer_cannot_promote_approve_move_or_write_data(pipe: Pipeline,
                                                           tmp_path: Path) -> None:
    v1 = pipe.train("a", 0.90)
    request = pipe.trainer.request_promotion(MODEL, v1, "production")
    for attempt in (lambda: pipe.trainer.approve(request),
                    lambda: pipe.trainer.execute_promotion(request),
                    lambda: pipe.trainer.set_alias(MODEL, v1, "production"),
                    lambda: pipe.trainer.add(tmp_path / "raw.csv", kind="dataset",
                                             name="orders-evil", namespace=NS),
                    lambda: pipe.trainer.grant_role("svc-trainer", "approver", NS)):
        with pytest.raises(PermissionDeniedError):
            attempt()
    logged = denials(pipe.admin)
    assert [d["identity"] for d in logged] == ["svc-trainer"] * 5
    assert [d["permission"] for d in logged] == ["promotion:approve", "promotion:execute",
                                                 "alias:move", "write:data", "admin"]
    with pytest.raises(Exception, match="no alias"):
        pipe.admin.resolve_alias(MODEL, "production")
    assert pipe.admin.all_versions(namespace=NS, kind="dataset")[-1].name == "orders"
    audit_ok(pipe.admin)


def test_protected_alias_cannot_be_moved_directly_even_by_deployer(pipe: Pipeline) -> None:
    v1 = pipe.train("a", 0.90)
    with pytest.raises(PermissionDeniedError, match="protected"):
        pipe.deployer.set_alias(MODEL, v1, "production")
    pipe.deployer.set_alias(MODEL, v1, "staging")  # unprotected: a deployer may move it
    assert pipe.admin.resolve_alias(MODEL, "staging")["version"] == v1


def test_approver_cannot_approve_own_chain(pipe: Pipeline, tmp_path: Path) -> None:
    # carol is an approver who also ran the training step
    carol = act_as(pipe.admin, "carol", tmp_path, ("approver", "trainer"))
    pipe.trainer = carol
    v1 = pipe.train("carol", 0.90)
    request = carol.request_promotion(MODEL, v1, "production")
    carol.approve(request)
    pipe.alice.approve(request)
    with pytest.raises(PolicyViolationError) as info:
        pipe.deployer.execute_promotion(request)
    assert any("carol: authored or ran a step in this model's chain" in p
               for p in info.value.problems)


def test_same_approver_twice(pipe: Pipeline) -> None:
    request = pipe.trainer.request_promotion(MODEL, pipe.train("a", 0.9), "production")
    pipe.alice.approve(request)
    with pytest.raises(ConflictError, match="already reviewed"):
        pipe.alice.approve(request)
    with pytest.raises(PolicyViolationError, match="blocked"):
        pipe.deployer.execute_promotion(request)


def test_approval_replayed_onto_another_request(pipe: Pipeline) -> None:
    v1 = pipe.train("a", 0.9)
    first = pipe.trainer.request_promotion(MODEL, v1, "staging-x")
    pipe.alice.approve(first)
    pipe.bob.approve(first)
    second = pipe.trainer.request_promotion(MODEL, v1, "production")
    pipe.alice.approve(second)
    # bob's signed approval of `first` is copied onto `second` by someone with DB access
    with pipe.admin.engine.begin() as conn:
        env = conn.execute(text("SELECT envelope FROM approvals WHERE request_id = :r AND "
                                "approver = 'bob'"), {"r": first}).scalar_one()
        conn.execute(text("INSERT INTO approvals (request_id, approver, decision, reason, "
                          "envelope, keyid, created_at, log_seq) SELECT :r, approver, decision, "
                          "reason, envelope, keyid, created_at, log_seq FROM approvals WHERE "
                          "request_id = :f AND approver = 'bob'"), {"r": second, "f": first})
    assert env
    with pytest.raises(PolicyViolationError) as info:
        pipe.deployer.execute_promotion(second)
    assert any("for another request" in p and "(replayed)" in p for p in info.value.problems)
    assert "approval" in audit_problems(pipe.admin)


def test_metrics_threshold_and_regression(pipe: Pipeline) -> None:
    low = pipe.train("low", 0.70)
    gate = pipe.admin.check_promotion(MODEL, low, "production")
    assert not gate.passed
    assert [o.detail for o in gate.outcomes if o.rule == "metrics:auc"] == [
        "auc = 0.7 fails >= 0.85"]
    pipe.promote(pipe.train("good", 0.95))
    worse = pipe.train("worse", 0.90)  # passes the threshold, regresses by more than 0.02
    gate = pipe.admin.check_promotion(MODEL, worse, "production")
    assert [o.passed for o in gate.outcomes if o.rule == "regression:auc"] == [False]


def test_inputs_rule_blocks_foreign_data(pipe: Pipeline, tmp_path: Path) -> None:
    pipe.admin.add(tmp_path / "labels.csv", kind="labels", name="scraped", namespace="sandbox")
    pipe.admin.grant_role("svc-trainer", "reader", "sandbox")
    version = pipe.train("foreign", 0.9, labels_ref="sandbox/scraped@1")
    gate = pipe.admin.check_promotion(MODEL, version, "production")
    assert [o.detail for o in gate.outcomes if o.rule == "inputs"] == [
        "data from outside the allowed sources: sandbox/scraped"]


def test_rollback_goes_through_the_gate(pipe: Pipeline) -> None:
    v1 = pipe.train("a", 0.90)
    pipe.promote(v1)
    v2 = pipe.train("b", 0.91)
    pipe.promote(v2)
    pipe.promote(v1)  # rollback: the same gate (0.90 is within 0.02 of 0.91)
    with pipe.admin.session() as session:
        from chainproof.registry import operations

        hist = operations.history(session, MODEL)
    assert [(h["from_version"], h["to_version"]) for h in hist] == [(None, v1), (v1, v2),
                                                                     (v2, v1)]
    assert all(h["decision"] for h in hist)


def test_break_glass_is_loud(pipe: Pipeline) -> None:
    bad = pipe.train("bad", 0.10)
    with pytest.raises(PermissionDeniedError):
        pipe.deployer.force_promotion(MODEL, bad, "production", "hotfix")
    gate, decision = pipe.admin.force_promotion(MODEL, bad, "production", "incident 4711")
    assert not gate.passed
    at = pipe.admin.resolve_alias(MODEL, "production")
    assert at["override"] and at["decision"] == decision
    with pipe.admin.session() as session:
        from chainproof.registry import operations

        assert operations.history(session, MODEL)[-1]["reason"] == "incident 4711"
    assert pipe.admin.explain_alias(MODEL, "production")["promotion"]["override"] is True


def test_direct_alias_edit_detected_by_audit(pipe: Pipeline) -> None:
    v1 = pipe.train("a", 0.90)
    pipe.promote(v1)
    v2 = pipe.train("evil", 0.10)
    with pipe.admin.engine.begin() as conn:
        conn.execute(text("UPDATE aliases SET version = :v WHERE alias = 'production'"),
                     {"v": v2})
    found = audit_problems(pipe.admin)
    assert f"to_version is {v2} in the database but {v1} in log entry" in found


def test_tokens_expire_revoke_and_carry_one_identity(pipe: Pipeline) -> None:
    from datetime import UTC, datetime

    token_id, token = pipe.admin.create_token("svc-trainer", timedelta(days=1))
    engine = pipe.admin.engine
    assert grants.authenticate(engine, token) == "svc-trainer"
    with pytest.raises(AuthenticationError, match="expired"):
        grants.authenticate(engine, token, now=datetime.now(UTC) + timedelta(days=2))
    with pytest.raises(AuthenticationError, match="unknown token"):
        grants.authenticate(engine, token[:-2] + "xx")
    pipe.admin.revoke_token(token_id)
    with pytest.raises(AuthenticationError, match="revoked"):
        grants.authenticate(engine, token)
    with pipe.admin.session() as session:
        stored = session.execute(text("SELECT token_hash FROM tokens")).scalars().all()
    assert token not in stored and all(len(h) == 64 for h in stored)


def test_grant_in_one_namespace_does_not_reach_another(pipe: Pipeline, tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("x\n")
    with pytest.raises(PermissionDeniedError, match="namespace 'other'"):
        pipe.data.add(tmp_path / "x.csv", kind="dataset", name="x", namespace="other")
    with pytest.raises(PermissionDeniedError):
        pipe.data.materialize(pipe.admin.add(tmp_path / "x.csv", kind="dataset", name="x",
                                             namespace="other").version)
