"""``explain``: the seed's questions about one version, answered from its lineage.

Which dataset and label versions produced it; which feature and training code; which steps ran,
as whom, in what environment; which metrics and reports were recorded about it — each with its
digest and a verification status (its stored bytes re-hashed, I1).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from chainproof.errors import ChainproofError
from chainproof.lineage.graph import LineageGraph
from chainproof.records.assets import SOURCE_KINDS, AssetKind, AssetVersion
from chainproof.store import ObjectStore

_SMALL_JSON = 1_000_000


def explain(store: ObjectStore, up: LineageGraph, down: LineageGraph,
            verify_blob: Callable[[AssetVersion], None] | None,
            input_reports: Sequence[AssetVersion] = ()) -> dict[str, Any]:
    """The answer for the version at the root of ``up`` (its upstream graph) and ``down``
    (its downstream graph): data, code, intermediates, steps, metrics and reports, each with
    its digest and verification status (``verify_blob`` re-hashes a version's stored bytes and
    raises on a mismatch; None: not checked). ``input_reports``: reports about its upstream
    versions (validations of its data), listed with the reports."""
    target = up.versions[up.root]
    verify = verify_blob is not None

    def status(version: AssetVersion) -> str:
        if verify_blob is None:
            return "not checked"
        try:
            verify_blob(version)
        except ChainproofError as exc:
            return f"FAILED: {exc.message}"
        return "verified"

    def item(version: AssetVersion) -> dict[str, Any]:
        producer = up.producer(version.ref) or down.producer(version.ref)
        return {"ref": version.ref, "kind": version.kind.value, "digest": version.digest,
                "size": version.size, "created_by": version.created_by,
                "produced_by": producer.id if producer else None,
                "reproduced_by": sorted(sid for sid, ref in up.reproduced | down.reproduced
                                        if ref == version.ref),
                "status": status(version)}

    data, code, intermediate = [], [], []
    for v in sorted(up.versions.values(), key=lambda v: v.ref):
        if v.ref == up.root:
            continue
        if v.kind in (AssetKind.DATASET, AssetKind.LABELS):
            data.append(item(v))
        elif v.kind in (AssetKind.CODE, AssetKind.NOTEBOOK, AssetKind.ENVIRONMENT):
            entry = item(v)
            entry["used_by_steps"] = sorted({s.kind for s in up.steps.values()
                                             if v.ref in s.inputs})
            code.append(entry)
        else:
            intermediate.append(item(v))
    steps = [_step_summary(s) for s in sorted(up.steps.values(), key=lambda s: s.started_at)]
    metrics, reports = _evidence(store, down, up, item)
    listed = {r["ref"] for r in reports}
    for v in sorted(input_reports, key=lambda v: v.ref):
        if v.ref not in listed:
            listed.add(v.ref)
            reports.append(item(v))
    reports.sort(key=lambda e: e["ref"])
    incomplete = [v.ref for v in up.versions.values()
                  if v.producer_step is None and v.kind not in SOURCE_KINDS
                  and v.ref != up.root]
    answer: dict[str, Any] = {
        "subject": item(target),
        "data": data,
        "code": code,
        "intermediates": intermediate,
        "steps": steps,
        "metrics": metrics,
        "reports": reports,
        "unexplained_inputs": sorted(incomplete),
        # upstream versions and steps in namespaces the caller may not read: left out, counted
        "hidden": up.hidden,
    }
    statuses = [answer["subject"]["status"]] + [x["status"] for group in
                                                (data, code, intermediate, metrics, reports)
                                                for x in group]
    answer["verified"] = all(s == "verified" for s in statuses) if verify else None
    return answer


def _step_summary(step: Any) -> dict[str, Any]:
    env = step.environment or {}
    return {"id": step.id, "kind": step.kind, "identity": step.identity,
            "status": step.status.value, "started_at": step.started_at,
            "ended_at": step.ended_at, "command": list(step.command),
            "inputs": list(step.inputs), "outputs": list(step.outputs),
            "code_revision": step.code_revision,
            "environment": {"python": env.get("python"), "platform": env.get("platform"),
                            "hostname": env.get("hostname"),
                            "distributions_digest": env.get("distributions_digest")}}


def _evidence(store: ObjectStore, down: LineageGraph, up: LineageGraph,
              item: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    metrics: list[dict[str, Any]] = []
    reports: list[dict[str, Any]] = []
    seen = set()
    for graph in (down, up):
        for v in graph.versions.values():
            if v.ref in seen or v.kind not in (AssetKind.METRICS, AssetKind.REPORT):
                continue
            seen.add(v.ref)
            entry = item(v)
            if v.kind is AssetKind.METRICS and not v.is_directory and v.size <= _SMALL_JSON:
                try:
                    entry["values"] = json.loads(store.read_bytes(v.digest))
                except (ChainproofError, ValueError):
                    entry["values"] = None
            (metrics if v.kind is AssetKind.METRICS else reports).append(entry)
    metrics.sort(key=lambda e: e["ref"])
    reports.sort(key=lambda e: e["ref"])
    return metrics, reports
