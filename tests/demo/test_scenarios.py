"""Each scenario against one pipeline (SQLite), including with its control disabled: a scenario
that reports CAUGHT whatever happens would be a defect, so each must report MISSED when the
attack really gets through."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from chainproof.demo import _data, _scenarios
from chainproof.demo._model import Outcome
from chainproof.demo._pipeline import ADMIN, FRAUD, NAMESPACE, Demo
from chainproof.demo._run import _isolated_env, run_pipeline
from chainproof.service import Chainproof

TEST_ROWS = 3000


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    import io

    from rich.console import Console

    workdir = tmp_path_factory.mktemp("demo")
    (workdir / "project").mkdir()
    with _isolated_env():
        cp = Chainproof.init(workdir / "project", identity=ADMIN)
    built = Demo(cp, workdir, Console(file=io.StringIO()), TEST_ROWS)
    run_pipeline(built)
    try:
        yield built
    finally:
        if built.service is not None:
            built.service.close()
        cp.close()


def test_poisoning_is_missed_when_no_label_changes(demo: Demo,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def no_flip(labels: pd.DataFrame, orders: pd.DataFrame) -> tuple[pd.DataFrame, int]:
        return labels, 0

    monkeypatch.setattr(_scenarios, "flip_fraud_labels", no_flip)
    (attempt,) = _scenarios.poisoning(demo)
    assert attempt.outcome is Outcome.MISSED  # clean labels pass the same gate


def test_poisoning_caught(demo: Demo) -> None:
    (attempt,) = _scenarios.poisoning(demo)
    assert attempt.outcome is Outcome.CAUGHT and attempt.error_type == "ValidationFailedError"


def test_feature_refactor_that_keeps_meaning_passes(demo: Demo,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A change to features.py that keeps every output identical is not flagged: the gate
    reacts to meaning, not to edits."""
    monkeypatch.setattr(_scenarios, "TAMPER_TO", _scenarios.TAMPER_FROM + "  # tidied up")
    (attempt,) = _scenarios.feature_tampering(demo)
    assert attempt.outcome is Outcome.MISSED


def test_feature_tampering_caught(demo: Demo) -> None:
    (attempt,) = _scenarios.feature_tampering(demo)
    assert attempt.outcome is Outcome.CAUGHT
    assert "amount_usd: values/scale (×100)" in attempt.evidence
    assert demo.refs["features.py"].endswith("@1")  # the pipeline's code did not move


def test_substitution_is_missed_when_the_blob_is_not_touched(
        demo: Demo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_scenarios, "overwrite_blob", lambda store, digest, data: None)
    monkeypatch.setattr(_scenarios, "_stolen_trainer", lambda d: None)
    monkeypatch.setattr(_scenarios, "_stolen_token", lambda d: None)
    swapped, _, _ = _scenarios.substitution(demo)
    assert swapped.outcome is Outcome.MISSED


def test_substitution_restores_the_blob_and_service_keeps_serving(demo: Demo) -> None:
    attempts = _scenarios.substitution(demo)
    assert [a.outcome for a in attempts] == [Outcome.CAUGHT] * 3
    assert attempts[2].error_type == "SignatureError"  # the stolen token could not sign
    demo.cp.verify(demo.refs[FRAUD.model])  # restored: verifies again
    assert demo.service is not None
    assert demo.service.status()[FRAUD.model].digest == demo.good[FRAUD.model]


def test_stolen_token_is_missed_if_the_server_accepted_any_signature(
        demo: Demo, monkeypatch: pytest.MonkeyPatch) -> None:
    """The control can fail: a server that skipped the signer check would record the step."""
    from chainproof import signatures

    monkeypatch.setattr(signatures, "accept_signature", lambda tx, env, payload: "x")
    assert _scenarios._stolen_token(demo).outcome is Outcome.MISSED


def test_trust_policy_still_exposes_runner_labels_when_roles_are_too_broad(demo: Demo) -> None:
    """Defence in depth: with data-writer wrongly granted to the trainer, the labels it writes
    are still refused by provenance verification (only data-eng may register labels)."""
    demo.cp.grant_role("svc-trainer", "data-writer", NAMESPACE)
    try:
        labels, _, _ = _scenarios.over_broad_runner(demo)
    finally:
        demo.cp.revoke_role("svc-trainer", "data-writer", NAMESPACE)
    assert labels.outcome is Outcome.CAUGHT and labels.error_type == "ProvenanceError"
    assert "svc-trainer may not register labels" in labels.evidence


def test_alias_edit_is_reverted_and_audit_passes_after(demo: Demo) -> None:
    attempts = _scenarios.unauthorized_promotion(demo)
    assert all(a.outcome is Outcome.CAUGHT for a in attempts)
    _scenarios._audit(demo)  # the edit was reverted: the log and the tables agree again
    assert demo.cp.resolve_alias(f"{NAMESPACE}/{FRAUD.model}", "production")["version"] == 1


def test_flip_is_targeted_and_deterministic(tmp_path: Path) -> None:
    data = _data.generate(2000, seed=3)
    again = _data.generate(2000, seed=3)
    pd.testing.assert_frame_equal(data.orders, again.orders)
    poisoned, flipped = _data.flip_fraud_labels(data.fraud_labels, data.orders)
    changed = poisoned["is_fraud"] != data.fraud_labels["is_fraud"]
    assert changed.sum() == flipped > 0
    methods = data.orders.loc[changed.to_numpy(), "payment_method"]
    assert set(methods) == {"card"}  # one segment, one direction: legit -> fraud
    assert (data.fraud_labels.loc[changed, "is_fraud"] == 0).all()


def test_missing_registry_is_reported_not_faked(demo: Demo,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_scenarios, "requires", lambda feature: False)
    attempts = _scenarios.unauthorized_promotion(demo)
    assert [a.outcome for a in attempts] == [Outcome.UNAVAILABLE] * 3
    assert all(a.row.outcome == "not available yet" for a in attempts)
    assert _scenarios._stolen_trainer(demo).outcome is Outcome.UNAVAILABLE
