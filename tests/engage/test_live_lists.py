"""List destinations end to end on a running server: an audience connected to Segment's
``actions:iterable-lists`` (an Actions destination with ``audienceConfig``) through
``headwater.yaml`` and the REST API. The destination's own code creates the list with
``createAudience`` and adds and removes members with its ``syncAudience`` action, each reading
``context.personas.external_audience_id`` and ``audience_settings``; a loopback server stands
in for Iterable's API and checks its published requests (``GET``/``POST /api/lists``, ``POST
/api/lists/subscribe`` and ``/unsubscribe``, the ``Api-Key`` header)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.live import ADMIN_TOKEN, LiveServer
from tests.support.receiver import Answer, Received, Receiver
from tests.support.waiting import wait_for

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
DAY = 86_400
KEY = "big_spenders"
API_KEY = "iterable-key-1"

pytestmark = pytest.mark.live

SYNC = """
    mappings:
      - name: Sync Audience
        enabled: true
        trigger: type = "identify"
        action: syncAudience
        fields:
          email: {"@path": "$.traits.email"}
          userId: {"@path": "$.userId"}
          traitsOrProperties: {"@path": "$.traits"}
          segmentAudienceKey: {"@path": "$.context.personas.computation_key"}
          segmentAudienceId: {"@path": "$.context.personas.external_audience_id"}
"""


def config(url: str) -> str:
    return f"""\
workspace: test
sources:
  - name: web
    write_key: WK_web
spaces:
  - name: main
    sources: [web]
audiences:
  - space: main
    name: Big Spenders
    definition: "event('Order Completed').within(30 days).count() >= 1"
    destinations:
      - name: iterable
        audience_settings: {{updateExistingUsersOnly: true}}
computed_traits:
  - space: main
    name: Orders
    definition: "event('Order Completed').within(30 days).count()"
destinations:
  - name: iterable
    type: actions:iterable-lists
    source: main-engage
    settings: {{apiKey: {API_KEY}}}{SYNC}
  - name: iterable-two
    type: actions:iterable-lists
    source: main-engage
    settings: {{apiKey: {API_KEY}}}{SYNC}
  - name: engage-hook
    type: webhook
    source: main-engage
    settings: {{url: "{url}/hook"}}
server:
  request_redirects: {{"https://api.iterable.com": "{url}"}}
