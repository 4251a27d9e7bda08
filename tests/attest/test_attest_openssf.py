"""OpenSSF model signing interop, both directions, the shared vectors, and attacks."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from chainproof.attest import dsse
from chainproof.attest.keys import (
    Signer,
    key_id,
    load_public_key,
    private_key_to_pem,
    public_key_to_pem,
)
from chainproof.attest.openssf import (
    BUNDLE_MEDIA_TYPE,
    read_bundle_certificates,
    sign_model,
    verify_model,
    verify_model_certificate,
)
from chainproof.attest.statement import CHAINPROOF_REPORT_V1, MODEL_SIGNING_V1, Statement, Subject
from chainproof.errors import BadInputError, MalformedFileError, SignatureError, UnsafePathError

model_signing = pytest.importorskip("model_signing")

ELLIPTIC = [
    "v0.3.1-elliptic-key",
    "v1.0.0-elliptic-key",
    "v1.0.1-elliptic-key",
    "v1.1.0-elliptic-key",
]
CERTIFICATE = ["v0.2.0-certificate", "v0.3.1-certificate", "v1.0.0-certificate",
               "v1.0.1-certificate", "v1.1.0-certificate"]
# These two were signed with the model path pointing at the single file signme-1.
SINGLE_FILE = {"v0.3.1-elliptic-key", "v1.0.0-elliptic-key"}


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def model(tmp_path: Path) -> Path:
    root = tmp_path / "my-model"
    (root / "weights").mkdir(parents=True)
    (root / "weights" / "layer0.bin").write_bytes(os.urandom(4096))
    (root / "weights" / "layer1.bin").write_bytes(b"\x01" * 70_000)
    (root / "config.json").write_text('{"hidden": 8}')
    (root / "empty.txt").write_bytes(b"")
    (root / "shard:0:100").write_bytes(b"colon name")
    return root


def _write_keys(tmp_path: Path, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    priv, pub = tmp_path / "key.pem", tmp_path / "key.pub"
    priv.write_bytes(private_key_to_pem(key))
    pub.write_bytes(public_key_to_pem(key.public_key()))
    return priv, pub


def _ms_verify(model_dir: Path, sig: Path, pub: Path) -> None:
    model_signing.verifying.Config().use_elliptic_key_verifier(public_key=pub).verify(
        model_dir, sig
    )


def _ms_sign(model_dir: Path, sig: Path, priv: Path, *, shards: bool = False) -> None:
    hashing = model_signing.hashing.Config().set_ignored_paths(paths=[sig.name])
    if shards:
        hashing = hashing.use_shard_serialization(shard_size=30_000)
    model_signing.signing.Config().use_elliptic_key_signer(private_key=priv).set_hashing_config(
        hashing
    ).sign(model_dir, sig)


def _copy_vector(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    for p in [dst, *dst.rglob("*")]:
        p.chmod(p.stat().st_mode | stat.S_IWUSR)
    return dst


def _bundle(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _payload(bundle: dict[str, Any]) -> dict[str, Any]:
    return json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))


def _resign(bundle: dict[str, Any], payload: bytes, key: ec.EllipticCurvePrivateKey) -> None:
    env = dsse.sign_envelope(payload, dsse.IN_TOTO_PAYLOAD_TYPE, [Signer.from_private_key(key)])
    bundle["dsseEnvelope"] = env.to_dict()


# --- the shared vectors -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ELLIPTIC)
def test_vector_elliptic_key(ms_vectors: Path, name: str) -> None:
    folder = ms_vectors / name
    pub = load_public_key((ms_vectors / "keys" / "signing-key-pub.pem").read_bytes())
    target = folder / "signme-1" if name in SINGLE_FILE else folder
    result = verify_model(target, folder / "model.sig", pub, ignore_paths=["ignore-me"])
    assert result.predicate_type == MODEL_SIGNING_V1
    assert result.signer_key_ids == (key_id(pub),)
    assert {r.name for r in result.resources} == ({"."} if name in SINGLE_FILE else
                                                  {"signme-1", "signme-2"})
    if name in SINGLE_FILE:
        with pytest.raises(SignatureError, match="covers a single file"):
            verify_model(folder, folder / "model.sig", pub)
    elif "ignore-me" in result.serialization.get("ignore_paths", []):
        # v1.1+ records its ignores in the signed payload: they apply without being repeated.
        verify_model(folder, folder / "model.sig", pub)
    else:
        # ignore-me was not signed: without ignoring it, it is an added file.
        with pytest.raises(SignatureError) as info:
            verify_model(folder, folder / "model.sig", pub)
        assert "file added after signing: ignore-me" in str(info.value)


@pytest.mark.parametrize("name", ELLIPTIC)
def test_vector_elliptic_key_wrong_key_refused(ms_vectors: Path, name: str) -> None:
    folder = ms_vectors / name
    target = folder / "signme-1" if name in SINGLE_FILE else folder
    other = ec.generate_private_key(ec.SECP384R1()).public_key()
    with pytest.raises(SignatureError, match="0 valid signature") as info:
        verify_model(target, folder / "model.sig", other, ignore_paths=["ignore-me"])
    if _bundle(folder / "model.sig")["verificationMaterial"]["publicKey"].get("hint"):
        assert "not among the trusted keys" in str(info.value)


@pytest.mark.parametrize("name", CERTIFICATE)
def test_vector_certificate(ms_vectors: Path, name: str, tmp_path: Path) -> None:
    folder = ms_vectors / name
    keys = ms_vectors / "keys"
    chain = read_bundle_certificates(folder / "model.sig")
    leaf_file = x509.load_pem_x509_certificate((keys / "signing-key-cert.pem").read_bytes())
    assert chain[0] == leaf_file
    # 1. Signature with the leaf certificate's public key.
    leaf_key = chain[0].public_key()
    assert isinstance(leaf_key, ec.EllipticCurvePublicKey)
    result = verify_model(folder, folder / "model.sig", leaf_key, ignore_paths=["ignore-me"])
    assert {r.name for r in result.resources} == {"signme-1", "signme-2"}
    assert result.legacy_format == (name == "v0.2.0-certificate")
    # 2. Full chain up to the root CA.
    root = x509.load_pem_x509_certificate((keys / "ca-cert.pem").read_bytes())
    verify_model_certificate(folder, folder / "model.sig", [root], ignore_paths=["ignore-me"])
    # 3. A CA with the same name as the real intermediate, but another key, is not an issuer.
    with pytest.raises(SignatureError, match="does not chain to a trusted CA"):
        verify_model_certificate(folder, folder / "model.sig", [_self_signed_ca()],
                                 ignore_paths=["ignore-me"])
    # 4. The right chain but a changed model is still refused.
    copy = _copy_vector(folder, tmp_path / name)
    (copy / "signme-1").write_bytes(b"evil")
    with pytest.raises(SignatureError, match="does not match") as info:
        verify_model_certificate(copy, copy / "model.sig", [root], ignore_paths=["ignore-me"])
    assert info.value.problems[0].startswith("file changed after signing: signme-1")


def _self_signed_ca() -> x509.Certificate:
    import datetime

    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "intermediate-ca")])
    now = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=7300))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def test_vector_tampered_file_refused(ms_vectors: Path, tmp_path: Path) -> None:
    folder = _copy_vector(ms_vectors / "v1.1.0-elliptic-key", tmp_path / "v")
    pub = load_public_key((ms_vectors / "keys" / "signing-key-pub.pem").read_bytes())
    (folder / "signme-2").write_bytes(b"evil")
    with pytest.raises(SignatureError) as info:
        verify_model(folder, folder / "model.sig", pub, ignore_paths=["ignore-me"])
    assert "file changed after signing: signme-2" in str(info.value)


# --- interop: chainproof -> model_signing ---------------------------------------------------------


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()])
def test_chainproof_signs_model_signing_verifies(
    model: Path, tmp_path: Path, curve: ec.EllipticCurve
) -> None:
    key = ec.generate_private_key(curve)
    _, pub = _write_keys(tmp_path, key)
    sig = model / "model.sig"
    statement = sign_model(model, key, sig)
    bundle = _bundle(sig)
    assert bundle["mediaType"] == BUNDLE_MEDIA_TYPE
    assert bundle["verificationMaterial"] == {
        "publicKey": {"hint": _pem_sha256(pub)},
        "tlogEntries": [],
    }
    payload = _payload(bundle)
    assert payload["predicateType"] == MODEL_SIGNING_V1
    assert payload == json.loads(statement.to_json_bytes())
    names = [r["name"] for r in payload["predicate"]["resources"]]
    assert names == ["config.json", "empty.txt", "shard:0:100", "weights/layer0.bin",
                     "weights/layer1.bin"]
    _ms_verify(model, sig, pub)
    verify_model(model, sig, key.public_key())


def _pem_sha256(pub: Path) -> str:
    import hashlib

    return hashlib.sha256(pub.read_bytes()).hexdigest()


def test_chainproof_signature_verifies_with_model_signing_cli(model: Path, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    _, pub = _write_keys(tmp_path, key)
    sig = tmp_path / "out.sig"
    sign_model(model, key, sig)
    run = subprocess.run(
        [sys.executable, "-m", "model_signing", "verify", "key", str(model),
         "--signature", str(sig), "--public_key", str(pub)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Verification succeeded" in run.stdout
    (model / "config.json").write_text("{}")
    run = subprocess.run(
        [sys.executable, "-m", "model_signing", "verify", "key", str(model),
         "--signature", str(sig), "--public_key", str(pub)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert run.returncode != 0


def test_chainproof_single_file_model(tmp_path: Path) -> None:
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"weights")
    key = ec.generate_private_key(ec.SECP256R1())
    _, pub = _write_keys(tmp_path, key)
    sig = tmp_path / "model.sig"
    sign_model(f, key, sig)
    assert [r["name"] for r in _payload(_bundle(sig))["predicate"]["resources"]] == ["."]
    _ms_verify(f, sig, pub)
    verify_model(f, sig, key.public_key())
    f.write_bytes(b"weightz")
    with pytest.raises(SignatureError, match="file changed after signing"):
        verify_model(f, sig, key.public_key())


# --- interop: model_signing -> chainproof ---------------------------------------------------------


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()])
def test_model_signing_signs_chainproof_verifies(
    model: Path, tmp_path: Path, curve: ec.EllipticCurve
) -> None:
    key = ec.generate_private_key(curve)
    priv, _ = _write_keys(tmp_path, key)
    sig = model / "model.sig"
    _ms_sign(model, sig, priv)
    result = verify_model(model, sig, key.public_key())
    assert len(result.resources) == 5
    (model / "weights" / "layer1.bin").write_bytes(b"\x02" * 70_000)
    with pytest.raises(SignatureError, match="does not match its signature") as info:
        verify_model(model, sig, key.public_key())
    assert "file changed after signing: weights/layer1.bin" in str(info.value)


def test_model_signing_shards_and_unbound_empty_file(model: Path, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    priv, pub = _write_keys(tmp_path, key)
    (model / "empty.txt").unlink()
    (model / "shard:0:100").unlink()
    sig = model / "model.sig"
    _ms_sign(model, sig, priv, shards=True)
    result = verify_model(model, sig, key.public_key())
    assert any(r.name == "weights/layer1.bin:30000:60000" for r in result.resources)
    # model_signing's shards give a zero-byte file no shard: it accepts an added empty file.
    # (Its guessed config breaks on shard_size turned float by protobuf, so pass it explicitly.)
    (model / "__init__.py").write_bytes(b"")
    model_signing.verifying.Config().use_elliptic_key_verifier(public_key=pub).set_hashing_config(
        model_signing.hashing.Config().use_shard_serialization(shard_size=30_000)
    ).verify(model, sig)
    with pytest.raises(SignatureError) as info:
        verify_model(model, sig, key.public_key())
    assert "zero-byte file not covered by a 'shards' signature: __init__.py" in str(info.value)


def test_colon_names_in_shards(model: Path, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    priv, pub = _write_keys(tmp_path, key)
    (model / "empty.txt").unlink()
    sig = model / "model.sig"
    _ms_sign(model, sig, priv, shards=True)
    # model_signing splits shard names on ':' and cannot verify its own signature here ...
    with pytest.raises(ValueError, match="3 components"):
        _ms_verify(model, sig, pub)
    # ... chainproof compares whole names, so it verifies, and still catches a change.
    result = verify_model(model, sig, key.public_key())
    assert "shard:0:100:0:10" in {r.name for r in result.resources}
    (model / "shard:0:100").write_bytes(b"colon namf")
    with pytest.raises(SignatureError, match="does not match") as info:
        verify_model(model, sig, key.public_key())
    assert info.value.problems[0].startswith("file changed after signing: shard:0:100:0:10")


# --- attacks on chainproof-signed bundles -------------------------------------------------------


@pytest.fixture
def signed(model: Path, tmp_path: Path) -> tuple[Path, Path, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    sig = tmp_path / "model.sig"
    sign_model(model, key, sig)
    return model, sig, key


Signed = tuple[Path, Path, ec.EllipticCurvePrivateKey]


def test_wrong_key_refused(signed: Signed) -> None:
    model, sig, _ = signed
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(SignatureError) as info:
        verify_model(model, sig, other.public_key())
    text = str(info.value)
    assert "0 valid signature(s) from distinct trusted keys, 1 required" in text
    assert "is not a trusted key" in text
    assert "not among the trusted keys" in text


def test_edited_payload_refused(signed: Signed) -> None:
    model, sig, key = signed
    bundle = _bundle(sig)
    payload = _payload(bundle)
    payload["predicate"]["resources"][0]["digest"] = "0" * 64
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    sig.write_text(json.dumps(bundle))
    with pytest.raises(SignatureError, match="does not verify"):
        verify_model(model, sig, key.public_key())


def test_edited_payload_type_refused(signed: Signed) -> None:
    model, sig, key = signed
    bundle = _bundle(sig)
    bundle["dsseEnvelope"]["payloadType"] = "application/json"
    sig.write_text(json.dumps(bundle))
    with pytest.raises(SignatureError, match="does not verify"):
        verify_model(model, sig, key.public_key())


def test_unknown_predicate_type_refused_even_if_signed(signed: Signed) -> None:
    model, sig, key = signed
    bundle = _bundle(sig)
    payload = _payload(bundle)
    for ptype, message in (
        ("https://evil.example/anything/v1", "unknown predicate type"),
        (CHAINPROOF_REPORT_V1, "unknown predicate type"),
    ):
        payload["predicateType"] = ptype
        _resign(bundle, json.dumps(payload).encode(), key)
        sig.write_text(json.dumps(bundle))
        with pytest.raises(SignatureError, match=message):
            verify_model(model, sig, key.public_key())


def test_inconsistent_root_digest_refused_even_if_signed(signed: Signed) -> None:
    model, sig, key = signed
    bundle = _bundle(sig)
    payload = _payload(bundle)
    payload["subject"][0]["digest"]["sha256"] = "1" * 64
    _resign(bundle, json.dumps(payload).encode(), key)
    sig.write_text(json.dumps(bundle))
    with pytest.raises(SignatureError, match="manifest is inconsistent"):
        verify_model(model, sig, key.public_key())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t[: len(t) // 2], "not valid JSON.*truncated"),
        (lambda t: t[:-1], "not valid JSON"),
        (lambda t: "", "not valid JSON"),
        (lambda t: t.replace('"payload":"', '"payload":"!', 1), "payload is not valid base64"),
        (lambda t: t.replace('"sig":"', '"sig":"*', 1), "sig is not valid base64"),
        (lambda t: t.replace(BUNDLE_MEDIA_TYPE, "application/json"), "media type"),
        (lambda t: t.replace('"dsseEnvelope"', '"messageSignature"'), "no dsseEnvelope"),
        (lambda t: t.replace('"publicKey"', '"nothing"'), "neither a publicKey"),
        (lambda t: "[1, 2]", "not a JSON object"),
        (lambda t: t[:-1] + ',"mediaType":"x"}', "duplicate keys"),
    ],
)
def test_malformed_bundles_refused(signed: Signed, mutate: Any, message: str) -> None:
    model, sig, key = signed
    sig.write_text(mutate(sig.read_text()))
    with pytest.raises(MalformedFileError, match=message):
        verify_model(model, sig, key.public_key())


def test_empty_signature_list_refused(signed: Signed) -> None:
    model, sig, key = signed
    bundle = _bundle(sig)
    bundle["dsseEnvelope"]["signatures"] = []
    sig.write_text(json.dumps(bundle))
    with pytest.raises(MalformedFileError, match="no signatures"):
        verify_model(model, sig, key.public_key())


def test_model_files_changed_added_removed(signed: Signed) -> None:
    model, sig, key = signed
    (model / "config.json").write_text('{"hidden": 9}')
    (model / "weights" / "layer0.bin").unlink()
    (model / "backdoor.py").write_text("import os")
    with pytest.raises(SignatureError, match="does not match its signature") as info:
        verify_model(model, sig, key.public_key())
    assert info.value.problems == [
        "file added after signing: backdoor.py",
        "file removed after signing: weights/layer0.bin",
        info.value.problems[2],
    ]
    assert info.value.problems[2].startswith("file changed after signing: config.json")


def test_zero_byte_file_added_or_removed_refused(signed: Signed) -> None:
    model, sig, key = signed
    (model / "weights" / "__init__.py").write_bytes(b"")
    with pytest.raises(SignatureError) as info:
        verify_model(model, sig, key.public_key())
    assert info.value.problems == ["file added after signing: weights/__init__.py"]
    (model / "weights" / "__init__.py").unlink()
    (model / "empty.txt").unlink()
    with pytest.raises(SignatureError) as info:
        verify_model(model, sig, key.public_key())
    assert info.value.problems == ["file removed after signing: empty.txt"]


def test_file_renamed_refused(signed: Signed) -> None:
    model, sig, key = signed
    (model / "shard:0:100").rename(model / "shard:0:101")
    with pytest.raises(SignatureError) as info:
        verify_model(model, sig, key.public_key())
    assert "file added after signing: shard:0:101" in info.value.problems


def test_symlink_refused(signed: Signed) -> None:
    model, sig, key = signed
    (model / "link").symlink_to(model / "config.json")
    with pytest.raises(UnsafePathError, match="symbolic link"):
        verify_model(model, sig, key.public_key())


def test_ignore_paths_and_git_paths(model: Path, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    (model / ".git").mkdir()
    (model / ".git" / "HEAD").write_text("ref")
    (model / "notes").mkdir()
    (model / "notes" / "todo.txt").write_text("x")
    sig = model / "model.sig"
    sign_model(model, key, sig, ignore_paths=["notes"])
    args = _payload(_bundle(sig))["predicate"]["serialization"]
    assert args["ignore_paths"] == [".git", ".gitattributes", ".github", ".gitignore",
                                    "model.sig", "notes"]
    # Signed ignores are honoured: notes may change, .git may change.
    (model / "notes" / "todo.txt").write_text("changed")
    (model / ".git" / "HEAD").write_text("other")
    verify_model(model, sig, key.public_key())
    _, pub = _write_keys(tmp_path, key)
    _ms_verify(model, sig, pub)


def test_ignore_path_cannot_escape(signed: Signed) -> None:
    model, sig, key = signed
    with pytest.raises(UnsafePathError, match="escapes"):
        verify_model(model, sig, key.public_key(), ignore_paths=["../x"])


# --- multiple signatures / threshold -------------------------------------------------------------


def test_all_signatures_checked_and_threshold(model: Path, tmp_path: Path) -> None:
    a = ec.generate_private_key(ec.SECP256R1())
    b = ec.generate_private_key(ec.SECP384R1())
    sig = tmp_path / "model.sig"
    sign_model(model, a, sig, co_signers=[b])
    assert len(_bundle(sig)["dsseEnvelope"]["signatures"]) == 2
    result = verify_model(model, sig, [a.public_key(), b.public_key()], threshold=2)
    assert set(result.signer_key_ids) == {key_id(a.public_key()), key_id(b.public_key())}
    # Only the second signer trusted: model_signing would look at signatures[0] only; we find it.
    assert verify_model(model, sig, b.public_key()).signer_key_ids == (key_id(b.public_key()),)
    with pytest.raises(SignatureError, match=r"1 valid signature.*2 required"):
        verify_model(model, sig, [a.public_key(), ec.generate_private_key(
            ec.SECP256R1()).public_key()], threshold=2)


def test_duplicated_signature_does_not_meet_threshold(signed: Signed) -> None:
    model, sig, key = signed
    bundle = _bundle(sig)
    one = bundle["dsseEnvelope"]["signatures"][0]
    bundle["dsseEnvelope"]["signatures"] = [one, dict(one, keyid="")]
    sig.write_text(json.dumps(bundle))
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(SignatureError, match=r"already counted|1 valid"):
        verify_model(model, sig, [key.public_key(), other.public_key()], threshold=2)


# --- misc ---------------------------------------------------------------------------------------


def test_missing_paths_and_bad_keys(tmp_path: Path, signed: Signed) -> None:
    model, sig, key = signed
    with pytest.raises(BadInputError, match="does not exist"):
        verify_model(model, tmp_path / "nope.sig", key.public_key())
    with pytest.raises(BadInputError, match="does not exist"):
        verify_model(tmp_path / "nope", sig, key.public_key())
    with pytest.raises(BadInputError, match="does not exist"):
        sign_model(tmp_path / "nope", key, tmp_path / "x.sig")
    with pytest.raises(BadInputError, match="no public key"):
        verify_model(model, sig, [])


def test_statement_is_a_chainproof_statement(signed: Signed) -> None:
    _, sig, _ = signed
    st = Statement.from_bytes(base64.b64decode(_bundle(sig)["dsseEnvelope"]["payload"]))
    assert st.predicate_type == MODEL_SIGNING_V1
    assert isinstance(st.subjects[0], Subject)
    assert st.subjects[0].name == "my-model"


def test_blake3_bundles_interoperate(model: Path, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    priv, pub = _write_keys(tmp_path, key)
    sig = tmp_path / "b3.sig"
    sign_model(model, key, sig, hash_type="blake3")
    payload = _payload(_bundle(sig))
    assert payload["predicate"]["serialization"]["hash_type"] == "blake3"
    assert {r["algorithm"] for r in payload["predicate"]["resources"]} == {"blake3"}
    _ms_verify(model, sig, pub)
    verify_model(model, sig, key.public_key())
    ms_sig = tmp_path / "ms-b3.sig"
    model_signing.signing.Config().use_elliptic_key_signer(private_key=priv).set_hashing_config(
        model_signing.hashing.Config().use_file_serialization(hashing_algorithm="blake3")
    ).sign(model, ms_sig)
    verify_model(model, ms_sig, key.public_key())
    (model / "config.json").write_text("{}")
    with pytest.raises(SignatureError, match=r"file changed after signing: config\.json"):
        verify_model(model, ms_sig, key.public_key())
    with pytest.raises(BadInputError, match="unsupported hash type"):
        sign_model(model, key, sig, hash_type="md5")


# --- X.509 chains (issue 13): RFC 5280 through cryptography.x509.verification -------------------


def _name(cn: str) -> x509.Name:
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(
    cn: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool,
    path_len: int | None = None,
    key_cert_sign: bool = True,
    digital_signature: bool = True,
    eku: list[x509.ObjectIdentifier] | None = None,
    san: str | None = None,
    days: int = 3650,
    start_day: int = 0,
    unknown_critical: bool = False,
) -> x509.Certificate:
    import datetime

    from cryptography.hazmat.primitives import hashes

    start = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(start_day)
    issuer_name = issuer[0].subject if issuer else _name(cn)
    signer = issuer[1] if issuer else key
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_len), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=digital_signature, content_commitment=False,
                key_encipherment=not digital_signature and not ca, data_encipherment=False,
                key_agreement=False, key_cert_sign=ca and key_cert_sign, crl_sign=ca,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
        )
    )
    if eku is not None:
        b = b.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    if san is not None:
        b = b.add_extension(x509.SubjectAlternativeName([x509.RFC822Name(san)]), critical=False)
    if unknown_critical:
        b = b.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.57264.99"), b"\x05\x00"),
            critical=True,
        )
    return b.sign(signer, hashes.SHA256())


CODE_SIGNING = x509.oid.ExtendedKeyUsageOID.CODE_SIGNING
SERVER_AUTH = x509.oid.ExtendedKeyUsageOID.SERVER_AUTH


Pki = tuple[x509.Certificate, list[x509.Certificate], ec.EllipticCurvePrivateKey]


def _pki(**over: Any) -> Pki:
    """root -> intermediate -> leaf; ``over`` changes one constraint. Returns (root, chain, key)."""
    rk, ik, lk = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _issue("root", rk, None, ca=True, path_len=over.get("root_path_len"))
    inter = _issue("inter", ik, (root, rk), ca=True,
                   key_cert_sign=over.get("inter_key_cert_sign", True),
                   days=over.get("inter_days", 3650))
    leaf = _issue("leaf", lk, (inter, ik), ca=False,
                  eku=over.get("eku", [CODE_SIGNING]),
                  digital_signature=over.get("digital_signature", True),
                  san=over.get("san", "alice@example.com"),
                  start_day=over.get("leaf_start_day", 0),
                  unknown_critical=over.get("unknown_critical", False))
    return root, [leaf, inter], lk


def _cert_signed(model: Path, tmp_path: Path, chain: list[x509.Certificate],
                 key: ec.EllipticCurvePrivateKey) -> Path:
    from cryptography.hazmat.primitives import serialization

    sig = tmp_path / "model.sig"
    sign_model(model, key, sig)
    bundle = _bundle(sig)
    bundle["verificationMaterial"] = {
        "x509CertificateChain": {"certificates": [
            {"rawBytes": base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()}
            for c in chain
        ]},
        "tlogEntries": [],
    }
    sig.write_text(json.dumps(bundle))
    return sig


def test_certificate_chain_control_verifies(model: Path, tmp_path: Path) -> None:
    root, chain, key = _pki()
    sig = _cert_signed(model, tmp_path, chain, key)
    result = verify_model_certificate(model, sig, [root], identity="alice@example.com")
    assert len(result.resources) == 5


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"root_path_len": 0}, "path length"),
        ({"inter_key_cert_sign": False}, "keyCertSign|key usage|KeyUsage"),
        ({"eku": [SERVER_AUTH]}, "codeSigning"),
        ({"eku": None}, "ExtendedKeyUsage|2.5.29.37|missing required extension"),
        ({"digital_signature": False}, "digitalSignature"),
        ({"unknown_critical": True}, "critical extension"),
        ({"inter_days": 30, "leaf_start_day": 60}, "expired|not valid|validity"),
    ],
    ids=["pathlen-exceeded", "ca-without-keycertsign", "eku-not-codesigning", "no-eku",
         "ku-without-digitalsignature", "unknown-critical-extension",
         "issuer-expired-at-signing"],
)
def test_certificate_chain_constraints_refused(
    model: Path, tmp_path: Path, over: dict[str, Any], message: str
) -> None:
    """One RFC 5280 / OpenSSF constraint broken per case; ``openssl verify`` and model_signing
    refuse the first two (issue 13 item 5); the rest are the code-signing leaf rules."""
    root, chain, key = _pki(**over)
    sig = _cert_signed(model, tmp_path, chain, key)
    before = sig.read_bytes()
    with pytest.raises(SignatureError, match=message):
        verify_model_certificate(model, sig, [root])
    assert sig.read_bytes() == before


def test_certificate_chain_pathlen_refused_by_openssl_too(model: Path, tmp_path: Path) -> None:
    """The differential control: openssl agrees the pathLen-0 chain is invalid."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl binary not installed")
    from cryptography.hazmat.primitives import serialization

    for over, ok in (({}, True), ({"root_path_len": 0}, False)):
        root, chain, _ = _pki(**over)
        files = []
        for name, cert in (("root", root), ("inter", chain[1]), ("leaf", chain[0])):
            p = tmp_path / f"{name}.pem"
            p.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            files.append(p)
        run = subprocess.run(
            ["openssl", "verify", "-attime", "1735776000", "-CAfile", str(files[0]),
             "-untrusted", str(files[1]), str(files[2])],
            capture_output=True, text=True, check=False,
        )
        assert (run.returncode == 0) == ok, run.stdout + run.stderr


