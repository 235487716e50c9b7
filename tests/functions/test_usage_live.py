"""Usage and the Enable Function toggle through a running server: an insert function
attached off lets events through unmodified and is not billed; turned on, it enriches them,
its invocations show in ``GET …/usage`` and crossing ``server.functions_monthly_execution_ms``
is logged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.functions.test_delivery_functions_live import (
    ADMIN,
    AUTH,
    ENRICH,
    config,
    serving,
    settle,
    track,
)
from tests.support.receiver import Receiver
from tests.support.waiting import wait_for

pytestmark = pytest.mark.live  # starts a headwater server process

INSERT = "/api/v1/destinations/hook/insert-function"


def test_live_the_toggle_and_the_usage_of_an_insert_function(
    tmp_path: Path, receiver: Receiver
) -> None:
    text = config(receiver).replace(
        "server:\n", "server:\n  functions_monthly_execution_ms: 1\n", 1
    )
    with (
        serving(tmp_path, text) as live,
        httpx.Client(base_url=live.url, timeout=10) as http,
    ):
        created = http.post(
            "/api/v1/functions",
            headers=ADMIN,
            json={
                "name": "enrich",
                "kind": "insert",
                "code": ENRICH,
                "settings": [{"name": "team", "label": "Team", "type": "string"}],
            },
        )
        assert created.status_code == 201, created.text
        off = http.put(
            INSERT,
            headers=ADMIN,
            json={"function": "enrich", "settings": {"team": "growth"}, "enabled": False},
        )
        assert off.status_code == 200 and off.json()["data"]["function"]["enabled"] is False
        settle()
        assert http.post("/v1/track", headers=AUTH, json=track(1)).status_code == 200
        [first] = receiver.wait_for(1, timeout=30)
        assert first.json()["properties"] == {"n": 1}  # unmodified

        def usage() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = http.get(
                "/api/v1/functions/enrich/usage", headers=ADMIN
            ).json()["data"]["usage"]
            return found

        assert usage() == []
        on = http.put(
            INSERT,
            headers=ADMIN,
            json={"function": "enrich", "settings": {"team": "growth"}, "enabled": True},
        )
        assert on.status_code == 200 and on.json()["data"]["function"]["enabled"] is True
        settle()
        assert http.post("/v1/track", headers=AUTH, json=track(2)).status_code == 200
        second = receiver.wait_for(2, timeout=30)[1]
        assert second.json()["properties"] == {"n": 2, "message": "Enriched", "team": "growth"}
        [month] = wait_for(lambda: usage(), 20, "the invocation to be counted")
        assert (month["invocations"], month["errors"]) == (1, 0)
        assert month["executionMs"] >= 1
    assert live.output is not None
    output = live.output.read_text()
    assert "used 100% of their monthly execution time" in output
    assert output.count("used 75% of their monthly execution time") == 1
