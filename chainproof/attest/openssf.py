"""OpenSSF Model Signing (sigstore/model-transparency ``model_signing`` 1.x) interop.

A model signature is a Sigstore bundle v0.3 holding a DSSE envelope whose payload is an in-toto
Statement v1 with predicate ``https://model_signing/signature/v1.0``: ``resources`` lists every
file (relative POSIX name, algorithm, hex digest) and the single subject's sha256 is the root
digest, SHA-256 over the raw resource digests in list order.

We write and read the bundle ourselves instead of driving ``model_signing``: it is a dev-only
dependency, its verifier checks only ``signatures[0]``, and we want precise, typed errors. What we
do beyond it, on purpose:

- every signature in the envelope is checked and a threshold of distinct trusted keys applies;
- zero-byte files are always bound (our ``files`` serialization hashes them; for ``shards``
  bundles, where model_signing drops them, a zero-byte file on disk is refused as unbound);
- resource names are never split on ':' for ``files`` bundles, so such names are fine;
- bundle JSON with duplicate keys is refused (parser-differential protection).

Certificate bundles: :func:`verify_model_certificate` validates the chain up to a caller-given
trust anchor with ``cryptography.x509.verification`` (RFC 5280 path validation at the leaf's
notBefore, including pathLenConstraint and keyCertSign) and the OpenSSF end-entity rules
(extendedKeyUsage codeSigning, optionally the leaf's identity), then verifies the envelope with
the leaf's key. No revocation or transparency-log checks (neither does model_signing for
certificates).

Refusals (the OpenSSF model signing spec v1.0, "OMS", github.com/ossf/model-signing-spec
spec/v1.0.md, and the reference verifier, sigstore/model-transparency src/model_signing; each
check cites its rule where it is made):

- an empty model, at sign and at verify (OMS 5.2.1, 6.1: "an empty model MUST be rejected");
- a DSSE payloadType other than in-toto JSON (OMS 6.7; reference ``Verifier.verify``), a
  ``_type`` other than Statement v1 and a ``predicateType`` other than v1.0 (OMS 8.3; reference
  ``dsse_payload_to_manifest``), a subject count other than one and a root digest that does not
  match the resources (OMS 6.5; reference "Manifest is inconsistent");
- serialization parameters outside the schema (OMS 5.2.2, predicate.schema.json): unknown
  method or hash type, ``allow_symlinks`` missing or not a boolean, ``shard_size`` missing,
  non-integer or non-positive for shards and present for files, ignore paths that are not
  relative literal paths (OMS 6.2.1: no glob characters, leading ``/`` or ``..``);
- resources whose algorithm differs from ``hash_type`` (OMS 6.3), whose digest has the wrong
  length for it, whose name is not a canonical relative path (OMS 6.1.2: absolute, ``..``,
  ``.`` or empty components, trailing ``/``), duplicated names (reference manifest.py: "two
  items in the same manifest must not share the same key"; model_signing keeps the last one,
  other readers the first: a parser differential) and malformed shard names (OMS 6.3.2);
- files missing on disk or present but unsigned (OMS 8.4 steps 8-9, 8.5), symbolic links when
  the signature says ``allow_symlinks: false`` (OMS 6.1.1), special files and non-UTF-8 names
  (OMS 6.1, 6.1.2 rule 7; chainproof.digest refuses them);
- for certificate verification, a bundle whose material is the Sigstore keyless ``certificate``
  field instead of an ``x509CertificateChain`` (OMS 11.1: "MUST match field to method"; keyless
  bundles need transparency-log verification, which chainproof does not do).

Not refused on purpose: resources out of code-point order (OMS 5.2.1 says producers sort them,
but model_signing sorts by path components and shard offsets, not code points, so the rule read
literally would reject its real bundles; the root digest is recomputed over the list as
signed), unknown extra predicate fields (the reference says v1.0 verifiers ignore them).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from chainproof.attest import dsse
from chainproof.attest._x509 import verify_signing_chain
from chainproof.attest.keys import PublicKey, Signer, Verifier, hash_for_curve, key_id
from chainproof.attest.statement import MODEL_SIGNING_V1, Statement, Subject, loads_strict
from chainproof.errors import (
    BadInputError,
    ChainproofError,
    MalformedFileError,
    SignatureError,
    UnsafePathError,
)

__all__ = [
    "BUNDLE_MEDIA_TYPE",
    "DEFAULT_IGNORE_PATHS",
    "LEGACY_PREDICATE_TYPE",
    "ModelResource",
    "VerifiedModel",
    "read_bundle_certificates",
    "sign_model",
    "verify_model",
    "verify_model_certificate",
]

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
# Both spellings name bundle v0.3 in the Sigstore spec; model_signing writes the first.
_ACCEPTED_MEDIA_TYPES = frozenset(
    {BUNDLE_MEDIA_TYPE, "application/vnd.dev.sigstore.bundle+json;version=0.3"}
)
LEGACY_PREDICATE_TYPE = "https://model_signing/Digests/v0.1"
# model_signing ignores these by default when signing AND always when verifying.
DEFAULT_IGNORE_PATHS: tuple[str, ...] = (".git", ".gitattributes", ".github", ".gitignore")
_MAX_BUNDLE_BYTES = 64 * 1024 * 1024
_HASH_HEX_LEN = {"sha256": 64, "blake3": 64}
# OMS algorithm-registry.md: identifiers a bundle may name (blake2b is OPTIONAL and unsupported
# here, so it gets a precise "unsupported" refusal rather than "unknown").
_REGISTRY_HASHES = frozenset({"sha256", "blake2b", "blake3"})
# OMS 6.2.1: ignore path entries MUST NOT contain glob characters.
_GLOB_CHARS = frozenset("*?[")
_SHARD_NAME_RE = re.compile(r"^(.+):(0|[1-9][0-9]*):(0|[1-9][0-9]*)$")
_SHARD_ALG_RE = re.compile(r"^sha256-sharded-([1-9][0-9]*)$")


@dataclass(frozen=True)
class ModelResource:
    name: str
    algorithm: str
    digest: str

    def to_dict(self) -> dict[str, str]:
        # Key order as model_signing writes it (name, algorithm, digest); JSON readers ignore it.
        return {"name": self.name, "algorithm": self.algorithm, "digest": self.digest}


@dataclass(frozen=True)
class VerifiedModel:
    """What a successful :func:`verify_model` vouches for."""

    model_name: str
    root_digest: str
    resources: tuple[ModelResource, ...]
    serialization: Mapping[str, Any]
    signer_key_ids: tuple[str, ...]
    predicate_type: str

    @property
    def legacy_format(self) -> bool:
        return self.predicate_type == LEGACY_PREDICATE_TYPE


# --- hashing ------------------------------------------------------------------------------------


def _root_digest(resources: Iterable[ModelResource]) -> str:
    hasher = hashlib.sha256()
    for r in resources:
        hasher.update(bytes.fromhex(r.digest))
    return hasher.hexdigest()


def _model_resources(
    model_dir: Path, ignore_paths: Iterable[str], algorithm: str = "sha256"
) -> list[ModelResource]:
    """Resources of ``model_dir`` exactly as model_signing's "files" serialization lists them.

    A single file is one resource named ".". Hashing (parallel, symlink- and special-file-safe)
    is chainproof.digest's; this is the one place that adapts it to model_signing.
    """
    from chainproof.digest import digest_path

    result = digest_path(model_dir, algorithm, ignore=sorted(set(ignore_paths)), progress=False)
    if result.manifest is None:
        return [ModelResource(".", algorithm, result.digest)]
    return [
        ModelResource(r["name"], r["algorithm"], r["digest"])
        for r in result.manifest.to_model_signing_resources()
    ]


def _shard_resources(model_dir: Path, ignore_paths: Iterable[str], shard_size: int) -> list[
    ModelResource
]:
    from chainproof.digest import model_signing_shard_resources

    return [
        ModelResource(r["name"], r["algorithm"], r["digest"])
        for r in model_signing_shard_resources(
            model_dir, shard_size=shard_size, ignore=sorted(set(ignore_paths)), progress=False
        )
    ]


def _relative_ignores(model_dir: Path, paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Ignore entries relative to ``model_dir``; absolute paths outside it are dropped (as the
    model_signing CLI does), relative ones are taken as relative to the model."""
    out: list[str] = []
    root = os.path.realpath(model_dir)
    for raw in paths:
        p = os.fspath(raw)
        if os.path.isabs(p):
            rel = os.path.relpath(os.path.realpath(p), root)
            if rel == ".." or rel.startswith("../") or rel == ".":
                continue
            p = rel
        p = PurePosixPath(p).as_posix()
        if p in (".", ""):
            continue
        if p.startswith("../") or p == ".." or "/../" in p:
            raise UnsafePathError(
                f"ignore path {raw!r} escapes the model directory",
                hint="ignore paths are relative to the model directory",
            )
        out.append(p)
    return out


