"""A caller with no role cannot grow the append-only log as fast as it can send requests:
every refusal is refused, but only CHAINPROOF_DENIALS_PER_MINUTE of one identity's are logged
per minute; the next logged one carries how many were held back. Both backends."""

from __future__ import annotations

from pathlib import Path

import pytest
from pipeline_fixtures import act_as
from sqlalchemy import text

from chainproof.context import REFUSAL_BUDGET
from chainproof.errors import NotFoundError, PermissionDeniedError
from chainproof.service import Chainproof


def _denials(cp: Chainproof) -> list[dict[str, object]]:
    import json

    with cp.engine.connect() as conn:
        return [json.loads(b)["detail"] for (b,) in conn.execute(text(
            "SELECT body FROM log_entries WHERE action = 'access.denied' ORDER BY seq"))]


def test_refusals_past_the_budget_are_counted_not_logged(
        cp: Chainproof, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAINPROOF_DENIALS_PER_MINUTE", "3")
    now = [1000.0]
    monkeypatch.setattr(REFUSAL_BUDGET, "clock", lambda: now[0])
    nobody = act_as(cp, "nobody", tmp_path)
    for i in range(7):
        with pytest.raises((PermissionDeniedError, NotFoundError)):
            nobody.resolve(f"secret{i}/x@1")  # a new namespace each time
    assert len(_denials(cp)) == 3
    now[0] += 61
    with pytest.raises((PermissionDeniedError, NotFoundError)):
        nobody.resolve("secret/x@1")
    denials = _denials(cp)
    assert len(denials) == 4 and denials[-1]["suppressed_before"] == 4
    # another identity has its own budget
    other = act_as(cp, "other", tmp_path)
    with pytest.raises((PermissionDeniedError, NotFoundError)):
        other.resolve("secret/x@1")
    assert len(_denials(cp)) == 5
    assert cp.audit_verify()