def test_certificate_identity_and_anchor_refused(model: Path, tmp_path: Path) -> None:
    root, chain, key = _pki()
    sig = _cert_signed(model, tmp_path, chain, key)
    with pytest.raises(SignatureError, match=r"identity is not 'mallory@example\.com'"):
        verify_model_certificate(model, sig, [root], identity="mallory@example.com")
    other_root, _, _ = _pki()
    with pytest.raises(SignatureError, match="does not chain to a trusted CA"):
        verify_model_certificate(model, sig, [other_root])
    # the leaf alone, without its intermediate, does not reach the root either
    (tmp_path / "leaf-only").mkdir()
    sig2 = _cert_signed(model, tmp_path / "leaf-only", chain[:1], key)
    with pytest.raises(SignatureError, match="does not chain to a trusted CA"):
        verify_model_certificate(model, sig2, [root])


# --- OpenSSF MUST-reject: empty models (issue 13 item 6) ----------------------------------------


def test_empty_model_refused_at_sign(tmp_path: Path, p256_key: ec.EllipticCurvePrivateKey) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    sig = tmp_path / "model.sig"
    with pytest.raises(BadInputError, match="no files to sign"):
        sign_model(empty, p256_key, sig)
    assert not sig.exists()
    only_ignored = tmp_path / "ignored"
    (only_ignored / ".git").mkdir(parents=True)
    (only_ignored / ".git" / "HEAD").write_text("ref: main")
    (only_ignored / ".gitignore").write_text("*.tmp")
    (only_ignored / "scratch").write_text("x")
    with pytest.raises(BadInputError, match="no files to sign"):
        sign_model(only_ignored, p256_key, sig, ignore_paths=["scratch"])
    assert not sig.exists()


