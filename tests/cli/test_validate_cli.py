"""`chainproof validate`: verified inputs, cached reference profile, signed report, exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from chainproof.cli.main import main


def table(path: Path, seed: int, *, shift: float = 0.0, flip: float = 0.0) -> Path:
    rng = np.random.default_rng(seed)
    n = 4000
    amount = rng.lognormal(3, 1, n) + shift
    country = rng.choice(["de", "fr", "nl"], n, p=[0.5, 0.3, 0.2])
    fraud = (amount > np.quantile(amount, 0.9)).astype(int)
    flips = rng.random(n) < flip
    fraud = np.where(flips & (fraud == 0), 1, fraud)
    lines = ["order_id,amount,country,fraud"] + [
        f"{i},{a:.4f},{c},{f}" for i, (a, c, f) in enumerate(zip(amount, country, fraud,
                                                                  strict=True))]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_validate_records_report_and_fails_on_drift(backend: Any, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["init"] + (["--db", backend.db_url] if backend.db_url else []) + (
        ["--store", backend.store] if backend.store else [])
    assert main(args) == 0
    assert main(["add", str(table(tmp_path / "v1.csv", 1)), "--kind", "dataset",
                 "--name", "orders"]) == 0
    assert main(["add", str(table(tmp_path / "v2.csv", 2)), "--kind", "dataset",
                 "--name", "orders"]) == 0
    capsys.readouterr()
    assert main(["validate", "orders@2", "--label", "fraud", "--key", "order_id",
                 "--json"]) == 0
    clean = json.loads(capsys.readouterr().out)
    assert clean["reference"] == "orders@1" and clean["recorded_as"] == "orders-validation@1"
    assert main(["add", str(table(tmp_path / "v3.csv", 3, shift=15.0, flip=0.1)), "--kind",
                 "dataset", "--name", "orders"]) == 0
    capsys.readouterr()
    html = tmp_path / "report.html"
    assert main(["validate", "orders@3", "--label", "fraud", "--html", str(html)]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "amount" in out
    assert html.read_text().lstrip().lower().startswith("<!doctype html")
    page = html.read_text().replace("http://www.w3.org/2000/svg", "")  # a namespace, no fetch
    assert "http" not in page and "<script src" not in page and "<link" not in page
    capsys.readouterr()
    assert main(["explain", "orders@3", "--json"]) == 0
    reports = json.loads(capsys.readouterr().out)["reports"]
    assert [r["ref"] for r in reports] == ["orders-validation@2"]
