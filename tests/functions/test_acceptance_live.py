"""The functions' acceptance checks that were shown only in process, through one running server:
functions and destinations from headwater.yaml, events sent to the Tracking API, the code run
by the worker's sandbox, outcomes read from Event Delivery, ``…/usage`` and loopback receivers
(AC-100, AC-102 … AC-105, AC-107, AC-112)."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from headwater.store import schema
from headwater.store.database import database_url, open_engine
from tests.functions.test_delivery_functions_live import ADMIN
from tests.support.live import LiveServer
from tests.support.receiver import Answer, Received, Receiver
from tests.support.waiting import wait_for

pytestmark = pytest.mark.live  # starts a headwater server process

CHECKS = ("100", "102", "103", "104", "105", "107", "112")
DECLARED = "[{name: url, label: URL, type: string, required: true}]"

ONLY_TRACK = """
async function onTrack(event, settings) {
  await fetch(settings.url, {method: 'POST', body: JSON.stringify(event)})
}
"""
# Segment's canonical pattern (§11.3); the receiver answers 503 every time.
UNAVAILABLE = """
async function onTrack(event, settings) {
  const r = await fetch(settings.url, {method: 'POST', body: JSON.stringify(event)})
  if (r.status >= 500 || r.status === 429) throw new RetryError('HTTP Status ' + r.status)
}
"""
SLEEPY = """
async function onTrack(event, settings) {
  await fetch(settings.url, {method: 'POST', body: JSON.stringify(event.properties)})
  await new Promise(r => setTimeout(r, 6000))
}
"""
PER_ITEM = """
async function onBatch(events, settings) {
  await fetch(settings.url, {method: 'POST', body: JSON.stringify(events.map(e => e.properties.n))})
  if (events.length !== 6) return events.map(() => ({status: 200}))
  return [{"status":200},{"status":400,"errormessage":"Bad Request"},{"status":200},
          {"status":500,"errormessage":"Error processing request"},
          {"status":500,"errormessage":"Error processing request"},{"status":200}]
}
"""
BATCH_SIZE = """
async function onBatch(events, settings) {
  await fetch(settings.url, {method: 'POST', body: JSON.stringify(events.map(e => e.properties.n))})
}
"""
RENAME = """
async function onTrack(event) { if (event.event === 'B') event.event = 'A'; return event }
"""
CACHED = """
let fetched = 0
async function onTrack(event, settings) {
  if (event.properties.forget) cache.delete('k')
  const token = await cache.load('k', 300000, async () => {
    await fetch(settings.url + '/token', {method: 'POST'})
    fetched += 1
    return 'token-' + fetched
  })
  await fetch(settings.url + '/event', {method: 'POST',
                                        body: JSON.stringify({n: event.properties.n, token})})
}
"""


def _function(name: str, code: str) -> str:
    """A function of headwater.yaml; the insert function declares no settings."""
    body = "\n".join("      " + line for line in code.strip().splitlines())
    kind, declared = ("insert", "[]") if name == "rename" else ("destination", DECLARED)
    return f"""  - name: {name}
    kind: {kind}
    language: javascript
    settings: {declared}
    code: |
{body}
"""


def _config(receivers: dict[str, Receiver]) -> str:
    functions = [
        ("only-track", ONLY_TRACK),
        ("unavailable", UNAVAILABLE),
        ("sleepy", SLEEPY),
        ("per-item", PER_ITEM),
        ("batch-size", BATCH_SIZE),
        ("rename", RENAME),
        ("cached", CACHED),
    ]
    sources = "".join(f"  - name: s{c}\n    write_key: WK_{c}\n" for c in CHECKS)
    destinations = "".join(
        f"""  - name: ac{c}
    type: "function:{name}"
    source: s{c}
    settings: {{url: "{receivers[c].url}/{name}"}}
"""
        for c, name in [
            ("100", "only-track"),
            ("102", "unavailable"),
            ("103", "sleepy"),
            ("105", "batch-size"),
            ("112", "cached"),
        ]
    )
    # Six at once: the batch does not wait 10 s to fill up to 20.
    destinations += f"""  - name: ac104
    type: "function:per-item"
    source: s104
    settings: {{url: "{receivers["104"].url}/per-item"}}
    delivery: {{batch_size: 6}}
  - name: ac107
    type: webhook-actions
    source: s107
    insert_function: rename
    mappings:
      - name: A only
        enabled: true
        trigger: 'event = "A"'
        action: send
        fields:
          url: "{receivers["107"].url}/a"
          method: POST
          data: {{event: {{"@path": "$.event"}}, n: {{"@path": "$.properties.n"}}}}
