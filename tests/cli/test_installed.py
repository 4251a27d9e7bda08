"""Every mistake a new user makes, through the INSTALLED ``chainproof`` command (the console
script beside this interpreter, as ``make demo``/``make test`` install it): one clear message,
the right exit code, no traceback, and nothing changed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

CHAINPROOF = Path(sys.executable).parent / "chainproof"

pytestmark = pytest.mark.skipif(not CHAINPROOF.exists() and not os.environ.get("CI"),
                                reason=f"no installed entry point at {CHAINPROOF}")


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "COLUMNS": "80", "CHAINPROOF_IDENTITY": "tester"}
    for var in ("CHAINPROOF_DB", "CHAINPROOF_STORE", "CHAINPROOF_SERVER", "CHAINPROOF_TOKEN"):
        full.pop(var, None)
    full.update(env or {})
    return subprocess.run([str(CHAINPROOF), *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One workspace with a dataset (orders@1) and a long-named asset, shared by the module."""
    root = tmp_path_factory.mktemp("installed") / "proj"
    root.mkdir()
    assert cli("init", cwd=root).returncode == 0
    (root / "orders.csv").write_text("id,amount,fraud\n1,10,0\n2,20,1\n3,30,0\n")
    done = cli("add", "orders.csv", "--kind", "dataset", "--name", "orders", cwd=root)
    assert done.returncode == 0, done.stderr
    (root / "policy.bin").write_bytes(b"\xff\xfe\x00binary\x80\x81")
    (root / "weights.bin").write_bytes(b"weights")
    long_name = "warehouse-fraud-review-model-with-a-rather-long-descriptive-name"
    done = cli("add", "weights.bin", "--kind", "model", "--name", long_name, cwd=root)
    assert done.returncode == 0, done.stderr
    (root / "emptydir").mkdir()
    (root / "empty.yaml").write_text("  \n")
    (root / "dangling.pkl").symlink_to(root / "no-such-target.pkl")
    yield root


def snapshot(root: Path) -> tuple[int, list[str]]:
    """The log's size and the project's files (outside the workspace's caches)."""
    from chainproof.service import Chainproof
    from chainproof.workspace import load_settings

    with Chainproof.open(load_settings(root, identity="tester")) as cp:
        size = int(cp.audit_log(limit=1)[0]["seq"]) + 1
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*")
                   if "cache" not in p.relative_to(root).parts)
    return size, files


def assert_clean_error(done: subprocess.CompletedProcess[str], code: int, message: str) -> None:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    assert message in done.stderr.replace("\n", " "), done.stderr


