"""Attacks on the audit log by someone with direct write access to the database (I3).

Each test makes a legitimate history, tampers with it the way an attacker would, and checks that
`audit verify` fails and names the problem precisely.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import text

from chainproof.errors import LedgerIntegrityError
from chainproof.ledger import audit, checkpoint, merkle
from chainproof.ledger.log import frontier_positions, node_key
from chainproof.service import Chainproof


def history(cp: Chainproof, tmp_path: Path, n: int = 6) -> None:
    for i in range(n):
        f = tmp_path / f"d{i}.csv"
        f.write_text(f"row,{i}\n")
        cp.add(f, kind="dataset", name=f"data{i % 3}")


def verify(cp: Chainproof, witnesses: list[str] = ()) -> audit.AuditReport:  # type: ignore[assignment]
    verifier = audit.load_log_verifier(cp.settings.log_public_path, cp.settings.origin)
    with cp.session() as session:
        return audit.verify_log(session, verifier, witnesses)


def problems(cp: Chainproof, witnesses: list[str] = ()) -> str:  # type: ignore[assignment]
    with pytest.raises(LedgerIntegrityError) as info:
        verify(cp, witnesses)
    return "\n".join(info.value.problems)


def sql(cp: Chainproof, statement: str, **params: object) -> list[tuple[object, ...]]:
    with cp.engine.begin() as conn:
        result = conn.execute(text(statement), params)
        return list(result) if result.returns_rows else []


def latest_note(cp: Chainproof) -> str:
    return str(sql(cp, "SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1")[0][0])


def test_untouched_log_verifies(cp: Chainproof, tmp_path: Path) -> None:
    history(cp, tmp_path)
    witness = [latest_note(cp)]
    history(cp, tmp_path / "more", 0)
    report = verify(cp, witness)
    assert report.size == 9 and report.checkpoint_size == 9 and report.witnesses_checked == 1
    assert report.rows_checked["asset_versions"] == 6


def test_edited_entry_detail(cp: Chainproof, tmp_path: Path) -> None:
    history(cp, tmp_path)
    body = bytes(sql(cp, "SELECT body FROM log_entries WHERE seq = 4")[0][0])
    forged = body.replace(b'"created_by":"tester"', b'"created_by":"mallory"')
    assert forged != body
    sql(cp, "UPDATE log_entries SET body = :b WHERE seq = 4", b=forged)
    found = problems(cp)
    assert "log entry 4: stored leaf hash does not match its contents" in found


def test_edited_entry_with_full_tree_fixup_still_caught_by_signature(cp: Chainproof,
                                                                     tmp_path: Path) -> None:
    """The attacker rewrites entry 4 *and* recomputes its leaf and every stored node."""
    history(cp, tmp_path)
    body = bytes(sql(cp, "SELECT body FROM log_entries WHERE seq = 4")[0][0])
    forged = body.replace(b'"created_by":"tester"', b'"created_by":"mallory"')
    sql(cp, "UPDATE log_entries SET body = :b, leaf_hash = :h WHERE seq = 4",
        b=forged, h=merkle.leaf_hash(forged))
    _rebuild_nodes(cp)
    found = problems(cp)
    assert "the signed root does not match" in found


def test_edited_asset_digest(cp: Chainproof, tmp_path: Path) -> None:
    history(cp, tmp_path)
    sql(cp, "UPDATE asset_versions SET digest = :d WHERE version = 1 AND asset_id = "
            "(SELECT id FROM assets WHERE name = 'data1')", d="sha256:" + "ab" * 32)
    found = problems(cp)
    assert "asset version default/data1@1: digest is 'sha256:abab" in found
    assert "in log entry 4" in found


def test_deleted_entry(cp: Chainproof, tmp_path: Path) -> None:
    history(cp, tmp_path)
    sql(cp, "DELETE FROM log_entries WHERE seq = 5")
    assert "log entries 5..5 are missing" in problems(cp)


def test_truncation_with_tree_fixup_caught_by_witness(cp: Chainproof, tmp_path: Path) -> None:
    history(cp, tmp_path)
    witness = latest_note(cp)  # a witness kept the checkpoint at size 9
    # Attacker removes the newest 2 entries and the rows they describe, rewrites the stored
    # tree and the head, and deletes the newer checkpoints: the database is self-consistent.
    for seq in (7, 8):
        obj = json.loads(bytes(sql(cp, "SELECT body FROM log_entries WHERE seq = :s", s=seq)[0][0]))
        d = obj["detail"]
        sql(cp, "DELETE FROM asset_versions WHERE version = :v AND asset_id = "
                "(SELECT id FROM assets WHERE name = :n)", v=d["version"], n=d["name"])
    sql(cp, "DELETE FROM log_entries WHERE seq >= 7")
    sql(cp, "DELETE FROM checkpoints WHERE size > 7")
    sql(cp, "UPDATE log_head SET size = 7")
    _rebuild_nodes(cp)
    verify(cp)  # without a witness, a clean truncation is self-consistent...
    found = problems(cp, [witness])  # ...but the witness remembers
    assert "witnessed checkpoint #1 is at size 9 but the log has only 7 entries" in found


def test_truncation_without_fixup(cp: Chainproof, tmp_path: Path) -> None:
    history(cp, tmp_path)
    sql(cp, "DELETE FROM log_entries WHERE seq >= 7")
    found = problems(cp)
    assert "covers entries that do not exist" in found
    assert "checkpoint at size 9 is ahead of the log's 7 entries" in found
    assert "missing from the database" not in found  # rows still there: reported differently
    assert "log entry 7 adds" not in found


def test_swapped_entries(cp: Chainproof, tmp_path: Path) -> None:
    history(cp, tmp_path)
    a = sql(cp, "SELECT body, leaf_hash FROM log_entries WHERE seq = 4")[0]
    b = sql(cp, "SELECT body, leaf_hash FROM log_entries WHERE seq = 5")[0]
    sql(cp, "UPDATE log_entries SET body = :b, leaf_hash = :h WHERE seq = 4", b=b[0], h=b[1])
    sql(cp, "UPDATE log_entries SET body = :b, leaf_hash = :h WHERE seq = 5", b=a[0], h=a[1])
    found = problems(cp)
    assert "log entry stored at 4 says it is entry 5" in found


def test_forged_entry_appended(cp: Chainproof, tmp_path: Path) -> None:
    history(cp, tmp_path)
    entry = {"seq": 9, "time": "2026-01-01T00:00:00.000000Z", "actor": "mallory",
             "action": "workspace.init", "object": "forged", "digests": {},
             "detail": {"origin": "x"}}
    import rfc8785

    body = rfc8785.dumps(entry)
    sql(cp, "INSERT INTO log_entries (seq, leaf_hash, body, action, actor, object, time) "
            "VALUES (9, :h, :b, 'workspace.init', 'mallory', 'forged', :t)",
        h=merkle.leaf_hash(body), b=body, t=entry["time"])
    sql(cp, "UPDATE log_head SET size = 10")
    _rebuild_nodes(cp)
    found = problems(cp)
    assert "1 entries after the newest checkpoint (size 9) are covered by no signature" in found


def test_checkpoint_root_changed(cp: Chainproof, tmp_path: Path) -> None:
    history(cp, tmp_path)
    note = latest_note(cp)
    lines = note.split("\n")
    lines[2] = "A" * 43 + "="
    sql(cp, "UPDATE checkpoints SET note = :n WHERE size = 9", n="\n".join(lines))
    assert "stored checkpoint at size 9" in problems(cp)


def test_checkpoint_signed_by_another_key(cp: Chainproof, tmp_path: Path) -> None:
    history(cp, tmp_path)
    other = audit.LogSigner(cp.settings.origin, ed25519.Ed25519PrivateKey.generate())
    with cp.session() as session:
        from chainproof.ledger.log import root_at

        root = root_at(session, 9)
    forged = other.sign(9, root)
    found = problems(cp, [forged])
    assert "witnessed checkpoint #1" in found


def test_split_view(cp: Chainproof, tmp_path: Path) -> None:
    """Two validly signed checkpoints of one size with different roots: the log forked."""
    history(cp, tmp_path)
    real = latest_note(cp)
    fork = cp.checkpoint_signer.sign(9, b"\x11" * 32)
    found = problems(cp, [real, fork])
    assert "split view: two validly signed checkpoints of size 9" in found


def test_row_written_without_log_entry(cp: Chainproof, tmp_path: Path) -> None:
    history(cp, tmp_path)
    asset_id = sql(cp, "SELECT id FROM assets WHERE name = 'data0'")[0][0]
    sql(cp, "INSERT INTO asset_versions (asset_id, version, digest, size, media_type, "
            "is_directory, created_at, created_by, producer_step, log_seq) VALUES "
            "(:a, 99, :d, 1, 'text/csv', :f, 'now', 'mallory', NULL, 3)",
        a=asset_id, d="sha256:" + "cd" * 32, f=False)
    assert ("asset version default/data0@99 (row id" in problems(cp))


def test_deleted_row_is_detected(cp: Chainproof, tmp_path: Path) -> None:
    history(cp, tmp_path)
    sql(cp, "DELETE FROM asset_versions WHERE version = 2 AND asset_id = "
            "(SELECT id FROM assets WHERE name = 'data0')")
    assert "adds default/data0@2, which is missing from the database" in problems(cp)


def test_witness_file_round_trip(cp: Chainproof, tmp_path: Path) -> None:
    history(cp, tmp_path, 2)
    witness_file = tmp_path / "witness.txt"
    witness_file.write_text(checkpoint.format_checkpoint_file([latest_note(cp)]))
    history(cp, tmp_path / "b", 0)
    (tmp_path / "x.csv").write_text("x\n")
    cp.add(tmp_path / "x.csv", kind="dataset", name="x")
    with witness_file.open("a") as fh:
        fh.write(checkpoint.format_checkpoint_file([latest_note(cp)]))
    notes = audit.parse_witness_file(witness_file)
    assert len(notes) == 2
    assert verify(cp, notes).witnesses_checked == 2


def test_inclusion_proof_verifies(cp: Chainproof, tmp_path: Path) -> None:
    from chainproof.ledger.log import prove_inclusion

    history(cp, tmp_path)
    with cp.session() as session:
        for seq in range(9):
            proof = prove_inclusion(session, seq)
            merkle.verify_inclusion(bytes.fromhex(str(proof["leaf_hash"])), seq, 9,
                                    [bytes.fromhex(h) for h in proof["proof"]],  # type: ignore[union-attr]
                                    bytes.fromhex(str(proof["root_hash"])))


def _rebuild_nodes(cp: Chainproof) -> None:
    """Recompute log_nodes from the (tampered) entries, as a careful attacker would."""
    leaves = [bytes(r[0]) for r in sql(cp, "SELECT leaf_hash FROM log_entries ORDER BY seq")]
    sql(cp, "DELETE FROM log_nodes")
    level, rows = leaves, []
    lv = 0
    while level:
        rows.extend((lv, i, h) for i, h in enumerate(level))
        level = [merkle.node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        lv += 1
    with cp.engine.begin() as conn:
        for lvl, idx, h in rows:
            conn.execute(text("INSERT INTO log_nodes (id, hash) VALUES (:k, :h)"),
                         {"k": node_key(lvl, idx), "h": h})
    assert frontier_positions(len(leaves)) is not None
