"""Rollback and split views seen without a witness: consistency proofs from the stored log, a
client's remembered checkpoint, witness publishing, and `audit verify` saying when nothing
outside the database was checked."""

from __future__ import annotations

import http.server
import json
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from test_audit_attacks import _rebuild_nodes, history, latest_note, sql

from chainproof.errors import (
    BadInputError,
    LedgerIntegrityError,
    MalformedFileError,
    NotFoundError,
    SignatureError,
)
from chainproof.ledger import audit, checkpoint, merkle, witness
from chainproof.ledger.log import prove_consistency, root_at
from chainproof.ledger.witness import CheckpointMemory
from chainproof.service import Chainproof


def verifier_of(cp: Chainproof) -> checkpoint.CheckpointVerifier:
    return audit.load_log_verifier(cp.settings.log_public_path, cp.settings.origin)


def size_of(note: str) -> int:
    return checkpoint.parse_signed_checkpoint(note)[0].size


def contact(cp: Chainproof, memory: CheckpointMemory) -> checkpoint.Checkpoint:
    """What a client does on every contact: the server's newest checkpoint and a consistency
    proof from what it remembers; rollback and split views raise."""
    note = latest_note(cp)

    def consistency(old: int, new: int) -> dict[str, object]:
        with cp.session() as session:
            return prove_consistency(session, old, new)

    return memory.refresh(note, consistency, verifier_of(cp))


def roll_back(cp: Chainproof, keep: int) -> None:
    """The attacker with database access: delete every entry from ``keep`` on, the asset
    versions they added, the checkpoints past it; rewrite nodes and head. Self-consistent."""
    for (body,) in sql(cp, "SELECT body FROM log_entries WHERE seq >= :s", s=keep):
        d = json.loads(bytes(body))["detail"]
        sql(cp, "DELETE FROM asset_versions WHERE version = :v AND asset_id = "
                "(SELECT id FROM assets WHERE name = :n)", v=d["version"], n=d["name"])
    sql(cp, "DELETE FROM assets WHERE id NOT IN (SELECT asset_id FROM asset_versions)")
    sql(cp, "DELETE FROM log_entries WHERE seq >= :s", s=keep)
    sql(cp, "DELETE FROM checkpoints WHERE size > :s", s=keep)
    sql(cp, "UPDATE log_head SET size = :s", s=keep)
    _rebuild_nodes(cp)


# --- consistency proofs from the stored log ------------------------------------------------------


def test_prove_consistency_every_pair(cp: Chainproof, tmp_path: Path) -> None:
    history(cp, tmp_path, 9)
    with cp.session() as session:
        size = int(sql(cp, "SELECT size FROM log_head")[0][0])
        roots = {n: root_at(session, n) for n in range(size + 1)}
        for old in range(1, size + 1):
            for new in range(old, size + 1):
                proof = prove_consistency(session, old, new)
                assert proof["old_root"] == roots[old].hex()
                assert proof["new_root"] == roots[new].hex()
                hashes = [bytes.fromhex(h) for h in proof["proof"]]  # type: ignore[attr-defined]
                merkle.verify_consistency(old, new, roots[old], roots[new], hashes)
                if old < new and hashes:  # a wrong old root never passes
                    with pytest.raises(LedgerIntegrityError):
                        merkle.verify_consistency(old, new, roots[new], roots[new], hashes)
        assert prove_consistency(session, 3)["new_size"] == size  # default: the log now
        with pytest.raises(BadInputError):
            prove_consistency(session, 5, 4)
        with pytest.raises(NotFoundError):
            prove_consistency(session, 1, size + 1)
        with pytest.raises(BadInputError):
            prove_consistency(session, -1, 2)


# --- a client's remembered checkpoint ------------------------------------------------------------


