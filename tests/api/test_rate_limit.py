"""A token over its rate limit gets 429 (in the error schema, with Retry-After) before any other
work; other tokens are unaffected; nothing is written."""

from __future__ import annotations

from datetime import timedelta

import httpx
from api.conftest import start_server

from chainproof.service import Chainproof


def test_a_token_over_its_rate_is_refused_and_others_are_not(
        cp: Chainproof) -> None:
    cp.create_identity("busy", "service")
    cp.create_identity("calm", "service")
    _, busy = cp.create_token("busy", timedelta(hours=1))
    _, calm = cp.create_token("calm", timedelta(hours=1))
    url, proc = start_server(cp, extra_env={"CHAINPROOF_RATE_LIMIT": "2",
                                            "CHAINPROOF_RATE_BURST": "3"})
    try:
        with cp.session() as session:
            from sqlalchemy import text

            before = session.execute(text("SELECT size FROM log_head")).scalar_one()
        codes = [httpx.get(f"{url}/v1/assets", headers={"Authorization": f"Bearer {busy}"}
                           ).status_code for _ in range(10)]
        assert codes[:3] == [200, 200, 200] and 429 in codes and max(codes) < 500
        refused = httpx.get(f"{url}/v1/assets", headers={"Authorization": f"Bearer {busy}"})
        assert refused.status_code == 429 and refused.headers["Retry-After"]
        assert refused.json()["error"] == "RateLimitedError"
        assert httpx.get(f"{url}/v1/assets",
                         headers={"Authorization": f"Bearer {calm}"}).status_code == 200
        assert httpx.get(f"{url}/v1/health").status_code == 200
        with cp.session() as session:
            assert session.execute(text("SELECT size FROM log_head")).scalar_one() == before
    finally:
        proc.terminate()
        proc.wait(timeout=20)
