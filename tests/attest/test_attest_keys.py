from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from chainproof.attest.keys import (
    Signer,
    Verifier,
    generate_private_key,
    key_id,
    load_private_key,
    load_public_key,
    private_key_to_pem,
    public_key_to_pem,
)
from chainproof.errors import BadInputError, SignatureError


def test_generate_is_p256_and_roundtrips_unencrypted() -> None:
    key = generate_private_key()
    assert key.curve.name == "secp256r1"
    pem = private_key_to_pem(key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = load_private_key(pem)
    assert key_id(loaded.public_key()) == key_id(key.public_key())


def test_encrypted_roundtrip_and_wrong_passphrase() -> None:
    key = generate_private_key()
    pem = private_key_to_pem(key, b"correct horse")
    assert b"ENCRYPTED" in pem
    assert key_id(load_private_key(pem, b"correct horse").public_key()) == key_id(
        key.public_key()
    )
    with pytest.raises(BadInputError, match="wrong passphrase"):
        load_private_key(pem, b"battery staple")
    with pytest.raises(BadInputError, match="encrypted and no passphrase"):
        load_private_key(pem, None)
    with pytest.raises(BadInputError, match="not encrypted"):
        load_private_key(private_key_to_pem(key), b"x")
    with pytest.raises(BadInputError, match="empty passphrase"):
        private_key_to_pem(key, b"")


@pytest.mark.parametrize(
    "pem",
    [b"", b"hello", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"],
)
def test_load_private_key_rejects_garbage(pem: bytes) -> None:
    with pytest.raises(BadInputError, match="not a PEM private key"):
        load_private_key(pem)


def test_load_private_key_rejects_other_curves_and_types() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    pem = p384.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(BadInputError, match="secp384r1"):
        load_private_key(pem)
    ed = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(BadInputError, match="unsupported private key type"):
        load_private_key(ed)


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()])
def test_public_keys_for_verification(curve: ec.EllipticCurve) -> None:
    key = ec.generate_private_key(curve)
    pub = load_public_key(public_key_to_pem(key.public_key()))
    assert isinstance(pub, ec.EllipticCurvePublicKey)
    # Signing with the matching hash verifies; Verifier picks the hash from the curve.
    signer = Signer(key, key_id(key.public_key()))
    Verifier.from_public_key(pub).verify(signer.sign(b"data"), b"data")


def test_load_public_key_rejects_rsa_and_garbage_and_unsupported_curve() -> None:
    rsa_pem = public_key_to_pem_any(rsa.generate_private_key(65537, 2048).public_key())
    with pytest.raises(BadInputError, match="unsupported public key type"):
        load_public_key(rsa_pem)
    with pytest.raises(BadInputError, match="not a PEM public key"):
        load_public_key(b"nope")
    k1 = ec.generate_private_key(ec.SECP256K1()).public_key()
    with pytest.raises(BadInputError, match="secp256k1"):
        load_public_key(public_key_to_pem_any(k1))


def public_key_to_pem_any(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_key_id_is_sha256_of_der_spki() -> None:
    key = generate_private_key().public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert key_id(key) == hashlib.sha256(der).hexdigest()
    assert key_id(key) != key_id(generate_private_key().public_key())


def test_verifier_refuses_tampered_data_wrong_key_and_garbage() -> None:
    key = generate_private_key()
    signer = Signer.from_private_key(key)
    sig = signer.sign(b"payload")
    verifier = Verifier.from_public_key(key.public_key())
    assert verifier.keyid == signer.keyid
    verifier.verify(sig, b"payload")
    with pytest.raises(SignatureError, match="does not verify"):
        verifier.verify(sig, b"payloae")
    with pytest.raises(SignatureError):
        Verifier.from_public_key(generate_private_key().public_key()).verify(sig, b"payload")
    flipped = bytearray(sig)
    flipped[-1] ^= 1
    with pytest.raises(SignatureError):
        verifier.verify(bytes(flipped), b"payload")
    with pytest.raises(SignatureError):
        verifier.verify(b"\x00" * 10, b"payload")


def test_p256_signatures_use_sha256_der() -> None:
    from cryptography.hazmat.primitives import hashes

    key = generate_private_key()
    sig = Signer.from_private_key(key).sign(b"m")
    key.public_key().verify(sig, b"m", ec.ECDSA(hashes.SHA256()))  # raises if not
