"""Destination functions and insert functions in the delivery path (§11.3, §11.4, §11.5):
the router, the queues and the delivery engine of tests/delivery, with functions run by the
real sandbox, posting to loopback receivers (AC-100 … AC-107)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from headwater import reasons
from headwater.delivery.deletion import DestinationEraser
from headwater.delivery.engine import DeliveryEngine
from headwater.delivery.functions import FunctionCatalog
from headwater.delivery.report import event_delivery
from headwater.destinations import registry
from headwater.destinations.redirects import Redirects
from headwater.functions.logs import FunctionLogs
from headwater.functions.store import FunctionStore
from headwater.privacy.erasure import Erasure, Subjects
from headwater.store import schema
from tests.delivery.conftest import Pipeline, track
from tests.functions.sandboxes import sandbox_runtime
from tests.support.receiver import Answer, Receiver

pytestmark = pytest.mark.parametrize("engine", ["sqlite"], indirect=True)

# Posts each event to settings.url; Segment's canonical error pattern (§11.3).
POST_JS = """
async function onTrack(event, settings) {
  console.log('sending', event.messageId)
  const r = await fetch(settings.url, {method: 'POST', body: JSON.stringify(event),
                                       headers: {'x-api-key': settings.apiKey}})
  if (r.status >= 500 || r.status === 429) throw new RetryError('HTTP Status ' + r.status)
  if (r.status >= 400) throw new ValidationError('HTTP Status ' + r.status)
}
"""
POST_PY = """
import json

def on_track(event, settings):
    print('sending', event['messageId'])
    r = fetch(settings['url'], method='POST', body=json.dumps(event),
              headers={'x-api-key': settings['apiKey']})
    if r.status >= 500 or r.status == 429:
        raise RetryError('HTTP Status ' + str(r.status))
    if r.status >= 400:
        raise ValidationError('HTTP Status ' + str(r.status))
"""
ENRICH_JS = """
async function onTrack(event, settings) {
  if (event.event === 'Blocked') throw new ValidationError('a filtered event reached me')
  event.properties.message = 'Enriched'
  event.properties.by = settings.label
  return event
}
async function onIdentify(event, settings) { throw new DropEvent('no identifies here') }
"""
ENRICH_PY = """
def on_track(event, settings):
    if event.get('event') == 'Blocked':
        raise ValidationError('a filtered event reached me')
    event['properties']['message'] = 'Enriched'
    event['properties']['by'] = settings['label']
    return event

def on_identify(event, settings):
    raise DropEvent('no identifies here')