def _signature_ignore(model_dir: Path, signature_path: Path) -> list[str]:
    if not model_dir.is_dir():
        return []
    return _relative_ignores(model_dir, [os.path.abspath(signature_path)])


def _check_no_symlinks(model_dir: Path, ignores: Sequence[str]) -> None:
    # model_signing refuses symlinks unless the signature says allow_symlinks; chainproof.digest
    # follows in-tree links, so enforce the signed setting here.
    if model_dir.is_symlink():
        raise UnsafePathError(
            f"model path {model_dir} is a symbolic link",
            hint="pass the real path; the signature does not allow symlinks",
        )
    if not model_dir.is_dir():
        return
    ignore_set = set(ignores)
    for dirpath, dirnames, filenames in os.walk(model_dir):
        rel_dir = os.path.relpath(dirpath, model_dir)
        for name in list(dirnames) + filenames:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            parts = rel.split("/")
            if any("/".join(parts[:i]) in ignore_set for i in range(1, len(parts) + 1)):
                if name in dirnames:
                    dirnames.remove(name)
                continue
            if os.path.islink(os.path.join(dirpath, name)):
                raise UnsafePathError(
                    f"{rel} in {model_dir} is a symbolic link, and the signature was made with "
                    "allow_symlinks=false",
                    hint="replace the link with the file it points to, or ignore it",
                )


# --- signing ------------------------------------------------------------------------------------


def _pem_hint(public_key: PublicKey) -> str:
    # model_signing's key hint is the SHA-256 of the *PEM* SubjectPublicKeyInfo (not the DER).
    pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(pem).hexdigest()


