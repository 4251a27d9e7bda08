"""Fixtures for the digest tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def shared_vectors():
    """``<repo>/../shared/vectors/<name>``, or skip the test with a clear message."""

    def _locate(name: str) -> Path:
        path = Path(__file__).resolve().parents[2] / ".." / "shared" / "vectors" / name
        if not path.is_dir():
            pytest.skip(f"shared test vectors not found at {path} "
                        "(expected <repo>/../shared/vectors)")
        return path

    return _locate


@pytest.fixture
def make_tree(tmp_path: Path):
    """Create files from a ``{relative path: bytes}`` mapping under a fresh directory."""

    def _make(files: dict[str, bytes], name: str = "model") -> Path:
        root = tmp_path / name
        root.mkdir()
        for rel, data in files.items():
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return root

    return _make
