"""The event log contract, the same tests on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from headwater.pipeline.consumer import Consumer
from headwater.store import schema
from headwater.store.database import database_url, open_engine
from headwater.store.log import EventLog
from headwater.store.migrations import migrate
from tests.support.clock import Clock


def drain(log: EventLog, group: str) -> list[tuple[int, int, bytes]]:
    seen = []
    for partition in log.partitions:
        while batch := log.poll(group, partition, 100):
            seen += [(partition, offset, payload) for offset, payload in batch]
            log.commit(group, partition, batch[-1][0])
    return seen


def test_append_poll_commit_dense_offsets(engine: Engine) -> None:
    log = EventLog(engine)
    log.register("g")
    positions = log.append([b"a", b"b", b"c"])
    partition = positions[0][0]
    assert positions == [(partition, 1), (partition, 2), (partition, 3)]
    assert log.poll("g", partition, 10) == [(1, b"a"), (2, b"b"), (3, b"c")]
    assert log.poll("g", partition, 2) == [(1, b"a"), (2, b"b")]
    assert log.commit("g", partition, 2)
    assert log.poll("g", partition, 10) == [(3, b"c")]
    log.commit("g", partition, 1)  # never moves backwards
    assert log.committed("g", partition) == 2


def test_rolled_back_append_leaves_no_record_and_no_gap(engine: Engine) -> None:
    log = EventLog(engine)
    log.register("g")
    with pytest.raises(RuntimeError), engine.begin() as conn:
        log.append_in(conn, [b"lost"])
        raise RuntimeError("abort")
    kept = [log.append([b"x"])[0] for _ in range(len(log.partitions))]
    assert all(offset == 1 for _partition, offset in kept)
    assert b"lost" not in [p for _, _, p in drain(log, "g")]


def test_groups_are_independent_and_truncation_waits_for_all(engine: Engine) -> None:
    log = EventLog(engine)
    log.register("a")
    log.register("b")
    log.append([b"1", b"2"])
    assert len(drain(log, "a")) == 2
    assert log.truncate() == 0  # b has not consumed yet
    assert log.lag("b") == 2
    assert len(drain(log, "b")) == 2
    assert log.truncate() == 2
    log.register("late")  # starts at the oldest record still retained
    log.append([b"3"])
    assert [p for _, _, p in drain(log, "late")] == [b"3"]


def test_leases_split_partitions_and_pass_on_when_an_owner_dies(
    engine: Engine, clock: Clock
) -> None:
    log = EventLog(engine, clock=clock)
    log.register("g")
    first = log.acquire("g", "p1", 10)
    assert len(first) == 8
    second = log.acquire("g", "p2", 10)
    first = log.acquire("g", "p1", 10)
    second = log.acquire("g", "p2", 10)
    assert len(first) == 4 and len(second) == 4 and not set(first) & set(second)
    log.append([b"x"])
    # p1 stops heart-beating; after the ttl p2 takes everything and p1's commits are refused.
    clock.now += 11
    taken = log.acquire("g", "p2", 10)
    assert sorted(taken) == log.partitions
    assert not log.commit("g", first[0], 1, owner="p1")


def test_an_exclusive_group_has_one_owner_of_every_partition(engine: Engine, clock: Clock) -> None:
    """Identity resolution's group: one owner holds all partitions; another process waits,
    and takes them all once the owner stops heart-beating; a split left by fair sharing ends."""
    log = EventLog(engine, clock=clock)
    log.register("g")
    assert log.acquire("g", "p1", 10, exclusive=True) == log.partitions
    assert log.acquire("g", "p2", 10, exclusive=True) == []
    assert log.acquire("g", "p1", 10, exclusive=True) == log.partitions
    clock.now += 11
    assert log.acquire("g", "p2", 10, exclusive=True) == log.partitions
    assert log.acquire("g", "p1", 10, exclusive=True) == []
    # Fair sharing split the group; exclusive owners give their halves back, then one takes all.
    clock.now += 11
    log.acquire("g", "p3", 10)
    log.acquire("g", "p4", 10)
    log.acquire("g", "p3", 10)
    assert len(log.acquire("g", "p4", 10)) == 4
    assert log.acquire("g", "p3", 10, exclusive=True) == []
    assert log.acquire("g", "p4", 10, exclusive=True) == log.partitions
    assert log.acquire("g", "p3", 10, exclusive=True) == []


def test_concurrent_appends_are_consumed_once_in_order(engine: Engine) -> None:
    log = EventLog(engine)
    log.register("g")
    writers = 4
    per_writer = 50

    def write(n: int) -> None:
        for i in range(per_writer):
            log.append([f"{n}-{i}".encode()])

    consumed: list[tuple[int, int, bytes]] = []
    done = threading.Event()

    def consume() -> None:
        while not done.is_set():
            consumed.extend(drain(log, "g"))
        consumed.extend(drain(log, "g"))

    reader = threading.Thread(target=consume)
    reader.start()
    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    reader.join()
    payloads = [p for _, _, p in consumed]
    assert sorted(payloads) == sorted(
        f"{n}-{i}".encode() for n in range(writers) for i in range(per_writer)
    )
    for partition in log.partitions:
        offsets = [o for p, o, _ in consumed if p == partition]
        assert offsets == list(range(1, len(offsets) + 1))  # dense, in order, none skipped


def test_consumer_retries_a_failing_handler_and_commits_after_success(engine: Engine) -> None:
    log = EventLog(engine)
    log.register("g")
    log.append([b"a", b"b"])
    calls: list[list[bytes]] = []
    fail = [True]

    def handler(records: list[tuple[int, int, bytes]]) -> None:
        calls.append([p for _, _, p in records])
        if fail[0]:
            raise ValueError("boom")

    consumer = Consumer(log, "g", handler, owner="c1")
    with pytest.raises(ValueError):
        consumer.run_once()
    assert log.lag("g") == 2  # nothing committed past the failure
    fail[0] = False
    assert consumer.run_once() == 2
    assert calls[-1] == [b"a", b"b"]
    assert log.lag("g") == 0
    consumer.stop()


def test_consumer_thread_starts_and_stops(engine: Engine) -> None:
    log = EventLog(engine)
    log.register("g")
    got = threading.Event()
    consumer = Consumer(log, "g", lambda records: got.set(), interval=0.01)
    consumer.start()
    log.append([b"x"])
    assert got.wait(5)
    consumer.stop()
    with engine.connect() as conn:
        assert conn.execute(sa.text("select 1")).scalar() == 1


def test_poll_many_and_commit_many_cover_several_partitions(engine: Engine, clock: Clock) -> None:
    log = EventLog(engine, clock=clock)
    log.register("g")
    first = log.append([b"a", b"b"])[0][0]
    second = log.append([b"c"])[0][0]
    assert first != second
    polled = log.poll_many("g", [first, second], 1)
    assert polled == {first: [(1, b"a")], second: [(1, b"c")]}
    held = log.acquire("g", "p1", 10)
    assert log.commit_many("g", {first: 1, second: 1}, owner="p1") == {first: True, second: True}
    assert log.poll_many("g", held, 10)[first] == [(2, b"b")]
    clock.now += 11
    log.acquire("g", "p2", 10)
    assert log.commit_many("g", {first: 2}, owner="p1") == {first: False}  # lease moved on
    with pytest.raises(KeyError):
        log.poll_many("nobody", [first], 10)


def test_consumer_hands_one_pass_of_every_partition_to_the_handler(engine: Engine) -> None:
    log = EventLog(engine)
    log.register("g")
    for _ in log.partitions:
        log.append([b"x"])
    calls: list[int] = []
    consumer = Consumer(log, "g", lambda records: calls.append(len(records)), owner="c1")
    assert consumer.run_once() == len(log.partitions)
    assert calls == [len(log.partitions)]
    assert consumer.run_once() == 0
    consumer.stop()


def one_partition_at_a_time(
    engine: Engine, log: EventLog, group: str, partitions: list[int], max: int
) -> dict[int, list[tuple[int, bytes]]]:
    """What ``poll_many`` must return, read with the plainest query, one per partition."""
    out = {}
    records = schema.log_records
    with engine.connect() as conn:
        for partition in partitions:
            rows = conn.execute(
                sa.select(records.c.offset, records.c.payload)
                .where(
                    records.c.partition == partition,
                    records.c.offset > log.committed(group, partition),
                )
                .order_by(records.c.offset)
                .limit(max)
            ).all()
            out[partition] = [(int(o), bytes(p)) for o, p in rows]
    return out


def test_poll_many_reads_what_one_query_per_partition_reads(engine: Engine) -> None:
    log = EventLog(engine)
    log.register("g")
    log.register("ahead")
    for n in range(40):  # uneven runs of records over every partition
        log.append([f"{n}-{i}".encode() for i in range(n % 5 + 1)])
    partitions = log.partitions
    for i, partition in enumerate(partitions):
        end = len(log.poll("ahead", partition, 1000))
        log.commit("g", partition, end if partition == partitions[-1] else i)  # none to all
        log.commit("ahead", partition, end)
    assert log.truncate() > 0  # what "g" has read is gone: polls start past the oldest record
    assert not all(log.poll("g", p, 1000) for p in partitions)  # some partitions are empty
    subsets = [partitions, partitions[::-1], partitions[:1], partitions[3:6]]
    for held in subsets:
        for max in (1, 2, 3, 1000):
            polled = log.poll_many("g", held, max)
            assert list(polled) == held
            assert polled == one_partition_at_a_time(engine, log, "g", held, max)
    assert sum(len(rows) for rows in log.poll_many("g", partitions, 1000).values()) == log.lag("g")


def test_commit_many_answers_per_partition_whether_the_owner_still_holds_it(
    engine: Engine, clock: Clock
) -> None:
    log = EventLog(engine, clock=clock)
    log.register("g")
    for _ in log.partitions:
        log.append([b"a", b"b", b"c"])
    log.acquire("g", "p1", 10)
    log.acquire("g", "p2", 10)
    mine = log.acquire("g", "p1", 10)  # half of them: p2 took the rest
    theirs = log.acquire("g", "p2", 10)
    assert len(mine) == len(theirs) == len(log.partitions) // 2
    assert log.commit_many("g", {p: 2 for p in mine}, owner="p1") == dict.fromkeys(mine, True)
    offsets = {p: 3 for p in log.partitions}
    offsets[mine[0]] = 1  # behind what p1 committed: nothing to move, still p1's
    answer = log.commit_many("g", offsets, owner="p1")
    assert answer == {p: p in mine for p in log.partitions}
    assert {p: log.committed("g", p) for p in log.partitions} == {
        p: (2 if p == mine[0] else 3) if p in mine else 0 for p in log.partitions
    }
    clock.now += 11  # p1's leases run out before it commits again
    assert log.commit_many("g", {mine[1]: 3}, owner="p1") == {mine[1]: False}
    assert log.commit_many("g", {theirs[0]: 3}) == {theirs[0]: True}  # no owner: no fence
    assert log.committed("g", theirs[0]) == 3


def test_truncate_in_chunks_removes_exactly_what_every_group_passed(engine: Engine) -> None:
    log = EventLog(engine)
    log.register("fast")
    log.register("slow")
    for _ in log.partitions:
        log.append([f"r{i}".encode() for i in range(10)])
    for i, partition in enumerate(log.partitions):
        log.commit("fast", partition, 10)
        log.commit("slow", partition, i)
    assert log.truncate(chunk=3) == sum(range(len(log.partitions)))
    for i, partition in enumerate(log.partitions):
        assert [o for o, _ in log.poll("slow", partition, 100)] == list(range(i + 1, 11))
    assert log.truncate(chunk=3) == 0
    assert log.lag("slow") == sum(10 - i for i in range(len(log.partitions)))


def test_a_group_registered_while_truncate_runs_keeps_its_records(engine: Engine) -> None:
    log = EventLog(engine)
    log.register("g")
    for _ in log.partitions:
        log.append([b"a", b"b"])
    for partition in log.partitions:
        log.commit("g", partition, 2)
    registered: list[bool] = []

    def register_late(conn: Connection, cursor: object, statement: str, *args: object) -> None:
        # Right after truncate has read, outside a write transaction, what every group passed.
        reading = not conn.get_execution_options().get("write", False)
        if reading and not registered and "min(" in statement and "DELETE" not in statement:
            registered.append(True)
            log.register("late")

    sa.event.listen(engine, "after_cursor_execute", register_late)
    try:
        assert log.truncate() == 0
    finally:
        sa.event.remove(engine, "after_cursor_execute", register_late)
    assert registered
    assert len(drain(log, "late")) == 2 * len(log.partitions)
    assert log.truncate() == 2 * len(log.partitions)


def test_groups_at_different_offsets_poll_what_each_would_poll_alone(engine: Engine) -> None:
    # A budget of a few records a partition: windows are trimmed, replaced and read around.
    log = EventLog(engine, recent_bytes=8 * 40)
    groups = {"a": 1, "b": 3, "c": 7, "lagging": 50}
    seen: dict[str, list[tuple[int, int, bytes]]] = {group: [] for group in groups}
    for group in groups:
        log.register(group)

    def poll(group: str, max: int) -> bool:
        expected = one_partition_at_a_time(engine, log, group, log.partitions, max)
        polled = log.poll_many(group, log.partitions, max)
        assert polled == expected
        seen[group] += [(p, o, payload) for p, rows in polled.items() for o, payload in rows]
        log.commit_many(group, {p: rows[-1][0] for p, rows in polled.items() if rows})
        return any(polled.values())

    for round in range(30):
        for n in range(round % 4):
            log.append([f"{round}-{n}-{i}-{'x' * (i % 3 * 5)}".encode() for i in range(n + 2)])
        for group, max in groups.items():
            if group != "lagging" or round % 10 == 9:
                poll(group, max)
        if round % 7 == 6:
            log.truncate(chunk=2)
    for group, max in groups.items():
        while poll(group, max):
            pass
    assert len(seen["a"]) == sum(n + 2 for round in range(30) for n in range(round % 4))
    for group in groups:  # every record once, in order
        assert sorted(seen[group]) == sorted(seen["a"])
        for partition in log.partitions:
            offsets = [o for p, o, _ in seen[group] if p == partition]
            assert offsets == list(range(1, len(offsets) + 1))


def test_a_second_group_reads_what_the_first_just_read_from_memory(tmp_path: Path) -> None:
    engine = open_engine(database_url(tmp_path, None))
    migrate(engine)
    log = EventLog(engine)
    log.register("first")
    log.register("second")
    for _ in log.partitions:
        log.append([b"a", b"b", b"c"])
    reads: list[str] = []

    def count(conn: Connection, cursor: object, statement: str, *args: object) -> None:
        if "FROM log_records" in statement:
            reads.append(statement)

    sa.event.listen(engine, "after_cursor_execute", count)
    first = log.poll_many("first", log.partitions, 10)
    assert len(reads) == 1  # one query for every partition
    assert log.poll_many("second", log.partitions, 10) == first
    assert len(reads) == 1
    log.append([b"d"])
    second = log.poll_many("second", log.partitions, 10)
    assert len(reads) == 2 and sum(map(len, second.values())) == 3 * len(log.partitions) + 1
    engine.dispose()
