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
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

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
    #: Evidence kinds (validation) whose report must have checked the labels to count: a
    #: validation run without a label column cannot satisfy the rule (no bypass by omission).
    evidence_label_checks: frozenset[str] = frozenset()

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


def _skeleton(alias: str) -> str:
    """An alias with case and separators removed, for comparing with protected names."""
    return "".join(c for c in alias.lower() if c not in "._+-")


@dataclass(frozen=True)
class PromotionPolicy:
    protected_aliases: tuple[str, ...]
    rules: tuple[Rule, ...]
    version: int = 0

    def is_protected(self, alias: str) -> bool:
        # Case and separators do not count: "Production", "production." and "prod-uction"
        # are the protected alias, not ways around it (names allow only [A-Za-z0-9._+-]).
        return any(fnmatch.fnmatchcase(_skeleton(alias), _skeleton(p))
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
    #: report kind -> identities whose reports of that kind were not counted (not trusted for
    #: that kind in the model's namespace), to say why evidence is missing
    untrusted: Mapping[str, Sequence[str]] = field(default_factory=dict)
    #: report kind -> inputs of the training step that no passing report of it covers
    uncovered: Mapping[str, Sequence[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    rule: str
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "passed": self.passed, "detail": self.detail}


def _failed(kind: str, uncovered: Sequence[str]) -> str:
    if not uncovered:
        return "the report in the chain FAILED"
    return (f"no passing {kind} report covers {', '.join(uncovered)} (every dataset, labels "
            "and features version the training step consumed needs one)")


def _missing(kind: str, untrusted: Sequence[str]) -> str:
    if not untrusted:
        return "no such report in the chain"
    return (f"no {kind} report from a trusted signer: the {kind} report(s) by "
            f"{', '.join(sorted(untrusted))} do not count (needs the evaluator role in the "
            f"model's namespace, granted by someone else, or a trust-policy rule for {kind} "
            "steps there)")


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
                           (_failed(kind, facts.uncovered.get(kind, ())) if passed is False
                            else _missing(kind, facts.untrusted.get(kind, ())))))
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
                               "nothing at the alias yet to compare with" if value is not None
                               else f"no signed metric {metric!r} recorded for the candidate "
                                    "(nothing at the alias yet to compare with either)"))
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


# The document's shape, checked by pydantic (unknown keys and wrong types refused, saying
# where); the frozen dataclasses above are what the gate uses.
class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _MatchDoc(_Doc):
    namespace: str = "*"
    model: str = "*"
    alias: str = "*"


class _ApprovalsDoc(_Doc):
    min: Annotated[int, Field(ge=0)] = 1
    role: str = "approver"
    independent: bool = True


class _RegressionDoc(_Doc):
    metric: str
    epsilon: float = 0.0


class _InputsDoc(_Doc):
    namespaces: list[str] = []
    names: list[str] = []


class _BlockOnDoc(_Doc):
    block_on: Literal["warn", "fail"] = "fail"
    label_checks: bool = False


class _RuleDoc(_Doc):
    match: _MatchDoc = _MatchDoc()
    approvals: _ApprovalsDoc | None = None
    provenance: bool = True
    evidence: list[str | dict[str, _BlockOnDoc]] | dict[str, _BlockOnDoc] = []
    metrics: dict[str, str | float] = {}
    regression: _RegressionDoc | None = None
    inputs: _InputsDoc = _InputsDoc()
    auto_execute: bool = False

    @field_validator("metrics")
    @classmethod
    def _comparisons(cls, value: dict[str, str | float]) -> dict[str, str | float]:
        for name, expr in value.items():
            if not _COMPARISON.match(str(expr)):
                raise ValueError(f"{name}: {expr!r} is not like '>= 0.85'")
        return value


class _PolicyDoc(_Doc):
    protected_aliases: list[Annotated[str, Field(min_length=1)]] = ["production"]
    rules: list[_RuleDoc] = []


def parse_policy(text: str, *, version: int = 0) -> PromotionPolicy:
    """Parse a policy document (YAML); MalformedFileError naming where it is wrong."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MalformedFileError(f"promotion policy is not valid YAML: {exc}") from None
    try:
        parsed = _PolicyDoc.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "top level"
        raise MalformedFileError(f"promotion policy {where}: {first.get('msg')}",
                                 hint="see `chainproof policy show` for the format") from None
    rules = []
    for raw in parsed.rules:
        evidence: list[str] = []
        block_on: dict[str, str] = {}
        label_checks: set[str] = set()
        items = ([{k: v} for k, v in raw.evidence.items()] if isinstance(raw.evidence, dict)
                 else raw.evidence)
        for item in items:
            if isinstance(item, str):
                evidence.append(item)
                continue
            for kind, options in item.items():
                evidence.append(kind)
                block_on[kind] = options.block_on
                if options.label_checks:
                    label_checks.add(kind)
        metrics = {}
        for name, expr in raw.metrics.items():
            m = _COMPARISON.match(str(expr))
            assert m is not None  # checked by the document model
            metrics[name] = (m.group(1), float(m.group(2)))
        approvals = (ApprovalRule(min=raw.approvals.min, role=raw.approvals.role,
                                  independent=raw.approvals.independent)
                     if raw.approvals is not None else None)
        regression = ((raw.regression.metric, float(raw.regression.epsilon))
                      if raw.regression is not None else None)
        rules.append(Rule(namespace=raw.match.namespace, model=raw.match.model,
                          alias=raw.match.alias, approvals=approvals,
                          provenance=raw.provenance, evidence=tuple(evidence),
                          metrics=metrics, regression=regression,
                          input_namespaces=tuple(raw.inputs.namespaces),
                          input_names=tuple(raw.inputs.names),
                          auto_execute=raw.auto_execute, evidence_block_on=block_on,
                          evidence_label_checks=frozenset(label_checks)))
    return PromotionPolicy(protected_aliases=tuple(parsed.protected_aliases),
                           rules=tuple(rules), version=version)
