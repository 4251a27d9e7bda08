"""The trust policy: who may attest which step kinds where, and what their inputs must be.

In the spirit of an in-toto layout, but for a pipeline whose steps recur: per namespace (exact
name or glob), per step kind, the identities (or ``role:NAME``) allowed to sign it, the kinds of
inputs it may consume (``source:dataset`` — registered directly; ``step:features`` — produced by a
``features`` step; ``*``), and the maximum age of its attestation. ``sources`` says who may
register source assets of each kind. Pure data: parsing and evaluation, no I/O.

Example::

    namespaces:
      warehouse:
        sources:
          dataset: [data-eng]
          labels: [data-eng]
        steps:
          features: {signers: [svc-feature-job], inputs: ["source:dataset", "source:code"]}
          train:
            signers: [svc-trainer]
            inputs: ["step:features", "source:labels", "source:code"]
            max_age: 30d
      "*":
        steps:
          "*": {signers: ["*"], inputs: ["*"]}
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from chainproof.errors import MalformedFileError

_AGE_RE = re.compile(r"^(\d+)([smhd])$")
_AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


@dataclass(frozen=True)
class StepRule:
    signers: tuple[str, ...] = ("*",)
    inputs: tuple[str, ...] = ("*",)
    max_age: timedelta | None = None

    def allows_signer(self, identity: str, namespace: str,
                      has_role: Callable[[str, str, str], bool]) -> bool:
        for entry in self.signers:
            if entry in ("*", identity):
                return True
            if entry.startswith("role:") and has_role(identity, entry[5:], namespace):
                return True
        return False

    def allows_input(self, category: str) -> bool:
        """``category`` is ``source:<kind>`` or ``step:<kind>``."""
        family = category.split(":", 1)[0]
        return any(entry in ("*", category, f"{family}:*") for entry in self.inputs)


@dataclass(frozen=True)
class NamespaceRules:
    steps: Mapping[str, StepRule] = field(default_factory=dict)
    sources: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class TrustPolicy:
    namespaces: Mapping[str, NamespaceRules]
    version: int = 0

    def _rules(self, namespace: str) -> tuple[str, NamespaceRules] | None:
        if namespace in self.namespaces:
            return namespace, self.namespaces[namespace]
        for pattern, rules in self.namespaces.items():
            if fnmatch.fnmatchcase(namespace, pattern):
                return pattern, rules
        return None

    def step_rule(self, namespace: str, kind: str) -> StepRule | None:
        """The rule for ``kind`` steps in ``namespace``; None means no rule allows it."""
        found = self._rules(namespace)
        if found is None:
            return None
        steps = found[1].steps
        return steps.get(kind) or steps.get("*")

    def explicit_step_rule(self, namespace: str, kind: str) -> StepRule | None:
        """The rule for ``kind`` steps in ``namespace`` if the policy names who signs them
        (anything but the catch-all ``signers: ["*"]``); None otherwise. Evidence (scan,
        validation, evaluation reports) counts only from such signers, or out of the box from
        the governed namespace's evaluators."""
        rule = self.step_rule(namespace, kind)
        if rule is None or rule.signers == ("*",):
            return None
        return rule

    def allows_source(self, namespace: str, kind: str, identity: str,
                      has_role: Callable[[str, str, str], bool]) -> bool:
        found = self._rules(namespace)
        if found is None:
            return False
        sources = found[1].sources
        allowed = sources.get(kind, sources.get("*", ("*",)))
        return any(e in ("*", identity) or (e.startswith("role:")
                                              and has_role(identity, e[5:], namespace))
                   for e in allowed)


#: Used until an admin sets a policy: every step must still be signed by a registered,
#: unrevoked key of the identity that ran it, and every digest must match; anyone may sign.
DEFAULT_POLICY = TrustPolicy(namespaces={"*": NamespaceRules(steps={"*": StepRule()})})


# The document's shape, checked by pydantic (unknown keys and wrong types refused with where
# and what); the dataclasses above are what the rest of chainproof uses.
_Names = Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=0)]


class _StepRuleDoc(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    signers: _Names = ["*"]
    inputs: _Names = ["*"]
    max_age: str | None = None

    @field_validator("inputs")
    @classmethod
    def _categories(cls, value: list[str]) -> list[str]:
        for entry in value:
            if entry != "*" and entry.split(":", 1)[0] not in ("source", "step"):
                raise ValueError(f"entry {entry!r} is not 'source:KIND', 'step:KIND' or '*'")
        return value

    @field_validator("max_age", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        if value is not None and not _AGE_RE.match(str(value)):
            raise ValueError(f"{value!r} is not a duration like 90d, 12h, 30m")
        return None if value is None else str(value)


class _NamespaceDoc(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    steps: dict[str, _StepRuleDoc] = {}
    sources: dict[str, _Names] = {}


class _TrustDoc(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    namespaces: Annotated[dict[str, _NamespaceDoc], Field(min_length=1)]


def _age(value: str | None, where: str) -> timedelta | None:
    if value is None:
        return None
    match = _AGE_RE.match(value)
    assert match is not None  # checked by the document model
    try:
        return timedelta(**{_AGE_UNITS[match.group(2)]: int(match.group(1))})
    except OverflowError:
        raise MalformedFileError(f"trust policy {where}.max_age {value!r} is too long",
                                 hint="use at most a few years, e.g. 3650d") from None


def _invalid(exc: ValidationError) -> MalformedFileError:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "top level"
    return MalformedFileError(f"trust policy {where}: {first.get('msg')}",
                              hint="see `chainproof trust show` for the format")


def parse_trust_policy(text: str, *, version: int = 0) -> TrustPolicy:
    """Parse and check a policy document; any unknown key or wrong type is an error
    (MalformedFileError naming where)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MalformedFileError(f"trust policy is not valid YAML: {exc}") from None
    try:
        parsed = _TrustDoc.model_validate(doc)
    except ValidationError as exc:
        raise _invalid(exc) from None
    namespaces = {
        str(ns): NamespaceRules(
            steps={str(kind): StepRule(signers=tuple(rule.signers), inputs=tuple(rule.inputs),
                                       max_age=_age(rule.max_age, f"namespaces.{ns}.{kind}"))
                   for kind, rule in body.steps.items()},
            sources={str(k): tuple(v) for k, v in body.sources.items()})
        for ns, body in parsed.namespaces.items()}
    return TrustPolicy(namespaces=namespaces, version=version)
