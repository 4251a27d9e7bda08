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


def history(cp: Chainproof, tmp_path: Path, n: int = 6) -> int:
    """Add ``n`` versions; return the log size before them (entries base.. are the adds)."""
    with cp.session() as session:
        from chainproof.ledger.log import log_size

        base = log_size(session)
    for i in range(n):
        f = tmp_path / f"d{i}.csv"
        f.write_text(f"row,{i}\n")
        cp.add(f, kind="dataset", name=f"data{i % 3}")
    return base


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
    b = history(cp, tmp_path)
    witness = [latest_note(cp)]
    history(cp, tmp_path / "more", 0)
    report = verify(cp, witness)
    assert report.size == b + 6 and report.checkpoint_size == b + 6
    assert report.witnesses_checked == 1
    assert report.rows_checked["asset_versions"] == 6


def test_edited_entry_detail(cp: Chainproof, tmp_path: Path) -> None:
    b = history(cp, tmp_path)
    body = bytes(sql(cp, "SELECT body FROM log_entries WHERE seq = :s", s=b + 1)[0][0])
    forged = body.replace(b'"created_by":"tester"', b'"created_by":"mallory"')
    assert forged != body
    sql(cp, "UPDATE log_entries SET body = :b WHERE seq = :s", b=forged, s=b + 1)
    found = problems(cp)
    assert f"log entry {b + 1}: stored leaf hash does not match its contents" in found


def test_edited_entry_with_full_tree_fixup_still_caught_by_signature(cp: Chainproof,
                                                                     tmp_path: Path) -> None:
    """The attacker rewrites entry 4 *and* recomputes its leaf and every stored node."""
    b = history(cp, tmp_path)
    body = bytes(sql(cp, "SELECT body FROM log_entries WHERE seq = :s", s=b + 1)[0][0])
    forged = body.replace(b'"created_by":"tester"', b'"created_by":"mallory"')
    sql(cp, "UPDATE log_entries SET body = :b, leaf_hash = :h WHERE seq = :s",
        b=forged, h=merkle.leaf_hash(forged), s=b + 1)
    _rebuild_nodes(cp)
    found = problems(cp)
    assert "the signed root does not match" in found


def test_edited_asset_digest(cp: Chainproof, tmp_path: Path) -> None:
    b = history(cp, tmp_path)
    sql(cp, "UPDATE asset_versions SET digest = :d WHERE version = 1 AND asset_id = "
            "(SELECT id FROM assets WHERE name = 'data1')", d="sha256:" + "ab" * 32)
    found = problems(cp)
    assert "asset version default/data1@1: digest is 'sha256:abab" in found
    assert f"in log entry {b + 1}" in found


def test_deleted_entry(cp: Chainproof, tmp_path: Path) -> None:
    b = history(cp, tmp_path)
    sql(cp, "DELETE FROM log_entries WHERE seq = :s", s=b + 2)
    assert f"log entries {b + 2}..{b + 2} are missing" in problems(cp)


def test_truncation_with_tree_fixup_caught_by_witness(cp: Chainproof, tmp_path: Path) -> None:
    b = history(cp, tmp_path)
    witness = latest_note(cp)  # a witness kept the checkpoint at size 9
    # Attacker removes the newest 2 entries and the rows they describe, rewrites the stored
    # tree and the head, and deletes the newer checkpoints: the database is self-consistent.
    for seq in (b + 4, b + 5):
        obj = json.loads(bytes(sql(cp, "SELECT body FROM log_entries WHERE seq = :s", s=seq)[0][0]))
        d = obj["detail"]
        sql(cp, "DELETE FROM asset_versions WHERE version = :v AND asset_id = "
                "(SELECT id FROM assets WHERE name = :n)", v=d["version"], n=d["name"])
    sql(cp, "DELETE FROM log_entries WHERE seq >= :s", s=b + 4)
    sql(cp, "DELETE FROM checkpoints WHERE size > :s", s=b + 4)
    sql(cp, "UPDATE log_head SET size = :s", s=b + 4)
    _rebuild_nodes(cp)
    verify(cp)  # without a witness, a clean truncation is self-consistent...
    found = problems(cp, [witness])  # ...but the witness remembers
    assert (f"witnessed checkpoint #1 is at size {b + 6} but the log has only {b + 4} entries"
            in found)


