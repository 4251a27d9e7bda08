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
    full = {**os.environ, "COLUMNS": "80", "CHAINPROOF_IDENTITY": "tester", **(env or {})}
    for var in ("CHAINPROOF_DB", "CHAINPROOF_STORE", "CHAINPROOF_SERVER", "CHAINPROOF_TOKEN"):
        full.pop(var, None)
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
