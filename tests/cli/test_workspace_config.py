"""The workspace's config.json: private (0600) when it holds a database password; `init` never
creates a whole missing path."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from chainproof.errors import WorkspaceError
from chainproof.workspace import CONFIG_FILE, create_workspace, redact_url, url_has_password


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_config_with_a_database_password_is_owner_only(tmp_path: Path) -> None:
    url = "postgresql://chainproof:s3cret@db.internal/chainproof"
    root = create_workspace(tmp_path, db=url, store="s3://bucket/prefix")
    config = root / CONFIG_FILE
    assert _mode(config) == 0o600
    assert json.loads(config.read_text())["db"] == url


def test_config_without_secrets_stays_readable(tmp_path: Path) -> None:
    root = create_workspace(tmp_path, db="postgresql://chainproof@db.internal/chainproof")
    assert _mode(root / CONFIG_FILE) == 0o644


def test_urls_are_redacted_for_printing() -> None:
    assert url_has_password("postgresql+psycopg://u:p%40ss@h:5432/d")
    assert not url_has_password("sqlite:////tmp/x.db")
    assert redact_url("postgresql://u:pw@h/d") == "postgresql://u:***@h/d"
    assert redact_url("postgresql://u@h/d") == "postgresql://u@h/d"


def test_only_the_last_folder_is_created(tmp_path: Path) -> None:
    create_workspace(tmp_path / "new")
    assert (tmp_path / "new" / ".chainproof" / CONFIG_FILE).is_file()
    with pytest.raises(WorkspaceError, match="does not exist"):
        create_workspace(tmp_path / "missing" / "deeper" / "project")
    assert not (tmp_path / "missing").exists()
