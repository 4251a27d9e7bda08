"""Registry at saturation: chainproof's team server vs MLflow's, concurrent clients, PostgreSQL.

    .venv/bin/python benchmarks/registry_bench.py [--clients 1,8,32] [--db postgresql|sqlite]
        [--seconds 10] [--no-mlflow] [--fresh-venv]

Both servers run at once on this machine over their own, freshly created PostgreSQL database
(127.0.0.1:5432, trust auth; dropped at the end): chainproof's app under uvicorn with as many
worker processes as cores (what ``chainproof server --workers N`` runs, without the access log),
MLflow's ``mlflow server`` with its default workers. For each client count the two systems are
measured back to back (interleaved, so background load hits both alike), each in two phases:

* **write**: N clients, each on its own model, loop one write operation:
  1. create a model version from 4 KiB of new bytes,
  2. point the unprotected alias ``candidate`` at it (an EXPERIMENT namespace: no approval),
  3. resolve the alias and check it points at the new version.
  chainproof: POST /v1/model-versions/upload (hashes, stores, adds the asset version and pins
  it in one transaction), PUT /v1/aliases, GET /v1/aliases — 3 calls. MLflow: PUT the bytes as a
  run artifact (mlflow-artifacts proxy), POST model-versions/create, POST registered-models/alias,
  GET registered-models/alias — 4 calls (it has no one-call upload).
* **mixed** (read-heavy): N readers plus max(1, N/4) writers at once; readers cycle through
  list versions, get alias, explain on the models the writers write. chainproof: GET
  /v1/models/M, GET /v1/aliases/M, GET /v1/explain/M@candidate (lineage both ways, every
  version's stored bytes re-hashed). MLflow has no explain: its nearest is the model version and
  the run that produced it (GET model-versions/get + GET runs/get, timed as one read);
  list versions is GET model-versions/search.

In the write phase one more client reads a one-version model at a fixed pace (10 reads/s, open
loop): its latencies are the read p99 while writes run, without adding load of its own. The
run starts by timing a bare PostgreSQL insert + commit (the WAL flush every write pays).

Clients are threads in this process, one keep-alive connection each, with TCP_NODELAY and
TCP_QUICKACK (re-armed after every send and response), so no figure is a delayed-ACK stall.
Every call must answer 2xx; errors are counted and fail the run. Reported per client count and
system: write ops/s, write-op p50/p99, per-call p50/p99, and in the mixed phase read ops/s and
read p50/p99 while the writers run. While each phase runs, a sampler polls pg_stat_activity
for backends waiting on a lock (the log head row every chainproof write locks), and the CPU
that the server, its database backends and the client used per write op is reported.

Afterwards chainproof's log must have grown by exactly three entries per write operation (asset
version, model version, alias move), the newest signed checkpoint must cover all of it, and
``chainproof audit verify`` (the CLI) must pass.

MLflow is installed by this script into benchmarks/_work/venv-mlflow (``pip install
'mlflow>=3,<4' psycopg2-binary``), kept between runs (``--fresh-venv`` reinstalls it). Goals
(issue 16): chainproof >= 10x MLflow's write ops/s at 32 clients, read p99 < 50 ms while writes
run.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    CHAINPROOF,
    PG_ADMIN,
    WORK,
    Http,
    clean_env,
    cores,
    create_database,
    drop_database,
    free_port,
    group_pids,
    loadavg,
    percentile,
    postgres_backends,
    process_cpu,
    server,
    stamp,
)

from chainproof.service import Chainproof
from chainproof.workspace import load_settings

RUN_DIR = WORK / "registry-bench"
MLFLOW_VENV = WORK / "venv-mlflow"
NAMESPACE = "lab"
ALIAS = "candidate"
MODEL_BYTES = 4096
CP_DB = "chainproof_registry_bench"
ML_DB = "mlflow_registry_bench"
GOAL_RATIO = 10.0
GOAL_READ_P99 = 0.050


def _payload(key: str, i: int) -> bytes:
    # Distinct bytes per operation, so every upload is a new blob and every version new.
    seed = hashlib.sha256(f"bench-{key}-{i}-{time.time_ns()}".encode()).digest()
    return (seed * (MODEL_BYTES // len(seed) + 1))[:MODEL_BYTES]


class CallError(RuntimeError):
    pass


def _json(status: int, body: bytes, what: str) -> Any:
    if not 200 <= status < 300:
        raise CallError(f"{what} -> {status}: {body[:300]!r}")
    return json.loads(body) if body else {}


Timer = Callable[[str, float], None]


def _timed(timer: Timer, label: str, call: Callable[[], tuple[int, bytes]], what: str) -> Any:
    t = time.perf_counter()
    status, body = call()
    timer(label, time.perf_counter() - t)
    return _json(status, body, what)


# --- the two systems ------------------------------------------------------------------------------


class ChainproofSystem:
    name = "chainproof"
    calls_per_write = 3

    def __init__(self, port: int, token: str, pgid: int) -> None:
        self.port = port
        self.pgid = pgid
        self.headers = {"Authorization": f"Bearer {token}"}

    @staticmethod
    def model(key: str) -> str:
        return f"{NAMESPACE}/bench-{key}"

    def create_model(self, http: Http, key: str) -> None:
        body = json.dumps({"model": self.model(key)}).encode()
        _json(*http.request("POST", "/v1/models", body, {"Content-Type": "application/json"}),
              "create model")

    def write(self, http: Http, key: str, i: int, timer: Timer) -> None:
        model = self.model(key)
        data = _payload(key, i)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        query = urllib.parse.urlencode({"model": model, "digest": digest,
                                        "asset_name": f"bench-weights-{key}"})
        version = _timed(timer, "upload", lambda: http.request(
            "POST", f"/v1/model-versions/upload?{query}", data,
            {"Content-Type": "application/octet-stream"}), "upload")["version"]
        alias = json.dumps({"model": model, "version": version, "alias": ALIAS}).encode()
        _timed(timer, "set-alias", lambda: http.request(
            "PUT", "/v1/aliases", alias, {"Content-Type": "application/json"}), "set alias")
        resolved = _timed(timer, "resolve", lambda: http.request(
            "GET", f"/v1/aliases/{model}?alias={ALIAS}"), "resolve")
        if resolved["version"] != version or resolved["digest"] != digest:
            raise CallError(f"chainproof resolved {resolved}, expected v{version} {digest}")

    def read(self, http: Http, key: str, kind: str, timer: Timer) -> None:
        model = self.model(key)
        if kind == "list":
            _timed(timer, kind, lambda: http.request("GET", f"/v1/models/{model}"), kind)
        elif kind == "alias":
            _timed(timer, kind, lambda: http.request(
                "GET", f"/v1/aliases/{model}?alias={ALIAS}"), kind)
        else:
            _timed(timer, kind, lambda: http.request(
                "GET", f"/v1/explain/{model}@{ALIAS}"), kind)


class MlflowSystem:
    name = "MLflow"
    calls_per_write = 4
    api = "/api/2.0/mlflow"

    def __init__(self, port: int, pgid: int) -> None:
        self.port = port
        self.pgid = pgid
        self.headers: dict[str, str] = {}
        self.experiment = ""
        self.run_id = ""

    @staticmethod
    def model(key: str) -> str:
        return f"bench-{key}"

    def _post(self, http: Http, path: str, doc: dict[str, Any]) -> tuple[int, bytes]:
        return http.request("POST", self.api + path, json.dumps(doc).encode(),
                            {"Content-Type": "application/json"})

    def prepare(self, http: Http) -> None:
        self.experiment = _json(*self._post(http, "/experiments/create", {"name": "bench"}),
                                "create experiment")["experiment_id"]
        run = _json(*self._post(http, "/runs/create", {
            "experiment_id": self.experiment, "start_time": int(time.time() * 1000)}),
            "create run")
        self.run_id = run["run"]["info"]["run_id"]

    def create_model(self, http: Http, key: str) -> None:
        _json(*self._post(http, "/registered-models/create", {"name": self.model(key)}),
              "create registered model")

    def write(self, http: Http, key: str, i: int, timer: Timer) -> None:
        model = self.model(key)
        data = _payload(key, i)
        # The run's artifacts live at mlflow-artifacts:/<experiment>/<run>/artifacts/...
        # (the server proxies uploads to --artifacts-destination).
        path = f"{self.experiment}/{self.run_id}/artifacts/m{key}-{i}/model.bin"
        _timed(timer, "artifact", lambda: http.request(
            "PUT", f"/api/2.0/mlflow-artifacts/artifacts/{path}", data,
            {"Content-Type": "application/octet-stream"}), "artifact upload")
        version = _timed(timer, "create-version", lambda: self._post(
            http, "/model-versions/create", {"name": model, "source":
                                             f"runs:/{self.run_id}/m{key}-{i}",
                                             "run_id": self.run_id}),
            "create version")["model_version"]["version"]
        _timed(timer, "set-alias", lambda: self._post(
            http, "/registered-models/alias", {"name": model, "alias": ALIAS,
                                               "version": version}), "set alias")
        resolved = _timed(timer, "resolve", lambda: http.request(
            "GET", f"{self.api}/registered-models/alias?name={model}&alias={ALIAS}"), "resolve")
        if resolved["model_version"]["version"] != version:
            raise CallError(f"MLflow resolved {resolved}, expected v{version}")

    def read(self, http: Http, key: str, kind: str, timer: Timer) -> None:
        model = self.model(key)
        if kind == "list":
            query = urllib.parse.urlencode({"filter": f"name='{model}'"})
            _timed(timer, kind, lambda: http.request(
                "GET", f"{self.api}/model-versions/search?{query}"), kind)
        elif kind == "alias":
            _timed(timer, kind, lambda: http.request(
                "GET", f"{self.api}/registered-models/alias?name={model}&alias={ALIAS}"), kind)
        else:  # explain: the version behind the alias and the run that produced it
            def both() -> tuple[int, bytes]:
                status, body = http.request(
                    "GET", f"{self.api}/registered-models/alias?name={model}&alias={ALIAS}")
                if status != 200:
                    return status, body
                run_id = json.loads(body)["model_version"]["run_id"]
                return http.request("GET", f"{self.api}/runs/get?run_id={run_id}")
            _timed(timer, kind, both, kind)


System = ChainproofSystem | MlflowSystem


# --- running a phase ------------------------------------------------------------------------------


@dataclass
class Phase:
    label: str
    writers: int
    readers: int
    elapsed: float = 0.0
    write_ops: int = 0
    read_ops: int = 0
    write_latency: list[float] = field(default_factory=list)
    read_latency: dict[str, list[float]] = field(default_factory=dict)
    calls: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    lock_waits: float | None = None  # mean backends waiting on a lock
    active: float | None = None
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds: server, database, client
    probe: dict[str, list[float]] = field(default_factory=dict)  # paced reads beside writers

    @property
    def write_rate(self) -> float:
        return self.write_ops / self.elapsed if self.elapsed else 0.0

    @property
    def read_rate(self) -> float:
        return self.read_ops / self.elapsed if self.elapsed else 0.0

    def all_reads(self) -> list[float]:
        return [x for v in self.read_latency.values() for x in v]


READ_KINDS = ("list", "alias", "explain")


PROBE_INTERVAL = 0.1


def run_phase(system: System, label: str, writers: int, readers: int, seconds: float,
              counter: Iterator[int], prefix: str, probe: bool = False) -> Phase:
    """``writers`` clients writing models ``prefix-0`` ... and ``readers`` clients reading them,
    for ``seconds``; each client on its own keep-alive connection. With ``probe``, one more
    client reads ``prefix-probe`` (a model of one version, so its reads cost the same all
    along) at a fixed pace (every PROBE_INTERVAL s, open loop: it adds little load), so its
    latencies are what a reader sees while the writers saturate."""
    phase = Phase(label, writers, readers)
    lock = threading.Lock()
    barrier = threading.Barrier(writers + readers + 1)
    deadline = [0.0]
    go = threading.Event()  # set once the deadline is
    finished: list[float] = []

    def worker(client: int, writing: bool) -> None:
        http = Http(system.port, system.headers)
        local_calls: dict[str, list[float]] = {}
        writes: list[float] = []
        reads: dict[str, list[float]] = {}

        def timer(name: str, s: float) -> None:
            local_calls.setdefault(name, []).append(s)

        try:
            http.request("GET", "/health" if isinstance(system, MlflowSystem) else "/v1/health")
            barrier.wait()
            go.wait()
            k = client
            while time.perf_counter() < deadline[0]:
                t = time.perf_counter()
                if writing:
                    system.write(http, f"{prefix}-{client}", next(counter), timer)
                    writes.append(time.perf_counter() - t)
                else:
                    kind = READ_KINDS[k % len(READ_KINDS)]
                    k += 1
                    # Readers read the models the writers are writing.
                    system.read(http, f"{prefix}-{client % max(writers, 1)}", kind, timer)
                    reads.setdefault(kind, []).append(time.perf_counter() - t)
        except Exception as exc:  # counted; the run fails on any error
            with lock:
                phase.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            http.close()
            with lock:
                finished.append(time.perf_counter())
                phase.write_ops += len(writes)
                phase.write_latency += writes
                for kind, v in reads.items():
                    phase.read_latency.setdefault(kind, []).extend(v)
                    phase.read_ops += len(v)
                for name, v in local_calls.items():
                    phase.calls.setdefault(name, []).extend(v)

    def prober() -> None:
        http = Http(system.port, system.headers)
        reads: dict[str, list[float]] = {}
        try:
            go.wait()
            k = 0
            next_at = time.perf_counter()
            while time.perf_counter() < deadline[0]:
                kind = READ_KINDS[k % len(READ_KINDS)]
                k += 1
                t = time.perf_counter()
                system.read(http, f"{prefix}-probe", kind, lambda *_: None)
                reads.setdefault(kind, []).append(time.perf_counter() - t)
                next_at += PROBE_INTERVAL
                time.sleep(max(0.0, next_at - time.perf_counter()))
        except Exception as exc:
            with lock:
                phase.errors.append(f"probe: {type(exc).__name__}: {exc}")
        finally:
            http.close()
            with lock:
                phase.probe = reads

    threads = [threading.Thread(target=worker, args=(c, True)) for c in range(writers)]
    threads += [threading.Thread(target=worker, args=(c, False)) for c in range(readers)]
    if probe:
        threads.append(threading.Thread(target=prober))
    for t in threads:
        t.start()
    barrier.wait(timeout=120)
    start = time.perf_counter()
    deadline[0] = start + seconds
    go.set()
    for t in threads:
        t.join()
    phase.elapsed = max(finished) - start
    return phase


@contextlib.contextmanager
def lock_sampler(dbname: str | None, phase_box: list[Phase]) -> Iterator[None]:
    """Sample pg_stat_activity every 20 ms: backends of ``dbname`` running a statement, and
    those of them waiting on a heavyweight lock (the log head row's FOR UPDATE)."""
    if dbname is None:
        yield
        return
    import psycopg

    stop = threading.Event()
    samples: list[tuple[int, int]] = []

    def sample() -> None:
        dsn = PG_ADMIN.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn, autocommit=True) as conn:
            while not stop.wait(0.02):
                row = conn.execute(
                    "SELECT count(*) FILTER (WHERE state = 'active'), "
                    "count(*) FILTER (WHERE state = 'active' AND wait_event_type = 'Lock') "
                    "FROM pg_stat_activity WHERE datname = %s", (dbname,)).fetchone()
                if row is not None:
                    samples.append((int(row[0]), int(row[1])))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        if samples and phase_box:
            phase_box[0].active = sum(a for a, _ in samples) / len(samples)
            phase_box[0].lock_waits = sum(w for _, w in samples) / len(samples)


