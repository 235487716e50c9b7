"""Ten of Segment's Actions destinations through Headwater against the package called directly.

Each case (tests/destinations/package/cases.py) is saved as an ``actions:<directory>``
instance; its events go through the router and the delivery engine, whose actions runtime runs
the package's code with ``request_redirects`` sending the vendor's URLs to a loopback receiver.
The same events, settings and mappings then go to ``direct.js`` (the package's ``Destination``
called directly, nothing of Headwater), and the receiver must have got the same requests:
method, path, query, body, credential and every other header the destination set. Then per
destination: a 500 is retried and delivered once, a 400 is discarded with a redacted sample, a
429 backs off (honouring Retry-After); and for the OAuth destinations that refresh, a 401 gets
a new token through the definition's refreshAccessToken, as called directly, and is retried.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa

from headwater.delivery.engine import DELIVERED, FAILED_DELIVERY, RETRY, DeliveryEngine
from headwater.destinations.definition import OAUTH_SETTING
from headwater.destinations.redirects import Redirects
from headwater.destinations.store import DestinationInfo
from headwater.store import schema
from headwater.store.counters import CounterStore
from tests.delivery.conftest import Pipeline
from tests.destinations.package import direct
from tests.destinations.package.cases import CASES, Case
from tests.support.receiver import Answer, Received, Receiver

# The queue and its retry rules are the same code for native destinations, tested on both
# databases; what is new here is Node's side, so SQLite alone keeps these tests quick.
pytestmark = pytest.mark.parametrize("engine", ["sqlite"], indirect=True)


def wire(
    pipeline: Pipeline, case: Case, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine with the case's vendor URLs redirected to the receiver, and the receiver
    answering as the oracle's recorder does."""
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)  # the runtime's Node processes inherit it
    pipeline.delivery = DeliveryEngine(
        pipeline.engine,
        pipeline.cache(),
        owner="worker-1",
        clock=pipeline.clock,
        redirects=Redirects({prefix: receiver.url for prefix in case.vendor}),
        actions_dir=Path(os.environ["HEADWATER_ACTIONS_DIR"]),
    )
    receiver.default = answer(case)


def answer(case: Case, status: int = 200, **headers: str) -> Answer:
    if isinstance(case.answer, str):
        return Answer(status, case.answer.encode(), {"Content-Type": "text/plain", **headers})
    body = json.dumps(case.answer).encode()
    return Answer(status, body, {"Content-Type": "application/json", **headers})


# actions-core's ``auth`` keys -> the instance's ``oauth`` setting, keyed as Segment's
# ``settings.oauth`` (actions-core's ``getOAuth2Data`` reads it so).
OAUTH_KEYS = {
    "accessToken": "access_token",
    "refreshToken": "refresh_token",
    "clientId": "clientId",
    "clientSecret": "clientSecret",
}


def settings(case: Case) -> dict[str, Any]:
    """The case's settings as an instance keeps them, its OAuth app and tokens included."""
    if case.auth is None:
        return dict(case.settings)
    oauth = {OAUTH_KEYS[k]: v for k, v in case.auth.items()}
    return {**case.settings, OAUTH_SETTING: oauth}


def instance(pipeline: Pipeline, case: Case, mappings: int | None = None) -> DestinationInfo:
    resolved = direct.mappings(case)[:mappings]
    return pipeline.add(
        case.directory,
        case.type,
        settings=settings(case),
        mappings=[
            {
                "name": f"{m.action} {n}",
                "enabled": True,
                "trigger": m.subscribe,
                "action": m.action,
                "fields": m.fields,
            }
            for n, m in enumerate(resolved)
        ],
    )


def received(request: Received) -> direct.Compared:
    query = urlencode(request.query, doseq=True)  # the receiver has parsed it already
    return direct.compared(
        request.method,
        request.path + ("?" + query if query else ""),
        request.headers,
        request.body,
    )


