"""Benchmark: chainproof's validation gate vs Evidently and cleanlab on the same data, same run.

    .venv/bin/python benchmarks/validate_bench.py [--rows 1000000] [--battery-rows 200000]
        [--skip-evidently] [--skip-cleanlab] [--skip-drift] [--skip-battery]

1. Speed and drift: a reference and a current Parquet file (rows x (20 numeric + 5
   categorical)) with drift injected into known columns; each tool runs in its own child process
   (peak memory is the child's ru_maxrss); reports time, memory, which injected drifts each caught
   and which clean columns each flagged. Evidently lives in its own venv
   (benchmarks/_work/venv-evidently, created on first run with pip) because Evidently 0.7 does not
   work with pandas 3.
2. Label flips: precision/recall at 5 % uniform flips on a generated classification table, for
   each label model and for cleanlab (benchmark-only dependency, ``pip install cleanlab``) on the
   same out-of-sample probabilities.
3. Case battery: every poisoning kind of issue #14 at several strengths (small mean shifts,
   60-category reweighting, targeted and uniform label flips) and clean data with noisy labels
   at several noise levels; per case: caught or not, severity, false alarms; Evidently and
   cleanlab on the same files.

Generated files are deleted at the end (``--keep`` keeps the drift files).
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
from typing import Any

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
    if _has_cleanlab():
        import cleanlab
        from cleanlab.filter import find_label_issues as cl_find
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.model_selection import StratifiedKFold, cross_val_predict
        from threadpoolctl import threadpool_limits

        t0 = time.perf_counter()
        model = HistGradientBoostingClassifier(max_iter=200, early_stopping=True, random_state=0)
        with threadpool_limits(limits=1):
            probs = cross_val_predict(
                model,
                x,
                noisy,
                cv=StratifiedKFold(5, shuffle=True, random_state=0),
                method="predict_proba",
            )
        found = set(np.flatnonzero(cl_find(noisy, probs)).tolist())
        tp = len(found & truth)
        out["cleanlab"] = {
            "version": cleanlab.__version__,
            "seconds": round(time.perf_counter() - t0, 2),
            "precision": round(tp / max(len(found), 1), 3),
            "recall": round(tp / len(truth), 3),
        }
    return out


# --- case battery: every poisoning kind at several strengths, clean data at several noise levels


BATTERY_COLUMNS = ["x0", "x1", "x2", "x3", "x4", "x5", "cat60", "count", "order_id", "label"]


def _battery_table(
    n: int,
    seed: int,
    *,
    noise: float = 0.0,
    targeted: float = 0.0,
    uniform: float = 0.0,
    mean_shift: float = 0.0,
    cat_reweight: float = 0.0,
) -> Any:
    """A binary classification table (the generator of tests/validate/validate_helpers.py,
    except that the mean shift goes to x3, which does not drive the label):
    six numeric features, a 60-category feature with Zipf-like shares, an integer count, a
    unique ``order_id`` key, and a label with Bayes noise plus ``noise`` (flips both ways,
    in reference *and* current: "clean data with noisy labels"), ``targeted`` (a share of
    class 0 relabelled 1) and ``uniform`` (a share flipped either way) poisoning."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, 6))
    x[:, 3] += mean_shift  # x3 does not drive the label: the class balance stays put
    k = 60
    base = 1 / np.arange(1, k + 1) ** 0.7
    weights = base * np.where(np.arange(k) % 2 == 0, 1 + cat_reweight, 1 - cat_reweight)
    cat = rng.choice(k, n, p=weights / weights.sum())
    score = x @ np.array([1.5, -1.0, 0.8, 0.0, 0.5, 0.0]) + (cat % 5 - 2) * 0.3
    y = (score + rng.logistic(0, 0.5, n) > 0.5).astype(int)
    if noise:
        y = np.where(rng.random(n) < noise, 1 - y, y)
    if targeted:
        pool = np.flatnonzero(y == 0)
        y[rng.choice(pool, int(targeted * len(pool)), replace=False)] = 1
    if uniform:
        y = np.where(rng.random(n) < uniform, 1 - y, y)
    df = pd.DataFrame(x, columns=[f"x{i}" for i in range(6)])
    df["cat60"] = np.array([f"c{v:02d}" for v in range(k)])[cat]
    df["count"] = rng.poisson(3, n)
    df["order_id"] = np.arange(seed * 10_000_000, seed * 10_000_000 + n)
    df["label"] = y.astype(str)
    return df


