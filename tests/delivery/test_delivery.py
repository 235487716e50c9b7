"""Delivery through the router and the engine, against a loopback destination (AC-090 … 096)."""

from __future__ import annotations

import hashlib
import hmac

import pytest
import sqlalchemy as sa

from headwater.delivery.engine import DELIVERED, FAILED_DELIVERY, RETRY
from headwater.store import schema
from headwater.store.counters import CounterStore
from tests.delivery.conftest import Pipeline, track
from tests.support.receiver import Answer, Receiver


def jobs(p: Pipeline) -> list[tuple[int, int, int | None]]:
    """(attempts, next attempt, first attempt) of every queued job, in queue order."""
    t = schema.delivery_jobs
    with p.engine.connect() as conn:
        return [
            (r[0], r[1], r[2])
            for r in conn.execute(
                sa.select(t.c.attempts, t.c.next_attempt_at_ms, t.c.first_attempt_at_ms).order_by(
                    t.c.id
                )
            )
        ]


def test_ac090_retried_until_delivered_once(pipeline: Pipeline, hook: Receiver) -> None:
    dest = pipeline.add("hook", settings={"url": hook.url + "/in"})
    hook.answer(Answer(status=500), Answer(status=500))
    event = track()
    pipeline.send(event)
    assert pipeline.deliver() == 1
    assert pipeline.delivery.queue.backlog(dest.id) == {"pending": 1, "retrying": 1}
    [(attempts, next_at, first_at)] = jobs(pipeline)
    assert first_at == int(pipeline.clock.now * 1000)
    assert attempts == 1
    delay = next_at / 1000 - pipeline.clock.now
    assert 2.5 <= delay <= 7.5  # the first retry comes within seconds (5 s ± 50 %)
    assert pipeline.deliver() == 0  # not due yet
    pipeline.clock.advance(8)
    pipeline.deliver()
    pipeline.clock.advance(20)
    pipeline.deliver()
    assert pipeline.delivery.queue.backlog(dest.id) == {"pending": 0, "retrying": 0}
    assert [r.json()["messageId"] for r in hook.requests] == [event["messageId"]] * 3
    totals = pipeline.totals(dest)
    assert totals[(DELIVERED, "")] == 1
    assert totals[(RETRY, "errors.awaiting-retry.500")] == 2


def test_ac091_always_429_gives_up_after_four_hours(pipeline: Pipeline, hook: Receiver) -> None:
    dest = pipeline.add("hook", settings={"url": hook.url + "/in"})
    hook.default = Answer(status=429)
    pipeline.send(track())
    delays = []
    for _ in range(200):
        if pipeline.deliver() == 0 and not jobs(pipeline):
            break
        rows = jobs(pipeline)
        if not rows:
            break
        delays.append(rows[0][1] / 1000 - pipeline.clock.now)
        pipeline.clock.now = rows[0][1] / 1000
    assert not jobs(pipeline)
    assert len(delays) >= 8
    assert delays[6] > delays[1] * 4  # exponential, randomized
    first = hook.requests[0].at
    assert first  # the receiver saw every attempt
    totals = pipeline.totals(dest)
    assert totals[(FAILED_DELIVERY, "errors.expired.429")] == 1
    assert (DELIVERED, "") not in totals
    # Attempts spread over the four-hour window and not beyond it.
    assert sum(delays[:-1]) <= 4 * 3600


