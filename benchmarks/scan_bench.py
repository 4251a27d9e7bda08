"""Benchmark chainproof's model scanner against picklescan and modelscan, in the same run.

    .venv/bin/python benchmarks/scan_bench.py [--size-gb 2.0] [--rows 500000] [--keep]

1. Detection and false positives on the shared pickle corpus (shared/vectors/pickles, labelled).
2. Time and peak memory (RSS of the scanning process, via wait4) on
   (a) a ~2 GB PyTorch zip checkpoint generated here (torch if importable, else the same zip
       layout built by hand), and a 1/8-size copy to show memory does not grow with file size;
   (b) a ~15 MB pickle with ~3 million opcodes.
Peers run from a separate virtualenv that this script creates under benchmarks/_work/ (their
pins must not touch chainproof's environment). Every tool runs as its own subprocess, so
interpreter start-up is included for all of them; chainproof's own scan time is also printed.
Generated files are deleted at the end unless --keep.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pickle
import random
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "benchmarks" / "_work"
PEERS = WORK / "peers-venv"
VECTORS = (REPO / ".." / "shared" / "vectors" / "pickles").resolve()

OUR_FILE_DRIVER = """
import json, sys, time
from chainproof.scan import scan_path
t = time.perf_counter()
r = scan_path(sys.argv[1])
print(json.dumps({"verdict": r.files[0].verdict, "seconds": time.perf_counter() - t}))
"""

PEER_CORPUS_DRIVER = r"""
import json, sys, io, contextlib, logging
logging.disable(logging.CRITICAL)
tool, paths = sys.argv[1], sys.argv[2:]
out = {}
sink = io.StringIO()
if tool == "picklescan":
    from picklescan.scanner import scan_file_path
    for p in paths:
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(sink):
                r = scan_file_path(p)
            flagged = r.issues_count > 0 or r.infected_files > 0
            out[p] = {"flagged": flagged, "error": bool(r.scan_err)}
        except Exception as e:
            out[p] = {"flagged": False, "error": True, "exc": type(e).__name__}
else:
    from modelscan.modelscan import ModelScan
    for p in paths:
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(sink):
                r = ModelScan().scan(p)
            out[p] = {"flagged": r["summary"]["total_issues"] > 0, "error": bool(r.get("errors")),
                      "skipped": not r["summary"]["scanned"]["total_scanned"]}
        except Exception as e:
            out[p] = {"flagged": False, "error": True, "exc": type(e).__name__}
print(json.dumps(out))
"""


def ensure_peers() -> Path | None:
    py = PEERS / "bin" / "python"
    ok = [str(py), "-c", "import picklescan, modelscan, py7zr"]
    if py.exists() and subprocess.run(ok, capture_output=True).returncode == 0:
        return py
    print(f"creating peers virtualenv at {PEERS} (picklescan, modelscan) ...", flush=True)
    venv.create(PEERS, with_pip=True, clear=True)
    pip = subprocess.run(
        # py7zr is picklescan's optional 7z support: installed so it is compared at its best.
        [str(py), "-m", "pip", "install", "-q", "picklescan", "modelscan", "py7zr"],
        capture_output=True,
        text=True,
    )
    if pip.returncode != 0 or subprocess.run(ok, capture_output=True).returncode != 0:
        print("  could not install peers:", pip.stderr[-500:])
        return None
    return py


# ru_maxrss of a forked child counts the pages it shared with its parent before exec, and this
# script holds torch and the corpus in memory. A tiny fresh interpreter therefore forks each tool
# and reports the tool's wait4 rusage (floor: that launcher's own ~10 MB).
_LAUNCHER = r"""
import json, os, subprocess, sys, time
t = time.perf_counter()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
out = p.stdout.read()
_, status, ru = os.wait4(p.pid, 0)
print(json.dumps({"wall": time.perf_counter() - t, "cpu": ru.ru_utime + ru.ru_stime,
                  "rss_mb": ru.ru_maxrss / 1024, "exit": os.waitstatus_to_exitcode(status),
                  "stdout": out.decode(errors="replace")}))