"""
    return f"""workspace: test
server:
  functions_fetch_allow: ["127.0.0.1"]
functions:
{"".join(_function(name, code) for name, code in functions)}sources:
{sources}destinations:
{destinations}"""


@pytest.fixture(scope="module")
def receivers() -> Iterator[dict[str, Receiver]]:
    """One loopback API per acceptance check; AC-102's is down (503)."""
    found = {c: Receiver() for c in CHECKS}
    found["102"].default = Answer(status=503)
    yield found
    for receiver in found.values():
        receiver.close()


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, receivers: dict[str, Receiver]
) -> Iterator[LiveServer]:
    """One server with every role, the worker's sandbox included."""
    base = tmp_path_factory.mktemp("acceptance")
    config = base / "headwater.yaml"
    config.write_text(_config(receivers))
    server = LiveServer(
        data_dir=base / "data",
        config=config,
        role="single",
    )
    try:
        server.start(timeout=120)  # two cores shared: a busy machine starts slowly
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def http(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=10) as client:
        yield client


def send(http: httpx.Client, check: str, kind: str, **event: Any) -> None:
    """One call to the Tracking API with the write key of check's source."""
    auth = (f"WK_{check}", "")
    response = http.post(f"/v1/{kind}", auth=auth, json={"userId": "u1", **event})
    assert response.status_code == 200, response.text


def delivery(http: httpx.Client, destination: str) -> dict[str, Any]:
    """Event Delivery of one destination instance (the last hour)."""
    response = http.get(f"/api/v1/destinations/{destination}/delivery", headers=ADMIN)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def codes(report: dict[str, Any]) -> dict[str, tuple[str, int]]:
    return {e["code"]: (e["status"], e["count"]) for e in report["errors"]}


def remove(http: httpx.Client, destination: str) -> None:
    """Stop a destination's retries, so later checks share the worker with nothing."""
    response = http.delete(f"/api/v1/destinations/{destination}", headers=ADMIN)
    assert response.status_code == 200, response.text


def test_ac100_a_missing_handler_is_unsupported_event_type_live(
    http: httpx.Client, receivers: dict[str, Receiver]
) -> None:
    """AC-100: a destination function with only onTrack gets an identify →
    UNSUPPORTED_EVENT_TYPE in Event Delivery, not retried; the track is delivered."""
    send(http, "100", "track", event="Signed Up", properties={"n": 1})
    send(http, "100", "identify", traits={"plan": "pro"})
    [got] = receivers["100"].wait_for(1, timeout=30)
    assert got.json()["event"] == "Signed Up"
    report = wait_for(
        lambda: (r := delivery(http, "ac100"))["notDelivered"] == r["delivered"] == 1 and r,
        20,
        "the track and the identify to be counted",
    )
    assert codes(report) == {"errors.discarded.UNSUPPORTED_EVENT_TYPE": ("not_delivered", 1)}
    [sample] = report["errors"][0]["samples"]
    assert sample["youSent"]["type"] == "identify"
    assert "onIdentify is not implemented" in sample["detail"]
    assert (report["retrying"], report["pending"]) == (0, 0)  # nothing waits for a retry
    assert len(receivers["100"].requests) == 1


def test_ac103_a_six_second_handler_times_out_is_retried_and_billed_live(
    http: httpx.Client, receivers: dict[str, Receiver]
) -> None:
    """AC-103: a handler waiting 6 s → FUNCTION_TIMEOUT after 5 s, awaiting retry; it is
    retried, and ``GET /functions/sleepy/usage`` counts every attempt."""
    started = time.monotonic()
    send(http, "103", "track", event="Slow", properties={"n": 1})
    report = wait_for(
        lambda: (r := delivery(http, "ac103"))["errors"] and r, 30, "the first timeout"
    )
    assert time.monotonic() - started >= 5  # the 5 s deadline, not sooner
    assert codes(report) == {"errors.awaiting-retry.FUNCTION_TIMEOUT": ("retrying", 1)}
    assert (report["retrying"], report["delivered"], report["notDelivered"]) == (1, 0, 0)
    assert report["errors"][0]["samples"][0]["function"]["error"] == "Timeout"
    receivers["103"].wait_for(2, timeout=30)  # the retry ran the code again

    def usage() -> list[dict[str, Any]]:
        response = http.get("/api/v1/functions/sleepy/usage", headers=ADMIN)
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()["data"]["usage"]
        return found

    [month] = wait_for(
        lambda: (u := usage()) and u[0]["invocations"] >= 2 and u, 30, "the retry to be billed"
    )
    assert month["errors"] == month["invocations"]  # each attempt timed out
    assert month["executionMs"] >= 2 * 4_900  # each attempt billed its 5 s
    remove(http, "ac103")


