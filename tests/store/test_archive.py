"""The archive: hour files, appends as gzip members, torn tails, read windows, purge."""

from __future__ import annotations

import gzip
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from headwater.store.archive import Archive, ArchiveWriter
from tests.support.records import log_record
from tests.support.records import stored_event as event


def record(
    events: list[dict[str, Any]], source: str = "src_a", dropped: list[dict[str, Any]] | None = None
) -> bytes:
    received = events[0]["receivedAt"] if events else "2024-01-01T00:00:00.000Z"
    return log_record(source, received, events, dropped=dropped or [])


def feed(writer: ArchiveWriter, *payloads: bytes) -> None:
    writer([(0, offset, payload) for offset, payload in enumerate(payloads, start=1)])


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def ids(events: list[dict[str, Any]]) -> list[str]:
    return [e["messageId"] for e in events]


ALL_TIME = (utc(2000, 1, 1), utc(2100, 1, 1))


def test_events_land_in_the_hour_file_of_their_received_at(tmp_path: Path) -> None:
    writer = ArchiveWriter(tmp_path)
    feed(
        writer,
        record([event("m1", "2024-03-05T09:59:59.999Z")]),
        record([event("m2", "2024-03-05T10:00:00.000Z")]),
        record([event("m3", "2024-03-06T00:30:00.000Z")], source="src_b"),
        record([], dropped=[{"reason": "no_user_anon_id", "message": {"type": "track"}}]),
    )

    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert files == [
        "src_a/2024-03-05/09.ndjson.gz",
        "src_a/2024-03-05/10.ndjson.gz",
        "src_b/2024-03-06/00.ndjson.gz",
    ]
    with gzip.open(tmp_path / "src_a/2024-03-05/09.ndjson.gz", "rt") as f:
        assert [json.loads(line)["messageId"] for line in f] == ["m1"]
    assert Archive(tmp_path).sources() == ["src_a", "src_b"]


def test_each_flush_appends_a_gzip_member_readable_whole(tmp_path: Path) -> None:
    writer = ArchiveWriter(tmp_path)
    path = tmp_path / "src_a/2024-03-05/10.ndjson.gz"
    feed(writer, record([event("m1", "2024-03-05T10:00:01.000Z")]))
    first_size = path.stat().st_size
    feed(
        writer,
        record([event("m2", "2024-03-05T10:00:02.000Z")]),
        record([event("m3", "2024-03-05T10:00:03.000Z")]),
    )
    # A second writer (a restarted process) appends too, after checking the tail.
    feed(ArchiveWriter(tmp_path), record([event("m4", "2024-03-05T10:00:04.000Z")]))

    data = path.read_bytes()
    # the first flush is one whole gzip member, which the standard library reads alone
    assert gzip.decompress(data[:first_size]) == (
        msgspec.json.encode(event("m1", "2024-03-05T10:00:01.000Z")) + b"\n"
    )
    assert data.count(b"\x1f\x8b\x08") >= 3  # three members: one per flush
    with gzip.open(path, "rt") as f:  # the standard library reads all members
        assert [json.loads(line)["messageId"] for line in f] == ["m1", "m2", "m3", "m4"]
    assert ids(list(Archive(tmp_path).read("src_a", *ALL_TIME))) == ["m1", "m2", "m3", "m4"]