"""
DECLARED = [
    {"name": "url", "label": "URL", "type": "string", "required": True},
    {"name": "apiKey", "label": "API key", "type": "string", "secret": True},
]
SECRET = "sk-live-do-not-show-1234"


@pytest.fixture
def functions(pipeline: Pipeline) -> Iterator[FunctionStore]:
    """The pipeline's delivery engine with the functions' store and a real sandbox."""
    store = FunctionStore(pipeline.workspace)
    catalog = FunctionCatalog(store, FunctionLogs(pipeline.workspace, clock=pipeline.clock))
    registry.use_functions(catalog)
    pipeline.delivery = DeliveryEngine(
        pipeline.engine,
        pipeline.cache(),
        owner="worker-1",
        clock=pipeline.clock,
        functions=catalog,
        sandbox=sandbox_runtime,
    )
    try:
        yield store
    finally:
        registry.use_functions(None)


def destination_function(
    pipeline: Pipeline, functions: FunctionStore, code: str, receiver: Receiver, **extra: Any
) -> Any:
    language = extra.pop("language", "javascript")
    functions.create("post-to-api", "destination", language, code, settings=DECLARED)
    return pipeline.add(
        "internal-api",
        "function:post-to-api",
        settings={"url": receiver.url + "/api", "apiKey": SECRET},
        **extra,
    )


def queued(pipeline: Pipeline) -> list[Any]:
    with pipeline.engine.connect() as conn:
        return list(conn.execute(sa.select(schema.delivery_jobs)))


def deliver_batching(pipeline: Pipeline, destination: Any) -> int:
    """One claim as the running engine makes it: a batching destination waits to fill up."""

    async def once() -> int:
        try:
            return await pipeline.delivery.deliver(destination, wait_for_batch=True)
        finally:
            await pipeline.delivery.close()

    return asyncio.run(once())


# --- destination functions ------------------------------------------------------------------


@pytest.mark.parametrize(("language", "code"), [("javascript", POST_JS), ("python", POST_PY)])
def test_a_destination_function_posts_each_event(
    pipeline: Pipeline,
    functions: FunctionStore,
    receiver: Receiver,
    language: str,
    code: str,
) -> None:
    destination = destination_function(pipeline, functions, code, receiver, language=language)
    sent = [track(), track()]
    pipeline.send(*sent)
    pipeline.deliver()
    got = sorted(r.json()["messageId"] for r in receiver.requests)
    assert got == sorted(e["messageId"] for e in sent)
    assert receiver.requests[0].headers["x-api-key"] == SECRET
    assert pipeline.totals(destination) == {("delivered", ""): 2}
    assert queued(pipeline) == []


def test_a_destination_function_answers_to_its_instance_and_display_names(
    pipeline: Pipeline, functions: FunctionStore, receiver: Receiver
) -> None:
    destination = destination_function(pipeline, functions, POST_JS, receiver)
    assert destination.definition.name == "post-to-api (test)"
    by_instance = track(integrations={"All": False, "internal-api": True})
    by_display = track(integrations={"All": False, "post-to-api (test)": True})
    off = track(integrations={"post-to-api (test)": False})
    pipeline.send(by_instance, by_display, off)
    pipeline.deliver()
    got = sorted(r.json()["messageId"] for r in receiver.requests)
    assert got == sorted([by_instance["messageId"], by_display["messageId"]])
    totals = pipeline.totals(destination)
    assert totals[(reasons.FILTERED_AT_DESTINATION, reasons.FILTERED_BY_INTEGRATIONS_OBJECT)] == 1


def test_ac100_a_missing_handler_is_unsupported_event_type_and_not_retried(
    pipeline: Pipeline, functions: FunctionStore, receiver: Receiver
) -> None:
    """AC-100: only onTrack; an identify → UNSUPPORTED_EVENT_TYPE, discarded, not retried."""
    destination = destination_function(pipeline, functions, POST_JS, receiver)
    pipeline.send(track(type="identify", traits={"plan": "pro"}))
    pipeline.deliver()
    assert receiver.requests == []
    assert pipeline.totals(destination) == {
        ("failed_delivery", "errors.discarded.UNSUPPORTED_EVENT_TYPE"): 1
    }
    assert queued(pipeline) == []


def test_ac101_validation_error_is_message_rejected_with_console_logs(
    pipeline: Pipeline, functions: FunctionStore, receiver: Receiver
) -> None:
    """AC-101: ValidationError → MESSAGE_REJECTED, not retried; Event Delivery's sample shows
    the error and the console lines, secrets redacted; the function's log has it too."""
    code = """
async function onTrack(event, settings) {
  console.log('checking user', event.userId, 'with', settings.apiKey)
  await fetch(settings.url + '?key=' + settings.apiKey)
  throw new ValidationError('User ID is invalid')
}
"""
    destination = destination_function(pipeline, functions, code, receiver)
    sent = track()
    pipeline.send(sent)
    pipeline.deliver()
    assert pipeline.totals(destination) == {
        ("failed_delivery", "errors.discarded.MESSAGE_REJECTED"): 1
    }
    assert queued(pipeline) == []
    report = event_delivery(pipeline.engine, destination, now=pipeline.clock.now)
    [error] = report["errors"]
    [sample] = error["samples"]
    assert sample["youSent"]["messageId"] == sent["messageId"]
    assert sample["detail"] == "ValidationError: User ID is invalid"
    shown = sample["function"]
    assert shown["error"] == "ValidationError"
    assert shown["logs"] == [["log", f"checking user {sent['userId']} with [redacted]"]]
    [request] = shown["requests"]
    assert request["status"] == 200 and SECRET not in request["url"]
    assert SECRET not in str(report)
    [logged] = FunctionLogs(pipeline.workspace, clock=pipeline.clock).recent("post-to-api")
    assert SECRET not in str(logged.shown())
    assert "User ID is invalid" in str(logged.shown())