def test_empty_model_signature_refused_at_verify(
    tmp_path: Path, p256_key: ec.EllipticCurvePrivateKey
) -> None:
    """A signed statement over zero resources (made by hand: sign_model refuses to) is refused,
    whatever directory it is checked against."""
    import hashlib

    model = tmp_path / "m"
    model.mkdir()
    (model / "w.bin").write_bytes(b"w")
    sig = tmp_path / "model.sig"
    sign_model(model, p256_key, sig)
    bundle = _bundle(sig)
    payload = _payload(bundle)
    payload["predicate"]["resources"] = []
    payload["subject"][0]["digest"]["sha256"] = hashlib.sha256(b"").hexdigest()
    _resign(bundle, json.dumps(payload).encode(), p256_key)
    sig.write_text(json.dumps(bundle))
    empty = tmp_path / "empty"
    empty.mkdir()
    for target in (empty, model):
        with pytest.raises(SignatureError, match="covers no file"):
            verify_model(target, sig, p256_key.public_key())


def test_model_with_every_file_ignored_refused_at_verify(signed: Signed) -> None:
    model, sig, key = signed
    everything = [p.name for p in model.iterdir() if p.name != sig.name]
    with pytest.raises(SignatureError, match="no files left to verify"):
        verify_model(model, sig, key.public_key(), ignore_paths=everything)


