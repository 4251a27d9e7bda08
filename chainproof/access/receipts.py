"""Upload receipts: proof that a caller holds the bytes it binds (I8).

Knowing a digest grants nothing. A caller may bind bytes (register an asset version, a model
version or a step output by digest, or list them in a directory manifest) only if it can already
read something holding them, or if it uploaded them itself. Uploading happens in a request of
its own (``PUT /v1/blobs/DIGEST``), so the server answers it with a *receipt*: an HMAC-SHA256
over the identity, the digest and an expiry, under a key only the servers hold. Presenting the
receipt later proves the upload. Receipts are stateless (any server replica checks them), bound
to one identity and one digest, and expire (default one day).

The receipt key is derived with HKDF-SHA256 from secret key material the servers already share
(the log's checkpoint key), so there is nothing new to distribute.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

RECEIPT_TTL_SECONDS = 24 * 3600
_INFO = b"chainproof upload receipt v1"


def receipt_key(secret: bytes) -> bytes:
    """The 32-byte receipt key derived from ``secret`` (HKDF-SHA256, RFC 5869)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret)


def _mac(key: bytes, identity: str, digest: str, expires: int) -> str:
    message = f"{identity}\n{digest}\n{expires}".encode()
    tag = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(tag).decode().rstrip("=")


def issue(key: bytes, identity: str, digest: str, *, ttl: int = RECEIPT_TTL_SECONDS,
          now: float | None = None) -> str:
    """A receipt saying ``identity`` uploaded ``digest``: ``<expiry>.<digest>.<mac>``."""
    expires = int((now if now is not None else time.time()) + ttl)
    return f"{expires}.{digest}.{_mac(key, identity, digest, expires)}"


def proven_digests(key: bytes, identity: str, receipts: list[str], *,
                   now: float | None = None) -> set[str]:
    """The digests ``receipts`` prove ``identity`` uploaded (expired, forged, or other
    identities' receipts prove nothing; they are ignored, and the claim they were meant to
    support is refused where it is checked)."""
    moment = now if now is not None else time.time()
    proven: set[str] = set()
    for receipt in receipts:
        expires_text, _, rest = receipt.partition(".")
        digest, _, mac = rest.rpartition(".")
        if not (expires_text.isascii() and expires_text.isdigit()) or not digest \
                or int(expires_text) < moment:
            continue
        if hmac.compare_digest(mac, _mac(key, identity, digest, int(expires_text))):
            proven.add(digest)
    return proven
