"""The warehouse demo end to end, on both backends: every attack is a real attempt, and each
one must be stopped by the specific control named for it; production must still serve the
models that were evaluated."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from chainproof.demo import SCENARIOS, Outcome, run_demo
from chainproof.errors import BadInputError

#: Orders generated in tests: enough fraud cases for the label checks, small enough to be fast.
TEST_ROWS = 3000


def printed(console: Console) -> str:
    stream = console.file
    assert isinstance(stream, io.StringIO)
    return stream.getvalue()


def test_full_demo_catches_every_attack(backend: Any, tmp_path: Path,
                                        quiet_console: Console) -> None:
    result = run_demo(db=backend.db_url, store=backend.store, workdir=tmp_path / "demo",
                      console=quiet_console, rows=TEST_ROWS)
    assert result.errors == []
    assert result.serving_ok and result.ok
    assert {a.scenario for a in result.attempts} == set(SCENARIOS)
    assert all(a.outcome is Outcome.CAUGHT for a in result.attempts), result.rows

    poisoning = result.by_scenario("poisoning")[0]
    assert poisoning.error_type == "ValidationFailedError"
    assert "fraud-data-validation@2 failed: labels:" in poisoning.evidence

    tampering = result.by_scenario("feature-tampering")[0]
    assert "amount_usd" in tampering.evidence and "scale" in tampering.evidence
    assert "(×100)" in tampering.evidence

    swapped, stolen, token = result.by_scenario("substitution")
    assert token.error_type == "SignatureError" and "HTTP 403" in token.evidence
    assert swapped.error_type == "DigestMismatchError" and "NOT refused" not in swapped.evidence
    assert "refused by verify, verify_chain, a new replica's load" in swapped.evidence
    assert stolen.error_type == "PolicyViolationError"
    assert "approvals: 0 of 2" in stolen.evidence and "no signed metric 'auc'" in stolen.evidence

    trainer, self_approval, db_edit, forged = result.by_scenario("unauthorized-promotion")
    assert forged.error_type == "PolicyViolationError"
    assert "evidence:scan" in forged.evidence
    assert trainer.error_type == "PermissionDeniedError"
    assert "promotion:execute" in trainer.evidence
    assert self_approval.error_type == "PolicyViolationError"
    assert "ml-eng: authored or ran a step" in self_approval.evidence
    assert db_edit.error_type == "LedgerIntegrityError"
    assert "the running replica refused the swap (UnapprovedModelError)" in db_edit.evidence

    labels, overwrite, read = result.by_scenario("over-broad-runner")
    assert labels.error_type == "PermissionDeniedError" and "write:data" in labels.evidence
    assert overwrite.error_type == "ProvenanceError" and "came from nowhere" in overwrite.evidence
    assert read.error_type == "PermissionDeniedError" and "finance/cardholders" in read.evidence

    # Every row is (attack, control, outcome, evidence); the service serves the evaluated bytes.
    assert all(len(row) == 4 and row.outcome == "CAUGHT" for row in result.rows)
    assert set(result.serving) == {"fraud-review", "delivery-delay", "ticket-priority"}
    text = printed(quiet_console)
    for heading in ("explain warehouse/fraud-review@production", "summary",
                    "every link verified", "12 caught, 0 missed"):
        assert heading in text


def test_unknown_scenario_and_tiny_size_are_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="unknown demo scenario 'nope'"):
        run_demo(scenario="nope", workdir=tmp_path)
    with pytest.raises(BadInputError, match="at least 1000 orders"):
        run_demo(rows=10, workdir=tmp_path)
    assert not (tmp_path / "project").exists()  # refused before anything was created


def test_refuses_a_database_that_already_has_history(tmp_path: Path) -> None:
    from chainproof.errors import WorkspaceError
    from chainproof.service import Chainproof

    existing = tmp_path / "existing"
    existing.mkdir()
    Chainproof.init(existing, identity="someone").close()
    url = f"sqlite:///{existing}/.chainproof/chainproof.db"
    with pytest.raises(WorkspaceError, match="needs an empty database"):
        run_demo(db=url, workdir=tmp_path / "demo", rows=TEST_ROWS)
    assert not (tmp_path / "demo").exists()
