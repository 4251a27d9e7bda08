"""Shared fixture for the demo tests: a quiet Rich console whose output can be read back."""

from __future__ import annotations

import io

import pytest
from rich.console import Console


@pytest.fixture()
def quiet_console() -> Console:
    return Console(file=io.StringIO(), width=160, color_system=None)