def differences(got: list[direct.Compared], expected: list[direct.Compared]) -> str:
    """The first differences, field by field: Headwater's side against the package's."""
    lines = [f"Headwater sent {len(got)} requests, the package called directly {len(expected)}"]
    for n, (ours, theirs) in enumerate(zip(got, expected, strict=False)):
        for name in ("method", "path", "query", "body", "auth", "headers"):
            if getattr(ours, name) != getattr(theirs, name):
                lines.append(f"request {n} {name}: headwater {getattr(ours, name)!r}")
                lines.append(f"request {n} {name}:    direct {getattr(theirs, name)!r}")
    for extra in got[len(expected) :]:
        lines.append(f"only through headwater: {extra}")
    for missing in expected[len(got) :]:
        lines.append(f"only called directly: {missing}")
    return "\n".join(lines)


def outcome(pipeline: Pipeline, dest: DestinationInfo) -> str:
    """What Event Delivery says happened: for an assertion's message."""
    samples = CounterStore(pipeline.engine).samples(destination_id=dest.id)
    shown = [(s.key.step, s.key.reason, s.message) for s in samples]
    return f"totals {pipeline.totals(dest)}; samples {json.dumps(shown, default=str)[:3000]}"


def jobs(p: Pipeline) -> list[tuple[int, int]]:
    """(attempts, next attempt in ms) of every queued job."""
    t = schema.delivery_jobs
    with p.engine.connect() as conn:
        rows = conn.execute(sa.select(t.c.attempts, t.c.next_attempt_at_ms).order_by(t.c.id))
        return [(r[0], r[1]) for r in rows]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.directory)
def test_headwater_sends_what_the_package_sends_when_called_directly(
    case: Case, pipeline: Pipeline, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    wire(pipeline, case, receiver, monkeypatch)
    dest = instance(pipeline, case)
    pipeline.send(*[dict(e) for e in case.events])
    pipeline.deliver()
    # The same events as Headwater stored them (its receivedAt and timestamp), called directly.
    oracle = direct.run(case, pipeline.sent)
    assert all(run.error is None for run in oracle), [run.error for run in oracle]
    expected = sorted(
        (direct.compared_sent(r) for run in oracle for r in run.requests),
        key=direct.Compared.sort_key,
    )
    got = sorted((received(r) for r in receiver.requests), key=direct.Compared.sort_key)
    assert got == expected, differences(got, expected)
    if case.directory != "slack":  # Slack's credential is its webhook URL
        assert all(c.auth for c in got), "a request without its credential"
    matched = sum(len(run.subscribed) for run in oracle)
    assert pipeline.totals(dest).get((DELIVERED, ""), 0) == matched
    assert not jobs(pipeline)


def first_only(pipeline: Pipeline, case: Case) -> DestinationInfo:
    """The first mapping alone, and the first event (which it matches) sent."""
    dest = instance(pipeline, case, mappings=1)
    pipeline.send(dict(case.events[0]))
    return dest


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.directory)
def test_a_500_is_retried_and_then_delivered_once(
    case: Case, pipeline: Pipeline, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    wire(pipeline, case, receiver, monkeypatch)
    receiver.answer(answer(case, 500))
    dest = first_only(pipeline, case)
    pipeline.deliver()
    assert len(receiver.requests) == 1, outcome(pipeline, dest)
    [(attempts, next_at)] = jobs(pipeline)
    assert attempts == 1
    assert next_at / 1000 > pipeline.clock.now  # backed off, not at once
    assert pipeline.totals(dest)[(RETRY, "errors.awaiting-retry.500")] == 1
    pipeline.clock.advance(8)
    pipeline.deliver()
    assert not jobs(pipeline)
    totals = pipeline.totals(dest)
    assert totals[(DELIVERED, "")] == 1
    # The retry sent the same first request again; it (and any that follow) arrived once.
    first, *rest = receiver.requests
    assert received(rest[0]) == received(first)
    assert len({received(r).sort_key() for r in rest}) == len(rest)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.directory)