def test_truncation_without_fixup(cp: Chainproof, tmp_path: Path) -> None:
    b = history(cp, tmp_path)
    sql(cp, "DELETE FROM log_entries WHERE seq >= :s", s=b + 4)
    found = problems(cp)
    assert "covers entries that do not exist" in found
    assert f"checkpoint at size {b + 6} is ahead of the log's {b + 4} entries" in found
    assert "missing from the database" not in found  # rows still there: reported differently
    assert f"log entry {b + 4} adds" not in found


def test_swapped_entries(cp: Chainproof, tmp_path: Path) -> None:
    b = history(cp, tmp_path)
    x = sql(cp, "SELECT body, leaf_hash FROM log_entries WHERE seq = :s", s=b + 1)[0]
    y = sql(cp, "SELECT body, leaf_hash FROM log_entries WHERE seq = :s", s=b + 2)[0]
    sql(cp, "UPDATE log_entries SET body = :x, leaf_hash = :h WHERE seq = :s", x=y[0], h=y[1],
        s=b + 1)
    sql(cp, "UPDATE log_entries SET body = :x, leaf_hash = :h WHERE seq = :s", x=x[0], h=x[1],
        s=b + 2)
    found = problems(cp)
    assert f"log entry stored at {b + 1} says it is entry {b + 2}" in found


def test_forged_entry_appended(cp: Chainproof, tmp_path: Path) -> None:
    b = history(cp, tmp_path)
    entry = {"seq": b + 6, "time": "2026-01-01T00:00:00.000000Z", "actor": "mallory",
             "action": "workspace.init", "object": "forged", "digests": {},
             "detail": {"origin": "x"}}
    import rfc8785

    body = rfc8785.dumps(entry)
    sql(cp, "INSERT INTO log_entries (seq, leaf_hash, body, action, actor, object, time) "
            "VALUES (:s, :h, :x, 'workspace.init', 'mallory', 'forged', :t)",
        h=merkle.leaf_hash(body), x=body, t=entry["time"], s=b + 6)
    sql(cp, "UPDATE log_head SET size = :s", s=b + 7)
    _rebuild_nodes(cp)
    found = problems(cp)
    assert (f"1 entries after the newest checkpoint (size {b + 6}) are covered by no "
            "signature") in found


def test_checkpoint_root_changed(cp: Chainproof, tmp_path: Path) -> None:
    b = history(cp, tmp_path)
    note = latest_note(cp)
    lines = note.split("\n")
    lines[2] = "A" * 43 + "="
    sql(cp, "UPDATE checkpoints SET note = :n WHERE size = :s", n="\n".join(lines), s=b + 6)
    assert f"stored checkpoint at size {b + 6}" in problems(cp)


def test_checkpoint_signed_by_another_key(cp: Chainproof, tmp_path: Path) -> None:
    b = history(cp, tmp_path)
    other = audit.LogSigner(cp.settings.origin, ed25519.Ed25519PrivateKey.generate())
    with cp.session() as session:
        from chainproof.ledger.log import root_at

        root = root_at(session, b + 6)
    forged = other.sign(b + 6, root)
    found = problems(cp, [forged])
    assert "witnessed checkpoint #1" in found


def test_split_view(cp: Chainproof, tmp_path: Path) -> None:
    """Two validly signed checkpoints of one size with different roots: the log forked."""
    b = history(cp, tmp_path)
    real = latest_note(cp)
    fork = cp.checkpoint_signer.sign(b + 6, b"\x11" * 32)
    found = problems(cp, [real, fork])
    assert f"split view: two validly signed checkpoints of size {b + 6}" in found


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
    assert "asset version default/data0@2 is missing from the database" in problems(cp)


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

    b = history(cp, tmp_path)
    with cp.session() as session:
        for seq in range(b + 6):
            proof = prove_inclusion(session, seq)
            merkle.verify_inclusion(bytes.fromhex(str(proof["leaf_hash"])), seq, b + 6,
                                    [bytes.fromhex(h) for h in proof["proof"]],  # type: ignore[union-attr]
                                    bytes.fromhex(str(proof["root_hash"])))


