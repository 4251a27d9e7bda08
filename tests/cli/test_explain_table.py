"""``explain MODEL@ALIAS`` in table form shows what the JSON has: the signed decision, the
approvals, every gate result and the metric values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pipeline_fixtures import NS, Pipeline, pipe  # noqa: F401

from chainproof.cli.main import main


def test_explain_alias_table_shows_decision_approvals_gate_and_metrics(
        pipe: Pipeline, capsys: pytest.CaptureFixture[str],  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    from chainproof.scan import scan_path

    version = pipe.train("a", auc=0.91)
    asset = pipe.trainer.all_versions(namespace=NS, kind="model")[-1]
    report = scan_path(pipe.admin.materialize(asset))  # protected aliases need a passing scan
    pipe.evaluator.record_report(report_kind="scan", subjects=[asset.ref],
                                 report=report.to_dict(), passed=report.clean,
                                 name=f"scan-{asset.version}")
    pipe.promote(version)
    ref = f"{NS}/fraud-review@production"
    capsys.readouterr()
    assert main(["explain", ref, "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    promotion = answer["promotion"]
    assert main(["explain", ref]) == 0
    table = capsys.readouterr().out
    assert promotion["decision"] in table
    for approval in promotion["approvals"]:
        assert approval["approver"] in table
    for rule in promotion["rules"]:
        assert rule["rule"] in table
    assert "Which approvals?" in table and "Which gate results?" in table
    assert "auc=0.91" in table


def test_pull_refuses_an_existing_file_unless_forced(
        pipe: Pipeline, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:  # noqa: F811
    from chainproof.scan import scan_path

    version = pipe.train("a", auc=0.91)
    asset = pipe.trainer.all_versions(namespace=NS, kind="model")[-1]
    report = scan_path(pipe.admin.materialize(asset))
    pipe.evaluator.record_report(report_kind="scan", subjects=[asset.ref],
                                 report=report.to_dict(), passed=report.clean,
                                 name=f"scan-{asset.version}")
    pipe.promote(version)
    ref = f"{NS}/fraud-review@production"
    dest = tmp_path / "pulled" / "model.bin"
    dest.parent.mkdir()
    assert main(["pull", ref, str(dest)]) == 0
    good = dest.read_bytes()
    assert (dest.parent / "model.bin.chainproof-verified").is_file()
    dest.write_bytes(b"something else")
    capsys.readouterr()
    assert main(["pull", ref, str(dest)]) == 2
    assert "--force" in capsys.readouterr().err
    assert dest.read_bytes() == b"something else"
    assert main(["pull", ref, str(dest), "--force"]) == 0
    assert dest.read_bytes() == good
    assert sorted(p.name for p in dest.parent.iterdir()) == [
        "model.bin", "model.bin.chainproof-verified"]
