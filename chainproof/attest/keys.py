"""Signing keys: generation, PEM (de)serialization, key ids, and small sign/verify wrappers.

chainproof signs with ECDSA P-256 (the Sigstore/DSSE default). For *verification* it also accepts
P-384 and P-521 (model_signing allows them) and Ed25519 (so DSSE's published test vectors, which
are Ed25519, run through the same code path as our own envelopes).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TypeAlias

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from chainproof.errors import BadInputError, SignatureError

__all__ = [
    "PublicKey",
    "Signer",
    "Verifier",
    "generate_private_key",
    "hash_for_curve",
    "key_id",
    "load_private_key",
    "load_public_key",
    "private_key_to_pem",
    "public_key_to_pem",
]

PublicKey: TypeAlias = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

# Curve name -> hash, following Sigstore's key-details table (and model_signing's get_ec_key_hash).
_CURVE_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}
_SIGNING_CURVES = frozenset({"secp256r1"})


def hash_for_curve(curve: ec.EllipticCurve) -> hashes.HashAlgorithm:
    """The hash ECDSA uses on ``curve`` (SHA-256/384/512 for P-256/384/521)."""
    try:
        return _CURVE_HASHES[curve.name]()
    except KeyError:
        raise BadInputError(
            f"unsupported elliptic curve {curve.name!r}",
            hint="use an ECDSA key on P-256 (signing), or P-256/P-384/P-521 (verification)",
        ) from None


def generate_private_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def private_key_to_pem(key: ec.EllipticCurvePrivateKey, passphrase: bytes | None = None) -> bytes:
    """PKCS#8 PEM, encrypted with the best available scheme when ``passphrase`` is given."""
    if passphrase is not None and not passphrase:
        raise BadInputError(
            "empty passphrase for private key encryption",
            hint="pass a non-empty passphrase, or None to write the key unencrypted",
        )
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase is not None
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def load_private_key(pem: bytes, passphrase: bytes | None = None) -> ec.EllipticCurvePrivateKey:
    """Load a PEM private key for signing; only ECDSA P-256 is accepted."""
    try:
        key = serialization.load_pem_private_key(pem, passphrase)
    except TypeError as exc:
        # cryptography raises TypeError both for "encrypted but no password" and the reverse.
        if passphrase is None:
            raise BadInputError(
                "the private key is encrypted and no passphrase was given",
                hint="pass the key's passphrase",
            ) from exc
        raise BadInputError(
            "a passphrase was given but the private key is not encrypted",
            hint="load it without a passphrase",
        ) from exc
    except ValueError as exc:
        if passphrase is not None and b"ENCRYPTED" in pem:
            raise BadInputError(
                "cannot decrypt the private key: wrong passphrase",
                hint="check the passphrase for this key file",
            ) from exc
        raise BadInputError(
            f"not a PEM private key ({exc})",
            hint="pass a PKCS#8 or SEC1 PEM file as written by `chainproof key generate`",
        ) from exc
    except UnsupportedAlgorithm as exc:
        raise BadInputError(
            f"unsupported private key algorithm ({exc})", hint="use an ECDSA P-256 key"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise BadInputError(
            f"unsupported private key type {type(key).__name__}",
            hint="chainproof signs with ECDSA P-256 keys only",
        )
    if key.curve.name not in _SIGNING_CURVES:
        raise BadInputError(
            f"unsupported signing curve {key.curve.name!r}",
            hint="chainproof signs with ECDSA P-256 (secp256r1) keys only",
        )
    return key


def public_key_to_pem(key: PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    """Load a PEM public key for verification: ECDSA on P-256, P-384 or P-521."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise BadInputError(
            f"not a PEM public key ({exc})",
            hint="pass a SubjectPublicKeyInfo PEM ('-----BEGIN PUBLIC KEY-----')",
        ) from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise BadInputError(
            f"unsupported public key type {type(key).__name__}",
            hint="use an ECDSA P-256, P-384 or P-521 public key",
        )
    hash_for_curve(key.curve)
    return key


def key_id(public_key: PublicKey) -> str:
    """Hex SHA-256 of the DER SubjectPublicKeyInfo: stable across PEM formatting."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


@dataclass(frozen=True)
class Signer:
    """A private key with the key id it signs under; signatures are DER-encoded ECDSA."""

    private_key: ec.EllipticCurvePrivateKey
    keyid: str

    @classmethod
    def from_private_key(cls, private_key: ec.EllipticCurvePrivateKey) -> Signer:
        return cls(private_key, key_id(private_key.public_key()))

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data, ec.ECDSA(hash_for_curve(self.private_key.curve)))


@dataclass(frozen=True)
class Verifier:
    """A trusted public key and its key id. ``verify`` raises, it never returns False."""

    public_key: PublicKey
    keyid: str

    @classmethod
    def from_public_key(cls, public_key: PublicKey) -> Verifier:
        return cls(public_key, key_id(public_key))

    def verify(self, signature: bytes, data: bytes) -> None:
        try:
            if isinstance(self.public_key, ed25519.Ed25519PublicKey):
                self.public_key.verify(signature, data)
            else:
                self.public_key.verify(
                    signature, data, ec.ECDSA(hash_for_curve(self.public_key.curve))
                )
        except InvalidSignature:
            raise SignatureError(
                f"signature does not verify with key {self.keyid}",
                hint="the data was changed after signing, or another key signed it",
            ) from None
        except ValueError as exc:
            # cryptography raises ValueError for a structurally invalid DER signature.
            raise SignatureError(
                f"malformed signature for key {self.keyid} ({exc})",
                hint="the signature bytes are corrupt or not DER-encoded ECDSA",
            ) from None
