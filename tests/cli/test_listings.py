"""The listings a user looks for: identities, tokens (never their secrets), namespaces,
registered models, and one recorded step."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from chainproof.cli.main import main


@pytest.fixture()
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    project = tmp_path / "proj"
    project.mkdir()
    monkeypatch.chdir(project)
    monkeypatch.setenv("COLUMNS", "120")
    assert main(["init"]) == 0
    (project / "orders.csv").write_text("id,amount\n1,10\n")
    return project


def as_json(capsys: pytest.CaptureFixture[str], args: list[str]) -> object:
    capsys.readouterr()
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_listings(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["identity", "create", "svc-trainer", "--kind", "service"]) == 0
    assert main(["add", "orders.csv", "--kind", "dataset", "--name", "orders",
                 "--namespace", "warehouse"]) == 0
    assert main(["registry", "create", "warehouse/fraud-review"]) == 0
    capsys.readouterr()
    assert main(["token", "create", "svc-trainer", "--json"]) == 0
    created = json.loads(capsys.readouterr().out)

    identities = as_json(capsys, ["identity", "list"])
    assert isinstance(identities, list)
    assert {"svc-trainer", "tester"} <= {i["name"] for i in identities}
    tokens = as_json(capsys, ["token", "list"])
    assert isinstance(tokens, list) and [t["id"] for t in tokens] == [created["id"]]
    assert created["token"] not in json.dumps(tokens)
    namespaces = as_json(capsys, ["namespace", "list"])
    assert isinstance(namespaces, list) and "warehouse" in {n["name"] for n in namespaces}
    models = as_json(capsys, ["registry", "list"])
    assert isinstance(models, list) and [m["model"] for m in models] == ["warehouse/fraud-review"]

    for args in (["identity", "list"], ["token", "list"], ["namespace", "list"],
                 ["registry", "list"]):
        capsys.readouterr()
        assert main(args) == 0
        text = capsys.readouterr().out
        assert created["token"] not in text
    assert "warehouse/fraud-review" in text


def test_step_show(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["run", "--step", "train", "--input", "orders@1", "--json", "--",
                 sys.executable, "-c", "0"]) == 2  # no orders@1 yet: refused, nothing run
    assert main(["add", "orders.csv", "--kind", "dataset", "--name", "orders"]) == 0
    capsys.readouterr()
    assert main(["run", "--step", "train", "--input", "orders@1", "--json", "--",
                 sys.executable, "-c", "0"]) == 0
    step_id = json.loads(capsys.readouterr().out)["step"]["id"]
    shown = as_json(capsys, ["step", "show", step_id])
    assert isinstance(shown, dict) and shown["inputs"] == ["orders@1"]
    assert main(["step", "show", step_id]) == 0
    assert f"step train {step_id}" in capsys.readouterr().out
    assert main(["step", "show", "0" * 32]) == 2
    assert "no step with id" in capsys.readouterr().err
    # the 12-digit prefix `explain` shows names the step too
    assert main(["step", "show", step_id[:12]]) == 0
    assert f"step train {step_id}" in capsys.readouterr().out
    assert main(["step", "show", "0" * 12]) == 2


def test_tags_descriptions_and_step_list(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["add", "orders.csv", "--kind", "dataset", "--name", "orders"]) == 0
    (ws / "model.bin").write_bytes(b"weights")
    assert main(["run", "--step", "train", "--input", "orders@1", "--output",
                 "model.bin:model:fraud-model", "--", sys.executable, "-c",
                 "open('model.bin', 'wb').write(b'weights')"]) == 0
    assert main(["registry", "create", "fraud-review"]) == 0
    assert main(["registry", "register", "fraud-review", "fraud-model@1"]) == 0
    assert main(["registry", "tag", "fraud-review", "team", "[bold]fraud[/]"]) == 0
    assert main(["registry", "describe", "fraud-review", "Reviews card payments"]) == 0
    assert main(["registry", "tag", "fraud-review", "dataset", "orders-1", "--version",
                 "1"]) == 0
    capsys.readouterr()
    from rich.console import Console

    import chainproof.cli.registry as registry_cli

    wide = Console(width=250, highlight=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(registry_cli, "out", wide)
        assert main(["registry", "list"]) == 0
    text = capsys.readouterr().out
    assert "team=[bold]fraud[/]" in text and "Reviews card payments" in text  # not styled
    info = as_json(capsys, ["registry", "versions", "fraud-review"])
    assert isinstance(info, dict) and info["versions"][0]["tags"] == {"dataset": "orders-1"}
    assert main(["registry", "untag", "fraud-review", "dataset", "--version", "1"]) == 0
    assert main(["registry", "untag", "fraud-review", "dataset", "--version", "1"]) == 2
    assert "has no tag 'dataset'" in capsys.readouterr().err
    assert main(["registry", "tag", "fraud-review", "chainproof.x", "y"]) == 2
    assert "reserved" in capsys.readouterr().err
    assert main(["registry", "tag", "fraud-review", "k", "v", "--version", "9"]) == 2
    steps = as_json(capsys, ["step", "list", "--kind", "train"])
    assert isinstance(steps, list) and [s["outputs"] for s in steps] == [["fraud-model@1"]]
    import chainproof.cli.assets as assets_cli

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(assets_cli, "out", wide)
        assert main(["step", "list"]) == 0
    listed = capsys.readouterr().out
    assert "fraud-model@1" in listed and steps[0]["id"] in listed
    assert main(["step", "list", "--limit", "0"]) == 2
    assert main(["step", "list", "--kind", "Bad Kind"]) == 2


def test_checkpoint_to_a_witness_file_in_json(ws: Path, capsys: pytest.CaptureFixture[str]
                                              ) -> None:
    witness = ws / "witness.txt"
    for args in (["audit", "checkpoint", "--out", str(witness), "--json"],
                 ["--json", "audit", "checkpoint", "--out", str(witness)]):
        capsys.readouterr()
        assert main(args) == 0
        answer = json.loads(capsys.readouterr().out)
        assert answer["appended_to"] == str(witness) and answer["size"] >= 1
    assert main(["audit", "verify", "--since", str(witness)]) == 0