def sign_model(
    model_dir: Path,
    private_key: ec.EllipticCurvePrivateKey,
    signature_path: Path,
    *,
    ignore_paths: Iterable[str | os.PathLike[str]] = (),
    ignore_git_paths: bool = True,
    co_signers: Sequence[ec.EllipticCurvePrivateKey] = (),
    hash_type: str = "sha256",
) -> Statement:
    """Sign ``model_dir`` (a directory or one file) into an OpenSSF model signature bundle.

    The bundle is what ``model_signing sign key`` writes: files serialization, sha256, the key
    hint in ``verificationMaterial.publicKey``, no tlog entries. ``co_signers`` add signatures
    by further keys over the same envelope (``model_signing`` checks only the first; chainproof
    checks all against a threshold). The signature file is ignored if it lies inside the model.
    ``hash_type`` "blake3" (model_signing >= 1.1 verifies it) hashes several times faster than
    the default "sha256", which every model_signing 1.x release reads. Returns the statement.
    """
    if hash_type not in _HASH_HEX_LEN:
        raise BadInputError(
            f"unsupported hash type {hash_type!r}", hint=f"use one of {sorted(_HASH_HEX_LEN)}"
        )
    model_dir = Path(model_dir)
    signature_path = Path(signature_path)
    if not model_dir.exists():
        raise BadInputError(f"model path {model_dir} does not exist", hint="check the path")
    keys = [private_key, *co_signers]
    for k in keys:
        if not isinstance(k, ec.EllipticCurvePrivateKey):
            raise BadInputError(
                f"unsupported signing key type {type(k).__name__}",
                hint="model signatures use ECDSA keys (P-256, P-384 or P-521)",
            )
        hash_for_curve(k.curve)
    ignores: list[str] = []
    if model_dir.is_dir():
        ignores = _relative_ignores(model_dir, ignore_paths)
        ignores += _signature_ignore(model_dir, signature_path)
        if ignore_git_paths:
            ignores += list(DEFAULT_IGNORE_PATHS)
    ignores = sorted(set(ignores))
    for entry in ignores:
        # OMS 6.2.1: recorded ignore paths are literal; our verifier (and the spec's) refuses
        # glob characters in them, so never write a bundle it would refuse.
        if _GLOB_CHARS & set(entry):
            raise BadInputError(
                f"ignore path {entry!r} contains a glob character (*, ? or [)",
                hint="OMS 6.2.1: ignore paths are literal; rename the file or the signature",
            )
    _check_no_symlinks(model_dir, ignores)
    resources = _model_resources(model_dir, ignores, hash_type)
    if not resources:
        raise BadInputError(
            f"model {model_dir} has no files to sign (it is empty, or every file is ignored)",
            hint="a signature over no file vouches for nothing (OpenSSF model signing: an empty "
            "model MUST be rejected); check the path and the ignore paths",
        )
    serialization_args: dict[str, Any] = {
        "method": "files",
        "hash_type": hash_type,
        "allow_symlinks": False,
    }
    if ignores:
        serialization_args["ignore_paths"] = ignores
    model_name = model_dir.name or os.path.basename(os.path.realpath(model_dir))
    statement = Statement(
        (Subject(model_name, {"sha256": _root_digest(resources)}),),
        MODEL_SIGNING_V1,
        {"serialization": serialization_args, "resources": [r.to_dict() for r in resources]},
    )
    signers = [Signer(k, key_id(k.public_key())) for k in keys]
    envelope = dsse.sign_envelope(
        statement.to_json_bytes(), dsse.IN_TOTO_PAYLOAD_TYPE, signers
    )
    bundle = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {
            "publicKey": {"hint": _pem_hint(private_key.public_key())},
            "tlogEntries": [],
        },
        "dsseEnvelope": envelope.to_dict(),
    }
    data = json.dumps(bundle, separators=(",", ":")).encode("utf-8")
    tmp = signature_path.with_name(f".{signature_path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, signature_path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BadInputError(
            f"cannot write signature {signature_path}: {exc.strerror}",
            hint="check the directory exists and is writable",
        ) from None
    return statement


# --- reading bundles ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Bundle:
    envelope: dsse.Envelope
    key_hint: str | None
    certificates: tuple[bytes, ...]
    #: which verificationMaterial field carried the key: publicKey, x509CertificateChain or
    #: certificate (the Sigstore keyless form)
    material: str