"""


def measure(cmd: list[str]) -> dict[str, Any]:
    """Wall time, CPU time and peak RSS of one child process (per-child rusage from wait4)."""
    run = subprocess.run(
        [sys.executable, "-S", "-c", _LAUNCHER, *cmd], capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(run.stdout)
    return result


# ---- corpus ----------


def corpus(peer_py: Path | None) -> None:
    from chainproof.scan import scan_path

    if not (VECTORS / "LABELS.tsv").is_file():
        print("corpus: shared/vectors/pickles not found beside the repo; skipped")
        return
    with open(VECTORS / "LABELS.tsv", newline="") as fh:
        rows = [(str(VECTORS / r["path"]), r["label"]) for r in csv.DictReader(fh, delimiter="\t")]
    paths = [p for p, _ in rows]
    results: dict[str, dict[str, dict[str, Any]]] = {"chainproof": {}}
    for p in paths:
        v = scan_path(p).files[0].verdict
        results["chainproof"][p] = {
            "flagged": v == "malicious",
            "error": v in ("malformed", "unknown", "not_inspectable"),
            "verdict": v,
        }
    if peer_py is not None:
        for tool in ("picklescan", "modelscan"):
            run = subprocess.run(
                [str(peer_py), "-c", PEER_CORPUS_DRIVER, tool, *paths],
                capture_output=True,
                text=True,
            )
            try:
                results[tool] = json.loads(run.stdout.strip().splitlines()[-1])
            except (IndexError, json.JSONDecodeError):
                print(f"  {tool} failed on the corpus: {run.stderr[-300:]}")
    labels = {p: lab for p, lab in rows}
    n = {lab: sum(1 for v in labels.values() if v == lab) for lab in set(labels.values())}
    print(f"\n== detection on the shared corpus ({len(rows)} files: {n}) ==")
    print(f"{'tool':12} {'malicious caught':>17} {'benign passed':>14} {'false pos':>10} "
          f"{'malformed->error':>17} {'unreadable->error':>18} {'exceptions':>11}")
    for tool, res in results.items():
        mal = sum(1 for p, lab in labels.items() if lab == "malicious" and res[p]["flagged"])
        ben_fp = sum(1 for p, lab in labels.items() if lab == "benign" and res[p]["flagged"])
        ben_ok = sum(
            1 for p, lab in labels.items()
            if lab == "benign" and not res[p]["flagged"] and not res[p]["error"]
        )
        malf = sum(1 for p, lab in labels.items() if lab == "malformed" and res[p]["error"])
        unr = sum(
            1 for p, lab in labels.items()
            if lab == "unreadable" and (res[p]["error"] or res[p].get("skipped"))
        )
        exc = sum(1 for r in res.values() if r.get("exc"))
        print(f"{tool:12} {mal:>10}/{n.get('malicious', 0):<6} "
              f"{ben_ok:>8}/{n.get('benign', 0):<5} {ben_fp:>10} "
              f"{malf:>11}/{n.get('malformed', 0):<5} "
              f"{unr:>12}/{n.get('unreadable', 0):<5} {exc:>11}")
        if tool != "chainproof":
            missed = [Path(p).name for p, lab in labels.items()
                      if lab == "malicious" and not res[p]["flagged"]]
            if missed:
                more = " ..." if len(missed) > 12 else ""
                print(f"{'':12} missed: {', '.join(missed[:12])}{more}")


# ---- generated files ----------


def make_checkpoint(path: Path, size_gb: float) -> str:
    chunk = 64 * 1024 * 1024  # bytes per tensor
    n = max(1, round(size_gb * 1024**3 / chunk))
    try:
        import torch

        state = {f"layer{i}.weight": torch.full((chunk // 4,), float(i)) for i in range(n)}
        torch.save(state, path)
        return f"torch.save of {n} float32 tensors"
    except ImportError:
        pass
    # Same layout by hand: archive/data.pkl + one raw storage member per tensor.
    block = os.urandom(1024 * 1024)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({f"layer{i}": i for i in range(n)}, 2))
        zf.writestr("archive/byteorder", "little")
        for i in range(n):
            with zf.open(f"archive/data/{i}", "w", force_zip64=True) as m:
                for _ in range(chunk // len(block)):
                    m.write(block)
        zf.writestr("archive/version", "3\n")
    return f"hand-built zip layout with {n} storages (torch not importable)"


def make_opcode_pickle(path: Path, rows: int) -> int:
    rng = random.Random(0)
    data = [(i, rng.random(), f"key-{i:011d}") for i in range(rows)]
    raw = pickle.dumps(data, protocol=4)
    path.write_bytes(raw)
    return len(raw)


def count_opcodes(path: Path) -> int:
    import pickletools

    return sum(1 for _ in pickletools.genops(path.read_bytes()))


# ---- main ----------


def run_tools(path: Path, peer_py: Path | None) -> dict[str, dict[str, Any]]:
    res = {"chainproof": measure([sys.executable, "-c", OUR_FILE_DRIVER, str(path)])}
    if peer_py is not None:
        bindir = peer_py.parent
        res["picklescan"] = measure([str(bindir / "picklescan"), "-p", str(path)])
        res["modelscan"] = measure([str(bindir / "modelscan"), "-p", str(path)])
    return res


#: the project's throughput goal on the opcode-heavy pickle (CPU time, so a busy machine's
#: scheduling does not decide it): at least this many times faster than picklescan.
GOAL_VS_PICKLESCAN = 3.0


def report(
    title: str, size: int, res: dict[str, dict[str, Any]], *, goal: bool = False
) -> None:
    print(f"\n== {title} ({size / 1e6:.1f} MB) ==")
    ours = res["chainproof"]
    inner = json.loads(ours["stdout"].strip().splitlines()[-1]) if ours["stdout"].strip() else {}
    print(f"{'tool':12} {'wall s':>8} {'cpu s':>8} {'peak RSS MB':>12} {'exit':>5}")
    for tool, r in res.items():
        print(f"{tool:12} {r['wall']:8.2f} {r['cpu']:8.2f} {r['rss_mb']:12.1f} {r['exit']:5}")
    if inner:
        secs = inner["seconds"]
        print(f"chainproof verdict {inner['verdict']!r}, scan itself {secs:.3f} s = "
              f"{size / 1e6 / max(secs, 1e-9):,.0f} MB/s")
    for tool in ("picklescan", "modelscan"):
        if tool in res:
            r = res[tool]
            print(f"ratio {tool}/chainproof: wall {r['wall'] / ours['wall']:.2f}x, "
                  f"cpu {r['cpu'] / ours['cpu']:.2f}x, memory {r['rss_mb'] / ours['rss_mb']:.2f}x")
    if goal and "picklescan" in res:
        ratio = res["picklescan"]["cpu"] / ours["cpu"]
        met = "met" if ratio >= GOAL_VS_PICKLESCAN else "MISSED"
        print(f"goal >= {GOAL_VS_PICKLESCAN:.0f}x picklescan (cpu): {ratio:.2f}x, {met}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size-gb", type=float, default=2.0, help="checkpoint size (default 2)")
    ap.add_argument("--rows", type=int, default=500_000, help="rows of the opcode-heavy pickle")
    ap.add_argument("--keep", action="store_true", help="keep generated files")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    peer_py = ensure_peers()
    baseline = measure([sys.executable, "-c", "import chainproof.scan"])
    print(f"chainproof interpreter + import baseline: {baseline['rss_mb']:.1f} MB RSS, "
          f"{baseline['wall']:.2f} s")
    corpus(peer_py)
    gen = WORK / "scan_bench"
    gen.mkdir(exist_ok=True)
    try:
        big = gen / "big_checkpoint.pt"
        how = make_checkpoint(big, args.size_gb)
        report(f"tensor-heavy checkpoint, {how}", big.stat().st_size, run_tools(big, peer_py))
        small = gen / "small_checkpoint.pt"
        make_checkpoint(small, args.size_gb / 8)
        ours_small = measure([sys.executable, "-c", OUR_FILE_DRIVER, str(small)])
        ours_big = measure([sys.executable, "-c", OUR_FILE_DRIVER, str(big)])
        print(f"memory vs size: chainproof peak RSS {ours_small['rss_mb']:.1f} MB at "
              f"{small.stat().st_size / 1e9:.2f} GB, {ours_big['rss_mb']:.1f} MB at "
              f"{big.stat().st_size / 1e9:.2f} GB")
        big.unlink()
        small.unlink()
        ops = gen / "opcodes.pkl"
        size = make_opcode_pickle(ops, args.rows)
        n_ops = count_opcodes(ops)
        report(f"opcode-heavy pickle, {n_ops:,} opcodes", size, run_tools(ops, peer_py),
               goal=True)
    finally:
        if not args.keep:
            shutil.rmtree(gen, ignore_errors=True)


if __name__ == "__main__":
    main()
