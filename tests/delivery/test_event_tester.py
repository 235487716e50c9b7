"""The Event Tester through a live server (AC-067, AC-071, A-TR-8), on SQLite and PostgreSQL:
``POST /api/v1/destinations/{idOrName}/tester`` sends one event straight to a destination on a
loopback receiver and answers with the request and the receiver's response."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from headwater.store import schema
from headwater.store.database import database_url, open_engine
from tests.support.live import ADMIN_TOKEN, LiveServer
from tests.support.postgres import new_database
from tests.support.receiver import Answer, Received, Receiver
from tests.support.waiting import wait_for

pytestmark = pytest.mark.live  # starts a headwater server process

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
HEADWATER = [sys.executable, "-m", "headwater"]
NO_SUBSCRIPTIONS = "You may not have any subscriptions that match this event"
SECRETS = ("whsec-secret-789", "amp-key-secret-123", "hdr-secret-456", "site-1", "api-secret-2")

CONFIG = """workspace: test
sources:
  - name: web
    write_key: WK_web
  - name: tx
    write_key: WK_tx
destinations:
  - name: dropped
    type: webhook
    source: web
    settings: {{url: "{url}/dropped"}}
    filters:
      - if: all
        actions: [{{type: DROP}}]
  - name: renamed
    type: webhook
    source: tx
    settings: {{url: "{url}/renamed"}}
  - name: failing
    type: webhook
    source: web
    settings: {{url: "{url}/failing", shared_secret: whsec-secret-789}}
  - name: amp
    type: amplitude
    source: web
    enabled: false
    settings: {{api_key: amp-key-secret-123, endpoint: "{url}/amp"}}
  - name: orders
    type: webhook-actions
    source: web
    mappings:
      - name: Orders
        enabled: true
        trigger: 'type = "track" and event = "Order Completed"'
        action: send
        fields:
          url: "{url}/orders"
          method: POST
          headers: {{X-Token: hdr-secret-456}}
          data: {{order: {{"@path": "$.properties.order_id"}}}}
      - name: Drafts
        enabled: false
        trigger: 'event = "Draft Saved"'
        action: send
        fields:
          url: "{url}/drafts"
          method: POST
          data: {{draft: {{"@path": "$.properties.draft"}}}}
  - name: cio
    type: actions:customerio
    source: web
    settings: {{siteId: site-1, apiKey: api-secret-2}}
    mappings:
      - name: Track Event
        enabled: true
        trigger: type = "track"
        action: trackEvent
        fields:
          id: {{"@path": "$.userId"}}
          name: {{"@path": "$.event"}}
          data: {{"@path": "$.properties"}}
          enable_batching: false
transformations:
  - name: Source-scoped rename
    source: tx
    if: "event = 'source_old'"
    newEventName: Source New
  - name: Destination-scoped rename
    source: tx
    destination: renamed
    if: "event = 'dest_old'"
    newEventName: Dest New
server:
  request_redirects: {{"https://track.customer.io": "{url}"}}
"""


@dataclass
class Served:
    live: LiveServer
    receiver: Receiver
    database: str  # the state database's URL

    def test(self, destination: str, body: Any) -> httpx.Response:
        """``body`` as JSON, or as it is when it is bytes."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.post(
            f"{self.live.url}/api/v1/destinations/{destination}/tester",
            content=raw,
            headers={**ADMIN, "Content-Type": "application/json"},
            timeout=30,
        )

    def at(self, path: str) -> list[Received]:
        return [r for r in self.receiver.requests if r.path == path]

    def state(self, query: sa.Select[Any]) -> Any:
        engine = open_engine(self.database)
        try:
            with engine.connect() as conn:
                return conn.execute(query).scalar_one()
        finally:
            engine.dispose()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("tester")
    receiver = Receiver()
    pg = None
    if request.param == "postgresql":
        pg = new_database(request.getfixturevalue("postgres_url"))
    config = tmp / "headwater.yaml"
    config.write_text(CONFIG.format(url=receiver.url))
    live = LiveServer(data_dir=tmp / "data", config=config, role="all", database=pg)
    live.start()
    try:
        yield Served(live, receiver, database_url(live.data_dir, pg))
    finally:
        live.stop()
        receiver.close()


