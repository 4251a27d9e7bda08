"""The CLI end to end: exit codes (0 ok, 1 verification failed, 2 bad input) and clear errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from attacks import overwrite_blob

from chainproof.cli.main import main


@pytest.fixture()
def ws(backend: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    project = tmp_path / "proj"
    project.mkdir()
    monkeypatch.chdir(project)
    args = ["init"]
    if backend.db_url:
        args += ["--db", backend.db_url]
    if backend.store:
        args += ["--store", backend.store]
    assert main(args) == 0
    (project / "orders.csv").write_text("id,amount\n1,10\n2,20\n")
    return project


def run_json(capsys: pytest.CaptureFixture[str], args: list[str]) -> object:
    capsys.readouterr()
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_walkthrough(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    added = run_json(capsys, ["add", "orders.csv", "--kind", "dataset", "--name", "orders"])
    assert isinstance(added, dict) and added["created"] and added["version"] == 1
    train = ws / "train.py"
    train.write_text("import os, pathlib\n"
                     "data = pathlib.Path(os.environ['CHAINPROOF_INPUT_ORDERS']).read_text()\n"
                     "pathlib.Path('model.txt').write_text('model of ' + data)\n")
    assert main(["run", "--step", "train", "--input", "orders@1", "--code", "train.py",
                 "--output", "model.txt:model:fraud-model", "--", sys.executable,
                 "{input:train.py}"]) == 0
    answer = run_json(capsys, ["explain", "fraud-model@1"])
    assert isinstance(answer, dict) and answer["verified"] is True
    assert [c["ref"] for c in answer["code"]] == ["train.py@1"]
    graph = run_json(capsys, ["lineage", "fraud-model@1"])
    assert isinstance(graph, dict) and len(graph["steps"]) == 1
    capsys.readouterr()
    assert main(["lineage", "fraud-model@1", "--dot"]) == 0
    assert capsys.readouterr().out.startswith("digraph")
    listing = run_json(capsys, ["ls"])
    assert isinstance(listing, list) and len(listing) == 3
    shown = run_json(capsys, ["show", "orders@1"])
    assert isinstance(shown, dict) and len(shown["consumed_by"]) == 1
    assert main(["verify", "--all"]) == 0
    assert main(["audit", "verify"]) == 0
    assert main(["audit", "checkpoint", "--out", str(ws / "witness.txt")]) == 0
    assert main(["audit", "verify", "--since", str(ws / "witness.txt")]) == 0
    proof = run_json(capsys, ["audit", "log"])
    assert isinstance(proof, list) and proof[0]["action"] == "step.record"
    capsys.readouterr()
    assert main(["audit", "prove", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["seq"] == 1


def test_digest_matches_sha256sum(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import hashlib

    f = tmp_path / "x.bin"
    f.write_bytes(b"hello")
    assert main(["digest", str(f)]) == 0
    assert capsys.readouterr().out.split()[0] == "sha256:" + hashlib.sha256(b"hello").hexdigest()
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_bytes(b"a")
    out = run_json(capsys, ["digest", str(tmp_path / "d")])
    assert isinstance(out, dict) and out["manifest"]["files"][0]["path"] == "a"


@pytest.mark.parametrize(("args", "message"), [
    (["add", "missing.csv", "--kind", "dataset", "--name", "x"], "missing.csv"),
    (["add", "orders.csv", "--kind", "dataset", "--name", "a/b"], "path separator"),
    (["add", "orders.csv", "--kind", "dataset", "--name", "../up"], "path separator"),
    (["add", "orders.csv", "--kind", "dataset", "--name", "bad\x01"], "control character"),
    (["add", "orders.csv", "--kind", "weights", "--name", "x"], "unknown asset kind"),
    (["show", "ghost@1"], "no asset named 'ghost'"),
    (["show", "orders@x"], "not a version number"),
    (["run", "--step", "t", "--output", "never.bin:model:m", "--", sys.executable, "-c", "0"],
     "was not produced"),
    (["run", "--step", "t", "--output", "bad-spec", "--", "true"], "PATH:KIND:NAME"),
    (["audit", "verify", "--since", "nowhere.txt"], "cannot read checkpoint file"),
    (["verify"], "name a version or pass --all"),
])
def test_bad_input_exit_2_and_nothing_written(ws: Path, capsys: pytest.CaptureFixture[str],
                                             args: list[str], message: str) -> None:
    capsys.readouterr()
    before = _log_size(capsys)
    assert main(args) == 2
    assert message in capsys.readouterr().err.replace("\n", " ")
    after = _log_size(capsys)
    # a failed `run` records its failure (one log entry); nothing else writes
    assert after - before == (1 if args[0] == "run" and "PATH:KIND" not in message else 0)


def test_failing_run_passes_its_status_through(ws: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    before = _log_size(capsys)
    assert main(["run", "--step", "t", "--", sys.executable, "-c", "raise SystemExit(4)"]) == 4
    assert "exited with status 4" in capsys.readouterr().err.replace("\n", " ")
    assert _log_size(capsys) - before == 1  # the failure is recorded, nothing else


def _log_size(capsys: pytest.CaptureFixture[str]) -> int:
    capsys.readouterr()
    assert main(["audit", "log", "--limit", "1", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    return int(entries[0]["seq"]) + 1


def test_corrupted_blob_exit_1(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from chainproof.service import Chainproof

    assert main(["add", "orders.csv", "--kind", "dataset", "--name", "orders"]) == 0
    with Chainproof.open() as cp:
        overwrite_blob(cp.store, cp.resolve("orders@1").digest, b"tampered")
    capsys.readouterr()
    assert main(["verify", "orders@1"]) == 1
    assert "verification failed" in capsys.readouterr().err
    assert main(["explain", "orders@1"]) == 1


def test_no_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["ls"]) == 2
    assert "chainproof init" in capsys.readouterr().err


def test_unreachable_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHAINPROOF_DB", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("CHAINPROOF_STORE", str(tmp_path / "objects"))
    assert main(["ls"]) == 2
    assert "cannot reach the database" in capsys.readouterr().err


def test_database_at_newer_migration(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sqlalchemy import text

    from chainproof.db import head_revision
    from chainproof.service import Chainproof

    with Chainproof.open() as cp:
        engine = cp.engine
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
        try:
            capsys.readouterr()
            assert main(["ls"]) == 2
            assert "newer" in capsys.readouterr().err
        finally:  # the PostgreSQL database is shared by this worker's tests
            with engine.begin() as conn:
                conn.execute(text("UPDATE alembic_version SET version_num = :v"),
                             {"v": head_revision()})
