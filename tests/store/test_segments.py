"""The ingest log's segment files: dense offsets across rotations, appenders in several
processes, a reader that drops what it has passed, and an appender whose segment went away."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path

from headwater.store.segments import SegmentLog


def open_log(directory: Path, segment_bytes: int = 64 << 20) -> SegmentLog:
    return SegmentLog(directory, segment_bytes=segment_bytes, clock=time.time)


def payload(writer: str, n: int, size: int = 200) -> bytes:
    return f"{writer}:{n}:".encode() + b"x" * size


def test_append_and_read_with_dense_offsets(tmp_path: Path) -> None:
    log = open_log(tmp_path / "log")
    try:
        assert log.end(0) == 0
        assert log.read(0, 0, 10) == []
        log.probe()  # an empty log takes writes too
        before = time.time_ns() // 1000
        log.append([("ws", b"a"), ("ws", b"b")])
        log.append([("ws", b"c")])
        rows = log.read(0, 0, 10)
        first = rows[0][0]
        assert before <= first <= time.time_ns() // 1000  # a new log starts at the time, in µs
        assert rows == [(first, b"a"), (first + 1, b"b"), (first + 2, b"c")]
        assert log.read(0, first, 1) == [(first + 1, b"b")]
        assert log.end(0) == first + 2
        assert log.appended_at(0, first + 1) is not None
        log.probe()
    finally:
        log.close()


def test_rotation_keeps_offsets_dense_and_drops_whole_segments(tmp_path: Path) -> None:
    log = open_log(tmp_path / "log", segment_bytes=32 << 10)
    try:
        for n in range(300):
            log.append([("ws", payload("w", n))])
        segments = sorted((tmp_path / "log").glob("*.db"))
        assert len(segments) > 3, "the log never rotated"
        rows = log.read(0, 0, 1000)
        first = rows[0][0]
        assert [o for o, _ in rows] == list(range(first, first + 300))
        assert [p for _, p in rows] == [payload("w", n) for n in range(300)]

        assert log.drop_through(0, first + 149) > 0
        left = sorted((tmp_path / "log").glob("*.db"))
        assert len(left) < len(segments)
        # Nothing past the position was dropped, and reading from it still works.
        assert [o for o, _ in log.read(0, first + 149, 1000)] == list(
            range(first + 150, first + 300)
        )
        assert log.drop_through(0, first + 10**9) >= 1
        assert len(list((tmp_path / "log").glob("*.db"))) == 1  # the newest always stays
        log.append([("ws", b"after")])
        assert log.read(0, first + 299, 10) == [(first + 300, b"after")]
    finally:
        log.close()


def test_an_appender_whose_segments_were_dropped_appends_to_the_newest(tmp_path: Path) -> None:
    """Two logs over one directory stand for two processes: one idles on segment 1 while the
    other rotates twice and drops segments 1 and 2; the idle one must not write into them."""
    idle = open_log(tmp_path / "log", segment_bytes=4 << 10)
    busy = open_log(tmp_path / "log", segment_bytes=4 << 10)
    try:
        idle.append([("ws", b"first")])
        while len(list((tmp_path / "log").glob("*.db"))) < 3:
            busy.append([("ws", payload("busy", 0, 2000))])
        busy.drop_through(0, busy.end(0) - 1)
        idle.append([("ws", b"late")])
        rows = busy.read(0, 0, 1000)
        assert rows[-1][1] == b"late"
        assert rows[-1][0] == busy.end(0)
        assert [o for o, _ in rows] == list(range(rows[0][0], rows[-1][0] + 1))
    finally:
        idle.close()
        busy.close()


def _append_many(directory: str, writer: str, count: int) -> None:
    log = open_log(Path(directory), segment_bytes=64 << 10)
    try:
        for n in range(count):
            log.append([("ws", payload(writer, n))])
    finally:
        log.close()


def test_rotation_under_load_from_processes_and_threads(tmp_path: Path) -> None:
    """Two processes and two threads append while a reader follows and drops what it read:
    every record is read once, in offset order, with no gap, and old segments go away."""
    directory = tmp_path / "log"
    log = open_log(directory, segment_bytes=64 << 10)
    count = 1500
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_append_many, args=(str(directory), f"p{i}", count))
        for i in range(2)
    ]
    threads = [
        threading.Thread(target=_append_many, args=(str(directory), f"t{i}", count))
        for i in range(2)
    ]
    for process in processes:
        process.start()
    for thread in threads:
        thread.start()
    seen: list[tuple[int, bytes]] = []
    most_segments = 0
    deadline = time.monotonic() + 120
    while len(seen) < 4 * count and time.monotonic() < deadline:
        rows = log.read(0, seen[-1][0] if seen else 0, 500)
        seen += rows
        if rows:
            log.drop_through(0, rows[-1][0])
        most_segments = max(most_segments, len(list(directory.glob("*.db"))))
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    for thread in threads:
        thread.join(timeout=60)
    log.close()
    first = seen[0][0]
    assert [o for o, _ in seen] == list(range(first, first + 4 * count))
    by_writer: dict[str, list[int]] = {}
    for _, data in seen:
        writer, n, _ = data.split(b":", 2)
        by_writer.setdefault(writer.decode(), []).append(int(n))
    assert by_writer == {w: list(range(count)) for w in ("p0", "p1", "t0", "t1")}
    assert len(list(directory.glob("*.db"))) <= 2 < most_segments + 1


def test_a_slow_first_append_cannot_bring_back_a_dropped_first_segment(tmp_path: Path) -> None:
    """An appender that found the log empty and then stalled must not create segment 1 after
    the log moved on and dropped it: its offsets would overlap the newer segments'. The
    decision is taken again under the creation lock (called directly: the stall itself cannot
    be arranged from outside)."""
    busy = open_log(tmp_path / "log", segment_bytes=4 << 10)
    slow = open_log(tmp_path / "log", segment_bytes=4 << 10)
    try:
        while len(list((tmp_path / "log").glob("*.db"))) < 3:
            busy.append([("ws", payload("busy", 0, 2000))])
        busy.drop_through(0, busy.end(0) - 1)
        assert not (tmp_path / "log" / "000001.db").exists()
        assert not slow._create_first([(0, b"late")])
        assert not (tmp_path / "log" / "000001.db").exists()
        assert b"late" not in [p for _, p in busy.read(0, 0, 1000)]
    finally:
        busy.close()
        slow.close()