def test_forged_head_frontier(cp: Chainproof, tmp_path: Path) -> None:
    """The next append builds on the head's frontier: a forged one is reported at once, and
    the checkpoints signed over it afterwards disagree with the entries."""
    history(cp, tmp_path)
    frontier = bytes(sql(cp, "SELECT frontier FROM log_head")[0][0])
    sql(cp, "UPDATE log_head SET frontier = :f", f=bytes(32) + frontier[32:])
    assert "the log head's frontier does not match" in problems(cp)
    cp.create_identity("after-forgery", "service")
    found = problems(cp)
    assert "does not match the root recomputed from the entries" in found


def test_head_size_disagreeing_with_entries(cp: Chainproof, tmp_path: Path) -> None:
    b = history(cp, tmp_path)
    sql(cp, "UPDATE log_head SET size = :s", s=b + 2)
    assert f"the log head says {b + 2} entries" in problems(cp)


def test_head_without_frontier_is_rebuilt_from_nodes(cp: Chainproof, tmp_path: Path) -> None:
    """A log written before migration 0002 has no frontier in its head: the next append reads
    the nodes and stores it."""
    history(cp, tmp_path)
    sql(cp, "UPDATE log_head SET frontier = NULL")
    verify(cp)
    cp.create_identity("after-upgrade", "service")
    assert sql(cp, "SELECT frontier FROM log_head")[0][0] is not None
    verify(cp)


def _rebuild_nodes(cp: Chainproof) -> None:
    """Recompute log_nodes from the (tampered) entries, as a careful attacker would."""
    leaves = [bytes(r[0]) for r in sql(cp, "SELECT leaf_hash FROM log_entries ORDER BY seq")]
    sql(cp, "DELETE FROM log_nodes")
    level, rows, levels = leaves, [], []
    lv = 0
    while level:
        levels.append(level)
        if lv > 0:  # level 0 lives in log_entries.leaf_hash
            rows.extend((lv, i, h) for i, h in enumerate(level))
        level = [merkle.node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        lv += 1
    frontier = b"".join(levels[lvl][idx] for lvl, idx in frontier_positions(len(leaves)))
    with cp.engine.begin() as conn:
        for lvl, idx, h in rows:
            conn.execute(text("INSERT INTO log_nodes (id, hash) VALUES (:k, :h)"),
                         {"k": node_key(lvl, idx), "h": h})
        conn.execute(text("UPDATE log_head SET frontier = :f"), {"f": frontier})


def test_unrevoked_key_is_detected(cp: Chainproof, tmp_path: Path) -> None:
    """An attacker clears a key's revocation to make its later signatures look valid."""
    from chainproof import identities

    key = tmp_path / "k.pem"
    identities.generate_key_file(key)
    cp.create_identity("svc-x", "service")
    keyid = cp.register_key("svc-x", identities.public_path(key).read_bytes())
    cp.revoke_key(keyid, "laptop stolen")
    verify(cp)
    sql(cp, "UPDATE signing_keys SET revoked_at = NULL, revoked_reason = NULL WHERE keyid = :k",
        k=keyid)
    assert f"key {keyid}: revoked_at is None in the database but" in problems(cp)


def test_swapped_attestation_envelope_is_detected(cp: Chainproof, tmp_path: Path) -> None:
    import chainproof as cpkg

    (tmp_path / "a.csv").write_text("a\n")
    cp.add(tmp_path / "a.csv", kind="dataset", name="a")
    for n in (1, 2):
        (tmp_path / f"m{n}.bin").write_text(f"m{n}")
        with cpkg.step("train", inputs=["a@1"], connection=cp) as s:
            s.output(tmp_path / f"m{n}.bin", kind="model", name=f"m{n}")
    first, second = (r[0] for r in sql(cp, "SELECT step_id FROM attestations ORDER BY log_seq"))
    sql(cp, "UPDATE attestations SET envelope = (SELECT envelope FROM attestations WHERE "
            "step_id = :a) WHERE step_id = :b", a=first, b=second)
    assert f"attestation of step {second}: envelope_digest is" in problems(cp)
