"""Helpers shared by the team-scale benchmarks (registry, step, serve, hash).

Only the standard library and what chainproof already depends on: the benchmarks drive chainproof
through its CLI, its HTTP API and the public methods of ``chainproof.service.Chainproof``.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "benchmarks" / "_work"
BIN = Path(sys.executable).parent
CHAINPROOF = str(BIN / "chainproof")
PG_ADMIN = os.environ.get("CHAINPROOF_BENCH_PG",
                          "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


# --- the machine ----------------------------------------------------------------------------------


def loadavg() -> str:
    """``/proc/loadavg``'s three averages, e.g. ``1.52 1.20 0.98``."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def stamp(what: str) -> None:
    """Print the UTC time and the load average (before and after each measurement)."""
    now = datetime.now(UTC).strftime("%H:%M:%S")
    print(f"[{now} UTC] load average {loadavg()} — {what}", flush=True)


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def sha256_limit(threads: int | None = None, per_thread: int = 512 * 1024**2,
                 buffer: int = 64 * 1024**2, chunk: int = 8 * 1024**2) -> tuple[float, float]:
    """The machine's SHA-256 limit, measured now: (all cores, one core) in bytes/s.

    hashlib on an in-memory buffer, ``threads`` threads at once (hashlib releases the GIL for
    large updates), each hashing ``per_thread`` bytes in ``chunk``-sized updates; then one
    thread alone. Best of two rounds each."""
    threads = threads or cores()
    data = os.urandom(buffer)
    view = memoryview(data)

    def work(total: int) -> None:
        h = hashlib.sha256()
        done = 0
        while done < total:
            for off in range(0, buffer, chunk):
                h.update(view[off:off + chunk])
            done += buffer
        h.digest()

    def timed(n: int, total: int) -> float:
        ts = [threading.Thread(target=work, args=(total,)) for _ in range(n)]
        start = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        rounded = -(-total // buffer) * buffer
        return n * rounded / (time.perf_counter() - start)

    multi = max(timed(threads, per_thread) for _ in range(2))
    single = max(timed(1, per_thread // 2) for _ in range(2))
    return multi, single


def sha256_per_cpu_second(total: int = 256 * 1024**2, chunk: int = 8 * 1024**2) -> float:
    """hashlib SHA-256 bytes per CPU-second of the hashing thread (in memory; best of three).

    Unlike wall-clock throughput this hardly depends on what else runs on the machine, so a
    tool's bytes per CPU-second over this is its efficiency even on a loaded machine."""
    data = memoryview(os.urandom(chunk))
    best = 0.0
    for _ in range(3):
        start = time.thread_time()
        h = hashlib.sha256()
        for _ in range(total // chunk):
            h.update(data)
        h.digest()
        best = max(best, total / max(time.thread_time() - start, 1e-9))
    return best


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of ``values``; 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


# --- processes ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without chainproof's settings (a workspace's config decides)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINPROOF_")}
    env.update(extra)
    return env


def wait_http(port: int, path: str, proc: subprocess.Popen[bytes], what: str,
              timeout: float = 180.0, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                conn.request("GET", path)
                if conn.getresponse().status == 200:
                    return
            finally:
                conn.close()
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited during start-up (exit code {proc.returncode})")
        time.sleep(interval)
    raise RuntimeError(f"{what} did not answer {path} within {timeout:.0f} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server started by :func:`server` (its own process group: uvicorn's workers too)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def server(cmd: list[str], *, cwd: Path, env: dict[str, str], port: int, health: str,
           what: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``cmd`` in its own process group, wait for ``health`` to answer 200, stop it after."""
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            wait_http(port, health, proc, what)
            yield proc
        except BaseException:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            if tail:
                print(f"--- last lines of {what}'s log ---\n{tail}", file=sys.stderr)
            raise
        finally:
            stop(proc)


# --- PostgreSQL -----------------------------------------------------------------------------------


def create_database(name: str) -> str:
    """A fresh, empty database ``name`` (dropped first if left over); its SQLAlchemy URL."""
    from sqlalchemy import create_engine, text

    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def drop_database(name: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with contextlib.suppress(Exception), admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


# --- an HTTP/1.1 client without delayed-ACK stalls ------------------------------------------------


class Http:
    """One keep-alive HTTP/1.1 connection, as lean as the standard library allows.

    ``TCP_NODELAY`` so a request's last segment is never held back waiting for an ACK (and
    ``http.client`` sends a small body in the same ``send`` as the headers), and
    ``TCP_QUICKACK`` re-armed before every request and after every response (Linux clears it
    on its own), so the client never delays its ACK of a response the server wrote in several
    segments. No figure therefore contains a 40 ms delayed-ACK stall.
    """

    def __init__(self, port: int, headers: dict[str, str] | None = None,
                 timeout: float = 120.0) -> None:
        self.port = port
        self.headers = headers or {}
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        conn.connect()
        assert conn.sock is not None
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._quickack(conn)
        return conn

    @staticmethod
    def _quickack(conn: http.client.HTTPConnection) -> None:
        quickack = getattr(socket, "TCP_QUICKACK", None)
        if quickack is not None and conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        all_headers = {**self.headers, **(headers or {})}
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = self._connect()
            try:
                self.conn.request(method, path, body=body, headers=all_headers)
                # After the send: sending puts Linux back into delayed-ACK ("pingpong") mode,
                # so QUICKACK set before it would not cover the response's first segment.
                self._quickack(self.conn)
                response = self.conn.getresponse()
                data = response.read()
                self._quickack(self.conn)
                if response.will_close:
                    self.close()
                return response.status, data
            except (ConnectionError, http.client.RemoteDisconnected,
                    http.client.CannotSendRequest):
                # A keep-alive connection the server closed while idle: reconnect once.
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# --- CPU accounting -------------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu(pids: Sequence[int]) -> dict[int, float]:
    """CPU seconds (user + system) used so far by each live process in ``pids``."""
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / _TICK
    return out


def group_pids(pgid: int) -> list[int]:
    """Every live process in process group ``pgid`` (a server and its workers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid:
                pids.append(int(entry.name))
    return pids


def postgres_backends(dbname: str) -> list[int]:
    """PIDs of the PostgreSQL backends connected to ``dbname`` (they do the SQL's work)."""
    import psycopg

    dsn = PG_ADMIN.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [int(r[0]) for r in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", (dbname,)).fetchall()]
