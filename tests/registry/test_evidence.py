"""Evidence rules: signed scan reports (and any report kind) gate promotion."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from pipeline_fixtures import NS, Pipeline

from chainproof.cli.main import main
from chainproof.service import Chainproof

MODEL = f"{NS}/fraud-review"
EVIL = b"cos\nsystem\n(S'echo pwned'\ntR."  # GLOBAL os.system, REDUCE: never unpickled


def _policy(cp: Chainproof) -> None:
    cp.set_promotion_policy("protected_aliases: [production]\nrules:\n"
                            "  - match: {alias: production}\n"
                            "    approvals: {min: 0}\n    evidence: [scan]\n")


def _model_file(pipe: Pipeline, tag: str, payload: bytes) -> int:
    pipe.tmp.joinpath(f"model-{tag}.bin").write_bytes(payload)
    import chainproof

    with chainproof.step("train", inputs=[f"{NS}/feats@1"], namespace=NS,
                         connection=pipe.trainer) as s:
        s.output(pipe.tmp / f"model-{tag}.bin", kind="model", name="fraud-model")
    asset = pipe.trainer.all_versions(namespace=NS, kind="model")[-1]
    return pipe.trainer.register_model_version(MODEL, asset.ref)


def test_clean_scan_report_satisfies_evidence(pipe: Pipeline) -> None:
    from chainproof.scan import scan_path

    _policy(pipe.admin)
    version = _model_file(pipe, "ok", pickle.dumps({"weights": [1.0, 2.0]}, protocol=4))
    gate = pipe.admin.check_promotion(MODEL, version, "production")
    assert [o.detail for o in gate.outcomes if o.rule == "evidence:scan"] == [
        "no such report in the chain"]
    asset = pipe.trainer.all_versions(namespace=NS, kind="model")[-1]
    report = scan_path(pipe.admin.materialize(asset))
    assert report.clean
    pipe.evaluator.record_report(report_kind="scan", subjects=[asset.ref],
                                 report=report.to_dict(), passed=True, name="model-scan")
    gate = pipe.admin.check_promotion(MODEL, version, "production")
    assert [o.passed for o in gate.outcomes if o.rule == "evidence:scan"] == [True]
    explained = pipe.admin.explain(asset.ref)
    assert [r["ref"] for r in explained["reports"]] == [f"{NS}/model-scan@1"]


def test_malicious_model_blocked_by_scan_evidence(pipe: Pipeline,
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _policy(pipe.admin)
    version = _model_file(pipe, "evil", EVIL)
    asset = pipe.trainer.all_versions(namespace=NS, kind="model")[-1]
    # the evaluator runs the scan (its reports are the evidence the gate trusts)
    monkeypatch.setenv("CHAINPROOF_IDENTITY", "svc-evaluator")
    monkeypatch.setenv("CHAINPROOF_SIGNING_KEY", str(pipe.tmp / "keys" / "svc-evaluator.pem"))
    assert main(["scan", asset.ref]) == 1  # the CLI records the failing report, exits 1
    assert "os.system" in capsys.readouterr().out
    gate = pipe.admin.check_promotion(MODEL, version, "production")
    assert [o.detail for o in gate.outcomes if o.rule == "evidence:scan"] == [
        "the report in the chain FAILED"]


def test_scan_paths_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(EVIL)
    good = tmp_path / "good.pkl"
    good.write_bytes(pickle.dumps([1, 2, 3]))
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    assert main(["scan", str(good)]) == 0
    assert main(["scan", str(evil)]) == 1
    assert main(["scan", str(other)]) == 2
    assert main(["scan", str(tmp_path / "missing.pkl")]) == 2
