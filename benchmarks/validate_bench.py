"""Benchmark: chainproof's drift gate vs Evidently's DataDriftPreset on the same data, same run.

    .venv/bin/python benchmarks/validate_bench.py [--rows 1000000] [--skip-evidently]

Generates a reference and a current Parquet file (rows x (20 numeric + 5 categorical)) with
drift injected into known columns, runs each tool in its own child process (peak memory is the
child's ru_maxrss), and reports time, memory, which injected drifts each caught and which clean
columns each flagged. Evidently lives in its own venv (benchmarks/_work/venv-evidently, created on
first run with pip) because Evidently 0.7 does not work with pandas 3. Then label-flip
precision/recall at 5 % uniform flips on a generated classification table. Generated files are
deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "_work"
EVIDENTLY_VENV = WORK / "venv-evidently"

N_NUM, N_CAT = 20, 5
# Injected drifts: column -> what was done. Everything else is drawn from the same distribution.
INJECTED = {
    "num_0": "mean shift +0.25 sd",
    "num_1": "scale x1.3",
    "num_2": "missing rate 0 % -> 5 %",
    "num_3": "3 % outliers at +8 sd",
    "cat_0": "new category in 2 % of rows",
    "cat_1": "one category +11 points",
}


def _generate(path: Path, rows: int, seed: int, drift: bool) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    chunk = 250_000
    writer = None
    cats = [f"v{i}" for i in range(6)]
    base_p = np.array([0.30, 0.25, 0.15, 0.12, 0.10, 0.08])
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        cols: dict[str, object] = {}
        for i in range(N_NUM):
            mu, sd = 5.0 * i, 1.0 + 0.5 * i
            skewed = i % 4 == 3 and i != 3
            x = rng.lognormal(1.0, 0.5, n) if skewed else rng.normal(mu, sd, n)
            if drift and i == 0:
                x = x + 0.25 * sd
            if drift and i == 1:
                x = mu + (x - mu) * 1.3
            if drift and i == 3:
                out = rng.random(n) < 0.03
                x = np.where(out, mu + 8 * sd, x)
            arr = pa.array(x)
            if drift and i == 2:
                arr = pa.array(x, mask=rng.random(n) < 0.05)
            cols[f"num_{i}"] = arr
        for j in range(N_CAT):
            p = base_p.copy()
            values = list(cats)
            if drift and j == 1:
                p = p.copy()
                p[0] += 0.11
                p[1:] -= 0.11 / 5
            if drift and j == 0:
                values = [*cats, "NEW"]
                p = np.append(p * 0.98, 0.02)
            cols[f"cat_{j}"] = pa.array(rng.choice(values, n, p=p / p.sum()))
        table = pa.table(cols)
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=chunk)
    assert writer is not None
    writer.close()


def _run_child(cmd: list[str], env: dict[str, str] | None = None) -> tuple[dict, float, int]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"child failed ({proc.returncode}): {' '.join(cmd[:3])}\n{err.decode()}")
    return json.loads(out.decode().strip().splitlines()[-1]), wall, usage.ru_maxrss * 1024


# --- children ------------------------------------------------------------------------------


def _child_ours(ref: str, cur: str) -> None:
    import resource

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    from chainproof.validate import profile_reference, validate_dataset  # noqa: F401

    imported = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    rep = validate_dataset(cur, reference=ref)
    elapsed = time.perf_counter() - t0
    assert rep.drift is not None
    print(
        json.dumps(
            {
                "seconds": elapsed,
                "flagged": sorted(rep.drift.flagged),
                "rss_start": base,
                "rss_after_import": imported,
            }
        )
    )


_EVIDENTLY_CHILD = r"""
import json, sys, time, resource
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset
ref_p, cur_p = sys.argv[1], sys.argv[2]
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
ref = pd.read_parquet(ref_p); cur = pd.read_parquet(cur_p)
loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
t0 = time.perf_counter()
snap = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
elapsed = time.perf_counter() - t0
flagged = []
for m in snap.dict()["metrics"]:
    cfg = m.get("config", {})
    if not cfg.get("type", "").endswith("ValueDrift"):
        continue
    value, thr = m["value"], cfg["threshold"]
    drifted = value < thr if "p_value" in cfg.get("method", "") else value >= thr
    if drifted:
        flagged.append(cfg["column"])