def test_ac104_onbatch_per_item_results_retry_only_items_four_and_five_live(
    http: httpx.Client, receivers: dict[str, Receiver]
) -> None:
    """AC-104: onBatch returns [200, 400, 200, 500, 500, 200] → items 4 and 5 await a retry
    and only they are sent again; item 2 is discarded (400), the others delivered."""
    batch = [
        {"type": "track", "userId": "u1", "event": "Item", "properties": {"n": n}}
        for n in range(1, 7)
    ]
    response = http.post("/v1/batch", auth=("WK_104", ""), json={"batch": batch})
    assert response.status_code == 200, response.text
    [first] = receivers["104"].wait_for(1, timeout=30)
    items = first.json()
    assert sorted(items) == [1, 2, 3, 4, 5, 6]
    expected = {
        "errors.awaiting-retry.500": ("retrying", 2),
        "errors.discarded.400": ("not_delivered", 1),
    }
    report = wait_for(
        lambda: (r := delivery(http, "ac104"))["delivered"] == 3 and codes(r) == expected and r,
        20,
        "the batch's results",
    )
    discarded = next(e for e in report["errors"] if e["code"] == "errors.discarded.400")
    assert discarded["samples"][0]["youSent"]["properties"]["n"] == items[1]
    assert discarded["samples"][0]["detail"] == "Bad Request"
    # The retry: one more onBatch call, with items 4 and 5 only (≤ 10 s of batch window).
    second = receivers["104"].wait_for(2, timeout=30)[1]
    assert sorted(second.json()) == sorted([items[3], items[4]])
    report = wait_for(
        lambda: (r := delivery(http, "ac104"))["delivered"] == 5 and r, 20, "the retried items"
    )
    assert (report["notDelivered"], report["retrying"], report["pending"]) == (1, 0, 0)
    assert len(receivers["104"].requests) == 2


def test_ac105_twenty_events_are_one_batch_and_three_wait_at_most_ten_seconds_live(
    http: httpx.Client, receivers: dict[str, Receiver]
) -> None:
    """AC-105: 20 events within 2 s → one onBatch call of 20; 3 events then silence → one
    call of 3, about 10 s after they arrived."""
    started = time.monotonic()
    for n in range(20):
        send(http, "105", "track", event="Batched", properties={"n": n})
    assert time.monotonic() - started < 2
    [twenty] = receivers["105"].wait_for(1, timeout=30)
    assert sorted(twenty.json()) == list(range(20))
    sent_at = time.time()
    for n in range(20, 23):
        send(http, "105", "track", event="Batched", properties={"n": n})
    three = receivers["105"].wait_for(2, timeout=30)[1]
    assert sorted(three.json()) == [20, 21, 22]
    waited = three.at - sent_at
    assert 9.5 <= waited <= 10 + 6, waited  # the 10 s window, plus a loaded machine's slack
    report = wait_for(
        lambda: (r := delivery(http, "ac105"))["delivered"] == 23 and r, 20, "the 23 delivered"
    )
    assert report["errors"] == []
    assert len(receivers["105"].requests) == 2


def test_ac107_an_insert_function_cannot_make_an_event_match_a_trigger_live(
    http: httpx.Client, receivers: dict[str, Receiver]
) -> None:
    """AC-107: a Webhooks (Actions) destination whose only mapping triggers on
    ``event = "A"``, and an insert function renaming "B" to "A": track "B" is not delivered
    (NO_MATCHING_MAPPING, triggers see the original event); track "A" is."""
    send(http, "107", "track", event="B", properties={"n": 1})
    send(http, "107", "track", event="A", properties={"n": 2})
    [got] = receivers["107"].wait_for(1, timeout=30)
    assert got.path == "/a" and got.json() == {"event": "A", "n": 2}

    def counted(report: dict[str, Any]) -> bool:
        unmatched: int = report["filtered"].get("NO_MATCHING_MAPPING", 0)
        return unmatched == 1 and report["delivered"] == 1

    report = wait_for(lambda: counted(r := delivery(http, "ac107")) and r, 20, "both counted")
    assert report["notDelivered"] == 0
    assert len(receivers["107"].requests) == 1