def test_rollback_of_newest_entries_seen_by_a_client_without_witness(cp: Chainproof,
                                                                    tmp_path: Path) -> None:
    memory = CheckpointMemory(tmp_path / "checkpoints", "https://registry.example")
    b = history(cp, tmp_path, 2)
    first = contact(cp, memory)  # first contact: trusted on its signature
    assert first.size == b + 2
    history(cp, tmp_path / "more", 0)
    for i in range(4):
        (tmp_path / f"n{i}.csv").write_text(f"n{i}\n")
        cp.add(tmp_path / f"n{i}.csv", kind="dataset", name=f"new{i}")
    seen = contact(cp, memory)  # consistency proof from b+2 to b+6, remembered
    assert seen.size == b + 6 and memory.size_to_prove(verifier_of(cp)) == b + 6

    roll_back(cp, b + 3)  # the newest 3 entries vanish, cleanly
    with cp.session() as session:
        report = audit.verify_log(session, verifier_of(cp))
    assert report.size == b + 3  # without anything outside the database: passes...
    assert report.to_dict()["warning"] == audit.NO_WITNESS_WARNING  # ...and says so
    assert report.to_dict()["rollback_checked"] is False
    assert "no witness checked" in report.text()

    with pytest.raises(LedgerIntegrityError) as info:  # ...but the client remembers
        contact(cp, memory)
    message = str(info.value)
    rolled = root_at_hex(cp, b + 3)
    assert "rollback" in info.value.message
    assert f"size {b + 3}, root {rolled}" in message  # the server's head
    assert f"size {b + 6}, root {seen.root_hash.hex()}" in message  # the remembered head
    assert memory.size_to_prove(verifier_of(cp)) == b + 6  # nothing was forgotten

    with cp.session() as session, pytest.raises(LedgerIntegrityError) as info:
        audit.verify_log(session, verifier_of(cp), memory=memory)
    assert "truncated or rolled back" in "\n".join(info.value.problems)


def test_rollback_then_new_writes_is_a_split_view(cp: Chainproof, tmp_path: Path) -> None:
    """After the rollback the server keeps writing, past the remembered size: the tree is now
    larger but not an extension of the one the client saw."""
    memory = CheckpointMemory(tmp_path / "checkpoints", cp.settings.origin)
    b = history(cp, tmp_path, 4)
    seen = contact(cp, memory)
    roll_back(cp, b + 1)
    for i in range(5):
        (tmp_path / f"x{i}.csv").write_text(f"other {i}\n")
        cp.add(tmp_path / f"x{i}.csv", kind="dataset", name=f"other{i}")
    with pytest.raises(LedgerIntegrityError) as info:
        contact(cp, memory)
    assert info.value.message.startswith("split view")
    assert f"size {seen.size}, root {seen.root_hash.hex()}" in info.value.message
    assert f"size {b + 6}, root {root_at_hex(cp, b + 6)}" in info.value.message


def test_same_size_different_root_is_a_split_view(cp: Chainproof, tmp_path: Path) -> None:
    memory = CheckpointMemory(tmp_path / "checkpoints", cp.settings.origin)
    history(cp, tmp_path, 2)
    seen = contact(cp, memory)
    fork = cp.checkpoint_signer.sign(seen.size, b"\x11" * 32)  # the log key signs a fork
    with pytest.raises(LedgerIntegrityError) as info:
        memory.update(fork, [], verifier_of(cp))
    assert "split view" in info.value.message and ("11" * 32) in info.value.message
    assert seen.root_hash.hex() in info.value.message


def test_forged_proof_and_foreign_signature_are_refused(cp: Chainproof, tmp_path: Path) -> None:
    memory = CheckpointMemory(tmp_path / "checkpoints", cp.settings.origin)
    history(cp, tmp_path, 2)
    seen = contact(cp, memory)
    history(cp, tmp_path / "b", 0)
    for i in range(3):
        (tmp_path / f"y{i}.csv").write_text(f"y{i}\n")
        cp.add(tmp_path / f"y{i}.csv", kind="dataset", name=f"y{i}")
    note = latest_note(cp)
    with cp.session() as session:
        proof = prove_consistency(session, seen.size, size_of(note))
    bad = list(proof["proof"])  # type: ignore[call-overload]
    bad[0] = "00" * 32
    with pytest.raises(LedgerIntegrityError, match="split view"):
        memory.update(note, bad, verifier_of(cp))
    with pytest.raises(LedgerIntegrityError):
        memory.update(note, [], verifier_of(cp))  # a proof is required
    other = audit.LogSigner(cp.settings.origin, ed25519.Ed25519PrivateKey.generate())
    with cp.session() as session:
        forged = other.sign(size_of(note), root_at(session, size_of(note)))
    with pytest.raises(SignatureError):
        memory.update(forged, proof, verifier_of(cp))
    assert memory.size_to_prove(verifier_of(cp)) == seen.size  # unchanged by any refusal
    memory.update(note, proof, verifier_of(cp))
    assert memory.size_to_prove(verifier_of(cp)) == size_of(note)