def test_a_400_is_not_retried_and_its_sample_hides_the_secrets(
    case: Case, pipeline: Pipeline, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    wire(pipeline, case, receiver, monkeypatch)
    receiver.default = Answer(400, b'{"error":"invalid field"}')
    dest = first_only(pipeline, case)
    pipeline.deliver()
    assert len(receiver.requests) == 1, outcome(pipeline, dest)
    assert not jobs(pipeline)
    totals = pipeline.totals(dest)
    assert totals.get((FAILED_DELIVERY, "errors.discarded.400")) == 1, outcome(pipeline, dest)
    [sample] = CounterStore(pipeline.engine).samples(destination_id=dest.id)
    shown = sample.message
    assert shown["you_sent"]["messageId"] == case.events[0]["messageId"]
    sent = receiver.requests[0]
    assert shown["request"]["method"] == sent.method
    if case.directory == "slack":  # the webhook URL is the credential: hidden whole
        assert shown["request"]["url"] == "[redacted]"
        assert sent.path not in json.dumps(shown)
    else:
        assert shown["request"]["url"].startswith(case.vendor)  # where the destination sent it
    assert shown["response"]["status"] == 400
    assert shown["response"]["body"] == {"error": "invalid field"}
    text = json.dumps(shown)
    for secret in direct.secrets(case):
        assert secret not in text
    for _, value in received(sent).auth:
        assert value not in text


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.directory)
def test_a_429_backs_off_and_honours_retry_after(
    case: Case, pipeline: Pipeline, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    wire(pipeline, case, receiver, monkeypatch)
    receiver.answer(answer(case, 429), answer(case, 429, **{"Retry-After": "120"}))
    dest = first_only(pipeline, case)
    pipeline.deliver()
    [(attempts, next_at)] = jobs(pipeline)
    assert attempts == 1 and next_at / 1000 - pipeline.clock.now >= 2.5
    assert pipeline.deliver() == 0  # not due yet: nothing sent
    assert len(receiver.requests) == 1
    pipeline.clock.now = next_at / 1000
    pipeline.deliver()
    [(attempts, next_at)] = jobs(pipeline)
    assert attempts == 2
    assert next_at / 1000 - pipeline.clock.now == 120
    pipeline.clock.now = next_at / 1000
    pipeline.deliver()
    assert not jobs(pipeline)
    totals = pipeline.totals(dest)
    assert totals[(RETRY, "errors.awaiting-retry.429")] == 2
    assert totals[(DELIVERED, "")] == 1


REFRESHING = [
    c for c in CASES if c.directory in ("hubspot", "salesforce", "google-enhanced-conversions")
]
NEW_TOKEN = "ya29.a0-refreshed-access-token"


@pytest.mark.parametrize("case", REFRESHING, ids=lambda c: c.directory)
def test_a_401_refreshes_the_access_token_once_stores_it_and_retries(
    case: Case, pipeline: Pipeline, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The definition's own refreshAccessToken asks the token endpoint as it does when called
    directly; the call is retried with the new token and the instance keeps it."""
    wire(pipeline, case, receiver, monkeypatch)
    token_answer = {"access_token": NEW_TOKEN, "token_type": "Bearer", "expires_in": 1800}
    receiver.answer(
        Answer(401, b'{"message":"access token expired"}'),
        Answer(200, json.dumps(token_answer).encode()),
    )
    dest = first_only(pipeline, case)
    pipeline.deliver()
    assert len(receiver.requests) == 3, outcome(pipeline, dest)
    turned_away, asked, retried = (received(r) for r in receiver.requests)

    first = replace(case, mappings=case.mappings[:1])
    [before] = direct.run(first, pipeline.sent)
    refresh_sent, tokens = direct.refresh(case, token_answer)
    renewed = {**(case.auth or {}), "accessToken": NEW_TOKEN}
    [after] = direct.run(replace(first, auth=renewed), pipeline.sent)
    assert tokens == {"accessToken": NEW_TOKEN}
    assert [turned_away] == [direct.compared_sent(r) for r in before.requests]
    assert [asked] == [direct.compared_sent(r) for r in refresh_sent]
    assert [retried] == [direct.compared_sent(r) for r in after.requests]

    assert pipeline.totals(dest) == {(DELIVERED, ""): 1}, outcome(pipeline, dest)
    stored = pipeline.store.require(dest.id).settings[OAUTH_SETTING]
    assert stored["access_token"] == NEW_TOKEN
    assert stored["refresh_token"] == (case.auth or {})["refreshToken"]
    assert stored["clientSecret"] == (case.auth or {})["clientSecret"]


def test_a_runtime_process_killed_mid_batch_delivers_its_events_once(
    pipeline: Pipeline, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Node process dies while the destination holds its batch request: the replacement
    sends the batch again, and every event is delivered, once, with nothing left queued."""
    case = next(c for c in CASES if c.directory == "customerio")
    wire(pipeline, case, receiver, monkeypatch)
    dest = instance(pipeline, case, mappings=1)  # createUpdatePerson, batched: identify calls
    receiver.answer(replace(answer(case), delay=5.0))  # the first request hangs
    events = [e for e in case.events if e["type"] == "identify"]
    pipeline.send(*[{**e, "messageId": f"kill-{n}"} for n, e in enumerate(events * 3)])

    async def scenario() -> int:
        delivering = asyncio.create_task(pipeline.delivery.run_until_idle())
        await asyncio.to_thread(receiver.wait_for, 1)
        runtime = pipeline.delivery.actions_runtime
        assert runtime is not None
        [process] = runtime.processes_info()
        assert process.pid is not None and process.in_flight == 1
        os.kill(process.pid, signal.SIGKILL)
        try:
            return await delivering
        finally:
            await pipeline.delivery.close()

    assert asyncio.run(scenario()) == len(events) * 3
    first, again = receiver.wait_for(2)
    assert (again.method, again.path) == (first.method, first.path)
    assert again.json() == first.json()  # the same batch, sent once more
    assert pipeline.totals(dest) == {(DELIVERED, ""): len(events) * 3}
    assert jobs(pipeline) == []


def test_router_rules_and_replay_apply_before_the_runtime(
    pipeline: Pipeline, receiver: Receiver, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The integrations object (by the package's display name), a destination filter and a
    replay of a disabled instance treat a package destination as any other."""
    from datetime import UTC, datetime

    from headwater import reasons
    from headwater.delivery.replay import replay
    from headwater.pipeline.consumer import Consumer
    from headwater.store.archive import Archive, ArchiveWriter

    case = next(c for c in CASES if c.directory == "customerio")
    wire(pipeline, case, receiver, monkeypatch)
    dest = instance(pipeline, case, mappings=1)  # createUpdatePerson, on identify calls
    pipeline.store.update(
        dest.id, filters=[{"if": "traits.plan = 'free'", "actions": [{"type": "DROP"}]}]
    )
    identify = next(e for e in case.events if e["type"] == "identify")
    kept = {**identify, "messageId": "kept"}
    off = {**identify, "messageId": "off", "integrations": {dest.definition.name: False}}
    free = {**identify, "messageId": "free", "traits": {**identify["traits"], "plan": "free"}}
    pipeline.log.register("archive")
    pipeline.send(kept, off, free)
    assert pipeline.deliver() == 1
    [request] = receiver.wait_for(1)
    assert [item["identifiers"]["id"] for item in request.json()["batch"]] == [identify["userId"]]
    rule = pipeline.store.require(dest.id).filters[0]
    assert pipeline.totals(dest) == {
        (DELIVERED, ""): 1,
        (reasons.FILTERED_AT_DESTINATION, reasons.FILTERED_BY_INTEGRATIONS_OBJECT): 1,
        (reasons.FILTERED_AT_DESTINATION, f"FILTERED_BY_RULES:{rule.id}"): 1,
    }

    archiver = Consumer(pipeline.log, "archive", ArchiveWriter(tmp_path), owner="archive")
    while archiver.run_once():
        pass
    disabled = pipeline.store.update(dest.id, enabled=False)
    start = datetime.fromtimestamp(pipeline.clock.now - 3600, UTC)
    end = datetime.fromtimestamp(pipeline.clock.now + 3600, UTC)
    result = replay(Archive(tmp_path), pipeline.delivery.queue, disabled, start, end)
    assert (result.read, result.queued) == (3, 1)
    assert pipeline.deliver() == 1
    _, replayed = receiver.wait_for(2)
    assert replayed.json() == request.json()


def test_a_hanging_vendor_does_not_slow_another_package_destination(
    pipeline: Pipeline, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Customer.io's API hangs; Braze's lane, on the same runtime process, delivers at once."""
    customerio = next(c for c in CASES if c.directory == "customerio")
    braze = next(c for c in CASES if c.directory == "braze")
    hanging = Receiver()
    try:
        pipeline.delivery = DeliveryEngine(
            pipeline.engine,
            pipeline.cache(),
            owner="worker-1",
            clock=pipeline.clock,
            redirects=Redirects(
                {
                    **{prefix: hanging.url for prefix in customerio.vendor},
                    **{prefix: receiver.url for prefix in braze.vendor},
                }
            ),
            actions_dir=Path(os.environ["HEADWATER_ACTIONS_DIR"]),
        )
        hanging.default = replace(answer(customerio), delay=8.0)
        receiver.default = answer(braze)
        slow, fast = instance(pipeline, customerio, 1), instance(pipeline, braze, 1)
        identify = next(e for e in braze.events if e["type"] == "identify")
        pipeline.send(identify)

        async def scenario() -> float:
            delivering = asyncio.create_task(pipeline.delivery.run_until_idle())
            await asyncio.to_thread(hanging.wait_for, 1)
            started = time.monotonic()
            await asyncio.to_thread(receiver.wait_for, 1)
            waited = time.monotonic() - started
            try:
                await delivering
            finally:
                await pipeline.delivery.close()
            return waited

        assert asyncio.run(scenario()) < 4.0  # well inside the other's 8 s hang
        assert pipeline.totals(fast) == {(DELIVERED, ""): 1}
        assert pipeline.totals(slow) == {(DELIVERED, ""): 1}
    finally:
        hanging.close()


def test_an_instances_concurrency_and_rate_limit_hold_for_package_calls(
    pipeline: Pipeline, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lane's delivery options bound the runtime's calls as they bound native requests."""
    case = next(c for c in CASES if c.directory == "slack")  # one request per event
    wire(pipeline, case, receiver, monkeypatch)
    receiver.default = replace(answer(case), delay=0.2)
    dest = instance(pipeline, case, mappings=1)
    pipeline.store.update(dest.id, delivery={"concurrency": 2})
    track_event = next(e for e in case.events if e["type"] == "track")
    pipeline.send(*[{**track_event, "messageId": f"c-{n}"} for n in range(6)])
    pipeline.deliver()
    arrivals = sorted(r.at for r in receiver.requests)
    assert len(arrivals) == 6
    assert arrivals[2] - arrivals[0] >= 0.15  # the third waited for a free slot

    receiver.default = answer(case)
    receiver.requests.clear()
    pipeline.store.update(dest.id, delivery={"rate_limit_per_second": 10})
    pipeline.send(*[{**track_event, "messageId": f"r-{n}"} for n in range(15)])
    started = time.monotonic()
    pipeline.deliver()
    assert len(receiver.requests) == 15
    assert time.monotonic() - started >= 1.2  # 15 calls at 10 a second
