"""Destination filters as a router stage: what reaches the destination, and what is counted."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from headwater import reasons
from headwater.store import schema
from tests.delivery.conftest import Pipeline, track
from tests.support.receiver import Receiver


def test_filters_drop_and_edit_per_destination(pipeline: Pipeline, receiver: Receiver) -> None:
    filtered = pipeline.add(
        "filtered",
        settings={"url": receiver.url + "/filtered"},
        filters=[
            {
                "title": "Only tracks with a user",
                "if": "length(userId) < 1",
                "actions": [{"type": "DROP"}],
            },
            {
                "title": "No email",
                "if": "all",
                "actions": [{"type": "DROP_PROPERTIES", "fields": {"properties": ["email"]}}],
            },
        ],
    )
    pipeline.add("plain", settings={"url": receiver.url + "/plain"})
    anonymous = track(userId=None, anonymousId="a-1")
    known = track(properties={"email": "jo@example.com", "plan": "pro"})
    pipeline.send(anonymous, known)
    pipeline.deliver()
    by_path: dict[str, list[dict[str, object]]] = {}
    for request in receiver.requests:
        by_path.setdefault(request.path, []).append(request.json())
    [sent] = by_path["/filtered"]
    assert sent["messageId"] == known["messageId"]
    assert sent["properties"] == {"plan": "pro"}
    # The other destination gets both events untouched.
    assert sorted(m["messageId"] for m in by_path["/plain"]) == sorted(  # type: ignore[type-var]
        [anonymous["messageId"], known["messageId"]]
    )
    assert {"email": "jo@example.com", "plan": "pro"} in [
        m["properties"] for m in by_path["/plain"]
    ]
    drop_id = filtered.filters[0].id
    assert (
        pipeline.totals(filtered)[(reasons.FILTERED_AT_DESTINATION, f"FILTERED_BY_RULES:{drop_id}")]
        == 1
    )


def test_ac068_unsupported_type_is_counted_before_any_filter(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    slack = pipeline.add(
        "slack",
        "slack",
        settings={"webhook_url": receiver.url + "/slack"},
        filters=[{"if": "all", "actions": [{"type": "DROP"}]}],
    )
    pipeline.send(track(type="screen", name="Home"))
    assert pipeline.totals(slack) == {
        (reasons.FILTERED_AT_DESTINATION, "UNSUPPORTED_EVENT_TYPE"): 1
    }


def test_ac056_a_stored_filter_that_does_not_parse_stops_every_event(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    hook = pipeline.add("hook", settings={"url": receiver.url + "/in"})
    broken = [{"id": "df_broken", "if": 'userId = oops"', "actions": [{"type": "DROP"}]}]
    with pipeline.workspace.writing() as conn:  # written by hand: the API would refuse it
        conn.execute(
            sa.update(schema.destinations)
            .where(schema.destinations.c.id == hook.id)
            .values(filters=broken)
        )
        pipeline.workspace.bump(conn)
    pipeline.send(track(), track())
    pipeline.deliver()
    assert receiver.requests == []
    assert pipeline.totals(hook) == {(reasons.FILTERED_AT_DESTINATION, "INTERNAL:df_broken"): 2}


def test_ac069_a_filter_applies_to_events_routed_after_it(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    pipeline.add("hook", settings={"url": receiver.url + "/in"})
    before = track()
    pipeline.send(before)  # queued before the filter exists
    pipeline.store.update("hook", filters=[{"if": "all", "actions": [{"type": "DROP"}]}])
    pipeline.send(track())
    pipeline.deliver()
    assert [r.json()["messageId"] for r in receiver.requests] == [before["messageId"]]


def test_replay_to_a_disabled_destination_still_applies_its_filters(
    pipeline: Pipeline, receiver: Receiver, tmp_path: Path
) -> None:
    from headwater.delivery.replay import replay
    from headwater.pipeline.consumer import Consumer
    from headwater.store.archive import Archive, ArchiveWriter

    pipeline.add(
        "hook",
        enabled=False,
        settings={"url": receiver.url + "/in"},
        filters=[{"if": "event = 'Page Scrolled'", "actions": [{"type": "DROP"}]}],
    )
    pipeline.log.register("archive")
    kept, dropped = track(), track(event="Page Scrolled")
    pipeline.send(kept, dropped)
    archiver = Consumer(pipeline.log, "archive", ArchiveWriter(tmp_path), owner="archive")
    while archiver.run_once():
        pass
    pipeline.deliver()
    assert receiver.requests == []  # disabled: nothing while it is off
    start = datetime.fromtimestamp(pipeline.clock.now - 3600, UTC)
    end = datetime.fromtimestamp(pipeline.clock.now + 3600, UTC)
    result = replay(
        Archive(tmp_path), pipeline.delivery.queue, pipeline.store.require("hook"), start, end
    )
    assert (result.read, result.queued) == (2, 1)
    rule = pipeline.store.require("hook").filters[0]
    assert result.filtered == {f"FILTERED_BY_RULES:{rule.id}": 1}
    pipeline.deliver()
    assert [r.json()["messageId"] for r in receiver.requests] == [kept["messageId"]]
