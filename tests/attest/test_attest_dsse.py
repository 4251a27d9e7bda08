from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from chainproof.attest.dsse import Envelope, EnvelopeSignature, pae, sign_envelope, verify_envelope
from chainproof.attest.keys import Signer, Verifier, generate_private_key, key_id
from chainproof.errors import MalformedFileError, SignatureError

DATA = Path(__file__).resolve().parent / "data"


def test_pae_spec_example_exact_bytes() -> None:
    # protocol.md "Test Vectors".
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_counts_utf8_bytes_and_handles_empty() -> None:
    assert pae("application/vnd.exämple+json", b"x").startswith(b"DSSEv1 29 ")
    assert pae("t", b"") == b"DSSEv1 1 t 0 "
    assert pae("", b"ab") == b"DSSEv1 0  2 ab"


def test_spec_ecdsa_example_verifies() -> None:
    # protocol.md: ECDSA P-256/SHA-256 (RFC 6979), signature is raw r||s.
    x = 46950820868899156662930047687818585632848591499744589407958293238635476079160
    y = 5640078356564379163099075877009565129882514886557779369047442380624545832820
    pub = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    env = Envelope.from_json(
        '{"payload": "aGVsbG8gd29ybGQ=", "payloadType": "http://example.com/HelloWorld",'
        ' "signatures": [{"sig": "A3JqsQGtVsJ2O2xqrI5IcnXip5GToJ3F+FnZ+O88SjtR6rDAajabZKciJT'
        'fUiHqJPcIAriEGAHTVeCUjW2JIZA=="}]}'
    )
    raw = env.signatures[0].sig
    assert len(raw) == 64
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    der_env = Envelope(env.payload, env.payload_type, (EnvelopeSignature(der),))
    assert verify_envelope(der_env, {key_id(pub): Verifier.from_public_key(pub)}) == b"hello world"
    pub.verify(der, pae(env.payload_type, env.payload), ec.ECDSA(hashes.SHA256()))
    # The same signature over a different payload type does not verify.
    swapped = Envelope(env.payload, "http://example.com/Other", der_env.signatures)
    with pytest.raises(SignatureError):
        verify_envelope(swapped, {key_id(pub): Verifier.from_public_key(pub)})


def _vector_file() -> dict[str, Any]:
    return json.loads((DATA / "dsse_vectors.json").read_text(encoding="utf-8"))


def _vector_keys() -> dict[str, Verifier]:
    keys = {}
    for name, spec in _vector_file()["keys"].items():
        priv = ed25519.Ed25519PrivateKey.from_private_bytes(bytes.fromhex(spec["seed"]))
        pub = priv.public_key()
        keys[name] = Verifier(pub, name)
    return keys


@pytest.mark.parametrize("vector", _vector_file()["vectors"], ids=lambda v: v["id"])
def test_published_vectors(vector: dict[str, Any]) -> None:
    keys = _vector_keys()
    trusted = {k: keys[k] for k in vector["trustedKeys"]}
    text = json.dumps(vector["envelope"])
    signed_pae = bytes.fromhex(vector["pae"])
    if vector["expect"] == "accept":
        env = Envelope.from_json(text)
        assert pae(env.payload_type, env.payload) == signed_pae
        payload = verify_envelope(
            env, trusted, vector["threshold"], payload_types=vector["supportedPayloadTypes"]
        )
        assert payload == env.payload
    else:
        with pytest.raises((SignatureError, MalformedFileError)):
            env = Envelope.from_json(text)
            verify_envelope(
                env, trusted, vector["threshold"], payload_types=vector["supportedPayloadTypes"]
            )


def test_sign_verify_roundtrip_and_json(p256_key: ec.EllipticCurvePrivateKey) -> None:
    signer = Signer.from_private_key(p256_key)
    env = sign_envelope(b'{"a":1}', "application/vnd.in-toto+json", [signer])
    again = Envelope.from_json(env.to_json())
    assert again == env
    trusted = {signer.keyid: Verifier.from_public_key(p256_key.public_key())}
    assert verify_envelope(again, trusted) == b'{"a":1}'
    assert env.to_dict()["signatures"][0]["keyid"] == signer.keyid
    # standard base64 on output
    assert env.to_dict()["payload"] == base64.b64encode(b'{"a":1}').decode()


def _trusted(*keys: ec.EllipticCurvePrivateKey) -> dict[str, Verifier]:
    return {key_id(k.public_key()): Verifier.from_public_key(k.public_key()) for k in keys}


def test_tampered_payload_and_type_are_refused(p256_key: ec.EllipticCurvePrivateKey) -> None:
    env = sign_envelope(b"payload", "type/a", [Signer.from_private_key(p256_key)])
    for bad in (
        Envelope(b"payloae", env.payload_type, env.signatures),
        Envelope(env.payload, "type/b", env.signatures),
    ):
        with pytest.raises(SignatureError, match="0 valid signature") as info:
            verify_envelope(bad, _trusted(p256_key))
        assert "does not verify" in str(info.value)


def test_untrusted_key_reported(
    p256_key: ec.EllipticCurvePrivateKey, other_p256_key: ec.EllipticCurvePrivateKey
) -> None:
    env = sign_envelope(b"p", "t", [Signer.from_private_key(other_p256_key)])
    with pytest.raises(SignatureError) as info:
        verify_envelope(env, _trusted(p256_key))
    assert "is not a trusted key" in str(info.value)
    assert key_id(other_p256_key.public_key()) in str(info.value)


