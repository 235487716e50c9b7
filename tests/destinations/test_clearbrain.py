"""ClearBrain: each message POSTed as JSON with ClearBrain's type names and Basic auth."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from pydantic import ValidationError

from headwater.destinations.registry import get
from headwater.errors import MessageRejected
from tests.destinations.send import render, send
from tests.support.receiver import Receiver

COMMON: dict[str, Any] = {
    "anonymousId": "1234",
    "userId": "5678",
    "messageId": "022bb90c-bbac-11e4-8dfc-aa07a5b093db",
    "timestamp": "2015-02-23T22:28:55.111Z",
    "receivedAt": "2015-02-23T22:28:55.387Z",
    "context": {"ip": "8.8.8.8", "library": {"name": "analytics.js", "version": "2.11.1"}},
    "integrations": {},
    "version": 2,
    "channel": "browser",
}
PAGE = {**COMMON, "type": "page", "name": "Home", "properties": {"url": "https://example.com/"}}
SCREEN = {**COMMON, "type": "screen", "name": "Home", "properties": {}}
IDENTIFY = {**COMMON, "type": "identify", "traits": {"email": "john.doe@example.com"}}
TRACK = {**COMMON, "type": "track", "event": "Clicked Login Button", "properties": {}}


def test_each_message_is_one_request_with_clearbrain_type_names(receiver: Receiver) -> None:
    settings = {"endpoint": receiver.url + "/segment/v1", "api_key": "cb_live_123"}
    responses = send("clearbrain", settings, [PAGE, SCREEN, IDENTIFY, TRACK])
    assert [r.status_code for r in responses] == [200] * 4
    assert len(receiver.requests) == 4
    for request, message, kind in zip(
        receiver.requests,
        [PAGE, SCREEN, IDENTIFY, TRACK],
        ["pageview", "screenview", "identify", "track"],
        strict=True,
    ):
        assert (request.method, request.path, request.query) == ("POST", "/segment/v1", {})
        assert request.headers["content-type"] == "application/json"
        assert request.headers["user-agent"] == "Segment.io/1.0"
        assert (
            request.headers["authorization"]
            == "Basic " + base64.b64encode(b"cb_live_123:").decode()
        )
        assert request.json() == {**message, "type": kind}


def test_group_and_alias_are_not_clearbrain_calls() -> None:
    definition = get("clearbrain")
    assert definition.methods == {"page", "screen", "identify", "track"}
    settings = {"endpoint": "https://clearbrain.example/segment", "api_key": "k"}
    for kind in ("group", "alias"):
        with pytest.raises(MessageRejected):
            render("clearbrain", settings, [{**COMMON, "type": kind}])


def test_settings_need_endpoint_and_api_key() -> None:
    definition = get("clearbrain")
    assert definition.name == "ClearBrain"
    assert definition.secrets == {"api_key"}
    assert definition.batching is None
    for bad in (
        {},
        {"api_key": "k"},
        {"endpoint": "https://clearbrain.example/segment"},
        {"endpoint": "https://clearbrain.example/segment", "api_key": ""},
        {"endpoint": "not a url", "api_key": "k"},
        {"endpoint": "https://clearbrain.example/segment", "api_key": "k", "x": 1},
    ):
        with pytest.raises(ValidationError):
            definition.parse_settings(bad)
