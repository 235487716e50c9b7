"""Engage end to end on a running server (SQLite and PostgreSQL): the issue's
``headwater.yaml``, events on the Tracking API, the audience's Identify and ``Audience Entered``
at a webhook on the space's Engage source (A-UE-37), the values on the Profile API, and the member
leaving when the clock moves past the window with no new event."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.live import LiveServer
from tests.support.receiver import Receiver
from tests.support.waiting import wait_for

TOKEN = "profile-token-0123456789abcdef"
DAY = 86_400

pytestmark = pytest.mark.live


def config(url: str) -> str:
    return f"""\
workspace: test
sources:
  - name: web
    write_key: WK_web
spaces:
  - name: main
    sources: [web]
    access_tokens:
      - {{name: site, token: "{TOKEN}"}}
computed_traits:
  - space: main
    name: Total Revenue 180 Days
    definition: "event('Order Completed').within(180 days).sum(property('revenue'))"
audiences:
  - space: main
    name: Order Completed Last 30days
    definition: "event('Order Completed').within(30 days).count() >= 1"
    destinations:
      - {{name: engage-hook, send_track: true, send_identify: true}}
destinations:
  - name: engage-hook
    type: webhook
    source: main-engage
    settings: {{url: "{url}/engage"}}
"""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    try:
        yield found
    finally:
        found.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path: Path, receiver: Receiver
) -> Iterator[tuple[LiveServer, Path]]:
    path = tmp_path / "headwater.yaml"
    path.write_text(config(receiver.url))
    offset = tmp_path / "clock-offset"
    offset.write_text("0")
    database = request.getfixturevalue("pg_database") if request.param == "postgresql" else None
    live = LiveServer(
        data_dir=tmp_path / "data",
        config=path,
        role="all",
        database=database,
        env={"HEADWATER_CLOCK_OFFSET_FILE": str(offset)},
    )
    live.start(timeout=60)
    try:
        yield live, offset
    finally:
        live.stop()


def _summary(body: dict[str, Any]) -> tuple[Any, ...]:
    values = body.get("traits") if body["type"] == "identify" else body.get("properties")
    return (body["type"], body.get("event"), body.get("userId"), values)


def test_a_member_is_sent_to_the_engage_destination_and_leaves_when_time_passes(
    server: tuple[LiveServer, Path], receiver: Receiver
) -> None:
    live, offset = server
    key = "order_completed_last_30days"
    answer = httpx.post(
        f"{live.url}/v1/track",
        json={"userId": "u1", "event": "Order Completed", "properties": {"revenue": 450}},
        auth=("WK_web", ""),
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    entered = receiver.wait_for(2, timeout=30)
    bodies = sorted((r.json() for r in entered), key=lambda b: b["type"])
    assert [_summary(b) for b in bodies] == [
        ("identify", None, "u1", {key: True}),
        ("track", "Audience Entered", "u1", {"audience_key": key, key: True}),
    ]
    for body in bodies:
        personas = body["context"]["personas"]
        assert (personas["computation_class"], personas["computation_key"]) == ("audience", key)
        assert body["messageId"].startswith("personas_")

    def traits(trait_class: str) -> dict[str, Any]:
        found = httpx.get(
            f"{live.url}/v1/spaces/main/collections/users/profiles/user_id:u1/traits",
            params={"class": trait_class},
            auth=(TOKEN, ""),
            timeout=10,
        )
        return dict(found.json().get("traits") or {}) if found.status_code == 200 else {}

    wait_for(lambda: traits("audience") == {key: True}, 20, "the audience on the profile")
    assert traits("computed_trait") == {"total_revenue_180_days": 450}

    offset.write_text(str(31 * DAY))  # no new event: the order leaves the 30-day window
    exited = receiver.wait_for(4, timeout=60)[2:]
    bodies = sorted((r.json() for r in exited), key=lambda b: b["type"])
    assert [_summary(b) for b in bodies] == [
        ("identify", None, "u1", {key: False}),
        ("track", "Audience Exited", "u1", {"audience_key": key, key: False}),
    ]
    wait_for(lambda: traits("audience") == {key: False}, 20, "the exit on the profile")