def _read_bundle(signature_path: Path) -> _Bundle:
    where = f"signature bundle {signature_path}"
    try:
        st = os.stat(signature_path)
    except FileNotFoundError:
        raise BadInputError(f"{where} does not exist", hint="check --signature") from None
    if not stat.S_ISREG(st.st_mode):
        raise MalformedFileError(f"{where} is not a regular file", hint="pass the .sig file")
    if st.st_size > _MAX_BUNDLE_BYTES:
        raise MalformedFileError(
            f"{where} is {st.st_size} bytes, larger than any model signature should be",
            hint="this is not a model signature bundle",
        )
    raw = Path(signature_path).read_bytes()
    try:
        data = loads_strict(raw, what=where)
    except MalformedFileError as exc:
        raise MalformedFileError(
            f"{exc.message} (a truncated or corrupted bundle looks like this)",
            hint="re-download or re-create the signature",
        ) from None
    if not isinstance(data, dict):
        raise MalformedFileError(f"{where} is not a JSON object", hint="not a Sigstore bundle")
    media = data.get("mediaType")
    if media not in _ACCEPTED_MEDIA_TYPES:
        raise MalformedFileError(
            f"{where} has media type {media!r}",
            hint=f"expected a Sigstore bundle v0.3 ({BUNDLE_MEDIA_TYPE})",
        )
    vm = data.get("verificationMaterial")
    if not isinstance(vm, dict):
        raise MalformedFileError(
            f"{where} has no verificationMaterial object", hint="not a model signature bundle"
        )
    key_hint: str | None = None
    certs: list[bytes] = []
    material = "publicKey" if "publicKey" in vm else (
        "x509CertificateChain" if "x509CertificateChain" in vm else "certificate"
    )
    if "publicKey" in vm:
        pk = vm["publicKey"]
        if not isinstance(pk, dict):
            raise MalformedFileError(f"{where} publicKey is not an object", hint="corrupt bundle")
        hint = pk.get("hint")
        if hint is not None and not isinstance(hint, str):
            raise MalformedFileError(f"{where} publicKey.hint is not a string", hint="corrupt")
        key_hint = hint or None
    elif "x509CertificateChain" in vm or "certificate" in vm:
        chain = vm.get("x509CertificateChain")
        entries = chain.get("certificates") if isinstance(chain, dict) else None
        if entries is None and isinstance(vm.get("certificate"), dict):
            entries = [vm["certificate"]]
        if not isinstance(entries, list) or not entries:
            raise MalformedFileError(f"{where} has an empty certificate chain", hint="corrupt")
        for i, c in enumerate(entries):
            if not isinstance(c, dict) or not isinstance(c.get("rawBytes"), str):
                raise MalformedFileError(
                    f"{where} certificates[{i}] has no rawBytes", hint="corrupt bundle"
                )
            certs.append(dsse.b64decode_any(c["rawBytes"], what=f"{where} certificates[{i}]"))
    else:
        raise MalformedFileError(
            f"{where} has neither a publicKey nor a certificate in verificationMaterial",
            hint="only key- and certificate-signed model bundles are supported",
        )
    if "dsseEnvelope" not in data:
        raise MalformedFileError(
            f"{where} has no dsseEnvelope",
            hint="message-signature bundles are not model signatures",
        )
    envelope = dsse.Envelope.from_dict(data["dsseEnvelope"], where=f"{where} dsseEnvelope")
    return _Bundle(envelope, key_hint, tuple(certs), material)


def read_bundle_certificates(signature_path: Path) -> list[x509.Certificate]:
    """The certificate chain embedded in a certificate-signed bundle, leaf first.

    Raises :class:`MalformedFileError` for an unreadable bundle or certificate and
    :class:`SignatureError` for a Sigstore keyless bundle (its single ``certificate`` needs
    transparency-log verification; OMS 11.1: the field MUST match the signing method).
    """
    bundle = _read_bundle(Path(signature_path))
    if bundle.material == "certificate":
        raise SignatureError(
            f"model signature {signature_path} is a Sigstore keyless bundle (a single "
            "'certificate', not an 'x509CertificateChain')",
            hint="keyless signatures are verified with Sigstore (transparency log, identity, "
            "issuer), e.g. model_signing verify sigstore; chainproof verifies key and "
            "certificate-chain signatures",
        )
    out = []
    for i, der in enumerate(bundle.certificates):
        try:
            out.append(x509.load_der_x509_certificate(der))
        except ValueError as exc:
            raise MalformedFileError(
                f"certificate {i} in {signature_path} is not DER X.509 ({exc})",
                hint="corrupt bundle",
            ) from None
    return out


# --- signature checks ---------------------------------------------------------------------------


def _pae_legacy(payload: bytes) -> bytes:
    # model_signing 0.2.x formatted the payload's Python repr into the PAE string ("b'...'")
    # and spelled the prefix "DSSEV1"; model_signing 1.x still accepts those signatures.
    t = dsse.IN_TOTO_PAYLOAD_TYPE
    return f"DSSEV1 {len(t)} {t} {len(payload)} {payload!r}".encode()


def _verify_legacy(pub: PublicKey, sig: bytes, payload: bytes) -> bool:
    if not isinstance(pub, ec.EllipticCurvePublicKey):
        return False
    message = _pae_legacy(payload)
    # 0.2.x certificate signing also hard-coded SHA-256 whatever the curve.
    for algorithm in {hash_for_curve(pub.curve).name: hash_for_curve(pub.curve),
                      "sha256": hashes.SHA256()}.values():
        try:
            pub.verify(sig, message, ec.ECDSA(algorithm))
            return True
        except (InvalidSignature, ValueError):
            continue
    return False


