"""The warehouse demo (``chainproof demo``, ``make demo``): the whole chain and five attacks.

``run_demo()`` builds an isolated workspace, generates synthetic warehouse data, runs the
pipeline with a separate identity and signing key per stage, plays the seed's attacks as real
attempts, and ends with ``explain`` of the fraud model and a summary table.
"""

from chainproof.demo._model import Attempt, DemoResult, Outcome, Row
from chainproof.demo._run import DEFAULT_ROWS, run_demo
from chainproof.demo._scenarios import DESCRIPTIONS, SCENARIOS

__all__ = ["DEFAULT_ROWS", "DESCRIPTIONS", "SCENARIOS", "Attempt", "DemoResult", "Outcome", "Row",
           "run_demo"]
