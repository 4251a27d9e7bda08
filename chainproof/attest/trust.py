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
from typing import Any

import yaml

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


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise MalformedFileError(f"trust policy {where} must be a list of names",
                                 hint='e.g. signers: [svc-trainer, "role:trainer"]')
    return tuple(value)


def _age(value: Any, where: str) -> timedelta | None:
    if value is None:
        return None
    match = _AGE_RE.match(str(value))
    if not match:
        raise MalformedFileError(f"trust policy {where}.max_age {value!r} is not a duration",
                                 hint="use e.g. 90d, 12h, 30m")
    try:
        return timedelta(**{_AGE_UNITS[match.group(2)]: int(match.group(1))})
    except OverflowError:
        raise MalformedFileError(f"trust policy {where}.max_age {value!r} is too long",
                                 hint="use at most a few years, e.g. 3650d") from None


def parse_trust_policy(text: str, *, version: int = 0) -> TrustPolicy:
    """Parse and check a policy document; any unknown key or wrong type is an error."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MalformedFileError(f"trust policy is not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or set(doc) - {"namespaces"} or "namespaces" not in doc:
        raise MalformedFileError("trust policy must be a mapping with one key, 'namespaces'",
                                 hint="see `chainproof trust show` for the format")
    namespaces: dict[str, NamespaceRules] = {}
    if not isinstance(doc["namespaces"], dict) or not doc["namespaces"]:
        raise MalformedFileError("trust policy 'namespaces' must be a non-empty mapping")
    for ns, body in doc["namespaces"].items():
        where = f"namespaces.{ns}"
        if not isinstance(body, dict) or set(body) - {"steps", "sources"}:
            raise MalformedFileError(f"trust policy {where} may hold only 'steps' and 'sources'")
        steps: dict[str, StepRule] = {}
        for part in ("steps", "sources"):
            if not isinstance(body.get(part) or {}, dict):
                raise MalformedFileError(f"trust policy {where}.{part} must be a mapping",
                                         hint="see `chainproof trust show` for the format")
        for kind, rule in (body.get("steps") or {}).items():
            rwhere = f"{where}.steps.{kind}"
            if not isinstance(rule, dict) or set(rule) - {"signers", "inputs", "max_age"}:
                raise MalformedFileError(f"trust policy {rwhere} may hold only signers, "
                                         "inputs and max_age")
            steps[str(kind)] = StepRule(
                signers=_strings(rule.get("signers", ["*"]), f"{rwhere}.signers"),
                inputs=_strings(rule.get("inputs", ["*"]), f"{rwhere}.inputs"),
                max_age=_age(rule.get("max_age"), rwhere))
            for entry in steps[str(kind)].inputs:
                if entry != "*" and entry.split(":", 1)[0] not in ("source", "step"):
                    raise MalformedFileError(
                        f"trust policy {rwhere}.inputs entry {entry!r} is not "
                        "'source:KIND', 'step:KIND' or '*'")
        sources = {str(k): _strings(v, f"{where}.sources.{k}")
                   for k, v in (body.get("sources") or {}).items()}
        namespaces[str(ns)] = NamespaceRules(steps=steps, sources=sources)
    return TrustPolicy(namespaces=namespaces, version=version)
