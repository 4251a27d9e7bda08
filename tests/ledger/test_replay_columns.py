"""Every column of every table, edited by someone with direct database access, fails `audit verify`.

The tables and columns come from the metadata (``Base.metadata``), not from a list in this file:
a column added tomorrow is edited here too, and fails verification until the replay covers it.
The attacker disables foreign-key enforcement first (SQLite: a connection without
``PRAGMA foreign_keys``; PostgreSQL: ``session_replication_role = replica``), as an administrator
would. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pipeline_fixtures import NS, Pipeline, act_as, pipe  # noqa: F401  (fixture)
from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    create_engine,
    delete,
    insert,
    select,
    text,
)
from sqlalchemy.exc import DataError, IntegrityError

import chainproof
from chainproof import identities
from chainproof.db.tables import Base
from chainproof.errors import LedgerIntegrityError, PolicyViolationError
from chainproof.ledger import audit, replay
from chainproof.service import Chainproof

STATE_TABLES = sorted(replay.SPECS)


def _verify(cp: Chainproof) -> audit.AuditReport:
    verifier = audit.load_log_verifier(cp.settings.log_public_path, cp.settings.origin)
    with cp.session() as session:
        return audit.verify_log(session, verifier)


def _problems(cp: Chainproof) -> list[str] | None:
    """The problems `audit verify` reports, or None if it passed."""
    try:
        _verify(cp)
    except LedgerIntegrityError as exc:
        return exc.problems
    return None


@contextlib.contextmanager
def attacker(cp: Chainproof) -> Iterator[Connection]:
    """A transaction with foreign-key checks off, committed at the end."""
    url = cp.engine.url
    engine: Engine = create_engine(url)  # no chainproof PRAGMAs: SQLite foreign keys off
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SET LOCAL session_replication_role = replica"))
            yield conn
    finally:
        engine.dispose()


def populate(p: Pipeline, tmp_path: Path) -> None:
    """Rows in every table: assets, steps with attestations (one failed), keys (one revoked),
    tokens (one revoked), roles (one revoked), namespaces, trust and promotion policy, two
    models, versions, aliases moved three times (once by force), tags and a description (one
    tag deleted), approvals, a rejection, decisions."""
    cp = p.admin

    def promote(version: int) -> None:
        # Approved and executed through the gate; should the gate's floor ask for evidence
        # this small pipeline lacks, the approvals stay and an override moves the alias.
        try:
            p.promote(version)
        except PolicyViolationError:
            cp.force_promotion(f"{NS}/fraud-review", version, "production", "test: gate floor")

    v1 = p.train("a", 0.9)
    promote(v1)
    v2 = p.train("b", 0.91)
    rejected = p.trainer.request_promotion(f"{NS}/fraud-review", v2, "production")
    p.alice.reject(rejected, "not this week")
    promote(v2)
    p.trainer.create_model(f"{NS}/other-model")
    cp.force_promotion(f"{NS}/fraud-review", v1, "production", "roll back: incident 42")
    with pytest.raises(Exception), chainproof.step(  # noqa: B017 - any failure is recorded
            "features", inputs=[f"{NS}/orders@1"], namespace=NS, connection=p.features):
        raise RuntimeError("feature job crashed")
    act_as(cp, "svc-old", tmp_path)
    keyid = next(k["keyid"] for k in cp.key_list("svc-old"))
    cp.revoke_key(keyid, "laptop stolen")
    cp.create_identity("svc-ci", "service")
    from datetime import timedelta

    token_id, _ = cp.create_token("svc-ci", timedelta(days=1))
    cp.create_token("svc-ci", timedelta(days=2))
    cp.revoke_token(token_id)
    cp.grant_role("svc-ci", "reader", NS)
    cp.grant_role("svc-ci", "reader", "lab")
    cp.revoke_role("svc-ci", "reader", "lab")
    cp.set_namespace_mode("lab", "experiment")
    cp.set_namespace_mode("lab", "governed")
    cp.set_namespace_mode(NS, "governed")
    cp.set_alias(f"{NS}/fraud-review", v2, "staging")
    p.trainer.set_model_tag(f"{NS}/fraud-review", "team", "fraud")
    p.trainer.set_model_tag(f"{NS}/fraud-review", "owner", "ops", version=v2)
    p.trainer.set_model_description(f"{NS}/fraud-review", "Reviews card payments", version=v1)
    p.trainer.set_model_tag(f"{NS}/fraud-review", "temporary", "x")
    p.trainer.delete_model_tag(f"{NS}/fraud-review", "temporary")
    cp.set_promotion_policy("protected_aliases: [production]\nrules: []\n")
    cp.set_trust_policy("namespaces: {'*': {}}\n")
    cp.set_trust_policy("namespaces:\n  '*': {}\n")
    identities.generate_key_file(tmp_path / "keys" / "extra.pem")


# --- the edits --------------------------------------------------------------------------------


def _snapshot(conn: Connection, table: Table) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(select(table)).mappings()]


def _restore(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    conn.execute(delete(table))
    if rows:
        conn.execute(insert(table), rows)


def _pk_where(table: Table, row: dict[str, Any]) -> Any:
    clauses = [table.c[c.name] == row[c.name] for c in table.primary_key.columns]
    out = clauses[0]
    for clause in clauses[1:]:
        out = out & clause
    return out


def _is_surrogate(table: Table, column: str) -> bool:
    return replay.DERIVED.get(table.name, {}).get(column) == replay.ROW_ID


def _candidates(conn: Connection, table: Table, column: str, value: Any) -> list[Any]:
    """An attacker's replacements, best first: another existing row's value for foreign keys
    (re-pointing), then a changed value of the column's type."""
    col = table.c[column]
    out: list[Any] = []
    for fk in col.foreign_keys:
        target = fk.column
        out += [v for v in conn.execute(select(target).order_by(target)).scalars()
                if v != value]
    if isinstance(col.type, Boolean):
        out.append(not value)
    elif isinstance(col.type, LargeBinary):
        data = bytes(value or b"\x00")
        out.append(bytes([data[0] ^ 1]) + data[1:])
    elif col.type.python_type is int:
        out.append(1 if value is None else value + 1000)
    elif value is None:
        out.append("forged")
    elif column in ("command", "parameters", "environment", "code_revision"):
        out.append('["forged"]' if value.startswith("[") else '{"forged":1}')
    else:
        out.append(_changed(value, "x"))
    return out


