"""Shared fixtures for the scanner tests: where the shared pickle corpus lives."""

from __future__ import annotations

from pathlib import Path

import pytest
from scan_asm import pickle_vectors_dir


@pytest.fixture
def pickle_vectors() -> Path:
    path = pickle_vectors_dir()
    if path is None:
        pytest.skip("shared/vectors/pickles is not beside the repository (<repo>/../shared)")
    return path
