"""The parity suite: one scenario, run against the embedded service (SQLite + local store) and
against a real team server (uvicorn, PostgreSQL, S3 over HTTP to moto's server) through the
client — the same typed surface (:class:`chainproof.surface.Operations`) on both — asserting the
same results and the same refusals. A field or a rule that exists on one side only shows here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from api.conftest import start_server

from chainproof import identities
from chainproof.client import RemoteChainproof
from chainproof.errors import ChainproofError, NotFoundError, PermissionDeniedError
from chainproof.records.assets import AssetKind
from chainproof.records.steps import OutputSpec
from chainproof.scan import scan_path
from chainproof.service import Chainproof
from chainproof.surface import Operations

NS = "warehouse"
MODEL = f"{NS}/fraud-review"
ROLES = {"data-eng": "data-writer", "svc-trainer": "trainer", "eval-bot": "evaluator",
         "alice": "approver", "deploy-bot": "deployer", "outsider": "reader"}


class Team:
    """One Operations handle per identity, embedded or remote."""

    def __init__(self, admin: Chainproof, handles: dict[str, Operations], shape: str) -> None:
        self.admin = admin
        self.handles = handles
        self.shape = shape

    def __getitem__(self, name: str) -> Operations:
        return self.handles[name]


@pytest.fixture()
def team(cp: Chainproof, backend: Any, tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[Team]:
    """Embedded on SQLite + local store; remote (a real server) on PostgreSQL + S3."""
    shape = "remote" if backend.is_postgres else "embedded"
    monkeypatch.setenv("CHAINPROOF_CHECKPOINTS", str(tmp_path / "checkpoints"))
    for name, role in ROLES.items():
        cp.create_identity(name, "service" if "-" in name else "person")
        cp.grant_role(name, role, NS if name != "outsider" else "elsewhere")
    keys = {}
    for name in ROLES:
        key = tmp_path / "keys" / f"{name}.pem"
        identities.generate_key_file(key)
        cp.register_key(name, identities.public_path(key).read_bytes())
        keys[name] = key
    handles: dict[str, Operations] = {}
    proc = None
    if shape == "embedded":
        for name in ROLES:
            handles[name] = cp.acting_as(name, signing_key_path=keys[name])
    else:
        url, proc = start_server(cp)
        for name in ROLES:
            _, token = cp.create_token(name, timedelta(hours=1))
            handles[name] = RemoteChainproof(url, token, signing_key_path=keys[name],
                                             cache_dir=tmp_path / "cache" / name)
    try:
        yield Team(cp, handles, shape)
    finally:
        for handle in handles.values():
            if isinstance(handle, RemoteChainproof):
                handle.close()
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=20)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _refusal(call: Callable[[], Any]) -> tuple[str, str]:
    with pytest.raises(ChainproofError) as caught:
        call()
    return type(caught.value).__name__, caught.value.message


def test_the_whole_chain_behaves_the_same(team: Team, tmp_path: Path) -> None:
    data = team["data-eng"].add(_write(tmp_path / "orders.csv", "a,b,label\n1,2,0\n3,4,1\n"),
                                kind="dataset", name="orders", namespace=NS)
    assert (data.version.ref, data.created) == (f"{NS}/orders@1", True)
    code = _write(tmp_path / "train.py", "import shutil, sys\n"
                                         "shutil.copy(sys.argv[1], sys.argv[2])\n")
    out = tmp_path / "work" / "model.bin"
    out.parent.mkdir()
    trained = team["svc-trainer"].run(
        kind="train", inputs=[f"{NS}/orders@1"], code=[code], namespace=NS,
        command=[sys.executable, str(code), "{input:orders}", str(out)],
        outputs=[OutputSpec(out, AssetKind.MODEL, "fraud-model", NS)])
    model_ref = trained.outputs[0].ref
    assert model_ref == f"{NS}/fraud-model@1"
    assert sorted(trained.step.inputs) == sorted([f"{NS}/orders@1", f"{NS}/train.py@1"])
    # the evaluator scans the exact bytes and records the signed report
    local = team["eval-bot"].materialize(model_ref)
    assert local.read_text() == out.read_text()
    scan = scan_path(local)
    report = team["eval-bot"].record_report(report_kind="scan", subjects=[model_ref],
                                            report=scan.to_dict(), passed=True,
                                            name="fraud-model-scan", namespace=NS)
    assert report.ref == f"{NS}/fraud-model-scan@1"
    chain = team["eval-bot"].verify_chain(model_ref)
    assert chain.ok and len(chain.to_dict()["links"]) == 3
    # registry and the governed promotion
    team["svc-trainer"].create_model(MODEL)
    assert team["svc-trainer"].register_model_version(MODEL, model_ref) == 1
    request_id = team["svc-trainer"].request_promotion(MODEL, 1, "production")
    gate = team["alice"].check_request(request_id).to_dict()
    assert {r["rule"]: r["passed"] for r in gate["rules"]} == {
        "approvals": False, "provenance": True, "evidence:scan": True}
    assert team["alice"].approve(request_id) is None
    _, decision = team["deploy-bot"].execute_promotion(request_id)
    target = team["alice"].resolve_alias(MODEL, "production")
    assert (target["version"], target["decision"], target["override"]) == (1, decision, False)
    loaded = team["deploy-bot"].load_model(f"{MODEL}@production")
    assert Path(loaded.path).read_bytes() == out.read_bytes()
    assert loaded.to_dict()["digest"] == trained.outputs[0].digest
    explained = team["alice"].explain(f"{MODEL}@production")
    assert explained["promotion"]["decision"] == decision
    assert [d["ref"] for d in explained["data"]] == [f"{NS}/orders@1"]
    assert team["alice"].model_versions(MODEL)["aliases"]["production"]["version"] == 1
    # tags and descriptions (annotations, never evidence), then the step listing
    team["svc-trainer"].set_model_tag(MODEL, "team", "fraud")
    team["svc-trainer"].set_model_description(MODEL, "Reviews card payments", version=1)
    team["svc-trainer"].set_model_tag(MODEL, "tmp", "x", version=1)
    team["svc-trainer"].delete_model_tag(MODEL, "tmp", version=1)
    listed = team["alice"].model_versions(MODEL)
    assert (listed["tags"], listed["description"]) == ({"team": "fraud"}, None)
    assert (listed["versions"][0]["tags"], listed["versions"][0]["description"]) == (
        {}, "Reviews card payments")
    assert [m["tags"] for m in team["alice"].model_list()] == [{"team": "fraud"}]
    explained = team["alice"].explain(f"{MODEL}@production")
    assert explained["version_annotations"]["description"] == "Reviews card payments"
    steps = team["alice"].step_list(namespace=NS)
    assert [s.kind for s in steps] == ["scan", "train"]  # newest first
    assert steps[1].id == trained.step.id and steps[1].outputs == (model_ref,)
    assert [s.id for s in team["alice"].step_list(kind="train", identity="svc-trainer")] == [
        trained.step.id]
    assert team["outsider"].step_list() == []
    # the same refusals, with the same messages
    refusals = [
        _refusal(lambda: team["svc-trainer"].approve(request_id)),
        _refusal(lambda: team["outsider"].resolve(model_ref)),
        _refusal(lambda: team["outsider"].resolve(f"{NS}/no-such@1")),
        _refusal(lambda: team["svc-trainer"].set_alias(MODEL, 1, "production")),
        _refusal(lambda: team["alice"].set_model_tag(MODEL, "team", "hijacked")),
        _refusal(lambda: team["outsider"].delete_model_tag(MODEL, "team")),
    ]
    assert [kind for kind, _ in refusals] == ["PermissionDeniedError"] * 6
    assert _refusal(lambda: team["svc-trainer"].set_model_tag(
        MODEL, "chainproof.description", "x"))[0] == "InvalidNameError"
    assert _refusal(lambda: team["alice"].step_list(limit=0))[0] in (
        "BadInputError", "InvalidNameError")
    # unknown and forbidden answer alike
    assert refusals[1][1].replace("fraud-model", "X") == refusals[2][1].replace("no-such", "X")
    # listings answer only with what the caller may read
    assert team["outsider"].all_versions() == []
    assert team["outsider"].promotion_requests() == []
    assert {v.ref for v in team["alice"].all_versions(namespace=NS)} == {
        f"{NS}/orders@1", f"{NS}/train.py@1", model_ref, report.ref}
    with pytest.raises((NotFoundError, PermissionDeniedError)):
        team["outsider"].load_model(f"{MODEL}@production")
    assert team.admin.audit_verify().to_dict()["ok"] is True