methods = sorted({m["config"].get("method", "") for m in snap.dict()["metrics"]
                  if m.get("config", {}).get("type", "").endswith("ValueDrift")})
print(json.dumps({"seconds": elapsed, "flagged": sorted(flagged), "rss_after_load": loaded,
                  "rss_start": base, "methods": methods}))
"""


def _ensure_evidently() -> Path:
    py = EVIDENTLY_VENV / "bin" / "python"
    if py.exists():
        return py
    print("creating Evidently venv (once) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(EVIDENTLY_VENV)], check=True)
    subprocess.run(
        [
            str(EVIDENTLY_VENV / "bin" / "pip"),
            "install",
            "-q",
            "evidently>=0.7,<0.8",
            "pandas<3",
            "pyarrow",
        ],
        check=True,
    )
    return py


def _score(flagged: list[str]) -> dict[str, object]:
    caught = sorted(c for c in INJECTED if c in flagged)
    missed = sorted(c for c in INJECTED if c not in flagged)
    false = sorted(c for c in flagged if c not in INJECTED)
    return {"caught": caught, "missed": missed, "false_alarms": false}


def _label_bench(rows: int) -> dict[str, object]:
    import pandas as pd
    from sklearn.datasets import make_classification

    from chainproof.validate import LabelConfig, find_label_issues

    x, y = make_classification(
        n_samples=rows,
        n_features=20,
        n_informative=10,
        n_redundant=4,
        n_classes=3,
        class_sep=1.5,
        random_state=0,
    )
    rng = np.random.default_rng(1)
    idx = rng.choice(rows, int(0.05 * rows), replace=False)
    noisy = y.copy()
    for i in idx:
        noisy[i] = rng.choice([c for c in range(3) if c != y[i]])
    truth = set(idx.tolist())
    df = pd.DataFrame(x, columns=[f"f{i}" for i in range(20)]).assign(label=noisy)
    out: dict[str, object] = {"rows": rows, "flipped": len(truth)}
    for model in ("auto", "logistic", "hgb", "ensemble"):
        t0 = time.perf_counter()
        rep = find_label_issues(df, "label", config=LabelConfig(model=model))
        found = {s.row_id for s in rep.suspects}
        both = {s.row_id for s in rep.suspects if s.knn_agreement < 0.5}
        tp, tpb = len(found & truth), len(both & truth)
        out[model] = {
            "seconds": round(time.perf_counter() - t0, 2),
            "precision": round(tp / max(len(found), 1), 3),
            "recall": round(tp / len(truth), 3),
            "knn_corroborated_precision": round(tpb / max(len(both), 1), 3),
            "knn_corroborated_recall": round(tpb / len(truth), 3),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--label-rows", type=int, default=20_000)
    ap.add_argument("--skip-evidently", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    ap.add_argument("--child", choices=["ours", "gen"], help=argparse.SUPPRESS)
    ap.add_argument("--ref", help=argparse.SUPPRESS)
    ap.add_argument("--cur", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "ours":
        _child_ours(args.ref, args.cur)
        return
    if args.child == "gen":
        _generate(Path(args.ref), args.rows, seed=1, drift=False)
        _generate(Path(args.cur), args.rows, seed=2, drift=True)
        print("{}")
        return

    data = WORK / f"data-{args.rows}"
    data.mkdir(parents=True, exist_ok=True)
    ref, cur = data / "reference.parquet", data / "current.parquet"
    try:
        t0 = time.perf_counter()
        # In a child, so that this parent stays small: Linux children inherit the parent's
        # ru_maxrss high-water mark across fork, which would inflate every child's figure.
        _run_child(
            [
                sys.executable,
                __file__,
                "--child",
                "gen",
                "--rows",
                str(args.rows),
                "--ref",
                str(ref),
                "--cur",
                str(cur),
            ]
        )
        print(
            f"generated 2 x {args.rows} rows x {N_NUM + N_CAT} columns in "
            f"{time.perf_counter() - t0:.1f} s ({(ref.stat().st_size + cur.stat().st_size) >> 20}"
            " MiB parquet)",
            flush=True,
        )
        results: dict[str, dict] = {}
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        res, wall, rss = _run_child(
            [sys.executable, __file__, "--child", "ours", "--ref", str(ref), "--cur", str(cur)], env
        )
        results["chainproof"] = {**res, "wall": wall, "peak_rss": rss, **_score(res["flagged"])}
        print(f"chainproof: {res['seconds']:.1f} s, peak RSS {rss / 2**30:.2f} GiB", flush=True)
        if not args.skip_evidently:
            py = _ensure_evidently()
            res, wall, rss = _run_child([str(py), "-c", _EVIDENTLY_CHILD, str(ref), str(cur)])
            results["evidently"] = {**res, "wall": wall, "peak_rss": rss, **_score(res["flagged"])}
            print(f"evidently: {res['seconds']:.1f} s, peak RSS {rss / 2**30:.2f} GiB", flush=True)
        print("\nlabel-flip detection (5 % uniform flips) ...", flush=True)
        labels = _label_bench(args.label_rows)
    finally:
        if not args.keep:
            shutil.rmtree(data, ignore_errors=True)

    ours = results["chainproof"]
    data_bytes = 2 * args.rows * (N_NUM * 8 + N_CAT * 8)
    print(f"\n== drift: 2 x {args.rows:,} rows x {N_NUM} numeric + {N_CAT} categorical ==")
    print("injected: " + "; ".join(f"{k}: {v}" for k, v in INJECTED.items()))
    for name, r in results.items():
        print(
            f"{name:11s} compute {r['seconds']:7.1f} s  (child wall {r['wall']:6.1f} s)  "
            f"peak RSS {r['peak_rss'] / 2**30:5.2f} GiB  caught {len(r['caught'])}/{len(INJECTED)}"
            f"  missed {r['missed']}  false alarms {r['false_alarms']}"
        )
    print(
        f"chainproof memory beyond interpreter+imports: "
        f"{(ours['peak_rss'] - ours['rss_after_import']) / 2**30:.2f} GiB "
        f"(raw numeric size of both datasets ~{data_bytes / 2**30:.2f} GiB; chainproof streams "
        "them and never holds them whole)"
    )
    if "evidently" in results:
        ev = results["evidently"]
        print(f"evidently methods: {ev.get('methods')}")
        print(
            f"speed-up (compute): {ev['seconds'] / ours['seconds']:.1f}x; "
            f"speed-up (child wall incl. load/import): {ev['wall'] / ours['wall']:.1f}x; "
            f"memory ratio: {ev['peak_rss'] / ours['peak_rss']:.1f}x"
        )
    print(f"\n== label flips: {labels['rows']:,} rows, {labels['flipped']} flipped (5 %) ==")
    for model in ("auto", "logistic", "hgb", "ensemble"):
        m = labels[model]
        assert isinstance(m, dict)
        print(
            f"{model:9s} precision {m['precision']:.2f} recall {m['recall']:.2f}  "
            f"(with kNN agreement: {m['knn_corroborated_precision']:.2f} / "
            f"{m['knn_corroborated_recall']:.2f})  {m['seconds']:.1f} s"
        )
    print("reference point: cleanlab + gradient boosting ~0.73 / 0.89")
    print(
        "\nJSON "
        + json.dumps(
            {"rows": args.rows, "drift": results, "labels": labels}, default=str, sort_keys=True
        )
    )


if __name__ == "__main__":
    main()
