"""Verified loading: the bytes a promotion approved, with every link re-checked, or a refusal.

``load_verified("fraud-review@production")`` resolves the alias, then checks, failing closed:
1. the alias was moved by a promotion decision whose DSSE signature verifies with the executing
   identity's registered key, and which names this model, version, alias and digest;
2. the approvals behind that decision still verify and count under the policy it recorded;
3. a break-glass override is refused unless ``allow_override=True``;
4. the model version's whole provenance chain verifies under the trust policy;
5. a passing, signed scan report covers these bytes;
6. the bytes fetched re-hash to the approved digest.
Only then is a local path returned. A cached copy is re-verified cheaply (size, mtime and the
digest recorded when it was last fully hashed); ``full_rehash=True`` forces a re-hash.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chainproof import catalog, provenance, signatures
from chainproof.access import Permission
from chainproof.attest import CHAINPROOF_PROMOTION_DECISION_V1, Statement
from chainproof.context import Context
from chainproof.db.tables import AliasRow, DecisionRow, PromotionRequestRow
from chainproof.digest import digest_path
from chainproof.errors import (
    ChainproofError,
    DigestMismatchError,
    InvalidReferenceError,
    OverrideNotAllowedError,
    ScanRequiredError,
    UnapprovedModelError,
)
from chainproof.records.names import is_version, parse_ref
from chainproof.registry import operations as registry


@dataclass(frozen=True)
class LoadedModel:
    """A verified model: where its bytes are and what vouches for them."""

    path: Path
    model: str
    alias: str
    version: int
    digest: str
    asset: str
    decision: str | None
    override: bool
    checks: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "model": self.model, "alias": self.alias,
                "version": self.version, "digest": self.digest, "asset": self.asset,
                "decision": self.decision, "override": self.override,
                "checks": list(self.checks)}


def split_alias_ref(ref: str) -> tuple[str, str]:
    model, at, alias = ref.rpartition("@")
    if not at or not model or not alias or is_version(alias):
        raise InvalidReferenceError(f"{ref!r} is not MODEL@ALIAS",
                                    hint="e.g. fraud-review@production")
    return model, alias


def load_verified(ctx: Context, ref: str, *, allow_override: bool = False,
                  dest: Path | None = None, full_rehash: bool = False,
                  require_scan: bool = True) -> LoadedModel:
    model_name, alias = split_alias_ref(ref)
    checks: list[str] = []
    namespace = parse_ref(model_name).namespace
    if not ctx.allowed(Permission.READ, namespace):
        ctx.check_read(namespace, f"load {ref}")
    with ctx.session() as session:
        model, target = registry.resolve_alias(session, model_name, alias)
        mv = registry.model_version(session, model, target.version)
        asset_ref = registry.asset_ref_of(session, mv)
        version = catalog.resolve(session, parse_ref(asset_ref))
        # Every record that names these bytes must name the same digest: the alias, the
        # registered version, the asset version it pins (and, below, the signed decision and
        # the fetched bytes). Any disagreement means an edited registry.
        digests = {"alias": target.digest, "model version": mv.digest,
                   f"asset version {asset_ref}": version.digest}
        if len(set(digests.values())) != 1:
            raise UnapprovedModelError(
                f"{ref}: the records disagree about its bytes: " + ", ".join(
                    f"{k} says {v}" for k, v in digests.items()),
                hint="run `chainproof audit verify`: the registry was edited")
        checks.append("alias, model version and asset version name the same digest")
        if target.override:
            if not allow_override:
                raise OverrideNotAllowedError(
                    f"{ref} was moved by a break-glass override (decision "
                    f"{target.decision_id}), not by the promotion gate",
                    hint="pass allow_override=True (CLI: --allow-override) to load it anyway, "
                         "knowingly")
            checks.append("break-glass override accepted by the caller")
        recorded = _check_decision(session, target, model, mv.digest, alias, checks,
                                   allow_override=allow_override)
        gate_chain = None
        if not target.override:
            gate_chain = _check_approvals(ctx, session, target, model, recorded, checks)
    # The gate verified the chain just now (same rules, same moment): not verified twice.
    chain = (provenance.require_verified(gate_chain) if gate_chain is not None
             else provenance.verify_chain(ctx, asset_ref))
    checks.append(f"provenance chain of {len(chain.links)} links verifies")
    if require_scan:
        _check_scan(ctx, asset_ref, mv.digest, model.namespace, None)
        checks.append("a passing signed scan report covers these bytes")
    target_path = dest or ctx.settings.cache_dir / version.hexdigest / version.name
    path, how = _fetch_verified(ctx, version, target_path, full_rehash=full_rehash)
    checks.append(how)
    return LoadedModel(path=path, model=registry.model_label(model.namespace, model.name),
                       alias=alias, version=mv.version, digest=mv.digest, asset=asset_ref,
                       decision=target.decision_id, override=bool(target.override),
                       checks=tuple(checks))


def _check_decision(session: Any, target: AliasRow, model: Any, digest: str, alias: str,
                    checks: list[str], *, allow_override: bool) -> dict[str, Any]:
    """Verify the signed decision behind the alias; its predicate (what the gate recorded)."""
    if target.decision_id is None:
        raise UnapprovedModelError(
            f"{model.name}@{alias} was not moved by a promotion decision",
            hint="promote it through the gate: `chainproof promote MODEL@V --to ALIAS`")
    row = session.get(DecisionRow, target.decision_id)
    if row is None:
        raise UnapprovedModelError(f"decision {target.decision_id} behind {model.name}@{alias} "
                                   "does not exist", hint="run `chainproof audit verify`")
    try:
        payload, _ = signatures.verify_signed(session, row.envelope, row.created_by,
                                              row.log_seq)
        statement = Statement.from_bytes(payload)
    except ChainproofError as exc:
        raise UnapprovedModelError(f"the promotion decision {row.id} does not verify: "
                                   f"{exc.message}", hint="run `chainproof audit verify`") from None
    p = statement.predicate
    expected = (CHAINPROOF_PROMOTION_DECISION_V1, row.id, alias, target.version, digest)
    actual = (statement.predicate_type, p.get("decision"), p.get("alias"), p.get("version"),
              p.get("digest"))
    if actual != expected:
        raise UnapprovedModelError(
            f"the signed decision {row.id} is for {p.get('model')}@{p.get('version')} -> "
            f"{p.get('alias')} ({p.get('digest')}), not this alias and digest",
            hint="run `chainproof audit verify`: the registry was edited")
    if p.get("result") != "allowed" and not allow_override:
        raise OverrideNotAllowedError(f"decision {row.id} is a {p.get('result')}, not an "
                                      "approval by the gate")
    checks.append(f"promotion decision {row.id} signed by {row.created_by} verifies")
    return dict(p)


def _check_approvals(ctx: Context, session: Any, target: AliasRow, model: Any,
                     recorded: dict[str, Any], checks: list[str]
                     ) -> provenance.ChainReport | None:
    """The approvals behind the decision still count — judged by the one gate, under the
    policy version the decision recorded and as of the decision's place in the log (roles
    then; each signature's key at its own log position). Returns the chain report the gate
    made."""
    row = session.get(DecisionRow, target.decision_id)
    request = session.get(PromotionRequestRow, row.request_id)
    if request is None:
        raise UnapprovedModelError(f"the request behind decision {row.id} is missing")
    version = recorded.get("policy_version")
    policy = registry.policy_version(session, version if isinstance(version, int) else 0)
    gate = registry.evaluate_gate(ctx, session, model, request.version, request.alias, request,
                                  policy=policy, as_of=row.log_seq)
    approvals = [o for o in gate.outcomes if o.rule == "approvals"]
    if approvals and not approvals[0].passed:
        raise UnapprovedModelError(f"the approvals behind {model.name}@{target.alias} no longer "
                                   f"hold: {approvals[0].detail}",
                                   hint="an approval was revoked, replayed or edited")
    if approvals:
        checks.append(f"approvals verify: {approvals[0].detail}")
    return gate.chain


def _check_scan(ctx: Context, asset_ref: str, digest: str, governed: str,
                as_of: int | None) -> None:
    """The latest trusted scan about these exact bytes passes: from a signer the governed
    namespace trusts for scans (a sandbox's self-made "scan" counts for nothing; a later failing
    scan by an evaluator refuses). The gate's evidence rule, applied by the gate's own function
    (one authority)."""
    with ctx.session() as session:
        evidence = registry.candidate_evidence(ctx, session, asset_ref, governed, as_of)
    if evidence.get("scan") is not True:
        raise ScanRequiredError(f"no passing scan report covers {asset_ref} ({digest[:23]}…)",
                                hint=f"an evaluator runs `chainproof scan {asset_ref}`")


def _fetch_verified(ctx: Context, version: Any, path: Path, *,
                    full_rehash: bool) -> tuple[Path, str]:
    """The verified local copy and how it was verified (said honestly: a size-and-mtime
    shortcut is reported as such, never as a re-hash)."""
    stamp = path.with_name(path.name + ".chainproof-verified")
    if path.exists() and not full_rehash and stamp.exists():
        try:
            seen = json.loads(stamp.read_text())
            stat = path.stat()
            if (seen.get("digest") == version.digest and seen.get("size") == stat.st_size
                    and seen.get("mtime_ns") == stat.st_mtime_ns and path.is_file()):
                return path, ("cached copy trusted by size and mtime (it re-hashed to the "
                              "approved digest when fetched; full_rehash=True re-hashes it)")
        except (OSError, ValueError):
            pass
    if path.exists():
        computed = digest_path(path)
        if computed.ref != version.digest:
            raise DigestMismatchError(
                f"the local copy {path} of {version.ref} does not match {version.digest}",
                hint=f"delete {path}; it will be fetched and verified again")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        catalog.materialize(ctx, version, path)
    if path.is_file():
        stat = path.stat()
        tmp = stamp.with_name(stamp.name + ".tmp")
        tmp.write_text(json.dumps({"digest": version.digest, "size": stat.st_size,
                                   "mtime_ns": stat.st_mtime_ns}))
        os.replace(tmp, stamp)
    return path, "fetched bytes re-hash to the approved digest"
