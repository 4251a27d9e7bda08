"""Every file of the shared pickle corpus gets the verdict its LABELS.tsv gives it."""

from __future__ import annotations

import csv
import json

import pytest
from scan_asm import pickle_vectors_dir

from chainproof.scan import scan_path

_EXPECTED = {
    "malicious": {"malicious"},
    "benign": {"clean"},
    # "not a valid model file: a clear error, never a crash": malformed, or unknown when the
    # bytes are not recognisable as any model format at all.
    "malformed": {"malformed", "unknown"},
    "unreadable": {"not_inspectable"},
}


def _rows() -> list[tuple[str, str]]:
    root = pickle_vectors_dir()
    if root is None:
        return [("<missing>", "<missing>")]
    with open(root / "LABELS.tsv", newline="") as fh:
        return [(r["path"], r["label"]) for r in csv.DictReader(fh, delimiter="\t")]


@pytest.mark.parametrize(("rel", "label"), _rows(), ids=[r[0] for r in _rows()])
def test_vector_verdict(pickle_vectors, rel: str, label: str) -> None:
    report = scan_path(pickle_vectors / rel)
    assert len(report.files) == 1
    result = report.files[0]
    assert result.verdict in _EXPECTED[label], (result.verdict, result.error, result.findings)
    if label == "malicious":
        assert result.findings, "a malicious verdict must name its findings"
        assert report.exit_code == 1
        assert all(f.file.startswith(str(pickle_vectors / rel)) for f in result.findings)
    elif label == "benign":
        assert result.findings == ()
        assert report.clean and report.exit_code == 0
    else:
        assert result.error, "a file that is not passed must say why"
        assert report.exit_code == 2
    json.dumps(report.to_dict())


def test_corpus_directory_scan_names_every_file(pickle_vectors) -> None:
    report = scan_path(pickle_vectors / "data2")
    names = {r.path for r in report.files}
    on_disk = {str(p) for p in (pickle_vectors / "data2").iterdir() if p.is_file()}
    assert names == on_disk
    assert not report.clean
    assert report.exit_code == 1
