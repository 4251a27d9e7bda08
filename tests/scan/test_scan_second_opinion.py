"""Second opinions (issue 13): picklescan, modelscan, fickling and torch.load(weights_only=True)
on the same corpus as chainproof. chainproof must never be the one that calls a known-bad file
clean: every file labelled malicious, and every hand-built attack of this test suite, is refused
by chainproof whatever the peers say; and any file a peer flags among them, chainproof flags too.

The peers are dev dependencies and are imported unconditionally: a missing one fails these tests
instead of skipping them (a comparison that silently does not run cannot fail). Peers never load
anything unsafely: they are static scanners, and torch is asked with ``weights_only=True`` only.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import pickle
from collections.abc import Callable
from pathlib import Path

import fickling
import picklescan.scanner
import pytest
import scan_asm as a
import torch
from modelscan.modelscan import ModelScan
from scan_asm import pickle_vectors_dir
from test_scan_gadgets import VARIANTS, issue13_gadget

from chainproof.scan import scan_path

Verdicts = dict[str, bool | None]  # tool -> True flagged/refused, False called clean, None n/a


def _picklescan(p: Path) -> bool | None:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        r = picklescan.scanner.scan_file_path(str(p))
    if r.issues_count > 0 or r.infected_files > 0:
        return True
    return None if r.scan_err else False


def _modelscan(p: Path) -> bool | None:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        r = ModelScan().scan(str(p))
    if r["summary"]["total_issues"] > 0:
        return True
    return None if not r["summary"]["scanned"]["total_scanned"] else False


def _fickling(p: Path) -> bool | None:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        r = fickling.scan_file(str(p), graceful=True)
    return r.severity.name != "LIKELY_SAFE"


def _torch_weights_only(p: Path) -> bool | None:
    try:
        torch.load(p, weights_only=True, map_location="cpu")
    except Exception:  # any refusal or parse failure: torch did not hand out an object
        return True
    return False


PEERS: dict[str, Callable[[Path], bool | None]] = {
    "picklescan": _picklescan,
    "modelscan": _modelscan,
    "fickling": _fickling,
    "torch-weights-only": _torch_weights_only,
}


def _ask(p: Path) -> Verdicts:
    out: Verdicts = {}
    for name, fn in PEERS.items():
        try:
            out[name] = fn(p)
        except Exception:  # a peer that crashes gives no opinion
            out[name] = None
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, str]]:
    """(file, label) for the shared labelled corpus plus this suite's hand-built attacks."""
    out: list[tuple[Path, str]] = []
    shared = pickle_vectors_dir()
    if shared is None:  # a skip for a missing ../shared fails the run in CI (tests/conftest.py)
        pytest.skip("the shared test vectors (../shared/vectors/pickles) are not beside the "
                    "repository")
    with open(shared / "LABELS.tsv", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            out.append((shared / row["path"], row["label"]))
    d = tmp_path_factory.mktemp("attacks")
    marker = d / "marker"
    built: dict[str, bytes] = {"issue13-gadget.pkl": issue13_gadget(marker)}
    built.update({f"variant-{k}.pkl": fn(marker) for k, fn in VARIANTS.items()})
    built["os-system.pkl"] = a.call1("os", "system", "true")
    built["eval-proto0.pkl"] = a.call0("builtins", "eval", "1")
    for name, data in built.items():
        (d / name).write_bytes(data)
        out.append((d / name, "malicious"))
    good = d / "benign-torch.pt"
    torch.save({"w": torch.ones(3), "b": torch.zeros(2, dtype=torch.bfloat16)}, good)
    out.append((good, "benign"))
    benign_pickle = d / "benign-dict.pkl"
    benign_pickle.write_bytes(pickle.dumps({"a": [1, 2.5, "x"]}, protocol=2))
    out.append((benign_pickle, "benign"))
    return out


@pytest.fixture(scope="module")
def opinions(corpus: list[tuple[Path, str]]) -> dict[Path, tuple[str, str, Verdicts]]:
    """file -> (label, chainproof verdict, peers' verdicts)."""
    logging.disable(logging.CRITICAL)
    try:
        return {p: (label, scan_path(p).files[0].verdict, _ask(p)) for p, label in corpus}
    finally:
        logging.disable(logging.NOTSET)


def test_every_peer_gave_opinions(opinions: dict[Path, tuple[str, str, Verdicts]]) -> None:
    bad = [v for label, _, v in opinions.values() if label == "malicious"]
    assert len(bad) >= 100
    for tool in PEERS:
        answered = sum(1 for v in bad if v[tool] is not None)
        assert answered >= len(bad) // 2, f"{tool} answered for only {answered}/{len(bad)}"
        assert any(v[tool] for v in bad), f"{tool} flagged nothing: it is not really running"


def test_chainproof_never_calls_a_known_bad_file_clean(
    opinions: dict[Path, tuple[str, str, Verdicts]],
) -> None:
    missed = {p.name: v for p, (label, verdict, v) in opinions.items()
              if label == "malicious" and verdict == "clean"}
    assert missed == {}
    alone = {
        p.name: [t for t, flagged in v.items() if flagged]
        for p, (label, verdict, v) in opinions.items()
        if label != "benign" and verdict == "clean" and any(v.values())
    }
    assert alone == {}, "a peer flagged files chainproof passed"


def test_torch_weights_only_differential(
    opinions: dict[Path, tuple[str, str, Verdicts]],
) -> None:
    """Any non-benign file torch.load(weights_only=True) refuses, chainproof does not pass."""
    passed = [p.name for p, (label, verdict, v) in opinions.items()
              if label != "benign" and v["torch-weights-only"] and verdict == "clean"]
    assert passed == []
    _label, verdict, v = next(o for p, o in opinions.items() if p.name == "benign-torch.pt")
    assert (verdict, v["torch-weights-only"]) == ("clean", False)  # the control both accept


def test_chainproof_catches_what_name_based_peers_miss(
    opinions: dict[Path, tuple[str, str, Verdicts]],
) -> None:
    """The issue-13 gadget uses only names picklescan allows: record that chainproof catches it
    (the peers' answers are reported, not asserted: they change between releases)."""
    _label, verdict, v = next(o for p, o in opinions.items() if p.name == "issue13-gadget.pkl")
    assert verdict == "malicious"
    assert v["torch-weights-only"] is True
