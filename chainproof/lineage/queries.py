"""Lineage queries: one recursive SQL query per direction, then a bulk fetch.

The graph is acyclic by construction: a version's producer step exists before the version and
only consumes versions that existed before the step, so following producer edges always goes to
strictly older rows. Outputs whose bytes already existed are linked as ``reused`` and are not
followed, which is what keeps that guarantee.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from chainproof.db.tables import AssetRow, AssetVersionRow, StepInputRow, StepOutputRow, StepRow
from chainproof.lineage.graph import LineageGraph
from chainproof.records.assets import AssetKind, AssetVersion
from chainproof.records.steps import Step, StepStatus

_UPSTREAM = text("""
WITH RECURSIVE up(vid) AS (
    SELECT CAST(:vid AS INTEGER)
    UNION
    SELECT si.version_id FROM up
      JOIN asset_versions av ON av.id = up.vid
      JOIN step_inputs si ON si.step_id = av.producer_step
)
SELECT vid FROM up
""")

_DOWNSTREAM = text("""
WITH RECURSIVE down(vid) AS (
    SELECT CAST(:vid AS INTEGER)
    UNION
    SELECT av.id FROM down
      JOIN step_inputs si ON si.version_id = down.vid
      JOIN asset_versions av ON av.producer_step = si.step_id
)
SELECT vid FROM down
""")


def version_from_row(v: AssetVersionRow, a: AssetRow) -> AssetVersion:
    return AssetVersion(namespace=a.namespace, name=a.name, kind=AssetKind(a.kind),
                        version=v.version, digest=v.digest, size=v.size,
                        media_type=v.media_type, is_directory=v.is_directory,
                        created_at=v.created_at, created_by=v.created_by,
                        producer_step=v.producer_step)


def step_from_row(s: StepRow, inputs: Iterable[str] = (), outputs: Iterable[str] = ()) -> Step:
    return Step(id=s.id, namespace=s.namespace, kind=s.kind, identity=s.identity,
                status=StepStatus(s.status), command=tuple(json.loads(s.command)),
                started_at=s.started_at, ended_at=s.ended_at,
                parameters=json.loads(s.parameters), environment=json.loads(s.environment),
                code_revision=json.loads(s.code_revision), error=s.error,
                inputs=tuple(inputs), outputs=tuple(outputs))


def _versions_by_id(session: Session, ids: Iterable[int]) -> dict[int, AssetVersion]:
    found: dict[int, AssetVersion] = {}
    id_list = list(ids)
    for start in range(0, len(id_list), 900):
        chunk = id_list[start:start + 900]
        rows = session.execute(
            select(AssetVersionRow, AssetRow).join(AssetRow, AssetRow.id == AssetVersionRow.asset_id)
            .where(AssetVersionRow.id.in_(chunk))
        ).all()
        for v, a in rows:
            found[v.id] = version_from_row(v, a)
    return found


def steps_with_links(session: Session, step_ids: Iterable[str]) -> dict[str, Step]:
    """Steps by id, each with its input and output version refs."""
    ids = sorted(set(step_ids))
    if not ids:
        return {}
    result: dict[str, Step] = {}
    for start in range(0, len(ids), 900):
        chunk = ids[start:start + 900]
        rows = session.execute(select(StepRow).where(StepRow.id.in_(chunk))).scalars().all()
        links_in = session.execute(
            select(StepInputRow.step_id, AssetVersionRow, AssetRow)
            .join(AssetVersionRow, AssetVersionRow.id == StepInputRow.version_id)
            .join(AssetRow, AssetRow.id == AssetVersionRow.asset_id)
            .where(StepInputRow.step_id.in_(chunk))
        ).all()
        links_out = session.execute(
            select(StepOutputRow.step_id, AssetVersionRow, AssetRow)
            .join(AssetVersionRow, AssetVersionRow.id == StepOutputRow.version_id)
            .join(AssetRow, AssetRow.id == AssetVersionRow.asset_id)
            .where(StepOutputRow.step_id.in_(chunk))
        ).all()
        ins: dict[str, list[str]] = {}
        outs: dict[str, list[str]] = {}
        for sid, v, a in links_in:
            ins.setdefault(sid, []).append(version_from_row(v, a).ref)
        for sid, v, a in links_out:
            outs.setdefault(sid, []).append(version_from_row(v, a).ref)
        for row in rows:
            result[row.id] = step_from_row(row, sorted(ins.get(row.id, [])),
                                           sorted(outs.get(row.id, [])))
    return result


def lineage(session: Session, version_id: int, root_ref: str, direction: str) -> LineageGraph:
    """Everything upstream or downstream of one version, to any depth."""
    query = _UPSTREAM if direction == "upstream" else _DOWNSTREAM
    ids = [row[0] for row in session.execute(query, {"vid": version_id})]
    versions = _versions_by_id(session, ids)
    graph = LineageGraph(root=root_ref, direction=direction)
    for version in versions.values():
        graph.versions[version.ref] = version
    if direction == "upstream":
        step_ids = {v.producer_step for v in versions.values() if v.producer_step}
    else:
        consumed = session.execute(
            select(StepInputRow.step_id).where(StepInputRow.version_id.in_(ids))
        ).scalars().all() if len(ids) < 30000 else []
        step_ids = set(consumed) | {v.producer_step for v in versions.values()
                                    if v.producer_step and v.ref != root_ref}
    steps = steps_with_links(session, step_ids)
    graph.steps.update(steps)
    for step in steps.values():
        for ref in step.inputs:
            if ref in graph.versions:
                graph.edges.add((ref, step.id))
        for ref in step.outputs:
            produced = graph.versions.get(ref)
            if produced is not None and produced.producer_step == step.id:
                graph.edges.add((step.id, ref))
    return graph
