"""DSSE v1 envelopes (https://github.com/secure-systems-lab/dsse, protocol.md and envelope.md).

Hand-written rather than taken from securesystemslib/sigstore: those verify with their own key
abstractions and stop at the first good signature; chainproof needs a strict parser with precise
errors and a (t, n) threshold over DISTINCT trusted keys, and the whole thing is ~100 lines.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chainproof.attest.keys import Signer, Verifier
from chainproof.errors import MalformedFileError, SignatureError

__all__ = [
    "IN_TOTO_PAYLOAD_TYPE",
    "Envelope",
    "EnvelopeSignature",
    "b64decode_any",
    "pae",
    "sign_envelope",
    "verify_envelope",
]

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


def pae(payload_type: str, payload: bytes) -> bytes:
    """Pre-Authentication Encoding: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body.

    LEN is the byte length of the UTF-8 type, not its character count.
    """
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


def b64decode_any(text: str, *, what: str) -> bytes:
    """Decode standard or URL-safe base64 (DSSE says verifiers MUST accept either).

    Strict otherwise: characters outside both alphabets, or a length that padding cannot fix,
    are refused (plain ``base64.b64decode`` silently drops junk characters).
    """
    normalized = text.replace("-", "+").replace("_", "/")
    if len(normalized) % 4:
        normalized += "=" * (-len(normalized) % 4)
    try:
        return base64.b64decode(normalized, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedFileError(
            f"{what} is not valid base64 ({exc})",
            hint="the envelope was corrupted or hand-edited; re-export it from its source",
        ) from None


@dataclass(frozen=True)
class EnvelopeSignature:
    sig: bytes
    keyid: str = ""


@dataclass(frozen=True)
class Envelope:
    payload: bytes
    payload_type: str
    signatures: tuple[EnvelopeSignature, ...]

    def to_dict(self) -> dict[str, Any]:
        sigs: list[dict[str, str]] = []
        for s in self.signatures:
            entry = {"sig": base64.b64encode(s.sig).decode("ascii")}
            if s.keyid:
                entry["keyid"] = s.keyid
            sigs.append(entry)
        return {
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "payloadType": self.payload_type,
            "signatures": sigs,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Envelope:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise MalformedFileError(
                f"DSSE envelope is not valid JSON ({exc})",
                hint="the file is truncated or is not a DSSE envelope",
            ) from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: object, *, where: str = "DSSE envelope") -> Envelope:
        if not isinstance(data, dict):
            raise MalformedFileError(
                f"{where} must be a JSON object, got {type(data).__name__}",
                hint="expected {payload, payloadType, signatures}",
            )
        for name, kind in (("payload", str), ("payloadType", str), ("signatures", list)):
            if name not in data:
                raise MalformedFileError(
                    f"{where} has no {name!r} field",
                    hint="a DSSE envelope needs payload, payloadType and signatures",
                )
            if not isinstance(data[name], kind):
                raise MalformedFileError(
                    f"{where} field {name!r} must be a {kind.__name__}, "
                    f"got {type(data[name]).__name__}",
                    hint="the envelope was hand-edited or produced by a broken tool",
                )
        if not data["payloadType"]:
            raise MalformedFileError(
                f"{where} has an empty payloadType",
                hint="DSSE binds the signature to a payload type; an empty one is never supported",
            )
        if not data["signatures"]:
            raise MalformedFileError(
                f"{where} has no signatures", hint="sign the envelope before publishing it"
            )
        payload = b64decode_any(data["payload"], what=f"{where} payload")
        signatures: list[EnvelopeSignature] = []
        for i, raw in enumerate(data["signatures"]):
            at = f"{where} signatures[{i}]"
            if not isinstance(raw, dict):
                raise MalformedFileError(
                    f"{at} must be an object, got {type(raw).__name__}",
                    hint="each signature is {sig, keyid?}",
                )
            sig = raw.get("sig")
            keyid = raw.get("keyid", "")
            if not isinstance(sig, str):
                raise MalformedFileError(
                    f"{at} has no 'sig' string", hint="each signature needs a base64 'sig'"
                )
            if keyid is None:
                keyid = ""
            if not isinstance(keyid, str):
                raise MalformedFileError(
                    f"{at} 'keyid' must be a string, got {type(keyid).__name__}",
                    hint="keyid is an optional string hint",
                )
            sig_bytes = b64decode_any(sig, what=f"{at} sig")
            if not sig_bytes:
                raise MalformedFileError(f"{at} has an empty signature", hint="re-sign")
            signatures.append(EnvelopeSignature(sig_bytes, keyid))
        return cls(payload, data["payloadType"], tuple(signatures))


def sign_envelope(payload: bytes, payload_type: str, signers: Sequence[Signer]) -> Envelope:
    """Sign ``payload`` once per signer, all over the same PAE."""
    if not signers:
        raise SignatureError(
            "no signers given for the envelope", hint="pass at least one Signer"
        )
    if not payload_type:
        raise SignatureError("empty payload type", hint="pass the payload's media type")
    message = pae(payload_type, payload)
    return Envelope(
        payload,
        payload_type,
        tuple(EnvelopeSignature(s.sign(message), s.keyid) for s in signers),
    )


def verify_envelope(
    envelope: Envelope,
    trusted: Mapping[str, Verifier],
    threshold: int = 1,
    *,
    payload_types: Collection[str] | None = None,
) -> bytes:
    """Return the payload if at least ``threshold`` distinct trusted keys signed it.

    Every signature is checked (not only the first). A signature whose keyid names a trusted key
    is checked against that key only; one without keyid is tried against every trusted key (the
    keyid is an unauthenticated hint, so it only narrows the search). A signature naming an
    unknown keyid is skipped and reported if the threshold is not met. ``payload_types``, when
    given, lists the accepted payload types.
    """
    if threshold < 1:
        raise SignatureError(
            f"threshold must be at least 1, got {threshold}",
            hint="a threshold of 0 would accept unsigned data",
        )
    if not trusted:
        raise SignatureError(
            "no trusted keys to verify the envelope with",
            hint="register the signer's public key, or pass it explicitly",
        )
    message = pae(envelope.payload_type, envelope.payload)
    accepted: set[str] = set()
    problems: list[str] = []
    for i, sig in enumerate(envelope.signatures):
        if sig.keyid:
            verifier = trusted.get(sig.keyid)
            if verifier is None:
                problems.append(f"signatures[{i}]: keyid {sig.keyid} is not a trusted key")
                continue
            candidates = [verifier]
        else:
            candidates = list(trusted.values())
        matched = None
        for verifier in candidates:
            try:
                verifier.verify(sig.sig, message)
            except SignatureError:
                continue
            matched = verifier
            break
        if matched is None:
            who = f"key {sig.keyid}" if sig.keyid else f"any of {len(candidates)} trusted key(s)"
            problems.append(f"signatures[{i}]: does not verify with {who}")
            continue
        if matched.keyid in accepted:
            problems.append(
                f"signatures[{i}]: key {matched.keyid} already counted (duplicates do not count)"
            )
        accepted.add(matched.keyid)
    if len(accepted) < threshold:
        raise SignatureError(
            f"DSSE envelope has {len(accepted)} valid signature(s) from distinct trusted keys, "
            f"{threshold} required",
            hint="check that the signer's key is trusted and that the payload was not modified",
            problems=problems,
        )
    if payload_types is not None and envelope.payload_type not in payload_types:
        raise SignatureError(
            f"unsupported DSSE payload type {envelope.payload_type!r}",
            hint=f"expected one of {sorted(payload_types)}",
        )
    return envelope.payload