MISTAKES = [
    (["add"], "Missing argument"),
    (["add", "orders.csv", "--kind", "dataset"], "Missing option '--name'"),
    (["nosuch"], "No such command 'nosuch'"),
    (["ls", "--bogus"], "No such option: --bogus"),
    (["server", "--port", "notaport"], "--port"),
    (["serve", "m@production", "--port", "99999"], "--port"),
    (["audit", "log", "--limit", "many"], "--limit"),
    (["validate", "orders@1", "--html", "/nonexistent/dir/r.html"],
     "folder /nonexistent/dir does not exist"),
    (["policy", "set", "policy.bin"], "is not a UTF-8 text policy"),
    (["trust", "set", "policy.bin"], "is not a UTF-8 text policy"),
    (["policy", "set", "no-such-policy.yaml"], "cannot read no-such-policy.yaml"),
    (["scan", "/missing.pkl"], "no such file or folder: /missing.pkl"),
    (["token", "create", "tester", "--expires", "0d"], "must live at least one hour"),
    (["token", "create", "tester", "--expires", "soon"], "is not a duration"),
    (["digest", "nothing-here.bin"], "no such file or folder"),
    (["digest", ".", "--sha256sum"], "sha256sum can only check files"),
    (["show", "ghost@1"], "no asset named 'ghost'"),
    (["promote", "model", "--to", "production"], "is not MODEL@VERSION"),
    (["pull", "m@production", "/nonexistent/dir/model.bin"], "does not exist"),
    (["init", "/nonexistent/deep/path"], "/nonexistent/deep does not exist"),
    # wrong reference grammars, Unicode digits, huge and negative numbers
    (["show", "orders@"], "'' is not a version number"),
    (["show", "@1"], "name is empty"),
    (["show", "a@b@c"], "has more than one '@'"),
    (["show", "m@²"], "'²' is not a version number"),
    (["verify", "orders@99999999999999999999"], "versions run from 1 to"),
    (["promote", "m@²", "--to", "production"], "'²' is not a version number"),
    (["promote", "m@1", "--to", ""], "alias is empty"),
    (["policy", "check", "m@1", "--to", "bad alias"], "alias 'bad alias' is not a valid name"),
    (["pull", "m@", "out.bin"], "is not MODEL@ALIAS"),
    (["registry", "requests", "--status", "weird"], "--status 'weird' is not one of pending"),
    (["run", "--step", "Bad Step", "--", "true"], "step kind 'Bad Step' is not valid"),
    # --expires edge cases
    (["token", "create", "tester", "--expires", "400d"], "must expire within a year"),
    (["token", "create", "tester", "--expires", "99999999999999999999d"],
     "must expire within a year"),
    (["token", "create", "tester", "--expires", "-1d"], "is not a duration"),
    (["token", "create", "tester", "--expires", "9000h"], "must expire within a year"),
    # folders, empty and binary files where files are expected
    (["scan", "emptydir"], "emptydir holds no files to scan"),
    (["scan", "orders.csv", "--allowlist", "policy.bin"], "is not a UTF-8 text allowlist"),
    (["scan", "orders.csv", "--allowlist", "emptydir"], "emptydir is a folder"),
    (["policy", "set", "empty.yaml"], "empty.yaml is empty"),
    (["trust", "set", "empty.yaml"], "empty.yaml is empty"),
    (["validate", "orders@1", "--schema", "emptydir"], "--schema emptydir is a folder"),
    (["validate", "orders@1", "--schema", "no/such/schema.yaml"],
     "no such file, and no schema asset of that name"),
    (["validate", "orders@1", "--block-on", "maybe"], "--block-on 'maybe' is not fail or warn"),
    (["audit", "verify", "--since", "policy.bin"], "cannot read checkpoint file policy.bin"),
    (["key", "register", "tester", "policy.bin"], "not a PEM public key"),
    (["key", "generate", "--out", "/nonexistent/k.pem"], "folder /nonexistent does not exist"),
    (["registry", "register", "m", "--file", "nothing.bin"], "no such file or folder"),
    # the root --json: a command without JSON output refuses it before doing anything
    (["--json", "registry", "create", "m"], "`chainproof registry create` has no JSON output"),
]


@pytest.mark.parametrize(("args", "message"), MISTAKES, ids=[" ".join(a) for a, _ in MISTAKES])
def test_mistake_is_one_message_exit_2_nothing_changed(project: Path, args: list[str],
                                                      message: str) -> None:
    before = snapshot(project)
    assert_clean_error(cli(*args, cwd=project), 2, message)
    assert snapshot(project) == before
    assert not Path("/nonexistent").exists()


def test_json_errors_are_json_on_stderr(project: Path) -> None:
    done = cli("show", "ghost@1", "--json", cwd=project)
    assert done.returncode == 2 and done.stdout == ""
    error = json.loads(done.stderr)["error"]
    assert error["exit_code"] == 2 and "no asset named 'ghost'" in error["message"]
    usage = cli("ls", "--json", "--bogus", cwd=project)
    assert usage.returncode == 2 and usage.stdout == ""
    assert json.loads(usage.stderr)["error"]["type"] == "usage"


def test_failing_command_in_run_passes_its_status(project: Path) -> None:
    before, _ = snapshot(project)
    done = cli("run", "--step", "train", "--", sys.executable, "-c", "raise SystemExit(3)",
               cwd=project)
    assert_clean_error(done, 3, "exited with status 3")
    after, _ = snapshot(project)
    assert after == before + 1  # the failed step is recorded (nothing else)


def test_command_that_cannot_start_exits_127(project: Path) -> None:
    done = cli("run", "--step", "train", "--", "/no/such/command", cwd=project)
    assert_clean_error(done, 127, "command could not start")


def test_version_and_help_without_type_tags(project: Path) -> None:
    done = cli("--version", cwd=project)
    assert done.returncode == 0 and done.stdout.startswith("chainproof ")
    for args in (["--help"], ["add", "--help"], ["run", "--help"], ["token", "create", "--help"]):
        shown = cli(*args, cwd=project)
        assert shown.returncode == 0, shown.stderr
        assert "<str>" not in shown.stdout and "<bool>" not in shown.stdout, shown.stdout


