"""Registry round trip over HTTP: chainproof's team server against an MLflow 3.x tracking server.

    .venv/bin/python benchmarks/registry_bench.py [--ops 300] [--no-mlflow] [--fresh-venv]

One operation is the workload MLflow's REST API supports too, run by one sequential client on a
keep-alive connection, both servers on SQLite on this machine in the same run:

1. create a model version with its bytes;
2. point the unprotected alias ``candidate`` at it (no approval: an EXPERIMENT namespace);
3. resolve the alias and check that it points at the new version.

How each system creates a model version from bytes:

* MLflow: upload the bytes as a run artifact (mlflow-artifacts proxy), then create a model
  version whose source is that run (2 calls; 4 per operation).
* chainproof, ``upload``: one call (POST /v1/model-versions/upload) that hashes the bytes as they
  arrive, refuses them unless they match the declared digest, stores them, and in one
  transaction adds the model asset version and pins it as the model's next version
  (3 calls per operation).
* chainproof, ``blob + register``: the same in two calls, as a client that already uploaded
  the bytes does it (PUT /v1/blobs/DIGEST, then POST /v1/model-versions with the digest, which
  re-hashes the stored blob) (4 calls per operation).

Every chainproof write is also appended to the RFC 6962 audit log and checkpointed (a signed
tree head) in its own transaction, by design; after each run the script verifies the whole log
(``audit verify``) and checks it grew by exactly three entries per operation. MLflow writes its
rows only.

MLflow is installed by this script into benchmarks/_work/venv-mlflow (``pip install
'mlflow>=3,<4'``), kept between runs because installing takes minutes (``--fresh-venv`` reinstalls
it); run data under benchmarks/_work/registry-bench is deleted at the end. Goal: chainproof
≥ 20x MLflow's ops/s.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chainproof.service import Chainproof
from chainproof.workspace import load_settings

WORK = Path(__file__).resolve().parent / "_work"
RUN_DIR = WORK / "registry-bench"
MLFLOW_VENV = WORK / "venv-mlflow"
NAMESPACE = "lab"
MODEL = "bench-model"
ALIAS = "candidate"
MODEL_BYTES = 4096
START_TIMEOUT = 120.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _model_bytes(i: int) -> bytes:
    # Distinct bytes per operation, so every upload is a new blob and every version new.
    seed = hashlib.sha256(f"bench-model-{i}-{time.time_ns()}".encode()).digest()
    return (seed * (MODEL_BYTES // len(seed) + 1))[:MODEL_BYTES]


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited during start-up (exit code {proc.returncode})")
        time.sleep(0.3)
    raise RuntimeError(f"{what} did not answer {url} within {START_TIMEOUT:.0f} s")


@contextlib.contextmanager
def _server(cmd: list[str], cwd: Path, env: dict[str, str], health: str,
            what: str) -> Iterator[None]:
    log = (cwd / f"{what}.log").open("wb")
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(health, proc, what)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


# --- chainproof -----------------------------------------------------------------------------------


class Calls:
    """Per-call latencies of one run, by label."""

    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = {}

    def __call__(self, label: str, response: httpx.Response, started: float) -> dict[str, Any]:
        self.latencies.setdefault(label, []).append(time.perf_counter() - started)
        return _ok(response)

    def summary(self) -> str:
        return ", ".join(f"{label} {statistics.median(v) * 1000:.2f}"
                         for label, v in self.latencies.items())


def bench_chainproof(ops: int, *, separate_upload: bool) -> tuple[float, Calls]:
    project = RUN_DIR / ("chainproof-blob" if separate_upload else "chainproof-upload")
    project.mkdir(parents=True)
    os.environ["CHAINPROOF_IDENTITY"] = "bench-admin"
    with Chainproof.init(project) as cp:
        cp.create_identity("svc-bench", "service")
        cp.grant_role("svc-bench", "trainer", NAMESPACE)
        cp.set_namespace_mode(NAMESPACE, "experiment")
        _, token = cp.create_token("svc-bench", timedelta(hours=2))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINPROOF_")}
    cmd = [sys.executable, "-m", "uvicorn", "chainproof.api.factory:app", "--factory",
           "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
           "--no-access-log"]
    calls = Calls()
    model = f"{NAMESPACE}/{MODEL}"
    with _server(cmd, project, env, f"{url}/v1/health", "chainproof"), \
            httpx.Client(base_url=url, timeout=60,
                         headers={"Authorization": f"Bearer {token}"}) as http:
        _ok(http.post("/v1/models", json={"model": model}))
        size_before = _log_size(project)
        payloads = [_model_bytes(i) for i in range(ops)]
        start = time.perf_counter()
        for data in payloads:
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            octets = {"Content-Type": "application/octet-stream"}
            if separate_upload:
                t = time.perf_counter()
                calls("blob", http.put(f"/v1/blobs/{digest}", content=data, headers=octets), t)
                t = time.perf_counter()
                version = calls("register", http.post("/v1/model-versions", json={
                    "model": model, "digest": digest, "asset_name": "bench-weights"}), t)
            else:
                t = time.perf_counter()
                version = calls("upload", http.post(
                    "/v1/model-versions/upload", content=data, headers=octets,
                    params={"model": model, "digest": digest, "asset_name": "bench-weights"}),
                    t)
            t = time.perf_counter()
            calls("alias", http.put("/v1/aliases", json={
                "model": model, "version": version["version"], "alias": ALIAS}), t)
            t = time.perf_counter()
            resolved = calls("resolve", http.get(f"/v1/aliases/{model}",
                                                 params={"alias": ALIAS}), t)
            if resolved["version"] != version["version"] or resolved["digest"] != digest:
                raise RuntimeError(f"chainproof resolved {resolved}, expected {version}")
        elapsed = time.perf_counter() - start
    _check_logged(project, size_before, ops)
    return ops / elapsed, calls


def _log_size(project: Path) -> int:
    with Chainproof.open(load_settings(project)) as cp:
        return cp.audit_verify().size


def _check_logged(project: Path, size_before: int, ops: int) -> None:
    """Every write reached the log: three entries an operation (asset version, model version,
    alias move), the whole log verifies, and the newest signed checkpoint covers all of it."""
    with Chainproof.open(load_settings(project)) as cp:
        report = cp.audit_verify()
    if report.size != size_before + 3 * ops or report.checkpoint_size != report.size:
        raise RuntimeError(f"expected {size_before + 3 * ops} checkpointed log entries, found "
                           f"{report.size} (checkpoint at {report.checkpoint_size})")


def _ok(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        raise RuntimeError(f"{response.request.method} {response.request.url} -> "
                           f"{response.status_code}: {response.text[:300]}")
    return response.json() if response.content else {}


# --- MLflow ---------------------------------------------------------------------------------------


def install_mlflow(fresh: bool) -> Path | None:
    """MLflow in its own venv (its pins must not touch chainproof's); None if it cannot be had."""
    mlflow = MLFLOW_VENV / "bin" / "mlflow"
    if fresh and MLFLOW_VENV.exists():
        shutil.rmtree(MLFLOW_VENV)
    if mlflow.exists():
        return mlflow
    print("installing mlflow>=3,<4 into", MLFLOW_VENV, "(a few minutes) ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(MLFLOW_VENV)], check=True)
        subprocess.run([str(MLFLOW_VENV / "bin" / "pip"), "install", "-q", "mlflow>=3,<4"],
                       check=True, timeout=1200)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        print(f"cannot install MLflow ({exc}); reporting chainproof alone", file=sys.stderr)
        return None
    return mlflow if mlflow.exists() else None


def bench_mlflow(mlflow: Path, ops: int) -> tuple[float, Calls]:
    home = RUN_DIR / "mlflow"
    home.mkdir(parents=True)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": url}
    cmd = [str(mlflow), "server", "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
           "--artifacts-destination", str(home / "artifacts"),
           "--host", "127.0.0.1", "--port", str(port)]
    api = "/api/2.0/mlflow"
    with _server(cmd, home, env, f"{url}/health", "mlflow"), \
            httpx.Client(base_url=url, timeout=60) as http:
        experiment = _ok(http.post(f"{api}/experiments/create",
                                   json={"name": "bench"}))["experiment_id"]
        run = _ok(http.post(f"{api}/runs/create", json={
            "experiment_id": experiment, "start_time": int(time.time() * 1000)}))["run"]
        run_id = run["info"]["run_id"]
        _ok(http.post(f"{api}/registered-models/create", json={"name": MODEL}))
        payloads = [_model_bytes(i) for i in range(ops)]
        calls = Calls()
        start = time.perf_counter()
        for i, data in enumerate(payloads):
            # The run's artifacts live at mlflow-artifacts:/<experiment>/<run>/artifacts/...
            # (the server proxies uploads to --artifacts-destination).
            path = f"{experiment}/{run_id}/artifacts/model-{i}/model.bin"
            t = time.perf_counter()
            calls("artifact", http.put(f"/api/2.0/mlflow-artifacts/artifacts/{path}",
                                       content=data,
                                       headers={"Content-Type": "application/octet-stream"}), t)
            t = time.perf_counter()
            version = calls("create-version", http.post(f"{api}/model-versions/create", json={
                "name": MODEL, "source": f"runs:/{run_id}/model-{i}",
                "run_id": run_id}), t)["model_version"]["version"]
            t = time.perf_counter()
            calls("alias", http.post(f"{api}/registered-models/alias",
                                     json={"name": MODEL, "alias": ALIAS, "version": version}), t)
            t = time.perf_counter()
            resolved = calls("resolve", http.get(f"{api}/registered-models/alias",
                                                 params={"name": MODEL, "alias": ALIAS}), t)
            if resolved["model_version"]["version"] != version:
                raise RuntimeError(f"MLflow resolved {resolved}, expected v{version}")
        elapsed = time.perf_counter() - start
    return ops / elapsed, calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=300, help="operations per system")
    parser.add_argument("--no-mlflow", action="store_true", help="chainproof only")
    parser.add_argument("--fresh-venv", action="store_true", help="reinstall MLflow")
    args = parser.parse_args()
    if RUN_DIR.exists():
        shutil.rmtree(RUN_DIR)
    RUN_DIR.mkdir(parents=True)
    try:
        mlflow = None if args.no_mlflow else install_mlflow(args.fresh_venv)
        print(f"{args.ops} operations each: create a model version from bytes, set alias "
              f"'{ALIAS}', resolve it (sequential client, keep-alive, SQLite); median ms per call")
        rates = {}
        for label, separate in (("chainproof upload", False),
                                ("chainproof blob+register", True)):
            rate, calls = bench_chainproof(args.ops, separate_upload=separate)
            rates[label] = rate
            print(f"{label:25s}: {rate:7.1f} ops/s ({1000 / rate:6.2f} ms/op; "
                  f"{calls.summary()}); log verified, 3 entries/op, all checkpointed")
        if mlflow is None:
            print("MLflow                   : not measured (--no-mlflow, or it cannot be "
                  "installed)")
            return 0
        version = subprocess.run([str(mlflow), "--version"], capture_output=True, text=True,
                                 check=False).stdout.strip()
        ml_rate, ml_calls = bench_mlflow(mlflow, args.ops)
        print(f"{'MLflow':25s}: {ml_rate:7.1f} ops/s ({1000 / ml_rate:6.2f} ms/op; "
              f"{ml_calls.summary()}; {version})")
        for label, rate in rates.items():
            ratio = rate / ml_rate
            print(f"ratio {label} / MLflow: {ratio:5.1f}x  (goal >= 20x: "
                  f"{'met' if ratio >= 20 else 'NOT met'})")
    finally:
        shutil.rmtree(RUN_DIR, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
