"""The demo's closing hint and section titles: a command the user can type as printed (the
venv's chainproof when it is not on PATH), and nothing cut at 80 columns."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from chainproof.demo import _show

INSTALLED = Path(sys.executable).parent / "chainproof"


def fake_venv(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    exe = bin_dir / "chainproof"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    (bin_dir / "python").write_text("")
    return bin_dir


def test_hint_names_the_venv_entry_point_when_chainproof_is_not_on_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = fake_venv(tmp_path)
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    hint = _show.explore_hint(tmp_path / "my project", "admin")
    assert f"{bin_dir / 'chainproof'} ls" in hint
    assert f"cd '{tmp_path / 'my project'}' && CHAINPROOF_IDENTITY=admin" in hint
    assert f"source {bin_dir / 'activate'}" in hint
    assert _show.chainproof_command() == str(bin_dir / "chainproof")


def test_hint_says_chainproof_when_it_is_on_path(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = fake_venv(tmp_path)
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin:/bin")
    hint = _show.explore_hint(tmp_path, "admin")
    assert hint.endswith("CHAINPROOF_IDENTITY=admin chainproof ls")
    assert "source" not in hint


def test_long_section_titles_wrap_instead_of_being_cut() -> None:
    console = Console(file=io.StringIO(), width=80, color_system=None)
    title = ("[bold]attack: feature-tampering[/] — a feature job silently changes a "
             "transformation's meaning")
    _show.section(console, title)
    _show.section(console, "[bold]summary[/]")
    assert isinstance(console.file, io.StringIO)
    text = console.file.getvalue()
    assert "…" not in text
    assert "transformation's meaning" in " ".join(text.split())
    assert " summary " in text
    assert max(len(line) for line in text.splitlines()) <= 80


@pytest.mark.skipif(not INSTALLED.exists(), reason=f"no installed entry point at {INSTALLED}")
def test_installed_demo_at_80_columns_hints_a_runnable_command(tmp_path: Path) -> None:
    """`chainproof demo` as `make demo` runs it, .venv/bin not on PATH: the closing hint is the
    command to type, and the demo's tables wrap long names at 80 columns instead of cutting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINPROOF_")}
    env.update({"COLUMNS": "80", "PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)})
    done = subprocess.run([str(INSTALLED), "demo", "--rows", "1000", "--scenario", "poisoning"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    hint = next(line for line in done.stdout.splitlines() if "explore it:" in line)
    assert f"CHAINPROOF_IDENTITY=platform-admin {INSTALLED} ls" in hint
    assert f"source {INSTALLED.parent / 'activate'}" in hint
    # The feature assets' table: the first column's wrapped pieces make the whole names.
    start = done.stdout.index("3. svc-feature-job builds features")
    block = done.stdout[start:done.stdout.index("4. svc-evaluator", start)]
    names = "".join(line.split("│")[0].strip() for line in block.splitlines()
                    if "│" in line)
    assert "warehouse/order-features@1" in names and "warehouse/ticket-features@1" in names
    assert "…" not in names
    tables = [line for line in done.stdout.splitlines() if "│" in line or "━" in line]
    assert max(len(line) for line in tables) <= 80