def _cpu_snapshot(system: System, pg_db: str | None) -> dict[str, dict[int, float]]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"server": process_cpu(group_pids(system.pgid)),
            "database": process_cpu(postgres_backends(pg_db)) if pg_db else {},
            "client": {0: usage.ru_utime + usage.ru_stime}}


def _cpu_delta(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]
               ) -> dict[str, float]:
    return {part: sum(v - before[part].get(pid, 0.0) for pid, v in after[part].items())
            for part in after}


def measure(system: System, clients: int, seconds: float, counter: Iterator[int],
            pg_db: str | None) -> tuple[Phase, Phase, int]:
    """Both phases at ``clients``; each on fresh models (so a listing's length does not depend
    on what earlier phases wrote). Returns the phases and the untimed set-up writes."""
    results = []
    seeded = 0
    for label, writers, readers in (("write", clients, 0),
                                    ("mixed", max(1, clients // 4), clients)):
        prefix = f"{label[0]}{clients}"
        http = Http(system.port, system.headers)
        keys = [f"{prefix}-{c}" for c in range(writers)] + ([] if readers else [f"{prefix}-probe"])
        for key in keys:
            system.create_model(http, key)
            if readers or key.endswith("probe"):  # a version under the alias before reads
                system.write(http, key, next(counter), lambda *_: None)
                seeded += 1
        http.close()
        box: list[Phase] = []
        stamp(f"{system.name}, {clients} clients, {label} phase: start")
        before = _cpu_snapshot(system, pg_db)
        with lock_sampler(pg_db, box):
            phase = run_phase(system, label, writers, readers, seconds, counter, prefix,
                              probe=not readers)
            box.append(phase)
        # Backends that connected during the phase count from zero (pools grow on demand).
        phase.cpu = _cpu_delta(before, _cpu_snapshot(system, pg_db))
        stamp(f"{system.name}, {clients} clients, {label} phase: end")
        if phase.errors:
            raise RuntimeError(f"{system.name} {label} at {clients} clients: "
                               f"{len(phase.errors)} failed clients, first: {phase.errors[0]}")
        results.append(phase)
        _print_phase(system, clients, phase)
    return results[0], results[1], seeded


def _probe_p99(p: Phase) -> float:
    return percentile([x for v in p.probe.values() for x in v], 99)


def _pq(values: list[float]) -> str:
    return f"{percentile(values, 50) * 1000:.1f}/{percentile(values, 99) * 1000:.1f}"


def _print_phase(system: System, clients: int, p: Phase) -> None:
    calls = ", ".join(f"{k} {_pq(v)}" for k, v in p.calls.items()
                      if k not in READ_KINDS)
    line = (f"  {system.name:10s} {clients:3d} clients {p.label:5s}: writes "
            f"{p.write_rate:7.1f} ops/s (p50/p99 {_pq(p.write_latency)} ms/op"
            + (f"; calls {calls}" if calls else "") + ")")
    if p.readers:
        per_kind = ", ".join(f"{k} {_pq(v)}" for k, v in p.read_latency.items())
        line += (f"\n  {'':10s} {'':11s} {'':5s}  reads {p.read_rate:7.1f} ops/s by {p.readers} "
                 f"readers beside {p.writers} writer(s): p50/p99 {_pq(p.all_reads())} ms "
                 f"({per_kind})")
    if p.probe:
        per_kind = ", ".join(f"{k} {_pq(v)}" for k, v in p.probe.items())
        every = [x for v in p.probe.values() for x in v]
        line += (f"\n  {'':10s} {'':11s} {'':5s}  paced probe reads ({1 / PROBE_INTERVAL:.0f}/s) "
                 f"beside the writers: p50/p99 {_pq(every)} ms ({per_kind})")
    if p.lock_waits is not None:
        line += (f"\n  {'':10s} {'':11s} {'':5s}  PostgreSQL: {p.active:.1f} backends busy on "
                 f"average, {p.lock_waits:.1f} of them waiting on a lock")
    if p.cpu and p.write_ops and not p.readers:
        per_op = {k: v / p.write_ops * 1000 for k, v in p.cpu.items()}
        total = per_op["server"] + per_op.get("database", 0.0)
        line += (f"\n  {'':10s} {'':11s} {'':5s}  CPU per write op: server "
                 f"{per_op['server']:.1f} ms + database {per_op.get('database', 0.0):.1f} ms "
                 f"(+ client {per_op['client']:.1f} ms) -> {cores()} cores allow at most "
                 f"{cores() * 1000 / total:.0f} writes/s of server + database work "
                 f"({p.cpu['server'] + p.cpu.get('database', 0.0) + p.cpu['client']:.1f} of "
                 f"{cores() * p.elapsed:.1f} core-seconds used by both + client)")
    print(line, flush=True)


# --- set-up ---------------------------------------------------------------------------------------


def commit_latency(n: int = 200) -> tuple[float, float]:
    """p50, p99 seconds of a one-row insert + commit on a throwaway PostgreSQL database: the
    WAL flush every write transaction pays (and, here, pays while holding the log head)."""
    import psycopg

    name = "chainproof_commit_probe"
    url = create_database(name).replace("postgresql+psycopg://", "postgresql://")
    try:
        with psycopg.connect(url) as conn:
            conn.execute("CREATE TABLE t (id serial PRIMARY KEY, v bytea)")
            conn.commit()
            latencies = []
            for _ in range(n):
                t = time.perf_counter()
                conn.execute("INSERT INTO t (v) VALUES (%s)", (b"x" * 400,))
                conn.commit()
                latencies.append(time.perf_counter() - t)
    finally:
        drop_database(name)
    return percentile(latencies, 50), percentile(latencies, 99)


def setup_chainproof(project: Path, db_url: str | None) -> str:
    project.mkdir(parents=True)
    os.environ["CHAINPROOF_IDENTITY"] = "bench-admin"
    with Chainproof.init(project, db=db_url) as cp:
        cp.create_identity("svc-bench", "service")
        cp.grant_role("svc-bench", "trainer", NAMESPACE)
        cp.set_namespace_mode(NAMESPACE, "experiment")
        _, token = cp.create_token("svc-bench", timedelta(hours=4))
    return token


def log_size(project: Path) -> int:
    """The size of chainproof's log at its newest signed checkpoint (public API)."""
    with Chainproof.open(load_settings(project)) as cp:
        return int(cp.latest_checkpoint()["size"])


def audit_verify_cli(project: Path) -> dict[str, Any]:
    out = subprocess.run([CHAINPROOF, "audit", "verify", "--json"], cwd=project,
                         env=clean_env(CHAINPROOF_IDENTITY="bench-admin"), capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"chainproof audit verify failed:\n{out.stdout}\n{out.stderr}")
    return dict(json.loads(out.stdout))


def install_mlflow(fresh: bool) -> Path | None:
    """MLflow in its own venv (its pins must not touch chainproof's); None if it cannot be had."""
    mlflow = MLFLOW_VENV / "bin" / "mlflow"
    if fresh and MLFLOW_VENV.exists():
        shutil.rmtree(MLFLOW_VENV)
    if mlflow.exists():
        return mlflow
    print("installing mlflow>=3,<4 and psycopg2-binary into", MLFLOW_VENV,
          "(a few minutes) ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(MLFLOW_VENV)], check=True)
        subprocess.run([str(MLFLOW_VENV / "bin" / "pip"), "install", "-q", "mlflow>=3,<4",
                        "psycopg2-binary"], check=True, timeout=1200)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        print(f"cannot install MLflow ({exc}); reporting chainproof alone", file=sys.stderr)
        return None
    return mlflow if mlflow.exists() else None


class _Counter:
    """A thread-safe operation counter usable with ``next()``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._n = 0

    def __iter__(self) -> _Counter:
        return self

    def __next__(self) -> int:
        with self._lock:
            self._n += 1
            return self._n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1,8,32", help="comma-separated client counts")
    parser.add_argument("--db", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--workers", type=int, default=cores(),
                        help="chainproof server worker processes (default: cores)")
    parser.add_argument("--no-mlflow", action="store_true", help="chainproof only")
    parser.add_argument("--fresh-venv", action="store_true", help="reinstall MLflow")
    args = parser.parse_args()
    client_counts = [int(c) for c in args.clients.split(",") if c.strip()]
    most = max(client_counts)
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    RUN_DIR.mkdir(parents=True)
    pg = args.db == "postgresql"
    print(f"machine: {cores()} cores, load average {loadavg()}; db {args.db}; clients "
          f"{client_counts}; {args.seconds:g} s per phase; p50/p99 in ms")
    try:
        mlflow = None if args.no_mlflow else install_mlflow(args.fresh_venv)
        if pg:
            p50, p99 = commit_latency()
            print(f"PostgreSQL insert + commit (WAL flush) on this machine now: p50 "
                  f"{p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms")
        with contextlib.ExitStack() as stack:
            # chainproof: workspace, identities, token; then its server.
            project = RUN_DIR / "chainproof"
            cp_url = create_database(CP_DB) if pg else None
            token = setup_chainproof(project, cp_url)
            cp_port = free_port()
            cmd = [sys.executable, "-m", "uvicorn", "chainproof.api.factory:app", "--factory",
                   "--workers", str(args.workers), "--host", "127.0.0.1", "--port",
                   str(cp_port), "--log-level", "warning", "--no-access-log"]
            cp_proc = stack.enter_context(server(
                cmd, cwd=project, env=clean_env(), port=cp_port, health="/v1/health",
                what="chainproof server", log=RUN_DIR / "chainproof.log"))
            systems: list[System] = [ChainproofSystem(cp_port, token, cp_proc.pid)]
            print(f"chainproof server: uvicorn, {args.workers} worker processes, "
                  f"{'PostgreSQL' if pg else 'SQLite'}")
            if mlflow is not None:
                home = RUN_DIR / "mlflow"
                home.mkdir()
                ml_port = free_port()
                if pg:
                    # psycopg2, named: SQLAlchemy 2.1 defaults to psycopg 3
                    ml_url = create_database(ML_DB).replace("postgresql+psycopg://",
                                                            "postgresql+psycopg2://")
                else:
                    ml_url = f"sqlite:///{home / 'mlflow.db'}"
                version = subprocess.run([str(mlflow), "--version"], capture_output=True,
                                         text=True, check=False).stdout.strip()
                cmd = [str(mlflow), "server", "--backend-store-uri", ml_url,
                       "--artifacts-destination", str(home / "artifacts"),
                       "--host", "127.0.0.1", "--port", str(ml_port)]
                ml_proc = stack.enter_context(server(
                    cmd, cwd=home, env=clean_env(), port=ml_port, health="/health",
                    what="MLflow server", log=RUN_DIR / "mlflow.log"))
                ml = MlflowSystem(ml_port, ml_proc.pid)
                systems.append(ml)
                print(f"MLflow server: {version}, its default workers, "
                      f"{'PostgreSQL' if pg else 'SQLite'}")

            counter = _Counter()
            for system in systems:
                if isinstance(system, MlflowSystem):
                    http = Http(system.port)
                    system.prepare(http)
                    http.close()
            size_before = log_size(project)
            cp_writes = cp_models = 0
            # Warm-up, not reported: every worker process imports, connects and compiles its
            # lazy parts on its first requests (MLflow's do so visibly).
            stamp("warm-up: start")
            for system in systems:
                http = Http(system.port, system.headers)
                warm = min(8, most)
                for c in range(warm):
                    system.create_model(http, f"warm-{c}")
                http.close()
                phase = run_phase(system, "warm-up", warm, 0, min(3.0, args.seconds), counter,
                                  "warm")
                if phase.errors:
                    raise RuntimeError(f"{system.name} warm-up: {phase.errors[0]}")
                if isinstance(system, ChainproofSystem):
                    cp_writes += phase.write_ops
                    cp_models += warm
            stamp("warm-up: end")
            results: dict[tuple[str, int], tuple[Phase, Phase]] = {}
            for clients in client_counts:
                for system in systems:
                    pg_db = (CP_DB if isinstance(system, ChainproofSystem) else ML_DB) \
                        if pg else None
                    w, m, seeded = measure(system, clients, args.seconds, counter, pg_db)
                    results[(system.name, clients)] = (w, m)
                    if isinstance(system, ChainproofSystem):
                        cp_writes += w.write_ops + m.write_ops + seeded
                        cp_models += w.writers + m.writers + 1  # + the probe's model

        # Servers stopped: every chainproof write logged and checkpointed, the log verifies.
        stamp("chainproof audit verify (CLI): start")
        report = audit_verify_cli(project)
        stamp("chainproof audit verify (CLI): end")
        expected = size_before + cp_models + 3 * cp_writes
        logged = (report["size"] == expected and report["checkpoint_size"] == report["size"])
        print(f"chainproof log: {report['size']} entries (expected {size_before} + {cp_models} "
              f"models + 3 x {cp_writes} writes = {expected}), newest checkpoint at "
              f"{report['checkpoint_size']}; `chainproof audit verify` passed; log grew as "
              f"expected: {'yes' if logged else 'NO'}")

        print("\nsummary (write ops/s; p99 ms of reads while writes run):")
        for clients in client_counts:
            cw, cm = results[("chainproof", clients)]
            line = (f"  {clients:3d} clients: chainproof {cw.write_rate:6.1f} writes/s "
                    f"(p50/p99 {_pq(cw.write_latency)} ms), paced read p99 beside writers "
                    f"{_probe_p99(cw) * 1000:.1f} ms, mixed-phase read p99 "
                    f"{percentile(cm.all_reads(), 99) * 1000:.1f} ms")
            if ("MLflow", clients) in results:
                mw, mm = results[("MLflow", clients)]
                line += (f"; MLflow {mw.write_rate:6.1f} writes/s (p50/p99 "
                         f"{_pq(mw.write_latency)} ms), paced read p99 "
                         f"{_probe_p99(mw) * 1000:.1f} ms, mixed read p99 "
                         f"{percentile(mm.all_reads(), 99) * 1000:.1f} ms; ratio "
                         f"{cw.write_rate / mw.write_rate:.2f}x writes, "
                         f"{cm.read_rate / mm.read_rate:.2f}x mixed-phase reads"
                         if mw.write_rate and mm.read_rate else "")
            print(line)
        if ("MLflow", most) in results:
            ratio = results[("chainproof", most)][0].write_rate / \
                results[("MLflow", most)][0].write_rate
            print(f"goal >= {GOAL_RATIO:g}x MLflow's writes at {most} clients: "
                  f"{'met' if ratio >= GOAL_RATIO else 'NOT met'} ({ratio:.2f}x)")
        p99 = _probe_p99(results[("chainproof", most)][0])
        mixed = percentile(results[("chainproof", most)][1].all_reads(), 99)
        print(f"goal read p99 < {GOAL_READ_P99 * 1000:.0f} ms while writes run ({most} clients): "
              f"{'met' if p99 < GOAL_READ_P99 else 'NOT met'} ({p99 * 1000:.1f} ms for paced "
              f"reads beside {most} writers; {mixed * 1000:.1f} ms in the saturated mixed phase)")
        return 0 if logged else 1
    finally:
        if pg:
            drop_database(CP_DB)
            drop_database(ML_DB)
        shutil.rmtree(RUN_DIR, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
