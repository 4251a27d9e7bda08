"""Shared fixtures: every service-level test runs on both deployment shapes.

``backend`` is parametrised over ``sqlite+local`` (the embedded default) and ``postgres+s3``
(the team shape: PostgreSQL at 127.0.0.1:5432 and an S3 store served over real HTTP by moto's
standalone server, started once per session). PostgreSQL tests use one fresh database per test
worker, truncated between tests.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

PG_ADMIN_URL = os.environ.get("CHAINPROOF_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def shared_vectors() -> Path:
    """The peers' test material: ``<repo>/../shared/vectors`` (as laid out in CI)."""
    return REPO.parent / "shared" / "vectors"


# --- CI strictness: what may skip on a laptop must fail in CI -------------------------------------

def in_ci() -> bool:
    """``CI=true`` (or 1/yes): set by CI runners, and by `.ci/run`."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


# What the test suite imports beyond the runtime dependencies (the `dev` extra installs them).
TEST_DEPENDENCIES = ("moto", "model_signing", "OpenSSL", "hypothesis", "schemathesis", "torch",
                     "onnx", "safetensors", "polars", "xdist")

# Skip reasons that mean "something the run should have had is missing": in CI they fail.
_MISSING = re.compile(r"could not import|No module named|not installed|not importable|"
                      r"vectors|\.\./shared|shared/", re.IGNORECASE)


def pytest_sessionstart(session: pytest.Session) -> None:
    if not in_ci() or hasattr(session.config, "workerinput"):
        return
    import importlib.util

    problems = []
    if not shared_vectors().is_dir():
        problems.append(f"the shared test vectors are missing: expected {shared_vectors()} "
                        "(CI lays shared/ beside the clone)")
    missing = [name for name in TEST_DEPENDENCIES if importlib.util.find_spec(name) is None]
    if missing:
        problems.append("test dependencies are not installed: " + ", ".join(missing)
                        + " (pip install -c requirements/lock.txt -e '.[dev]')")
    if problems:
        pytest.exit("CI=true and the run is incomplete:\n  " + "\n  ".join(problems),
                    returncode=1)


def _fail_missing_skip(report: pytest.CollectReport | pytest.TestReport) -> None:
    if not (in_ci() and report.skipped):
        return
    reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(
        report.longrepr)
    if _MISSING.search(reason):
        report.outcome = "failed"
        report.longrepr = f"CI=true: this would have been skipped ({reason}); in CI a missing " \
                          "test dependency or vector folder fails the run"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    _fail_missing_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    outcome = yield
    _fail_missing_skip(outcome.get_result())


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("CHAINPROOF_DB", "CHAINPROOF_STORE", "CHAINPROOF_LOG_KEY", "CHAINPROOF_LOG_PUBKEY",
                "CHAINPROOF_SERVER", "CHAINPROOF_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CHAINPROOF_IDENTITY", "tester")
    # Each test's clients remember checkpoints (and pin log keys) in its own folder: servers
    # of different tests reuse loopback ports, and a remembered head is per server URL.
    monkeypatch.setenv("CHAINPROOF_CHECKPOINTS", str(tmp_path / "remembered-checkpoints"))


# --- S3 over HTTP ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from s3server import start_moto_server

    endpoint, stop = start_moto_server()
    try:
        yield endpoint
    finally:
        stop()


@pytest.fixture()
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bucket = "chainproof-test"
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=bucket)
    return f"s3://{bucket}/run-{uuid.uuid4().hex[:12]}"


# --- PostgreSQL -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    from sqlalchemy import create_engine, text

    name = f"chainproof_test_{os.getpid()}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not usable ({exc}); `make test` starts it",
                    pytrace=False)
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    from chainproof.db import open_engine, upgrade

    engine = open_engine(url)
    upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def truncate_all(url: str) -> None:
    from sqlalchemy import create_engine, text

    from chainproof.db.tables import Base

    engine = create_engine(url)
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


# --- a ready workspace on each backend ------------------------------------------------------------


@dataclass
class Backend:
    name: str
    db_url: str | None
    store: str | None

    @property
    def is_postgres(self) -> bool:
        return bool(self.db_url and self.db_url.startswith("postgresql"))


@pytest.fixture(params=["sqlite+local", "postgres+s3"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "sqlite+local":
        return Backend(request.param, None, None)
    url = request.getfixturevalue("pg_database")
    truncate_all(url)
    store = request.getfixturevalue("s3_env")
    return Backend(request.param, url, store)


@pytest.fixture()
def cp(backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """An initialised chainproof workspace in ``tmp_path/project`` on the parametrised backend."""
    from chainproof.service import Chainproof

    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    instance = Chainproof.init(project, db=backend.db_url, store=backend.store)
    try:
        yield instance
    finally:
        instance.close()
