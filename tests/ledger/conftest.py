"""Shared helpers for the ledger tests: locating the peers' test vectors.

Tests take a ``merkle_vector`` argument to be parametrised with one case per file of
``<repo>/../shared/vectors/merkle`` (CI clones the repo with a copy of ``shared/`` beside it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

_REPO_ROOT = Path(__file__).resolve().parents[2]
VECTORS_DIR = _REPO_ROOT / ".." / "shared" / "vectors"


def _vectors(name: str) -> Path | None:
    path = (VECTORS_DIR / name).resolve()
    return path if path.is_dir() else None


@pytest.fixture
def merkle_vectors_dir() -> Path:
    """The merkle vector folder, or skip with the path that was looked for."""
    path = _vectors("merkle")
    if path is None:
        pytest.skip(f"test vectors missing: expected {VECTORS_DIR / 'merkle'} (<repo>/../shared)")
    return path


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "merkle_vector" in metafunc.fixturenames:
        root = _vectors("merkle")
        files = sorted(root.glob("**/*.json")) if root else []
        if files:
            assert root is not None
            metafunc.parametrize(
                "merkle_vector", files, ids=[str(f.relative_to(root)) for f in files]
            )
        else:
            metafunc.parametrize(
                "merkle_vector",
                [
                    pytest.param(
                        None,
                        marks=pytest.mark.skip(
                            reason=f"test vectors missing: expected {VECTORS_DIR / 'merkle'}"
                        ),
                    )
                ],
            )