def test_reader_skips_a_torn_last_member(tmp_path: Path) -> None:
    writer = ArchiveWriter(tmp_path)
    path = tmp_path / "src_a/2024-03-05/10.ndjson.gz"
    feed(writer, record([event("m1", "2024-03-05T10:00:01.000Z")]))
    intact = path.stat().st_size
    feed(
        writer,
        record([event(f"t{i}", "2024-03-05T10:00:02.000Z", pad="x" * 50) for i in range(200)]),
    )
    with open(path, "r+b") as f:  # a crash in the middle of the second write
        f.truncate(intact + (path.stat().st_size - intact) // 2)

    got = ids(list(Archive(tmp_path).read("src_a", *ALL_TIME)))
    assert got[0] == "m1"
    # Only whole lines of the torn member may come out (its events are re-delivered anyway).
    assert all(i.startswith("t") for i in got[1:]) and len(got) < 201


def test_writer_sets_a_torn_tail_aside_and_keeps_earlier_members(tmp_path: Path) -> None:
    path = tmp_path / "src_a/2024-03-05/10.ndjson.gz"
    feed(ArchiveWriter(tmp_path), record([event("m1", "2024-03-05T10:00:01.000Z")]))
    intact = path.read_bytes()
    torn = gzip.compress(b'{"messageId":"lost"}\n' * 100)[:-20]
    with open(path, "ab") as f:
        f.write(torn)

    # The restarted writer finds the torn member before appending its first flush.
    writer = ArchiveWriter(tmp_path)
    feed(writer, record([event("m2", "2024-03-05T10:00:02.000Z")]))
    data = path.read_bytes()
    assert data.startswith(intact)
    assert torn not in data
    aside = path.with_name(f"10.ndjson.gz.{len(intact)}.torn")
    assert aside.read_bytes() == torn  # cut off, not destroyed
    with gzip.open(path, "rt") as f:
        assert [json.loads(line)["messageId"] for line in f] == ["m1", "m2"]

    # A torn tail left by another process while this writer was running is found too.
    with open(path, "ab") as f:
        f.write(b"\x1f\x8b\x08\x00garbage")
    feed(writer, record([event("m3", "2024-03-05T10:00:03.000Z")]))
    assert ids(list(Archive(tmp_path).read("src_a", *ALL_TIME))) == ["m1", "m2", "m3"]
    assert Archive(tmp_path).sources() == ["src_a"]


def test_intact_members_after_damage_are_salvaged_from_the_torn_tail(tmp_path: Path) -> None:
    """A bad block mid-file must not cost the committed members written after it."""
    path = tmp_path / "src_a/2024-03-05/10.ndjson.gz"
    writer = ArchiveWriter(tmp_path)
    feed(writer, record([event("m1", "2024-03-05T10:00:01.000Z")]))
    first_end = path.stat().st_size
    feed(
        writer,
        record([event(f"bad{i}", "2024-03-05T10:00:02.000Z", pad="x" * 40) for i in range(50)]),
    )
    second_end = path.stat().st_size
    feed(
        writer,
        record([event("m3", "2024-03-05T10:00:03.000Z")]),
        record([event("m4", "2024-03-05T10:00:04.000Z")]),
    )
    data = bytearray(path.read_bytes())
    data[(first_end + second_end) // 2] ^= 0xFF  # the second member's deflate data
    path.write_bytes(bytes(data))
    assert ids(list(Archive(tmp_path).read("src_a", *ALL_TIME))) == ["m1"]  # cut off at it

    feed(ArchiveWriter(tmp_path), record([event("m5", "2024-03-05T10:00:05.000Z")]))
    got = ids(list(Archive(tmp_path).read("src_a", *ALL_TIME)))
    assert got == ["m1", "m3", "m4", "m5"]
    [aside] = path.parent.glob("*.torn")
    assert aside.name == f"10.ndjson.gz.{first_end}.torn"
    assert aside.read_bytes() == bytes(data[first_end:])  # every byte kept for a look
    with gzip.open(path, "rt") as f:  # and the hour file is a clean gzip file again
        assert [json.loads(line)["messageId"] for line in f] == ["m1", "m3", "m4", "m5"]


def test_torn_tails_are_purged_after_a_week(tmp_path: Path) -> None:
    path = tmp_path / "src_a/2024-03-05/10.ndjson.gz"
    feed(ArchiveWriter(tmp_path), record([event("m1", "2024-03-05T10:00:01.000Z")]))
    with open(path, "ab") as f:
        f.write(gzip.compress(b'{"messageId":"lost"}\n')[:-5])
    feed(ArchiveWriter(tmp_path), record([event("m2", "2024-03-05T10:00:02.000Z")]))
    [aside] = path.parent.glob("*.torn")
    set_aside = datetime.fromtimestamp(aside.stat().st_mtime, UTC)
    archive = Archive(tmp_path)
    assert archive.purge(36500, now=set_aside + timedelta(days=6, hours=23)) == 0
    assert aside.exists()
    assert archive.purge(36500, now=set_aside + timedelta(days=7, minutes=1)) == 0
    assert not aside.exists()
    assert ids(list(archive.read("src_a", *ALL_TIME))) == ["m1", "m2"]  # the hour file stays
    # A shorter (or longer) keep is a parameter.
    with open(path, "ab") as f:
        f.write(b"\x1f\x8b\x08\x00garbage")
    feed(ArchiveWriter(tmp_path), record([event("m3", "2024-03-05T10:00:03.000Z")]))
    [aside] = path.parent.glob("*.torn")
    archive.purge(36500, now=datetime.now(UTC) + timedelta(minutes=1), torn_days=0)
    assert not aside.exists()


def test_read_window_bounds_and_order(tmp_path: Path) -> None:
    writer = ArchiveWriter(tmp_path)
    feed(
        writer,
        record([event("a", "2024-03-05T09:59:59.999Z")]),
        record([event("b", "2024-03-05T10:00:00.000Z")]),
        record([event("c", "2024-03-05T10:29:59.999Z")]),
        record([event("d", "2024-03-05T10:30:00.000Z")]),
        record([event("e", "2024-03-05T11:15:00.000Z")]),
        record([event("f", "2024-03-06T08:00:00.000Z")]),
        record([event("z", "2024-03-05T10:10:00.000Z")], source="src_b"),
    )
    archive = Archive(tmp_path)
    # start is inclusive, end exclusive, to the millisecond
    assert ids(list(archive.read("src_a", utc(2024, 3, 5, 10), utc(2024, 3, 5, 10, 30)))) == [
        "b",
        "c",
    ]
    assert ids(list(archive.read("src_a", utc(2024, 3, 5, 10), utc(2024, 3, 6)))) == [
        "b",
        "c",
        "d",
        "e",
    ]
    # naive datetimes are UTC; whole hours and days are read in order
    assert ids(list(archive.read("src_a", datetime(2024, 3, 5), datetime(2024, 3, 7)))) == [
        "a",
        "b",
        "c",
        "d",
        "e",
        "f",
    ]
    assert list(archive.read("src_a", utc(2024, 3, 5, 12), utc(2024, 3, 6, 8))) == []
    assert list(archive.read("src_unknown", *ALL_TIME)) == []


def test_read_gives_a_repeated_message_id_once(tmp_path: Path) -> None:
    writer = ArchiveWriter(tmp_path)
    batch = record(
        [event("m1", "2024-03-05T10:00:01.000Z"), event("m2", "2024-03-05T10:00:02.000Z")]
    )
    feed(writer, batch)
    feed(writer, batch)  # the log re-delivers a poll after a crash before its commit
    feed(writer, record([event("m3", "2024-03-05T10:00:03.000Z")]))
    events = list(Archive(tmp_path).read("src_a", *ALL_TIME))
    assert ids(events) == ["m1", "m2", "m3"]
    assert events[0] == event("m1", "2024-03-05T10:00:01.000Z")


def test_purge_removes_hours_past_retention(tmp_path: Path) -> None:
    writer = ArchiveWriter(tmp_path)
    now = utc(2024, 6, 1, 12, 30)
    # the cutoff is 90 days before now: 2024-03-03T12:30Z
    feed(
        writer,
        record([event("gone1", "2024-03-02T23:00:00.000Z")]),
        record([event("gone2", "2024-03-03T11:59:00.000Z")]),
        record([event("kept1", "2024-03-03T12:10:00.000Z")]),  # its hour ends after the cutoff
        record([event("kept2", "2024-05-31T00:00:00.000Z")]),
        record([event("gone3", "2024-01-01T00:00:00.000Z")], source="src_old"),
    )
    (tmp_path / "src_a/2024-03-02/23.ndjson.gz.5.torn").write_bytes(b"x")

    archive = Archive(tmp_path)
    assert archive.purge(90, now=now) == 3
    assert ids(list(archive.read("src_a", *ALL_TIME))) == ["kept1", "kept2"]
    assert not (tmp_path / "src_a/2024-03-02").exists()  # emptied day directories go
    assert archive.sources() == ["src_a"]
    assert archive.purge(90, now=now) == 0
    # default retention is 90 days from now
    assert archive.purge() == 2
    assert archive.sources() == []


def test_writer_recreates_directories_removed_by_purge(tmp_path: Path) -> None:
    writer = ArchiveWriter(tmp_path)
    feed(writer, record([event("m1", "2024-03-05T10:00:01.000Z")]))
    Archive(tmp_path).purge(0, now=utc(2030, 1, 1))
    assert not (tmp_path / "src_a").exists()
    feed(writer, record([event("m2", "2024-03-05T10:00:02.000Z")]))
    assert ids(list(Archive(tmp_path).read("src_a", *ALL_TIME))) == ["m2"]


def test_unsafe_source_ids_stay_inside_the_archive(tmp_path: Path) -> None:
    archive_dir = tmp_path / "archive"
    writer = ArchiveWriter(archive_dir)
    feed(writer, record([event("m1", "2024-03-05T10:00:01.000Z")], source="../evil/x"))
    assert not (tmp_path / "evil").exists()
    assert [p.name for p in archive_dir.iterdir()] == ["%2E%2E%2Fevil%2Fx"]
    assert Archive(archive_dir).sources() == ["../evil/x"]
    assert ids(list(Archive(archive_dir).read("../evil/x", *ALL_TIME))) == ["m1"]


def test_bad_records_are_skipped_not_fatal(tmp_path: Path) -> None:
    writer = ArchiveWriter(tmp_path)
    writer(
        [
            (0, 1, b"not json"),
            (0, 2, b'{"v": 99}'),
            (0, 3, record([event("m1", "2024-03-05T10:00:01.000Z")])),
        ]
    )
    assert ids(list(Archive(tmp_path).read("src_a", *ALL_TIME))) == ["m1"]
    assert os.listdir(tmp_path) == ["src_a"]


def test_a_file_unlinked_while_waiting_for_its_lock_is_opened_again(tmp_path: Path) -> None:
    """purge unlinks under the lock; a writer that was waiting must not write to the ghost."""
    import fcntl
    import threading

    from headwater.store.archive import _open_locked

    path = tmp_path / "src_a/2024-03-05/10.ndjson.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    holder = os.open(path, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    result: list[tuple[int, bool]] = []
    waiter = threading.Thread(target=lambda: result.append(_open_locked(path)))
    waiter.start()
    waiter.join(timeout=0.2)
    assert waiter.is_alive()  # waiting for the lock
    path.unlink()
    os.close(holder)
    waiter.join(timeout=5)
    fd, created = result[0]
    try:
        assert created
        assert os.fstat(fd).st_ino == path.stat().st_ino
    finally:
        os.close(fd)


def test_members_resume_where_a_reader_stopped_and_pick_up_late_events(tmp_path: Path) -> None:
    writer = ArchiveWriter(tmp_path)
    archive = Archive(tmp_path)
    feed(
        writer,
        record([event("a1", "2024-03-05T10:10:00.000Z"), event("a2", "2024-03-05T10:20:00.000Z")]),
    )
    feed(writer, record([event("b1", "2024-03-05T11:05:00.000Z")]))
    first = list(archive.members("src_a", utc(2024, 3, 5, 10, 30)))  # the hour of 10:30 on
    assert [(m.key, ids(m.events)) for m in first] == [
        ("2024-03-05T10", ["a1", "a2"]),
        ("2024-03-05T11", ["b1"]),
    ]
    done = {m.key: m.end for m in first}
    assert list(archive.members("src_a", utc(2024, 3, 5, 10), done=done)) == []
    # An event of 10:59 archived after the reader passed that hour, and a new one.
    feed(
        writer,
        record([event("late", "2024-03-05T10:59:59.000Z")]),
        record([event("b2", "2024-03-05T11:30:00.000Z")]),
    )
    again = list(archive.members("src_a", utc(2024, 3, 5, 10), done=done))
    assert [(m.key, ids(m.events)) for m in again] == [
        ("2024-03-05T10", ["late"]),
        ("2024-03-05T11", ["b2"]),
    ]
    assert list(archive.members("src_a", utc(2024, 3, 5, 12))) == []
    assert [
        m.key for m in archive.members("src_a", utc(2024, 3, 5), until=utc(2024, 3, 5, 11))
    ] == ["2024-03-05T10"] * 2


def test_members_leave_out_a_member_still_being_written(tmp_path: Path) -> None:
    writer = ArchiveWriter(tmp_path)
    path = tmp_path / "src_a/2024-03-05/10.ndjson.gz"
    feed(writer, record([event("m1", "2024-03-05T10:00:01.000Z")]))
    intact = path.stat().st_size
    feed(
        writer,
        record([event(f"t{i}", "2024-03-05T10:00:02.000Z", pad="x" * 50) for i in range(200)]),
    )
    with open(path, "r+b") as f:
        f.truncate(intact + (path.stat().st_size - intact) // 2)
    [member] = list(Archive(tmp_path).members("src_a", utc(2024, 3, 5)))
    assert ids(member.events) == ["m1"] and member.end == intact
