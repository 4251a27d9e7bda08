"""Which keys are trusted for a signature, and accepting signed statements (I2): one authority.

Every verifier (step provenance, approvals, promotion decisions, the gate, ``verify``, ``load``)
resolves keys here and nowhere else. A key is trusted for a signature recorded at audit-log
position ``seq`` when the log shows it was registered to the signer before ``seq`` and not
revoked before ``seq``; a key revoked as *compromised* is trusted for nothing, whenever it
signed. Registration and revocation positions come from the log entries themselves, not from
editable columns (``signing_keys.revoked_at`` and friends), so editing those changes nothing
(``audit verify`` reports the edit).

Every statement chainproof signs is an in-toto Statement in a DSSE envelope whose payloadType is
``application/vnd.in-toto+json``; any other payloadType is refused wherever a signature is
checked.

Client-signed statements (the team server never holds private keys) arrive as a
:class:`RemoteSignature`: accepted only if the envelope's payload is byte-identical to the
statement the server rebuilds inside the transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from chainproof.attest import (
    IN_TOTO_PAYLOAD_TYPE,
    Envelope,
    Signer,
    Verifier,
    load_public_key,
    sign_envelope,
    verify_envelope,
)
from chainproof.db.tables import KeyRow, LogEntryRow
from chainproof.errors import ChainproofError, SignatureError
from chainproof.records.log import Action
from chainproof.transaction import DRY_RUN, Prepared, Transaction

#: Turns a statement's payload into a DSSE envelope (JSON).
SignFn = Callable[[bytes], str]

#: The only DSSE payloadType chainproof signs or accepts (in-toto Statement v1).
PAYLOAD_TYPES = frozenset({IN_TOTO_PAYLOAD_TYPE})


@dataclass(frozen=True)
class KeyFacts:
    """What the audit log says about one registered key.

    ``registered_seq``/``revoked_seq`` are log positions (None: no such entry); ``compromised``
    marks a revocation that withdraws every signature the key ever made."""

    keyid: str
    identity: str
    public_pem: str
    registered_seq: int | None
    revoked_seq: int | None
    revoked_reason: str | None
    compromised: bool

    def trusted_at(self, seq: int | None) -> bool:
        """Whether a signature recorded at log position ``seq`` (None: now) may use this key."""
        if self.registered_seq is None or self.compromised:
            return False
        if seq is None:
            return self.revoked_seq is None
        return self.registered_seq < seq and (self.revoked_seq is None or self.revoked_seq > seq)

    def why_not(self, seq: int | None) -> str:
        if self.registered_seq is None:
            return f"key {self.keyid[:16]}… has no registration in the audit log"
        if self.compromised:
            return (f"key {self.keyid[:16]}… was revoked as compromised "
                    f"({self.revoked_reason}): none of its signatures count")
        if seq is not None and self.registered_seq >= seq:
            return f"key {self.keyid[:16]}… was registered after the signature was recorded"
        return (f"key {self.keyid[:16]}… was revoked ({self.revoked_reason}) before the "
                "signature was recorded")


def key_facts(session: Session, *, identity: str | None = None,
              keyids: Iterable[str] | None = None) -> dict[str, KeyFacts]:
    """Every registered key of ``identity`` (or the given ``keyids``), with its registration
    and revocation positions read from the audit log entries."""
    query = select(KeyRow.keyid, KeyRow.identity, KeyRow.public_pem)
    if identity is not None:
        query = query.where(KeyRow.identity == identity)
    if keyids is not None:
        query = query.where(KeyRow.keyid.in_(list(keyids)))
    rows = session.execute(query).all()
    if not rows:
        return {}
    objects = [f"key:{r.keyid}" for r in rows]
    registered: dict[str, tuple[int, str]] = {}
    revoked: dict[str, tuple[int, str | None, bool]] = {}
    for seq, action, body in session.execute(
            select(LogEntryRow.seq, LogEntryRow.action, LogEntryRow.body).where(
                LogEntryRow.object.in_(objects),
                LogEntryRow.action.in_([Action.KEY_REGISTER.value, Action.KEY_REVOKE.value]))
            .order_by(LogEntryRow.seq)):
        try:
            detail = orjson.loads(body if isinstance(body, str) else bytes(body))["detail"]
            keyid = str(detail["keyid"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue  # audit verify reports an unreadable entry
        if action == Action.KEY_REGISTER.value:
            registered.setdefault(keyid, (seq, str(detail.get("identity"))))
        else:
            revoked.setdefault(keyid, (seq, detail.get("reason"),
                                       detail.get("compromised") is True))
    facts = {}
    for r in rows:
        reg = registered.get(r.keyid)
        # A key whose logged registration names another identity is not this identity's key.
        reg_seq = reg[0] if reg is not None and reg[1] == r.identity else None
        rev = revoked.get(r.keyid)
        facts[r.keyid] = KeyFacts(r.keyid, r.identity, r.public_pem, reg_seq,
                                  rev[0] if rev else None, rev[1] if rev else None,
                                  rev[2] if rev else False)
    return facts


def trusted_verifiers(session: Session, identity: str, seq: int | None = None
                      ) -> tuple[dict[str, Verifier], dict[str, KeyFacts]]:
    """(verifiers trusted for ``identity`` at log position ``seq``, all of its key facts)."""
    facts = key_facts(session, identity=identity)
    trusted = {k: Verifier.from_public_key(load_public_key(f.public_pem.encode()))
               for k, f in facts.items() if f.trusted_at(seq)}
    return trusted, facts


def verify_signed(session: Session, envelope: str | Envelope, identity: str,
                  seq: int | None = None) -> tuple[bytes, str]:
    """Verify a DSSE envelope signed by ``identity`` with a key trusted at log position
    ``seq`` (None: now). Returns (payload, keyid); raises :class:`SignatureError` with the
    reason (malformed, wrong payloadType, unknown, revoked or compromised key, bad signature).
    """
    try:
        signed = envelope if isinstance(envelope, Envelope) else Envelope.from_json(envelope)
    except ChainproofError as exc:
        raise SignatureError(f"the signed envelope is malformed: {exc.message}") from None
    if signed.payload_type not in PAYLOAD_TYPES:
        raise SignatureError(f"DSSE payloadType {signed.payload_type!r} is not "
                             f"{IN_TOTO_PAYLOAD_TYPE!r}",
                             hint="chainproof signs only in-toto statements")
    trusted, facts = trusted_verifiers(session, identity, seq)
    for sig in signed.signatures:
        fact = facts.get(sig.keyid)
        if fact is not None and sig.keyid not in trusted:
            raise SignatureError(f"signature by {identity}: {fact.why_not(seq)}",
                                 hint="rotate to a new key: `chainproof key rotate`")
    try:
        payload = verify_envelope(signed, trusted, threshold=1, payload_types=PAYLOAD_TYPES)
    except SignatureError:
        raise SignatureError(
            f"the statement is not signed by a registered key of {identity}",
            hint="register the key: `chainproof key register IDENTITY PUBLIC.pem`") from None
    keyid = next((s.keyid for s in signed.signatures if s.keyid in trusted),
                 next(iter(trusted), ""))
    return payload, keyid


def accept_signature(tx: Transaction, envelope: str, payload: bytes) -> str:
    """The keyid with which the acting identity signed ``payload`` in ``envelope`` (now: a
    registered, unrevoked key). Refuses anything else before the transaction writes."""
    try:
        signed = Envelope.from_json(envelope)
    except ChainproofError as exc:
        raise SignatureError(f"the signed envelope is malformed: {exc.message}") from None
    if signed.payload != payload:
        raise SignatureError("the envelope does not carry the statement being recorded")
    return verify_signed(tx.session, signed, tx.actor)[1]


def local_signature(signer: Signer) -> SignFn:
    """A ``sign`` function for a key held here."""
    def sign(payload: bytes) -> str:
        return sign_envelope(payload, IN_TOTO_PAYLOAD_TYPE, [signer]).to_json()
    return sign


class RemoteSignature:
    """A ``sign`` for a statement a client signed with its own key (private keys never reach
    the server): accepted only if its payload is byte-identical to the statement the server
    rebuilds inside the transaction."""

    def __init__(self, envelope: str) -> None:
        self.envelope = envelope

    def __call__(self, payload: bytes) -> str:
        try:
            signed = Envelope.from_json(self.envelope)
        except ChainproofError as exc:
            raise SignatureError(f"the signed envelope is malformed: {exc.message}") from None
        if signed.payload != payload:
            raise SignatureError(
                "the signed statement differs from the one this change would record",
                hint="prepare again and sign the returned statement unchanged (the state may "
                     "have changed in between)")
        return self.envelope


def prepare_only(payload: bytes) -> str:
    """A ``sign`` that stops the operation and hands its statement out (nothing is written)."""
    raise Prepared(payload)


def prepared(action: Callable[[], object]) -> bytes | None:
    """Run ``action`` with a :func:`prepare_only` signer inside; the statement it would have
    signed, or None if it signs nothing. Every transaction opened meanwhile rolls back (see
    :data:`chainproof.transaction.DRY_RUN`): a prepare call writes nothing."""
    token = DRY_RUN.set(True)
    try:
        action()
    except Prepared as done:
        return done.payload
    finally:
        DRY_RUN.reset(token)
    return None