def _check_signatures(
    bundle: _Bundle, trusted: Mapping[str, Verifier], threshold: int, where: str
) -> tuple[bytes, list[str]]:
    env = bundle.envelope
    try:
        payload = dsse.verify_envelope(
            env, trusted, threshold, payload_types=(dsse.IN_TOTO_PAYLOAD_TYPE,)
        )
        accepted = _accepted_ids(env, trusted)
        return payload, accepted
    except SignatureError as exc:
        primary = exc
    # Legacy pre-1.0 PAE, only when the modern one did not reach the threshold.
    accepted_set: set[str] = set()
    for sig in env.signatures:
        candidates = (
            [trusted[sig.keyid]] if sig.keyid in trusted else [] if sig.keyid else trusted.values()
        )
        for v in candidates:
            try:
                v.verify(sig.sig, dsse.pae(env.payload_type, env.payload))
                accepted_set.add(v.keyid)
                break
            except SignatureError:
                pass
            if _verify_legacy(v.public_key, sig.sig, env.payload):
                accepted_set.add(v.keyid)
                break
    if len(accepted_set) >= threshold:
        if env.payload_type != dsse.IN_TOTO_PAYLOAD_TYPE:
            raise SignatureError(
                f"{where}: DSSE payload type is {env.payload_type!r}",
                hint=f"model signatures carry {dsse.IN_TOTO_PAYLOAD_TYPE}",
            )
        return env.payload, sorted(accepted_set)
    problems = list(primary.problems)
    if bundle.key_hint is not None:
        hints = {_pem_hint(v.public_key) for v in trusted.values()}
        if bundle.key_hint not in hints:
            problems.append(
                f"the bundle names signing key {bundle.key_hint} (sha256 of its PEM), "
                "which is not among the trusted keys"
            )
    raise SignatureError(
        f"{where}: {primary.message}",
        hint="verify with the public key that signed the model; if it is the right key, the "
        "signature or its payload was altered after signing",
        problems=problems,
    )


def _accepted_ids(env: dsse.Envelope, trusted: Mapping[str, Verifier]) -> list[str]:
    message = dsse.pae(env.payload_type, env.payload)
    ids: set[str] = set()
    for sig in env.signatures:
        candidates = (
            [trusted[sig.keyid]] if sig.keyid in trusted else [] if sig.keyid else trusted.values()
        )
        for v in candidates:
            try:
                v.verify(sig.sig, message)
            except SignatureError:
                continue
            ids.add(v.keyid)
            break
    return sorted(ids)


# --- statement checks ---------------------------------------------------------------------------


def _check_resource(raw: object, i: int, where: str) -> ModelResource:
    if not isinstance(raw, dict):
        raise SignatureError(f"{where}: resources[{i}] is not an object", hint="corrupt payload")
    name, alg, digest = raw.get("name"), raw.get("algorithm"), raw.get("digest")
    if not all(isinstance(x, str) and x for x in (name, alg, digest)):
        raise SignatureError(
            f"{where}: resources[{i}] needs string name, algorithm and digest",
            hint="the payload was not produced by model_signing or chainproof",
        )
    assert isinstance(name, str) and isinstance(alg, str) and isinstance(digest, str)
    if not re.fullmatch(r"(?:[0-9a-f]{2}){16,64}", digest):
        raise SignatureError(
            f"{where}: resources[{i}] ({name!r}) digest is not lowercase hex",
            hint="corrupt payload",
        )
    return ModelResource(name, alg, digest)


def _parse_payload(payload: bytes, where: str) -> tuple[str, str, dict[str, Any], list[
    ModelResource
]]:
    """(predicate type, model name, serialization args, resources) from a verified payload."""
    data = loads_strict(payload, what=f"{where} in-toto payload")
    if isinstance(data, dict) and data.get("predicateType") == LEGACY_PREDICATE_TYPE:
        # v0.2 layout: one subject per file, no serialization block, no root digest.
        if data.get("_type") != "https://in-toto.io/Statement/v1":
            raise SignatureError(f"{where}: not an in-toto Statement v1", hint="corrupt payload")
        subjects = data.get("subject")
        if not isinstance(subjects, list) or not subjects:
            raise SignatureError(f"{where}: legacy payload has no subjects", hint="corrupt")
        legacy: list[ModelResource] = []
        for i, s in enumerate(subjects):
            subj = Subject.from_dict(s, f"subject[{i}]")
            if "sha256" not in subj.digest:
                raise SignatureError(f"{where}: subject {subj.name!r} has no sha256", hint="")
            legacy.append(ModelResource(subj.name, "sha256", subj.digest["sha256"]))
        legacy_args: dict[str, Any] = {
            "method": "files",
            "hash_type": "sha256",
            "allow_symlinks": False,
        }
        return LEGACY_PREDICATE_TYPE, "compat-undefined-not-present", legacy_args, legacy
    try:
        statement = Statement.from_dict(data)
    except ChainproofError as exc:
        raise SignatureError(f"{where}: {exc.message}", hint=exc.hint) from None
    if statement.predicate_type != MODEL_SIGNING_V1:
        raise SignatureError(
            f"{where}: unknown predicate type {statement.predicate_type!r} for a model signature",
            hint=f"expected {MODEL_SIGNING_V1!r}",
        )
    if len(statement.subjects) != 1:
        raise SignatureError(
            f"{where}: expected exactly one subject, got {len(statement.subjects)}",
            hint="a model signature names the model once",
        )
    subject = statement.subjects[0]
    if "sha256" not in subject.digest:
        raise SignatureError(f"{where}: subject has no sha256 root digest", hint="corrupt")
    pred = statement.predicate
    args = pred.get("serialization")
    raw_resources = pred.get("resources")
    if not isinstance(args, dict) or not isinstance(raw_resources, list):
        raise SignatureError(
            f"{where}: predicate needs a serialization object and a resources list",
            hint="the payload was not produced by model_signing or chainproof",
        )
    resources = [_check_resource(r, i, where) for i, r in enumerate(raw_resources)]
    root = _root_digest(resources)
    if root != subject.digest["sha256"]:
        raise SignatureError(
            f"{where}: manifest is inconsistent: subject root digest is "
            f"{subject.digest['sha256']} but the resources hash to {root}",
            hint="the payload was tampered with before signing",
        )
    return MODEL_SIGNING_V1, subject.name, dict(args), resources