# --- OpenSSF MUST-reject: every other refusal, each signed by the trusted key -------------------
#
# Each attack below is a payload the trusted key really signed (a buggy or hostile producer, or a
# signer tricked into signing it), so only the rule under test can refuse it. Rules are cited
# from the OMS spec v1.0 (github.com/ossf/model-signing-spec spec/v1.0.md) and the reference
# verifier (sigstore/model-transparency src/model_signing). Every refusal also checks that
# nothing on disk changed (verification never writes).


def _snapshot(*roots: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every path under ``roots`` (links not followed): bytes, mode and mtime."""
    out: dict[str, tuple[bytes, int, int]] = {}
    for root in roots:
        for p in [root, *sorted(root.rglob("*"))] if root.is_dir() else [root]:
            st = p.lstat()
            data = p.read_bytes() if stat.S_ISREG(st.st_mode) else os.fsencode(
                os.readlink(p)) if p.is_symlink() else b""
            out[str(p)] = (data, st.st_mode, st.st_mtime_ns)
    return out


def _root(resources: list[dict[str, Any]]) -> str:
    import hashlib

    h = hashlib.sha256()
    for r in resources:
        h.update(bytes.fromhex(r["digest"]))
    return h.hexdigest()


def _signed_payload(signed: Signed, mutate: Any, *, payload_type: str = dsse.IN_TOTO_PAYLOAD_TYPE,
                    fix_root: bool = True) -> None:
    """Mutate the payload, recompute the root digest (so only the rule under test is broken)
    and sign it with the trusted key."""
    _, sig, key = signed
    bundle = _bundle(sig)
    payload = _payload(bundle)
    mutate(payload)
    if fix_root and isinstance(payload.get("predicate", {}).get("resources"), list):
        payload["subject"][0]["digest"]["sha256"] = _root(payload["predicate"]["resources"])
    env = dsse.sign_envelope(json.dumps(payload).encode(), payload_type,
                             [Signer.from_private_key(key)])
    bundle["dsseEnvelope"] = env.to_dict()
    sig.write_text(json.dumps(bundle))


def _refused(signed: Signed, error: type[Exception], match: str, **kw: Any) -> Any:
    model, sig, key = signed
    before = _snapshot(model, sig)
    with pytest.raises(error, match=match) as info:
        verify_model(model, sig, key.public_key(), **kw)
    assert _snapshot(model, sig) == before
    return info


def _res(payload: dict[str, Any]) -> list[dict[str, Any]]:
    return payload["predicate"]["resources"]  # type: ignore[no-any-return]


def _ser(payload: dict[str, Any]) -> dict[str, Any]:
    return payload["predicate"]["serialization"]  # type: ignore[no-any-return]


def _dup_first(p: dict[str, Any]) -> None:
    # the same name twice with two digests: model_signing keeps the last, a first-wins reader
    # the first; the file on disk matches one of them
    _res(p).insert(1, dict(_res(p)[0], digest="ab" * 32))


def _rename_first(name: str) -> Any:
    def mutate(p: dict[str, Any]) -> None:
        _res(p)[0]["name"] = name
    return mutate


def _set_ser(key: str, value: Any) -> Any:
    def mutate(p: dict[str, Any]) -> None:
        _ser(p)[key] = value
    return mutate


def _shards(size: Any) -> Any:
    def mutate(p: dict[str, Any]) -> None:
        _ser(p).update(method="shards", shard_size=size)
    return mutate


SIGNED_PAYLOAD_ATTACKS: dict[str, tuple[Any, str]] = {
    # OMS 8.3 rule 1; reference signing.Verifier.verify ("Expected in-toto ... payload")
    "statement-type": (lambda p: p.update(_type="https://in-toto.io/Statement/v0.1"),
                       "not an in-toto Statement v1"),
    # OMS 8.3 rule 2 / 5.1; reference dsse_payload_to_manifest ("Predicate type mismatch")
    "predicate-type": (lambda p: p.update(predicateType="https://model_signing/signature/v2.0"),
                       "unknown predicate type"),
    # OMS 6.5 / statement.schema.json subject maxItems 1; reference "Expected only one subject"
    "two-subjects": (lambda p: p["subject"].append(dict(p["subject"][0], name="other")),
                     "exactly one subject"),
    # OMS 5.2 / predicate.schema.json: resources and serialization REQUIRED
    "no-serialization": (lambda p: p["predicate"].pop("serialization"),
                         "needs a serialization object"),
    # reference manifest.py ManifestItem.key: two items must not share a key
    "duplicate-name": (_dup_first, "listed twice"),
    # OMS 6.1.2 rule 2: no "../" components
    "path-traversal": (_rename_first("../../etc/passwd"), "climbs out of the model"),
    "inner-traversal": (_rename_first("weights/../../secret.bin"), "climbs out of the model"),
    # OMS 6.1.2 rule 2: not absolute
    "absolute-path": (_rename_first("/etc/passwd"), "absolute path"),
    # OMS 6.1.2 rule 3: normalised
    "dot-prefix": (_rename_first("./config.json"), "not normalised"),
    "double-slash": (_rename_first("weights//layer0.bin"), "not normalised"),
    # OMS 6.1.2 rule 4: no trailing "/"
    "trailing-slash": (_rename_first("weights/"), "ends with '/'"),
    # OMS 6.3.1: resource algorithm == serialization.hash_type
    "algorithm-mismatch": (lambda p: _res(p)[0].update(algorithm="blake3"), "uses 'blake3'"),
    # digest length must fit the algorithm (a truncated/extended digest never matches)
    "digest-length": (lambda p: _res(p)[0].update(digest="ab" * 48), "384-bit digest"),
    # OMS 7 / algorithm-registry.md; reference hashing config refuses unknown hashes
    "hash-type-unknown": (lambda p: (_ser(p).update(hash_type="md5"),
                                     [r.update(algorithm="md5") for r in _res(p)]),
                          "unsupported hash type 'md5'"),
    "hash-type-blake2b": (lambda p: (_ser(p).update(hash_type="blake2b"),
                                     [r.update(algorithm="blake2b") for r in _res(p)]),
                          "registered, but not supported"),
    # OMS 6.3; reference SerializationType.from_args ("Unknown serialization type")
    "method-unknown": (_set_ser("method", "tarball"), "unsupported serialization method"),
    # OMS 5.2.2: allow_symlinks REQUIRED boolean
    "allow-symlinks-missing": (lambda p: _ser(p).pop("allow_symlinks"), "no allow_symlinks"),
    "allow-symlinks-string": (_set_ser("allow_symlinks", "false"), "not a boolean"),
    # OMS 5.2.2: shard_size MUST be absent for files, a positive integer for shards
    "shard-size-on-files": (_set_ser("shard_size", 1000), "carries a shard_size"),
    "shard-size-bool": (_shards(True), "positive integer shard_size"),
    "shard-size-zero": (_shards(0), "positive integer shard_size"),
    "shard-size-fraction": (_shards(1.5), "positive integer shard_size"),
    "shard-size-string": (_shards("1000"), "positive integer shard_size"),
    # OMS 6.3.2: shard names are <path>:<start>:<end>
    "shard-name": (lambda p: (_shards(1000)(p), [r.update(algorithm="sha256-sharded-1000")
                                                 for r in _res(p)]),
                   "is not <path>:<start>:<end>"),
    # OMS 6.2.1: ignore paths literal, relative, no ".."
    "ignore-glob": (_set_ser("ignore_paths", ["*"]), "glob character"),
    "ignore-absolute": (_set_ser("ignore_paths", ["/"]), "is absolute"),
    "ignore-traversal": (_set_ser("ignore_paths", ["weights/../.."]), "climbs out"),
}


@pytest.mark.parametrize("attack", sorted(SIGNED_PAYLOAD_ATTACKS))
def test_signed_payload_breaking_a_must_rule_refused(signed: Signed, attack: str) -> None:
    mutate, message = SIGNED_PAYLOAD_ATTACKS[attack]
    _signed_payload(signed, mutate)
    _refused(signed, SignatureError, message)


def test_signed_root_digest_not_matching_resources_refused(signed: Signed) -> None:
    # reference dsse_payload_to_manifest: "Manifest is inconsistent"; OMS 6.5.1
    _signed_payload(signed, lambda p: p["subject"][0]["digest"].update(sha256="0" * 64),
                    fix_root=False)
    _refused(signed, SignatureError, "manifest is inconsistent")


def test_signed_wrong_dsse_payload_type_refused(signed: Signed) -> None:
    # OMS 6.7 step 2; reference Verifier.verify ("Expected DSSE payload ...")
    _signed_payload(signed, lambda p: None, payload_type="application/json")
    _refused(signed, SignatureError, "payload type")


def test_control_untouched_bundle_and_resigned_payload_verify(signed: Signed) -> None:
    model, sig, key = signed
    verify_model(model, sig, key.public_key())
    _signed_payload(signed, lambda p: p["predicate"].update(future_field={"x": 1}))
    verify_model(model, sig, key.public_key())  # unknown predicate fields are ignored (v1.0)


def test_signed_file_missing_on_disk_refused(signed: Signed) -> None:
    # OMS 8.4 step 8: every resource must exist
    model, _, _ = signed
    (model / "weights" / "layer1.bin").unlink()
    info = _refused(signed, SignatureError, "does not match its signature")
    assert info.value.problems == ["file removed after signing: weights/layer1.bin"]


def test_unsigned_file_on_disk_refused(signed: Signed) -> None:
    # OMS 8.4 step 9 / 8.5: a file not in resources and not ignored fails verification
    model, _, _ = signed
    (model / "weights" / "extra.py").write_text("import os; os.system('id')")
    info = _refused(signed, SignatureError, "does not match its signature")
    assert info.value.problems == ["file added after signing: weights/extra.py"]


def test_signed_name_for_a_file_that_exists_outside_the_model_refused(signed: Signed) -> None:
    """A signed "../outside.bin" whose digest matches a real file next to the model: refused by
    the name rule before anything is read, not by a digest comparison."""
    import hashlib

    model, _, _ = signed
    outside = model.parent / "outside.bin"
    outside.write_bytes(b"payload")
    digest = hashlib.sha256(b"payload").hexdigest()
    _signed_payload(signed, lambda p: _res(p).append(
        {"name": "../outside.bin", "algorithm": "sha256", "digest": digest}))
    _refused(signed, SignatureError, "climbs out of the model")


def test_symlink_to_outside_file_refused(signed: Signed) -> None:
    # OMS 6.1.1: allow_symlinks false -> links are refused, even one named like a signed file
    model, _, _ = signed
    secret = model.parent / "secret.json"
    secret.write_text('{"hidden": 8}')
    (model / "config.json").unlink()
    (model / "config.json").symlink_to(secret)
    _refused(signed, UnsafePathError, "symbolic link")


def test_special_file_in_model_refused(signed: Signed) -> None:
    # reference serialization.check_file_or_directory: no pipes, sockets, devices
    model, _, _ = signed
    os.mkfifo(model / "pipe")
    _refused(signed, UnsafePathError, "FIFO")


def test_non_utf8_file_name_refused_at_sign(tmp_path: Path,
                                            p256_key: ec.EllipticCurvePrivateKey) -> None:
    # OMS 6.1.2 rule 7: a name that is not UTF-8 cannot be recorded losslessly
    model = tmp_path / "m"
    model.mkdir()
    (model / "ok.bin").write_bytes(b"x")
    with open(os.path.join(os.fsencode(model), b"bad-\xff.bin"), "wb") as fh:
        fh.write(b"y")
    sig = tmp_path / "model.sig"
    before = _snapshot(model)
    with pytest.raises(UnsafePathError, match="not valid UTF-8"):
        sign_model(model, p256_key, sig)
    assert not sig.exists() and _snapshot(model) == before


def test_glob_ignore_path_refused_at_sign(tmp_path: Path,
                                          p256_key: ec.EllipticCurvePrivateKey) -> None:
    # OMS 6.2.1: ignore paths are literal; we never write one our verifier would refuse
    model = tmp_path / "m"
    model.mkdir()
    (model / "w.bin").write_bytes(b"w")
    sig = tmp_path / "model.sig"
    with pytest.raises(BadInputError, match="glob character"):
        sign_model(model, p256_key, sig, ignore_paths=["*.tmp"])
    assert not sig.exists()


def test_single_file_named_by_basename_accepted(tmp_path: Path,
                                                p256_key: ec.EllipticCurvePrivateKey) -> None:
    """OMS 6.1.2 rule 5 names a single-file model's resource by its basename (model_signing
    writes "."): both verify, and the basename form still refuses a changed file."""
    f = tmp_path / "model.bin"
    f.write_bytes(b"weights")
    sig = tmp_path / "model.sig"
    sign_model(f, p256_key, sig)
    triple = (f, sig, p256_key)
    _signed_payload(triple, _rename_first("model.bin"))
    assert [r.name for r in verify_model(f, sig, p256_key.public_key()).resources] == ["model.bin"]
    f.write_bytes(b"weightz")
    _refused(triple, SignatureError, "does not match")


def test_keyless_certificate_bundle_refused_for_certificate_verification(
    model: Path, tmp_path: Path
) -> None:
    """OMS 11.1: `certificate` (Sigstore keyless) and `x509CertificateChain` MUST match the
    method. A keyless bundle checked as a certificate chain would skip the transparency log."""
    root, chain, key = _pki()
    sig = _cert_signed(model, tmp_path, chain, key)
    verify_model_certificate(model, sig, [root])  # control
    bundle = _bundle(sig)
    chain = bundle["verificationMaterial"].pop("x509CertificateChain")
    bundle["verificationMaterial"]["certificate"] = chain["certificates"][0]
    sig.write_text(json.dumps(bundle))
    before = _snapshot(model, sig)
    with pytest.raises(SignatureError, match="keyless"):
        verify_model_certificate(model, sig, [root])
    assert _snapshot(model, sig) == before
