"""A second server host is stateless: given only CHAINPROOF_DB, CHAINPROOF_STORE and
CHAINPROOF_LOG_KEY (no workspace folder, no log.pub) it serves the same log — same origin,
checkpoints the first host verifies. Without the log key it refuses to start, with a clear
message, instead of answering 500 to every request."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from api.conftest import start_server

from chainproof.service import Chainproof


def test_a_host_with_only_the_database_store_and_log_key(cp: Chainproof, tmp_path: Path,
                                                         remote: Any) -> None:
    elsewhere = tmp_path / "host2"
    elsewhere.mkdir()
    env = {"CHAINPROOF_DB": cp.settings.db_url, "CHAINPROOF_STORE": cp.settings.store,
           "CHAINPROOF_LOG_KEY": str(cp.settings.log_key_path),
           "AWS_ENDPOINT_URL": os.environ.get("AWS_ENDPOINT_URL", ""),
           "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "x"),
           "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "x")}
    url, proc = start_server(cp, extra_env=env, cwd=elsewhere)
    try:
        key = httpx.get(f"{url}/v1/log-key").json()
        assert key["origin"] == cp.settings.origin
        assert key["public_pem"] == cp.settings.log_public_path.read_text()
        cp.create_identity("data-eng")
        cp.grant_role("data-eng", "data-writer", "warehouse")
        _, token = cp.create_token("data-eng", timedelta(days=1))
        (tmp_path / "d.csv").write_text("a\n1\n")
        answer = httpx.put(f"{url}/v1/blobs/sha256:" + hashlib.sha256(b"a\n1\n").hexdigest(),
                           content=b"a\n1\n", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 201, answer.text
        created = httpx.post(f"{url}/v1/assets", headers={"Authorization": f"Bearer {token}"},
                             json={"namespace": "warehouse", "name": "d", "kind": "dataset",
                                   "digest": answer.json()["digest"],
                                   "receipts": [answer.json()["receipt"]]})
        assert created.status_code == 201, created.text
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    # the second host's checkpoints belong to the same log
    assert cp.audit_verify().size >= 2


def test_a_host_without_the_log_key_refuses_to_start(cp: Chainproof, tmp_path: Path) -> None:
    elsewhere = tmp_path / "host3"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINPROOF_")}
    env.update({"CHAINPROOF_DB": cp.settings.db_url, "CHAINPROOF_STORE": cp.settings.store,
                "COLUMNS": "200"})
    done = subprocess.run([str(Path(sys.executable).parent / "chainproof"), "server",
                           "--port", "1"], cwd=elsewhere, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "log" in done.stderr and "key" in done.stderr


@pytest.mark.parametrize("origin", ["chainproof.local/another-log"])
def test_a_workspace_whose_config_names_another_log_is_refused(cp: Chainproof,
                                                              origin: str) -> None:
    import dataclasses

    from chainproof.errors import WorkspaceError

    wrong = dataclasses.replace(cp.settings, origin=origin)
    with pytest.raises(WorkspaceError, match="was started as"):
        Chainproof.open(wrong)