def test_ac092_400_is_discarded_with_three_samples(pipeline: Pipeline, hook: Receiver) -> None:
    dest = pipeline.add(
        "hook",
        settings={
            "url": hook.url + "/in?token=very-secret-token",
            "shared_secret": "s3cr3t-value",
            "headers": {"Authorization": "Bearer abcdef123"},
        },
    )
    hook.answer(Answer(status=400, body=b'{"error":"bad signature for s3cr3t-value"}'))
    event = track()
    pipeline.send(event)
    pipeline.deliver()
    assert not jobs(pipeline)  # no retry
    assert pipeline.totals(dest)[(FAILED_DELIVERY, "errors.discarded.400")] == 1
    [sample] = CounterStore(pipeline.engine).samples(destination_id=dest.id)
    shown = sample.message
    assert shown["you_sent"]["messageId"] == event["messageId"]
    assert shown["request"]["method"] == "POST"
    assert shown["request"]["url"].endswith("/in?token=[redacted]")
    assert shown["request"]["headers"]["Authorization"] == "[redacted]"
    assert shown["request"]["headers"]["X-Signature"] == "[redacted]"
    assert shown["request"]["body"]["messageId"] == event["messageId"]
    assert shown["response"]["status"] == 400
    assert shown["response"]["body"] == {"error": "bad signature for [redacted]"}
    text = str(shown)
    assert "very-secret-token" not in text and "s3cr3t" not in text and "abcdef123" not in text
    # what was sent was signed with the secret, though
    body = hook.requests[0].body
    assert (
        hook.requests[0].headers["x-signature"]
        == hmac.new(b"s3cr3t-value", body, hashlib.sha1).hexdigest()
    )


def test_ac093_connection_refused_is_retried(pipeline: Pipeline, hook: Receiver) -> None:
    url = hook.url
    hook.close()  # nothing listens there any more
    dest = pipeline.add("hook", settings={"url": url + "/in"})
    pipeline.send(track())
    pipeline.deliver()
    assert pipeline.totals(dest)[(RETRY, "errors.awaiting-retry.ECONNREFUSED")] == 1
    assert jobs(pipeline)[0][0] == 1


def test_retry_after_is_honoured(pipeline: Pipeline, hook: Receiver) -> None:
    pipeline.add("hook", settings={"url": hook.url + "/in"})
    hook.answer(Answer(status=503, headers={"Retry-After": "120"}))
    pipeline.send(track())
    pipeline.deliver()
    [(_attempts, next_at, _first)] = jobs(pipeline)
    assert next_at / 1000 - pipeline.clock.now == 120


def test_a_destination_down_two_hours_gets_everything_once_back(
    pipeline: Pipeline, hook: Receiver
) -> None:
    dest = pipeline.add("hook", settings={"url": hook.url + "/in"})
    hook.default = Answer(status=503)
    events = [track() for _ in range(30)]
    for start in range(0, 30, 10):
        pipeline.send(*events[start : start + 10])
        pipeline.clock.advance(600)
    elapsed = 0.0
    while elapsed < 2 * 3600:
        pipeline.deliver()
        pipeline.clock.advance(300)
        elapsed += 300
    hook.default = Answer(status=200)
    for _ in range(31):  # the longest backoff is an hour
        pipeline.deliver()
        pipeline.clock.advance(120)
    delivered = [r.json()["messageId"] for r in hook.requests if r.at and r.path == "/in"]
    assert not jobs(pipeline)
    assert pipeline.totals(dest)[(DELIVERED, "")] == 30
    assert set(delivered) == {e["messageId"] for e in events}


def test_restart_mid_schedule_loses_nothing(pipeline: Pipeline, hook: Receiver) -> None:
    from headwater.delivery.engine import DeliveryEngine

    dest = pipeline.add("hook", settings={"url": hook.url + "/in"})
    hook.answer(*[Answer(status=502)] * 5)
    pipeline.send(*[track() for _ in range(5)])
    pipeline.deliver()
    # A worker dies while holding a claim: its lease runs out and another worker takes over.
    dying = pipeline.delivery.queue.claim(dest.id, 100, "worker-dead", 60)
    assert dying == []  # none due yet: all are waiting for their retry
    pipeline.clock.advance(10)
    dying = pipeline.delivery.queue.claim(dest.id, 2, "worker-dead", 60)
    assert len(dying) == 2
    pipeline.delivery = DeliveryEngine(
        pipeline.engine, pipeline.cache(), owner="worker-2", clock=pipeline.clock
    )
    pipeline.deliver()
    assert len(jobs(pipeline)) == 2  # the dead worker's jobs wait for its lease
    pipeline.clock.advance(61)
    pipeline.deliver()
    assert not jobs(pipeline)
    assert pipeline.totals(dest)[(DELIVERED, "")] == 5


