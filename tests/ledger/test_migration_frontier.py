"""A log written at migration 0001 (no frontier in its head) keeps appending and verifying after
``upgrade`` to 0002, which stores the frontier on the first append."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect, text

from chainproof.db import check_schema, head_revision, upgrade
from chainproof.db.engine import _alembic_config, current_revision
from chainproof.errors import DatabaseError
from chainproof.ledger import audit
from chainproof.ledger.log import fold_root, frontier_positions, log_size, root_at
from chainproof.service import Chainproof


def add_versions(cp: Chainproof, folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        f = folder / f"d{i}.csv"
        f.write_text(f"{folder.name},{i}\n")
        cp.add(f, kind="dataset", name=f"data{i % 2}")


def verify(cp: Chainproof) -> audit.AuditReport:
    verifier = audit.load_log_verifier(cp.settings.log_public_path, cp.settings.origin)
    with cp.session() as session:
        return audit.verify_log(session, verifier)


def head_frontier(cp: Chainproof) -> bytes | None:
    with cp.engine.connect() as conn:
        value = conn.execute(text("SELECT frontier FROM log_head")).scalar_one()
    return None if value is None else bytes(value)


def test_log_from_migration_0001_appends_and_verifies_after_upgrade(
        cp: Chainproof, tmp_path: Path) -> None:
    add_versions(cp, tmp_path / "before", 5)
    size_before = verify(cp).size
    try:
        command.downgrade(_alembic_config(cp.engine), "0001")
        _at_0001_then_upgraded(cp, size_before)
    finally:  # the PostgreSQL database is shared by this worker's tests
        upgrade(cp.engine)
    add_versions(cp, tmp_path / "after", 4)  # the first append reads the nodes, stores it
    report = verify(cp)
    assert report.size == size_before + 4 and report.checkpoint_size == report.size
    stored = head_frontier(cp)
    with cp.session() as session:
        assert log_size(session) == report.size
        root = root_at(session, report.size)
    assert stored is not None and len(stored) == 32 * len(frontier_positions(report.size))
    assert fold_root([stored[i:i + 32] for i in range(0, len(stored), 32)]) == root
    assert cp.audit_verify().size == report.size


def _at_0001_then_upgraded(cp: Chainproof, size_before: int) -> None:
    assert current_revision(cp.engine) == "0001"
    columns = {c["name"] for c in inspect(cp.engine).get_columns("log_head")}
    assert "frontier" not in columns
    with pytest.raises(DatabaseError, match="db upgrade"):
        check_schema(cp.engine)  # an old database is refused until it is upgraded
    upgrade(cp.engine)
    assert current_revision(cp.engine) == head_revision()
    assert head_frontier(cp) is None
    assert verify(cp).size == size_before  # verifies with the head's frontier still empty
