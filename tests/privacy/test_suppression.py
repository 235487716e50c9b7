"""Suppression at ingest: the chain stage over real records, as the worker's regulations set it."""

from __future__ import annotations

import msgspec
from sqlalchemy.engine import Engine

from headwater import reasons
from headwater.privacy.regulations import SOURCE, WORKSPACE, Regulations
from headwater.privacy.runner import DeletionRunner
from headwater.privacy.suppression import SuppressionStage
from headwater.store.record import LogRecord
from tests.support.clock import Clock


def record(source: str, *user_ids: str | None) -> LogRecord:
    events = [
        msgspec.Raw(
            msgspec.json.encode(
                {"type": "track", "event": "Viewed", "messageId": f"m{i}", "userId": user_id}
                if user_id is not None
                else {"type": "track", "event": "Viewed", "messageId": f"m{i}", "anonymousId": "a"}
            )
        )
        for i, user_id in enumerate(user_ids)
    ]
    return LogRecord(
        v=1, workspace_id="ws", source_id=source, received_at="2026-01-01T00:00:00Z", events=events
    )


def users(found: LogRecord) -> list[str | None]:
    return [msgspec.json.decode(raw).get("userId") for raw in found.events]


def suppress(
    engine: Engine, clock: Clock, scope: str, type_: str, *ids: str, source: str = ""
) -> None:
    Regulations(engine, clock=clock).create(
        "ws", scope, type_, "USER_ID", list(ids), source_id=source or None
    )
    clock.advance(1)
    DeletionRunner(engine, [], [], clock=clock).run_due()


def test_a_suppressed_users_events_leave_the_record_counted_without_a_name(
    engine: Engine, clock: Clock
) -> None:
    stage = SuppressionStage(engine, refresh_interval=0)
    before = [record("web", "u1", "u9")]
    stage.process(0, before)
    assert users(before[0]) == ["u1", "u9"]  # a regulation takes effect once processed

    Regulations(engine, clock=clock).create("ws", WORKSPACE, "SUPPRESS_ONLY", "USER_ID", ["u1"])
    waiting = [record("web", "u1")]
    stage.process(0, waiting)
    assert users(waiting[0]) == ["u1"]
    DeletionRunner(engine, [], [], clock=clock).run_due()

    records = [record("web", "u1", "u9", None, "u1"), record("app", "u1"), record("web", "u9")]
    untouched = records[2].events
    stage.process(0, records)
    assert users(records[0]) == ["u9", None]
    assert records[0].filtered == {reasons.SUPPRESSED: 2}
    assert records[1].events == [] and records[1].filtered == {reasons.SUPPRESSED: 1}
    assert records[2].events is untouched and records[2].filtered == {}
    assert "u1" not in repr(records[0].filtered)


def test_a_source_suppression_holds_in_that_source_only(engine: Engine, clock: Clock) -> None:
    suppress(engine, clock, SOURCE, "SUPPRESS_ONLY", "u5", source="web")
    stage = SuppressionStage(engine, refresh_interval=0)
    records = [record("web", "u5"), record("app", "u5"), record("web", "u6")]
    stage.process(0, records)
    assert [users(r) for r in records] == [[], ["u5"], ["u6"]]


def test_unsuppress_ends_it_and_a_deleting_type_suppresses_too(
    engine: Engine, clock: Clock
) -> None:
    stage = SuppressionStage(engine, refresh_interval=0)
    suppress(engine, clock, WORKSPACE, "SUPPRESS_ONLY", "u1")
    suppress(engine, clock, WORKSPACE, "SUPPRESS_WITH_DELETE_INTERNAL", "u2")
    suppress(engine, clock, SOURCE, "SUPPRESS_ONLY", "u3", source="web")
    both = [record("web", "u1", "u2", "u3", "u4")]
    stage.process(0, both)
    assert users(both[0]) == ["u4"]

    suppress(engine, clock, WORKSPACE, "UNSUPPRESS", "u1", "u3")  # every scope's
    after = [record("web", "u1", "u2", "u3", "u4")]
    stage.process(0, after)
    assert users(after[0]) == ["u1", "u3", "u4"]


def test_the_sets_reload_only_when_the_version_moves(engine: Engine, clock: Clock) -> None:
    checks = Clock(0)
    stage = SuppressionStage(engine, clock=checks, refresh_interval=1.0)
    stage.process(0, [record("web", "u1")])
    suppress(engine, clock, WORKSPACE, "SUPPRESS_ONLY", "u1")
    within = [record("web", "u1")]
    stage.process(0, within)
    assert users(within[0]) == ["u1"]  # checked less than a second ago
    checks.advance(1)
    later = [record("web", "u1")]
    stage.process(0, later)
    assert users(later[0]) == []