def test_concurrency_and_rate_limit_per_destination(pipeline: Pipeline, hook: Receiver) -> None:
    import time

    hook.default = Answer(delay=0.2)
    pipeline.add("hook", settings={"url": hook.url + "/in"}, delivery={"concurrency": 2})
    pipeline.send(*[track() for _ in range(6)])
    started = time.monotonic()
    pipeline.deliver()
    assert time.monotonic() - started >= 0.6  # 6 requests, 2 at a time, 0.2 s each
    arrivals = sorted(r.at for r in hook.requests)
    assert arrivals[2] - arrivals[0] >= 0.15  # the third waited for a free slot

    hook.default = Answer()
    hook.requests.clear()
    pipeline.store.update("hook", delivery={"rate_limit_per_second": 10})
    pipeline.send(*[track() for _ in range(15)])
    started = time.monotonic()
    pipeline.deliver()
    assert len(hook.requests) == 15
    assert time.monotonic() - started >= 1.2  # 15 requests at 10 a second


def test_unsupported_types_and_the_integrations_object(pipeline: Pipeline, hook: Receiver) -> None:
    dest = pipeline.add("hook", settings={"url": hook.url + "/in"})
    kept = track(integrations={"mixpanel": False})  # unknown key: changes nothing
    off = track(integrations={"Webhooks": False})
    all_off = track(integrations={"All": False})
    all_off_but = track(integrations={"All": False, "Webhooks": {"option": 1}})
    pipeline.send(kept, off, all_off, all_off_but)
    pipeline.deliver()
    assert sorted(r.json()["messageId"] for r in hook.requests) == sorted(
        [kept["messageId"], all_off_but["messageId"]]
    )
    totals = pipeline.totals(dest)
    assert totals[("filtered_at_destination", "FILTERED_BY_INTEGRATIONS_OBJECT")] == 2
    source_totals = {
        (t.step, t.reason): t.events
        for t in CounterStore(pipeline.engine).totals(
            source_id=pipeline.source_id, destination_id=""
        )
    }
    assert source_totals[("unknown_integration", "mixpanel")] == 1


def test_two_workers_share_a_queue_without_sending_twice(
    pipeline: Pipeline, hook: Receiver
) -> None:
    import asyncio

    from headwater.delivery.engine import DeliveryEngine

    dest = pipeline.add("hook", settings={"url": hook.url + "/in"})
    events = [track() for _ in range(1000)]  # more than one claim
    pipeline.send(*events)
    workers = [
        DeliveryEngine(pipeline.engine, pipeline.cache(), owner=f"w{i}", clock=pipeline.clock)
        for i in range(2)
    ]

    async def both() -> list[int]:
        try:
            return list(await asyncio.gather(*(w.run_until_idle() for w in workers)))
        finally:
            for w in workers:
                await w.close()

    handled = asyncio.run(both())
    assert sum(handled) == 1000 and all(handled)  # both took a share
    ids = [r.json()["messageId"] for r in hook.requests]
    assert sorted(ids) == sorted(e["messageId"] for e in events)  # each exactly once
    assert pipeline.totals(dest)[(DELIVERED, "")] == 1000


def test_ac095_p95_latency_is_the_95th_percentile_of_delivered_minus_received(
    pipeline: Pipeline, hook: Receiver
) -> None:
    from headwater.delivery.report import event_delivery

    dest = pipeline.add("hook", settings={"url": hook.url + "/in"})
    hook.answer(Answer(status=500))  # one message waits 30 s for its retry
    received = {}
    for second in range(40):  # received one second apart
        event = track()
        received[event["messageId"]] = second
        pipeline.send(event)
        pipeline.clock.advance(1)
    pipeline.clock.advance(60)
    pipeline.deliver()  # at second 100
    pipeline.clock.advance(30)
    pipeline.deliver()  # at second 130, the retried one
    retried = hook.requests[0].json()["messageId"]
    latencies = sorted((130 if m == retried else 100) - s for m, s in received.items())
    report = event_delivery(pipeline.engine, dest, now=pipeline.clock.now)
    assert report["delivered"] == 40
    assert report["p95LatencyMs"] == latencies[37] * 1000  # nearest rank: the 38th of 40