def track(event: str, **properties: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": event,
        "userId": "tester-user",
        "messageId": f"t-{uuid.uuid4().hex[:10]}",
        "properties": properties,
    }


def children_of(pid: int) -> list[str]:
    """The program names of a process's children."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        name, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :]
        if int(rest.split()[1]) == pid:
            found.append(name)
    return sorted(found)


def deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def data(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()["data"]
    return found


def test_ac_067_the_tester_bypasses_a_drop_all_filter(served: Served) -> None:
    sent = track("Order Completed", total=10)
    answer = data(served.test("dropped", {"event": sent}))
    [got] = served.at("/dropped")
    assert got.json()["messageId"] == sent["messageId"]
    assert got.json()["event"] == "Order Completed"
    assert answer["delivered"] is True and answer["code"] == "200"
    [attempt] = answer["attempts"]
    assert attempt["requestToDestination"]["url"] == f"{served.receiver.url}/dropped"
    assert attempt["requestToDestination"]["body"]["messageId"] == sent["messageId"]
    assert attempt["responseFromDestination"] == {
        "status": 200,
        "headers": attempt["responseFromDestination"]["headers"],
        "body": {"ok": True},
    }
    # Normalised as the Tracking API would: what the destination got is what the answer shows.
    assert answer["youSent"]["receivedAt"] and answer["youSent"]["timestamp"]
    assert answer["youSent"] == got.json()


def test_a_tr_8_the_tester_applies_no_transformation(served: Served) -> None:
    run = uuid.uuid4().hex[:8]
    for event in ("source_old", "dest_old"):
        answer = data(served.test("renamed", {"event": {**track(event), "userId": run}}))
        assert answer["delivered"] is True
    tested = [r.json()["event"] for r in served.at("/renamed") if r.json()["userId"] == run]
    assert tested == ["source_old", "dest_old"]
    # The same events through the Tracking API: both transformations are live.
    auth = {"Authorization": "Basic " + base64.b64encode(b"WK_tx:").decode()}
    for event in ("source_old", "dest_old"):
        body = {**track(event), "userId": f"live-{run}"}
        assert httpx.post(f"{served.live.url}/v1/track", json=body, headers=auth).status_code == 200

    def live_names() -> list[str]:
        return sorted(
            r.json()["event"] for r in served.at("/renamed") if r.json()["userId"] == f"live-{run}"
        )

    assert wait_for(lambda: len(live_names()) == 2 and live_names(), 30, "two live deliveries") == [
        "Dest New",
        "Source New",
    ]


@pytest.mark.parametrize("status", [500, 401])
def test_a_failure_is_shown_not_retried_nor_counted(served: Served, status: int) -> None:
    before = len(served.at("/failing"))
    served.receiver.answer(Answer(status=status, body=b'{"error":"nope"}'))
    answer = data(served.test("failing", {"event": track("Order Completed")}))
    assert len(served.at("/failing")) == before + 1
    assert answer["delivered"] is False
    assert answer["code"] == str(status)
    assert answer["summary"].startswith(f"Not delivered: the destination answered {status}")
    [attempt] = answer["attempts"]
    assert attempt["code"] == str(status)
    assert attempt["responseFromDestination"]["status"] == status
    assert attempt["responseFromDestination"]["body"] == {"error": "nope"}
    assert attempt["requestToDestination"]["headers"]["X-Signature"] == "[redacted]"
    # Nothing queued (so nothing retried) and nothing in Delivery Overview.
    jobs = sa.select(sa.func.count()).select_from(schema.delivery_jobs)
    assert served.state(jobs) == 0
    counters = (
        sa.select(sa.func.count())
        .select_from(schema.counters)
        .where(schema.counters.c.destination_id == answer["destination"]["id"])
    )
    assert served.state(counters) == 0
    report = data(
        httpx.get(f"{served.live.url}/api/v1/destinations/failing/delivery", headers=ADMIN)
    )
    assert (report["delivered"], report["notDelivered"], report["retrying"]) == (0, 0, 0)
    assert report["errors"] == []


def test_secrets_never_appear_and_a_disabled_destination_can_be_tested(served: Served) -> None:
    response = served.test("amp", {"event": track("Order Completed", revenue=5)})
    answer = data(response)
    assert answer["destination"]["enabled"] is False
    assert answer["delivered"] is True
    [got] = served.at("/amp")
    assert got.json()["api_key"] == "amp-key-secret-123"  # the receiver got the real key
    [attempt] = answer["attempts"]
    assert attempt["requestToDestination"]["body"]["api_key"] == "[redacted]"
    assert attempt["requestToDestination"]["body"]["events"][0]["event_type"] == "Order Completed"
    for secret in SECRETS:
        assert secret not in response.text


def test_ac_071_an_actions_destination_sends_through_matching_mappings(served: Served) -> None:
    unmatched = served.test("orders", {"event": track("Product Viewed")})
    answer = data(unmatched)
    assert answer["delivered"] is False
    assert answer["code"] == "NO_MATCHING_MAPPING"
    assert answer["summary"] == NO_SUBSCRIPTIONS
    assert answer["attempts"] == []
    assert served.at("/orders") == []

    matched = served.test("orders", {"event": track("Order Completed", order_id="o-9")})
    answer = data(matched)
    [got] = served.at("/orders")
    assert got.json() == {"order": "o-9"}
    assert got.headers["x-token"] == "hdr-secret-456"
    [attempt] = answer["attempts"]
    assert attempt["mappingName"] == "Orders"
    assert attempt["requestToDestination"]["headers"]["X-Token"] == "[redacted]"
    assert attempt["requestToDestination"]["body"] == {"order": "o-9"}
    assert attempt["responseFromDestination"]["status"] == 200
    assert "hdr-secret-456" not in matched.text


def test_a_named_mapping_is_tested_even_while_disabled(served: Served) -> None:
    listed = httpx.get(f"{served.live.url}/api/v1/destinations/orders/mappings", headers=ADMIN)
    mappings = {m["name"]: m["id"] for m in listed.json()["data"]["mappings"]}
    # Its trigger does not match, and it is disabled: named, it runs all the same.
    body = {"event": track("Something Else", draft="d-1"), "mappingId": mappings["Drafts"]}
    answer = data(served.test("orders", body))
    [got] = served.at("/drafts")
    assert got.json() == {"draft": "d-1"}
    assert [a["mappingId"] for a in answer["attempts"]] == [mappings["Drafts"]]
    assert answer["delivered"] is True

    unknown = served.test("orders", {**body, "mappingId": "no-such-mapping"})
    assert unknown.status_code == 404
    assert "no-such-mapping" in unknown.json()["errors"][0]["message"]
    not_actions = served.test("dropped", body)
    assert not_actions.status_code == 422
    assert not_actions.json()["errors"][0]["field"] == "mappingId"


def test_a_package_destination_runs_segments_code(served: Served) -> None:
    sent = track("Order Completed", total=3)
    response = served.test("cio", {"event": sent})
    answer = data(response)
    [got] = served.at("/api/v2/entity")
    assert got.json()["identifiers"]["id"] == "tester-user"
    assert got.json()["name"] == "Order Completed"
    assert answer["delivered"] is True
    [attempt] = answer["attempts"]
    request = attempt["requestToDestination"]
    assert request["url"] == "https://track.customer.io/api/v2/entity"
    assert request["headers"]["authorization"] == "[redacted]"
    assert attempt["responseFromDestination"]["status"] == 200
    for secret in SECRETS:
        assert secret not in response.text
    # Sent by the process that served the call (the api process, or an ingest process when
    # the hand-over timed out) with one Node process of its own; the worker had no work.
    started = [name for pid in served.live.pids().values() for name in children_of(pid)]
    assert started == ["node"]


def test_the_cli_shows_the_exchange_and_exits_1_when_not_delivered(
    served: Served, tmp_path: Path
) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps(track("Order Completed", via="cli")))

    def cli(destination: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*HEADWATER, "test-event", destination, str(event), "--url", served.live.url],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "HEADWATER_ADMIN_TOKEN": ADMIN_TOKEN},
        )

    served.receiver.answer(Answer(status=503, body=b'{"error":"down"}'))
    failed = cli("failing")
    assert failed.returncode == 1, failed.stderr
    assert "failing (webhook): Not delivered: the destination answered 503" in failed.stdout
    assert 'Response from destination: {"status": 503' in failed.stdout
    assert "whsec-secret-789" not in failed.stdout
    delivered = cli("dropped")
    assert delivered.returncode == 0, delivered.stderr
    assert "dropped (webhook): Delivered" in delivered.stdout
    missing = cli("nowhere")
    assert missing.returncode != 0 and "404" in missing.stderr


@pytest.mark.parametrize(
    ("destination", "body", "status", "says"),
    [
        ("nowhere", {"event": track("E")}, 404, "nowhere"),
        ("dropped", {"event": "not an object"}, 400, "JSON object"),
        ("dropped", {"event": ["a"]}, 400, "JSON object"),
        ("dropped", {}, 400, "event: required"),
        ("dropped", {"event": {"userId": "u", "event": "E"}}, 400, "type"),
        ("dropped", {"event": {"type": "track", "userId": "u"}}, 400, "event"),
        ("dropped", {"event": {"type": "track", "event": "E"}}, 400, "userId"),
        ("dropped", {"event": track("E"), "extra": 1}, 422, "extra"),
        # What the Tracking API's decoder refuses, though FastAPI's parser lets it through:
        (
            "dropped",
            b'{"event": {"type": "track", "event": "E", "userId": "u", "n": NaN}}',
            400,
            "NaN",
        ),
        (
            "dropped",
            b'{"event": {"type": "track", "event": "E", "userId": "u", "n": 1e999}}',
            400,
            "infinite",
        ),
        ("dropped", {"event": track("\ud800")}, 400, "surrogate"),
        ("dropped", {"event": track("E", deep=deep(150))}, 400, "nest"),
        ("dropped", {"event": track("E", big="x" * 40_000)}, 400, "message_too_large"),
    ],
)
def test_bad_input_is_refused_in_the_public_api_shape(
    served: Served, destination: str, body: Any, status: int, says: str
) -> None:
    before = len(served.receiver.requests)
    response = served.test(destination, body)
    assert response.status_code == status, response.text
    [error] = response.json()["errors"]
    assert says in error["message"], error
    assert len(served.receiver.requests) == before


def test_an_unsupported_call_is_not_sent(served: Served) -> None:
    before = len(served.at("/amp"))
    alias = {"type": "alias", "userId": "u", "previousId": "p"}
    answer = data(served.test("amp", {"event": alias}))
    assert (answer["delivered"], answer["code"]) == (False, "UNSUPPORTED_EVENT_TYPE")
    assert answer["summary"] == "Amplitude does not take alias calls."
    assert answer["attempts"] == []
    assert len(served.at("/amp")) == before


def test_a_single_process_server_tests_on_its_delivery_thread(
    tmp_path: Path, receiver: Receiver
) -> None:
    """With the delivery engine running in the same process (``--role single``), the tester
    sends from the engine's own thread, where the actions runtime lives."""
    config = tmp_path / "headwater.yaml"
    config.write_text(CONFIG.format(url=receiver.url))
    live = LiveServer(data_dir=tmp_path / "data", config=config, role="single")
    live.start()
    try:
        served = Served(live, receiver, database_url(live.data_dir, None))
        for destination in ("cio", "dropped"):
            answer = data(served.test(destination, {"event": track("Order Completed")}))
            assert answer["delivered"] is True, answer
        assert [r.path for r in receiver.requests] == ["/api/v2/entity", "/dropped"]
    finally:
        live.stop()