def _changed(value: str, char: str) -> str:
    """``value`` with its last character replaced (the column's length still fits)."""
    if not value:
        return char
    return value[:-1] + (char if value[-1] != char else chr(ord(char) + 1))


def _pick(rows: list[dict[str, Any]], column: str) -> dict[str, Any]:
    """A row where the column holds a value (a revoked key for revoked_at, a rejection for
    reason...), so the edit changes something meaningful."""
    for row in rows:
        if row[column] is not None:
            return row
    return rows[0]


def edit_column(conn: Connection, table: Table, column: str) -> str:
    rows = _snapshot(conn, table)
    assert rows, f"the populated workspace has no row in {table.name}"
    if _is_surrogate(table, column):
        if len(rows) < 2:
            pytest.fail(f"{table.name} needs two rows to swap their ids")
        a, b = rows[0], rows[1]
        conn.execute(table.update().where(table.c[column] == a[column]).values({column: -1}))
        conn.execute(table.update().where(table.c[column] == b[column])
                     .values({column: a[column]}))
        conn.execute(table.update().where(table.c[column] == -1).values({column: b[column]}))
        return f"swapped {column} {a[column]} and {b[column]}"
    row = _pick(rows, column)
    for new in _candidates(conn, table, column, row[column]):
        try:
            with conn.begin_nested():
                conn.execute(table.update().where(_pk_where(table, row)).values({column: new}))
        except (IntegrityError, DataError):
            continue  # e.g. a unique constraint: try the next replacement
        return f"{column}: {row[column]!r} -> {new!r}"
    pytest.fail(f"could not edit {table.name}.{column}")


