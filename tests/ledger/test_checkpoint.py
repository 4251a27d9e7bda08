"""Signed checkpoints: golden bytes, Go sumdb/note interoperability, tampering and parsing."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from chainproof.errors import (
    BadInputError,
    LedgerIntegrityError,
    MalformedFileError,
    SignatureError,
    VerificationError,
)
from chainproof.ledger import checkpoint as c
from chainproof.ledger import merkle

# --- fixed key: the format must not drift silently ------------------------------------------------

FIXED_NAME = "chainproof.test/log"
FIXED_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
FIXED_VKEY = "chainproof.test/log+9b829834+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"
FIXED_CHECKPOINT = c.Checkpoint(FIXED_NAME, 42, hashlib.sha256(b"chainproof").digest())
FIXED_NOTE = (
    "chainproof.test/log\n"
    "42\n"
    "yckcqpCpvi4XQz7QGdWUFwtY+miGqED8I6ThymOCZO0=\n"
    "\n"
    "\u2014 chainproof.test/log m4KYNAB7oqq2jU+uK+JQtFlOTeQ1IsGEgP8T7J9+m4YcuAC5cI/8s4DNXTwDV4BH"
    "sXVS74FXroFPNhAzcUiuG0oIfw4=\n"
)

# --- golang.org/x/mod/sumdb/note test vectors (note_test.go) --------------------------------------

GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_PETER_SIG = (
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngot"
    "pRZb6KE6RyyBwJnAM=\n"
)
GO_ENOCH_SIG = (
    "\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTG"
    "wnWLox33WWd1RvMc+QQ=\n"
)


@pytest.fixture
def signer() -> c.CheckpointSigner:
    return c.CheckpointSigner("example.com/log", c.generate_private_key())


@pytest.fixture
def other_signer() -> c.CheckpointSigner:
    return c.CheckpointSigner("example.com/log", c.generate_private_key())


def _checkpoint(size: int = 7) -> c.Checkpoint:
    leaves = [merkle.leaf_hash(bytes([i])) for i in range(size)]
    return c.Checkpoint("example.com/log", size, merkle.root(leaves))


# --- golden bytes and interoperability ------------------------------------------------------------


def test_golden_checkpoint_bytes() -> None:
    signer = c.CheckpointSigner(FIXED_NAME, FIXED_KEY)
    assert signer.vkey == FIXED_VKEY
    assert c.sign_checkpoint(FIXED_CHECKPOINT, signer) == FIXED_NOTE
    verifier = c.CheckpointVerifier.from_vkey(FIXED_VKEY)
    assert c.verify_checkpoint(FIXED_NOTE, verifier, origin=FIXED_NAME) == FIXED_CHECKPOINT
    # The key ID is the documented SHA-256(name || 0x0A || 0x01 || pubkey)[:4].
    pub = base64.b64decode(FIXED_VKEY.split("+", 2)[2])[1:]
    assert signer.key_id == hashlib.sha256(FIXED_NAME.encode() + b"\n\x01" + pub).digest()[:4]


def test_go_sumdb_note_signature_is_reproduced_byte_for_byte() -> None:
    signer = c.CheckpointSigner.from_note_skey(GO_SKEY)
    assert signer.vkey == GO_PETER_VKEY
    assert c.sign_note(GO_TEXT, signer) == GO_TEXT + "\n" + GO_PETER_SIG


def test_go_sumdb_note_open_cases() -> None:
    peter = c.CheckpointVerifier.from_vkey(GO_PETER_VKEY)
    enoch = c.CheckpointVerifier.from_vkey(GO_ENOCH_VKEY)
    both = GO_TEXT + "\n" + GO_PETER_SIG + GO_ENOCH_SIG
    assert c.verify_note(both, peter) == GO_TEXT
    assert c.verify_note(both, enoch) == GO_TEXT
    _, sigs = c.parse_signed_note(both)
    assert [(s.name, s.key_id.hex()) for s in sigs] == [
        ("PeterNeumann", "c74f20a3"),
        ("EnochRoot", "af0cfe78"),
    ]
    # An unknown signer is ignored, a known one must verify; a note only by others fails.
    with pytest.raises(SignatureError, match="not signed by key EnochRoot"):
        c.verify_note(GO_TEXT + "\n" + GO_PETER_SIG, enoch)
    corrupted = GO_TEXT + "\n" + GO_PETER_SIG[:60] + "ABCD" + GO_PETER_SIG[60:]
    with pytest.raises(SignatureError, match=r"PeterNeumann\+c74f20a3 is 67 bytes"):
        c.verify_note(corrupted, peter)
    # Malformed messages from Go's TestOpen.
    bad_messages = [
        GO_TEXT,
        GO_TEXT + "\n",
        GO_TEXT + "\n" + GO_PETER_SIG[:-1],
        "\x01" + GO_TEXT + "\n" + GO_PETER_SIG,
        GO_TEXT + "\n" + "\u2014 Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFY"
        "C2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
        GO_TEXT + "\n" + GO_PETER_SIG + "Unexpected line.\n",
        GO_TEXT + "\n" + GO_PETER_SIG * (c.MAX_SIGNATURES + 1),
    ]
    for message in bad_messages:
        with pytest.raises(MalformedFileError):
            c.verify_note(message, peter)
    with pytest.raises(MalformedFileError, match="UTF-8"):
        c.verify_note(b"\xff" + (GO_TEXT + "\n" + GO_PETER_SIG).encode(), peter)


def test_go_vkey_manglings_are_rejected() -> None:
    """Port of Go's TestNewVerifier: every substring and every single-byte change fails."""
    c.CheckpointVerifier.from_vkey(GO_PETER_VKEY)
    b = GO_PETER_VKEY
    for i in range(len(b) + 1):
        for j in range(i + 1, len(b) + 1):
            if i != 0 or j != len(b):
                with pytest.raises(MalformedFileError):
                    c.CheckpointVerifier.from_vkey(b[i:j])
    for i in range(len(b)):
        mangled = b[:i] + chr(ord(b[i]) + 1) + b[i + 1 :]
        with pytest.raises(MalformedFileError):
            c.CheckpointVerifier.from_vkey(mangled)
    with pytest.raises(MalformedFileError):  # wrong key length, with adjusted key hash
        c.CheckpointVerifier.from_vkey(
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
        )
    with pytest.raises(MalformedFileError):  # unknown algorithm, with adjusted key hash
        c.CheckpointVerifier.from_vkey(
            "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
        )


