"""``chainproof registry register MODEL --file PATH``: store and register in one step, with
clear exit-2 refusals that write nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chainproof.cli.main import main
from chainproof.service import Chainproof


@pytest.fixture()
def ws(backend: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace (made by ``chainproof init``) with model ``fraud-review`` and a model file."""
    project = tmp_path / "proj"
    project.mkdir()
    monkeypatch.chdir(project)
    args = ["init"]
    if backend.db_url:
        args += ["--db", backend.db_url]
    if backend.store:
        args += ["--store", backend.store]
    assert main(args) == 0
    assert main(["registry", "create", "fraud-review"]) == 0
    (project / "model.pkl").write_bytes(b"\x80\x04K\x01.")
    (project / "other.pkl").write_bytes(b"\x80\x04K\x02.")
    return project


def run_json(capsys: pytest.CaptureFixture[str], args: list[str]) -> Any:
    capsys.readouterr()
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def log_actions(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """Every log entry's action, oldest first."""
    entries = run_json(capsys, ["audit", "log", "--limit", "10000"])
    return [e["action"] for e in sorted(entries, key=lambda e: int(e["seq"]))]


def test_register_file_then_asset_name_then_existing_asset(
        ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = log_actions(capsys)
    first = run_json(capsys, ["registry", "register", "fraud-review", "--file", "model.pkl"])
    assert first == {"model": "fraud-review", "version": 1, "asset": "fraud-review@1"}
    assert log_actions(capsys)[len(before):] == ["asset.version.add", "registry.version.add"]
    named = run_json(capsys, ["registry", "register", "fraud-review", "--file", "other.pkl",
                              "--asset-name", "fraud-weights"])
    assert named == {"model": "fraud-review", "version": 2, "asset": "fraud-weights@1"}
    pinned = run_json(capsys, ["registry", "register", "fraud-review", "fraud-review@1"])
    assert pinned == {"model": "fraud-review", "version": 3, "asset": "fraud-review@1"}
    capsys.readouterr()
    assert main(["registry", "register", "fraud-review", "--file", "model.pkl"]) == 0
    text = capsys.readouterr().out.replace("\n", " ")
    assert "model fraud-review version 4: it pins the stored asset version fraud-review@1" in text
    versions = run_json(capsys, ["registry", "versions", "fraud-review"])
    assert [v["asset"] for v in versions["versions"]] == [
        "default/fraud-review@1", "default/fraud-weights@1", "default/fraud-review@1",
        "default/fraud-review@1"]
    with Chainproof.open() as cp:
        assert cp.store.read_bytes(cp.resolve("fraud-weights@1").digest) == \
            (ws / "other.pkl").read_bytes()
    assert main(["audit", "verify"]) == 0


def test_register_a_model_directory(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (ws / "saved" / "variables").mkdir(parents=True)
    (ws / "saved" / "saved_model.pb").write_bytes(b"graph")
    (ws / "saved" / "variables" / "data").write_bytes(b"weights")
    answer = run_json(capsys, ["registry", "register", "fraud-review", "--file", "saved"])
    assert answer["version"] == 1
    shown = run_json(capsys, ["show", answer["asset"]])
    assert shown["version"]["is_directory"] is True and shown["version"]["kind"] == "model"


@pytest.mark.parametrize(("args", "message"), [
    (["fraud-review", "fraud-review@1", "--file", "model.pkl"],
     "give either a model asset NAME@VERSION or --file PATH"),
    (["fraud-review"], "give either a model asset NAME@VERSION or --file PATH"),
    (["fraud-review", "--asset-name", "x"],
     "give either a model asset NAME@VERSION or --file PATH"),
    (["fraud-review", "--file", "missing.pkl"], "missing.pkl"),
    (["fraud-review", "--file", "model.pkl", "--asset-name", "..escape"], "'..'"),
    (["fraud-review", "--file", "model.pkl", "--asset-name", "ns/evil"], "path separator"),
    (["ghost", "--file", "model.pkl"], "no registered model"),
    (["team/fraud-review", "--file", "model.pkl"], "no registered model"),
])
def test_bad_input_exit_2_and_nothing_written(ws: Path, capsys: pytest.CaptureFixture[str],
                                             args: list[str], message: str) -> None:
    assert main(["registry", "register", "fraud-review", "--file", "other.pkl"]) == 0
    before = log_actions(capsys)
    assert main(["registry", "register", *args]) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert message in err
    assert "Traceback" not in err
    assert log_actions(capsys) == before
    versions = run_json(capsys, ["registry", "versions", "fraud-review"])
    assert len(versions["versions"]) == 1


def test_identity_without_write_model_is_refused_and_logged(
        ws: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    with Chainproof.open() as cp:
        cp.create_identity("svc-reader", "service")
        cp.grant_role("svc-reader", "reader", "default")
        cp.grant_role("svc-reader", "trainer", "sandbox")
    before = log_actions(capsys)
    monkeypatch.setenv("CHAINPROOF_IDENTITY", "svc-reader")
    assert main(["registry", "register", "fraud-review", "--file", "model.pkl"]) == 2
    assert "may not register model versions" in capsys.readouterr().err.replace("\n", " ")
    monkeypatch.setenv("CHAINPROOF_IDENTITY", "tester")
    assert log_actions(capsys) == [*before, "access.denied"]
    assert run_json(capsys, ["registry", "versions", "fraud-review"])["versions"] == []
    assert run_json(capsys, ["ls", "--kind", "model"]) == []
