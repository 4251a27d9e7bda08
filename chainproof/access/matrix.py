"""Roles, permissions and the role × permission matrix (pure data, I6).

Each role grants a fixed set of permissions, per namespace. A namespace is *governed* (the default:
each role does only its part) or an *experiment* namespace (a sandbox: a trainer may also write
data, features and evaluations and move unprotected aliases, but still never approve, execute a
promotion to a protected alias, or administer). ``docs/access.md`` prints this matrix.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from enum import StrEnum

from chainproof.errors import BadInputError
from chainproof.records.assets import AssetKind


class Role(StrEnum):
    READER = "reader"
    DATA_WRITER = "data-writer"
    FEATURE_WRITER = "feature-writer"
    TRAINER = "trainer"
    EVALUATOR = "evaluator"
    APPROVER = "approver"
    DEPLOYER = "deployer"
    AUDITOR = "auditor"
    ADMIN = "admin"

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls(text)
        except ValueError:
            raise BadInputError(f"unknown role {text!r}",
                                hint="roles: " + ", ".join(r.value for r in cls)) from None


class Permission(StrEnum):
    READ = "read"
    WRITE_DATA = "write:data"  # dataset, labels, schema
    WRITE_CODE = "write:code"  # code, notebook, environment
    WRITE_FEATURES = "write:features"
    WRITE_MODEL = "write:model"  # model outputs, registered models and versions
    WRITE_EVALUATION = "write:evaluation"  # metrics and reports
    REQUEST_PROMOTION = "promotion:request"
    APPROVE = "promotion:approve"
    EXECUTE_PROMOTION = "promotion:execute"
    MOVE_ALIAS = "alias:move"  # unprotected aliases only; protected ones move by promotion
    AUDIT = "audit"
    ADMIN = "admin"  # identities, roles, tokens, keys, policies, break-glass


class NamespaceMode(StrEnum):
    GOVERNED = "governed"
    EXPERIMENT = "experiment"


P = Permission
GOVERNED: dict[Role, frozenset[Permission]] = {
    Role.READER: frozenset({P.READ}),
    Role.DATA_WRITER: frozenset({P.READ, P.WRITE_DATA, P.WRITE_CODE}),
    Role.FEATURE_WRITER: frozenset({P.READ, P.WRITE_FEATURES, P.WRITE_CODE}),
    Role.TRAINER: frozenset({P.READ, P.WRITE_MODEL, P.WRITE_CODE, P.REQUEST_PROMOTION}),
    Role.EVALUATOR: frozenset({P.READ, P.WRITE_EVALUATION}),
    Role.APPROVER: frozenset({P.READ, P.APPROVE}),
    Role.DEPLOYER: frozenset({P.READ, P.REQUEST_PROMOTION, P.EXECUTE_PROMOTION, P.MOVE_ALIAS}),
    Role.AUDITOR: frozenset({P.READ, P.AUDIT}),
    Role.ADMIN: frozenset({P.READ, P.AUDIT, P.ADMIN}),
}
EXPERIMENT: dict[Role, frozenset[Permission]] = {
    **GOVERNED,
    Role.TRAINER: frozenset({P.READ, P.WRITE_DATA, P.WRITE_CODE, P.WRITE_FEATURES, P.WRITE_MODEL,
                             P.WRITE_EVALUATION, P.REQUEST_PROMOTION, P.MOVE_ALIAS}),
}

#: Which permission writing an asset of each kind needs.
WRITE_PERMISSION: dict[AssetKind, Permission] = {
    AssetKind.DATASET: P.WRITE_DATA,
    AssetKind.LABELS: P.WRITE_DATA,
    AssetKind.SCHEMA: P.WRITE_DATA,
    AssetKind.CODE: P.WRITE_CODE,
    AssetKind.NOTEBOOK: P.WRITE_CODE,
    AssetKind.ENVIRONMENT: P.WRITE_CODE,
    AssetKind.FEATURES: P.WRITE_FEATURES,
    AssetKind.MODEL: P.WRITE_MODEL,
    AssetKind.METRICS: P.WRITE_EVALUATION,
    AssetKind.REPORT: P.WRITE_EVALUATION,
}


#: Roles that write assets somewhere (in some namespace mode): only they may upload bytes.
UPLOADING_ROLES: frozenset[Role] = frozenset(
    role for table in (GOVERNED, EXPERIMENT) for role, held in table.items()
    if held & set(WRITE_PERMISSION.values()))


def permissions(grants: Iterable[tuple[str, str]], namespace: str,
                mode: NamespaceMode) -> frozenset[Permission]:
    """What ``(role, namespace pattern)`` grants allow in ``namespace``."""
    table = EXPERIMENT if mode is NamespaceMode.EXPERIMENT else GOVERNED
    allowed: set[Permission] = set()
    for role, pattern in grants:
        if pattern == namespace or fnmatch.fnmatchcase(namespace, pattern):
            allowed |= table[Role(role)]
    return frozenset(allowed)
