"""Segment forward: batches to a Tracking API, Segment's size limits, and a real Headwater."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from headwater import __version__
from headwater.destinations.registry import get
from tests.destinations.send import render, send
from tests.support.live import LiveServer, serving
from tests.support.receiver import Receiver


def stored_message(n: int, **extra: Any) -> dict[str, Any]:
    """A message as Headwater stores it after ingest."""
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": f"u{n}",
        "anonymousId": f"a{n}",
        "messageId": f"m-{n}",
        "properties": {"total": 27.5, "n": n},
        "context": {"ip": "203.0.113.7", "library": {"name": "analytics.js", "version": "2.1"}},
        "integrations": {"Mixpanel": False},
        "timestamp": "2024-03-05T10:00:00.249Z",
        "originalTimestamp": "2024-03-05T10:00:00.152Z",
        "sentAt": "2024-03-05T10:00:00.169Z",
        "receivedAt": "2024-03-05T10:00:00.266Z",
        "version": 2,
        "channel": "browser",
        **extra,
    }


def forwarded(n: int, **extra: Any) -> dict[str, Any]:
    message = stored_message(n, **extra)
    for key in ("originalTimestamp", "sentAt", "receivedAt", "version"):
        del message[key]
    return message


def test_messages_go_in_one_batch_with_basic_auth(receiver: Receiver) -> None:
    receiver.default.body = b'{"success":true}'
    identify = stored_message(2, type="identify", traits={"plan": "pro"})
    del identify["event"]
    responses = send(
        "segment",
        {"write_key": "WK_target", "endpoint": receiver.url},
        [stored_message(1), identify],
    )
    assert [(r.status_code, r.json()) for r in responses] == [(200, {"success": True})]
    [request] = receiver.requests
    assert (request.method, request.path, request.query) == ("POST", "/v1/batch", {})
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"WK_target:").decode()
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == f"headwater/{__version__}"
    expected_identify = forwarded(2, type="identify", traits={"plan": "pro"})
    del expected_identify["event"]
    assert request.json() == {"batch": [forwarded(1), expected_identify]}


def test_endpoint_path_and_default() -> None:
    definition = get("segment")
    [outgoing] = render("segment", {"write_key": "k"}, [stored_message(1)]).outgoing
    assert outgoing.request.url == "https://api.segment.io/v1/batch"
    [outgoing] = render(
        "segment",
        {"write_key": "k", "endpoint": "https://events.eu1.segmentapis.com/"},
        [stored_message(1)],
    ).outgoing
    assert outgoing.request.url == "https://events.eu1.segmentapis.com/v1/batch"
    assert definition.batching is not None
    assert definition.batching.max_events == 2500


def test_batches_stay_under_500_kb() -> None:
    # 20 messages of about 30 KB: 600 KB in all.
    messages = [stored_message(n, properties={"blob": "x" * 30_000, "n": n}) for n in range(20)]
    rendered = render("segment", {"write_key": "k"}, messages)
    assert rendered.rejected == {}
    sizes = [len(o.request.body or b"") for o in rendered.outgoing]
    assert len(sizes) == 2
    assert all(size <= 500_000 for size in sizes)
    assert [o.messages for o in rendered.outgoing] == [tuple(range(16)), tuple(range(16, 20))]
    batches = [json.loads(o.request.body or b"")["batch"] for o in rendered.outgoing]
    assert [m["messageId"] for b in batches for m in b] == [f"m-{n}" for n in range(20)]


def test_batches_hold_at_most_2500_messages() -> None:
    messages = [
        {"type": "track", "event": "E", "userId": "u", "messageId": f"m{n}"} for n in range(2600)
    ]
    rendered = render("segment", {"write_key": "k"}, messages)
    assert [len(o.messages) for o in rendered.outgoing] == [2500, 100]
    assert rendered.outgoing[1].messages[0] == 2500
    assert len(json.loads(rendered.outgoing[1].request.body or b"")["batch"]) == 100


def test_a_message_over_32_kb_is_rejected_the_others_sent() -> None:
    big = stored_message(1, properties={"blob": "x" * (32 * 1024)})
    fits = stored_message(2, properties={"blob": "x" * 32_000})
    rendered = render("segment", {"write_key": "k"}, [big, fits, stored_message(3)])
    assert [o.messages for o in rendered.outgoing] == [(1, 2)]
    assert list(rendered.rejected) == [0]
    assert rendered.rejected[0][0] == "MESSAGE_REJECTED"
    assert "32768" in rendered.rejected[0][1]


def test_settings_names_and_secrets() -> None:
    definition = get("segment")
    assert definition.name == "Segment"
    assert definition.aliases == ("Segment Connections",)
    assert "Segment.io" not in definition.integration_names
    assert definition.secrets == {"write_key", "public_api_token"}
    for bad in (
        {},
        {"write_key": ""},
        {"write_key": "k", "endpoint": "nope"},
        {"write_key": "k", "writeKey": "k"},
    ):
        with pytest.raises(ValidationError):
            definition.parse_settings(bad)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with serving(tmp_path_factory.mktemp("forward-target")) as server:
        yield server


@pytest.mark.live
def test_forwarded_events_arrive_in_another_headwater(live: LiveServer) -> None:
    run = uuid.uuid4().hex
    track = stored_message(
        1, userId=f"user-{run}", messageId=f"{run}-track", timestamp="2023-11-14T08:30:00.123Z"
    )
    page = {
        "type": "page",
        "name": "Pricing",
        "anonymousId": f"anon-{run}",
        "userId": f"user-{run}",
        "messageId": f"{run}-page",
        "properties": {"url": "https://example.com/pricing", "title": "Pricing"},
        "context": {"library": {"name": "analytics-python", "version": "2.3.0"}},
        "timestamp": "2023-11-14T08:31:00.000Z",
        "originalTimestamp": "2023-11-14T08:30:59.000Z",
        "sentAt": "2023-11-14T08:31:00.500Z",
        "receivedAt": "2023-11-14T08:31:01.500Z",
    }
    responses = send("segment", {"write_key": "WK_web", "endpoint": live.url}, [track, page])
    assert [(r.status_code, r.json()) for r in responses] == [(200, {"success": True})]

    arrived = {e["messageId"]: e for e in live.events() if e.get("userId") == f"user-{run}"}
    assert sorted(arrived) == [f"{run}-page", f"{run}-track"]
    for sent in (track, page):
        event = arrived[sent["messageId"]]
        assert event["type"] == sent["type"]
        assert event["properties"] == sent["properties"]
        assert event["timestamp"] == sent["timestamp"]  # the stored event time survives
        assert event["originalTimestamp"] == sent["timestamp"]
        assert "sentAt" not in event
        assert event["receivedAt"] != sent["receivedAt"]  # set by the receiving side
    assert arrived[f"{run}-track"]["event"] == "Order Completed"
    assert arrived[f"{run}-track"]["context"]["ip"] == "203.0.113.7"
    assert arrived[f"{run}-track"]["channel"] == "browser"


@pytest.mark.live
def test_an_unknown_write_key_is_refused_by_headwater(live: LiveServer) -> None:
    responses = send(
        "segment", {"write_key": "WK_nobody", "endpoint": live.url}, [stored_message(1)]
    )
    assert [r.status_code for r in responses] == [401]  # discarded, not retried