def test_c2sp_spec_example_parses() -> None:
    example = (
        "example.com/behind-the-sofa\n"
        "20852163\n"
        "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
        "\n"
        "\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u"
        "5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    )
    cp, sigs = c.parse_signed_checkpoint(example)
    assert cp.origin == "example.com/behind-the-sofa"
    assert cp.size == 20852163
    assert len(sigs) == 1 and sigs[0].name == cp.origin
    assert len(sigs[0].signature) == 64


# --- round trip and tampering ---------------------------------------------------------------------


def test_round_trip_with_extensions(signer: c.CheckpointSigner) -> None:
    cp = c.Checkpoint("example.com/log", 0, merkle.EMPTY_ROOT, ("ext one", "— looks like a sig"))
    note = c.sign_checkpoint(cp, signer)
    assert c.verify_checkpoint(note, signer.verifier) == cp
    parsed, sigs = c.parse_signed_checkpoint(note)
    assert parsed == cp and len(sigs) == 1
    assert c.Checkpoint.from_body(cp.body()) == cp
    # A root read back from a database may be a memoryview; it is normalised to bytes.
    from_db = c.Checkpoint("example.com/log", 0, memoryview(merkle.EMPTY_ROOT))  # type: ignore[arg-type]
    assert from_db.root_hash == merkle.EMPTY_ROOT and isinstance(from_db.root_hash, bytes)


def _replace_line(note: str, index: int, value: str) -> str:
    lines = note.split("\n")
    lines[index] = value
    return "\n".join(lines)


def test_tampered_fields_fail(signer: c.CheckpointSigner) -> None:
    cp = _checkpoint(7)
    note = c.sign_checkpoint(cp, signer)
    other_root = base64.b64encode(merkle.root([merkle.leaf_hash(b"x")])).decode()
    tampered = [
        _replace_line(note, 0, "example.com/other-log"),
        _replace_line(note, 1, "8"),
        _replace_line(note, 1, "6"),
        _replace_line(note, 2, other_root),
        note.replace("\n\n", "\nextension\n\n", 1),
    ]
    for text in tampered:
        with pytest.raises(SignatureError, match="invalid signature"):
            c.verify_checkpoint(text, signer.verifier)


def test_every_single_bit_flip_of_the_body_is_detected(signer: c.CheckpointSigner) -> None:
    note = c.sign_checkpoint(_checkpoint(3), signer).encode()
    body_len = len(_checkpoint(3).body())
    for offset in range(body_len):
        for bit in range(8):
            mutated = bytearray(note)
            mutated[offset] ^= 1 << bit
            with pytest.raises((VerificationError, MalformedFileError)):
                c.verify_checkpoint(bytes(mutated), signer.verifier)


def test_signature_by_another_key_is_not_enough(
    signer: c.CheckpointSigner, other_signer: c.CheckpointSigner
) -> None:
    note = c.sign_checkpoint(_checkpoint(), other_signer)
    with pytest.raises(SignatureError, match="not signed by key"):
        c.verify_checkpoint(note, signer.verifier)
    # Same name, forged line claiming the right key ID but made with another key.
    forged_sig = c.NoteSignature(signer.name, signer.key_id, other_signer.sign(b"x").signature)
    body = _checkpoint().body().decode()
    forged = body + "\n" + forged_sig.line()
    with pytest.raises(SignatureError, match="invalid signature"):
        c.verify_checkpoint(forged, signer.verifier)
    # Another key's signature with our key ID copied in: still rejected.
    real = other_signer.sign(body.encode())
    relabelled = body + "\n" + c.NoteSignature(signer.name, signer.key_id, real.signature).line()
    with pytest.raises(SignatureError):
        c.verify_checkpoint(relabelled, signer.verifier)


def test_wrong_key_name_is_another_key(signer: c.CheckpointSigner) -> None:
    note = c.sign_checkpoint(_checkpoint(), signer)
    renamed = c.CheckpointVerifier("example.com/renamed", signer.public_key)
    with pytest.raises(SignatureError, match="not signed by key"):
        c.verify_checkpoint(note, renamed)
    # Renaming the signature line breaks the key ID match too.
    relabelled = note.replace("\u2014 example.com/log ", "\u2014 example.com/renamed ")
    with pytest.raises(SignatureError):
        c.verify_checkpoint(relabelled, renamed)


def test_unknown_signers_are_ignored_and_cosigning_works(
    signer: c.CheckpointSigner, other_signer: c.CheckpointSigner
) -> None:
    witness = c.CheckpointSigner("witness.example/w1", c.generate_private_key())
    cp = _checkpoint()
    note = c.sign_checkpoint(cp, other_signer, signer)
    assert c.verify_checkpoint(note, signer.verifier) == cp
    cosigned = c.add_signature(note, witness)
    assert c.verify_checkpoint(cosigned, witness.verifier) == cp
    assert c.verify_checkpoint(cosigned, signer.verifier) == cp
    # Re-cosigning replaces rather than duplicates.
    assert len(c.parse_signed_note(c.add_signature(cosigned, witness))[1]) == 3


def test_any_bad_signature_by_the_trusted_key_rejects_the_note(signer: c.CheckpointSigner) -> None:
    note = c.sign_checkpoint(_checkpoint(), signer)
    body, (good,) = c.parse_signed_note(note)
    bad = c.NoteSignature(good.name, good.key_id, bytes(64))
    with pytest.raises(SignatureError, match="invalid signature"):
        c.verify_checkpoint(body + "\n" + good.line() + bad.line(), signer.verifier)


def test_origin_pinning(signer: c.CheckpointSigner) -> None:
    note = c.sign_checkpoint(_checkpoint(), signer)
    with pytest.raises(LedgerIntegrityError, match=r"expected 'example\.com/other'"):
        c.verify_checkpoint(note, signer.verifier, origin="example.com/other")


# --- strict parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda n: n.replace("\n\n", "\n", 1), "blank line"),
        (lambda n: n[:-1], "newline"),
        (lambda n: n.replace("\u2014", "-"), "em dash"),
        (lambda n: n.replace("\n", "\r\n"), "control character"),
        (lambda n: n + "trailing garbage\n", "em dash"),
        (lambda n: _replace_line(n, 1, "042"), "leading zeros"),
        (lambda n: _replace_line(n, 1, "+42"), "decimal"),
        (lambda n: _replace_line(n, 1, "\u0664\u0662"), "decimal"),
        (lambda n: _replace_line(n, 1, "18446744073709551616"), "64 bits"),
        (lambda n: _replace_line(n, 2, "not base64!"), "base64"),
        (lambda n: _replace_line(n, 2, base64.b64encode(bytes(31)).decode()), "31 bytes"),
        (lambda n: _replace_line(n, 1, ""), "empty"),
        (lambda n: "\n".join(n.split("\n")[:2] + n.split("\n")[3:]), "lines"),
        (lambda n: n.rsplit(" ", 1)[0] + " %%%%\n", "base64"),
        (lambda n: n.rsplit(" ", 1)[0] + " QUJD\n", "shorter than 5"),
        (lambda n: n.rsplit(" ", 1)[0] + "\n", "no signature"),
        (lambda n: n.replace("— example.com/log", "— example.com/l+og"), "key name"),
    ],
)
def test_malformed_checkpoints(signer: c.CheckpointSigner, mutate: object, reason: str) -> None:
    note = c.sign_checkpoint(_checkpoint(), signer)
    assert callable(mutate)
    with pytest.raises(MalformedFileError, match=reason):
        c.parse_signed_checkpoint(mutate(note))
    with pytest.raises(MalformedFileError):
        c.verify_checkpoint(mutate(note), signer.verifier)