def test_lying_keyid_does_not_help(
    p256_key: ec.EllipticCurvePrivateKey, other_p256_key: ec.EllipticCurvePrivateKey
) -> None:
    # An attacker signs with their key but claims the trusted key's keyid.
    sig = Signer.from_private_key(other_p256_key).sign(pae("t", b"p"))
    env = Envelope(b"p", "t", (EnvelopeSignature(sig, key_id(p256_key.public_key())),))
    with pytest.raises(SignatureError, match="does not verify"):
        verify_envelope(env, _trusted(p256_key))


def test_threshold_counts_distinct_keys(
    p256_key: ec.EllipticCurvePrivateKey, other_p256_key: ec.EllipticCurvePrivateKey
) -> None:
    a, b = Signer.from_private_key(p256_key), Signer.from_private_key(other_p256_key)
    both = sign_envelope(b"p", "t", [a, b])
    trusted = _trusted(p256_key, other_p256_key)
    assert verify_envelope(both, trusted, threshold=2) == b"p"
    # Replaying A's signature twice (even with a fresh ECDSA nonce) is still one key.
    twice = sign_envelope(b"p", "t", [a, a])
    assert twice.signatures[0].sig != twice.signatures[1].sig
    with pytest.raises(SignatureError, match="1 valid signature") as info:
        verify_envelope(twice, trusted, threshold=2)
    assert "already counted" in str(info.value)
    # keyid-less signatures are tried against every trusted key
    anon = Envelope(b"p", "t", tuple(EnvelopeSignature(s.sig) for s in both.signatures))
    assert verify_envelope(anon, trusted, threshold=2) == b"p"
    # A bad first signature does not hide a good second one (all are checked).
    junk = EnvelopeSignature(b"\x30\x06\x02\x01\x01\x02\x01\x01", a.keyid)
    mixed = Envelope(b"p", "t", (junk, both.signatures[1]))
    assert verify_envelope(mixed, trusted) == b"p"
    with pytest.raises(SignatureError):
        verify_envelope(mixed, trusted, threshold=2)


def test_bad_threshold_and_empty_trust(p256_key: ec.EllipticCurvePrivateKey) -> None:
    env = sign_envelope(b"p", "t", [Signer.from_private_key(p256_key)])
    with pytest.raises(SignatureError, match="threshold"):
        verify_envelope(env, _trusted(p256_key), threshold=0)
    with pytest.raises(SignatureError, match="no trusted keys"):
        verify_envelope(env, {})
    with pytest.raises(SignatureError, match="unsupported DSSE payload type"):
        verify_envelope(env, _trusted(p256_key), payload_types=["other"])
    with pytest.raises(SignatureError, match="no signers"):
        sign_envelope(b"p", "t", [])


GOOD = {"payload": "cA==", "payloadType": "t", "signatures": [{"sig": "MEUC", "keyid": "k"}]}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON"),
        ('{"payload": "cA==", "payloadType": "t", "signatures": [{"sig": "MEU', "not valid JSON"),
        ("[]", "must be a JSON object"),
        (json.dumps({**GOOD, "payload": "c A=="}), "payload is not valid base64"),
        (json.dumps({**GOOD, "payload": "cA=*"}), "payload is not valid base64"),
        (json.dumps({**GOOD, "payload": "c"}), "payload is not valid base64"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "payload"}), "no 'payload' field"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "signatures"}), "no 'signatures'"),
        (json.dumps({**GOOD, "signatures": []}), "has no signatures"),
        (json.dumps({**GOOD, "payload": 5}), "'payload' must be a str"),
        (json.dumps({**GOOD, "signatures": {}}), "'signatures' must be a list"),
        (json.dumps({**GOOD, "signatures": ["x"]}), r"signatures\[0\] must be an object"),
        (json.dumps({**GOOD, "signatures": [{"keyid": "k"}]}), "no 'sig' string"),
        (json.dumps({**GOOD, "signatures": [{"sig": "MEUC", "keyid": 3}]}), "'keyid' must be"),
        (json.dumps({**GOOD, "signatures": [{"sig": "!!!!"}]}), "sig is not valid base64"),
        (json.dumps({**GOOD, "signatures": [{"sig": ""}]}), "empty signature"),
        (json.dumps({**GOOD, "payloadType": ""}), "empty payloadType"),
    ],
)
def test_strict_parsing(text: str, message: str) -> None:
    with pytest.raises(MalformedFileError, match=message):
        Envelope.from_json(text)


def test_url_safe_and_unpadded_base64_accepted() -> None:
    env = Envelope.from_json(json.dumps({**GOOD, "payload": "-_-_Pj8"}))
    assert env.payload == bytes.fromhex("fbffbf3e3f")


def test_keyid_not_needed_when_verifying_with_one_key() -> None:
    key = generate_private_key()
    sig = Signer.from_private_key(key).sign(pae("t", b"x"))
    env = Envelope(b"x", "t", (EnvelopeSignature(sig, ""),))
    assert verify_envelope(env, _trusted(key)) == b"x"
