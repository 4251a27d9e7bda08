"""Tags and descriptions of registered models and versions (MLflow's): set, replaced, deleted,
listed and explained; refused for bad keys and for callers without write-model (nothing
changes); rebuilt by `audit verify`; and never evidence for the gate. Both backends."""

from __future__ import annotations

from typing import Any

import pytest
from pipeline_fixtures import NS, Pipeline, act_as
from sqlalchemy import text

from chainproof.errors import (
    InvalidNameError,
    LedgerIntegrityError,
    NotFoundError,
    PermissionDeniedError,
)

MODEL = f"{NS}/fraud-review"


def _tags(p: Pipeline) -> list[Any]:
    with p.admin.session() as session:
        return [tuple(r) for r in session.execute(text(
            "SELECT model_id, version, key, value FROM model_tags ORDER BY 1, 2, 3"))]


def test_tags_and_descriptions_are_listed_and_explained(pipe: Pipeline) -> None:
    version = pipe.train("a", 0.9)
    t = pipe.trainer
    t.set_model_tag(MODEL, "team", "fraud")
    t.set_model_tag(MODEL, "team", "payments")  # replaced
    t.set_model_description(MODEL, "Scores card payments for review.\nOwner: fraud-ops")
    t.set_model_tag(MODEL, "dataset", "orders-2026-11", version=version)
    t.set_model_description(MODEL, "retrained on November's orders", version=version)
    listed = {m["model"]: m for m in pipe.alice.model_list()}[MODEL]
    assert listed["tags"] == {"team": "payments"}
    assert listed["description"].startswith("Scores card payments")
    info = pipe.alice.model_versions(MODEL)
    assert info["tags"] == {"team": "payments"}
    assert info["versions"][0]["tags"] == {"dataset": "orders-2026-11"}
    assert info["versions"][0]["description"] == "retrained on November's orders"
    pipe.promote(version)
    explained = pipe.alice.explain(f"{MODEL}@production")
    assert explained["model_annotations"]["tags"] == {"team": "payments"}
    assert explained["version_annotations"]["description"] == "retrained on November's orders"
    t.delete_model_tag(MODEL, "dataset", version=version)
    t.set_model_description(MODEL, "", version=version)  # empty removes it
    first = pipe.alice.model_versions(MODEL)["versions"][0]
    assert (first["tags"], first["description"]) == ({}, None)
    assert pipe.admin.audit_verify().rows_checked["model_tags"] == 2


@pytest.mark.parametrize("key", ["", " lead", "chainproof.description", "Chainproof.x",
                                 "a\nb", "x" * 251, "k\x00", "é"])
def test_bad_keys_and_values_change_nothing(pipe: Pipeline, key: str) -> None:
    before = _tags(pipe)
    with pytest.raises(InvalidNameError):
        pipe.trainer.set_model_tag(MODEL, key, "v")
    for value in ("\x1b[31mred", "x" * 5001, "\ud800"):
        with pytest.raises(InvalidNameError):
            pipe.trainer.set_model_tag(MODEL, "ok", value)
    with pytest.raises(InvalidNameError):
        pipe.trainer.set_model_description(MODEL, "d" * 20_001)
    assert _tags(pipe) == before


def test_only_model_writers_of_the_namespace_tag(pipe: Pipeline) -> None:
    pipe.trainer.set_model_tag(MODEL, "team", "fraud")
    outsider = act_as(pipe.admin, "lab-trainer", pipe.tmp, ("trainer",), "lab")
    before = _tags(pipe)
    for caller in (pipe.alice, pipe.deployer, pipe.evaluator, outsider):
        with pytest.raises(PermissionDeniedError):
            caller.set_model_tag(MODEL, "team", "hijacked")
        with pytest.raises(PermissionDeniedError):
            caller.delete_model_tag(MODEL, "team")
        with pytest.raises(PermissionDeniedError):
            caller.set_model_description(MODEL, "hijacked")
    # an unknown model answers the outsider the same as a known one
    with pytest.raises(PermissionDeniedError):
        outsider.set_model_tag(f"{NS}/no-such-model", "team", "x")
    assert _tags(pipe) == before
    assert all(m["model"] != MODEL for m in outsider.model_list())


def test_unknown_versions_and_tags_are_not_found(pipe: Pipeline) -> None:
    before = _tags(pipe)
    with pytest.raises(NotFoundError):
        pipe.trainer.set_model_tag(MODEL, "k", "v", version=7)
    with pytest.raises(NotFoundError):
        pipe.trainer.delete_model_tag(MODEL, "never-set")
    with pytest.raises(NotFoundError):
        pipe.trainer.set_model_tag(f"{NS}/ghost", "k", "v")
    assert _tags(pipe) == before


def test_a_tag_is_never_evidence(pipe: Pipeline) -> None:
    version = pipe.train("t", 0.5, scan=False)
    for key, value in (("scan", "clean"), ("validated", "true"), ("auc", "0.99"),
                       ("approved-by", "alice")):
        pipe.trainer.set_model_tag(MODEL, key, value, version=version)
    rules = {o.rule: o.passed for o in pipe.admin.check_promotion(
        MODEL, version, "production").outcomes}
    assert rules["evidence:scan"] is False
    assert rules["metrics:auc"] is False


def test_a_tag_edited_in_the_database_fails_audit_verify(pipe: Pipeline) -> None:
    pipe.trainer.set_model_tag(MODEL, "team", "fraud")
    with pipe.admin.engine.begin() as conn:
        conn.execute(text("UPDATE model_tags SET value = 'other'"))
    with pytest.raises(LedgerIntegrityError, match="team"):
        pipe.admin.audit_verify()
