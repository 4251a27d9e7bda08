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
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import select

from chainproof import identities
from chainproof.attest import Envelope, Statement, Verifier, load_public_key, verify_envelope
from chainproof.attest.statement import SLSA_PROVENANCE_V1, parse_provenance
from chainproof.attest.trust import TrustPolicy
from chainproof.db.tables import AttestationRow, KeyRow, LogEntryRow
from chainproof.errors import ChainproofError, ProvenanceError
from chainproof.records.assets import SOURCE_KINDS, AssetVersion
from chainproof.records.steps import Step

if TYPE_CHECKING:
    from chainproof.service import Chainproof


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


def _no_roles(identity: str, role: str, namespace: str) -> bool:
    return False


@dataclass
class _StepVerdict:
    problems: list[str]
    checks: list[str]
    subjects: set[tuple[str, str]]
    signer: str | None
    keyid: str | None


def check_chain(cp: Chainproof, ref: str, *, now: datetime | None = None,
                has_role: Any = _no_roles) -> ChainReport:
    """Check every link and return the report (problems included); see :func:`verify_chain`."""
    graph = cp.lineage(ref)
    policy, _ = identities.trust_policy(cp)
    moment = now or datetime.now(UTC)
    with cp.session() as session:
        keys = {k.keyid: k for k in session.execute(select(KeyRow)).scalars()}
        attestations: dict[str, list[AttestationRow]] = {}
        if graph.steps:
            rows = session.execute(select(AttestationRow).where(
                AttestationRow.step_id.in_(list(graph.steps)))).scalars().all()
            for row in rows:
                attestations.setdefault(row.step_id or "", []).append(row)
            seqs = [r.log_seq for r in rows]
            logged = {seq: orjson.loads(body) for seq, body in session.execute(
                select(LogEntryRow.seq, LogEntryRow.body).where(LogEntryRow.seq.in_(seqs)))}
        else:
            logged = {}
    verdicts: dict[str, _StepVerdict] = {}
    links = []
    for version in sorted(graph.versions.values(), key=lambda v: (v.created_at, v.ref)):
        link = Link(ref=version.ref, kind=version.kind.value, digest=version.digest,
                    step=version.producer_step)
        try:
            cp.verify_blob(version)
            link.checks.append("stored bytes re-hash to the digest")
        except ChainproofError as exc:
            link.problems.append(f"stored bytes: {exc.message}")
        if version.producer_step is None:
            _check_source(version, policy, has_role, link)
        else:
            step = graph.steps[version.producer_step]
            verdict = verdicts.get(step.id)
            if verdict is None:
                verdict = _check_step(step, graph.versions, attestations.get(step.id, []), keys,
                                      logged, policy, has_role, moment,
                                      {sid: s.kind for sid, s in graph.steps.items()})
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
    return ChainReport(target=graph.root, policy_version=policy.version, links=links)


def verify_chain(cp: Chainproof, ref: str, **kwargs: Any) -> ChainReport:
    """Verify the chain; raise :class:`ProvenanceError` naming every failed link."""
    report = check_chain(cp, ref, **kwargs)
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


def _check_step(step: Step, versions: dict[str, AssetVersion], rows: list[AttestationRow],
                keys: dict[str, KeyRow], logged: dict[int, Any], policy: TrustPolicy,
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
    else:
        signed_at = entry["time"]
    # Only keys registered to the identity that ran the step are trusted for it.
    own = {k.keyid: k for k in keys.values() if k.identity == step.identity}
    try:
        envelope = Envelope.from_json(row.envelope)
    except ChainproofError as exc:
        return _StepVerdict([f"{tag}: attestation is malformed: {exc.message}"], [], set(),
                            step.identity, None)
    used = next((s.keyid for s in envelope.signatures if s.keyid), None) or row.keyid
    key = keys.get(used)
    if key is None:
        problems.append(f"{tag}: signed by key {used[:16]}…, which is not registered")
    elif key.identity != step.identity:
        problems.append(f"{tag}: signed by a key of {key.identity}, but the step ran as "
                        f"{step.identity}")
    else:
        if key.registered_at > signed_at:
            problems.append(f"{tag}: signed at {signed_at}, before its key was registered "
                            f"({key.registered_at})")
        if key.revoked_at is not None and key.revoked_at <= signed_at:
            problems.append(f"{tag}: signed at {signed_at} by key {used[:16]}…, revoked at "
                            f"{key.revoked_at} ({key.revoked_reason})")
    trusted = {k.keyid: Verifier.from_public_key(load_public_key(k.public_pem.encode()))
               for k in own.values()}
    if "sha256:" + hashlib.sha256(envelope.payload).hexdigest() != row.payload_digest:
        problems.append(f"{tag}: the attestation's payload is not the one whose digest was "
                        "logged (it was replaced)")
    try:
        payload = verify_envelope(envelope, trusted, threshold=1)
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
    rule = policy.step_rule(step.namespace, step.kind)
    if rule is None:
        problems.append(f"{tag}: trust policy v{policy.version} has no rule allowing "
                        f"{step.kind} steps in namespace {step.namespace}")
    else:
        if not rule.allows_signer(step.identity, step.namespace, has_role):
            problems.append(f"{tag}: {step.identity} may not attest {step.kind} steps in "
                            f"{step.namespace} under trust policy v{policy.version}")
        else:
            checks.append(f"{step.identity} may attest {step.kind} under policy "
                          f"v{policy.version}")
        for ref in step.inputs:
            source = versions.get(ref)
            if source is None:
                continue
            producer_kind = (step_kinds.get(source.producer_step, "unknown")
                             if source.producer_step else None)
            category = (f"step:{producer_kind}" if producer_kind
                        else f"source:{source.kind.value}")
            if not rule.allows_input(category):
                problems.append(f"{tag}: input {ref} ({category}) is not an allowed input of "
                                f"{step.kind} steps under trust policy v{policy.version}")
        if rule.max_age is not None:
            age = now - datetime.fromisoformat(signed_at)
            if age > rule.max_age:
                problems.append(f"{tag}: attestation is {age.days} days old; the policy "
                                f"allows {rule.max_age.days}")
    subjects = {(s.name, s.digest.get("sha256", "")) for s in statement.subjects}
    return _StepVerdict(problems, checks, subjects, step.identity, used)


def _full(ref: str) -> str:
    return ref if "/" in ref.split("@", 1)[0] else f"default/{ref}"