def test_memory_file_is_private_and_atomic(cp: Chainproof, tmp_path: Path) -> None:
    folder = tmp_path / "cfg" / "checkpoints"
    memory = CheckpointMemory(folder, "https://a.example:8443/x?y")
    history(cp, tmp_path, 1)
    contact(cp, memory)
    assert memory.path.parent == folder and memory.path.suffix == ".json"
    assert "/" not in memory.path.name and "?" not in memory.path.name
    assert stat.S_IMODE(memory.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert [p.name for p in folder.iterdir() if p.suffix == ".tmp"] == []
    other = CheckpointMemory(folder, "https://b.example")  # another server: its own file
    assert other.path != memory.path and other.remembered(verifier_of(cp)) is None


def test_memory_edited_to_a_smaller_size_is_refused(cp: Chainproof, tmp_path: Path) -> None:
    memory = CheckpointMemory(tmp_path / "checkpoints", cp.settings.origin)
    b = history(cp, tmp_path, 3)
    small_note = latest_note(cp)
    history(cp, tmp_path / "more", 0)
    (tmp_path / "z.csv").write_text("z\n")
    cp.add(tmp_path / "z.csv", kind="dataset", name="z")
    contact(cp, memory)
    data = json.loads(memory.path.read_text())

    # 1. the size field edited (to let a rollback to b+1 pass): disagrees with the signed note
    data_1 = {**data, "size": b + 1}
    memory.path.write_text(json.dumps(data_1))
    with pytest.raises(LedgerIntegrityError, match="cannot be trusted"):
        contact(cp, memory)
    # 2. the note's size line edited too: the signature fails
    note = data["note"].replace(f"\n{data['size']}\n", f"\n{b + 1}\n", 1)
    memory.path.write_text(json.dumps({**data, "size": b + 1, "note": note}))
    with pytest.raises(LedgerIntegrityError, match="does not verify with the log's key"):
        contact(cp, memory)
    with cp.session() as session, pytest.raises(LedgerIntegrityError) as info:
        audit.verify_log(session, verifier_of(cp), memory=memory)
    assert "cannot be trusted" in "\n".join(info.value.problems)
    # 3. garbage
    memory.path.write_text("{not json")
    with pytest.raises(LedgerIntegrityError, match="not valid JSON"):
        contact(cp, memory)
    # 4. an older, genuinely signed checkpoint put back: it is only an older memory, and the
    #    next contact moves forward again (a consistency proof from it verifies)
    memory.path.write_text(json.dumps({**data, "size": size_of(small_note),
                                       "root_hash": checkpoint.parse_signed_checkpoint(
                                           small_note)[0].root_hash.hex(),
                                       "note": small_note}))
    assert contact(cp, memory).size == data["size"]
    # 5. deleting the file is the documented way to start over (trust on first use)
    memory.forget()
    assert memory.remembered(verifier_of(cp)) is None
    assert contact(cp, memory).size == data["size"]


def test_audit_verify_remembers_and_reports(cp: Chainproof, tmp_path: Path) -> None:
    memory = CheckpointMemory(tmp_path / "checkpoints", cp.settings.origin)
    b = history(cp, tmp_path, 2)
    with cp.session() as session:
        first = audit.verify_log(session, verifier_of(cp), memory=memory)
    assert first.remembered_size is None and first.warning == audit.NO_WITNESS_WARNING
    assert memory.size_to_prove(verifier_of(cp)) == b + 2  # remembered after success
    with cp.session() as session:
        second = audit.verify_log(session, verifier_of(cp), memory=memory)
    assert second.remembered_size == b + 2 and second.warning is None
    d = second.to_dict()
    assert d["rollback_checked"] is True and d["warning"] is None
    assert d["checkpoints_checked"] == second.checkpoints_checked >= 2
    assert "warning" not in second.text()
    with cp.session() as session:
        witnessed = audit.verify_log(session, verifier_of(cp), [latest_note(cp)])
    assert witnessed.warning is None and witnessed.witnesses_checked == 1


# --- publishing to witnesses ---------------------------------------------------------------------


class _Collector(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[str]] = []
    status = 200

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        type(self).received.append(self.rfile.read(length).decode())
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def http_witness() -> Iterator[tuple[str, type[_Collector]]]:
    handler = type("Collector", (_Collector,), {"received": [], "status": 200})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/add-checkpoint", handler
    finally:
        server.shutdown()
        server.server_close()


def test_publish_to_files_and_urls(cp: Chainproof, tmp_path: Path,
                                   http_witness: tuple[str, type[_Collector]],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    url, collector = http_witness
    one, two = tmp_path / "w1" / "witness.txt", tmp_path / "w2.txt"
    monkeypatch.setenv(witness.WITNESSES_ENV, f" {one} , file://{two},{url}, ")
    assert witness.witness_targets() == [str(one), f"file://{two}", url]
    history(cp, tmp_path, 1)
    notes = [latest_note(cp)]
    results = witness.publish_checkpoint(notes[0])
    assert [r.ok for r in results] == [True, True, True]
    history(cp, tmp_path / "b", 0)
    (tmp_path / "q.csv").write_text("q\n")
    cp.add(tmp_path / "q.csv", kind="dataset", name="q")
    notes.append(latest_note(cp))
    # with CHAINPROOF_WITNESSES set, every commit also publishes its own checkpoint: the
    # witnesses hold each transaction's note, the newest last
    for path in (one, two):
        kept = audit.parse_witness_file(path)
        assert kept[-1] == notes[1] and notes[0] in kept
        with cp.session() as session:
            assert audit.verify_log(session, verifier_of(cp), kept).witnesses_checked == \
                len(kept)
    assert collector.received[-1] == notes[1] and notes[0] in collector.received


def test_publish_failures_do_not_stop_the_others(cp: Chainproof, tmp_path: Path,
                                                 http_witness: tuple[str, type[_Collector]]
                                                 ) -> None:
    url, collector = http_witness
    collector.status = 500
    history(cp, tmp_path, 1)
    note = latest_note(cp)
    blocked = tmp_path / "ro"
    blocked.mkdir()
    os.chmod(blocked, 0o500)
    good = tmp_path / "ok.txt"
    targets = [url, "http://127.0.0.1:9/nothing", str(good)]
    if os.geteuid() != 0:  # root writes anywhere
        targets.append(str(blocked / "w.txt"))
    results = witness.publish_checkpoint(note, targets, timeout=2)
    assert [r.ok for r in results][:3] == [False, False, True]
    assert "HTTP 500" in (results[0].error or "")
    assert audit.parse_witness_file(good) == [note]
    with pytest.raises(BadInputError, match="witness"):
        witness.publish_checkpoint(note, targets, timeout=2, strict=True)
    with pytest.raises(MalformedFileError):
        witness.publish_checkpoint("not a checkpoint", [str(good)])
    assert audit.parse_witness_file(good) == [note, note]  # garbage never appended


def root_at_hex(cp: Chainproof, size: int) -> str:
    with cp.session() as session:
        return root_at(session, size).hex()


def test_stray_level0_node_is_detected(cp: Chainproof, tmp_path: Path) -> None:
    history(cp, tmp_path, 2)
    sql(cp, "INSERT INTO log_nodes (id, hash) VALUES (3, :h)", h=bytes(32))
    with cp.session() as session, pytest.raises(LedgerIntegrityError) as info:
        audit.verify_log(session, verifier_of(cp))
    assert "stored tree node(s) at level 0" in "\n".join(info.value.problems)


def test_concurrent_refreshes_never_lose_the_newer_head(cp: Chainproof, tmp_path: Path) -> None:
    """Clients of one user refreshing at once, with older and newer notes: every refresh is
    checked against the head remembered at that moment, and the memory ends at the newest."""
    memory = CheckpointMemory(tmp_path / "checkpoints", cp.settings.origin)
    history(cp, tmp_path, 1)
    contact(cp, memory)
    notes = []
    for i in range(4):
        (tmp_path / f"c{i}.csv").write_text(f"c{i}\n")
        cp.add(tmp_path / f"c{i}.csv", kind="dataset", name=f"c{i}")
        notes.append(latest_note(cp))
    verifier = verifier_of(cp)
    errors: list[BaseException] = []

    def consistency(old: int, new: int) -> dict[str, object]:
        with cp.session() as session:
            return prove_consistency(session, old, new)

    def client(note: str) -> None:
        try:
            CheckpointMemory(memory.folder, memory.name).refresh(note, consistency, verifier)
        except LedgerIntegrityError as exc:  # an older note after a newer one: a rollback
            if "rollback" not in exc.message:
                errors.append(exc)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in notes * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert memory.size_to_prove(verifier) == size_of(notes[-1])


def test_refresh_fetching_under_the_lock_never_sees_a_false_rollback(cp: Chainproof,
                                                                     tmp_path: Path) -> None:
    memory = CheckpointMemory(tmp_path / "checkpoints", cp.settings.origin)
    history(cp, tmp_path, 1)
    verifier = verifier_of(cp)
    errors: list[BaseException] = []
    stop = threading.Event()

    def consistency(old: int, new: int) -> dict[str, object]:
        with cp.session() as session:
            return prove_consistency(session, old, new)

    def client() -> None:
        while not stop.is_set():
            try:
                CheckpointMemory(memory.folder, memory.name).refresh(
                    lambda: latest_note(cp), consistency, verifier)
            except BaseException as exc:
                errors.append(exc)
                return

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(6):
        (tmp_path / f"r{i}.csv").write_text(f"r{i}\n")
        cp.add(tmp_path / f"r{i}.csv", kind="dataset", name=f"r{i}")
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    contact(cp, memory)
    assert memory.size_to_prove(verifier) == size_of(latest_note(cp))
