"""Signed provenance (I2) under attack: every forged, replayed or broken link is refused with a
precise reason, on both backends."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path

import pytest
from attacks import overwrite_blob
from sqlalchemy import text

import chainproof
from chainproof import identities, signatures
from chainproof.attest import (
    IN_TOTO_PAYLOAD_TYPE,
    Signer,
    Statement,
    Subject,
    load_private_key,
    sign_envelope,
)
from chainproof.errors import ProvenanceError, SignatureError
from chainproof.provenance import verify_chain
from chainproof.service import Chainproof


def write(path: Path, text_: str) -> Path:
    path.write_text(text_)
    return path


def act_as(cp: Chainproof, name: str, tmp_path: Path, *, register: bool = True) -> Chainproof:
    """A second client acting as ``name`` with its own private key file."""
    key = tmp_path / "keys" / f"{name}.pem"
    if not key.exists():
        identities.generate_key_file(key)
        cp.create_identity(name, "service")
        cp.grant_role(name, "trainer", "*")
        if register:
            cp.register_key(name, identities.public_path(key).read_bytes())
    settings = dataclasses.replace(cp.settings, identity=name, signing_key_path=key)
    return Chainproof(settings, cp.engine, cp.store)


def pipeline(cp: Chainproof, tmp_path: Path, trainer: Chainproof | None = None) -> None:
    cp.add(write(tmp_path / "raw.csv", "a\n1\n"), kind="dataset", name="raw")
    cp.add(write(tmp_path / "labels.csv", "y\n0\n"), kind="labels", name="labels")
    with chainproof.step("features", inputs=["raw@1"], connection=cp) as s:
        s.output(write(tmp_path / "f.parquet", "F1"), kind="features", name="feats")
    with chainproof.step("train", inputs=["feats@1", "labels@1"],
                         connection=trainer or cp) as s:
        s.output(write(tmp_path / "model.bin", "M1"), kind="model", name="model")


def problems(cp: Chainproof, ref: str = "model@1") -> str:
    with pytest.raises(ProvenanceError) as info:
        verify_chain(cp.ctx, ref)
    return "\n".join(info.value.problems)


def sql(cp: Chainproof, statement: str, **params: object) -> list[tuple[object, ...]]:
    with cp.engine.begin() as conn:
        result = conn.execute(text(statement), params)
        return list(result) if result.returns_rows else []


def step_of(cp: Chainproof, ref: str) -> str:
    producer = cp.resolve(ref).producer_step
    assert producer
    return producer


def test_intact_chain_verifies(cp: Chainproof, tmp_path: Path) -> None:
    pipeline(cp, tmp_path)
    report = verify_chain(cp.ctx, "model@1")
    assert report.ok and [link.ref for link in report.links][-1] == "model@1"
    assert {link.ref for link in report.links} == {"raw@1", "labels@1", "feats@1", "model@1"}


def test_unregistered_key_refused(cp: Chainproof, tmp_path: Path) -> None:
    rogue = act_as(cp, "svc-rogue", tmp_path, register=False)
    cp.add(write(tmp_path / "raw.csv", "a\n"), kind="dataset", name="raw")
    with pytest.raises(SignatureError, match="not signed by a registered key of svc-rogue"), \
            chainproof.step("train", inputs=["raw@1"], connection=rogue) as s:
        s.output(write(tmp_path / "m.bin", "M"), kind="model", name="model")
    assert [v.name for v in cp.all_versions()] == ["raw"]  # nothing half-written


def _sign_as(key_path: Path, payload: bytes) -> str:
    signer = Signer.from_private_key(load_private_key(key_path.read_bytes()))
    return sign_envelope(payload, IN_TOTO_PAYLOAD_TYPE, [signer]).to_json()


def test_payload_swapped_without_updating_digest(cp: Chainproof, tmp_path: Path) -> None:
    pipeline(cp, tmp_path)
    sid = step_of(cp, "model@1")
    other = sql(cp, "SELECT envelope FROM attestations WHERE step_id = :s",
                s=step_of(cp, "feats@1"))[0][0]
    sql(cp, "UPDATE attestations SET envelope = :e WHERE step_id = :s", e=other, s=sid)
    assert "the attestation's payload is not the one whose digest was logged" in problems(cp)


def _replace_envelope(cp: Chainproof, step_id: str, envelope: str) -> None:
    import hashlib

    payload = base64.b64decode(json.loads(envelope)["payload"])
    sql(cp, "UPDATE attestations SET envelope = :e, payload_digest = :d WHERE step_id = :s",
        e=envelope, d="sha256:" + hashlib.sha256(payload).hexdigest(), s=step_id)


def test_signature_by_unregistered_key_in_database(cp: Chainproof, tmp_path: Path) -> None:
    pipeline(cp, tmp_path)
    sid = step_of(cp, "model@1")
    original = json.loads(sql(cp, "SELECT envelope FROM attestations WHERE step_id = :s",
                              s=sid)[0][0])
    stranger = tmp_path / "stranger.pem"
    identities.generate_key_file(stranger)
    _replace_envelope(cp, sid, _sign_as(stranger, base64.b64decode(original["payload"])))
    found = problems(cp)
    assert "not signed by a registered key of" in found
    assert "signature does not verify" in found


def test_revoked_key_signatures_after_revocation_refused(cp: Chainproof, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = act_as(cp, "svc-trainer", tmp_path)
    pipeline(cp, tmp_path, trainer)
    verify_chain(cp.ctx, "model@1")
    cp.revoke_key(trainer.signer.keyid, "laptop stolen")
    verify_chain(cp.ctx, "model@1")  # signed before the revocation: still valid
    # the record-time guard refuses a revoked key...
    with pytest.raises(SignatureError, match="was revoked"), \
            chainproof.step("train", inputs=["feats@1"], connection=trainer) as s:
        s.output(write(tmp_path / "m2.bin", "M2"), kind="model", name="model")
    # ...and a client that skips it (a stolen key used against the API) still fails verify.
    monkeypatch.setattr(signatures, "accept_signature",
                        lambda tx, envelope, payload: trainer.signer.keyid)
    with chainproof.step("train", inputs=["feats@1"], connection=trainer) as s:
        s.output(write(tmp_path / "m3.bin", "M3"), kind="model", name="model")
    found = problems(cp, "model@2")
    assert "was revoked" in found and "laptop stolen" in found


def test_identity_not_allowed_by_trust_policy(cp: Chainproof, tmp_path: Path) -> None:
    cp.set_trust_policy(
        "namespaces:\n  '*':\n    steps:\n"
        "      features: {signers: [tester]}\n"
        "      train: {signers: [svc-trainer], inputs: ['step:features', 'source:labels']}\n")
    pipeline(cp, tmp_path)  # tester trains: not allowed
    assert "tester may not attest train steps in default under trust policy v1" in problems(cp)
    trainer = act_as(cp, "svc-trainer", tmp_path)
    with chainproof.step("train", inputs=["feats@1", "labels@1"], connection=trainer) as s:
        s.output(write(tmp_path / "m2.bin", "M2"), kind="model", name="model")
    assert verify_chain(cp.ctx, "model@2").ok


def test_input_kind_not_allowed(cp: Chainproof, tmp_path: Path) -> None:
    cp.set_trust_policy("namespaces:\n  '*':\n    steps:\n"
                        "      train: {inputs: ['step:features']}\n"
                        "      features: {}\n")
    pipeline(cp, tmp_path)  # train also reads labels (source:labels), which is not allowed
    assert "input labels@1 (source:labels) is not an allowed input of train" in problems(cp)


def test_replayed_attestation_for_other_output(cp: Chainproof, tmp_path: Path) -> None:
    pipeline(cp, tmp_path)
    with chainproof.step("train", inputs=["feats@1", "labels@1"], connection=cp) as s:
        s.output(write(tmp_path / "m2.bin", "M2 evil"), kind="model", name="model")
    good = sql(cp, "SELECT envelope, payload_digest FROM attestations WHERE step_id = :s",
               s=step_of(cp, "model@1"))[0]
    sql(cp, "UPDATE attestations SET envelope = :e, payload_digest = :d WHERE step_id = :s",
        e=good[0], d=good[1], s=step_of(cp, "model@2"))
    found = problems(cp, "model@2")
    assert "does not name default/model@2" in found
    assert "not this one (replayed attestation)" in found


def test_blob_swapped_after_attestation(cp: Chainproof, tmp_path: Path) -> None:
    pipeline(cp, tmp_path)
    overwrite_blob(cp.store, cp.resolve("model@1").digest, b"backdoored")
    assert "model@1: stored bytes:" in problems(cp)


def test_dependency_digest_mismatch(cp: Chainproof, tmp_path: Path) -> None:
    pipeline(cp, tmp_path)
    cp.add(write(tmp_path / "other.csv", "y\n1\n"), kind="labels", name="labels")
    # repoint the recorded training input to labels@2: the signed statement says labels@1
    sql(cp, "UPDATE step_inputs SET version_id = (SELECT v.id FROM asset_versions v JOIN assets a "
            "ON a.id = v.asset_id WHERE a.name = 'labels' AND v.version = 2) WHERE step_id = :s "
            "AND version_id = (SELECT v.id FROM asset_versions v JOIN assets a ON a.id = "
            "v.asset_id WHERE a.name = 'labels' AND v.version = 1)", s=step_of(cp, "model@1"))
    assert "signed dependencies differ from the recorded inputs" in problems(cp)


def test_edited_payload(cp: Chainproof, tmp_path: Path) -> None:
    pipeline(cp, tmp_path)
    sid = step_of(cp, "model@1")
    env = json.loads(sql(cp, "SELECT envelope FROM attestations WHERE step_id = :s", s=sid)[0][0])
    payload = base64.b64decode(env["payload"]).replace(b"tester", b"mallo")
    env["payload"] = base64.b64encode(payload).decode()
    _replace_envelope(cp, sid, json.dumps(env))
    assert "signature does not verify" in problems(cp)


def test_unknown_predicate_type(cp: Chainproof, tmp_path: Path) -> None:
    pipeline(cp, tmp_path)
    sid = step_of(cp, "model@1")
    version = cp.resolve("model@1")
    statement = Statement((Subject("default/model@1", {"sha256": version.hexdigest}),),
                          "https://slsa.dev/provenance/v1", {})
    payload = statement.to_json_bytes().replace(b"https://slsa.dev/provenance/v1",
                                                b"https://evil.example/predicate/v9")
    _replace_envelope(cp, sid, _sign_as(cp.settings.signing_key_path, payload))  # type: ignore[arg-type]
    assert "signed statement rejected" in problems(cp)


@pytest.mark.parametrize("envelope", [
    "{not json",
    '{"payload": "%%%", "payloadType": "application/vnd.in-toto+json", "signatures": '
    '[{"keyid": "", "sig": "AAAA"}]}',
    '{"payload": "eyJ", "payloadType": "application/vnd.in-toto+json"}',
])
def test_malformed_envelopes(cp: Chainproof, tmp_path: Path, envelope: str) -> None:
    pipeline(cp, tmp_path)
    sql(cp, "UPDATE attestations SET envelope = :e WHERE step_id = :s", e=envelope,
        s=step_of(cp, "model@1"))
    assert "attestation is malformed" in problems(cp)


def test_missing_link_input_from_nowhere(cp: Chainproof, tmp_path: Path) -> None:
    cp.add(write(tmp_path / "labels.csv", "y\n0\n"), kind="labels", name="labels")
    cp.add(write(tmp_path / "f.parquet", "hand-made features"), kind="features", name="feats")
    with chainproof.step("train", inputs=["feats@1", "labels@1"], connection=cp) as s:
        s.output(write(tmp_path / "model.bin", "M"), kind="model", name="model")
    assert "feats@1 is a features with no recorded step: it came from nowhere" in problems(cp)


def test_unsigned_step_refused(cp: Chainproof, tmp_path: Path) -> None:
    pipeline(cp, tmp_path)
    sql(cp, "DELETE FROM attestations WHERE step_id = :s", s=step_of(cp, "model@1"))
    assert "has no signed provenance attestation" in problems(cp)


def test_source_registration_policy(cp: Chainproof, tmp_path: Path) -> None:
    cp.set_trust_policy("namespaces:\n  '*':\n    sources:\n      dataset: [data-eng]\n"
                        "    steps:\n      '*': {}\n")
    pipeline(cp, tmp_path)
    assert "tester may not register dataset assets in namespace default" in problems(cp)


def test_bad_trust_policy_refused_and_not_stored(cp: Chainproof) -> None:
    from chainproof.errors import MalformedFileError

    for doc in ("namespaces: [", "steps: {}", "namespaces:\n  x:\n    steps:\n      t: "
                "{inputs: [bogus]}\n", "namespaces:\n  x:\n    steps:\n      t: {max_age: 3y}\n"):
        with pytest.raises(MalformedFileError):
            cp.set_trust_policy(doc)
    with cp.session() as session:
        assert identities.trust_policy(session)[1] is None


def test_attestation_export_and_cli(cp: Chainproof, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from chainproof.cli.main import main

    pipeline(cp, tmp_path)
    out = tmp_path / "chain.intoto.jsonl"
    assert main(["attest", "export", "model@1", "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(x)["payloadType"] == IN_TOTO_PAYLOAD_TYPE
                                   for x in lines)
    capsys.readouterr()
    assert main(["verify", "model@1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    sql(cp, "DELETE FROM attestations WHERE step_id = :s", s=step_of(cp, "model@1"))
    assert main(["verify", "model@1"]) == 1
