"""Engage end to end on a running server (SQLite and PostgreSQL): the issue's
``headwater.yaml``, events on the Tracking API, the audience's Identify and ``Audience Entered``
at a webhook on the space's Engage source (A-UE-37), the values on the Profile API, and the member
leaving when the clock moves past the window with no new event."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.live import ADMIN_TOKEN, LiveServer
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


def test_a38_a_batch_audience_reaches_the_destination_after_a_profiles_sync(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A-UE-38 on a running server (SQLite, the embedded DuckDB warehouse): a funnel audience
    (batch-only) made after the events waits for a Profiles Sync load, which it asks for, and
    then sends one ``Audience Entered`` per member — and nothing for the one who ordered."""
    path = tmp_path / "headwater.yaml"
    head = config(receiver.url).split("computed_traits:")[0]
    head = head.replace(
        "    sources: [web]\n", "    sources: [web]\n    profiles_sync: {warehouse: default}\n"
    )
    tail = "destinations:" + config(receiver.url).split("destinations:")[-1]
    path.write_text(head + tail)
    live = LiveServer(data_dir=tmp_path / "data", config=path, role="all")
    live.start(timeout=60)
    try:
        for user, event in (
            ("u1", "Cart Viewed"),
            ("u2", "Cart Viewed"),
            ("u2", "Order Completed"),
            ("u3", "Cart Viewed"),
        ):
            answer = httpx.post(
                f"{live.url}/v1/track",
                json={"userId": user, "event": event},
                auth=("WK_web", ""),
                timeout=10,
            )
            assert answer.status_code == 200, answer.text

        def resolved() -> bool:
            found = httpx.get(
                f"{live.url}/v1/spaces/main/collections/users/profiles/user_id:u3/events",
                auth=(TOKEN, ""),
                timeout=10,
            )
            return found.status_code == 200 and bool(found.json().get("data"))

        wait_for(resolved, 30, "the events resolved")
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        made = httpx.post(
            f"{live.url}/api/v1/spaces/main/audiences",
            headers=admin,
            json={
                "name": "Abandoned Cart",
                "definition": {
                    "query": "event('Cart Viewed').within(30 days).where(event('Order "
                    "Completed').within(parent: 1 days).count() = 0).count() >= 1"
                },
                "destinations": [{"name": "engage-hook", "sendTrack": True, "sendIdentify": False}],
            },
            timeout=10,
        )
        assert made.status_code == 201, made.text
        assert made.json()["data"]["audience"]["status"] == "Preparing"
        entered = receiver.wait_for(2, timeout=90)
        assert sorted((r.json()["event"], r.json()["userId"]) for r in entered) == [
            ("Audience Entered", "u1"),
            ("Audience Entered", "u3"),
        ]

        def status() -> str:
            found = httpx.get(
                f"{live.url}/api/v1/spaces/main/audiences/abandoned_cart", headers=admin, timeout=10
            )
            return str(found.json()["data"]["audience"]["status"])

        wait_for(lambda: status() == "Live", 20, "the audience Live")
        time.sleep(2)  # the later passes and runs send nothing more
        assert len(receiver.requests) == 2
    finally:
        live.stop()