def test_non_canonical_base64_is_rejected(signer: c.CheckpointSigner) -> None:
    note = c.sign_checkpoint(_checkpoint(), signer)
    root_line = note.split("\n")[2]
    # Change the last significant char so the padding bits become non-zero: same bytes, new text.
    alt = root_line[:-2] + chr(ord(root_line[-2]) + 1) + "="
    assert base64.b64decode(alt) == base64.b64decode(root_line)
    with pytest.raises(MalformedFileError, match="canonical"):
        c.parse_signed_checkpoint(_replace_line(note, 2, alt))


def test_checkpoint_constructor_validates() -> None:
    root = merkle.EMPTY_ROOT
    bad = [
        lambda: c.Checkpoint("", 0, root),
        lambda: c.Checkpoint("a\nb", 0, root),
        lambda: c.Checkpoint("log", -1, root),
        lambda: c.Checkpoint("log", True, root),
        lambda: c.Checkpoint("log", 1 << 64, root),
        lambda: c.Checkpoint("log", 0, root.hex().encode()),
        lambda: c.Checkpoint("log", 0, root, ("",)),
        lambda: c.Checkpoint("log", 0, root, ["list"]),  # type: ignore[arg-type]
        lambda: c.CheckpointSigner("bad name", c.generate_private_key()),
        lambda: c.CheckpointSigner("a+b", c.generate_private_key()),
        lambda: c.sign_note("no newline", c.CheckpointSigner("n", c.generate_private_key())),
    ]
    for make in bad:
        with pytest.raises(BadInputError):
            make()


