"""Start moto's standalone S3 server in a subprocess, for tests that need a real S3 endpoint.

The server is a separate process speaking real HTTP on a free loopback port, so the code under
test goes through boto3's whole network stack (no in-process ``mock_aws`` patching). Needs only
the standard library and ``moto[server]`` in the interpreter running the tests.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable

_START_TIMEOUT = 30.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/moto-api/", timeout=1.0):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer means the server is up
    except OSError:
        return False


def start_moto_server() -> tuple[str, Callable[[], None]]:
    """Start ``python -m moto.server`` on 127.0.0.1; return ``(endpoint_url, stop)``.

    Blocks until the port answers HTTP (or raises ``RuntimeError`` with the server's log).
    ``stop`` terminates the process and is safe to call more than once.
    """
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    # Closed by stop(); a with-block cannot outlive this function.
    log = tempfile.TemporaryFile(prefix="moto-server-")  # noqa: SIM115
    env = dict(os.environ)
    env.setdefault("AWS_ACCESS_KEY_ID", "testing")
    env.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        log.close()

    deadline = time.monotonic() + _START_TIMEOUT
    while not _answers(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            output = log.read().decode("utf-8", "replace")[-4000:]
            stop()
            raise RuntimeError(f"moto server did not start on {url}:\n{output}")
        time.sleep(0.1)
    return url, stop


if __name__ == "__main__":  # manual use: print the endpoint and serve until interrupted
    endpoint, stop_server = start_moto_server()
    print(endpoint, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        stop_server()
