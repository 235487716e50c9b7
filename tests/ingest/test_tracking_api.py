"""The Tracking API over HTTP against a live server: Segment's acceptance checks AC-001…AC-026.

Each test tags its messages with a unique id and reads back what the event log holds.
"""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.support.live import LiveServer

pytestmark = pytest.mark.live  # every test here starts a headwater server process


def uid() -> str:
    return uuid.uuid4().hex


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def stored(server: LiveServer, user_id: str) -> list[dict[str, Any]]:
    return [e for e in server.events() if e.get("userId") == user_id]


def dropped(server: LiveServer, marker: str) -> list[dict[str, Any]]:
    return [d for d in server.dropped() if marker in json.dumps(d["message"])]


def basic(key: str, colon: bool = True) -> dict[str, str]:
    raw = f"{key}:" if colon else key
    return {"Authorization": "Basic " + base64.b64encode(raw.encode()).decode()}


def test_ac001_track_with_write_key_in_body(server: LiveServer, client: httpx.Client) -> None:
    user = uid()
    before = datetime.now(UTC)
    body = {
        "userId": user,
        "event": "Item Purchased",
        "properties": {"name": "Leap to Conclusions Mat", "revenue": 14.99},
        "context": {"ip": "24.5.68.47"},
        "timestamp": "2012-12-02T00:30:12.984Z",
        "writeKey": "WK_web",
    }
    response = client.post("/v1/track", json=body)
    assert response.status_code == 200
    assert response.json() == {"success": True}
    [event] = stored(server, user)
    assert event["type"] == "track"
    assert event["event"] == "Item Purchased"
    assert event["properties"] == {"name": "Leap to Conclusions Mat", "revenue": 14.99}
    assert before - timedelta(seconds=1) <= ts(event["receivedAt"]) <= datetime.now(UTC)
    assert 0 < len(event["messageId"]) <= 100
    assert event["originalTimestamp"] == "2012-12-02T00:30:12.984Z"
    assert event["timestamp"] == "2012-12-02T00:30:12.984Z"
    assert event["context"]["ip"] == "24.5.68.47"
    assert "writeKey" not in json.dumps(server.records())


def test_ac002_basic_auth_with_and_without_colon(server: LiveServer, client: httpx.Client) -> None:
    assert base64.b64encode(b"abc123:") == b"YWJjMTIzOg=="
    first, second = uid(), uid()
    message = {"event": "Item Purchased", "properties": {}}
    r1 = client.post(
        "/v1/track",
        json={**message, "userId": first},
        headers={"Authorization": "Basic YWJjMTIzOg=="},
    )
    r2 = client.post(
        "/v1/track", json={**message, "userId": second}, headers={"Authorization": "Basic YWJjMTIz"}
    )
    assert (r1.status_code, r2.status_code) == (200, 200)
    assert len(stored(server, first)) == 1
    assert len(stored(server, second)) == 1


def test_missing_write_key_is_400_and_unknown_is_401(client: httpx.Client) -> None:
    missing = client.post("/v1/track", json={"userId": "u", "event": "E"})
    assert missing.status_code == 400
    assert set(missing.json()) == {"code", "message"}
    unknown = client.post("/v1/track", json={"userId": "u", "event": "E"}, headers=basic("nope"))
    assert unknown.status_code == 401
    assert unknown.json()["code"] == "unknown_write_key"


def test_ac003_ac004_size_limits(client: httpx.Client) -> None:
    big_single = {"userId": "u", "traits": {"blob": "x" * (32 * 1024)}}
    response = client.post("/v1/identify", json=big_single, headers=basic("WK_web"))
    assert response.status_code == 400
    assert set(response.json()) == {"code", "message"}
    item = {"type": "track", "userId": "u", "event": "E", "properties": {"p": "x" * 20_000}}
    big_batch = {"batch": [item] * 26}  # ~520 KB
    response = client.post("/v1/batch", json=big_batch, headers=basic("WK_web"))
    assert response.status_code == 400
    # Just under the single-call limit is fine.
    ok = {"userId": uid(), "traits": {"blob": "x" * (31 * 1024)}}
    assert client.post("/v1/identify", json=ok, headers=basic("WK_web")).status_code == 200