def test_ac112_cache_load_fetches_once_until_deleted_live(
    http: httpx.Client, receivers: dict[str, Receiver]
) -> None:
    """AC-112: ``cache.load('k', 300000, fn)`` in a deployed destination function: two events
    → fn fetched once, the second event got the cached value; after ``cache.delete('k')`` the
    load runs fn again."""
    receiver = receivers["112"]

    def sent(n: int, count: int, **properties: Any) -> list[Received]:
        send(http, "112", "track", event="Cached", properties={"n": n, **properties})
        return receiver.wait_for(count, timeout=30)

    sent(1, 2)
    got = sent(2, 3)
    assert [r.path for r in got] == ["/cached/token", "/cached/event", "/cached/event"]
    assert [r.json() for r in got[1:]] == [
        {"n": 1, "token": "token-1"},
        {"n": 2, "token": "token-1"},
    ]
    got = sent(3, 5, forget=True)
    assert [r.path for r in got[3:]] == ["/cached/token", "/cached/event"]
    assert got[4].json() == {"n": 3, "token": "token-2"}
    report = wait_for(
        lambda: (r := delivery(http, "ac112"))["delivered"] == 3 and r, 20, "the three events"
    )
    assert report["errors"] == []


def test_ac102_retry_error_awaits_a_retry_and_is_retried_with_backoff_live(
    live: LiveServer, http: httpx.Client, receivers: dict[str, Receiver]
) -> None:
    """AC-102: onTrack throws RetryError('HTTP Status 503') → RETRY_ERROR, awaiting retry in
    Event Delivery; the retry comes after Segment's randomized exponential backoff (5 s ± 50 %)
    and, failing again, waits twice as long (10 s ± 50 %).

    On the real clock: the delivery engine of ``serve`` does not read
    HEADWATER_CLOCK_OFFSET_FILE, so moving the server's clock does not bring a retry sooner."""
    receiver = receivers["102"]
    destination = http.get("/api/v1/destinations/ac102", headers=ADMIN).json()["data"]
    destination_id = destination["destination"]["id"]
    db = open_engine(database_url(live.data_dir, None))

    def job(attempts: int) -> Any:
        """The event's delivery job once ``attempts`` attempts have been settled."""
        with db.connect() as conn:
            row = conn.execute(
                sa.select(schema.delivery_jobs).where(
                    schema.delivery_jobs.c.destination_id == destination_id
                )
            ).one_or_none()
        return row if row is not None and row.attempts >= attempts else None

    try:
        send(http, "102", "track", event="Order Completed", properties={"n": 1})
        first = receiver.wait_for(1, timeout=30)[0]
        row = wait_for(functools.partial(job, 1), 20, "attempt 1 to be settled")
        # From the attempt's start to its retry time: the backoff plus the call itself.
        gap = (row.next_attempt_at_ms - row.first_attempt_at_ms) / 1000
        assert 2.5 <= gap <= 7.5 + 3, gap
        report = wait_for(
            lambda: (r := delivery(http, "ac102"))["errors"] and r, 20, "the first attempt"
        )
        assert codes(report) == {"errors.awaiting-retry.RETRY_ERROR": ("retrying", 1)}
        assert report["errors"][0]["samples"][0]["detail"] == "RetryError: HTTP Status 503"
        assert (report["retrying"], report["delivered"], report["notDelivered"]) == (1, 0, 0)

        second = receiver.wait_for(2, timeout=20)[1]  # the retry
        assert 2.5 - 0.5 <= second.at - first.at <= 7.5 + 3
        assert second.json()["messageId"] == first.json()["messageId"]
        row = wait_for(functools.partial(job, 2), 20, "attempt 2 to be settled")
        gap = row.next_attempt_at_ms / 1000 - second.at
        assert 5 - 0.5 <= gap <= 15 + 3, gap  # twice the first backoff, ± 50 %
        report = delivery(http, "ac102")
        assert (report["retrying"], report["delivered"], report["notDelivered"]) == (1, 0, 0)
    finally:
        db.dispose()
    remove(http, "ac102")
