"""Verifying a version's whole provenance chain under the trust policy (I1, I2).

For every link upstream of the version: its stored bytes re-hash to its digest; a produced
version's step carries a DSSE-signed SLSA statement whose signature verifies with a key
registered to the step's identity and not revoked when it signed (signing time comes from the
audit log entry, not from an editable column); the identity may sign that step kind in that
namespace; the statement names exactly this step, these outputs and these input digests; the
inputs are of kinds the policy allows; and the chain ends at directly registered source data.
Fails closed: :func:`verify_chain` raises :class:`ProvenanceError` listing every failed check.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from chainproof import catalog, identities, signatures
from chainproof.access import grants
from chainproof.attest import Envelope, Statement
from chainproof.attest.statement import SLSA_PROVENANCE_V1, parse_provenance
from chainproof.attest.trust import TrustPolicy
from chainproof.context import Context
from chainproof.db.tables import AttestationRow, LogEntryRow
from chainproof.errors import ChainproofError, ProvenanceError
from chainproof.records.assets import SOURCE_KINDS, AssetKind, AssetVersion
from chainproof.records.names import parse_ref
from chainproof.records.steps import Step

#: Kinds of registered source data; a model's chain must reach one of them (I9).
_DATA_KINDS = frozenset({AssetKind.DATASET, AssetKind.LABELS})
#: Kinds whose chain must end in registered data.
_TRAINED_KINDS = frozenset({AssetKind.MODEL, AssetKind.FEATURES})
#: Input categories of a trust-policy rule that name data.
_DATA_CATEGORIES = frozenset({"source:dataset", "source:labels", "step:features",
                              "source:features"})


@dataclass
class Link:
    """One version in the chain and what was checked about it."""

    ref: str
    kind: str
    digest: str
    step: str | None = None
    signer: str | None = None
    keyid: str | None = None
    checks: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "kind": self.kind, "digest": self.digest, "step": self.step,
                "signer": self.signer, "keyid": self.keyid, "checks": self.checks,
                "problems": self.problems, "ok": not self.problems}


@dataclass
class ChainReport:
    target: str
    policy_version: int
    links: list[Link]

    @property
    def ok(self) -> bool:
        return all(not link.problems for link in self.links)

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "ok": self.ok, "policy_version": self.policy_version,
                "links": [link.to_dict() for link in self.links]}


@dataclass
class _StepVerdict:
    problems: list[str]
    checks: list[str]
    subjects: set[tuple[str, str]]
    signer: str | None
    keyid: str | None


def check_chain(ctx: Context, ref: str, *, now: datetime | None = None,
                session: Session | None = None) -> ChainReport:
    """Check every link and return the report (problems included); see :func:`verify_chain`.

    The one chain verifier: the promotion gate, ``verify``, ``pull``, ``load`` and ``serve``
    all call it. ``role:NAME`` signers in the trust policy are resolved against the role
    grants (:func:`chainproof.access.grants.has_role`)."""
    moment = now or datetime.now(UTC)
    if session is not None:
        return _check_chain(ctx, session, ref, moment)
    with ctx.session() as own:
        return _check_chain(ctx, own, ref, moment)


def _check_chain(ctx: Context, session: Session, ref: str, moment: datetime) -> ChainReport:
    graph = catalog.lineage(session, parse_ref(ref))
    policy, _ = identities.trust_policy(session)

    def has_role(identity: str, role: str, namespace: str) -> bool:
        return grants.has_role(session, identity, role, namespace)

    attestations: dict[str, list[AttestationRow]] = {}
    logged: dict[int, Any] = {}
    if graph.steps:
        rows = session.execute(select(AttestationRow).where(
            AttestationRow.step_id.in_(list(graph.steps)))).scalars().all()
        for row in rows:
            attestations.setdefault(row.step_id or "", []).append(row)
        seqs = [r.log_seq for r in rows]
        logged = {seq: orjson.loads(body) for seq, body in session.execute(
            select(LogEntryRow.seq, LogEntryRow.body).where(LogEntryRow.seq.in_(seqs)))}
    verdicts: dict[str, _StepVerdict] = {}
    links = []
    for version in sorted(graph.versions.values(), key=lambda v: (v.created_at, v.ref)):
        link = Link(ref=version.ref, kind=version.kind.value, digest=version.digest,
                    step=version.producer_step)
        try:
            catalog.verify_blob(ctx.store, version)
            link.checks.append("stored bytes re-hash to the digest")
        except ChainproofError as exc:
            link.problems.append(f"stored bytes: {exc.message}")
        if version.producer_step is None:
            _check_source(version, policy, has_role, link)
        else:
            step = graph.steps[version.producer_step]
            verdict = verdicts.get(step.id)
            if verdict is None:
                verdict = _check_step(session, step, graph.versions,
                                      attestations.get(step.id, []), logged, policy, has_role,
                                      moment, {sid: s.kind for sid, s in graph.steps.items()})
                verdicts[step.id] = verdict
            link.signer, link.keyid = verdict.signer, verdict.keyid
            link.checks.extend(verdict.checks)
            link.problems.extend(verdict.problems)
            full = _full(version.ref)
            if verdict.subjects and (full, version.hexdigest) not in verdict.subjects:
                link.problems.append(
                    f"the signed statement of step {step.id[:12]} does not name {full} with "
                    f"digest {version.hexdigest[:16]}… (an attestation replayed or bytes "
                    "substituted)")
            elif verdict.subjects:
                link.checks.append("signed statement names this version and digest")
        links.append(link)
    root = graph.versions.get(graph.root)
    if root is not None and root.kind in _TRAINED_KINDS and not any(
            v.producer_step is None and v.kind in _DATA_KINDS for v in graph.versions.values()):
        # I9: a chain must end in registered source data; code alone trains nothing.
        for link in links:
            if link.ref == root.ref:
                link.problems.append(
                    f"{root.ref}: its chain does not end in registered source data (no "
                    "dataset or labels version upstream): data from nowhere")
    return ChainReport(target=graph.root, policy_version=policy.version, links=links)


def verify_chain(ctx: Context, ref: str, **kwargs: Any) -> ChainReport:
    """Verify the chain; raise :class:`ProvenanceError` naming every failed link."""
    return require_verified(check_chain(ctx, ref, **kwargs))


def require_verified(report: ChainReport) -> ChainReport:
    """``report`` if every link verified, else :class:`ProvenanceError` naming every failed
    link (for a caller that already has the report, e.g. from the gate)."""
    if not report.ok:
        problems = [f"{link.ref}: {p}" for link in report.links for p in link.problems]
        error = ProvenanceError(
            f"provenance of {report.target} does not verify: {len(problems)} problem(s) in "
            f"{sum(1 for link in report.links if link.problems)} of {len(report.links)} links",
            problems=problems,
            hint="do not use this version; `chainproof explain` and `chainproof audit verify` "
                 "show where the chain was broken")
        error.report = report  # type: ignore[attr-defined]
        raise error
    return report


def _check_source(version: AssetVersion, policy: TrustPolicy, has_role: Any, link: Link) -> None:
    if version.kind not in SOURCE_KINDS:
        link.problems.append(
            f"{version.ref} is a {version.kind.value} with no recorded step: it came from "
            "nowhere (a missing link in the chain)")
        return
    if not policy.allows_source(version.namespace, version.kind.value, version.created_by,
                                has_role):
        link.problems.append(
            f"{version.created_by} may not register {version.kind.value} assets in namespace "
            f"{version.namespace} under trust policy v{policy.version}")
        return
    link.checks.append(f"registered source {version.kind.value} by {version.created_by}")


def _check_step(session: Session, step: Step, versions: dict[str, AssetVersion],
                rows: list[AttestationRow], logged: dict[int, Any], policy: TrustPolicy,
                has_role: Any, now: datetime, step_kinds: dict[str, str]) -> _StepVerdict:
    problems: list[str] = []
    checks: list[str] = []
    tag = f"step {step.kind} {step.id[:12]}"
    provenance = [r for r in rows if r.predicate_type == SLSA_PROVENANCE_V1]
    if not provenance:
        return _StepVerdict([f"{tag} has no signed provenance attestation"], [], set(), None, None)
    row = provenance[-1]
    entry = logged.get(row.log_seq)
    if (entry is None or entry.get("action") != "attestation.add"
            or entry.get("detail", {}).get("step_id") != step.id
            or entry.get("detail", {}).get("payload_digest") != row.payload_digest):
        problems.append(f"{tag}: its attestation is not the one recorded in the audit log")
        signed_at = row.created_at
        signed_seq = None
    else:
        signed_at = entry["time"]
        signed_seq = row.log_seq
    try:
        envelope = Envelope.from_json(row.envelope)
    except ChainproofError as exc:
        return _StepVerdict([f"{tag}: attestation is malformed: {exc.message}"], [], set(),
                            step.identity, None)
    used = next((s.keyid for s in envelope.signatures if s.keyid), None) or row.keyid
    if "sha256:" + hashlib.sha256(envelope.payload).hexdigest() != row.payload_digest:
        problems.append(f"{tag}: the attestation's payload is not the one whose digest was "
                        "logged (it was replaced)")
    try:
        # Only keys of the identity that ran the step, trusted when the log recorded it.
        payload, _ = signatures.verify_signed(session, envelope, step.identity,
                                              signed_seq)
        checks.append(f"DSSE signature by {step.identity} key {used[:12]}… verifies")
    except ChainproofError as exc:
        problems.append(f"{tag}: signature does not verify: {exc.message}")
        return _StepVerdict(problems, checks, set(), step.identity, used)
    try:
        statement = Statement.from_bytes(payload)
        view = parse_provenance(statement)
    except ChainproofError as exc:
        problems.append(f"{tag}: signed statement rejected: {exc.message}")
        return _StepVerdict(problems, checks, set(), step.identity, used)
    if view.builder_id != identities.builder_id(step.identity):
        problems.append(f"{tag}: statement's builder {view.builder_id} is not {step.identity}")
    if view.invocation_id != step.id or view.step_kind != step.kind:
        problems.append(f"{tag}: statement describes step {view.step_kind} "
                        f"{view.invocation_id[:12]}, not this one (replayed attestation)")
    want_inputs = {(_full(ref), versions[ref].hexdigest) for ref in step.inputs
                   if ref in versions}
    got_inputs = {(i.name, i.sha256) for i in view.inputs}
    if got_inputs != want_inputs:
        missing = sorted(want_inputs - got_inputs)
        extra = sorted(got_inputs - want_inputs)
        problems.append(f"{tag}: signed dependencies differ from the recorded inputs "
                        f"(recorded, unsigned: {[m[0] for m in missing]}; signed, not "
                        f"recorded: {[e[0] for e in extra]})")
    else:
        checks.append("signed dependency digests equal the recorded inputs")
    # A step is judged by the trust policy of its own namespace *and* of every namespace it
    # wrote into: declaring a lenient namespace for a step whose output lands in a governed
    # one gains nothing.
    written = {parse_ref(ref).namespace for ref in step.outputs} - {step.namespace}
    judged_in = [step.namespace, *sorted(written)]
    for namespace in judged_in:
        _check_step_rule(policy, namespace, step, versions, step_kinds, has_role, now,
                         signed_at, tag, problems, checks)
    subjects = {(s.name, s.digest.get("sha256", "")) for s in statement.subjects}
    return _StepVerdict(problems, checks, subjects, step.identity, used)


def _check_step_rule(policy: TrustPolicy, namespace: str, step: Step,
                     versions: dict[str, AssetVersion], step_kinds: dict[str, str],
                     has_role: Any, now: datetime, signed_at: str, tag: str,
                     problems: list[str], checks: list[str]) -> None:
    """The trust policy's rule for ``step.kind`` steps in ``namespace``: who may sign them,
    which inputs they may take and which data they must consume, how old the signature may
    be."""
    rule = policy.step_rule(namespace, step.kind)
    if rule is None:
        problems.append(f"{tag}: trust policy v{policy.version} has no rule allowing "
                        f"{step.kind} steps in namespace {namespace}")
        return
    if not rule.allows_signer(step.identity, namespace, has_role):
        problems.append(f"{tag}: {step.identity} may not attest {step.kind} steps in "
                        f"{namespace} under trust policy v{policy.version}")
    else:
        checks.append(f"{step.identity} may attest {step.kind} in {namespace} under policy "
                      f"v{policy.version}")
    categories = set()
    for ref in step.inputs:
        source = versions.get(ref)
        if source is None:
            continue
        producer_kind = (step_kinds.get(source.producer_step, "unknown")
                         if source.producer_step else None)
        category = (f"step:{producer_kind}" if producer_kind
                    else f"source:{source.kind.value}")
        categories.add(category)
        if not rule.allows_input(category):
            problems.append(f"{tag}: input {ref} ({category}) is not an allowed input of "
                            f"{step.kind} steps in {namespace} under trust policy "
                            f"v{policy.version}")
    # The data kinds a rule lists are requirements, not only permissions: a step whose rule
    # names data inputs must consume at least one of them (no model from nowhere).
    wanted_data = {c for c in rule.inputs if c in _DATA_CATEGORIES}
    if wanted_data and not categories & wanted_data:
        problems.append(f"{tag}: consumes none of the data its trust policy in {namespace} "
                        f"requires ({', '.join(sorted(wanted_data))}): its output came from "
                        "no registered data")
    if rule.max_age is not None:
        age = now - datetime.fromisoformat(signed_at)
        if age > rule.max_age:
            problems.append(f"{tag}: attestation is {age.days} days old; the policy in "
                            f"{namespace} allows {rule.max_age.days}")


def _full(ref: str) -> str:
    return ref if "/" in ref.split("@", 1)[0] else f"default/{ref}"
