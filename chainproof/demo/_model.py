"""The demo's result types: pure data, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import NamedTuple


class Outcome(StrEnum):
    CAUGHT = "caught"  # a control refused or exposed the attempt
    MISSED = "missed"  # the attempt went through: a defect, reported loudly
    UNAVAILABLE = "not available yet"  # the control it needs is not built yet; nothing faked


class Row(NamedTuple):
    """One line of the summary table: (attack, control, outcome, evidence)."""

    attack: str
    control: str
    outcome: str
    evidence: str


@dataclass(frozen=True)
class Attempt:
    """One attack attempt and what happened to it."""

    scenario: str
    attack: str
    control: str
    outcome: Outcome
    evidence: str
    error_type: str | None = None  # the exception class the control raised, if any

    @property
    def row(self) -> Row:
        text = self.outcome.value.upper() if self.outcome is not Outcome.UNAVAILABLE \
            else self.outcome.value
        return Row(self.attack, self.control, text, self.evidence)


@dataclass
class DemoResult:
    """What the demo did. ``ok``: no attempt got through, no scenario broke, and production
    still serves the last good model of every task (attempts whose control is not built yet
    are listed as such and do not count as caught)."""

    attempts: list[Attempt] = field(default_factory=list)
    serving_ok: bool = False
    errors: list[str] = field(default_factory=list)
    serving: dict[str, str] = field(default_factory=dict)  # model -> digest being served
    workdir: Path | None = None

    @property
    def rows(self) -> list[Row]:
        return [a.row for a in self.attempts]

    @property
    def ok(self) -> bool:
        return (self.serving_ok and not self.errors
                and all(a.outcome is not Outcome.MISSED for a in self.attempts))

    def by_scenario(self, scenario: str) -> list[Attempt]:
        return [a for a in self.attempts if a.scenario == scenario]
