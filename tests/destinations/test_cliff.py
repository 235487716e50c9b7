"""Cliff: each message POSTed as JSON with Cliff's type names; the API key is optional."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from pydantic import ValidationError

from headwater.destinations.registry import get
from headwater.errors import MessageRejected
from tests.destinations.send import render, send
from tests.support.receiver import Answer, Receiver

COMMON: dict[str, Any] = {
    "anonymousId": "anon-1",
    "userId": "u1",
    "messageId": "m1",
    "timestamp": "2024-03-05T10:00:00.000Z",
    "receivedAt": "2024-03-05T10:00:00.120Z",
    "context": {"library": {"name": "analytics-python", "version": "2.3.0"}},
    "integrations": {"Cliff": True},
}
MESSAGES = [
    {
        **COMMON,
        "type": "track",
        "event": "Login Button Clicked",
        "properties": {"user": {"email": "ann@example.com"}},
    },
    {**COMMON, "type": "page", "name": "Pricing", "properties": {}},
    {**COMMON, "type": "screen", "name": "Home", "properties": {}},
    {**COMMON, "type": "identify", "traits": {"email": "ann@example.com"}},
    {
        **COMMON,
        "type": "group",
        "groupId": "0e8c78ea9d97a7b8185e8632",
        "traits": {
            "name": "Initech",
            "industry": "Technology",
            "employees": 329,
            "plan": "enterprise",
            "total billed": 830,
        },
    },
]


def test_messages_with_cliff_type_names_and_basic_auth(receiver: Receiver) -> None:
    settings = {"endpoint": receiver.url + "/hooks/segment", "api_key": "cliff-key"}
    send("cliff", settings, MESSAGES)
    kinds = ["track", "pageview", "screenview", "identify", "group"]
    assert [r.json() for r in receiver.requests] == [
        {**m, "type": k} for m, k in zip(MESSAGES, kinds, strict=True)
    ]
    for request in receiver.requests:
        assert (request.method, request.path) == ("POST", "/hooks/segment")
        assert request.headers["content-type"] == "application/json"
        assert request.headers["user-agent"] == "Segment.io/1.0"
        assert (
            request.headers["authorization"] == "Basic " + base64.b64encode(b"cliff-key:").decode()
        )


def test_no_api_key_no_authorization_header(receiver: Receiver) -> None:
    receiver.default = Answer(status=501, body=b'{"message":"unsupported"}')
    responses = send("cliff", {"endpoint": receiver.url + "/hooks/segment"}, MESSAGES[:1])
    assert [r.status_code for r in responses] == [501]  # the engine discards 501
    assert "authorization" not in receiver.requests[0].headers


def test_alias_is_not_a_cliff_call_and_settings() -> None:
    definition = get("cliff")
    assert definition.name == "Cliff"
    assert definition.methods == {"track", "page", "screen", "identify", "group"}
    assert definition.secrets == {"api_key"}
    with pytest.raises(MessageRejected):
        render(
            "cliff",
            {"endpoint": "https://cliff.example/segment"},
            [{**COMMON, "type": "alias", "previousId": "anon-1"}],
        )
    definition.parse_settings({"endpoint": "https://cliff.example/segment"})
    for bad in ({}, {"api_key": "k"}, {"endpoint": "https://cliff.example/s", "apiKey": "k"}):
        with pytest.raises(ValidationError):
            definition.parse_settings(bad)