def _serialization_params(args: Mapping[str, Any], where: str) -> tuple[str, str, int, bool, list[
    str
]]:
    """(method, hash_type, shard_size, allow_symlinks, ignore_paths) of a signed ``serialization``
    object, refused unless it conforms to OMS 5.2.2 (predicate.schema.json ``serialization``)."""
    method = args.get("method")
    hash_type = args.get("hash_type")
    # OMS 5.2.2: allow_symlinks is REQUIRED and a boolean (the reference reads
    # args["allow_symlinks"] and fails without it). A string "false" would be truthy in the
    # reference's hashing config: a parser differential, so only real booleans pass.
    if "allow_symlinks" not in args:
        raise SignatureError(
            f"{where}: serialization has no allow_symlinks", hint="OMS 5.2.2: it is REQUIRED"
        )
    allow_symlinks = args["allow_symlinks"]
    if not isinstance(allow_symlinks, bool):
        raise SignatureError(
            f"{where}: allow_symlinks is {allow_symlinks!r}, not a boolean",
            hint="OMS 5.2.2: allow_symlinks is a JSON boolean",
        )
    ignores = args.get("ignore_paths", [])
    if not isinstance(ignores, list) or not all(isinstance(p, str) and p for p in ignores):
        raise SignatureError(
            f"{where}: ignore_paths is not a list of non-empty strings", hint="corrupt payload"
        )
    for entry in ignores:
        _check_signed_ignore(entry, where)
    if method not in ("files", "shards"):
        # OMS 6.3 / reference SerializationType.from_args: "Unknown serialization type".
        raise SignatureError(
            f"{where}: unsupported serialization method {method!r}",
            hint="chainproof verifies model_signing 'files' and 'shards' serializations",
        )
    shard_size = 0
    if method == "shards":
        # OMS 5.2.2 / 6.3.2: shard_size REQUIRED, a positive JSON integer. model_signing's
        # payload goes through a protobuf Struct, so it writes 30000.0: an integral float is an
        # integer in JSON Schema; 1.5, true (int(True) == 1: a 1-byte shard size) or "8" not.
        raw_size = args.get("shard_size")
        if isinstance(raw_size, float) and raw_size.is_integer():
            raw_size = int(raw_size)
        if not isinstance(raw_size, int) or isinstance(raw_size, bool) or raw_size < 1:
            raise SignatureError(
                f"{where}: shards serialization needs a positive integer shard_size, "
                f"got {raw_size!r}",
                hint="OMS 5.2.2: shard_size is REQUIRED for shards",
            )
        shard_size = raw_size
    elif "shard_size" in args:
        raise SignatureError(
            f"{where}: files serialization carries a shard_size",
            hint="OMS 5.2.2: shard_size MUST be absent when method is 'files'",
        )
    if hash_type not in _HASH_HEX_LEN:
        known = " (registered, but not supported here)" if hash_type in _REGISTRY_HASHES else ""
        raise SignatureError(
            f"{where}: unsupported hash type {hash_type!r}{known}",
            hint=f"chainproof verifies {sorted(_HASH_HEX_LEN)}",
        )
    if method == "shards" and hash_type != "sha256":
        raise SignatureError(
            f"{where}: shards with hash {hash_type!r} are not supported",
            hint="chainproof verifies sha256 shards",
        )
    return str(method), str(hash_type), shard_size, allow_symlinks, list(ignores)


def _check_signed_ignore(entry: str, where: str) -> None:
    # OMS 6.2.1: "Ignore path entries MUST NOT contain glob characters (*, ?, [), leading /, or
    # ../ components." Also no "." / empty components and no NUL: an ignore entry is a literal
    # relative path, and one verifier globbing or normalising where another does not is a
    # parser differential over which files a signature leaves out.
    problem = None
    if "\x00" in entry:
        problem = "contains a NUL byte"
    elif entry.startswith("/"):
        problem = "is absolute"
    elif _GLOB_CHARS & set(entry):
        problem = "contains a glob character"
    elif any(part in ("..",) for part in entry.split("/")):
        problem = "climbs out of the model with '..'"
    if problem:
        raise SignatureError(
            f"{where}: signed ignore path {entry!r} {problem}",
            hint="OMS 6.2.1: ignore paths are literal paths relative to the model root",
        )