def _forged_copy(conn: Connection, table: Table, row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with its identifying columns changed (primary key and unique columns), so it
    can be inserted beside the original."""
    copy = dict(row)
    unique = {c.name for c in table.primary_key.columns}
    for constraint in table.constraints:
        if constraint.__class__.__name__ == "UniqueConstraint":
            unique |= {c.name for c in constraint.columns}  # type: ignore[attr-defined]
    unique |= {c.name for c in table.columns if c.unique}
    for name in unique:
        col = table.c[name]
        if col.foreign_keys and not col.primary_key:
            continue
        if _is_surrogate(table, name):
            copy.pop(name)  # a fresh id
        elif name == "id" and table.name == "log_head":
            copy[name] = 2
        elif isinstance(col.type, LargeBinary):
            copy[name] = bytes(32)
        elif col.type.python_type is int:
            copy[name] = int(row[name]) + 1000
        else:
            copy[name] = _changed(str(row[name]), "q")
    return copy


def _reorder_pair(table: Table, rows: list[dict[str, Any]]
                  ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any],
                             dict[str, Any]] | None:
    """Two rows and the same two rows with their contents swapped (every column outside the
    primary key; for link tables, whose every column is the key, the first key column) — a
    change that leaves the set of rows different."""
    pk = [c.name for c in table.primary_key.columns]
    content = [c.name for c in table.columns if c.name not in pk]
    for i, a in enumerate(rows):
        for b in rows[i + 1:]:
            swapped = [c for c in content if a[c] != b[c]] or [
                c for c in pk[:1] if a[c] != b[c]]
            if not swapped:
                continue
            new_a = {c: (b[c] if c in swapped else a[c]) for c in a}
            new_b = {c: (a[c] if c in swapped else b[c]) for c in b}
            key = tuple(pk)
            if {tuple(r[k] for k in a) for r in (new_a, new_b)} != \
                    {tuple(r[k] for k in a) for r in (a, b)} and all(
                    tuple(r[k] for k in key) not in {tuple(x[k] for k in key) for x in rows
                                                     if x is not a and x is not b}
                    for r in (new_a, new_b)):
                return a, b, new_a, new_b
    return None


def _state_problems(cp: Chainproof) -> None:
    found = _problems(cp)
    assert found is None, "the untouched populated workspace must verify:\n" + "\n".join(found)


@pytest.fixture()
def populated(pipe: Pipeline, tmp_path: Path) -> Chainproof:  # noqa: F811
    populate(pipe, tmp_path)
    _state_problems(pipe.admin)
    return pipe.admin


def _every_column() -> list[tuple[str, str]]:
    return [(t.name, c.name) for t in Base.metadata.sorted_tables for c in t.columns]


def test_schema_is_fully_covered() -> None:
    assert replay.schema_problems(Base.metadata) == []
    for table, column in _every_column():
        assert column in replay.COMPARED.get(table, {}) or column in replay.DERIVED.get(table, {})
    for table, columns in replay.DERIVED.items():
        for column, reason in columns.items():
            assert len(reason) > 20, f"{table}.{column} needs a real reason"


def test_every_table_and_column_edit_is_detected(populated: Chainproof) -> None:
    cp = populated
    counts = _verify(cp).rows_checked
    for name in STATE_TABLES:
        assert counts.get(name, 0) >= 1, f"no rows in {name}: the test would prove nothing"
    undetected = []
    edited = 0
    for table_name, column in _every_column():
        table = Base.metadata.tables[table_name]
        with attacker(cp) as conn:
            before = _snapshot(conn, table)
            what = edit_column(conn, table, column)
        found = _problems(cp)
        with attacker(cp) as conn:
            _restore(conn, table, before)
        edited += 1
        if found is None:
            undetected.append(f"{table_name}.{column} ({what})")
    assert edited == len(_every_column()) > 150
    assert not undetected, "edits audit verify did not detect:\n" + "\n".join(undetected)
    _state_problems(cp)


def test_every_table_row_delete_insert_reorder_is_detected(populated: Chainproof) -> None:
    cp = populated
    undetected: list[str] = []
    no_reorder: list[str] = []
    for table in Base.metadata.sorted_tables:
        with attacker(cp) as conn:
            before = _snapshot(conn, table)
        assert before, table.name
        cases: list[tuple[str, Any]] = []
        victim = before[-1] if table.name != "log_entries" else before[len(before) // 2]
        cases.append(("delete", lambda conn, t=table, r=victim: conn.execute(
            delete(t).where(_pk_where(t, r)))))

        def forge(conn: Connection, t: Table = table, r: dict[str, Any] = victim) -> None:
            conn.execute(insert(t), [_forged_copy(conn, t, r)])
        cases.append(("insert", forge))
        swap = _reorder_pair(table, before)
        if swap is None:
            no_reorder.append(table.name)
        else:
            def reorder(conn: Connection, t: Table = table,
                        pair: tuple[dict[str, Any], dict[str, Any], dict[str, Any],
                                    dict[str, Any]] = swap) -> None:
                a, b, new_a, new_b = pair
                conn.execute(delete(t).where(_pk_where(t, a)))
                conn.execute(delete(t).where(_pk_where(t, b)))
                conn.execute(insert(t), [new_a, new_b])
            cases.append(("reorder", reorder))
        for label, change in cases:
            with attacker(cp) as conn:
                change(conn)
            found = _problems(cp)
            with attacker(cp) as conn:
                _restore(conn, table, before)
            if found is None:
                undetected.append(f"{label} in {table.name}")
    assert not undetected, "row changes audit verify did not detect:\n" + "\n".join(undetected)
    assert no_reorder == ["log_head"]  # one row: nothing to reorder
    _state_problems(cp)


def test_repointed_model_version_is_detected(populated: Chainproof) -> None:
    """Issue 12's first attack: a model version re-pointed at another model's bytes."""
    cp = populated
    with attacker(cp) as conn:
        rows = conn.execute(text("SELECT id, asset_version_id FROM model_versions ORDER BY id")
                            ).all()
        conn.execute(text("UPDATE model_versions SET asset_version_id = :a WHERE id = :i"),
                     {"a": rows[1][1], "i": rows[0][0]})
    found = "\n".join(_problems(cp) or [])
    assert f"model version {NS}/fraud-review@1: asset is '{NS}/fraud-model@2' in the " \
           f"database but '{NS}/fraud-model@1'" in found


def test_asset_without_versions_is_detected(populated: Chainproof) -> None:
    with attacker(populated) as conn:
        conn.execute(text("INSERT INTO assets (namespace, name, kind) VALUES "
                          "('warehouse', 'ghost', 'dataset')"))
    found = "\n".join(_problems(populated) or [])
    assert "asset warehouse/ghost" in found and "has no version in the log" in found


def test_revoke_seq_is_compared(populated: Chainproof) -> None:
    with attacker(populated) as conn:
        conn.execute(text("UPDATE signing_keys SET revoke_seq = revoke_seq + 1 "
                          "WHERE revoke_seq IS NOT NULL"))
    assert "revoke_seq is" in "\n".join(_problems(populated) or [])


def test_log_entry_object_is_compared(populated: Chainproof) -> None:
    with attacker(populated) as conn:
        conn.execute(text("UPDATE log_entries SET object = 'model:elsewhere' WHERE seq = 3"))
    assert "log entry 3: indexed columns (action, actor, object, time) disagree" in \
        "\n".join(_problems(populated) or [])


def test_old_checkpoints_are_all_checked(populated: Chainproof) -> None:
    """More than 100 checkpoints: the oldest is checked too."""
    cp = populated
    for i in range(101 - len(list(_checkpoint_sizes(cp)))):
        cp.create_identity(f"svc-n{i}", "service")
    sizes = _checkpoint_sizes(cp)
    assert len(sizes) > 100
    report = _verify(cp)
    assert report.checkpoints_checked == len(sizes)
    with attacker(cp) as conn:
        note = conn.execute(text("SELECT note FROM checkpoints WHERE size = :s"),
                            {"s": sizes[-1]}).scalar_one()
        conn.execute(text("UPDATE checkpoints SET note = :n WHERE size = :s"),
                     {"n": note, "s": sizes[0]})
    assert f"stored checkpoint at size {sizes[0]}: its columns disagree" in \
        "\n".join(_problems(cp) or [])


def _checkpoint_sizes(cp: Chainproof) -> list[int]:
    with cp.session() as session:
        return list(session.execute(text("SELECT size FROM checkpoints ORDER BY size")).scalars())


def test_unknown_column_or_table_fails_loudly(cp: Chainproof,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    metadata = MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(metadata)
    Table("widgets", metadata, Column("id", Integer, primary_key=True))
    metadata.tables["models"].append_column(Column("colour", Integer))
    monkeypatch.setattr(audit, "Base", types.SimpleNamespace(metadata=metadata))
    with pytest.raises(LedgerIntegrityError) as info:
        _verify(cp)
    text_ = "\n".join(info.value.problems)
    assert "table widgets is unknown to audit verify" in text_
    assert "column models.colour is unknown to audit verify" in text_