def test_ac096_a_batch_that_fails_marks_every_message_in_it(
    pipeline: Pipeline, hook: Receiver
) -> None:
    from headwater.delivery.report import event_delivery

    dest = pipeline.add("forward", "segment", settings={"write_key": "WK", "endpoint": hook.url})
    hook.answer(Answer(status=429))
    events = [track() for _ in range(50)]
    pipeline.send(*events)
    pipeline.deliver()
    assert len(hook.requests) == 1 and len(hook.requests[0].json()["batch"]) == 50
    report = event_delivery(pipeline.engine, dest, now=pipeline.clock.now)
    assert report["retrying"] == 50
    [error] = report["errors"]
    assert (error["code"], error["status"], error["count"]) == (
        "errors.awaiting-retry.429",
        "retrying",
        50,
    )
    pipeline.clock.advance(10)
    pipeline.deliver()
    assert pipeline.totals(dest)[(DELIVERED, "")] == 50
    assert sorted(m["messageId"] for m in hook.requests[1].json()["batch"]) == sorted(
        e["messageId"] for e in events
    )


def test_request_redirects_send_a_native_destination_elsewhere(
    pipeline: Pipeline, hook: Receiver
) -> None:
    """server.request_redirects rewrites the URL a destination asks for; samples keep it."""
    from headwater.delivery.engine import DeliveryEngine
    from headwater.destinations.redirects import Redirects

    pipeline.delivery = DeliveryEngine(
        pipeline.engine,
        pipeline.cache(),
        owner="worker-1",
        clock=pipeline.clock,
        redirects=Redirects({"https://hooks.vendor.example": hook.url + "/sandbox"}),
    )
    dest = pipeline.add("hook", settings={"url": "https://hooks.vendor.example/in?team=7"})
    hook.answer(Answer(status=400))
    pipeline.send(track(), track())
    assert pipeline.deliver() == 2
    received = hook.wait_for(2)
    assert {(r.method, r.path) for r in received} == {("POST", "/sandbox/in")}
    sample = CounterStore(pipeline.engine).samples(destination_id=dest.id)[0]
    assert sample.message["request"]["url"] == "https://hooks.vendor.example/in?team=7"


def test_engage_destinations_get_segments_rate_for_their_tool(
    pipeline: Pipeline, hook: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """§14.4: on a space's Engage source, an instance with no rate of its own is held to
    Segment's rate for its tool (a stand-in named like Intercom's destination: 8 a second);
    the same instance on any other source is not."""
    import dataclasses

    from headwater.destinations import registry
    from headwater.destinations.catalog import webhook
    from headwater.destinations.engage_limits import engage_rate

    assert engage_rate("Intercom Cloud Mode (Actions)") == 8
    assert engage_rate("Salesforce Marketing Cloud") == 20
    assert engage_rate("Salesforce (Actions)") == 5
    assert engage_rate("Webhooks") is None
    stand_in = dataclasses.replace(webhook.DEFINITION, type="intercom", name="Intercom", aliases=())
    monkeypatch.setitem(registry.definitions(), "intercom", stand_in)
    pipeline.add("tool", "intercom", settings={"url": hook.url + "/in"})
    pipeline.send(*[track() for _ in range(17)])
    pipeline.deliver()
    assert len(hook.requests) == 17
    free = sorted(r.at for r in hook.requests)
    hook.requests.clear()
    engage = {pipeline.source_id}
    monkeypatch.setattr(pipeline.delivery, "_engage_sources", lambda: engage)
    pipeline.send(*[track() for _ in range(17)])
    pipeline.deliver()
    held = sorted(r.at for r in hook.requests)
    assert len(held) == 17
    assert held[-1] - held[0] >= 1.8  # 17 requests at 8 a second: 2 s, less a first burst
    assert held[-1] - held[0] > free[-1] - free[0]