def _check_resources(
    resources: Sequence[ModelResource], method: str, hash_type: str, shard_size: int, where: str
) -> None:
    """Refuse resource lists that no conforming signer writes (before touching the disk)."""
    seen: set[str] = set()
    for r in resources:
        # Reference manifest.py: "Two items in the same manifest must not share the same key".
        # model_signing folds duplicates into a dict (the last digest wins); another reader may
        # keep the first: refuse instead of picking one.
        if r.name in seen:
            raise SignatureError(
                f"{where}: resource {r.name!r} is listed twice",
                hint="a manifest names each file (or shard) once",
            )
        seen.add(r.name)
        # OMS 6.3.1 / 6.3.2: every resource uses serialization.hash_type. For shards the
        # reference writes the sharded hasher's name, "<hash_type>-sharded-<shard_size>"
        # (model_signing _hashing/io.py ShardedFileHasher.digest_name); that is what we compare.
        want = hash_type if method == "files" else f"{hash_type}-sharded-{shard_size}"
        if r.algorithm != want:
            raise SignatureError(
                f"{where}: resource {r.name!r} uses {r.algorithm!r}, serialization says "
                f"{want!r}",
                hint="OMS 6.3: resources use the serialization's hash_type",
            )
        if len(r.digest) != _HASH_HEX_LEN[hash_type]:
            raise SignatureError(
                f"{where}: resource {r.name!r} has a {len(r.digest) * 4}-bit digest, "
                f"{hash_type} digests are {_HASH_HEX_LEN[hash_type] * 4}-bit",
                hint="corrupt payload",
            )
        path = r.name
        if method == "shards":
            # OMS 6.3.2: "<path>:<start>:<end>", the last two components decimal; a shard is
            # non-empty, starts on a shard boundary and is at most shard_size long.
            m = _SHARD_NAME_RE.match(r.name)
            if m is None:
                raise SignatureError(
                    f"{where}: shard resource {r.name!r} is not <path>:<start>:<end>",
                    hint="OMS 6.3.2",
                )
            path, start, end = m.group(1), int(m.group(2)), int(m.group(3))
            if not (start < end and start % shard_size == 0 and end - start <= shard_size):
                raise SignatureError(
                    f"{where}: shard resource {r.name!r} is not a shard of size {shard_size}",
                    hint="OMS 6.3.2: shards are consecutive ranges of shard_size bytes",
                )
        if path == ".":
            continue  # model_signing's name for a single-file model (Path.relative_to itself)
        problem = _resource_path_problem(path)
        if problem:
            raise SignatureError(
                f"{where}: resource name {r.name!r} {problem}",
                hint="OMS 6.1.2: names are canonical paths relative to the model root",
            )


def _resource_path_problem(path: str) -> str | None:
    # OMS 6.1.2 rules 2-4: relative, no "../", normalised (no "." or empty components), no
    # trailing "/". A name that is not canonical can never match a file the verifier
    # enumerates; refusing it names the real problem (and keeps "../secret" from ever being
    # joined to the model path by a later reader of VerifiedModel.resources).
    if "\x00" in path:
        return "contains a NUL byte"
    if path.startswith("/"):
        return "is an absolute path"
    parts = path.split("/")
    if ".." in parts:
        return "climbs out of the model with '..'"
    if path.endswith("/"):
        return "ends with '/'"
    if "." in parts or "" in parts:
        return "is not normalised ('.' or empty path components)"
    return None


def _compare(expected: Sequence[ModelResource], actual: Sequence[ModelResource]) -> list[str]:
    exp = {r.name: r for r in expected}
    act = {r.name: r for r in actual}
    problems = [f"file added after signing: {n}" for n in sorted(act.keys() - exp.keys())]
    problems += [f"file removed after signing: {n}" for n in sorted(exp.keys() - act.keys())]
    for name in sorted(exp.keys() & act.keys()):
        e, a = exp[name], act[name]
        if (e.algorithm, e.digest) != (a.algorithm, a.digest):
            problems.append(
                f"file changed after signing: {name} (signed {e.algorithm}:{e.digest}, "
                f"now {a.algorithm}:{a.digest})"
            )
    return problems


def _trusted_map(keys: PublicKey | Sequence[PublicKey]) -> dict[str, Verifier]:
    key_list = list(keys) if isinstance(keys, Sequence) else [keys]
    if not key_list:
        raise BadInputError("no public key given", hint="pass the signer's public key")
    out: dict[str, Verifier] = {}
    for k in key_list:
        if not isinstance(k, ec.EllipticCurvePublicKey):
            raise BadInputError(
                f"unsupported public key type {type(k).__name__}",
                hint="model signatures use ECDSA P-256/P-384/P-521 keys",
            )
        hash_for_curve(k.curve)
        v = Verifier.from_public_key(k)
        out[v.keyid] = v
    return out


