"""Segment's own Python SDK (segment-analytics-python) pointed at a live Headwater."""

from __future__ import annotations

import uuid

import pytest
from segment.analytics import Client

from tests.support.live import LiveServer

pytestmark = pytest.mark.live  # every test here starts a headwater server process


def test_every_call_type_with_gzip_is_stored_once(server: LiveServer) -> None:
    errors: list[Exception] = []
    client = Client(
        write_key="WK_web",
        host=server.url,
        gzip=True,
        on_error=lambda error, _batch: errors.append(error),
        max_retries=1,
    )
    user = f"sdk-{uuid.uuid4().hex}"
    client.identify(user, {"email": "peter@example.com", "plan": "premium", "logins": 5})
    client.track(
        user,
        "Order Completed",
        {"order_id": "o-1", "revenue": 19.99},
        context={"app": {"name": "backend"}},
    )
    client.page(user, category="Docs", name="Intro", properties={"url": "https://x.test/intro"})
    client.screen(user, name="Home", properties={"variation": "blue"})
    client.group(user, "group-1", {"name": "Initech", "employees": 329})
    client.alias(f"{user}-previous", user)
    client.flush()
    client.join()
    assert errors == []

    events = [e for e in server.events() if e.get("userId") == user]
    by_type = {e["type"]: e for e in events}
    assert sorted(by_type) == ["alias", "group", "identify", "page", "screen", "track"]
    assert len(events) == 6  # each exactly once
    assert by_type["identify"]["traits"] == {
        "email": "peter@example.com",
        "plan": "premium",
        "logins": 5,
    }
    track = by_type["track"]
    assert track["event"] == "Order Completed"
    assert track["properties"] == {"order_id": "o-1", "revenue": 19.99}
    assert track["context"]["app"] == {"name": "backend"}
    assert track["context"]["library"]["name"] == "analytics-python"
    assert "ip" not in track["context"]  # a server library: no IP is added
    assert by_type["page"]["name"] == "Intro"
    assert by_type["page"]["category"] == "Docs"
    assert by_type["screen"]["properties"] == {"variation": "blue"}
    assert by_type["group"]["groupId"] == "group-1"
    assert by_type["group"]["traits"]["employees"] == 329
    assert by_type["alias"]["previousId"] == f"{user}-previous"
    sent_ids = {e["messageId"] for e in events}
    assert len(sent_ids) == 6
    for event in events:
        assert event["timestamp"] and event["receivedAt"] and event["sentAt"]
