"""Functions' usage (§11.1 "Usage & billing"), the Enable Function toggle of insert functions
(§11.4) and destination functions under their instance's rate limit: the delivery engine of
tests/delivery with the real sandbox, posting to loopback receivers."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from headwater.delivery.engine import DeliveryEngine
from headwater.delivery.functions import FunctionCatalog
from headwater.destinations import registry
from headwater.functions.contract import Invocation
from headwater.functions.logs import FunctionLogs
from headwater.functions.store import FunctionStore
from headwater.functions.usage import FunctionUsage, MonthUsage, Tally, billed_ms, tally
from tests.delivery.conftest import Pipeline, track
from tests.functions.sandboxes import sandbox_runtime
from tests.functions.test_delivery_functions import (
    ENRICH_JS,
    POST_JS,
    destination_function,
    queued,
    with_insert,
)
from tests.support.receiver import Answer, Receiver

pytestmark = pytest.mark.parametrize("engine", ["sqlite"], indirect=True)

SLOW_RETRY_JS = """
async function onTrack(event, settings) {
  await new Promise(r => setTimeout(r, 150))
  const r = await fetch(settings.url, {method: 'POST', body: JSON.stringify(event)})
  if (r.status >= 500) throw new RetryError('HTTP Status ' + r.status)
}
"""


@pytest.fixture
def usage(pipeline: Pipeline) -> FunctionUsage:
    return FunctionUsage(pipeline.workspace, clock=pipeline.clock)


@pytest.fixture
def functions(pipeline: Pipeline, usage: FunctionUsage) -> Iterator[FunctionStore]:
    """The pipeline's delivery engine with the functions' store, usage and a real sandbox."""
    store = FunctionStore(pipeline.workspace)
    catalog = FunctionCatalog(store, FunctionLogs(pipeline.workspace, clock=pipeline.clock), usage)
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


def usage_writes(pipeline: Pipeline) -> list[str]:
    """Statements that write ``function_usage``, as they run."""
    seen: list[str] = []

    def listen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "function_usage" in statement and statement.lstrip().upper().startswith("INSERT"):
            seen.append(statement)

    sa.event.listen(pipeline.engine, "before_cursor_execute", listen)
    return seen


# --- usage ----------------------------------------------------------------------------------


def test_ac103_a_retried_destination_function_is_billed_for_every_attempt(
    pipeline: Pipeline, functions: FunctionStore, usage: FunctionUsage, receiver: Receiver
) -> None:
    """AC-103 ("billing counts retries"): each attempt of a retried destination function adds
    one invocation and its execution time (here at least its 150 ms wait) to the month."""
    receiver.answer(Answer(status=503), Answer(status=503))
    destination = destination_function(pipeline, functions, SLOW_RETRY_JS, receiver)
    pipeline.send(track())
    seen: list[MonthUsage] = []
    attempts = 0
    while True:
        pipeline.deliver()
        attempts += 1
        [month] = usage.months("post-to-api")
        seen.append(month)
        if not queued(pipeline):
            break
        [job] = queued(pipeline)
        pipeline.clock.now = job.next_attempt_at_ms / 1000
        assert attempts < 5
    assert attempts == 3 and len(receiver.requests) == 3
    assert [m.invocations for m in seen] == [1, 2, 3]
    assert [m.errors for m in seen] == [1, 2, 2]
    times = [m.execution_ms for m in seen]
    assert times[0] >= 150 and times[1] - times[0] >= 150 and times[2] - times[1] >= 150
    assert month.month == "2023-11"  # the test clock's month (UTC)
    assert pipeline.totals(destination)[("delivered", "")] == 1


def test_a_claims_invocations_are_added_in_one_write(
    pipeline: Pipeline, functions: FunctionStore, usage: FunctionUsage, receiver: Receiver
) -> None:
    destination_function(pipeline, functions, POST_JS, receiver)
    pipeline.send(*[track() for _ in range(5)])
    writes = usage_writes(pipeline)
    pipeline.deliver()
    assert len(receiver.requests) == 5
    assert len(writes) == 1  # one claim, one write: not one per event
    [month] = usage.months("post-to-api")
    assert (month.invocations, month.errors) == (5, 0)
    assert month.execution_ms >= 5  # each invocation at least a millisecond


def test_an_insert_functions_invocations_are_counted_too(
    pipeline: Pipeline, functions: FunctionStore, usage: FunctionUsage, receiver: Receiver
) -> None:
    with_insert(pipeline, functions, receiver)
    pipeline.send(track(), track(type="identify", traits={"plan": "pro"}))
    pipeline.deliver()
    [month] = usage.months("enrich")
    # The identify threw DropEvent: an error of the code, an invocation all the same.
    assert (month.invocations, month.errors) == (2, 1)


def test_usage_is_by_month_the_most_recent_first(
    pipeline: Pipeline, usage: FunctionUsage, functions: FunctionStore
) -> None:
    function = functions.create("f", "destination", "javascript", POST_JS)
    ok, failed = Invocation(value=None, duration_ms=2.2), Invocation(error="Error", message="x")
    usage.add(tally(function.id, [ok, ok, failed]))  # the same invocation object counts once
    pipeline.clock.advance(31 * 86400)
    usage.add({function.id: Tally(invocations=4, execution_ms=40, errors=0)})
    usage.add({function.id: Tally(invocations=1, execution_ms=3, errors=1)})
    assert usage.months("f") == [
        MonthUsage("2023-12", 5, 43, 1),
        MonthUsage("2023-11", 2, 4, 1),  # 2.2 ms billed as 3; the failure's 0 ms as 1
    ]
    assert usage.months(function.id) == usage.months("f")
    assert billed_ms(0.0) == 1 and billed_ms(1.0) == 1 and billed_ms(1.01) == 2


def test_the_allotment_warns_at_75_90_and_100_percent_once_a_month(
    pipeline: Pipeline, functions: FunctionStore, caplog: pytest.LogCaptureFixture
) -> None:
    usage = FunctionUsage(pipeline.workspace, clock=pipeline.clock, monthly_execution_ms=1000)
    a = functions.create("a", "destination", "javascript", POST_JS).id
    b = functions.create("b", "insert", "javascript", ENRICH_JS).id

    def spend(function: str, ms: int) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="headwater.functions.usage"):
            usage.add({function: Tally(invocations=1, execution_ms=ms)})
        return [r.getMessage() for r in caplog.records]

    assert spend(a, 700) == []
    [warned] = spend(b, 100)  # the workspace's time: both functions'
    assert "75%" in warned and "2023-11" in warned and "800 of 1000 ms" in warned
    assert spend(a, 50) == []
    crossed = spend(a, 400)
    assert len(crossed) == 2 and "90%" in crossed[0] and "100%" in crossed[1]
    assert spend(a, 5000) == []  # past it: nothing refused, nothing warned again
    assert usage.months("a")[0].invocations == 4
    pipeline.clock.advance(31 * 86400)
    [again] = spend(a, 760)
    assert "75%" in again and "2023-12" in again


def test_the_usage_of_an_unknown_function_is_not_found(usage: FunctionUsage) -> None:
    from headwater.errors import NotFoundError

    with pytest.raises(NotFoundError):
        usage.months("nope")


# --- the Enable Function toggle ---------------------------------------------------------------


def test_a_disabled_insert_function_lets_events_through_unmodified(
    pipeline: Pipeline, functions: FunctionStore, usage: FunctionUsage, receiver: Receiver
) -> None:
    """§11.4: an insert function must be enabled to process data; off, the destination gets
    the events as they came and the function is not called."""
    destination = with_insert(pipeline, functions, receiver)
    functions.attach_insert("hook", "enrich", {"label": "from-settings"}, enabled=False)
    attached = functions.insert_function("hook")
    assert attached is not None and not attached.enabled
    identify = track(type="identify", traits={"plan": "pro"})  # the function would drop it
    sent = track()
    pipeline.send(sent, identify)
    pipeline.deliver()
    got = {r.json()["messageId"]: r.json() for r in receiver.requests}
    assert set(got) == {sent["messageId"], identify["messageId"]}
    assert "message" not in got[sent["messageId"]]["properties"]
    assert usage.months("enrich") == []  # not called
    assert pipeline.totals(destination) == {("delivered", ""): 2}

    functions.attach_insert("hook", "enrich", {"label": "from-settings"})  # enabled again
    receiver.requests.clear()
    pipeline.send(track())
    pipeline.deliver()
    [request] = receiver.requests
    assert request.json()["properties"]["message"] == "Enriched"
    assert usage.months("enrich")[0].invocations == 1


def test_detaching_an_insert_function_resets_its_toggle(
    pipeline: Pipeline, functions: FunctionStore, receiver: Receiver
) -> None:
    with_insert(pipeline, functions, receiver)
    functions.attach_insert("hook", "enrich", {}, enabled=False)
    functions.attach_insert("hook", None)
    assert pipeline.store.require("hook").insert_function_enabled
    functions.attach_insert("hook", "enrich", {})
    attached = functions.insert_function("hook")
    assert attached is not None and attached.enabled


# --- the rate limit ---------------------------------------------------------------------------


def test_a_destination_functions_invocations_keep_its_rate_limit(
    pipeline: Pipeline, functions: FunctionStore, usage: FunctionUsage, receiver: Receiver
) -> None:
    """``delivery.rate_limit_per_second`` throttles a destination function's invocations as
    it throttles a native destination's requests: 8 events at 2 a second span 3.5 s (sent
    unthrottled, this machine's sandbox posts them within about a second)."""
    destination_function(
        pipeline, functions, POST_JS, receiver, delivery={"rate_limit_per_second": 2}
    )
    pipeline.send(*[track() for _ in range(8)])
    pipeline.deliver()
    arrivals = sorted(r.at for r in receiver.requests)
    assert len(arrivals) == 8, pipeline.totals(pipeline.store.require("internal-api"))
    assert arrivals[-1] - arrivals[0] >= 3.0  # seven gaps of 0.5 s
    assert usage.months("post-to-api")[0].invocations == 8
