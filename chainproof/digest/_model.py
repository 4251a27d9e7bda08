"""Pure data for content addressing: digest strings, manifests and path digests (no I/O).

A directory is identified by the digest of its *canonical manifest* (invariant I1): RFC 8785
canonical JSON of ``{"version", "algorithm", "files": [{"path", "size", "digest"}, ...]}`` with
the files sorted by the UTF-8 bytes of their relative POSIX path. Canonical JSON is what makes the
digest reproducible across machines, languages and JSON libraries; we use the ``rfc8785`` package
rather than ``json.dumps(sort_keys=True)`` because the latter neither sorts keys by UTF-16 code
units nor formats numbers the way RFC 8785 requires.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import blake3
import rfc8785

from chainproof.errors import BadInputError, MalformedFileError

MANIFEST_VERSION = "chainproof-manifest/v1"
ALGORITHMS: tuple[str, ...] = ("sha256", "blake3")
DEFAULT_ALGORITHM = "sha256"

# RFC 8785 serialises numbers as IEEE 754 doubles: integers beyond 2**53 - 1 are not exact.
_MAX_JSON_INT = 2**53 - 1
# Both supported algorithms produce 32-byte digests.
_HEX_RE = re.compile(r"[0-9a-f]{64}")
_DIGEST_RE = re.compile(r"(sha256|blake3):([0-9a-f]{64})")

# The paths model_signing ignores unless told otherwise (``ignore_git_paths=True``). chainproof
# never ignores anything implicitly; the signing code passes these explicitly to match.
MODEL_SIGNING_GIT_IGNORES: tuple[str, ...] = (".git", ".gitattributes", ".github", ".gitignore")


def check_algorithm(algorithm: str) -> str:
    """Return ``algorithm`` if chainproof supports it, else raise :class:`BadInputError`."""
    if algorithm not in ALGORITHMS:
        raise BadInputError(
            f"unsupported digest algorithm {algorithm!r}",
            hint=f"use one of: {', '.join(ALGORITHMS)}",
        )
    return algorithm


def new_hasher(algorithm: str) -> Any:
    """A fresh streaming hasher (``update``/``hexdigest``) for ``algorithm``."""
    check_algorithm(algorithm)
    if algorithm == "blake3":
        return blake3.blake3()
    return hashlib.sha256()


def hash_bytes(data: bytes, algorithm: str = DEFAULT_ALGORITHM) -> str:
    """Hex digest of ``data``."""
    hasher = new_hasher(algorithm)
    hasher.update(data)
    return str(hasher.hexdigest())


def format_digest(algorithm: str, hexdigest: str) -> str:
    """``"sha256:<hex>"``; the inputs are checked so a malformed string is never produced."""
    check_algorithm(algorithm)
    if not _HEX_RE.fullmatch(hexdigest):
        raise BadInputError(
            f"not a {algorithm} hex digest: {hexdigest!r}",
            hint="expected 64 lowercase hexadecimal characters",
        )
    return f"{algorithm}:{hexdigest}"


def parse_digest(text: str) -> tuple[str, str]:
    """``"sha256:<hex>"`` -> ``("sha256", "<hex>")``. Strict: lowercase hex, known algorithm."""
    if not isinstance(text, str):
        raise BadInputError(f"a digest must be a string, got {type(text).__name__}")
    match = _DIGEST_RE.fullmatch(text)
    if match is None:
        raise BadInputError(
            f"malformed digest {text!r}",
            hint="expected 'sha256:<64 lowercase hex>' (or 'blake3:<64 lowercase hex>')",
        )
    return match.group(1), match.group(2)


def check_relative_path(path: str) -> str:
    """Return ``path`` if it is a normalised relative POSIX path, else raise ``MalformedFileError``.

    Refused: empty, absolute, ``.``/``..``/empty components (so ``a//b`` and trailing slashes),
    NUL, and strings that cannot be encoded as UTF-8 (undecodable file names).
    """
    if not isinstance(path, str) or not path:
        raise MalformedFileError(f"manifest path must be a non-empty string, got {path!r}")
    if path.startswith("/"):
        raise MalformedFileError(f"manifest path {path!r} is absolute",
                                 hint="paths are relative to the hashed directory")
    if "\x00" in path:
        raise MalformedFileError(f"manifest path {path!r} contains NUL")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise MalformedFileError(
                f"manifest path {path!r} is not normalised (empty, '.' or '..' component)",
                hint="paths must stay inside the hashed directory and be written without '.'/'..'",
            )
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedFileError(f"manifest path {path!r} is not valid UTF-8") from None
    return path


def _path_sort_key(path: str) -> bytes:
    return path.encode("utf-8")


def _model_signing_sort_key(path: str) -> tuple[str, ...]:
    # model_signing sorts its items by pathlib.PurePosixPath, which compares the tuple of path
    # components, not the string: "a/b" < "a-c" there, whereas bytewise "a-c" < "a/b" ('-' < '/').
    return PurePosixPath(path).parts


@dataclass(frozen=True)
class ManifestEntry:
    """One file of a directory: relative POSIX path, size in bytes, hex digest."""

    path: str
    size: int
    digest: str

    def __post_init__(self) -> None:
        check_relative_path(self.path)
        if type(self.size) is not int or not 0 <= self.size <= _MAX_JSON_INT:
            raise MalformedFileError(
                f"manifest entry {self.path!r}: size must be an integer from 0 to 2**53-1, "
                f"got {self.size!r}"
            )
        if not isinstance(self.digest, str) or not _HEX_RE.fullmatch(self.digest):
            raise MalformedFileError(
                f"manifest entry {self.path!r}: digest must be 64 lowercase hex characters, "
                f"got {self.digest!r}"
            )


@dataclass(frozen=True)
class Manifest:
    """The canonical listing of a directory. Constructing one validates it (sorted, unique)."""

    algorithm: str
    entries: tuple[ManifestEntry, ...]

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise MalformedFileError(
                f"manifest algorithm {self.algorithm!r} is not supported",
                hint=f"use one of: {', '.join(ALGORITHMS)}",
            )
        if not isinstance(self.entries, tuple):
            object.__setattr__(self, "entries", tuple(self.entries))
        previous: bytes | None = None
        for entry in self.entries:
            if not isinstance(entry, ManifestEntry):
                raise MalformedFileError(f"manifest entries must be ManifestEntry, got {entry!r}")
            key = _path_sort_key(entry.path)
            if previous is not None and key <= previous:
                raise MalformedFileError(
                    f"manifest entries are not strictly sorted by UTF-8 path at {entry.path!r}",
                    hint="entries must be unique and sorted by the UTF-8 bytes of their path",
                )
            previous = key
        # A path cannot be both a file and a directory holding files.
        paths = {entry.path for entry in self.entries}
        for entry in self.entries:
            parts = entry.path.split("/")
            for i in range(1, len(parts)):
                prefix = "/".join(parts[:i])
                if prefix in paths:
                    raise MalformedFileError(
                        f"manifest lists {prefix!r} both as a file and as a directory "
                        f"(of {entry.path!r})"
                    )

    @classmethod
    def build(cls, algorithm: str, entries: Iterable[ManifestEntry]) -> Manifest:
        """A manifest from entries in any order (they are sorted here)."""
        return cls(algorithm, tuple(sorted(entries, key=lambda e: _path_sort_key(e.path))))

    @property
    def total_size(self) -> int:
        return sum(entry.size for entry in self.entries)

    def to_json_obj(self) -> dict[str, Any]:
        return {
            "version": MANIFEST_VERSION,
            "algorithm": self.algorithm,
            "files": [
                {"path": e.path, "size": e.size, "digest": e.digest} for e in self.entries
            ],
        }

    def canonical_bytes(self) -> bytes:
        """RFC 8785 canonical JSON: the exact bytes the directory digest is computed over."""
        return rfc8785.dumps(self.to_json_obj())

    def digest(self) -> str:
        """Hex digest (with this manifest's algorithm) of :meth:`canonical_bytes`."""
        return hash_bytes(self.canonical_bytes(), self.algorithm)

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        """Parse a manifest, accepting only the exact canonical bytes :meth:`canonical_bytes` makes.

        Anything else (other key order or whitespace, unknown or duplicate keys, unsorted or
        duplicate entries, unsafe paths, bad hex) raises :class:`MalformedFileError`: two byte
        strings must never name the same directory.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise MalformedFileError("a manifest must be bytes")
        raw = bytes(data)
        try:
            obj = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
        except (UnicodeDecodeError, ValueError) as exc:
            raise MalformedFileError(f"manifest is not valid UTF-8 JSON: {exc}") from None
        if not isinstance(obj, dict) or set(obj) != {"version", "algorithm", "files"}:
            raise MalformedFileError(
                "manifest must be an object with exactly 'version', 'algorithm' and 'files'"
            )
        if obj["version"] != MANIFEST_VERSION:
            raise MalformedFileError(
                f"unsupported manifest version {obj['version']!r}",
                hint=f"this chainproof reads {MANIFEST_VERSION!r}",
            )
        algorithm = obj["algorithm"]
        if not isinstance(algorithm, str):
            raise MalformedFileError("manifest 'algorithm' must be a string")
        files = obj["files"]
        if not isinstance(files, list):
            raise MalformedFileError("manifest 'files' must be a list")
        entries: list[ManifestEntry] = []
        for item in files:
            if not isinstance(item, dict) or set(item) != {"path", "size", "digest"}:
                raise MalformedFileError(
                    f"manifest file entry must have exactly 'path', 'size', 'digest': {item!r}"
                )
            entries.append(ManifestEntry(item["path"], item["size"], item["digest"]))
        manifest = cls(algorithm, tuple(entries))
        if manifest.canonical_bytes() != raw:
            raise MalformedFileError(
                "manifest is not in RFC 8785 canonical form",
                hint="re-serialise it with Manifest.canonical_bytes()",
            )
        return manifest

    # --- OpenSSF model signing (model_signing 1.x, serialization method "files") ------------------

    def to_model_signing_resources(self) -> list[dict[str, str]]:
        """The predicate's ``resources`` list exactly as model_signing 1.x emits it for "files".

        Same names (relative POSIX path), algorithm names ("sha256"/"blake3"), key order
        (name, algorithm, digest) and item order (model_signing's PurePosixPath order).
        """
        ordered = sorted(self.entries, key=lambda e: _model_signing_sort_key(e.path))
        return [{"name": e.path, "algorithm": self.algorithm, "digest": e.digest} for e in ordered]

    def model_signing_root_digest(self) -> str:
        """The model_signing subject digest (hex) for :meth:`to_model_signing_resources`."""
        return model_signing_root_digest(self.to_model_signing_resources())


def model_signing_root_digest(resources: Iterable[dict[str, str]]) -> str:
    """model_signing's subject digest: SHA-256 over the raw resource digests, in list order.

    Always SHA-256, whatever the resources' own algorithm (as model_signing's ``Payload`` does).
    """
    hasher = hashlib.sha256()
    for resource in resources:
        value = resource.get("digest")
        if not isinstance(value, str) or not re.fullmatch(r"(?:[0-9a-f]{2})+", value):
            raise BadInputError(f"resource {resource.get('name')!r} has a malformed digest")
        hasher.update(bytes.fromhex(value))
    return hasher.hexdigest()


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise MalformedFileError(f"manifest has a duplicate key {key!r}")
        result[key] = value
    return result


@dataclass(frozen=True)
class PathDigest:
    """The digest of a file (its bytes) or of a directory (its canonical manifest)."""

    digest: str
    algorithm: str
    size: int
    is_directory: bool
    manifest: Manifest | None

    def __post_init__(self) -> None:
        format_digest(self.algorithm, self.digest)
        if self.is_directory != (self.manifest is not None):
            raise BadInputError("a directory digest has a manifest and a file digest has none")

    @property
    def ref(self) -> str:
        """``"<algorithm>:<hex>"``, e.g. ``"sha256:9f86d0..."``."""
        return format_digest(self.algorithm, self.digest)
