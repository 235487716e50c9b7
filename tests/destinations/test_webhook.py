"""Webhooks: each message POSTed as JSON to every URL, headers added, body signed."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from pydantic import ValidationError

from headwater.destinations.registry import get
from tests.destinations.send import send
from tests.support.receiver import Receiver

TRACK = {
    "type": "track",
    "event": "Order Completed",
    "userId": "u1",
    "messageId": "m1",
    "properties": {"total": 27.5},
    "timestamp": "2024-03-05T10:00:00.000Z",
}


def test_posts_each_message_as_json_signed_with_the_shared_secret(receiver: Receiver) -> None:
    settings = {
        "urls": [receiver.url + "/a", receiver.url + "/b"],
        "headers": {"X-Team": "growth"},
        "shared_secret": "s3cret",
    }
    responses = send("webhook", settings, [TRACK])
    assert [r.status_code for r in responses] == [200, 200]
    first, second = receiver.requests
    assert (first.method, first.path, second.path) == ("POST", "/a", "/b")
    assert first.json() == TRACK
    assert first.headers["content-type"] == "application/json"
    assert first.headers["user-agent"] == "Segment.io/1.0"
    assert first.headers["x-team"] == "growth"
    expected = hmac.new(b"s3cret", first.body, hashlib.sha1).hexdigest()
    assert first.headers["x-signature"] == expected


def test_no_signature_without_a_secret(receiver: Receiver) -> None:
    send("webhook", {"url": receiver.url + "/hook"}, [TRACK])
    assert "x-signature" not in receiver.requests[0].headers


def test_settings_need_a_url_and_at_most_five() -> None:
    definition = get("webhook")
    with pytest.raises(ValidationError):
        definition.parse_settings({})
    with pytest.raises(ValidationError):
        definition.parse_settings({"urls": [f"http://127.0.0.1/{i}" for i in range(6)]})
    with pytest.raises(ValidationError):
        definition.parse_settings({"url": "http://127.0.0.1/h", "unknown": 1})
    assert definition.secrets == {"shared_secret", "headers"}
