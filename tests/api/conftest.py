"""A real team server (uvicorn in a subprocess on a loopback port) over the test workspace, and
remote clients acting as separate identities with their own tokens and keys."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from chainproof import identities
from chainproof.client import RemoteChainproof
from chainproof.service import Chainproof


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(cp: Chainproof, *, port: int | None = None,
                 extra_env: dict[str, str] | None = None, cwd: Path | None = None
                 ) -> tuple[str, subprocess.Popen[bytes]]:
    port = port or free_port()
    assert cp.settings.workspace is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINPROOF_")}
    env.update(extra_env or {})
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "chainproof.api.factory:app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=cwd or cp.settings.workspace.parent, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                return url, proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError("the chainproof server exited during start-up")
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the chainproof server did not start in 60 s")


@pytest.fixture()
def server(cp: Chainproof) -> Iterator[str]:
    url, proc = start_server(cp)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


RemoteFactory = Callable[..., RemoteChainproof]


@pytest.fixture()
def remote(cp: Chainproof, server: str, tmp_path: Path) -> Iterator[RemoteFactory]:
    clients: list[RemoteChainproof] = []

    def make(name: str, roles: tuple[str, ...] = (), namespace: str = "warehouse",
             *, register_key: bool = True) -> RemoteChainproof:
        key = tmp_path / "client-keys" / f"{name}.pem"
        if not key.exists():
            identities.generate_key_file(key)
            cp.create_identity(name, "service" if name.startswith("svc-") else "person")
            if register_key:
                cp.register_key(name, identities.public_path(key).read_bytes())
        for role in roles:
            cp.grant_role(name, role, namespace)
        _, token = cp.create_token(name, timedelta(hours=1))
        client = RemoteChainproof(server, token, signing_key_path=key,
                                  cache_dir=tmp_path / "client-cache" / name)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
