"""X.509 path validation for certificate-signed OpenSSF model signatures.

Path building and the RFC 5280 checks are ``cryptography.x509.verification``'s (the maintained
validator behind ``pyca/cryptography``, shared with its TLS verifier): issuer name chaining and
signatures, validity at the given time, ``basicConstraints`` cA on every issuer,
``pathLenConstraint``, ``keyUsage`` keyCertSign on issuers (its CA policy), name constraints,
unknown critical extensions, chain depth. Nothing here re-implements any of that.

What is ours is the end-entity policy, the OpenSSF model-signing rule set:

* ``extendedKeyUsage`` must be present and include ``codeSigning`` (Fulcio and model_signing's
  certificate signers issue exactly that);
* ``keyUsage``, when present, must include ``digitalSignature``;
* ``basicConstraints`` may be present in either state (the model-signing project's own test
  vectors sign with a leaf that asserts cA, and model_signing accepts it);
* optionally, the leaf's identity: a subjectAltName (email, URI or DNS name) equal to the one
  the caller expects.

The validation time is the leaf's notBefore, as model_signing does (a signing-time proxy; there
is no transparency-log timestamp in key- or certificate-signed model bundles).
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from chainproof.errors import SignatureError

MAX_CHAIN_DEPTH = 8


def _eku_code_signing(policy: Policy, cert: x509.Certificate, eku: x509.ExtendedKeyUsage) -> None:
    if ExtendedKeyUsageOID.CODE_SIGNING not in eku:
        raise ValueError("extendedKeyUsage does not include codeSigning")


def _ku_digital_signature(
    policy: Policy, cert: x509.Certificate, ku: x509.KeyUsage | None
) -> None:
    if ku is not None and not ku.digital_signature:
        raise ValueError("keyUsage does not include digitalSignature")


def _ee_policy() -> ExtensionPolicy:
    return (
        ExtensionPolicy.permit_all()
        .require_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _eku_code_signing)
        .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _ku_digital_signature)
    )


def _identities(leaf: x509.Certificate) -> list[str]:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    out: list[str] = []
    for kind in (x509.RFC822Name, x509.UniformResourceIdentifier, x509.DNSName):
        out.extend(str(v) for v in san.get_values_for_type(kind))
    return out


def verify_signing_chain(
    chain: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    where: str,
    *,
    identity: str | None = None,
) -> x509.Certificate:
    """Validate ``chain`` (leaf first, then untrusted intermediates) up to one of ``anchors``.

    Returns the leaf. Raises :class:`~chainproof.errors.SignatureError` naming the failed rule
    (RFC 5280 as enforced by ``cryptography.x509.verification``, plus the OpenSSF end-entity
    rules in the module docstring).
    """
    if not chain:
        raise SignatureError(f"{where} carries no certificate", hint="use a key-signed bundle")
    leaf = chain[0]
    builder = (
        PolicyBuilder()
        .store(Store(list(anchors)))
        .time(leaf.not_valid_before_utc)
        .max_chain_depth(MAX_CHAIN_DEPTH)
        .extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=_ee_policy()
        )
    )
    try:
        builder.build_client_verifier().verify(leaf, list(chain[1:]))
    except VerificationError as exc:
        raise SignatureError(
            f"{where}: the signing certificate does not chain to a trusted CA: {exc}",
            hint="pass the CA certificates the signer's certificate chains up to; the chain "
            "must satisfy RFC 5280 and the leaf needs extendedKeyUsage codeSigning",
        ) from None
    if identity is not None and identity not in _identities(leaf):
        raise SignatureError(
            f"{where}: the signing certificate's identity is not {identity!r} "
            f"(it names {_identities(leaf) or 'no subjectAltName'})",
            hint="the model was signed by someone else",
        )
    return leaf