def _verify_with(
    model_dir: Path,
    signature_path: Path,
    trusted: Mapping[str, Verifier],
    *,
    ignore_paths: Iterable[str | os.PathLike[str]],
    threshold: int,
    ignore_git_paths: bool,
) -> VerifiedModel:
    model_dir = Path(model_dir)
    signature_path = Path(signature_path)
    where = f"model signature {signature_path}"
    bundle = _read_bundle(signature_path)
    payload, signer_ids = _check_signatures(bundle, trusted, threshold, where)
    predicate_type, model_name, args, expected = _parse_payload(payload, where)
    if not expected:
        raise SignatureError(
            f"{where} covers no file (an empty model)",
            hint="OpenSSF model signing: a signature of an empty model MUST be rejected",
        )
    method, hash_type, shard_size, allow_symlinks, signed_ignores = _serialization_params(
        args, where
    )
    _check_resources(expected, method, hash_type, shard_size, where)
    if not model_dir.exists():
        raise BadInputError(f"model path {model_dir} does not exist", hint="check the path")
    if not allow_symlinks and model_dir.is_symlink():
        raise UnsafePathError(
            f"model path {model_dir} is a symbolic link and the signature does not allow them",
            hint="pass the real path of the model",
        )
    is_dir = model_dir.is_dir()
    ignores: list[str] = []
    if is_dir:
        ignores = _relative_ignores(model_dir, [*signed_ignores, *ignore_paths])
        ignores += _signature_ignore(model_dir, signature_path)
        if ignore_git_paths:
            ignores += list(DEFAULT_IGNORE_PATHS)
    elif [r.name for r in expected] not in (["."], [model_dir.name]):
        # A single file is "." in model_signing's manifests and its basename in OMS 6.1.2
        # rule 5; both are accepted (the comparison below maps the file to the signed name).
        raise SignatureError(
            f"{where} covers a directory of {len(expected)} file(s), but {model_dir} is a file",
            hint="pass the model directory that was signed",
        )
    if is_dir and [r.name for r in expected] == ["."]:
        raise SignatureError(
            f"{where} covers a single file, but {model_dir} is a directory",
            hint="pass the path of the signed file itself",
        )
    ignores = sorted(set(ignores))
    if not allow_symlinks:
        _check_no_symlinks(model_dir, ignores)
    if method == "files":
        actual = _model_resources(model_dir, ignores, hash_type)
        if not is_dir and [r.name for r in expected] == [model_dir.name]:
            actual = [ModelResource(model_dir.name, a.algorithm, a.digest) for a in actual]
        problems = _compare(expected, actual)
    else:
        actual = _shard_resources(model_dir, ignores, shard_size)
        problems = _compare(expected, actual)
        problems += _unbound_empty_files(model_dir, ignores)
    if not actual:
        raise SignatureError(
            f"model {model_dir} has no files left to verify (it is empty, or every file is "
            "ignored)",
            hint="OpenSSF model signing: an empty model MUST be rejected; check the ignore paths",
        )
    if problems:
        raise SignatureError(
            f"model {model_dir} does not match its signature {signature_path}",
            hint="the model's files changed after signing; re-obtain the model from a trusted "
            "source (or re-sign it if the change is intended)",
            problems=problems,
        )
    return VerifiedModel(
        model_name=model_name,
        root_digest=_root_digest(expected),
        resources=tuple(expected),
        serialization=dict(args),
        signer_key_ids=tuple(signer_ids),
        predicate_type=predicate_type,
    )


def _unbound_empty_files(model_dir: Path, ignores: Sequence[str]) -> list[str]:
    # model_signing's shard serialization gives zero-byte files no shard, so the signature says
    # nothing about them; an attacker can add one (e.g. an empty __init__.py that changes import
    # behaviour). chainproof refuses rather than silently accept.
    return [
        f"zero-byte file not covered by a 'shards' signature: {r.name}"
        for r in _model_resources(model_dir, ignores)
        if r.digest == hashlib.sha256(b"").hexdigest()
    ]


def verify_model(
    model_dir: Path,
    signature_path: Path,
    public_key: PublicKey | Sequence[PublicKey],
    *,
    ignore_paths: Iterable[str | os.PathLike[str]] = (),
    threshold: int = 1,
    ignore_git_paths: bool = True,
) -> VerifiedModel:
    """Verify a model against an OpenSSF model signature made with a key.

    ``public_key`` is one trusted key or several; ``threshold`` distinct ones must have signed.
    Paths in ``ignore_paths`` (relative to the model, or absolute inside it) are left out, on
    top of those the signature itself lists and the git paths model_signing always ignores.
    Raises :class:`SignatureError` (bad/wrong signature, model changed) or
    :class:`MalformedFileError` (unreadable bundle).
    """
    return _verify_with(
        model_dir,
        signature_path,
        _trusted_map(public_key),
        ignore_paths=ignore_paths,
        threshold=threshold,
        ignore_git_paths=ignore_git_paths,
    )


# --- certificates -------------------------------------------------------------------------------


def verify_model_certificate(
    model_dir: Path,
    signature_path: Path,
    trust_anchors: Sequence[x509.Certificate],
    *,
    ignore_paths: Iterable[str | os.PathLike[str]] = (),
    ignore_git_paths: bool = True,
    identity: str | None = None,
) -> VerifiedModel:
    """Verify a certificate-signed model signature: chain to ``trust_anchors``, then the
    envelope with the leaf certificate's public key, then the model's files.

    The chain is validated by ``cryptography.x509.verification`` (RFC 5280: pathLenConstraint,
    keyCertSign on issuers, validity at the leaf's notBefore, ...) with the OpenSSF end-entity
    rules of :mod:`chainproof.attest._x509` (extendedKeyUsage codeSigning). ``identity``, if
    given, must be one of the leaf's subjectAltName values (email, URI or DNS name).
    Raises :class:`SignatureError` for any failed check.
    """
    if not trust_anchors:
        raise BadInputError("no trust anchors given", hint="pass the CA certificate(s)")
    where = f"model signature {signature_path}"
    chain = read_bundle_certificates(Path(signature_path))
    leaf = verify_signing_chain(chain, trust_anchors, where, identity=identity)
    pub = leaf.public_key()
    if not isinstance(pub, ec.EllipticCurvePublicKey):
        raise SignatureError(f"{where}: the signing certificate's key is not ECDSA", hint="")
    return verify_model(
        model_dir,
        signature_path,
        pub,
        ignore_paths=ignore_paths,
        ignore_git_paths=ignore_git_paths,
    )
