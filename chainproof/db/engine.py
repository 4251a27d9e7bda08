"""Opening the metadata database and keeping its schema at the migration this code expects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine, Select, create_engine, event
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.sql.compiler import SQLCompiler

from chainproof.errors import DatabaseError

_MIGRATIONS = Path(__file__).parent / "migrations"
WRITE_OPTION = "chainproof_write"


def normalise_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and use psycopg 3 for them."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def open_engine(url: str) -> Engine:
    url = normalise_url(url)
    kwargs: dict[str, Any] = {"future": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    else:
        kwargs["pool_pre_ping"] = True
    try:
        engine = create_engine(url, **kwargs)
    except (SQLAlchemyError, ValueError) as exc:
        raise DatabaseError(f"cannot open database {url!r}: {exc}",
                            hint="set CHAINPROOF_DB to a SQLAlchemy URL, "
                                 "e.g. postgresql://user@host/db or sqlite:///path") from None
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    # pysqlite's own transaction handling defers BEGIN until the first write, which lets two
    # writers read the same log head. Write transactions (marked with the ``chainproof_write``
    # execution option) take the write lock at BEGIN IMMEDIATE, which serialises them into one
    # linear log; reads use a plain BEGIN, a WAL snapshot that never waits for writers.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get(WRITE_OPTION)
        # Straight to the driver: this runs for every transaction, and SQLAlchemy's execution
        # path around one BEGIN costs more than SQLite's work.
        conn.connection.dbapi_connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")


def query_driver(engine: Engine, statement: Select[*tuple[Any, ...]],
                 params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Run a prebuilt read-only query straight on a pooled driver connection.

    For the one query every API request runs before anything else (its token lookup).
    SQLAlchemy's own execution path (connection checkout events, BEGIN, result processing,
    reset on return) costs several times the lookup itself; this keeps SQLAlchemy's compiler
    (compiled once per dialect) and pool, and skips the rest. Only for statements whose columns
    need no type processing (text and integers), since results come back as the driver's raw
    tuples."""
    compiled = _compiled(engine, statement)
    args: Any = compiled.construct_params(params)
    if engine.dialect.positional:
        assert compiled.positiontup is not None
        args = tuple(args[name] for name in compiled.positiontup)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        try:
            cursor.execute(compiled.string, args)
            return list(cursor.fetchall())
        finally:
            cursor.close()
    finally:
        raw.close()  # back to the pool, which ends any transaction the driver opened


_COMPILED: dict[tuple[str, int], tuple[Any, SQLCompiler]] = {}


def _compiled(engine: Engine, statement: Any) -> SQLCompiler:
    key = (engine.dialect.name, id(statement))
    cached = _COMPILED.get(key)
    if cached is None or cached[0] is not statement:
        compiled = statement.compile(dialect=engine.dialect)
        assert isinstance(compiled, SQLCompiler)
        cached = (statement, compiled)
        _COMPILED[key] = cached
    return cached[1]


def _alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str:
    script = ScriptDirectory.from_config(_alembic_config(create_engine("sqlite://")))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except OperationalError as exc:
        raise DatabaseError(f"cannot reach the database at {engine.url!r}: {exc.orig}",
                            hint="check CHAINPROOF_DB and that the server is running") from None


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration (what ``init`` and ``db upgrade`` do)."""
    _refuse_newer(engine)
    try:
        command.upgrade(_alembic_config(engine), "head")
    except OperationalError as exc:
        raise DatabaseError(f"cannot migrate the database at {engine.url!r}: {exc.orig}",
                            hint="check CHAINPROOF_DB and that the server is running") from None


def _refuse_newer(engine: Engine) -> str | None:
    current = current_revision(engine)
    script = ScriptDirectory.from_config(_alembic_config(engine))
    if current is not None and not _known(script, current):
        raise DatabaseError(
            f"the database at {engine.url!r} is at migration {current!r}, which this version of "
            "chainproof does not know (it is newer)",
            hint="upgrade chainproof to the version that wrote this database",
        )
    return current


def _known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except CommandError:
        return False


def check_schema(engine: Engine) -> None:
    """Refuse to work on a database that is not exactly at this code's migration head."""
    current = _refuse_newer(engine)
    head = head_revision()
    if current is None:
        raise DatabaseError(f"the database at {engine.url!r} has no chainproof schema",
                            hint="run `chainproof init` (or `chainproof db upgrade` for a server "
                                 "database)")
    if current != head:
        raise DatabaseError(
            f"the database at {engine.url!r} is at migration {current!r}; this chainproof needs "
            f"{head!r}",
            hint="run `chainproof db upgrade`",
        )