"""


def lists_answer(*names: str) -> Answer:
    body = {"lists": [{"id": 11 + n, "name": name} for n, name in enumerate(names)]}
    return Answer(body=json.dumps(body).encode())


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    try:
        yield found
    finally:
        found.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def server(
    request: pytest.FixtureRequest, tmp_path: Path, receiver: Receiver
) -> Iterator[tuple[LiveServer, Path]]:
    path = tmp_path / "headwater.yaml"
    path.write_text(config(receiver.url))
    offset = tmp_path / "clock-offset"
    offset.write_text("0")
    database = request.getfixturevalue("pg_database") if request.param == "postgresql" else None
    # The worker creates the file's list at start: Iterable has one other list, then makes ours.
    receiver.answer(lists_answer("someone-else"), Answer(body=b'{"listId": 4242}'))
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


def _iterable(got: list[Received]) -> list[Received]:
    return [r for r in got if r.path.startswith("/api/")]


def _audience(http: httpx.Client) -> dict[str, Any]:
    answer = http.get(f"/api/v1/spaces/main/audiences/{KEY}", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    audience: dict[str, Any] = answer.json()["data"]["audience"]
    return audience


def _by_name(audience: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in audience["destinations"]}


def test_an_audience_is_kept_as_a_list_at_the_destination(
    server: tuple[LiveServer, Path], receiver: Receiver
) -> None:
    live, offset = server
    http = httpx.Client(base_url=live.url, timeout=30)

    # The file's connection: the worker ran createAudience (Iterable's code: find by key,
    # else create) and keeps the list's id with the connection.
    created = receiver.wait_for(2, timeout=60)
    assert [(r.method, r.path) for r in created] == [("GET", "/api/lists"), ("POST", "/api/lists")]
    assert created[1].json() == {"name": KEY}
    assert all(r.headers["api-key"] == API_KEY for r in created)
    wait_for(
        lambda: _by_name(_audience(http))["iterable"]["audienceStatus"] == "created",
        20,
        "the list's id on the connection",
    )
    connection = _by_name(_audience(http))["iterable"]
    assert connection["externalAudienceId"] == "4242"
    assert connection["audienceSettings"] == {"updateExistingUsersOnly": True}

    # A member: the sync action subscribes them to list 4242, with the audience's settings.
    sent = http.post(
        "/v1/identify",
        json={"userId": "u1", "traits": {"email": "ada@example.com"}},
        auth=("WK_web", ""),
    )
    assert sent.status_code == 200, sent.text
    sent = http.post(
        "/v1/track",
        json={"userId": "u1", "event": "Order Completed"},
        auth=("WK_web", ""),
    )
    assert sent.status_code == 200, sent.text
    [subscribe] = _iterable(receiver.wait_for(3, timeout=60))[2:]
    assert (subscribe.method, subscribe.path) == ("POST", "/api/lists/subscribe")
    assert subscribe.headers["api-key"] == API_KEY
    assert subscribe.json() == {
        "listId": 4242,
        "subscribers": [{"email": "ada@example.com", "userId": "u1", "preferUserId": True}],
        "updateExistingUsersOnly": True,
    }

    # Audiences only: a computed trait cannot go to a list destination.
    refused = http.patch(
        "/api/v1/spaces/main/computed-traits/orders",
        json={"destinations": [{"name": "iterable"}]},
        headers=ADMIN,
    )
    assert refused.status_code in (400, 422), refused.text
    assert "list destination" in refused.text and "audiences only" in refused.text
    refused = http.patch(
        f"/api/v1/spaces/main/audiences/{KEY}",
        json={"destinations": [{"name": "engage-hook", "audienceSettings": {"x": 1}}]},
        headers=ADMIN,
    )
    assert refused.status_code in (400, 422), refused.text
    assert "not a list destination" in refused.text

    # A second list, connected over REST while Iterable fails: a 502 that says what Iterable
    # said; the connection is kept with its error and nothing is sent to it.
    receiver.default = Answer(status=500, body=b'{"msg": "Iterable is down"}')
    both = [
        {"name": "iterable", "audienceSettings": {"updateExistingUsersOnly": True}},
        {"name": "iterable-two"},
    ]
    failed = http.patch(
        f"/api/v1/spaces/main/audiences/{KEY}", json={"destinations": both}, headers=ADMIN
    )
    assert failed.status_code == 502, failed.text
    assert "createAudience failed at 'iterable-two'" in failed.text
    assert "Internal Server Error (HTTP 500)" in failed.text
    connections = _by_name(_audience(http))
    assert connections["iterable-two"]["audienceStatus"] == "failed"
    assert connections["iterable-two"]["externalAudienceId"] is None
    assert connections["iterable"]["externalAudienceId"] == "4242"  # kept

    # Iterable is back; a minute later the worker tries again, and the new list's first
    # upload carries the audience's current member.
    before = len(receiver.requests)
    receiver.default = Answer()
    receiver.answer(lists_answer("someone-else", "another"), Answer(body=b'{"listId": 4343}'))
    offset.write_text("61")
    got = _iterable(receiver.wait_for(before + 3, timeout=60)[before:])
    assert [(r.method, r.path) for r in got] == [
        ("GET", "/api/lists"),
        ("POST", "/api/lists"),
        ("POST", "/api/lists/subscribe"),
    ]
    assert got[2].json() == {
        "listId": 4343,
        "subscribers": [{"email": "ada@example.com", "userId": "u1", "preferUserId": True}],
    }
    connection = _by_name(_audience(http))["iterable-two"]
    assert (connection["audienceStatus"], connection["externalAudienceId"]) == ("created", "4343")
    assert connection["audienceError"] is None

    # The member leaves: unsubscribed from both lists.
    before = len(receiver.requests)
    offset.write_text(str(31 * DAY))
    got = _iterable(receiver.wait_for(before + 2, timeout=60)[before:])
    assert sorted((r.path, r.json()["listId"]) for r in got) == [
        ("/api/lists/unsubscribe", 4242),
        ("/api/lists/unsubscribe", 4343),
    ]
    for request in got:
        assert request.json()["subscribers"] == [{"email": "ada@example.com", "userId": "u1"}]
    http.close()
