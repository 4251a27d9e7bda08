"""The lineage graph: asset versions and the steps between them (pure data, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chainproof.records.assets import AssetVersion
from chainproof.records.steps import Step


@dataclass
class LineageGraph:
    """Versions and steps reachable from ``root`` in one direction.

    Edges run in the direction data flows: ``(version ref, step id)`` for inputs and
    ``(step id, version ref)`` for outputs.
    """

    root: str
    direction: str
    versions: dict[str, AssetVersion] = field(default_factory=dict)
    steps: dict[str, Step] = field(default_factory=dict)
    edges: set[tuple[str, str]] = field(default_factory=set)
    #: ``(step id, version ref)`` edges of steps that reproduced an existing version's exact
    #: bytes (a retrain with identical output); also in ``edges``.
    reproduced: set[tuple[str, str]] = field(default_factory=set)
    #: versions and steps left out because the caller may not read their namespace (the
    #: answer is incomplete; their names are not given)
    hidden: int = 0

    def producer(self, ref: str) -> Step | None:
        version = self.versions.get(ref)
        if version is None or version.producer_step is None:
            return None
        return self.steps.get(version.producer_step)

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "direction": self.direction,
            "versions": [_version_dict(v) for _, v in sorted(self.versions.items())],
            "steps": [_step_dict(s) for _, s in sorted(self.steps.items())],
            "edges": [{"from": a, "to": b, **({"reproduced": True}
                                              if (a, b) in self.reproduced else {})}
                      for a, b in sorted(self.edges)],
            "hidden": self.hidden,
        }

    def to_dot(self) -> str:
        """Graphviz source: versions as boxes, steps as ellipses."""
        lines = ["digraph lineage {", "  rankdir=LR;", '  node [fontname="Helvetica"];']
        for ref, v in sorted(self.versions.items()):
            style = ', style="filled", fillcolor="#ffe9a8"' if ref == self.root else ""
            label = f"{ref}\\n{v.kind.value}\\n{v.hexdigest[:12]}"
            lines.append(f'  "{ref}" [shape=box, label="{label}"{style}];')
        for sid, s in sorted(self.steps.items()):
            colour = "" if s.status == "succeeded" else ', color="red"'
            label = f"{s.kind}\\n{s.identity}\\n{sid[:8]}"
            lines.append(f'  "step:{sid}" [shape=ellipse, label="{label}"{colour}];')
        for a, b in sorted(self.edges):
            src = f"step:{a}" if a in self.steps else a
            dst = f"step:{b}" if b in self.steps else b
            dashed = ' [style="dashed", label="reproduced"]' if (a, b) in self.reproduced else ""
            lines.append(f'  "{src}" -> "{dst}"{dashed};')
        lines.append("}")
        return "\n".join(lines) + "\n"


def _version_dict(v: AssetVersion) -> dict[str, Any]:
    return {"ref": v.ref, "namespace": v.namespace, "name": v.name, "version": v.version,
            "kind": v.kind.value, "digest": v.digest, "size": v.size, "media_type": v.media_type,
            "is_directory": v.is_directory, "created_at": v.created_at,
            "created_by": v.created_by, "producer_step": v.producer_step}


def _step_dict(s: Step) -> dict[str, Any]:
    return {"id": s.id, "namespace": s.namespace, "kind": s.kind, "identity": s.identity,
            "status": s.status.value, "command": list(s.command), "parameters": s.parameters,
            "started_at": s.started_at, "ended_at": s.ended_at,
            "environment": s.environment, "code_revision": s.code_revision, "error": s.error,
            "inputs": list(s.inputs), "outputs": list(s.outputs)}


version_dict = _version_dict
step_dict = _step_dict
