"""Audit-log benchmark: appends/s (SQLite, PostgreSQL), full verification and inclusion proofs
at 1,000,000 entries, beside the physical limit (SHA-256 hashes per second on one core).

    .venv/bin/python benchmarks/ledger_bench.py [--entries 1000000] [--append 50000] [--no-pg]

Goals (issue 3): ≥ 5,000 appends/s with batched transactions; verifying 1 M entries ≤ 10 s;
one inclusion proof at 1 M entries ≤ 1 ms.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chainproof.ledger import audit
from chainproof.ledger.log import prove_inclusion
from chainproof.records.log import LogEntry
from chainproof.service import Chainproof
from chainproof.workspace import load_settings

WORK = Path(__file__).resolve().parent / "_work"
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def sha256_limit() -> tuple[float, float]:
    """Hashes/s on one core for a 65-byte node input and a ~400-byte leaf."""
    rates = []
    for size in (65, 400):
        data = b"x" * size
        n = 300_000
        start = time.perf_counter()
        for _ in range(n):
            hashlib.sha256(data).digest()
        rates.append(n / (time.perf_counter() - start))
    return rates[0], rates[1]


def detail(i: int) -> dict[str, object]:
    return {"namespace": "warehouse", "name": f"orders-{i % 97}", "kind": "dataset",
            "version": i, "digest": "sha256:" + hashlib.sha256(str(i).encode()).hexdigest(),
            "size": 1000 + i, "media_type": "text/csv"}


def append(cp: Chainproof, count: int, batch: int) -> float:
    start = time.perf_counter()
    done = 0
    while done < count:
        with cp.transaction() as tx:
            for _ in range(min(batch, count - done)):
                tx.appender.append(LogEntry(seq=tx.appender.size, time=tx.time, actor="bench",
                                            action="benchmark.entry", object=f"bench:{done}",
                                            digests={}, detail=detail(done)))
                done += 1
    return count / (time.perf_counter() - start)


def workspace(name: str, db: str | None) -> Chainproof:
    folder = WORK / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    Chainproof.init(folder, db=db).close()
    return Chainproof.open(load_settings(folder))


def pg_url() -> str:
    from sqlalchemy import create_engine, text

    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text('DROP DATABASE IF EXISTS "chainproof_bench" WITH (FORCE)'))
        conn.execute(text('CREATE DATABASE "chainproof_bench"'))
    admin.dispose()
    return PG_ADMIN.rsplit("/", 1)[0] + "/chainproof_bench"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--append", type=int, default=50_000)
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args()

    node_rate, leaf_rate = sha256_limit()
    print(f"physical limit, one core: {node_rate:,.0f} node hashes/s, {leaf_rate:,.0f} "
          f"leaf hashes/s (400 B)")

    backends = [("sqlite", None)] + ([] if args.no_pg else [("postgresql", pg_url())])
    for name, db in backends:
        cp = workspace(f"ledger-{name}", db)
        single = append(cp, 300, 1)
        batched = append(cp, args.append, 1000)
        print(f"{name:10s} appends/s: {batched:,.0f} batched (1,000 per transaction + one "
              f"signed checkpoint), {single:,.0f} one per transaction")
        cp.close()

    cp = workspace("ledger-verify", None)
    t0 = time.perf_counter()
    append(cp, args.entries - 1, 20_000)
    print(f"built a log of {args.entries:,} entries on SQLite in {time.perf_counter() - t0:.1f} s")
    verifier = audit.load_log_verifier(cp.settings.log_public_path, cp.settings.origin)
    with cp.session() as session:
        t0 = time.perf_counter()
        report = audit.verify_log(session, verifier)
        elapsed = time.perf_counter() - t0
    print(f"full verification of {report.size:,} entries (leaves, every stored node, newest "
          f"checkpoints, state replay): {elapsed:.2f} s  (goal ≤ 10 s)")
    rng = random.Random(7)
    times = []
    with cp.session() as session:
        prove_inclusion(session, 0)
        for _ in range(300):
            seq = rng.randrange(report.size)
            t0 = time.perf_counter()
            prove_inclusion(session, seq)
            times.append(time.perf_counter() - t0)
    print(f"inclusion proof at {report.size:,} entries: median {statistics.median(times)*1e3:.3f}"
          f" ms, p95 {sorted(times)[int(len(times)*0.95)]*1e3:.3f} ms  (goal ≤ 1 ms)")
    cp.close()
    shutil.rmtree(WORK / "ledger-verify", ignore_errors=True)


if __name__ == "__main__":
    main()
