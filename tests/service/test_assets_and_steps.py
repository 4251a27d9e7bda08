"""Foundation behaviour on both backends: content-addressed versions, steps, lineage, explain."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from attacks import overwrite_blob

import chainproof
from chainproof.errors import (
    ConflictError,
    DigestMismatchError,
    InvalidNameError,
    NotFoundError,
    StepFailedError,
)
from chainproof.records.assets import AssetKind
from chainproof.service import Chainproof, OutputSpec


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_same_bytes_same_version_new_bytes_new_version(cp: Chainproof, tmp_path: Path) -> None:
    data = write(tmp_path / "orders.csv", "id,amount\n1,10\n")
    first = cp.add(data, kind="dataset", name="orders")
    again = cp.add(data, kind="dataset", name="orders")
    assert first.created and not again.created
    assert again.version.version == 1 and again.version.digest == first.version.digest
    write(data, "id,amount\n1,11\n")
    second = cp.add(data, kind="dataset", name="orders")
    assert second.created and second.version.version == 2
    assert second.version.digest != first.version.digest
    # version 1 still holds exactly its original bytes
    assert cp.materialize(cp.resolve("orders@1")).read_text() == "id,amount\n1,10\n"
    assert cp.resolve("orders").version == 2


def test_directory_asset_round_trip(cp: Chainproof, tmp_path: Path) -> None:
    model = tmp_path / "model"
    write(model / "weights.bin", "w" * 1000)
    write(model / "config" / "params.json", "{}")
    (model / "empty.txt").write_bytes(b"")
    version = cp.add(model, kind="model", name="dir-model").version
    assert version.is_directory
    out = cp.materialize(version, tmp_path / "restored")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "config/params.json", "empty.txt", "weights.bin"]
    assert (out / "empty.txt").read_bytes() == b""
    cp.verify(version.ref)


def test_kind_is_fixed_per_name(cp: Chainproof, tmp_path: Path) -> None:
    data = write(tmp_path / "a.csv", "x\n")
    cp.add(data, kind="dataset", name="thing")
    with pytest.raises(ConflictError, match="is a dataset"):
        cp.add(write(tmp_path / "b.csv", "y\n"), kind="labels", name="thing")


@pytest.mark.parametrize("name", ["a/b", "..", "x..y", "bad\x07name", "", "-lead", "a b", "x@1"])
def test_bad_names_refused_and_nothing_written(cp: Chainproof, tmp_path: Path, name: str) -> None:
    data = write(tmp_path / "a.csv", "x\n")
    with pytest.raises(InvalidNameError):
        cp.add(data, kind="dataset", name=name)
    assert cp.all_versions() == []


def test_step_records_lineage_and_explain(cp: Chainproof, tmp_path: Path) -> None:
    cp.add(write(tmp_path / "raw.csv", "a\n1\n"), kind="dataset", name="raw")
    cp.add(write(tmp_path / "labels.csv", "y\n0\n"), kind="labels", name="labels")
    feature_code = write(tmp_path / "features.py", "print('features')\n")
    with chainproof.step("features", inputs=["raw@1"], connection=cp) as s:
        assert s.input("raw").read_text() == "a\n1\n"
        s.output(write(tmp_path / "features.parquet", "F"), kind="features", name="feats")
    features = cp.run(kind="features-code-check", command=[sys.executable, "-c", "pass"],
                      code=[feature_code])
    assert features.step.inputs == ("features.py@1",)
    with chainproof.step("train", inputs=["feats@1", "labels@1"], connection=cp) as s:
        s.output(write(tmp_path / "model.bin", "M"), kind="model", name="fraud-model")
    metrics = write(tmp_path / "metrics.json", json.dumps({"auc": 0.91}))
    with chainproof.step("evaluate", inputs=["fraud-model@1", "labels@1"], connection=cp) as s:
        s.output(metrics, kind="metrics", name="fraud-metrics")

    graph = cp.lineage("fraud-model@1")
    assert set(graph.versions) == {"fraud-model@1", "feats@1", "labels@1", "raw@1"}
    assert {s.kind for s in graph.steps.values()} == {"features", "train"}
    down = cp.lineage("raw@1", direction="downstream")
    assert {"feats@1", "fraud-model@1", "fraud-metrics@1"} <= set(down.versions)
    assert "digraph" in graph.to_dot()

    answer = cp.explain("fraud-model@1")
    assert answer["verified"] is True
    assert {d["ref"] for d in answer["data"]} == {"raw@1", "labels@1"}
    assert [m["values"] for m in answer["metrics"]] == [{"auc": 0.91}]
    assert {s["kind"] for s in answer["steps"]} == {"features", "train"}
    for step in answer["steps"]:
        assert step["environment"]["python"] == sys.version.split()[0]
        assert step["identity"] == "tester"


def test_failed_step_recorded_without_outputs(cp: Chainproof, tmp_path: Path) -> None:
    cp.add(write(tmp_path / "raw.csv", "a\n"), kind="dataset", name="raw")
    out = write(tmp_path / "model.bin", "M")
    with pytest.raises(RuntimeError, match="boom"), \
            chainproof.step("train", inputs=["raw@1"], connection=cp) as s:
        s.output(out, kind="model", name="m")
        raise RuntimeError("boom")
    assert [v.name for v in cp.all_versions()] == ["raw"]
    with pytest.raises(StepFailedError, match="exited with status 3"):
        cp.run(kind="train", command=[sys.executable, "-c", "raise SystemExit(3)"],
               inputs=["raw@1"], outputs=[OutputSpec(out, AssetKind.MODEL, "m")])
    assert [v.name for v in cp.all_versions()] == ["raw"]
    consumers = cp.show("raw@1")["consumed_by"]
    assert len(consumers) == 2
    assert all(cp.step_record(s).status == "failed" for s in consumers)


def test_output_never_produced(cp: Chainproof, tmp_path: Path) -> None:
    with pytest.raises(StepFailedError, match="was not produced"):
        cp.run(kind="train", command=[sys.executable, "-c", "pass"],
               outputs=[OutputSpec(tmp_path / "nope.bin", AssetKind.MODEL, "m")])
    assert cp.all_versions() == []


def test_unknown_reference(cp: Chainproof) -> None:
    with pytest.raises(NotFoundError, match="no asset named"):
        cp.resolve("ghost@1")
    with pytest.raises(NotFoundError):
        chainproof.step("train", inputs=["ghost@1"], connection=cp)


def test_reused_output_keeps_graph_acyclic(cp: Chainproof, tmp_path: Path) -> None:
    data = write(tmp_path / "d.csv", "same\n")
    cp.add(data, kind="dataset", name="d")
    # A step whose output is byte-identical to its own input: linked as reused, no cycle.
    with chainproof.step("copy", inputs=["d@1"], connection=cp) as s:
        s.output(data, kind="dataset", name="d")
    assert len(cp.all_versions()) == 1
    assert set(cp.lineage("d@1").versions) == {"d@1"}
    assert set(cp.lineage("d@1", direction="downstream").versions) == {"d@1"}


def test_swapped_blob_is_refused_on_read(cp: Chainproof, tmp_path: Path) -> None:
    version = cp.add(write(tmp_path / "m.bin", "genuine"), kind="model", name="m").version
    overwrite_blob(cp.store, version.digest, b"evil bytes")
    with pytest.raises(DigestMismatchError):
        cp.materialize(version, tmp_path / "out.bin")
    assert not (tmp_path / "out.bin").exists()
    with pytest.raises(DigestMismatchError, match="1 of 1"):
        cp.verify()
    assert cp.explain("m@1")["verified"] is False
