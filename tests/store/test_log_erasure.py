"""The log eraser: waits until retention has dropped everything appended before a deletion,
sealing the newest segment; then no byte of the subject is left in the log or the state
database (secure_delete, WAL truncated). On SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import msgspec

from headwater.privacy.erasure import Erasure, Progress, Subjects
from headwater.store.database import forget_deleted, is_sqlite
from headwater.store.log_erasure import LogEraser
from headwater.store.segments import SegmentLog
from tests.pipeline.test_processed_references import GROUPS, RECEIVED_AT, Setup, batch, run
from tests.pipeline.test_processed_references import setup as setup
from tests.support.clock import Clock
from tests.support.records import log_record, stored_event
from tests.support.search import find_marker

MARKER = "MARKER-6b1f0c"


def subject_request() -> bytes:
    event = stored_event("s-1", RECEIVED_AT, userId="u2", properties={"note": MARKER})
    return log_record("src_a", RECEIVED_AT, [event])


def consume(setup: Setup) -> None:
    for group in GROUPS:
        setup.processed.commit_many(group, {p: o for p, o, _ in setup.read_all(group)})
    setup.processed.truncate()
    setup.chain.trim()


def test_done_only_once_retention_dropped_what_came_before(
    setup: Setup,
    tmp_path: Path,
) -> None:
    clock = setup.chain._clock  # the fixture's test clock
    assert isinstance(clock, Clock)
    run(setup, [batch("before"), subject_request()])
    eraser = LogEraser(setup.ingest, setup.processed)
    assert eraser.target.kind == "internal" and eraser.target.id == "log"
    deletion = Erasure("reg_1", "ws_1", Subjects(user_ids=frozenset({"u2"})), clock() + 5)

    first = eraser.erase(deletion)
    assert isinstance(first, Progress)
    assert "processed stream" in first.detail  # no group has read them yet
    if isinstance(setup.ingest, SegmentLog):
        assert (setup.ingest.directory / ".seal").exists()  # the newest segment must go too

    clock.advance(60)  # someone else's event, after the deletion, rotates the segment
    run(setup, [batch("after")])
    if isinstance(setup.ingest, SegmentLog):
        assert not (setup.ingest.directory / ".seal").exists()
        assert find_marker(tmp_path / "log", MARKER)  # still there: not every group passed
    assert isinstance(eraser.erase(deletion), Progress)
    consume(setup)

    assert eraser.erase(deletion) is None
    if is_sqlite(setup.engine):
        assert forget_deleted(setup.engine)
        assert find_marker(tmp_path, MARKER) == []
    assert eraser.erase(deletion) is None  # and stays done
    if isinstance(setup.ingest, SegmentLog):  # the rotated segment holds what came after
        after = [msgspec.json.decode(p)["events"][0]["messageId"] for _, p in _ingest(setup)]
        assert after == ["after-0"]


def _ingest(setup: Setup) -> list[tuple[int, bytes]]:
    return [row for p in setup.ingest.partitions for row in setup.ingest.read(p, 0, 100_000)]


def test_a_group_is_behind_until_it_passed_what_came_before(setup: Setup) -> None:
    clock = setup.chain._clock
    assert isinstance(clock, Clock)
    run(setup, [subject_request()])
    moment = clock() + 1
    assert setup.processed.behind("first", moment)
    assert not setup.processed.behind("first", clock() - 10)  # nothing that old
    setup.processed.commit_many("first", {p: o for p, o, _ in setup.read_all("first")})
    assert not setup.processed.behind("first", moment)
    assert setup.processed.behind("second", moment)


def test_a_quiet_log_drops_its_sealed_newest_segment_and_goes_on(
    setup: Setup,
    tmp_path: Path,
) -> None:
    clock = setup.chain._clock
    assert isinstance(clock, Clock)
    run(setup, [subject_request()])
    eraser = LogEraser(setup.ingest, setup.processed)
    deletion = Erasure("reg_1", "ws_1", Subjects(user_ids=frozenset({"u2"})), clock() + 5)
    consume(setup)
    if isinstance(setup.ingest, SegmentLog):
        assert isinstance(eraser.erase(deletion), Progress)  # asks for the seal
        last = setup.ingest.end(0)
        consume(setup)  # no append came: retention drops the newest segment itself
        assert list((tmp_path / "log").glob("*.db")) == []
        assert not (setup.ingest.directory / ".seal").exists()
    assert eraser.erase(deletion) is None
    assert find_marker(tmp_path / "log", MARKER) == []

    clock.advance(60)
    run(setup, [batch("after")])  # a new log, above every offset of the old one
    if isinstance(setup.ingest, SegmentLog):
        assert setup.ingest.end(0) > last
    assert [
        msgspec.json.decode(p)["events"][0]["messageId"] for _, _, p in setup.read_all("second")
    ][-1] == "after-0"


def test_the_chain_is_behind_until_it_passed_what_came_before(setup: Setup) -> None:
    clock = setup.chain._clock
    assert isinstance(clock, Clock)
    setup.ingest.append([("ws_1", subject_request())])
    assert setup.chain.behind(clock() + 1)
    assert not setup.chain.behind(clock() - 10)
    assert setup.chain.run_once() == 1
    assert not setup.chain.behind(clock() + 1)
    # What the archive eraser waits on: the chain, then the archive's consumer group.
    assert setup.processed.behind("first", clock() + 1)