# (case name, kind, generator kwargs for the current version, reference noise, injected columns)
BATTERY: list[tuple[str, str, dict[str, float], float, tuple[str, ...]]] = [
    ("clean, label noise 0 %", "clean", {}, 0.0, ()),
    ("clean, label noise 5 %", "clean", {"noise": 0.05}, 0.05, ()),
    ("clean, label noise 15 %", "clean", {"noise": 0.15}, 0.15, ()),
    ("clean, label noise 25 %", "clean", {"noise": 0.25}, 0.25, ()),
    ("mean shift 0.03 sd", "mean shift", {"mean_shift": 0.03}, 0.0, ("x3",)),
    ("mean shift 0.05 sd", "mean shift", {"mean_shift": 0.05}, 0.0, ("x3",)),
    ("mean shift 0.08 sd", "mean shift", {"mean_shift": 0.08}, 0.0, ("x3",)),
    (
        "60-category reweighting +-10 %",
        "category reweighting",
        {"cat_reweight": 0.1},
        0.0,
        ("cat60",),
    ),
    (
        "60-category reweighting +-20 %",
        "category reweighting",
        {"cat_reweight": 0.2},
        0.0,
        ("cat60",),
    ),
    ("targeted flip 2 % of class 0", "targeted flip", {"targeted": 0.02}, 0.0, ("label",)),
    ("targeted flip 5 % of class 0", "targeted flip", {"targeted": 0.05}, 0.0, ("label",)),
    ("targeted flip 10 % of class 0", "targeted flip", {"targeted": 0.10}, 0.0, ("label",)),
    ("uniform flip 2 %", "uniform flip", {"uniform": 0.02}, 0.0, ("label",)),
    ("uniform flip 5 %", "uniform flip", {"uniform": 0.05}, 0.0, ("label",)),
    ("uniform flip 10 %", "uniform flip", {"uniform": 0.10}, 0.0, ("label",)),
]
BATTERY_NAMES = [case[0] for case in BATTERY]
LABEL_CHECKS = {
    "label_prior",
    "label_flip",
    "label_issue_rate",
    "label_conflicts",
    "class_shift",
    "label_drift",
}


def _battery_files(rows: int, folder: Path) -> dict[str, tuple[Path, Path]]:
    """Write each case's reference and current Parquet files; returns case -> (ref, cur)."""
    folder.mkdir(parents=True, exist_ok=True)
    refs: dict[float, Path] = {}
    out = {}
    for i, (name, _kind, kw, ref_noise, _inj) in enumerate(BATTERY):
        if ref_noise not in refs:
            path = folder / f"ref-noise{ref_noise}.parquet"
            _battery_table(rows, 1, noise=ref_noise).to_parquet(path, index=False)
            refs[ref_noise] = path
        cur = folder / f"case{i}.parquet"
        _battery_table(rows, 100 + i, **kw).to_parquet(cur, index=False)
        out[name] = (refs[ref_noise], cur)
    return out


def _child_battery(folder: str, rows: int) -> None:
    """chainproof on every case: reference profiled once per noise level (as the gate caches)."""
    from chainproof.validate import profile_reference, validate_dataset

    files = _battery_files(rows, Path(folder))
    profiles: dict[Path, Any] = {}
    results = {}
    for name, kind, _kw, _noise, injected in BATTERY:
        ref, cur = files[name]
        t0 = time.perf_counter()
        if ref not in profiles:
            profiles[ref] = profile_reference(ref, label_column="label", key_columns=["order_id"])
        t1 = time.perf_counter()
        rep = validate_dataset(
            cur,
            reference=profiles[ref],
            label_column="label",
            key_columns=["order_id"],
            dataset_name=name,
            reference_name=ref.name,
        )
        elapsed = time.perf_counter() - t1
        relevant = [
            f
            for f in rep.findings
            if f.severity in ("warn", "fail")
            and (
                (f.column in injected and f.check in ("drift", "label_drift"))
                or ("label" in injected and f.check in LABEL_CHECKS)
            )
        ]
        other = [f for f in rep.findings if f.severity in ("warn", "fail") and f not in relevant]
        results[name] = {
            "kind": kind,
            "injected": list(injected),
            "severity": rep.severity,
            "caught": bool(relevant) if injected else None,
            "caught_severity": max(
                (f.severity for f in relevant), key=["warn", "fail"].index, default=None
            ),
            "caught_by": sorted({f.check for f in relevant}),
            "false_alarms": sorted({f"{f.check}:{f.column}:{f.severity}" for f in other}),
            "false_alarm_fail": any(f.severity == "fail" for f in other),
            "seconds": round(elapsed, 2),
            "reference_seconds": round(t1 - t0, 2),
            "issue_rate": rep.labels.issue_rate if rep.labels else None,
            "reference_issue_rate": rep.labels.reference_issue_rate if rep.labels else None,
        }
    print(json.dumps(results))