def test_ac102_retry_error_is_retried_with_backoff_for_four_hours(
    pipeline: Pipeline, functions: FunctionStore, receiver: Receiver
) -> None:
    """AC-102: RetryError('HTTP Status 503') → retried with randomized exponential backoff
    until the 4-hour window has passed, then discarded as expired."""
    receiver.default = Answer(status=503)
    destination = destination_function(pipeline, functions, POST_JS, receiver)
    pipeline.send(track())
    pipeline.deliver()
    assert pipeline.totals(destination) == {("retry", "errors.awaiting-retry.RETRY_ERROR"): 1}
    [job] = queued(pipeline)
    assert job.attempts == 1
    first_gap = job.next_attempt_at_ms - int(pipeline.clock.now * 1000)
    assert 2_000 <= first_gap <= 8_000  # 5 s ± 50 %
    attempts = 1
    while queued(pipeline):
        [job] = queued(pipeline)
        pipeline.clock.now = job.next_attempt_at_ms / 1000
        pipeline.deliver()
        attempts += 1
        assert attempts < 40
    assert len(receiver.requests) == attempts
    assert attempts > 5  # exponential, capped at an hour: many attempts within four hours
    totals = pipeline.totals(destination)
    assert totals[("failed_delivery", "errors.expired.RETRY_ERROR")] == 1


def test_ac103_a_handler_running_six_seconds_times_out_and_is_retried(
    pipeline: Pipeline, functions: FunctionStore, receiver: Receiver
) -> None:
    """AC-103: a 6 s handler passes the 5 s deadline → FUNCTION_TIMEOUT, retried."""
    code = "async function onTrack(event) { await new Promise(r => setTimeout(r, 6000)) }"
    destination = destination_function(pipeline, functions, code, receiver)
    pipeline.send(track())
    pipeline.deliver()
    assert pipeline.totals(destination) == {("retry", "errors.awaiting-retry.FUNCTION_TIMEOUT"): 1}
    [job] = queued(pipeline)
    assert job.attempts == 1


BATCH_JS = """
async function onBatch(events, settings) {
  await fetch(settings.url, {method: 'POST', body: JSON.stringify(events.map(e => e.messageId))})
  return %s
}
async function onTrack(event) { throw new Error('onBatch should have had it') }
"""
AC104_ANSWER = (
    '[{"status":200},{"status":400,"errormessage":"Bad Request"},{"status":200},'
    '{"status":500,"errormessage":"Error processing request"},'
    '{"status":500,"errormessage":"Error processing request"},{"status":200}]'
)


def test_ac104_onbatch_per_item_results_retry_only_the_5xx_items(
    pipeline: Pipeline, functions: FunctionStore, receiver: Receiver
) -> None:
    """AC-104: onBatch answers per event; only events 4 and 5 (500) are retried, event 2
    (400) is discarded, the others delivered."""
    destination = destination_function(pipeline, functions, BATCH_JS % AC104_ANSWER, receiver)
    assert destination.definition.batching is not None
    sent = [track() for _ in range(6)]
    pipeline.send(*sent)
    pipeline.deliver()
    [request] = receiver.requests
    assert request.json() == [e["messageId"] for e in sent]
    totals = pipeline.totals(destination)
    assert totals[("delivered", "")] == 3
    assert totals[("failed_delivery", "errors.discarded.400")] == 1
    assert totals[("retry", "errors.awaiting-retry.500")] == 2
    retried = sorted(job.message_id for job in queued(pipeline))
    assert retried == sorted([sent[3]["messageId"], sent[4]["messageId"]])
    report = event_delivery(pipeline.engine, destination, now=pipeline.clock.now)
    discarded = next(e for e in report["errors"] if e["code"] == "errors.discarded.400")
    assert discarded["samples"][0]["detail"] == "Bad Request"


def test_ac105_batches_of_twenty_at_once_or_what_came_within_ten_seconds(
    pipeline: Pipeline, functions: FunctionStore, receiver: Receiver
) -> None:
    """AC-105: 20 events within 2 s → one onBatch call of 20; 3 events then silence → no
    call before 10 s, then one call of 3."""
    destination = destination_function(pipeline, functions, BATCH_JS % "undefined", receiver)
    twenty = [track() for _ in range(20)]
    for event in twenty:
        pipeline.send(event)
        pipeline.clock.advance(0.1)  # 20 events within 2 s
    assert deliver_batching(pipeline, destination) == 20
    [request] = receiver.requests
    assert len(request.json()) == 20
    three = [track() for _ in range(3)]
    pipeline.send(*three)
    assert deliver_batching(pipeline, destination) == 0  # the batch may still fill up
    pipeline.clock.advance(5)
    assert deliver_batching(pipeline, destination) == 0
    pipeline.clock.advance(5)
    assert deliver_batching(pipeline, destination) == 3
    assert len(receiver.requests) == 2
    assert receiver.requests[1].json() == [e["messageId"] for e in three]
    assert pipeline.totals(destination) == {("delivered", ""): 23}