def test_ac005_items_past_2500_are_dropped(server: LiveServer, client: httpx.Client) -> None:
    user = uid()
    batch = [
        {"type": "track", "userId": user, "event": "E", "messageId": f"{user}-{i}"}
        for i in range(2501)
    ]
    response = client.post("/v1/batch", json={"batch": batch}, headers=basic("WK_web"))
    assert response.status_code == 200
    kept = stored(server, user)
    assert len(kept) == 2500
    assert f"{user}-2500" not in {e["messageId"] for e in kept}
    [extra] = dropped(server, f"{user}-2500")
    assert extra["reason"] == "too_many_messages"


def test_ac006_invalid_json_is_400(client: httpx.Client) -> None:
    response = client.post("/v1/track", content=b'{"userId":"a",', headers=basic("WK_web"))
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_json"
    assert body["message"]


def test_ac007_to_ac010_discard_codes(server: LiveServer, client: httpx.Client) -> None:
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("/v1/track", {"event": "X"}, "no_user_anon_id"),
        ("/v1/track", {"userId": "u"}, "event_not_defined"),
        ("/v1/track", {"userId": "u", "event": 123}, "event_not_string"),
        ("/v1/identify", {"userId": "u", "traits": "vip"}, "traits_not_object"),
        ("/v1/track", {"userId": "u", "event": "E", "properties": [1, 2]}, "properties_not_object"),
        ("/v1/page", {"userId": "u", "name": ""}, "name_not_string"),
        ("/v1/page", {"userId": "u", "category": 5}, "category_not_string"),
    ]
    for path, message, code in cases:
        marker = uid()
        response = client.post(
            path, json={**message, "context": {"marker": marker}}, headers=basic("WK_web")
        )
        assert response.status_code == 200, (path, message)
        [entry] = dropped(server, marker)
        assert entry["reason"] == code, (message, entry)
    user = uid()
    assert (
        client.post("/v1/page", json={"userId": user}, headers=basic("WK_web")).status_code == 200
    )
    assert len(stored(server, user)) == 1  # a page without a name is fine


def test_ac011_ac012_batch_discards(server: LiveServer, client: httpx.Client) -> None:
    assert client.post("/v1/batch", json={"batch": []}, headers=basic("WK_web")).status_code == 200
    assert any(d["reason"] == "empty_batch" for d in server.dropped())
    user, marker = uid(), uid()
    batch = [
        {"type": "track", "userId": user, "event": "Good"},
        {"type": "track", "event": "Bad", "properties": {"marker": marker}},
    ]
    assert (
        client.post("/v1/batch", json={"batch": batch}, headers=basic("WK_web")).status_code == 200
    )
    assert [e["event"] for e in stored(server, user)] == ["Good"]
    [entry] = dropped(server, marker)
    assert entry["reason"] == "no_user_anon_id"
    [record] = [r for r in server.records() if any(e.get("userId") == user for e in r["events"])]
    assert record["flags"] == ["multi_user_error"]


def test_ac013_text_plain_short_route(server: LiveServer, client: httpx.Client) -> None:
    user = uid()
    body = json.dumps(
        {
            "userId": user,
            "event": "Clicked",
            "writeKey": "WK_web",
            "context": {"library": {"name": "analytics.js", "version": "next-1.70.0"}},
        }
    )
    response = client.post("/v1/t", content=body, headers={"Content-Type": "text/plain"})
    assert response.status_code == 200
    [event] = stored(server, user)
    assert event["type"] == "track"


def test_ac014_batch_sent_at_and_shared_received_at(
    server: LiveServer, client: httpx.Client
) -> None:
    user = uid()
    body = {
        "writeKey": "WK_web",
        "sentAt": "2024-01-01T00:00:10.000Z",
        "batch": [
            {"type": "track", "userId": user, "event": "A"},
            {"type": "page", "userId": user, "name": "B"},
        ],
    }
    assert (
        client.post(
            "/v1/b", content=json.dumps(body), headers={"Content-Type": "text/plain"}
        ).status_code
        == 200
    )
    events = stored(server, user)
    assert len(events) == 2
    assert {e["sentAt"] for e in events} == {"2024-01-01T00:00:10.000Z"}
    assert len({e["receivedAt"] for e in events}) == 1


def test_ac015_batch_context_and_integrations_merge(
    server: LiveServer, client: httpx.Client
) -> None:
    user = uid()
    body = {
        "context": {"device": {"type": "phone", "name": "Apple iPhone 6"}},
        "integrations": {"All": False, "Mixpanel": True},
        "batch": [
            {
                "type": "identify",
                "userId": user,
                "context": {"locale": "en-US"},
                "integrations": {"Salesforce": True},
            }
        ],
    }
    assert client.post("/v1/batch", json=body, headers=basic("WK_web")).status_code == 200
    [event] = stored(server, user)
    assert event["context"]["device"] == {"type": "phone", "name": "Apple iPhone 6"}
    assert event["context"]["locale"] == "en-US"
    assert event["integrations"] == {"All": False, "Mixpanel": True, "Salesforce": True}


