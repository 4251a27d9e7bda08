"""Content addressing (invariant I1): digests of bytes, files and directories.

A file is identified by the SHA-256 of its bytes (``sha256sum`` agrees); a directory by the
SHA-256 of its canonical manifest (RFC 8785 JSON of relative path, size and digest of every file).
BLAKE3 is available as an option. The manifest also speaks OpenSSF model signing's resource list.
"""

from chainproof.digest._hashing import hash_file
from chainproof.digest._model import (
    ALGORITHMS,
    DEFAULT_ALGORITHM,
    MANIFEST_VERSION,
    MODEL_SIGNING_GIT_IGNORES,
    Manifest,
    ManifestEntry,
    PathDigest,
    format_digest,
    hash_bytes,
    model_signing_root_digest,
    parse_digest,
)
from chainproof.digest._tree import (
    MODEL_SIGNING_SHARD_SIZE,
    digest_path,
    model_signing_shard_resources,
)

__all__ = [
    "ALGORITHMS",
    "DEFAULT_ALGORITHM",
    "MANIFEST_VERSION",
    "MODEL_SIGNING_GIT_IGNORES",
    "MODEL_SIGNING_SHARD_SIZE",
    "Manifest",
    "ManifestEntry",
    "PathDigest",
    "digest_path",
    "format_digest",
    "hash_bytes",
    "hash_file",
    "model_signing_root_digest",
    "model_signing_shard_resources",
    "parse_digest",
]