# --- keys -----------------------------------------------------------------------------------------


def test_key_serialisation_round_trips() -> None:
    key = c.generate_private_key()
    pem = c.private_key_to_pem(key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    signer = c.CheckpointSigner.from_pem("example.com/log", pem)
    encrypted = c.private_key_to_pem(key, b"pw")
    assert b"ENCRYPTED" in encrypted
    assert c.CheckpointSigner.from_pem("example.com/log", encrypted, b"pw").vkey == signer.vkey
    with pytest.raises(MalformedFileError):
        c.private_key_from_pem(encrypted, b"wrong")
    with pytest.raises(MalformedFileError):
        c.private_key_from_pem(encrypted)
    with pytest.raises(MalformedFileError):
        c.private_key_from_pem(b"garbage")
    public_pem = c.public_key_to_pem(key.public_key())
    verifier = c.CheckpointVerifier.from_pem("example.com/log", public_pem)
    assert verifier.vkey == signer.vkey
    assert c.CheckpointVerifier.from_vkey(signer.vkey).key_id == signer.key_id
    assert "PRIVATE" not in repr(signer)


def test_non_ed25519_keys_are_refused() -> None:
    from cryptography.hazmat.primitives import serialization

    ec_key = generate_private_key(SECP256R1())
    pem = ec_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(MalformedFileError, match="not an Ed25519"):
        c.private_key_from_pem(pem)
    pub = ec_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(MalformedFileError, match="not an Ed25519"):
        c.public_key_from_pem(pub)


# --- checkpoint files -----------------------------------------------------------------------------


def test_checkpoint_file_round_trip(
    signer: c.CheckpointSigner, other_signer: c.CheckpointSigner
) -> None:
    notes = [
        c.sign_checkpoint(_checkpoint(3), signer),
        c.sign_checkpoint(_checkpoint(5), signer, other_signer),
        c.sign_checkpoint(_checkpoint(8), other_signer),
    ]
    text = c.format_checkpoint_file(notes)
    assert c.parse_checkpoint_file(text) == notes
    assert c.parse_checkpoint_file(text.rstrip("\n") + "\n") == notes  # no final blank line
    assert c.parse_checkpoint_file("".join(notes)) == notes  # plain `cat a b c`
    # Appending one formatted note at a time (a witness log) gives the same file.
    assert "".join(c.format_checkpoint_file([n]) for n in notes) == text
    parsed = c.parse_checkpoint_file(text)[:2]
    assert [c.verify_checkpoint(n, signer.verifier).size for n in parsed] == [3, 5]


@pytest.mark.parametrize(
    "damage",
    [
        lambda t: "",
        lambda t: "\n\n",
        lambda t: "\n" + t,
        lambda t: t.replace("\n\n\u2014", "\n\n\n\u2014", 1),
        lambda t: t[:-2],  # last signature line loses its newline
        lambda t: t + "example.com/log\n3\n",
        lambda t: t.replace("\n\nexample.com", "\n\n\nexample.com", 1),
        lambda t: t.replace("\n\nexample.com", "\nexample.com\n", 1),
    ],
)
def test_checkpoint_file_damage_is_malformed(signer: c.CheckpointSigner, damage: object) -> None:
    text = c.format_checkpoint_file(
        [c.sign_checkpoint(_checkpoint(3), signer), c.sign_checkpoint(_checkpoint(4), signer)]
    )
    assert callable(damage)
    with pytest.raises(MalformedFileError):
        c.parse_checkpoint_file(damage(text))
