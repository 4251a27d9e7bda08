"""Verified loading (I5): the approved bytes with every link re-checked, or a typed refusal."""

from __future__ import annotations

from pathlib import Path

import pytest
from attacks import overwrite_blob
from pipeline_fixtures import NS, Pipeline, model_bytes
from sqlalchemy import text

import chainproof
from chainproof.errors import (
    DigestMismatchError,
    OverrideNotAllowedError,
    PolicyViolationError,
    ProvenanceError,
    ScanRequiredError,
    UnapprovedModelError,
)
from chainproof.scan import scan_path
from chainproof.serve import load_verified

MODEL = f"{NS}/fraud-review"
REF = f"{MODEL}@production"


def scanned(pipe: Pipeline) -> None:
    asset = pipe.trainer.all_versions(namespace=NS, kind="model")[-1]
    report = scan_path(pipe.admin.materialize(asset))
    pipe.evaluator.record_report(report_kind="scan", subjects=[asset.ref],
                                 report=report.to_dict(), passed=report.clean,
                                 name=f"scan-{asset.version}")


def test_load_returns_exactly_the_approved_bytes(pipe: Pipeline, tmp_path: Path) -> None:
    version = pipe.train("a", 0.9)
    scanned(pipe)
    pipe.promote(version)
    loaded = load_verified(pipe.admin.ctx, REF)
    assert loaded.path.read_bytes() == model_bytes("a") and loaded.version == version
    assert any("decision" in c for c in loaded.checks)
    # the public API, and the cheap re-verification of the cached copy
    assert chainproof.load(REF, connection=pipe.admin).read_bytes() == model_bytes("a")
    loaded.path.chmod(0o644)
    loaded.path.write_bytes(model_bytes("b"))  # someone edits the cached copy, same size
    with pytest.raises(DigestMismatchError):
        load_verified(pipe.admin.ctx, REF)


def test_no_scan_no_load(pipe: Pipeline) -> None:
    """The gate refuses what the loader would refuse (one authority); forced past the gate,
    the loader still refuses a model no passing scan covers."""
    version = pipe.train("a", 0.9, scan=False)
    with pytest.raises(PolicyViolationError, match="production"):
        pipe.promote(version)
    pipe.admin.force_promotion(MODEL, version, "production", "incident 4711")
    with pytest.raises(ScanRequiredError, match="no passing scan report"):
        load_verified(pipe.admin.ctx, REF, allow_override=True)


def test_override_needs_explicit_consent(pipe: Pipeline) -> None:
    version = pipe.train("bad", 0.1)
    scanned(pipe)
    pipe.admin.force_promotion(MODEL, version, "production", "incident 4711")
    with pytest.raises(OverrideNotAllowedError, match="break-glass"):
        load_verified(pipe.admin.ctx, REF)
    assert load_verified(pipe.admin.ctx, REF, allow_override=True).override


def test_direct_alias_edit_refused(pipe: Pipeline) -> None:
    good = pipe.train("a", 0.9)
    scanned(pipe)
    pipe.promote(good)
    evil = pipe.train("evil", 0.95)
    scanned(pipe)
    with pipe.admin.engine.begin() as conn:
        digest = conn.execute(text("SELECT digest FROM model_versions WHERE version = :v"),
                              {"v": evil}).scalar_one()
        conn.execute(text("UPDATE aliases SET version = :v, digest = :d WHERE alias = "
                          "'production'"), {"v": evil, "d": digest})
    with pytest.raises(UnapprovedModelError, match="not this alias and digest"):
        load_verified(pipe.admin.ctx, REF)


def test_swapped_blob_refused(pipe: Pipeline) -> None:
    version = pipe.train("a", 0.9)
    scanned(pipe)
    pipe.promote(version)
    overwrite_blob(pipe.admin.store, pipe.admin.resolve(f"{NS}/fraud-model@1").digest, b"evil")
    with pytest.raises(ProvenanceError, match="stored bytes"):
        load_verified(pipe.admin.ctx, REF)


def test_deleted_decision_refused(pipe: Pipeline) -> None:
    version = pipe.train("a", 0.9)
    scanned(pipe)
    pipe.promote(version)
    with pipe.admin.engine.begin() as conn:
        conn.execute(text("DELETE FROM promotion_decisions"))
    with pytest.raises(UnapprovedModelError, match="does not exist"):
        load_verified(pipe.admin.ctx, REF)


def test_cli_pull(pipe: Pipeline, tmp_path: Path) -> None:
    from chainproof.cli.main import main

    version = pipe.train("a", 0.9)
    scanned(pipe)
    pipe.promote(version)
    assert main(["pull", REF, str(tmp_path / "served.bin")]) == 0
    assert (tmp_path / "served.bin").read_bytes() == model_bytes("a")
    assert main(["pull", f"{MODEL}@staging", str(tmp_path / "x.bin")]) == 2
