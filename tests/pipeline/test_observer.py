"""The observer stage: Source Overview counts, discard samples and the 500-entry debugger."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.pipeline import observer as observer_module
from headwater.pipeline.observer import Observer
from headwater.store import schema
from headwater.store.counters import (
    ACCEPTED,
    DUPLICATE,
    FAILED_ON_INGEST,
    RECEIVED,
    REQUEST_FLAG,
    CounterStore,
    Total,
    minute_of,
)
from headwater.store.database import database_url, open_engine
from headwater.store.debugger import DEBUGGER_CAP
from headwater.store.migrations import migrate
from headwater.timestamps import parse_timestamp
from tests.support.records import log_record
from tests.support.waiting import wait_for

T0 = "2024-03-05T10:00:10.123Z"
T1 = "2024-03-05T10:01:30.000Z"


def event(message_id: str, received_at: str = T0, **extra: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Signed Up",
        "userId": "u1",
        "messageId": message_id,
        "receivedAt": received_at,
        **extra,
    }


def record(
    events: list[dict[str, Any]] | None = None,
    dropped: list[dict[str, Any]] | None = None,
    duplicates: int = 0,
    source: str = "src_a",
    received_at: str = T0,
    flags: list[str] | None = None,
) -> bytes:
    return log_record(
        source,
        received_at,
        events or [],
        dropped=dropped or [],
        duplicates=duplicates,
        flags=flags or [],
    )


def drop(reason: str, message: Any) -> dict[str, Any]:
    return {"reason": reason, "detail": f"why: {reason}", "message": message}


def debugger_rows(engine: Engine, source: str = "src_a") -> list[Any]:
    t = schema.debugger_entries
    with engine.connect() as conn:
        return list(conn.execute(sa.select(t).where(t.c.source_id == source).order_by(t.c.id)))


def test_counts_every_outcome_of_a_request(engine: Engine) -> None:
    observe = Observer(engine)
    observe(
        [
            (
                0,
                1,
                record(
                    [event("m1"), event("m2")],
                    [drop("no_user_anon_id", {"type": "track"})],
                    duplicates=3,
                    flags=["multi_user_error"],
                ),
            ),
            (
                3,
                7,
                record(
                    [event("m3")],
                    [
                        drop("no_user_anon_id", {"type": "page"}),
                        drop("event_not_defined", {"type": "track", "n": 1}),
                    ],
                ),
            ),
            (3, 8, record(source="src_b", duplicates=2)),
        ]
    )
    counters = CounterStore(engine)
    assert counters.totals("src_a") == [
        Total(ACCEPTED, "", 3),
        Total(DUPLICATE, "", 3),
        Total(FAILED_ON_INGEST, "event_not_defined", 1),
        Total(FAILED_ON_INGEST, "no_user_anon_id", 2),
        Total(RECEIVED, "", 9),  # 3 accepted + 3 dropped + 3 duplicates
        Total(REQUEST_FLAG, "multi_user_error", 1),
    ]
    assert counters.totals("src_b") == [Total(DUPLICATE, "", 2), Total(RECEIVED, "", 2)]
    samples = counters.samples("src_a", step=FAILED_ON_INGEST, reason="no_user_anon_id")
    assert [s.message for s in samples] == [{"type": "page"}, {"type": "track"}]


def test_counts_go_to_the_minute_the_request_was_received(engine: Engine) -> None:
    Observer(engine)(
        [(0, 1, record([event("m1")])), (0, 2, record([event("m2", T1)], received_at=T1))]
    )
    t0 = parse_timestamp(T0)
    assert t0 is not None
    minute = minute_of(t0)
    counters = CounterStore(engine)
    assert counters.totals("src_a", since_minute=minute, until_minute=minute + 1) == [
        Total(ACCEPTED, "", 1),
        Total(RECEIVED, "", 1),
    ]
    assert counters.totals("src_a", since_minute=minute + 1) == [
        Total(ACCEPTED, "", 1),
        Total(RECEIVED, "", 1),
    ]


def test_a_redelivered_poll_is_not_counted_twice(engine: Engine) -> None:
    observe = Observer(engine)
    poll = [
        (0, 1, record([event("m1")])),
        (0, 2, record([event("m2")])),
        (1, 1, record([event("m3")])),
    ]
    observe(poll)
    observe(poll)  # the runner crashed before committing, and the log delivers it again
    observe([*poll, (0, 3, record([event("m4")]))])  # an overlapping poll
    # a fresh handler (a restarted process) remembers too: the high-water mark is stored
    Observer(engine)(poll)
    assert CounterStore(engine).totals("src_a") == [Total(ACCEPTED, "", 4), Total(RECEIVED, "", 4)]
    assert [r.entry["message"]["messageId"] for r in debugger_rows(engine)] == [
        "m1",
        "m2",
        "m3",
        "m4",
    ]
    # another group keeps its own positions
    Observer(engine, group="observer-2")(poll)
    assert CounterStore(engine).totals("src_a")[0] == Total(ACCEPTED, "", 7)


def test_debugger_entries_for_accepted_and_dropped_messages(engine: Engine) -> None:
    Observer(engine)(
        [
            (
                0,
                1,
                record(
                    [event("m1")],
                    [drop("no_user_anon_id", {"type": "identify"}), drop("bad_request", "x")],
                ),
            ),
        ]
    )
    rows = debugger_rows(engine)
    assert [(r.status, r.reason, r.received_at) for r in rows] == [
        ("accepted", None, T0),
        ("dropped", "no_user_anon_id", T0),
        ("dropped", "bad_request", T0),
    ]
    assert rows[0].entry == {"message": event("m1")}
    assert rows[1].entry == {"message": {"type": "identify"}, "detail": "why: no_user_anon_id"}
    assert rows[2].entry["message"] == "x"


def test_debugger_keeps_the_newest_500_per_source(engine: Engine) -> None:
    observe = Observer(engine)
    # 600 events over several polls, and one poll with more than 500 for one source
    offset = 0
    for start in range(0, 300, 50):
        offset += 1
        observe([(0, offset, record([event(f"m{i}") for i in range(start, start + 50)]))])
    offset += 1
    observe(
        [
            (0, offset, record([event(f"m{i}") for i in range(300, 900)])),
            (0, offset + 1, record([event("b1")], source="src_b")),
        ]
    )
    rows = debugger_rows(engine)
    assert len(rows) == DEBUGGER_CAP
    assert rows[0].entry["message"]["messageId"] == "m400"
    assert rows[-1].entry["message"]["messageId"] == "m899"
    assert [r.entry["message"]["messageId"] for r in debugger_rows(engine, "src_b")] == ["b1"]

    observe([(0, offset + 2, record([event("m900")]))])
    rows = debugger_rows(engine)
    assert len(rows) == DEBUGGER_CAP
    assert (rows[0].entry["message"]["messageId"], rows[-1].entry["message"]["messageId"]) == (
        "m401",
        "m900",
    )
    assert CounterStore(engine).totals("src_a")[0] == Total(ACCEPTED, "", 901)


def test_a_failing_poll_leaves_nothing_behind(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(observer_module, "_append_debugger", broken)
    with pytest.raises(RuntimeError):
        Observer(engine)([(0, 1, record([event("m1")]))])
    monkeypatch.undo()
    assert CounterStore(engine).totals() == []
    # the same poll, delivered again, is counted once it succeeds
    Observer(engine)([(0, 1, record([event("m1")]))])
    assert CounterStore(engine).totals() == [Total(ACCEPTED, "", 1), Total(RECEIVED, "", 1)]


def test_bad_records_are_skipped(engine: Engine) -> None:
    Observer(engine)([(0, 1, b"{broken"), (0, 2, b'{"v": 2}'), (0, 3, record([event("m1")]))])
    assert CounterStore(engine).totals() == [Total(ACCEPTED, "", 1), Total(RECEIVED, "", 1)]


def test_end_to_end_through_the_event_log(engine: Engine, tmp_path: Path) -> None:
    """Records appended to the real log reach both stages through the consumer runner."""
    log_module = pytest.importorskip("headwater.store.log")
    consumer_module = pytest.importorskip("headwater.pipeline.consumer")
    from datetime import datetime

    from headwater.store.archive import Archive, ArchiveWriter

    log = log_module.EventLog(engine)
    for group in ("observer", "archive"):
        log.register(group)
    log.append([record([event("m1"), event("m2")], [drop("no_user_anon_id", {"type": "x"})])])
    log.append([record([event("m3")], duplicates=1)])
    consumers = [
        consumer_module.Consumer(log, "observer", Observer(engine), owner="test"),
        consumer_module.Consumer(log, "archive", ArchiveWriter(tmp_path / "archive"), owner="test"),
    ]
    archive = Archive(tmp_path / "archive")
    window = (datetime(2024, 3, 5), datetime(2024, 3, 6))
    for consumer in consumers:
        consumer.start()
    try:
        wait_for(
            lambda: (
                Total(RECEIVED, "", 5) in CounterStore(engine).totals("src_a")
                and len(list(archive.read("src_a", *window))) == 3
            ),
            10,
            "both stages to consume the records",
            interval=0.05,
        )
    finally:
        for consumer in consumers:
            consumer.stop()
    assert CounterStore(engine).totals("src_a") == [
        Total(ACCEPTED, "", 3),
        Total(DUPLICATE, "", 1),
        Total(FAILED_ON_INGEST, "no_user_anon_id", 1),
        Total(RECEIVED, "", 5),
    ]
    assert len(debugger_rows(engine)) == 4
    assert [e["messageId"] for e in archive.read("src_a", *window)] == ["m1", "m2", "m3"]


# --- PostgreSQL -------------------------------------------------------------------------------


def test_observer_on_postgresql(pg_database: str, tmp_path: Path) -> None:
    """Polls larger than the debugger's cap, re-delivered, on PostgreSQL's own statements."""
    engine = open_engine(database_url(tmp_path, pg_database))
    try:
        migrate(engine)
        observe = Observer(engine)
        poll = [
            (
                0,
                1,
                record(
                    [event(f"m{i}") for i in range(450)],
                    [drop("no_user_anon_id", {"n": i}) for i in range(12)],
                    2,
                ),
            ),
            (1, 1, record([event(f"n{i}") for i in range(100)])),
        ]
        observe(poll)
        observe(poll)  # re-delivered: not counted again
        observe([(1, 2, record([event("last")]))])
        counters = CounterStore(engine)
        assert counters.totals("src_a") == [
            Total(ACCEPTED, "", 551),
            Total(DUPLICATE, "", 2),
            Total(FAILED_ON_INGEST, "no_user_anon_id", 12),
            Total(RECEIVED, "", 565),
        ]
        samples = counters.samples("src_a", reason="no_user_anon_id")
        assert [s.message["n"] for s in samples] == list(range(11, 1, -1))
        rows = debugger_rows(engine)
        assert len(rows) == DEBUGGER_CAP
        assert rows[-1].entry["message"]["messageId"] == "last"
    finally:
        engine.dispose()


def test_debugger_samples_a_sustained_stream(engine: Engine) -> None:
    now = [0.0]
    observe = Observer(engine, clock=lambda: now[0])
    offset = 0
    written = 0
    for second in range(10):  # 2,000 events a second, in polls of 200 every 0.1 s
        for _ in range(10):
            now[0] = second + _ / 10
            offset += 1
            observe([(0, offset, record([event(f"m{offset}-{i}") for i in range(200)]))])
            with engine.connect() as conn:
                written = int(
                    conn.execute(sa.select(sa.func.max(schema.debugger_entries.c.id))).scalar_one()
                )
    # A burst of 1,000, then about 500 a second: a live sample, not a row per event.
    assert 1_000 + 9 * 500 - 100 <= written <= 1_000 + 10 * 500
    rows = debugger_rows(engine)
    assert len(rows) == DEBUGGER_CAP
    assert rows[-1].entry["message"]["messageId"] == f"m{offset}-199"  # the newest is shown


def test_a_spent_budget_keeps_the_newest_entries_across_records_and_sources(
    engine: Engine,
) -> None:
    now = [0.0]
    observe = Observer(engine, clock=lambda: now[0])
    observe([(0, 1, record([event(f"old{i}") for i in range(2 * DEBUGGER_CAP)]))])  # the burst
    now[0] = 0.1  # src_a may add 50 entries now; src_b has its whole burst
    polled: list[tuple[int, int, bytes]] = []
    shown: dict[str, list[tuple[str, Any]]] = {"src_a": [], "src_b": []}
    for n in range(40):
        source = "src_a" if n % 3 else "src_b"
        events = [event(f"{source}-{n}-{i}") for i in range(3)]
        dropped = [drop("no_user_anon_id", {"n": n})]
        polled.append((0, 2 + n, record(events, dropped, source=source)))
        shown[source] += [("accepted", e["messageId"]) for e in events]
        shown[source] += [("dropped", {"n": n})]
    observe(polled)

    def entries(source: str) -> list[tuple[str, Any]]:
        rows = debugger_rows(engine, source)
        return [
            (
                r.status,
                r.entry["message"]["messageId"] if r.status == "accepted" else r.entry["message"],
            )
            for r in rows
        ]

    assert entries("src_a")[-DEBUGGER_CAP // 10 :] == shown["src_a"][-DEBUGGER_CAP // 10 :]
    assert entries("src_a")[-DEBUGGER_CAP // 10 - 1] == ("accepted", f"old{2 * DEBUGGER_CAP - 1}")
    assert entries("src_b") == shown["src_b"]
