"""Signed checkpoints: C2SP ``tlog-checkpoint`` bodies in C2SP ``signed-note`` envelopes (Ed25519).

A checkpoint commits a log to (origin, tree size, root hash)::

    chainproof.example/log
    42
    <base64 root hash>

    — chainproof.example/log <base64(4-byte key ID || Ed25519 signature)>

Everything here is compatible with ``golang.org/x/mod/sumdb/note`` and transparency-dev tooling,
so witnesses and monitors written for those can check chainproof's log. Signing and verification
are pure functions of their arguments; reading or writing key files is the caller's job (the PEM
helpers only convert bytes).

The note format is written by hand because no maintained Python package implements signed notes;
the cryptography itself comes from ``cryptography``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from chainproof.errors import (
    BadInputError,
    LedgerIntegrityError,
    MalformedFileError,
    SignatureError,
)

__all__ = [
    "ED25519_ALGORITHM",
    "MAX_SIGNATURES",
    "Checkpoint",
    "CheckpointSigner",
    "CheckpointVerifier",
    "NoteSignature",
    "add_signature",
    "format_checkpoint_file",
    "generate_private_key",
    "key_id",
    "parse_checkpoint_file",
    "parse_signed_checkpoint",
    "parse_signed_note",
    "private_key_from_pem",
    "private_key_to_pem",
    "public_key_from_pem",
    "public_key_to_pem",
    "sign_checkpoint",
    "sign_note",
    "verify_checkpoint",
    "verify_note",
]

ED25519_ALGORITHM = 0x01
"""signed-note signature type byte for Ed25519."""

MAX_SIGNATURES = 100
"""More signature lines than this make a note malformed (the spec requires accepting >= 16)."""

_SIG_PREFIX = "\u2014 "  # em dash, space
_HASH_SIZE = 32
_MAX_TREE_SIZE = 1 << 64
_ED25519_SIG_SIZE = 64
_SIZE_RE = re.compile(r"0|[1-9][0-9]*")  # ASCII only, unlike int() which accepts "٤٢" and "1_0"
_KEY_HASH_RE = re.compile(r"[0-9a-fA-F]{8}")

_SIG_HINT = (
    "the checkpoint was not signed by this key, or its text (origin, size, root) was changed "
    "after signing; obtain the checkpoint again from the log and check you use the log's key"
)


# --- keys -----------------------------------------------------------------------------------------


def _raw_public(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(name: str, public_key: Ed25519PublicKey) -> bytes:
    """signed-note key ID: ``SHA-256(name || "\\n" || 0x01 || public key)[:4]``."""
    _check_key_name(name, BadInputError)
    material = name.encode() + b"\n" + bytes([ED25519_ALGORITHM]) + _raw_public(public_key)
    return hashlib.sha256(material).digest()[:4]


def generate_private_key() -> Ed25519PrivateKey:
    """A fresh Ed25519 signing key."""
    return Ed25519PrivateKey.generate()


def private_key_to_pem(private_key: Ed25519PrivateKey, password: bytes | None = None) -> bytes:
    """PKCS#8 PEM bytes for a key file (encrypted with ``password`` when given)."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def private_key_from_pem(data: bytes, password: bytes | None = None) -> Ed25519PrivateKey:
    """Load a PKCS#8 PEM Ed25519 private key; raises MalformedFileError otherwise."""
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except (ValueError, TypeError) as exc:
        raise MalformedFileError(
            f"cannot load the checkpoint signing key: {exc}",
            hint="expected a PKCS#8 PEM Ed25519 private key (and its password if encrypted)",
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise MalformedFileError(
            f"checkpoint signing key is a {type(key).__name__}, not an Ed25519 key",
            hint="generate one with `chainproof key generate`",
        )
    return key


def public_key_to_pem(public_key: Ed25519PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM bytes."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_from_pem(data: bytes) -> Ed25519PublicKey:
    """Load a SubjectPublicKeyInfo PEM Ed25519 public key; raises MalformedFileError otherwise."""
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise MalformedFileError(
            f"cannot load the checkpoint public key: {exc}",
            hint="expected a PEM Ed25519 public key (-----BEGIN PUBLIC KEY-----)",
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise MalformedFileError(
            f"checkpoint public key is a {type(key).__name__}, not an Ed25519 key",
            hint="the log signs checkpoints with Ed25519 only",
        )
    return key


# --- signatures, signers, verifiers ---------------------------------------------------------------


@dataclass(frozen=True)
class NoteSignature:
    """One signature line of a signed note: ``— <name> base64(key_id || signature)``."""

    name: str
    key_id: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _check_key_name(self.name, BadInputError)
        if len(self.key_id) != 4:
            raise BadInputError(f"a signed-note key ID is 4 bytes, got {len(self.key_id)}")
        if not self.signature:
            raise BadInputError("a signed-note signature cannot be empty")

    def line(self) -> str:
        """The signature line, with its trailing newline."""
        payload = base64.b64encode(self.key_id + self.signature).decode("ascii")
        return f"{_SIG_PREFIX}{self.name} {payload}\n"


class CheckpointVerifier:
    """An Ed25519 public key with the key name it signs under."""

    def __init__(self, name: str, public_key: Ed25519PublicKey) -> None:
        _check_key_name(name, BadInputError)
        if not isinstance(public_key, Ed25519PublicKey):
            raise BadInputError(
                f"checkpoint keys are Ed25519, got {type(public_key).__name__}",
                hint="load the key with public_key_from_pem() or from_vkey()",
            )
        self.name = name
        self.public_key = public_key
        self.key_id = key_id(name, public_key)

    def __repr__(self) -> str:
        return f"CheckpointVerifier({self.vkey!r})"

    @property
    def vkey(self) -> str:
        """The note verifier key string ``<name>+<hex key ID>+<base64(0x01 || public key)>``."""
        encoded = base64.b64encode(bytes([ED25519_ALGORITHM]) + _raw_public(self.public_key))
        return f"{self.name}+{self.key_id.hex()}+{encoded.decode('ascii')}"

    @classmethod
    def from_vkey(cls, vkey: str) -> CheckpointVerifier:
        """Parse a note verifier key (as printed by ``golang.org/x/mod/sumdb/note``)."""
        parts = vkey.split("+", 2)
        if len(parts) != 3:
            raise MalformedFileError(
                f"malformed verifier key {vkey!r}: expected <name>+<key ID>+<base64 key>",
                hint="copy the whole vkey line printed by `chainproof audit checkpoint`",
            )
        name, hash16, key64 = parts
        _check_key_name(name, MalformedFileError)
        if not _KEY_HASH_RE.fullmatch(hash16):
            raise MalformedFileError(f"malformed verifier key: key ID {hash16!r} is not 8 hex")
        raw = _strict_b64decode(key64, "verifier key")
        if len(raw) != 33 or raw[0] != ED25519_ALGORITHM:
            raise MalformedFileError(
                "verifier key is not an Ed25519 note key (0x01 followed by 32 bytes)",
                hint="only Ed25519 signed-note keys are supported",
            )
        try:
            public_key = Ed25519PublicKey.from_public_bytes(raw[1:])
        except ValueError as exc:
            raise MalformedFileError(f"invalid Ed25519 public key in vkey: {exc}") from None
        verifier = cls(name, public_key)
        if verifier.key_id != bytes.fromhex(hash16):
            raise MalformedFileError(
                f"verifier key ID {hash16} does not match its name and key "
                f"(expected {verifier.key_id.hex()})",
                hint="the vkey was altered or truncated; obtain it again from a trusted source",
            )
        return verifier

    @classmethod
    def from_pem(cls, name: str, data: bytes) -> CheckpointVerifier:
        return cls(name, public_key_from_pem(data))

    def matches(self, signature: NoteSignature) -> bool:
        """Whether a signature line claims to be by this key (both name and key ID match)."""
        return signature.name == self.name and signature.key_id == self.key_id

    def verify(self, message: bytes, signature: NoteSignature) -> None:
        """Raise SignatureError unless ``signature`` is this key's valid signature of message."""
        if not self.matches(signature):
            raise SignatureError(
                f"signature by {signature.name}+{signature.key_id.hex()} is not by key "
                f"{self.name}+{self.key_id.hex()}",
                hint=_SIG_HINT,
            )
        if len(signature.signature) != _ED25519_SIG_SIZE:
            raise SignatureError(
                f"signature by {self.name}+{self.key_id.hex()} is {len(signature.signature)} "
                f"bytes, an Ed25519 signature is {_ED25519_SIG_SIZE}",
                hint=_SIG_HINT,
            )
        try:
            self.public_key.verify(signature.signature, message)
        except InvalidSignature:
            raise SignatureError(
                f"invalid signature for key {self.name}+{self.key_id.hex()}", hint=_SIG_HINT
            ) from None


class CheckpointSigner:
    """An Ed25519 private key with the key name it signs under (normally the log's origin)."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        _check_key_name(name, BadInputError)
        if not isinstance(private_key, Ed25519PrivateKey):
            raise BadInputError(
                f"checkpoint keys are Ed25519, got {type(private_key).__name__}",
                hint="generate one with generate_private_key()",
            )
        self.name = name
        self._private_key = private_key
        self.verifier = CheckpointVerifier(name, private_key.public_key())
        self.key_id = self.verifier.key_id

    def __repr__(self) -> str:  # never show the private key
        return f"CheckpointSigner({self.verifier.vkey!r})"

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.verifier.public_key

    @property
    def vkey(self) -> str:
        return self.verifier.vkey

    def sign(self, message: bytes) -> NoteSignature:
        return NoteSignature(self.name, self.key_id, self._private_key.sign(message))

    def to_pem(self, password: bytes | None = None) -> bytes:
        return private_key_to_pem(self._private_key, password)

    @classmethod
    def from_pem(cls, name: str, data: bytes, password: bytes | None = None) -> CheckpointSigner:
        return cls(name, private_key_from_pem(data, password))

    @classmethod
    def from_note_skey(cls, skey: str) -> CheckpointSigner:
        """Parse a ``PRIVATE+KEY+<name>+<key ID>+<base64(0x01 || seed)>`` note signer key."""
        parts = skey.split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise MalformedFileError(
                "malformed note signer key: expected PRIVATE+KEY+<name>+<key ID>+<base64 key>"
            )
        _, _, name, hash16, key64 = parts
        _check_key_name(name, MalformedFileError)
        if not _KEY_HASH_RE.fullmatch(hash16):
            raise MalformedFileError(f"malformed signer key: key ID {hash16!r} is not 8 hex digits")
        raw = _strict_b64decode(key64, "signer key")
        if len(raw) != 33 or raw[0] != ED25519_ALGORITHM:
            raise MalformedFileError("signer key is not an Ed25519 note key (0x01 + 32-byte seed)")
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(raw[1:]))
        if signer.key_id != bytes.fromhex(hash16):
            raise MalformedFileError(
                f"signer key ID {hash16} does not match its name and key "
                f"(expected {signer.key_id.hex()})"
            )
        return signer


# --- signed notes ---------------------------------------------------------------------------------


_CONTROL_RE = re.compile(r"[\x00-\x09\x0b-\x1f]")


def _check_note_chars(text: str, what: str) -> None:
    bad = _CONTROL_RE.search(text)
    if bad:
        raise MalformedFileError(
            f"{what} contains control character U+{ord(bad.group()):04X} at offset {bad.start()}",
            hint="signed notes allow no ASCII control characters other than newline "
            "(Windows line endings are not accepted)",
        )


def _strict_b64decode(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise MalformedFileError(f"{what} is not valid base64: {text[:80]!r}") from None
    # Reject non-canonical encodings (stray padding bits) so one value has exactly one text form.
    if base64.b64encode(raw).decode("ascii") != text:
        raise MalformedFileError(f"{what} is not canonical base64: {text[:80]!r}")
    return raw


def _as_text(note: str | bytes) -> str:
    if isinstance(note, bytes):
        try:
            return note.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedFileError(
                f"signed note is not valid UTF-8 (byte offset {exc.start})"
            ) from None
    return note


def _parse_signature_line(line: str, lineno: int) -> NoteSignature:
    if not line.startswith(_SIG_PREFIX):
        raise MalformedFileError(
            f"signature line {lineno} does not start with an em dash (U+2014) and a space: "
            f"{line[:80]!r}",
            hint="signature lines look like '— <key name> <base64>'; a hyphen is not an em dash",
        )
    name, sep, payload = line[len(_SIG_PREFIX) :].partition(" ")
    if not sep:
        raise MalformedFileError(f"signature line {lineno} has no signature after the key name")
    _check_key_name(name, MalformedFileError)
    raw = _strict_b64decode(payload, f"signature on line {lineno}")
    if len(raw) < 5:
        raise MalformedFileError(f"signature on line {lineno} is shorter than 5 bytes")
    return NoteSignature(name, raw[:4], raw[4:])


def parse_signed_note(note: str | bytes) -> tuple[str, tuple[NoteSignature, ...]]:
    """Split a signed note into its text (with final newline) and its signatures, strictly.

    Raises MalformedFileError for anything the signed-note spec does not allow. Nothing is
    verified: the text must not be trusted before :func:`verify_note` succeeds.
    """
    text = _as_text(note)
    _check_note_chars(text, "signed note")
    if not text.endswith("\n"):
        raise MalformedFileError(
            "signed note does not end with a newline (truncated?)",
            hint="a signed note ends with its last signature line and a newline",
        )
    split = text.rfind("\n\n")
    if split < 0:
        raise MalformedFileError(
            "signed note has no blank line between its text and its signatures",
            hint="the text is followed by one empty line, then '— <key name> <signature>' lines",
        )
    body, sig_block = text[: split + 1], text[split + 2 :]
    if not sig_block:
        raise MalformedFileError("signed note has no signature lines")
    lines = sig_block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedFileError(
            f"signed note has {len(lines)} signatures; at most {MAX_SIGNATURES} are accepted"
        )
    first_line = body.count("\n") + 2
    signatures = tuple(_parse_signature_line(ln, first_line + i) for i, ln in enumerate(lines))
    return body, signatures


def sign_note(text: str, signer: CheckpointSigner, *cosigners: CheckpointSigner) -> str:
    """The signed note for ``text`` (which must end in a newline) by one or more signers."""
    _check_note_text(text)
    message = text.encode("utf-8")
    lines = [s.sign(message).line() for s in (signer, *cosigners)]
    return text + "\n" + "".join(lines)


def add_signature(note: str | bytes, signer: CheckpointSigner) -> str:
    """Add ``signer``'s signature to an already signed note (a witness cosignature).

    An existing signature by the same key is replaced. The existing signatures are not checked:
    verify the note with the log's key first.
    """
    body, signatures = parse_signed_note(note)
    kept = [s for s in signatures if not signer.verifier.matches(s)]
    new = signer.sign(body.encode("utf-8"))
    return body + "\n" + "".join(s.line() for s in [*kept, new])


def verify_note(note: str | bytes, verifier: CheckpointVerifier) -> str:
    """Return the note's text if it carries a valid signature by ``verifier``.

    Signatures by other keys are ignored (a signature sharing only the name or only the key ID
    is another key). Any signature line that claims to be by ``verifier`` must verify, otherwise
    the whole note is rejected, as the signed-note spec recommends.
    """
    body, signatures = parse_signed_note(note)
    mine = [s for s in signatures if verifier.matches(s)]
    if not mine:
        seen = sorted({f"{s.name}+{s.key_id.hex()}" for s in signatures})
        raise SignatureError(
            f"note is not signed by key {verifier.name}+{verifier.key_id.hex()}",
            hint=_SIG_HINT,
            problems=[f"signed by {s}" for s in seen],
        )
    message = body.encode("utf-8")
    for signature in mine:
        verifier.verify(message, signature)
    return body


def _check_note_text(text: str) -> None:
    if not isinstance(text, str):
        raise BadInputError(f"note text must be str, got {type(text).__name__}")
    if not text.endswith("\n") or text.startswith("\n"):
        raise BadInputError("note text must be non-empty and end with a newline")
    for i, ch in enumerate(text):
        if ch < " " and ch != "\n":
            raise BadInputError(f"note text contains control character U+{ord(ch):04X} at {i}")


def _check_key_name(name: object, error: type[BadInputError]) -> None:
    if not isinstance(name, str) or not name:
        raise error("a signed-note key name must be a non-empty string")
    if "+" in name or any(ch.isspace() for ch in name):
        raise error(
            f"invalid signed-note key name {name!r}: no spaces or '+' allowed",
            hint="use a schema-less URL such as 'example.com/log'",
        )
    if any(ch < " " for ch in name):
        raise error(f"invalid signed-note key name {name!r}: control characters are not allowed")


# --- checkpoints ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A C2SP tlog-checkpoint: log ``origin`` had ``size`` leaves with RFC 6962 ``root_hash``."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "checkpoint origin")
        if not isinstance(self.size, int) or isinstance(self.size, bool):
            raise BadInputError(f"checkpoint size must be an integer, got {self.size!r}")
        if not 0 <= self.size < _MAX_TREE_SIZE:
            raise BadInputError(f"checkpoint size {self.size} is out of range [0, 2**64)")
        if isinstance(self.root_hash, (bytearray, memoryview)):  # e.g. a database BLOB
            object.__setattr__(self, "root_hash", bytes(self.root_hash))
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != _HASH_SIZE:
            raise BadInputError(
                f"checkpoint root hash must be {_HASH_SIZE} raw bytes",
                hint="pass the digest bytes, not hex or base64 text",
            )
        if not isinstance(self.extensions, tuple):
            raise BadInputError("checkpoint extensions must be a tuple of strings")
        for ext in self.extensions:
            _check_line(ext, "checkpoint extension line")

    def body(self) -> bytes:
        """The note text that gets signed: origin, size, base64 root, extensions, each + newline."""
        root64 = base64.b64encode(self.root_hash).decode("ascii")
        lines = [self.origin, str(self.size), root64, *self.extensions]
        return "".join(f"{line}\n" for line in lines).encode("utf-8")

    @classmethod
    def from_body(cls, text: str | bytes) -> Checkpoint:
        """Parse a checkpoint note text strictly; raises MalformedFileError."""
        body = _as_text(text)
        _check_note_chars(body, "checkpoint")
        if not body.endswith("\n"):
            raise MalformedFileError("checkpoint text does not end with a newline")
        lines = body[:-1].split("\n")
        if len(lines) < 3:
            raise MalformedFileError(
                f"checkpoint has {len(lines)} lines; it needs origin, tree size and root hash",
                hint="see https://c2sp.org/tlog-checkpoint",
            )
        if any(not line for line in lines):
            raise MalformedFileError("checkpoint lines must not be empty")
        origin, size_text, root_text, *extensions = lines
        if not _SIZE_RE.fullmatch(size_text):
            raise MalformedFileError(
                f"checkpoint tree size {size_text[:40]!r} is not a decimal number "
                "without leading zeros"
            )
        size = int(size_text)
        if size >= _MAX_TREE_SIZE:
            raise MalformedFileError(f"checkpoint tree size {size} does not fit in 64 bits")
        root_hash = _strict_b64decode(root_text, "checkpoint root hash")
        if len(root_hash) != _HASH_SIZE:
            raise MalformedFileError(
                f"checkpoint root hash is {len(root_hash)} bytes, expected {_HASH_SIZE}"
            )
        return cls(origin, size, root_hash, tuple(extensions))


def _check_line(value: object, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise BadInputError(f"{what} must be a non-empty string")
    if any(ch < " " for ch in value):
        raise BadInputError(f"{what} {value!r} contains a newline or control character")


def sign_checkpoint(
    checkpoint: Checkpoint, signer: CheckpointSigner, *cosigners: CheckpointSigner
) -> str:
    """The signed note text of ``checkpoint``."""
    return sign_note(checkpoint.body().decode("utf-8"), signer, *cosigners)


def parse_signed_checkpoint(
    text: str | bytes,
) -> tuple[Checkpoint, tuple[NoteSignature, ...]]:
    """Parse a signed checkpoint strictly WITHOUT verifying it (MalformedFileError if malformed)."""
    body, signatures = parse_signed_note(text)
    return Checkpoint.from_body(body), signatures


def verify_checkpoint(
    text: str | bytes, verifier: CheckpointVerifier, *, origin: str | None = None
) -> Checkpoint:
    """The checkpoint in ``text`` if it has a valid signature by ``verifier``.

    Raises MalformedFileError (unparseable), SignatureError (no valid signature by this key, or
    an invalid one claiming to be by it) or LedgerIntegrityError (``origin`` given and different).
    """
    # Parse strictly first so a malformed note is reported as such; the parsed values are only
    # returned once the signature over the exact text has verified.
    checkpoint, _ = parse_signed_checkpoint(text)
    verify_note(text, verifier)
    if origin is not None and checkpoint.origin != origin:
        raise LedgerIntegrityError(
            f"checkpoint is for log {checkpoint.origin!r}, expected {origin!r}",
            hint="a checkpoint of another log proves nothing about this one",
        )
    return checkpoint


# --- checkpoint files (several signed checkpoints, e.g. for witnessing) ---------------------------


def format_checkpoint_file(notes: Iterable[str]) -> str:
    """Serialise signed checkpoints for a checkpoint (witness) file: each note + a blank line.

    Because every note carries its own terminating blank line, appending the output for one
    note to an existing file keeps the file valid.
    """
    notes = list(notes)
    for i, note in enumerate(notes):
        try:
            parse_signed_checkpoint(note)
        except MalformedFileError as exc:
            raise BadInputError(f"checkpoint #{i} is malformed: {exc.message}") from None
    return "".join(note + "\n" for note in notes)


def parse_checkpoint_file(text: str | bytes) -> list[str]:
    """Split a checkpoint file into its signed checkpoint notes (parsed strictly, not verified).

    Notes are separated by one blank line (what :func:`format_checkpoint_file` writes); notes
    simply concatenated (``cat a b``) are accepted too. Both are unambiguous because a
    checkpoint's text has no empty lines: after a note's signature lines, a blank line or a line
    that is not a signature line starts the next note. An empty file or any malformed note raises
    MalformedFileError, so a caller never silently checks fewer checkpoints than the file holds.
    """
    content = _as_text(text)
    if not content.strip("\n"):
        raise MalformedFileError(
            "checkpoint file holds no checkpoints",
            hint="a checkpoint file holds signed checkpoints separated by blank lines",
        )
    notes: list[str] = []
    current: list[str] = []
    in_signatures = False
    has_signature = False
    for lineno, line in enumerate(content.splitlines(keepends=True), start=1):
        if not line.endswith("\n"):
            raise MalformedFileError(f"checkpoint file line {lineno} is truncated (no newline)")
        if in_signatures:
            if line.startswith(_SIG_PREFIX):
                current.append(line)
                has_signature = True
                continue
            if not has_signature:
                raise MalformedFileError(
                    f"checkpoint file line {lineno}: expected a signature line, got {line[:80]!r}"
                )
            notes.append("".join(current))
            current, in_signatures, has_signature = [], False, False
            if line == "\n":
                continue
        if line == "\n":
            if not current:
                raise MalformedFileError(f"unexpected blank line {lineno} in checkpoint file")
            in_signatures = True
        current.append(line)
    if current:
        if not has_signature:
            raise MalformedFileError("checkpoint file ends inside an unsigned checkpoint")
        notes.append("".join(current))
    for i, note in enumerate(notes):
        try:
            parse_signed_checkpoint(note)
        except MalformedFileError as exc:
            raise MalformedFileError(
                f"checkpoint #{i} in the file is malformed: {exc.message}", hint=exc.hint
            ) from None
    return notes
