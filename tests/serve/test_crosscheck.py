"""Loads cross-check every record that names the bytes (issue 12): a model version repointed in
the database is refused by load, by the public API and by a running prediction service, which
stops serving it; DSSE envelopes of another payloadType never count; a directory manifest that
lists one blob many times costs one re-hash."""

from __future__ import annotations

from pathlib import Path

import pytest
from pipeline_fixtures import NS, Pipeline, model_bytes
from sqlalchemy import text

import chainproof
from chainproof import catalog
from chainproof.attest import sign_envelope
from chainproof.digest import Manifest, ManifestEntry, hash_bytes
from chainproof.errors import SignatureError, UnapprovedModelError
from chainproof.serve import app as serve_app
from chainproof.serve.app import ModelServer
from chainproof.signatures import RemoteSignature

MODEL = f"{NS}/fraud-review"
REF = f"{MODEL}@production"


def _repoint(pipe: Pipeline, version: int, asset_ref: str) -> int:
    """UPDATE model_versions SET asset_version_id = <another asset version>; returns the old."""
    target = pipe.admin.resolve(asset_ref)
    with pipe.admin.session() as session:
        new_id = catalog.find(session, chainproof.records.names.parse_ref(target.ref))[0].id
        old_id = session.execute(text(
            "SELECT asset_version_id FROM model_versions mv JOIN models m ON m.id = mv.model_id "
            "WHERE m.name = 'fraud-review' AND mv.version = :v"), {"v": version}).scalar_one()
        session.execute(text("UPDATE model_versions SET asset_version_id = :a WHERE "
                             "asset_version_id = :o"), {"a": new_id, "o": old_id})
        session.commit()
    return int(old_id)


def _restore(pipe: Pipeline, bad_asset: str, old_id: int) -> None:
    with pipe.admin.session() as session:
        bad_id = catalog.find(session, chainproof.records.names.parse_ref(bad_asset))[0].id
        session.execute(text("UPDATE model_versions SET asset_version_id = :o WHERE "
                             "asset_version_id = :b"), {"o": old_id, "b": bad_id})
        session.commit()


def test_a_repointed_version_is_refused_and_serving_stops(
        pipe: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    # The models here are pickled dicts; what is under test is the watcher, not predict().
    monkeypatch.setattr(serve_app, "safe_load", lambda path: _Predictor())
    good = pipe.train("good", 0.9)
    pipe.promote(good)
    pipe.train("other", 0.95)  # another model's bytes, also scanned and signed
    other_asset = pipe.trainer.all_versions(namespace=NS, kind="model")[-1].ref
    server = ModelServer(lambda: pipe.admin, [REF], reverify_seconds=3600)
    server._connect = lambda: _NoClose(pipe.admin)  # type: ignore[method-assign]
    server.check_once()
    served = server.models[REF]
    assert served.loaded is not None and served.loaded.digest.endswith(
        hash_bytes(model_bytes("good")))
    old = _repoint(pipe, good, other_asset)
    for load in (lambda: pipe.admin.load_model(REF),
                 lambda: chainproof.load(REF, connection=pipe.admin)):
        with pytest.raises(UnapprovedModelError, match="records disagree"):
            load()
    # the running service re-verifies (the check is due: nothing in the log changed, but the
    # schedule says so) and stops serving rather than serve other bytes
    server.reverify_seconds = 0
    server.check_once()
    assert served.loaded is None and "records disagree" in (served.last_error or "")
    _restore(pipe, other_asset, old)
    assert pipe.admin.load_model(REF).version == good


class _Predictor:
    def predict(self, rows: object) -> list[int]:
        return [0]


class _NoClose:
    def __init__(self, cp: object) -> None:
        self._cp = cp

    def __getattr__(self, name: str) -> object:
        return getattr(self._cp, name)

    def close(self) -> None:
        pass


def test_an_approval_with_another_payload_type_is_refused(pipe: Pipeline) -> None:
    version = pipe.train("a", 0.9)
    request = pipe.trainer.request_promotion(MODEL, version, "production")
    payload = pipe.alice.prepare_review(request, "approve", None)
    assert payload is not None
    wrong = sign_envelope(payload, "text/plain", [pipe.alice.signer]).to_json()
    with pipe.admin.session() as session:
        before = session.execute(text("SELECT COUNT(*) FROM approvals")).scalar_one()
    with pytest.raises(SignatureError, match="payloadType"):
        pipe.alice.review(request, "approve", None, RemoteSignature(wrong))
    with pipe.admin.session() as session:
        assert session.execute(text("SELECT COUNT(*) FROM approvals")).scalar_one() == before


def test_a_manifest_listing_one_blob_many_times_costs_one_rehash(
        pipe: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    blob = pipe.admin.store.put_bytes(b"x" * 100_000)
    entries = tuple(ManifestEntry(f"copy-{i:03}.bin", 100_000, blob.split(":", 1)[1])
                    for i in range(150))
    manifest_digest = pipe.admin.store.put_bytes(Manifest("sha256", entries).canonical_bytes())
    calls: list[str] = []
    real = type(pipe.admin.store).verify

    def counting(self: object, digest: str) -> int:
        calls.append(digest)
        return int(real(self, digest))  # type: ignore[arg-type]

    monkeypatch.setattr(type(pipe.admin.store), "verify", counting)
    size = catalog.uploaded_size(pipe.admin.store, manifest_digest, True)
    assert size == 150 * 100_000 and calls == [blob]


def test_cached_copies_are_reported_honestly(pipe: Pipeline, tmp_path: Path) -> None:
    pipe.promote(pipe.train("a", 0.9))
    first = pipe.admin.load_model(REF)
    assert "fetched bytes re-hash to the approved digest" in first.checks
    again = pipe.admin.load_model(REF)
    assert any("trusted by size and mtime" in c for c in again.checks)
    full = pipe.admin.load_model(REF, full_rehash=True)
    assert "fetched bytes re-hash to the approved digest" in full.checks