def test_no_arguments_prints_help(project: Path) -> None:
    done = cli(cwd=project)
    assert "Traceback" not in done.stderr
    assert "Usage" in done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="no sha256sum on this machine")
def test_digest_sha256sum_is_checkable(project: Path) -> None:
    done = cli("digest", "orders.csv", "--sha256sum", cwd=project)
    assert done.returncode == 0
    (project.parent / "sums.txt").write_text(done.stdout)
    check = subprocess.run(["sha256sum", "-c", str(project.parent / "sums.txt")], cwd=project,
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0 and "orders.csv: OK" in check.stdout


def first_column(table: str) -> str:
    """The first column of a Rich table, its wrapped pieces joined."""
    return "".join(line.split("│")[1].strip() for line in table.splitlines()
                   if line.count("│") >= 2)


def test_long_names_wrap_at_80_columns(project: Path) -> None:
    done = cli("ls", cwd=project)
    assert done.returncode == 0
    assert max(len(line) for line in done.stdout.splitlines()) <= 80
    name = "warehouse-fraud-review-model-with-a-rather-long-descriptive-name@1"
    assert name in first_column(done.stdout), done.stdout
    assert "…" not in first_column(done.stdout)


def test_init_creates_only_the_last_folder(tmp_path: Path) -> None:
    done = cli("init", "fresh", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "fresh" / ".chainproof" / "config.json").is_file()
    assert "created folder" in done.stdout
    again = cli("init", "fresh", cwd=tmp_path)
    assert_clean_error(again, 2, "already holds a chainproof workspace")


ENVIRONMENTS = [
    ({"CHAINPROOF_SERVER": "http://127.0.0.1:1", "CHAINPROOF_TOKEN": "cpt_x"},
     "cannot reach the chainproof server http://127.0.0.1:1"),
    ({"CHAINPROOF_SERVER": "http://[::1", "CHAINPROOF_TOKEN": "cpt_x"}, "is not a server URL"),
    ({"CHAINPROOF_SERVER": "http://host:notaport", "CHAINPROOF_TOKEN": "cpt_x"},
     "is not a server URL"),
    ({"CHAINPROOF_SERVER": "http://host:99999", "CHAINPROOF_TOKEN": "cpt_x"},
     "is not a server URL"),
    ({"CHAINPROOF_SERVER": "127.0.0.1:8700", "CHAINPROOF_TOKEN": "cpt_x"},
     "must start with http:// or https://"),
    ({"CHAINPROOF_IDENTITY": "ghost"},
     "identity 'ghost' (from CHAINPROOF_IDENTITY) does not exist in this workspace"),
    ({"CHAINPROOF_DB": "garbage"}, "cannot open database 'garbage'"),
]


@pytest.mark.parametrize(("env", "message"), ENVIRONMENTS,
                         ids=[" ".join(f"{k}={v}" for k, v in e.items()) for e, _ in ENVIRONMENTS])
def test_environment_pointing_nowhere_is_one_message(project: Path, env: dict[str, str],
                                                     message: str) -> None:
    before = snapshot(project)
    assert_clean_error(cli("ls", cwd=project, env=env), 2, message)
    as_json = cli("--json", "add", "orders.csv", "--kind", "dataset", "--name", "orders",
                  cwd=project, env=env)
    assert as_json.returncode == 2 and as_json.stdout == ""
    assert message in json.loads(as_json.stderr)["error"]["message"]
    assert snapshot(project) == before


def test_json_before_or_after_the_command(project: Path) -> None:
    """`chainproof --json ls` is `chainproof ls --json`; errors are JSON in both positions."""
    before = snapshot(project)
    root, sub = cli("--json", "ls", cwd=project), cli("ls", "--json", cwd=project)
    assert root.returncode == sub.returncode == 0
    assert json.loads(root.stdout) == json.loads(sub.stdout)
    assert {v["ref"] for v in json.loads(root.stdout)} >= {"orders@1"}
    nested = cli("--json", "registry", "list", cwd=project)
    assert nested.returncode == 0 and json.loads(nested.stdout) == []
    for args in (["--json", "show", "ghost@1"], ["show", "ghost@1", "--json"]):
        done = cli(*args, cwd=project)
        assert done.returncode == 2 and done.stdout == "", done.stdout
        error = json.loads(done.stderr)["error"]
        assert error["exit_code"] == 2 and "no asset named 'ghost'" in error["message"]
    for args in (["--json", "ls", "--bogus"], ["ls", "--bogus", "--json"]):
        done = cli(*args, cwd=project)
        assert done.returncode == 2 and done.stdout == ""
        assert json.loads(done.stderr)["error"]["type"] == "usage"
    refused = cli("--json", "approve", "abc", cwd=project)
    assert refused.returncode == 2 and refused.stdout == ""
    assert "has no JSON output" in json.loads(refused.stderr)["error"]["message"]
    proof = cli("--json", "audit", "prove", "0", cwd=project)  # JSON output anyway: accepted
    assert proof.returncode == 0 and "leaf_hash" in json.loads(proof.stdout)
    assert snapshot(project) == before


def test_scan_of_an_asset_in_an_unparsed_format_fails_and_is_recorded(project: Path) -> None:
    """A resolved, scanned asset is a verification result: exit 1 and a recorded signed report,
    the message saying its format is not parsed; a local path that cannot be read is bad input
    (exit 2) and records nothing."""
    model = "warehouse-fraud-review-model-with-a-rather-long-descriptive-name@1"
    size, _ = snapshot(project)
    done = cli("scan", model, cwd=project)
    assert_clean_error(done, 1, f"{model} did not pass the scan")
    assert "its format is not one chainproof parses" in done.stderr.replace("\n", " ")
    assert "so it cannot pass the scan" in done.stderr.replace("\n", " ")
    assert "recorded signed scan report" in done.stdout
    after, _ = snapshot(project)
    assert after > size  # the failing report is recorded (and signed)

    as_json = cli("--json", "scan", model, cwd=project)
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["recorded_as"] and report["clean"] is False
    error = json.loads(as_json.stderr)["error"]
    assert error["type"] == "ScanFindingError" and error["exit_code"] == 1
    assert any("not one chainproof parses" in p for p in error["problems"])

    before = snapshot(project)
    unreadable = cli("scan", "dangling.pkl", cwd=project)
    assert unreadable.returncode == 2 and "Traceback" not in unreadable.stderr
    assert "not_inspectable" in unreadable.stdout and "cannot stat" in unreadable.stdout
    assert snapshot(project) == before


def column(table: str, index: int) -> str:
    """Column ``index`` of a boxed Rich table, its wrapped pieces joined."""
    return "".join(line.split("│")[index + 1].strip() for line in table.splitlines()
                   if line.count("│") >= 2)


def test_every_listing_wraps_at_80_columns(tmp_path: Path) -> None:
    """Names, refs and ids wrap onto the next line at 80 columns; none is cut with '…'."""
    assert cli("init", cwd=tmp_path).returncode == 0
    long_model = "warehouse/fraud-review-model-with-a-rather-long-descriptive-name"
    (tmp_path / "m.bin").write_bytes(b"weights")
    for args in (["registry", "create", long_model],
                 ["registry", "register", long_model, "--file", "m.bin"],
                 ["identity", "create", "svc-a-service-account-with-a-very-long-name-indeed",
                  "--kind", "service"],
                 ["token", "create", "svc-a-service-account-with-a-very-long-name-indeed"],
                 ["role", "grant", "svc-a-service-account-with-a-very-long-name-indeed",
                  "trainer", "--namespace", "warehouse-with-a-long-namespace-name"]):
        done = cli(*args, cwd=tmp_path)
        assert done.returncode == 0, (args, done.stderr)
    checks = [(["registry", "list"], 0, long_model),
              (["registry", "versions", long_model], 1,
               "warehouse/fraud-review-model-with-a-rather-long-descriptive-name@1"),
              (["identity", "list"], 0, "svc-a-service-account-with-a-very-long-name-indeed"),
              (["role", "list"], 2, "warehouse-with-a-long-namespace-name"),
              (["token", "list"], 1, "svc-a-service-account-with-a-very-long-name-indeed"),
              (["audit", "log"], 4, "model:" + long_model),
              (["ls"], 0, "warehouse/fraud-review-model-with-a-rather-long-descriptive-name@1")]
    for args, index, name in checks:
        done = cli(*args, cwd=tmp_path)
        assert done.returncode == 0, (args, done.stderr)
        assert max(len(line) for line in done.stdout.splitlines()) <= 80, done.stdout
        assert name in column(done.stdout, index), (args, done.stdout)
        if args[0] != "ls" and args[:2] != ["registry", "versions"]:  # those abbreviate digests
            assert "…" not in done.stdout, (args, done.stdout)