_EVIDENTLY_BATTERY = r"""
import json, sys, time
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset
cases = json.loads(sys.argv[1])
out = {}
for name, ref_p, cur_p in cases:
    ref = pd.read_parquet(ref_p).drop(columns=["order_id"])
    cur = pd.read_parquet(cur_p).drop(columns=["order_id"])
    t0 = time.perf_counter()
    snap = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
    flagged = []
    for m in snap.dict()["metrics"]:
        cfg = m.get("config", {})
        if not cfg.get("type", "").endswith("ValueDrift"):
            continue
        value, thr = m["value"], cfg["threshold"]
        drifted = value < thr if "p_value" in cfg.get("method", "") else value >= thr
        if drifted:
            flagged.append(cfg["column"])
    out[name] = {"flagged": sorted(flagged), "seconds": round(time.perf_counter() - t0, 2)}
print(json.dumps(out))
"""


def _cleanlab_battery(files: dict[str, tuple[Path, Path]], sample: int) -> dict[str, Any]:
    """cleanlab 2.x ``find_label_issues`` on out-of-sample probabilities of the same model
    family chainproof uses at this size (histogram gradient boosting, 5 folds, one thread), on
    the same-size uniform sample. cleanlab has no notion of a reference: its gate is either an
    absolute issue rate (> 10 %) or the increase we compute from its two runs (> 2 points)."""
    import pandas as pd
    from cleanlab.filter import find_label_issues
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from threadpoolctl import threadpool_limits

    def rate(path: Path) -> float:
        df = pd.read_parquet(path)
        if len(df) > sample:
            df = df.sample(sample, random_state=0)
        x = pd.get_dummies(df.drop(columns=["label", "order_id"]), columns=["cat60"]).to_numpy(
            dtype=float
        )
        y = df["label"].astype(int).to_numpy()
        model = HistGradientBoostingClassifier(max_iter=200, early_stopping=True, random_state=0)
        with threadpool_limits(limits=1):
            probs = cross_val_predict(
                model,
                x,
                y,
                cv=StratifiedKFold(5, shuffle=True, random_state=0),
                method="predict_proba",
            )
        return float(find_label_issues(y, probs).mean())

    cache: dict[Path, float] = {}
    out = {}
    for name in BATTERY_NAMES:
        if name not in files:
            continue
        ref, cur = files[name]
        t0 = time.perf_counter()
        if ref not in cache:
            cache[ref] = rate(ref)
        r_cur = rate(cur)
        out[name] = {
            "reference_rate": round(cache[ref], 4),
            "current_rate": round(r_cur, 4),
            "caught_relative": r_cur - cache[ref] > 0.02,
            "over_10pct": r_cur > 0.10,
            "seconds": round(time.perf_counter() - t0, 2),
        }
    return out


def _run_battery(rows: int, skip_evidently: bool, skip_cleanlab: bool) -> dict[str, Any]:
    folder = WORK / f"battery-{rows}"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    try:
        ours, _wall, rss = _run_child(
            [
                sys.executable,
                __file__,
                "--child",
                "battery",
                "--ref",
                str(folder),
                "--battery-rows",
                str(rows),
            ],
            env,
        )
        files = _battery_files_paths(folder)
        out: dict[str, Any] = {"rows": rows, "chainproof": ours, "chainproof_peak_rss": rss}
        if not skip_evidently:
            py = _ensure_evidently()
            cases = [[name, str(r), str(c)] for name, (r, c) in files.items()]
            ev, _, _ = _run_child([str(py), "-c", _EVIDENTLY_BATTERY, json.dumps(cases)])
            out["evidently"] = ev
        if not skip_cleanlab:
            label_cases = {
                n: files[n]
                for n, kind, *_ in BATTERY
                if kind in ("clean", "targeted flip", "uniform flip")
            }
            out["cleanlab"] = (
                _cleanlab_battery(label_cases, 50_000)
                if _has_cleanlab()
                else {"error": "cleanlab not installed (pip install cleanlab)"}
            )
        return out
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _has_cleanlab() -> bool:
    try:
        import cleanlab  # noqa: F401
    except ImportError:
        return False
    return True


def _battery_files_paths(folder: Path) -> dict[str, tuple[Path, Path]]:
    refs: dict[float, Path] = {}
    out = {}
    for i, (name, _k, _kw, ref_noise, _inj) in enumerate(BATTERY):
        refs.setdefault(ref_noise, folder / f"ref-noise{ref_noise}.parquet")
        out[name] = (refs[ref_noise], folder / f"case{i}.parquet")
    return out


