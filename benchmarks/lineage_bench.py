"""Lineage benchmark: a graph of 10,000 asset versions and steps, 50 hops deep; time `explain`
(and raw upstream lineage) of the last model on SQLite and PostgreSQL, for two shapes: `chain`
(each step reads its lane's previous version and one shared raw dataset, so the last model's
upstream is ~150 nodes deep 50 hops) and `dense` (two random parents per step, so the last
model's upstream is nearly the whole graph).

    .venv/bin/python benchmarks/lineage_bench.py [--width 100] [--depth 50] [--no-pg]

Each of the 50 layers holds `width` steps that each write one new version, so depth × width
steps plus (depth + 1) × width versions ≈ 10,000 nodes.
The graph is built through the real API (`record_step`), so every node is logged and
checkpointed. Goal (issue 2): explain of the last model in under 100 ms on each database.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chainproof.records.assets import AssetKind
from chainproof.service import Chainproof, OutputSpec, now
from chainproof.workspace import load_settings

WORK = Path(__file__).resolve().parent / "_work"
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def pg_url() -> str:
    from sqlalchemy import create_engine, text

    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text('DROP DATABASE IF EXISTS "chainproof_lineage_bench" WITH (FORCE)'))
        conn.execute(text('CREATE DATABASE "chainproof_lineage_bench"'))
    admin.dispose()
    return PG_ADMIN.rsplit("/", 1)[0] + "/chainproof_lineage_bench"


def build(cp: Chainproof, folder: Path, width: int, depth: int, shape: str) -> str:
    rng = random.Random(42)
    layer = []
    for i in range(width):
        f = folder / f"raw-{i}.csv"
        f.write_text(f"raw,{i}\n")
        layer.append(cp.add(f, kind="dataset", name=f"raw-{i}").version.ref)
    last = ""
    for d in range(1, depth + 1):
        kind = AssetKind.MODEL if d == depth else AssetKind.FEATURES
        nxt = []
        for i in range(width):
            out = folder / f"l{d}-{i}.bin"
            out.write_text(f"{d},{i}\n")
            if shape == "dense":  # two random parents: the last model depends on ~everything
                inputs = rng.sample(layer, 2)
            else:  # its own lane's previous version and one shared raw dataset
                inputs = [layer[i], f"raw-{rng.randrange(width)}@1"]
            result = cp.record_step(kind="train" if d == depth else "features", inputs=inputs,
                                    outputs=[OutputSpec(out, kind, f"n{d}-{i}")],
                                    command=["bench"], started_at=now())
            nxt.append(result.outputs[0].ref)
        layer = nxt
        last = nxt[-1]
    return last


def timed(fn, repeat: int = 20) -> float:  # type: ignore[no-untyped-def]
    fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--width", type=int, default=100)
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--shape", choices=["chain", "dense"], default="chain",
                        help="chain: 50-hop lanes (typical); dense: upstream is ~the whole graph")
    args = parser.parse_args()
    backends = [("sqlite", None)] + ([] if args.no_pg else [("postgresql", pg_url())])
    for name, db in backends:
        folder = WORK / f"lineage-{name}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        Chainproof.init(folder, db=db).close()
        cp = Chainproof.open(load_settings(folder))
        t0 = time.perf_counter()
        model = build(cp, folder, args.width, args.depth, args.shape)
        built = time.perf_counter() - t0
        graph = cp.lineage(model)
        up_ms = timed(lambda: cp.lineage(model))  # noqa: B023
        explain_ms = timed(lambda: cp.explain(model, verify=False))  # noqa: B023
        verified_ms = timed(lambda: cp.explain(model, verify=True), repeat=3)  # noqa: B023
        print(f"{name:10s} {args.shape} graph: {args.width * (args.depth + 1)} versions + "
              f"{args.width * args.depth} steps, built in {built:.0f} s; upstream of {model}: "
              f"{len(graph.versions)} versions, {len(graph.steps)} steps")
        print(f"{name:10s} lineage {up_ms:.1f} ms; explain {explain_ms:.1f} ms (goal < 100 ms); "
              f"explain re-hashing all {len(graph.versions)} blobs {verified_ms:.0f} ms")
        cp.close()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