def test_a_batch_size_raises_the_onbatch_batch_up_to_400(
    pipeline: Pipeline, functions: FunctionStore, receiver: Receiver
) -> None:
    destination = destination_function(
        pipeline, functions, BATCH_JS % "undefined", receiver, delivery={"batch_size": 50}
    )
    pipeline.send(*[track() for _ in range(60)])
    assert deliver_batching(pipeline, destination) == 50
    assert len(receiver.requests[0].json()) == 50


def test_ondelete_of_a_destination_function_gets_segments_delete_event(
    pipeline: Pipeline, functions: FunctionStore, receiver: Receiver
) -> None:
    code = """
async function onDelete(event, settings) {
  const r = await fetch(settings.url, {method: 'POST', body: JSON.stringify(event)})
  if (r.status >= 400) throw new RetryError('HTTP Status ' + r.status)
}
"""
    destination = destination_function(pipeline, functions, code, receiver)
    subjects = Subjects(user_ids=frozenset({"u-1", "u-2"}), anonymous_ids=frozenset())
    eraser = DestinationEraser(destination, pipeline.delivery, Redirects())
    eraser.erase(Erasure("reg-1", "ws", subjects, created_at=1.0))
    got = [r.json() for r in receiver.requests]
    assert got == [
        {"type": "delete", "userId": "u-1", "context": {}},
        {"type": "delete", "userId": "u-2", "context": {}},
    ]


# --- insert functions -----------------------------------------------------------------------


def with_insert(
    pipeline: Pipeline,
    functions: FunctionStore,
    receiver: Receiver,
    *,
    language: str = "javascript",
    code: str = ENRICH_JS,
    type_: str = "webhook",
    **extra: Any,
) -> Any:
    functions.create(
        "enrich",
        "insert",
        language,
        code,
        settings=[{"name": "label", "label": "Label", "type": "string"}],
    )
    settings = extra.pop("settings", {"url": receiver.url + "/hook"})
    destination = pipeline.add("hook", type_, settings=settings, **extra)
    functions.attach_insert("hook", "enrich", {"label": "from-settings"})
    return pipeline.store.require(destination.id)


@pytest.mark.parametrize(("language", "code"), [("javascript", ENRICH_JS), ("python", ENRICH_PY)])
def test_ac106_an_insert_function_enriches_drops_and_runs_after_filters(
    pipeline: Pipeline,
    functions: FunctionStore,
    receiver: Receiver,
    language: str,
    code: str,
) -> None:
    """AC-106: onTrack's enriched event reaches the destination; an identify thrown out with
    DropEvent is not delivered ("Filtered at insert function"); an event a destination
    filter drops never reaches the insert function."""
    destination = with_insert(
        pipeline,
        functions,
        receiver,
        language=language,
        code=code,
        filters=[{"if": 'event = "Blocked"', "actions": [{"type": "DROP"}]}],
    )
    enriched = track()
    dropped = track(type="identify", traits={"plan": "pro"})
    filtered = track(event="Blocked")
    pipeline.send(enriched, dropped, filtered)
    pipeline.deliver()
    [request] = receiver.requests
    body = request.json()
    assert body["messageId"] == enriched["messageId"]
    assert body["properties"]["message"] == "Enriched"
    assert body["properties"]["by"] == "from-settings"
    totals = pipeline.totals(destination)
    assert totals == {
        ("delivered", ""): 1,
        (reasons.FILTERED_AT_DESTINATION, reasons.FILTERED_AT_INSERT_FUNCTION): 1,
        (reasons.FILTERED_AT_DESTINATION, f"FILTERED_BY_RULES:{destination.filters[0].id}"): 1,
    }
    report = event_delivery(pipeline.engine, destination, now=pipeline.clock.now)
    assert report["filtered"][reasons.FILTERED_AT_INSERT_FUNCTION] == 1
    assert queued(pipeline) == []
    # The filtered event never reached the function: had it, the function would have thrown
    # (MESSAGE_REJECTED in the totals above) and its log would hold the error.
    assert FunctionLogs(pipeline.workspace, clock=pipeline.clock).recent("enrich") == []