def test_ac016_clock_skew_correction(server: LiveServer, client: httpx.Client) -> None:
    user = uid()
    body = {
        "userId": user,
        "event": "Course Clicked",
        "timestamp": "2015-12-12T19:11:01.152Z",
        "sentAt": "2015-12-12T19:11:01.169Z",
    }
    assert client.post("/v1/track", json=body, headers=basic("WK_web")).status_code == 200
    [event] = stored(server, user)
    assert event["originalTimestamp"] == "2015-12-12T19:11:01.152Z"
    # timestamp = receivedAt − (sentAt − originalTimestamp) = receivedAt − 17 ms
    assert ts(event["receivedAt"]) - ts(event["timestamp"]) == timedelta(milliseconds=17)


def test_ac017_client_clock_ahead(server: LiveServer, client: httpx.Client) -> None:
    ahead = (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    user = uid()
    body = {"userId": user, "event": "E", "timestamp": ahead, "sentAt": ahead}
    assert client.post("/v1/track", json=body, headers=basic("WK_web")).status_code == 200
    [event] = stored(server, user)
    assert abs(ts(event["timestamp"]) - ts(event["receivedAt"])) < timedelta(milliseconds=2)
    # Only the event time in the future, the sending clock right: accepted as is.
    user = uid()
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    body = {"userId": user, "event": "E", "timestamp": ahead, "sentAt": now}
    assert client.post("/v1/track", json=body, headers=basic("WK_web")).status_code == 200
    [event] = stored(server, user)
    assert ts(event["timestamp"]) > datetime.now(UTC) + timedelta(minutes=50)


def test_ac018_no_timestamps(server: LiveServer, client: httpx.Client) -> None:
    user = uid()
    assert (
        client.post(
            "/v1/track", json={"userId": user, "event": "E"}, headers=basic("WK_web")
        ).status_code
        == 200
    )
    [event] = stored(server, user)
    assert event["timestamp"] == event["receivedAt"]


def test_ac020_no_message_id_gets_one_of_its_own(server: LiveServer, client: httpx.Client) -> None:
    """Same payload, no messageId: both kept, each with its own id. (AC-019, the same
    messageId twice, is the dedup stage's: tests/pipeline/test_dedup_stage.py.)"""
    user = uid()
    for _ in range(2):
        assert (
            client.post(
                "/v1/track", json={"userId": user, "event": "E"}, headers=basic("WK_web")
            ).status_code
            == 200
        )
    events = stored(server, user)
    assert len(events) == 2
    assert events[0]["messageId"] != events[1]["messageId"]


def test_ac022_client_ip(server: LiveServer, client: httpx.Client) -> None:
    forwarded = {"X-Forwarded-For": "203.0.113.7", **basic("WK_web")}
    browser, server_lib, direct, v6 = uid(), uid(), uid(), uid()
    ajs = {"library": {"name": "analytics.js", "version": "2.11.1"}}
    client.post(
        "/v1/track", json={"userId": browser, "event": "E", "context": ajs}, headers=forwarded
    )
    client.post(
        "/v1/track",
        json={
            "userId": server_lib,
            "event": "E",
            "context": {"library": {"name": "analytics-python"}},
        },
        headers=forwarded,
    )
    client.post(
        "/v1/track",
        json={"userId": direct, "event": "E", "context": {"direct": True}},
        headers=forwarded,
    )
    client.post(
        "/v1/track",
        json={"userId": v6, "event": "E", "context": ajs},
        headers={"X-Forwarded-For": "2001:db8::1", **basic("WK_web")},
    )
    assert stored(server, browser)[0]["context"]["ip"] == "203.0.113.7"
    assert "ip" not in stored(server, server_lib)[0]["context"]
    assert stored(server, direct)[0]["context"]["ip"] == "203.0.113.7"
    assert "ip" not in stored(server, v6)[0]["context"]


def test_ac023_pixel(server: LiveServer, client: httpx.Client) -> None:
    user = uid()
    message = {
        "writeKey": "WK_web",
        "userId": user,
        "event": "Email Opened",
        "properties": {"subject": "The Electric Daily", "email": "jane.kim@example.com"},
    }
    data = base64.b64encode(json.dumps(message).encode()).decode()
    response = client.get("/v1/pixel/track", params={"data": data})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/gif"
    assert response.content.startswith(b"GIF89a")
    [event] = stored(server, user)
    assert event["event"] == "Email Opened"
    assert event["properties"]["subject"] == "The Electric Daily"
    # Dotted query parameters work too.
    user = uid()
    response = client.get(
        "/v1/pixel/track",
        params={
            "writeKey": "WK_web",
            "userId": user,
            "event": "Email Opened",
            "properties.subject": "Hi",
        },
    )
    assert response.status_code == 200
    assert stored(server, user)[0]["properties"] == {"subject": "Hi"}
    before = len(server.records())
    garbage = client.get("/v1/pixel/track", params={"data": "%%%not-base64"})
    assert garbage.status_code == 200
    assert garbage.content.startswith(b"GIF89a")
    assert len(server.records()) == before


def test_ac025_disabled_source(server: LiveServer, client: httpx.Client) -> None:
    marker = uid()
    response = client.post(
        "/v1/track", json={"userId": marker, "event": "E"}, headers=basic("WK_off")
    )
    assert response.status_code == 200
    assert stored(server, marker) == []
    [entry] = dropped(server, marker)
    assert entry["reason"] == "source_disabled"


def test_ac026_gzip_body(server: LiveServer, client: httpx.Client) -> None:
    user = uid()
    body = gzip.compress(
        json.dumps({"batch": [{"type": "track", "userId": user, "event": "Zipped"}]}).encode()
    )
    response = client.post(
        "/v1/batch",
        content=body,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json", **basic("WK_web")},
    )
    assert response.status_code == 200
    assert stored(server, user)[0]["event"] == "Zipped"
    broken = client.post(
        "/v1/batch", content=b"not gzip", headers={"Content-Encoding": "gzip", **basic("WK_web")}
    )
    assert broken.status_code == 400


def test_cors_preflight_and_headers(client: httpx.Client) -> None:
    origin = "https://shop.example.com"
    preflight = client.options(
        "/v1/t",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code in (200, 204)
    assert preflight.headers["access-control-allow-origin"] == origin
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert preflight.headers["access-control-allow-headers"] == "content-type"
    response = client.post(
        "/v1/t",
        content=json.dumps({"userId": "u", "event": "E", "writeKey": "WK_web"}),
        headers={"Origin": origin, "Content-Type": "text/plain"},
    )
    assert response.headers["access-control-allow-origin"] == origin


def test_ac171_settings_document(server: LiveServer, client: httpx.Client) -> None:
    response = client.get("/v1/projects/WK_web/settings")
    assert response.status_code == 200
    document = response.json()
    assert set(document["integrations"]) == {"Segment.io"}
    segment = document["integrations"]["Segment.io"]
    assert segment["apiKey"] == "WK_web"
    assert segment["apiHost"] == f"127.0.0.1:{server.port}/v1"
    assert client.get("/v1/projects/unknown/settings").status_code == 404


def test_clevertap_export_ingests_like_any_client(server: LiveServer, client: httpx.Client) -> None:
    """CleverTap pushes its system events as a partner with the source's write key."""
    user, anonymous = uid(), uid()
    names = ["Notification Sent", "Notification Viewed", "App Launched", "UTM Visited"]
    batch = [
        {
            "type": "track",
            "userId": user,
            "event": name,
            "properties": {"campaign_id": 1700000000, "channel": "push"},
            "timestamp": "2026-11-20T08:00:00.000Z",
            "context": {"library": {"name": "CleverTap"}},
        }
        for name in names
    ] + [{"type": "identify", "anonymousId": anonymous, "traits": {"email": "a@example.com"}}]
    response = client.post("/v1/import", json={"batch": batch}, headers=basic("WK_web"))
    assert response.status_code == 200
    assert [e["event"] for e in stored(server, user)] == names
    assert (
        next(e for e in server.events() if e.get("anonymousId") == anonymous)["type"] == "identify"
    )


def test_unknown_route_and_health(client: httpx.Client) -> None:
    assert client.post("/v1/nope", json={}).status_code == 404
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").status_code == 200
    metrics = client.get("/metrics").text
    assert "headwater_events_accepted_total" in metrics
    assert "headwater_log_commit_seconds_bucket" in metrics
