"""Counters and samples: upserts accumulate, windows bound the totals, ten newest samples."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.store import schema
from headwater.store.counters import (
    ACCEPTED,
    FAILED_ON_INGEST,
    RECEIVED,
    SAMPLES_PER_KEY,
    CounterKey,
    CounterStore,
    Total,
    minute_of,
)


def key(step: str, reason: str = "", source: str = "src_a", dest: str = "") -> CounterKey:
    return CounterKey(source, dest, step, reason)


def test_upserts_accumulate_within_a_minute(engine: Engine) -> None:
    store = CounterStore(engine)
    store.add({key(RECEIVED): 3, key(ACCEPTED): 2}, {}, minute=100)
    store.add({key(RECEIVED): 4, key(ACCEPTED): 4}, {}, minute=100)
    store.add({key(RECEIVED): 1}, {}, minute=101)
    assert store.totals("src_a") == [Total(ACCEPTED, "", 6), Total(RECEIVED, "", 8)]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(sa.func.count()).select_from(schema.counters)).scalar()
    assert rows == 3  # one row per (minute, key), not per add


def test_totals_filter_by_window_source_and_destination(engine: Engine) -> None:
    store = CounterStore(engine)
    store.add({key(RECEIVED): 1}, {}, minute=10)
    store.add({key(RECEIVED): 2}, {}, minute=11)
    store.add({key(RECEIVED): 4}, {}, minute=12)
    store.add({key(RECEIVED, source="src_b"): 8}, {}, minute=11)
    store.add({key("delivered", dest="dst_1"): 16}, {}, minute=11)

    assert store.totals("src_a", since_minute=11, until_minute=12) == [
        Total("delivered", "", 16),
        Total(RECEIVED, "", 2),
    ]
    assert store.totals("src_a", destination_id="", since_minute=11) == [Total(RECEIVED, "", 6)]
    assert store.totals("src_a", destination_id="dst_1") == [Total("delivered", "", 16)]
    assert store.totals(since_minute=11, until_minute=12) == [
        Total("delivered", "", 16),
        Total(RECEIVED, "", 10),
    ]
    assert store.totals("src_missing") == []


def test_reasons_are_counted_apart(engine: Engine) -> None:
    store = CounterStore(engine)
    store.add(
        {
            key(FAILED_ON_INGEST, "no_user_anon_id"): 2,
            key(FAILED_ON_INGEST, "event_not_defined"): 1,
        },
        {},
        minute=5,
    )
    store.add({key(FAILED_ON_INGEST, "no_user_anon_id"): 1}, {}, minute=6)
    assert store.totals("src_a") == [
        Total(FAILED_ON_INGEST, "event_not_defined", 1),
        Total(FAILED_ON_INGEST, "no_user_anon_id", 3),
    ]


def test_zero_increments_write_nothing(engine: Engine) -> None:
    store = CounterStore(engine)
    store.add({key(RECEIVED): 0}, {}, minute=1)
    assert store.totals() == []


def test_samples_keep_the_ten_newest_per_key(engine: Engine) -> None:
    store = CounterStore(engine)
    k = key(FAILED_ON_INGEST, "no_user_anon_id")
    other = key(FAILED_ON_INGEST, "event_not_defined")
    for batch in range(3):  # 3 adds of 6 samples: 18 in all, ten survive
        messages = [{"n": batch * 6 + i} for i in range(6)]
        store.add({k: 6}, {k: messages, other: [{"other": batch}]}, minute=200 + batch)

    kept = store.samples("src_a", step=FAILED_ON_INGEST, reason="no_user_anon_id")
    assert [s.message["n"] for s in kept] == list(range(17, 7, -1))  # newest first
    assert all(s.key == k for s in kept)
    assert kept[0].recorded_at == 202 * 60
    with engine.connect() as conn:
        stored = conn.execute(
            sa.select(sa.func.count())
            .select_from(schema.counter_samples)
            .where(schema.counter_samples.c.reason == "no_user_anon_id")
        ).scalar()
    assert stored == SAMPLES_PER_KEY  # trimmed in the table, not just in the query

    others = store.samples("src_a", reason="event_not_defined")
    assert [s.message for s in others] == [{"other": 2}, {"other": 1}, {"other": 0}]


def test_a_single_add_with_many_samples_keeps_its_last_ten(engine: Engine) -> None:
    store = CounterStore(engine)
    k = key(FAILED_ON_INGEST, "bad_request")
    store.add({k: 25}, {k: [{"n": i} for i in range(25)]}, minute=1)
    assert [s.message["n"] for s in store.samples(reason="bad_request")] == list(range(24, 14, -1))


def test_samples_since_minute(engine: Engine) -> None:
    store = CounterStore(engine)
    k = key(FAILED_ON_INGEST, "bad_request")
    store.add({k: 1}, {k: [{"old": True}]}, minute=10)
    store.add({k: 1}, {k: [{"new": True}]}, minute=20)
    assert [s.message for s in store.samples(since_minute=15)] == [{"new": True}]


def test_expire_forgets_old_minutes(engine: Engine) -> None:
    store = CounterStore(engine)
    store.add({key(RECEIVED): 1}, {}, minute=10)
    store.add({key(RECEIVED): 2}, {}, minute=20)
    assert store.expire(before_minute=15) == 1
    assert store.totals() == [Total(RECEIVED, "", 2)]


def test_add_defaults_to_the_current_minute(engine: Engine) -> None:
    import time

    store = CounterStore(engine)
    before = minute_of(time.time())
    store.add({key(RECEIVED): 1})
    assert store.totals(since_minute=before, until_minute=before + 2) == [Total(RECEIVED, "", 1)]


def test_postgresql_upsert_compiles() -> None:
    """The PostgreSQL statement is the same upsert (the tests above run it on PostgreSQL)."""
    from typing import Any

    from sqlalchemy.dialects import postgresql

    from headwater.store.counters import _upsert_counts

    dialect: Any = postgresql.dialect()  # type: ignore[no-untyped-call]

    class FakeConn:
        pass

    conn: Any = FakeConn()
    conn.dialect = dialect
    sql = str(_upsert_counts(conn).compile(dialect=dialect))
    assert "ON CONFLICT (minute, source_id, destination_id, step, reason) DO UPDATE" in sql
    assert "count = (counters.count + excluded.count)" in sql


def test_the_overview_reads_hourly_totals_and_the_minutes_around_them(engine: Engine) -> None:
    store = CounterStore(engine)
    base = 29_000_000 * 60  # a minute at the start of an hour
    a, d = CounterKey("s1", "", "received", ""), CounterKey("s1", "d1", "delivered", "")
    for minute in range(base - 30, base + 150, 7):  # half an hour before, 2.5 hours after
        store.add({a: 2, d: 1}, minute=minute)

    def direct(since: int) -> dict[tuple[str, str, str], int]:
        totals: dict[tuple[str, str, str], int] = {}
        for minute in range(since, base + 150):
            if (minute - (base - 30)) % 7 == 0:
                for key, n in ((a, 2), (d, 1)):
                    k = (key.source_id, key.destination_id, key.step)
                    totals[k] = totals.get(k, 0) + n
        return totals

    def overview(since: int) -> dict[tuple[str, str, str], int]:
        return {(s, dd, step): n for s, dd, step, n in store.by_connection(since)}

    now = (base + 150) * 60.0
    for since in (base - 30, base - 29, base, base + 61, base + 149):
        assert overview(since) == direct(since), since  # before any roll-up
    assert store.roll_up(now) >= 3
    for since in (base - 30, base - 29, base, base + 61, base + 149):
        assert overview(since) == direct(since), since  # hours from totals, the rest minutes
    # A late write into the last rolled hour shows once the next roll-up totals it again.
    store.add({a: 1000}, minute=base + 119)
    store.roll_up(now)
    assert overview(base)[("s1", "", "received")] == direct(base)[("s1", "", "received")] + 1000
    # Expiry forgets hours with their minutes.
    store.expire(base + 60)
    expected = direct(base + 60)
    expected[("s1", "", "received")] += 1000  # the late write, in the hour kept
    assert overview(base - 30) == expected