def test_ac107_an_insert_function_cannot_make_an_event_match_a_trigger(
    pipeline: Pipeline, functions: FunctionStore, receiver: Receiver
) -> None:
    """AC-107: trigger ``event = "A"``, an insert function renaming "B" to "A": an input "B"
    is not delivered (NO_MATCHING_MAPPING) — triggers see the original event."""
    rename = """
async function onTrack(event) { if (event.event === 'B') event.event = 'A'; return event }
"""
    mapping = {
        "name": "A only",
        "enabled": True,
        "trigger": 'event = "A"',
        "action": "send",
        "fields": {
            "url": receiver.url + "/a",
            "method": "POST",
            "data": {"event": {"@path": "$.event"}},
        },
    }
    destination = with_insert(
        pipeline,
        functions,
        receiver,
        code=rename,
        type_="webhook-actions",
        settings={},
        mappings=[mapping],
    )
    pipeline.send(track(event="B"), track(event="A"))
    pipeline.deliver()
    # Only the event that was "A" on arrival; "B" renamed would have matched, but never ran.
    assert [r.json() for r in receiver.requests] == [{"event": "A"}]
    totals = pipeline.totals(destination)
    assert totals[(reasons.FILTERED_AT_DESTINATION, reasons.NO_MATCHING_MAPPING)] == 1
    assert totals[("delivered", "")] == 1


def test_insert_function_errors_follow_segments_codes(
    pipeline: Pipeline, functions: FunctionStore, receiver: Receiver
) -> None:
    """A returned non-object → MESSAGE_REJECTED; RetryError → retried; a missing handler →
    UNSUPPORTED_EVENT_TYPE; each failure in the function's log."""
    code = """
async function onTrack(event) {
  if (event.event === 'Nothing') return
  if (event.event === 'Later') throw new RetryError('not now')
  return event
}
"""
    destination = with_insert(pipeline, functions, receiver, code=code)
    pipeline.send(track(event="Nothing"), track(event="Later"), track(type="page", name="Home"))
    pipeline.deliver()
    assert receiver.requests == []
    assert pipeline.totals(destination) == {
        ("failed_delivery", "errors.discarded.MESSAGE_REJECTED"): 1,
        ("retry", "errors.awaiting-retry.RETRY_ERROR"): 1,
        ("failed_delivery", "errors.discarded.UNSUPPORTED_EVENT_TYPE"): 1,
    }
    logged = FunctionLogs(pipeline.workspace, clock=pipeline.clock).recent("enrich")
    assert len(logged) == 2  # RetryError and EventNotSupported; the bad return is not a throw


def test_an_insert_function_onbatch_keeps_what_it_returns(
    pipeline: Pipeline, functions: FunctionStore, receiver: Receiver
) -> None:
    code = """
async function onBatch(events, settings) {
  return events.filter(e => e.event !== 'Noise').map(e => ({...e, properties: {kept: true}}))
}
"""
    destination = with_insert(pipeline, functions, receiver, code=code)
    pipeline.send(track(), track(event="Noise"), track())
    pipeline.deliver()
    assert [r.json()["properties"] for r in receiver.requests] == [{"kept": True}] * 2
    assert pipeline.totals(destination) == {
        ("delivered", ""): 2,
        (reasons.FILTERED_AT_DESTINATION, reasons.FILTERED_AT_INSERT_FUNCTION): 1,
    }


def test_an_insert_function_runs_before_a_destination_function(
    pipeline: Pipeline, functions: FunctionStore, receiver: Receiver
) -> None:
    destination = destination_function(pipeline, functions, POST_JS, receiver)
    label = [{"name": "label", "label": "Label", "type": "string"}]
    functions.create("enrich", "insert", "javascript", ENRICH_JS, settings=label)
    functions.attach_insert(destination.id, "enrich", {"label": "inserted"})
    receiver.answer(Answer(status=200), Answer(status=400))
    pipeline.send(track(), track(type="identify"), track())
    pipeline.deliver()
    assert [r.json()["properties"]["by"] for r in receiver.requests] == ["inserted"] * 2
    assert pipeline.totals(destination) == {
        ("delivered", ""): 1,
        ("failed_delivery", "errors.discarded.MESSAGE_REJECTED"): 1,
        (reasons.FILTERED_AT_DESTINATION, reasons.FILTERED_AT_INSERT_FUNCTION): 1,
    }
    # The destination function's error (after the insert function) is in the sample.
    report = event_delivery(pipeline.engine, destination, now=pipeline.clock.now)
    [sample] = report["errors"][0]["samples"]
    assert sample["function"]["message"] == "HTTP Status 400"


def test_the_event_tester_does_not_apply_insert_functions(
    pipeline: Pipeline, functions: FunctionStore, receiver: Receiver
) -> None:
    """Segment: the Event Tester does not run insert functions (§11.4)."""
    destination = with_insert(pipeline, functions, receiver)

    async def test() -> None:
        try:
            await pipeline.delivery.test(destination, track(), [""])
        finally:
            await pipeline.delivery.close()

    asyncio.run(test())
    [request] = receiver.requests
    assert "message" not in request.json()["properties"]
