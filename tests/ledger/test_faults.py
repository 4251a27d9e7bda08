"""Crash and concurrency faults: SIGKILL mid-burst, and concurrent writers (I3, I7)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chainproof.ledger import audit
from chainproof.service import Chainproof

BURST = r"""
import sys, pathlib
from chainproof.service import Chainproof
from chainproof.workspace import load_settings
cp = Chainproof.open(load_settings(pathlib.Path(sys.argv[1])))
work = pathlib.Path(sys.argv[2]); work.mkdir(parents=True, exist_ok=True)
tag = sys.argv[3]
for i in range(int(sys.argv[4])):
    f = work / f"{tag}-{i}.csv"
    f.write_text(f"{tag},{i}\n" * (1 + i % 7))
    r = cp.add(f, kind="dataset", name=f"{tag}-{i % 5}")
    print("ack", r.version.ref, r.version.digest, flush=True)
print("done", flush=True)
"""


def _spawn(cp: Chainproof, work: Path, tag: str, count: int) -> subprocess.Popen[str]:
    env = dict(os.environ)
    return subprocess.Popen([sys.executable, "-c", BURST, str(cp.settings.workspace.parent),  # type: ignore[union-attr]
                             str(work), tag, str(count)], stdout=subprocess.PIPE, text=True,
                            env=env)


def _verify(cp: Chainproof) -> audit.AuditReport:
    verifier = audit.load_log_verifier(cp.settings.log_public_path, cp.settings.origin)
    with cp.session() as session:
        return audit.verify_log(session, verifier)


@pytest.mark.slow
def test_sigkill_during_appends_never_corrupts(cp: Chainproof, tmp_path: Path) -> None:
    rng = random.Random(1234)
    acked: dict[str, str] = {}
    rounds = 6
    for n in range(rounds):
        proc = _spawn(cp, tmp_path / f"w{n}", f"k{n}", 10_000)
        assert proc.stdout is not None
        first = proc.stdout.readline()  # wait until it is writing
        assert first.startswith("ack"), first
        deadline = time.monotonic() + rng.uniform(0.05, 0.8)
        lines = [first]
        while time.monotonic() < deadline:
            lines.append(proc.stdout.readline())
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate()
        lines.extend(rest.splitlines())
        for line in lines:
            if line.startswith("ack"):
                _, ref, digest = line.split()
                acked[ref] = digest
        report = _verify(cp)  # log, checkpoints and state all verify after every crash
        assert report.size == report.checkpoint_size
    stored = {v.ref: v.digest for v in cp.all_versions()}
    lost = {ref for ref in acked if stored.get(ref) != acked[ref]}
    assert not lost, f"acknowledged writes lost: {sorted(lost)[:5]}"
    assert len(acked) > rounds


@pytest.mark.slow
def test_concurrent_writers_make_one_linear_log(cp: Chainproof, tmp_path: Path) -> None:
    from chainproof.ledger.log import log_size

    with cp.session() as session:
        base = log_size(session)
    procs = [_spawn(cp, tmp_path / tag, tag, 40) for tag in ("a", "b")]
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0 and out.strip().endswith("done"), out[-500:]
    report = _verify(cp)
    assert report.size == base + 80  # 80 appends after init: no gaps, no duplicates
    with cp.session() as session:
        from sqlalchemy import text

        seqs = [r[0] for r in session.execute(text("SELECT seq FROM log_entries ORDER BY seq"))]
    assert seqs == list(range(base + 80))