def _print_battery(b: dict[str, Any]) -> None:
    print(f"\n== case battery: {b['rows']:,} rows per side, binary label, 10 columns ==")
    ev = b.get("evidently", {})
    cl = b.get("cleanlab", {})
    head = (
        f"{'case':34s} {'chainproof':22s} {'false alarms (chainproof)':28s} "
        f"{'Evidently':18s} {'cleanlab rate ref->cur':24s}"
    )
    print(head)
    for name, _kind, _kw, _noise, injected in BATTERY:
        r = b["chainproof"][name]
        if injected:
            ours = (
                f"{'CAUGHT' if r['caught'] else 'missed'} {r['caught_severity'] or ''}"
                f" ({'+'.join(c.replace('label_', '') for c in r['caught_by'][:2])})"
            )
        else:
            ours = f"clean: {r['severity'] or 'none'}"
        fa = ", ".join(r["false_alarms"]) or "none"
        e = ev.get(name)
        if e is None:
            evs = "-"
        elif injected:
            hit = [c for c in injected if c in e["flagged"]]
            evs = ("caught" if hit else "missed") + (
                f" +{len(e['flagged']) - len(hit)} FA" if len(e["flagged"]) > len(hit) else ""
            )
        else:
            evs = f"{len(e['flagged'])} flagged"
        c = cl.get(name) if isinstance(cl, dict) else None
        cls = (
            (
                f"{c['reference_rate']:.2%} -> {c['current_rate']:.2%}"
                f"{' caught' if c['caught_relative'] else ''}"
                f"{' >10%' if c['over_10pct'] else ''}"
            )
            if c
            else "-"
        )
        print(f"{name:34s} {ours[:22]:22s} {fa[:28]:28s} {evs:18s} {cls:24s}")
    res = b["chainproof"]
    injected_cases = [r for r in res.values() if r["injected"]]
    clean_cases = [r for r in res.values() if not r["injected"]]
    times = [r["seconds"] for r in res.values()]
    print(
        f"chainproof: {sum(bool(r['caught']) for r in injected_cases)}/{len(injected_cases)} "
        f"injected cases reported (>= warn); clean datasets with a fail: "
        f"{sum(r['severity'] == 'fail' for r in clean_cases)}/{len(clean_cases)}, with a warn: "
        f"{sum(r['severity'] == 'warn' for r in clean_cases)}/{len(clean_cases)}; "
        f"fail-level false alarms on clean columns: "
        f"{sum(r['false_alarm_fail'] for r in injected_cases)}; per-case time "
        f"{min(times):.1f}-{max(times):.1f} s"
    )
    if ev:
        caught = sum(
            any(c in ev[n]["flagged"] for c in inj) for n, _k, _kw, _no, inj in BATTERY if inj
        )
        fa_clean = sum(bool(ev[n]["flagged"]) for n, _k, _kw, _no, inj in BATTERY if not inj)
        print(
            f"Evidently DataDriftPreset: {caught}/{len(injected_cases)} injected cases flagged "
            f"(label column drift for label cases); clean datasets with a flag: "
            f"{fa_clean}/{len(clean_cases)}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--label-rows", type=int, default=20_000)
    ap.add_argument("--skip-evidently", action="store_true")
    ap.add_argument("--skip-cleanlab", action="store_true")
    ap.add_argument("--skip-drift", action="store_true", help="skip the 1M x 25 speed run")
    ap.add_argument("--skip-battery", action="store_true", help="skip the case battery")
    ap.add_argument("--battery-rows", type=int, default=200_000)
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    ap.add_argument("--child", choices=["ours", "gen", "battery"], help=argparse.SUPPRESS)
    ap.add_argument("--ref", help=argparse.SUPPRESS)
    ap.add_argument("--cur", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "ours":
        _child_ours(args.ref, args.cur)
        return
    if args.child == "battery":
        _child_battery(args.ref, args.battery_rows)
        return
    if args.child == "gen":
        _generate(Path(args.ref), args.rows, seed=1, drift=False)
        _generate(Path(args.cur), args.rows, seed=2, drift=True)
        print("{}")
        return

    out: dict[str, Any] = {"rows": args.rows}
    if not args.skip_drift:
        out.update(_drift_run(args))
    if not args.skip_battery:
        print(f"\ncase battery at {args.battery_rows:,} rows ...", flush=True)
        out["battery"] = _run_battery(args.battery_rows, args.skip_evidently, args.skip_cleanlab)
        _print_battery(out["battery"])
    print(f"\nload average at the end: {os.getloadavg()}")
    print("\nJSON " + json.dumps(out, default=str, sort_keys=True))


def _drift_run(args: argparse.Namespace) -> dict[str, Any]:
    data = WORK / f"data-{args.rows}"
    data.mkdir(parents=True, exist_ok=True)
    ref, cur = data / "reference.parquet", data / "current.parquet"
    print(f"load average before the drift run: {os.getloadavg()}", flush=True)
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
    if "cleanlab" in labels:
        m = labels["cleanlab"]
        assert isinstance(m, dict)
        print(
            f"cleanlab  precision {m['precision']:.2f} recall {m['recall']:.2f}  "
            f"(cleanlab {m['version']} find_label_issues on the same boosting's out-of-sample "
            f"probabilities)  {m['seconds']:.1f} s"
        )
    return {"drift": results, "labels": labels}


if __name__ == "__main__":
    main()
