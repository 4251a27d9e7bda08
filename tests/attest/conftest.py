"""Shared helpers for the attest tests: the peers' model-signing vectors and signing keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

_REPO_ROOT = Path(__file__).resolve().parents[2]
VECTORS_DIR = _REPO_ROOT / ".." / "shared" / "vectors"
DATA_DIR = Path(__file__).resolve().parent / "data"


def model_signing_vectors() -> Path | None:
    path = (VECTORS_DIR / "model-signing").resolve()
    return path if path.is_dir() else None


@pytest.fixture
def ms_vectors() -> Path:
    """<repo>/../shared/vectors/model-signing, or skip saying where it was looked for."""
    path = model_signing_vectors()
    if path is None:
        pytest.skip(
            f"test vectors missing: expected {VECTORS_DIR / 'model-signing'} (<repo>/../shared)"
        )
    return path


@pytest.fixture(scope="session")
def p256_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="session")
def other_p256_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())
