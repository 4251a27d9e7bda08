"""The authority holes of issue 17, each tried as an attacker would, on both backends: forged
evidence, the gate floor, self-granted approvers, reviewer-executors, claimed digests, steps in
namespaces without a role, data from nowhere, stale outputs, compromised keys, and a load that
judges a past decision by its own policy. Every refusal also checks that nothing changed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from pipeline_fixtures import NS, Pipeline, act_as
from sqlalchemy import text

import chainproof
from chainproof.errors import (
    BadInputError,
    PermissionDeniedError,
    PolicyViolationError,
    ProvenanceError,
    ScanRequiredError,
    StepFailedError,
    UnapprovedModelError,
)
from chainproof.records.assets import AssetKind
from chainproof.records.steps import OutputSpec
from chainproof.service import Chainproof

MODEL = f"{NS}/fraud-review"
REF = f"{MODEL}@production"


def state(cp: Chainproof) -> dict[str, Any]:
    """Every table's row count but the log's own (refusals add access.denied entries)."""
    tables = ("assets", "asset_versions", "steps", "attestations", "model_versions",
              "aliases", "promotion_requests", "approvals", "promotion_decisions")
    with cp.session() as session:
        return {t: session.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one()
                for t in tables}


def gate_rules(cp: Chainproof, version: int) -> dict[str, bool]:
    return {o.rule: o.passed for o in cp.check_promotion(MODEL, version, "production").outcomes}


def test_evidence_from_an_experiment_namespace_does_not_count(pipe: Pipeline) -> None:
    version = pipe.train("rogue", 0.9, scan=False)
    asset = pipe.trainer.all_versions(namespace=NS, kind="model")[-1]
    pipe.admin.set_namespace_mode("lab", "experiment")
    pipe.admin.grant_role("svc-trainer", "trainer", "lab")
    # the trainer's own "passing scan" and perfect metrics, recorded in its sandbox
    pipe.trainer.record_report(report_kind="scan", subjects=[asset.ref], passed=True,
                               report={"verdict": "clean"}, name="self-scan", namespace="lab")
    metrics = pipe.tmp / "forged.json"
    metrics.write_text('{"auc": 0.99}')
    with chainproof.step("evaluate", inputs=[asset.ref], namespace="lab",
                         connection=pipe.trainer) as s:
        s.output(metrics, kind="metrics", name="forged-metrics", namespace="lab")
    rules = gate_rules(pipe.admin, version)
    assert rules["evidence:scan"] is False
    # the evaluator's real scan is what counts; the forged auc never replaces its 0.9
    pipe.evaluator.record_report(report_kind="scan", subjects=[asset.ref], passed=True,
                                 report={"verdict": "clean"}, name="scan", namespace=NS)
    gate = pipe.admin.check_promotion(MODEL, version, "production")
    assert {o.rule: o.passed for o in gate.outcomes}["evidence:scan"] is True
    assert "0.9" in next(o.detail for o in gate.outcomes if o.rule == "metrics:auc")


def test_a_later_failing_scan_by_the_evaluator_blocks_and_a_later_pass_supersedes(
        pipe: Pipeline) -> None:
    version = pipe.train("a", 0.9)
    asset = pipe.trainer.all_versions(namespace=NS, kind="model")[-1]
    pipe.evaluator.record_report(report_kind="scan", subjects=[asset.ref], passed=False,
                                 report={"verdict": "malicious"}, name="scan-2", namespace=NS)
    assert gate_rules(pipe.admin, version)["evidence:scan"] is False
    pipe.evaluator.record_report(report_kind="scan", subjects=[asset.ref], passed=True,
                                 report={"verdict": "clean", "rescan": True}, name="scan-3",
                                 namespace=NS)
    assert gate_rules(pipe.admin, version)["evidence:scan"] is True


@pytest.mark.parametrize("policy", [
    "protected_aliases: [production]\nrules:\n  - match: {alias: production}\n"
    "    approvals: {min: 0}\n    provenance: false\n",
    "protected_aliases: []\nrules: []\n",
    "protected_aliases: [production]\nrules:\n  - match: {alias: production}\n"
    "    provenance: false\n",
])
def test_no_policy_lowers_the_floor(pipe: Pipeline, policy: str) -> None:
    version = pipe.train("a", 0.9)
    pipe.admin.set_promotion_policy(policy)
    request = pipe.trainer.request_promotion(MODEL, version, "production")
    before = state(pipe.admin)
    with pytest.raises(PolicyViolationError, match="approvals"):
        pipe.deployer.execute_promotion(request)
    assert state(pipe.admin) == before
    rules = gate_rules(pipe.admin, version)
    assert rules["approvals"] is False and "provenance" in rules and "evidence:scan" in rules


def test_an_admin_granting_itself_approver_does_not_count(pipe: Pipeline) -> None:
    version = pipe.train("a", 0.9)
    pipe.admin.set_promotion_policy("protected_aliases: [production]\nrules: []\n")
    pipe.admin.grant_role(pipe.admin.identity, "approver", NS)
    request = pipe.trainer.request_promotion(MODEL, version, "production")
    pipe.admin.approve(request)
    detail = next(o for o in pipe.admin.check_request(request).outcomes
                  if o.rule == "approvals")
    assert not detail.passed and "lacks role approver" in detail.detail


def test_a_reviewer_never_executes_the_same_request(pipe: Pipeline) -> None:
    version = pipe.train("a", 0.9)
    both = act_as(pipe.admin, "carol", pipe.tmp, ("approver", "deployer"))
    request = pipe.trainer.request_promotion(MODEL, version, "production")
    pipe.alice.approve(request)
    both.approve(request)
    before = state(pipe.admin)
    with pytest.raises(PolicyViolationError, match="separation of duties"):
        both.execute_promotion(request)
    assert state(pipe.admin) == before
    pipe.deployer.execute_promotion(request)  # another deployer may


def test_a_digest_is_not_a_key(pipe: Pipeline, tmp_path: Path) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"the secret namespace's model")
    pipe.admin.add(secret, kind="model", name="crown-jewels", namespace="secret")
    digest = pipe.admin.resolve("secret/crown-jewels@1").digest
    lab = act_as(pipe.admin, "lab-trainer", tmp_path, ("trainer",), "lab")
    lab.create_model("lab/thief")
    before = state(pipe.admin)
    for attempt in (lambda: lab.register_model_stored("lab/thief", digest=digest),
                    lambda: lab.add_stored(digest=digest, kind="model", name="stolen",
                                           namespace="lab", media_type="x",
                                           is_directory=False)):
        with pytest.raises(BadInputError, match="uploaded or may read"):
            attempt()
    unknown = "sha256:" + "ab" * 32
    with pytest.raises(BadInputError, match="uploaded or may read") as unknown_error:
        lab.register_model_stored("lab/thief", digest=unknown)
    assert "may read" in unknown_error.value.message  # unknown and forbidden alike
    assert state(pipe.admin) == before
    with pytest.raises(PermissionDeniedError):
        lab.register_model_version("lab/thief", "secret/crown-jewels@1")
    # bytes the caller proves it holds (uploaded with a receipt) are fine
    assert lab.register_model_stored("lab/thief", digest=digest,
                                     proven=frozenset({digest})).version == 1


def test_a_step_needs_write_permission_where_it_is_recorded(pipe: Pipeline) -> None:
    outsider = act_as(pipe.admin, "outsider", pipe.tmp, ("reader",), NS)
    before = state(pipe.admin)
    with pytest.raises(PermissionDeniedError, match="record steps"):
        outsider.record_step(kind="train", inputs=[f"{NS}/orders@1"], outputs=[],
                             started_at=chainproof.service.now(), namespace=NS)
    assert state(pipe.admin) == before


def test_a_model_from_nowhere_fails_verification(pipe: Pipeline) -> None:
    code = pipe.tmp / "train.py"
    code.write_text("print('no data')\n")
    code_ref = pipe.trainer.add(code, kind="code", name="train.py", namespace=NS).version.ref
    model = pipe.tmp / "nowhere.bin"
    model.write_bytes(b"weights from nowhere")
    with chainproof.step("train", inputs=[code_ref], namespace=NS,
                         connection=pipe.trainer) as s:
        s.output(model, kind="model", name="nowhere")
    with pytest.raises(ProvenanceError, match="registered source data"):
        pipe.admin.verify_chain(f"{NS}/nowhere@1")


def test_a_stale_output_is_not_registered(pipe: Pipeline, tmp_path: Path) -> None:
    leftover = tmp_path / "model.joblib"
    leftover.write_bytes(b"from last week's run")
    before = state(pipe.admin)
    with pytest.raises(StepFailedError, match="not written by the command"):
        pipe.trainer.run(kind="train", inputs=[f"{NS}/feats@1"], namespace=NS,
                         command=[sys.executable, "-c", "pass"],
                         outputs=[OutputSpec(leftover, AssetKind.MODEL, "stale", NS)])
    after = state(pipe.admin)
    assert after["asset_versions"] == before["asset_versions"]
    assert after["steps"] == before["steps"] + 1  # the failure is recorded, no output


def test_compromised_key_withdraws_past_approvals_rotation_does_not(pipe: Pipeline) -> None:
    version = pipe.train("a", 0.9)
    pipe.promote(version)
    assert pipe.admin.load_model(REF).version == version
    alice_key = pipe.admin.key_list("alice")[0]["keyid"]
    pipe.admin.revoke_key(alice_key, "rotated")
    assert pipe.admin.load_model(REF).version == version  # signed before: still counts
    bob_key = pipe.admin.key_list("bob")[0]["keyid"]
    pipe.admin.revoke_key(bob_key, "laptop stolen", compromised=True)
    with pytest.raises(UnapprovedModelError, match="compromised"):
        pipe.admin.load_model(REF)


def test_load_judges_the_decision_by_its_own_policy_and_roles(pipe: Pipeline) -> None:
    version = pipe.train("a", 0.9)
    pipe.promote(version)
    pipe.admin.set_promotion_policy("protected_aliases: [production]\nrules:\n"
                                    "  - match: {alias: production}\n"
                                    "    approvals: {min: 3, role: approver}\n")
    pipe.admin.revoke_role("alice", "approver", NS)  # alice left the team
    assert pipe.admin.load_model(REF).version == version


def test_prepare_writes_nothing(pipe: Pipeline) -> None:
    version = pipe.train("a", 0.9)
    request = pipe.trainer.request_promotion(MODEL, version, "production")
    before = state(pipe.admin)
    with pipe.admin.session() as session:
        log_size = session.execute(text("SELECT size FROM log_head")).scalar_one()
    assert pipe.alice.prepare_review(request, "approve", None) is not None
    sub = chainproof.service.StepSubmission(
        id="ab" * 16, kind="note", namespace=NS, inputs=(), outputs=(), command=(),
        parameters={}, started_at=chainproof.service.now(), ended_at=chainproof.service.now(),
        environment={}, code_revision={})
    assert pipe.trainer.prepare_step(sub) is None
    assert state(pipe.admin) == before
    with pipe.admin.session() as session:
        assert session.execute(text("SELECT size FROM log_head")).scalar_one() == log_size


@pytest.mark.parametrize("signers", ["role:trainer", "role:approver"])
def test_gate_verify_and_load_agree_under_role_signers(pipe: Pipeline, signers: str) -> None:
    """One chain verifier: under a trust policy naming signers by role, the gate, verify and
    load all pass (the trainer holds the role) or all refuse (it does not)."""
    pipe.admin.set_trust_policy(
        "namespaces:\n  '*':\n    steps:\n"
        f"      train: {{signers: ['{signers}'], inputs: ['*']}}\n"
        "      '*': {signers: ['*'], inputs: ['*']}\n")
    version = pipe.train("a", 0.9)
    asset = pipe.trainer.all_versions(namespace=NS, kind="model")[-1].ref
    gate_ok = gate_rules(pipe.admin, version)["provenance"]
    try:
        pipe.admin.verify_chain(asset)
        verify_ok = True
    except ProvenanceError:
        verify_ok = False
    assert gate_ok is verify_ok is (signers == "role:trainer")
    if gate_ok:
        pipe.promote(version)
        assert pipe.admin.load_model(REF).version == version
    else:
        with pytest.raises(PolicyViolationError, match="provenance"):
            pipe.promote(version)


def test_a_policy_can_require_validation_with_label_checks(pipe: Pipeline) -> None:
    """Leaving out the label column does not make validation pass a governed gate."""
    version = pipe.train("a", 0.9)
    pipe.admin.set_promotion_policy(
        "protected_aliases: [production]\nrules:\n  - match: {alias: production}\n"
        "    evidence: [{validation: {block_on: warn, label_checks: true}}]\n")

    def validation(label_checked: bool, name: str) -> None:
        pipe.evaluator.record_report(
            report_kind="validation", subjects=[f"{NS}/feats@1", f"{NS}/labels@1"],
            passed=True, name=name,
            report={"findings": [], "severity": "info", "label_checked": label_checked},
            namespace=NS)

    validation(False, "no-labels")
    assert gate_rules(pipe.admin, version)["evidence:validation"] is False
    validation(True, "with-labels")
    assert gate_rules(pipe.admin, version)["evidence:validation"] is True


def test_a_scan_of_an_upstream_version_is_not_a_scan_of_the_candidate(pipe: Pipeline) -> None:
    pipe.evaluator.record_report(report_kind="scan", subjects=[f"{NS}/feats@1"], passed=True,
                                 report={"verdict": "clean"}, name="feats-scan", namespace=NS)
    version = pipe.train("unscanned", 0.9, scan=False)
    assert gate_rules(pipe.admin, version)["evidence:scan"] is False


def test_the_loader_trusts_only_the_gates_evidence(pipe: Pipeline) -> None:
    """A forged 'passing scan' from a sandbox satisfies neither the gate nor the loader."""
    version = pipe.train("forged", 0.9, scan=False)
    asset = pipe.trainer.all_versions(namespace=NS, kind="model")[-1].ref
    pipe.admin.set_namespace_mode("lab", "experiment")
    pipe.admin.grant_role("svc-trainer", "trainer", "lab")
    pipe.trainer.record_report(report_kind="scan", subjects=[asset], passed=True,
                               report={"verdict": "clean"}, name="self-scan", namespace="lab")
    pipe.admin.force_promotion(MODEL, version, "production", "incident 4711")
    with pytest.raises(ScanRequiredError):
        pipe.admin.load_model(REF, allow_override=True)


def test_metrics_count_only_from_an_evaluate_step(pipe: Pipeline) -> None:
    version = pipe.train("a", 0.80)  # the evaluator measured 0.80
    asset = pipe.trainer.all_versions(namespace=NS, kind="model")[-1].ref
    pipe.admin.set_trust_policy("namespaces:\n  '*':\n    steps:\n"
                                "      train: {signers: [svc-trainer]}\n"
                                "      '*': {signers: ['*']}\n")
    pipe.admin.set_namespace_mode("lab", "experiment")
    pipe.admin.grant_role("svc-trainer", "trainer", "lab")
    better = pipe.tmp / "better.json"
    better.write_text('{"auc": 0.998}')
    before = state(pipe.admin)
    with pytest.raises(BadInputError, match="count only from an `evaluate` step"), \
            chainproof.step("train", inputs=[asset], namespace="lab",
                            connection=pipe.trainer) as s:
        s.output(better, kind="metrics", name="my-metrics", namespace="lab")
    assert state(pipe.admin) == before
    # another step kind may output metrics, but the gate does not count them
    with chainproof.step("tune", inputs=[asset], namespace="lab", connection=pipe.trainer) as s:
        s.output(better, kind="metrics", name="my-metrics", namespace="lab")
    assert gate_rules(pipe.admin, version)["metrics:auc"] is False


def test_an_approval_cast_before_the_role_was_granted_never_counts(pipe: Pipeline) -> None:
    version = pipe.train("a", 0.9)
    carol = act_as(pipe.admin, "carol", pipe.tmp, ("reader",))
    request = pipe.trainer.request_promotion(MODEL, version, "production")
    pipe.admin.grant_role("carol", "approver", "*")  # a glob grant elsewhere...
    pipe.admin.revoke_role("carol", "approver", "*")
    with pytest.raises(PermissionDeniedError):
        carol.approve(request)
    pipe.alice.approve(request)
    detail = next(o for o in pipe.admin.check_request(request).outcomes if o.rule == "approvals")
    assert "alice" in detail.detail and "carol" not in detail.detail.split("not counted")[0]


def test_lineage_of_a_readable_version_hides_unreadable_namespaces(pipe: Pipeline) -> None:
    pipe.train("a", 0.9)
    asset = pipe.trainer.all_versions(namespace=NS, kind="model")[-1].ref
    lab = act_as(pipe.admin, "lab-reader", pipe.tmp, ("reader",), "lab")
    pipe.admin.set_namespace_mode("lab", "experiment")
    pipe.admin.grant_role("svc-trainer", "trainer", "lab")
    pipe.trainer.record_report(report_kind="scan", subjects=[asset], passed=True,
                               report={"verdict": "clean"}, name="lab-scan", namespace="lab")
    graph = lab.lineage("lab/lab-scan@1")
    assert set(graph.versions) == {"lab/lab-scan@1"}
    assert all(not ref.startswith(f"{NS}/") for s in graph.steps.values() for ref in s.inputs)
    assert graph.steps  # the lab step itself stays visible, without its warehouse input
    # the answer says it is incomplete (a count, no names)
    assert graph.hidden > 0 and graph.to_dict()["hidden"] == graph.hidden
    explained = lab.explain("lab/lab-scan@1")
    assert explained["hidden"] == graph.hidden
    assert not [x for group in ("data", "code", "intermediates", "reports")
                for x in explained[group] if x["ref"].startswith(f"{NS}/")]
    assert all(not ref.startswith(f"{NS}/") for st in explained["steps"]
               for ref in st["inputs"])
    assert pipe.trainer.lineage(asset).hidden == 0


def test_a_retrain_with_identical_bytes_shows_both_producing_steps(pipe: Pipeline) -> None:
    pipe.train("same", 0.8, scan=False)
    model = pipe.tmp / "model-same.bin"
    (pipe.tmp / "labels2.csv").write_text("fraud\n1\n")
    pipe.data.add(pipe.tmp / "labels2.csv", kind="labels", name="labels", namespace=NS)
    with chainproof.step("train", inputs=[f"{NS}/feats@1", f"{NS}/labels@2"], namespace=NS,
                         connection=pipe.trainer) as s:
        s.output(model, kind="model", name="fraud-model")
    versions = pipe.trainer.all_versions(namespace=NS, kind="model")
    assert [v.ref for v in versions] == [f"{NS}/fraud-model@1"]  # the same version
    shown = pipe.trainer.show(f"{NS}/fraud-model@1")
    assert len(shown["produced_by"]) == 2
    first, second = shown["produced_by"]
    assert shown["producer"]["id"] == first
    assert pipe.trainer.step_record(second).outputs == (f"{NS}/fraud-model@1",)
    graph = pipe.trainer.lineage(f"{NS}/fraud-model@1")
    assert {second, first} <= set(graph.steps)
    assert (first, f"{NS}/fraud-model@1") in graph.edges - graph.reproduced
    assert (second, f"{NS}/fraud-model@1") in graph.reproduced
    assert (f"{NS}/feats@1", second) in graph.edges
    assert (f"{NS}/labels@2", second) in graph.edges  # the retrain's own data is shown
    edges = graph.to_dict()["edges"]
    assert {"from": second, "to": f"{NS}/fraud-model@1", "reproduced": True} in edges
    assert 'label="reproduced"' in graph.to_dot()
    explained = pipe.trainer.explain(f"{NS}/fraud-model@1")
    assert explained["subject"]["produced_by"] == first
    assert explained["subject"]["reproduced_by"] == [second]
    assert f"{NS}/labels@2" in [d["ref"] for d in explained["data"]]
    assert {first, second} <= {s["id"] for s in explained["steps"]}
    # the chain is still judged by its first producer and verifies
    assert pipe.trainer.verify_chain(f"{NS}/fraud-model@1").ok


def test_registering_a_file_keeps_the_provenance_of_the_same_bytes(pipe: Pipeline) -> None:
    pipe.train("prov", 0.9, scan=False)
    produced = pipe.trainer.all_versions(namespace=NS, kind="model")[-1]
    model_file = pipe.tmp / "model-prov.bin"
    pipe.trainer.create_model(f"{NS}/by-file")
    result = pipe.trainer.register_model_file(f"{NS}/by-file", model_file)
    # the produced asset version is pinned (its chain verifies), no provenance-less copy
    assert (result.version, result.asset.ref, result.asset_created) == (1, produced.ref, False)
    assert pipe.trainer.model_versions(f"{NS}/by-file")["versions"][0]["asset"] == produced.ref
    assert pipe.trainer.verify_chain(produced.ref).ok
    # an explicit asset name asks for a separate asset (no step produced it)
    named = pipe.trainer.register_model_file(f"{NS}/by-file", model_file, asset_name="upload")
    assert (named.asset.ref, named.asset_created) == (f"{NS}/upload@1", True)
    assert named.asset.producer_step is None
    # bytes produced in another namespace are not linked across it
    pipe.admin.set_namespace_mode("lab", "experiment")
    pipe.admin.grant_role("svc-trainer", "trainer", "lab")
    pipe.trainer.create_model("lab/copy")
    other = pipe.trainer.register_model_file("lab/copy", model_file)
    assert other.asset.namespace == "lab" and other.asset.producer_step is None


def test_a_step_is_judged_by_every_namespace_it_writes_into(pipe: Pipeline) -> None:
    pipe.admin.set_trust_policy(
        "namespaces:\n"
        f"  {NS}:\n    steps:\n      train: {{signers: [svc-trainer]}}\n"
        "      '*': {signers: ['*']}\n"
        "  '*':\n    steps:\n      '*': {signers: ['*']}\n")
    rogue = act_as(pipe.admin, "rogue-trainer", pipe.tmp, ("trainer",), NS)
    pipe.admin.grant_role("rogue-trainer", "trainer", "elsewhere")
    model = pipe.tmp / "rogue.bin"
    model.write_bytes(b"rogue weights")
    # declared in `elsewhere` (whose policy lets anyone train), written into the governed NS
    with chainproof.step("train", inputs=[f"{NS}/feats@1", f"{NS}/labels@1"],
                         namespace="elsewhere", connection=rogue) as s:
        s.output(model, kind="model", name="rogue-model", namespace=NS)
    with pytest.raises(ProvenanceError, match=f"may not attest train steps in {NS}"):
        pipe.admin.verify_chain(f"{NS}/rogue-model@1")
    # the trainer the policy names, the same way, verifies
    honest = pipe.tmp / "honest.bin"
    honest.write_bytes(b"honest weights")
    pipe.admin.grant_role("svc-trainer", "trainer", "elsewhere")
    with chainproof.step("train", inputs=[f"{NS}/feats@1", f"{NS}/labels@1"],
                         namespace="elsewhere", connection=pipe.trainer) as s:
        s.output(honest, kind="model", name="honest-model", namespace=NS)
    assert pipe.admin.verify_chain(f"{NS}/honest-model@1").ok


def test_free_text_shown_to_auditors_carries_no_terminal_escapes(pipe: Pipeline) -> None:
    version = pipe.train("esc", 0.9)
    request = pipe.trainer.request_promotion(MODEL, version, "production")
    before = state(pipe.admin)
    with pytest.raises(BadInputError, match="control character"):
        pipe.alice.approve(request, "\x1b[2J\x1b[32mall good")
    with pytest.raises(BadInputError, match="control character"):
        pipe.admin.force_promotion(MODEL, version, "production", "oops\x1b]0;title\x07")
    with pytest.raises(BadInputError, match="control character"):
        pipe.trainer.run(kind="train", command=[sys.executable, "-c", "pass", "\x1b[31m"])
    for parameters in ({"p": "\x1b[2Jparam"}, {"\x1b]0;t\x07": 1}, {"n": ["ok", "\u009b31m"]}):
        with pytest.raises(BadInputError, match="control character"):
            pipe.trainer.record_step(kind="train", inputs=[f"{NS}/feats@1"], outputs=[],
                                     parameters=parameters,
                                     started_at=chainproof.service.now(), namespace=NS)
    for value in ("a\u009b31mRED", "txt\u202eexe.pdf"):  # C1 control, bidi override
        with pytest.raises(BadInputError, match="control character"):
            pipe.trainer.set_model_tag(MODEL, "note", value)
    assert state(pipe.admin) == before
    # chainproof's own message about a failure is kept, escaped
    with pytest.raises(RuntimeError), chainproof.step("train", inputs=[f"{NS}/feats@1"],
                                                     namespace=NS, connection=pipe.trainer):
        raise RuntimeError("bad \x1b[2J day")
    failed = pipe.trainer.step_list(kind="train", limit=1)[0]
    assert failed.error is not None and "\\x1b[2J" in failed.error and "\x1b" not in failed.error


def test_an_approver_who_cannot_read_the_whole_lineage_approves_once(pipe: Pipeline) -> None:
    """The review is one transaction; what runs after it (the gate for auto-execution) may not
    turn a committed approval into an error, and a retry is refused as already reviewed."""
    from chainproof.errors import ConflictError

    (pipe.tmp / "raw2.csv").write_text("amount\n2\n")
    pipe.admin.grant_role("data-eng", "data-writer", "datalake")
    raw = pipe.data.add(pipe.tmp / "raw2.csv", kind="dataset", name="raw",
                        namespace="datalake").version.ref
    pipe.admin.grant_role("svc-trainer", "reader", "datalake")
    model = pipe.tmp / "lake.bin"
    model.write_bytes(b"lake weights")
    with chainproof.step("train", inputs=[raw, f"{NS}/labels@1"], namespace=NS,
                         connection=pipe.trainer) as s:
        s.output(model, kind="model", name="lake-model")
    asset = pipe.trainer.all_versions(namespace=NS, kind="model")[-1].ref
    version = pipe.trainer.register_model_version(MODEL, asset)
    request = pipe.trainer.request_promotion(MODEL, version, "production")
    pipe.admin.set_promotion_policy(
        "protected_aliases: [production]\nrules:\n  - match: {alias: production}\n"
        "    approvals: {min: 1, role: approver}\n    auto_execute: true\n")
    assert pipe.alice.approve(request) is None  # alice cannot read datalake: no error
    with pytest.raises(ConflictError, match="already reviewed"):
        pipe.alice.approve(request)
    reviews = next(r for r in pipe.alice.promotion_requests() if r["id"] == request)["reviews"]
    assert [(r["approver"], r["decision"]) for r in reviews] == [("alice", "approve")]


def test_break_glass_is_marked_in_the_model_listing(pipe: Pipeline) -> None:
    version = pipe.train("bg", 0.9)
    pipe.admin.force_promotion(MODEL, version, "production", "incident 4711")
    listed = {m["model"]: m for m in pipe.alice.model_list()}[MODEL]
    assert listed["aliases"] == {"production": version}
    assert listed["overrides"] == ["production"]
    pipe.promote(version)  # through the gate now: no longer an override
    assert {m["model"]: m for m in pipe.alice.model_list()}[MODEL]["overrides"] == []


def test_the_gate_says_whose_evidence_did_not_count(pipe: Pipeline) -> None:
    version = pipe.train("why", 0.9, scan=False)
    asset = pipe.trainer.all_versions(namespace=NS, kind="model")[-1].ref
    pipe.admin.grant_role("svc-trainer", "evaluator", "lab")  # an evaluator elsewhere only
    pipe.admin.set_namespace_mode("lab", "experiment")
    pipe.admin.grant_role("svc-trainer", "trainer", "lab")
    pipe.trainer.record_report(report_kind="scan", subjects=[asset], passed=True,
                               report={"verdict": "clean"}, name="self-scan", namespace="lab")
    detail = {o.rule: o.detail for o in pipe.admin.check_promotion(
        MODEL, version, "production").outcomes}["evidence:scan"]
    assert "svc-trainer" in detail and "do not count" in detail


def test_explain_lists_the_validations_of_the_models_data(pipe: Pipeline) -> None:
    pipe.train("val", 0.9)
    report = pipe.evaluator.record_report(report_kind="validation", subjects=[f"{NS}/orders@1"],
                                          passed=True, report={"findings": []},
                                          name="orders-validation", namespace=NS)
    asset = pipe.trainer.all_versions(namespace=NS, kind="model")[-1].ref
    explained = pipe.alice.explain(asset)
    assert report.ref in [r["ref"] for r in explained["reports"]]


def test_validation_must_cover_every_input_of_the_training_step(pipe: Pipeline) -> None:
    """Clean data cannot carry a poisoned, never-validated table along: a passing validation
    of one training input does not vouch for another."""
    pipe.admin.set_promotion_policy(
        "protected_aliases: [production]\nrules:\n  - match: {alias: production}\n"
        "    approvals: {min: 1, role: approver}\n    evidence: [validation, scan]\n")
    (pipe.tmp / "poison.csv").write_text("amount\n1\n")
    poison = pipe.data.add(pipe.tmp / "poison.csv", kind="dataset", name="orders-extra",
                           namespace=NS).version.ref
    model = pipe.tmp / "mixed.bin"
    model.write_bytes(b"mixed weights")
    with chainproof.step("train", inputs=[f"{NS}/feats@1", f"{NS}/labels@1", poison],
                         namespace=NS, connection=pipe.trainer) as s:
        s.output(model, kind="model", name="mixed-model")
    asset = pipe.trainer.all_versions(namespace=NS, kind="model")[-1].ref
    pipe.evaluator.record_report(report_kind="scan", subjects=[asset], passed=True,
                                 report={"verdict": "clean"}, name="scan", namespace=NS)
    pipe.evaluator.record_report(report_kind="validation",
                                 subjects=[f"{NS}/feats@1", f"{NS}/labels@1"], passed=True,
                                 report={"findings": []}, name="val", namespace=NS)
    version = pipe.trainer.register_model_version(MODEL, asset)

    def validation() -> tuple[bool, str]:
        outcome = {o.rule: o for o in pipe.admin.check_promotion(
            MODEL, version, "production").outcomes}["evidence:validation"]
        return outcome.passed, outcome.detail

    passed, detail = validation()
    assert passed is False and poison.split("@")[0] in detail
    pipe.evaluator.record_report(report_kind="validation", subjects=[poison], passed=True,
                                 report={"findings": []}, name="val2", namespace=NS)
    assert validation()[0] is True


def test_show_names_only_steps_the_caller_may_read(pipe: Pipeline) -> None:
    pipe.admin.grant_role("svc-trainer", "reader", "lab")
    pipe.admin.set_namespace_mode("lab", "experiment")
    lab = act_as(pipe.admin, "lab-trainer", pipe.tmp, ("trainer",), "lab")
    (pipe.tmp / "ldata.csv").write_text("x\n1\n")
    data = lab.add(pipe.tmp / "ldata.csv", kind="dataset", name="ldata", namespace="lab")
    # a governed-namespace step consumes the lab data
    (pipe.tmp / "secret-model.bin").write_bytes(b"secret model")
    with chainproof.step("train", inputs=[data.version.ref, f"{NS}/labels@1"], namespace=NS,
                         connection=pipe.trainer) as s:
        s.output(pipe.tmp / "secret-model.bin", kind="model", name="secret-model")
    shown = lab.show(data.version.ref)
    assert shown["consumed_by"] == []  # the warehouse step is not named to a lab-only reader
    assert len(pipe.trainer.show(data.version.ref)["consumed_by"]) == 1


@pytest.mark.parametrize("alias", ["production.", "prod-uction", "PRODUCTION_", "Production"])
def test_a_look_alike_of_a_protected_alias_is_protected(pipe: Pipeline, alias: str) -> None:
    version = pipe.train("look", 0.9)
    before = state(pipe.admin)
    with pytest.raises(PermissionDeniedError, match="protected"):
        pipe.deployer.set_alias(MODEL, version, alias)
    assert state(pipe.admin) == before
