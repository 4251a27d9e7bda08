"""Promotion policies: which aliases are protected and what a move onto them requires (I4).

A versioned YAML document. Each rule matches namespace, model and alias (globs) and combines
requirements; every requirement is evaluated and reported, and all must pass::

    protected_aliases: [production]
    rules:
      - match: {namespace: "*", model: "*", alias: production}
        approvals: {min: 2, role: approver, independent: true}
        provenance: true
        evidence: [validation, scan]
        metrics: {auc: ">= 0.85"}
        regression: {metric: auc, epsilon: 0.01}
        inputs: {namespaces: [warehouse]}
        auto_execute: false

``independent`` means no approver authored or ran any step in the version's upstream chain
(separation of duties). Pure data and evaluation; the registry gathers the facts.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from chainproof.errors import MalformedFileError

_COMPARISON = re.compile(r"^\s*(>=|<=|>|<|==)\s*(-?\d+(?:\.\d+)?(?:[eE]-?\d+)?)\s*$")
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq}


@dataclass(frozen=True)
class ApprovalRule:
    min: int = 1
    role: str = "approver"
    independent: bool = True


@dataclass(frozen=True)
class Rule:
    namespace: str = "*"
    model: str = "*"
    alias: str = "*"
    approvals: ApprovalRule | None = None
    provenance: bool = True
    evidence: tuple[str, ...] = ()
    metrics: Mapping[str, tuple[str, float]] = field(default_factory=dict)
    regression: tuple[str, float] | None = None  # (metric, epsilon): higher is better
    input_namespaces: tuple[str, ...] = ()
    input_names: tuple[str, ...] = ()
    auto_execute: bool = False
    #: Per evidence kind, the finding severity that blocks (``warn`` or ``fail``) for reports
    #: that carry severities (validation); others pass or fail as a whole.
    evidence_block_on: Mapping[str, str] = field(default_factory=dict)

    def matches(self, namespace: str, model: str, alias: str) -> bool:
        return (fnmatch.fnmatchcase(namespace, self.namespace)
                and fnmatch.fnmatchcase(model, self.model)
                and fnmatch.fnmatchcase(alias, self.alias))


#: Aliases every policy protects, whatever its ``protected_aliases`` say (I11).
FLOOR_ALIASES = ("production",)
#: What a move onto a protected alias needs at the very least, whatever the policy says (I4,
#: I11): one independent, signed approval by an approver; the provenance chain verified; a
#: passing scan report about the candidate's exact bytes — the same things ``load`` demands of
#: a production model, so the gate never promotes what the loader then refuses. Going below the
#: floor is break-glass (``promote --force``), marked as an override everywhere.
FLOOR = Rule(approvals=ApprovalRule(min=1, role="approver", independent=True), provenance=True,
             evidence=("scan",))


def with_floor(rule: Rule) -> Rule:
    """``rule`` raised to :data:`FLOOR` where it asks for less (never lowered)."""
    approvals = rule.approvals or FLOOR.approvals
    assert approvals is not None and FLOOR.approvals is not None
    approvals = ApprovalRule(min=max(approvals.min, FLOOR.approvals.min), role=approvals.role,
                             independent=True)
    evidence = tuple(dict.fromkeys((*rule.evidence, *FLOOR.evidence)))
    return dataclasses.replace(rule, approvals=approvals, provenance=True, evidence=evidence)


@dataclass(frozen=True)
class PromotionPolicy:
    protected_aliases: tuple[str, ...]
    rules: tuple[Rule, ...]
    version: int = 0

    def is_protected(self, alias: str) -> bool:
        return any(fnmatch.fnmatchcase(alias, p)
                   for p in (*FLOOR_ALIASES, *self.protected_aliases))

    def rule_for(self, namespace: str, model: str, alias: str) -> Rule:
        """The first rule matching, raised to the floor for a protected alias; a protected
        alias no rule matches gets the floor itself."""
        for rule in self.rules:
            if rule.matches(namespace, model, alias):
                return with_floor(rule) if self.is_protected(alias) else rule
        return FLOOR if self.is_protected(alias) else Rule(approvals=None, provenance=False)


DEFAULT_POLICY = PromotionPolicy(protected_aliases=FLOOR_ALIASES, rules=())


# --- facts the registry gathers, and outcomes ----------------------------------------------------


@dataclass(frozen=True)
class ApprovalFact:
    approver: str
    signature_ok: bool
    has_role: bool
    authored_in_chain: bool
    problem: str | None = None


@dataclass(frozen=True)
class Facts:
    """Everything a rule needs, gathered (and verified) by the registry."""

    provenance_problems: Sequence[str]
    evidence: Mapping[str, bool]  # report kind -> passed (absent: no report)
    metrics: Mapping[str, float]
    current_metrics: Mapping[str, float] | None
    inputs: Sequence[tuple[str, str]]  # (namespace, name) of every dataset/labels upstream
    approvals: Sequence[ApprovalFact]
    rejections: Sequence[str]


@dataclass(frozen=True)
class Outcome:
    rule: str
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "passed": self.passed, "detail": self.detail}


def evaluate(rule: Rule, facts: Facts) -> list[Outcome]:
    """Every requirement of ``rule`` checked against ``facts``, each with its reason."""
    out: list[Outcome] = []
    if facts.rejections:
        out.append(Outcome("rejections", False, "rejected by " + ", ".join(facts.rejections)))
    if rule.approvals is not None:
        out.append(_approvals(rule.approvals, facts.approvals))
    if rule.provenance:
        problems = list(facts.provenance_problems)
        out.append(Outcome("provenance", not problems,
                           "the chain verifies under the trust policy" if not problems
                           else f"{len(problems)} problem(s): " + "; ".join(problems[:3])))
    for kind in rule.evidence:
        passed = facts.evidence.get(kind)
        out.append(Outcome(f"evidence:{kind}", passed is True,
                           "a passing report is in the chain" if passed else
                           ("the report in the chain FAILED" if passed is False
                            else "no such report in the chain")))
    for metric, (op, threshold) in sorted(rule.metrics.items()):
        value = facts.metrics.get(metric)
        ok = value is not None and _OPS[op](value, threshold)
        out.append(Outcome(f"metrics:{metric}", ok,
                           f"{metric} = {value} {'meets' if ok else 'fails'} {op} {threshold}"
                           if value is not None else f"no signed metric {metric!r} recorded"))
    if rule.regression is not None:
        metric, epsilon = rule.regression
        value = facts.metrics.get(metric)
        current = (facts.current_metrics or {}).get(metric)
        if facts.current_metrics is None:
            out.append(Outcome(f"regression:{metric}", value is not None,
                               "nothing at the alias yet to compare with"))
        elif value is None or current is None:
            out.append(Outcome(f"regression:{metric}", False,
                               f"cannot compare {metric}: candidate {value}, current {current}"))
        else:
            ok = value >= current - epsilon
            out.append(Outcome(f"regression:{metric}", ok,
                               f"{metric} {value} vs current {current} (allowed drop {epsilon})"))
    if rule.input_namespaces or rule.input_names:
        bad = [f"{ns}/{name}" for ns, name in facts.inputs
               if (rule.input_namespaces and ns not in rule.input_namespaces)
               or (rule.input_names and name not in rule.input_names)]
        out.append(Outcome("inputs", not bad, "all training data from allowed sources" if not bad
                           else "data from outside the allowed sources: " + ", ".join(bad)))
    return out


def _approvals(rule: ApprovalRule, approvals: Sequence[ApprovalFact]) -> Outcome:
    counted: set[str] = set()
    notes: list[str] = []
    for a in approvals:
        if not a.signature_ok:
            notes.append(f"{a.approver}: {a.problem or 'signature invalid'}")
        elif not a.has_role:
            notes.append(f"{a.approver}: lacks role {rule.role}")
        elif rule.independent and a.authored_in_chain:
            notes.append(f"{a.approver}: authored or ran a step in this model's chain "
                         "(separation of duties)")
        else:
            counted.add(a.approver)
    ok = len(counted) >= rule.min
    detail = f"{len(counted)} of {rule.min} independent approval(s)"
    if counted:
        detail += " (" + ", ".join(sorted(counted)) + ")"
    if notes:
        detail += "; not counted: " + "; ".join(notes)
    return Outcome("approvals", ok, detail)


# --- parsing --------------------------------------------------------------------------------------


def _bad(where: str, what: str) -> MalformedFileError:
    return MalformedFileError(f"promotion policy {where}: {what}",
                              hint="see `chainproof policy show` for the format")


def parse_policy(text: str, *, version: int = 0) -> PromotionPolicy:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MalformedFileError(f"promotion policy is not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or set(doc) - {"protected_aliases", "rules"}:
        raise _bad("top level", "only 'protected_aliases' and 'rules' are allowed")
    protected = doc.get("protected_aliases", ["production"])
    if not isinstance(protected, list) or not all(isinstance(p, str) and p for p in protected):
        raise _bad("protected_aliases", "must be a list of alias names")
    rules = []
    raw_rules = doc.get("rules") or []
    if not isinstance(raw_rules, list):
        raise _bad("rules", "must be a list of rules")
    for i, raw in enumerate(raw_rules):
        where = f"rules[{i}]"
        allowed = {"match", "approvals", "provenance", "evidence", "metrics", "regression",
                   "inputs", "auto_execute"}
        if not isinstance(raw, dict):
            raise _bad(where, "must be a mapping")
        if set(raw) - allowed:
            raise _bad(where, "unknown keys " + str(sorted(map(str, set(raw) - allowed))))
        match = raw.get("match") or {}
        if not isinstance(match, dict) or set(map(str, match)) - {"namespace", "model", "alias"}:
            raise _bad(f"{where}.match", "may hold namespace, model and alias")
        approvals = None
        if raw.get("approvals") is not None:
            a = raw["approvals"]
            if not isinstance(a, dict) or set(a) - {"min", "role", "independent"} or \
                    not isinstance(a.get("min", 1), int) or a.get("min", 1) < 0:
                raise _bad(f"{where}.approvals", "needs min (integer ≥ 0), role, independent")
            approvals = ApprovalRule(min=a.get("min", 1), role=str(a.get("role", "approver")),
                                     independent=bool(a.get("independent", True)))
        metrics: dict[str, tuple[str, float]] = {}
        if not isinstance(raw.get("metrics") or {}, dict):
            raise _bad(f"{where}.metrics", "must map metric names to comparisons")
        for name, expr in (raw.get("metrics") or {}).items():
            m = _COMPARISON.match(str(expr))
            if not m:
                raise _bad(f"{where}.metrics.{name}", f"{expr!r} is not like '>= 0.85'")
            metrics[str(name)] = (m.group(1), float(m.group(2)))
        regression = None
        if raw.get("regression") is not None:
            r = raw["regression"]
            if not isinstance(r, dict) or "metric" not in r:
                raise _bad(f"{where}.regression", "needs metric and epsilon")
            try:
                epsilon = float(r.get("epsilon", 0.0))
            except (TypeError, ValueError):
                raise _bad(f"{where}.regression.epsilon", "must be a number") from None
            regression = (str(r["metric"]), epsilon)
        inputs = raw.get("inputs") or {}
        if not isinstance(inputs, dict) or set(inputs) - {"namespaces", "names"}:
            raise _bad(f"{where}.inputs", "may hold namespaces and names")
        for key in ("namespaces", "names"):
            listed = inputs.get(key) or []
            if not isinstance(listed, list) or not all(isinstance(x, str) for x in listed):
                raise _bad(f"{where}.inputs.{key}", "must be a list of names")
        evidence_raw = raw.get("evidence") or []
        evidence: list[str] = []
        block_on: dict[str, str] = {}
        if isinstance(evidence_raw, dict):
            evidence_raw = [{k: v} for k, v in evidence_raw.items()]
        if not isinstance(evidence_raw, list):
            raise _bad(f"{where}.evidence", "must be a list of report kinds")
        for item in evidence_raw:
            if isinstance(item, str):
                evidence.append(item)
                continue
            if not isinstance(item, dict) or len(item) != 1:
                raise _bad(f"{where}.evidence", "items are report kinds, or "
                                                "{validation: {block_on: warn}}")
            (kind, options), = item.items()
            if not isinstance(options, dict) or set(options) - {"block_on"} or \
                    options.get("block_on", "fail") not in ("warn", "fail"):
                raise _bad(f"{where}.evidence.{kind}", "may hold block_on: warn or fail")
            evidence.append(str(kind))
            block_on[str(kind)] = str(options.get("block_on", "fail"))
        rules.append(Rule(namespace=str(match.get("namespace", "*")),
                          model=str(match.get("model", "*")), alias=str(match.get("alias", "*")),
                          approvals=approvals, provenance=bool(raw.get("provenance", True)),
                          evidence=tuple(str(e) for e in evidence), metrics=metrics,
                          regression=regression,
                          input_namespaces=tuple(inputs.get("namespaces") or ()),
                          input_names=tuple(inputs.get("names") or ()),
                          auto_execute=bool(raw.get("auto_execute", False)),
                          evidence_block_on=block_on))
    return PromotionPolicy(protected_aliases=tuple(protected), rules=tuple(rules),
                           version=version)
