"""``explain MODEL@ALIAS`` in table form shows what the JSON has: the signed decision, the
approvals, every gate result and the metric values."""

from __future__ import annotations

import json

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
