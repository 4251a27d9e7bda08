"""Lineage queries: one recursive SQL query per direction, then a bulk fetch.

The graph is acyclic by construction: a version's producer step exists before the version and
only consumes versions that existed before the step, so following producer edges always goes to
strictly older rows. A later step whose output was byte-identical to an existing version (a
retrain that reproduced the same model) is recorded in ``step_outputs`` only; such
re-producing steps are shown (``every_producer``) but not followed, which is what keeps that
guarantee, and the chain verifier judges the first producer only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import orjson
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


_VERSION_COLUMNS = (AssetVersionRow.id, AssetRow.namespace, AssetRow.name, AssetRow.kind,
                   AssetVersionRow.version, AssetVersionRow.digest, AssetVersionRow.size,
                   AssetVersionRow.media_type, AssetVersionRow.is_directory,
                   AssetVersionRow.created_at, AssetVersionRow.created_by,
                   AssetVersionRow.producer_step)


def version_from_row(v: AssetVersionRow, a: AssetRow) -> AssetVersion:
    return AssetVersion(namespace=a.namespace, name=a.name, kind=AssetKind(a.kind),
                        version=v.version, digest=v.digest, size=v.size,
                        media_type=v.media_type, is_directory=v.is_directory,
                        created_at=v.created_at, created_by=v.created_by,
                        producer_step=v.producer_step)


def _version_from_tuple(t: Any) -> AssetVersion:
    return AssetVersion(namespace=t[1], name=t[2], kind=AssetKind(t[3]), version=t[4],
                        digest=t[5], size=t[6], media_type=t[7], is_directory=bool(t[8]),
                        created_at=t[9], created_by=t[10], producer_step=t[11])


def step_from_row(s: StepRow, inputs: Iterable[str] = (), outputs: Iterable[str] = ()) -> Step:
    return Step(id=s.id, namespace=s.namespace, kind=s.kind, identity=s.identity,
                status=StepStatus(s.status), command=tuple(json.loads(s.command)),
                started_at=s.started_at, ended_at=s.ended_at,
                parameters=json.loads(s.parameters), environment=json.loads(s.environment),
                code_revision=json.loads(s.code_revision), error=s.error,
                inputs=tuple(inputs), outputs=tuple(outputs))


def _chunks(values: list[Any], size: int = 900) -> Iterable[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _versions_by_id(session: Session, ids: Iterable[int]) -> dict[int, AssetVersion]:
    # Plain column tuples, not ORM objects: lineage of thousands of nodes stays in milliseconds.
    found: dict[int, AssetVersion] = {}
    for chunk in _chunks(list(ids)):
        rows = session.execute(
            select(*_VERSION_COLUMNS).join(AssetRow, AssetRow.id == AssetVersionRow.asset_id)
            .where(AssetVersionRow.id.in_(chunk)))
        for t in rows:
            found[t[0]] = _version_from_tuple(t)
    return found


def steps_with_links(session: Session, step_ids: Iterable[str]) -> dict[str, Step]:
    """Steps by id, each with its input and output version refs."""
    ids = sorted(set(step_ids))
    result: dict[str, Step] = {}
    for chunk in _chunks(ids):
        ins: dict[str, list[str]] = {}
        outs: dict[str, list[str]] = {}
        for table, into in ((StepInputRow, ins), (StepOutputRow, outs)):
            links = session.execute(
                select(table.step_id, AssetRow.namespace, AssetRow.name, AssetVersionRow.version)
                .join(AssetVersionRow, AssetVersionRow.id == table.version_id)
                .join(AssetRow, AssetRow.id == AssetVersionRow.asset_id)
                .where(table.step_id.in_(chunk)))
            for sid, ns, name, version in links:
                prefix = "" if ns == "default" else f"{ns}/"
                into.setdefault(sid, []).append(f"{prefix}{name}@{version}")
        rows = session.execute(
            select(StepRow.id, StepRow.namespace, StepRow.kind, StepRow.identity,
                   StepRow.status, StepRow.command, StepRow.started_at, StepRow.ended_at,
                   StepRow.parameters, StepRow.environment, StepRow.code_revision,
                   StepRow.error).where(StepRow.id.in_(chunk)))
        for t in rows:
            result[t[0]] = Step(id=t[0], namespace=t[1], kind=t[2], identity=t[3],
                                status=StepStatus(t[4]), command=tuple(orjson.loads(t[5])),
                                started_at=t[6], ended_at=t[7], parameters=orjson.loads(t[8]),
                                environment=orjson.loads(t[9]),
                                code_revision=orjson.loads(t[10]), error=t[11],
                                inputs=tuple(sorted(ins.get(t[0], []))),
                                outputs=tuple(sorted(outs.get(t[0], []))))
    return result


def lineage(session: Session, version_id: int, root_ref: str, direction: str, *,
            every_producer: bool = False) -> LineageGraph:
    """Everything upstream or downstream of one version, to any depth.

    With ``every_producer``, steps that later produced byte-identical output for a version in
    the graph are added too, with their edge in ``graph.reproduced`` (display only: the
    graph's chain still follows each version's first producer)."""
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
    if every_producer:
        _add_reproducing_steps(session, graph, versions)
    return graph


def _add_reproducing_steps(session: Session, graph: LineageGraph,
                           versions: dict[int, AssetVersion]) -> None:
    """Steps whose output was a version already in the graph, other than its producer."""
    by_id = versions
    later: list[tuple[str, int]] = []
    for chunk in _chunks(list(by_id)):
        later.extend((sid, vid) for sid, vid in session.execute(
            select(StepOutputRow.step_id, StepOutputRow.version_id)
            .where(StepOutputRow.version_id.in_(chunk))))
    later = [(sid, vid) for sid, vid in later if by_id[vid].producer_step != sid]
    if not later:
        return
    steps = steps_with_links(session, {sid for sid, _ in later} - set(graph.steps))
    graph.steps.update(steps)
    for sid, vid in later:
        graph.reproduced.add((sid, by_id[vid].ref))
        graph.edges.add((sid, by_id[vid].ref))
    # Their direct inputs too (one level, not followed further): the data a retrain that
    # reproduced the same bytes consumed is shown beside the original's.
    input_ids: list[int] = []
    for chunk in _chunks(sorted(steps)):
        input_ids.extend(session.execute(select(StepInputRow.version_id)
                                         .where(StepInputRow.step_id.in_(chunk))).scalars())
    for version in _versions_by_id(session, set(input_ids) - set(by_id)).values():
        graph.versions.setdefault(version.ref, version)
    for step in steps.values():
        for ref in step.inputs:
            if ref in graph.versions:
                graph.edges.add((ref, step.id))
