"""The log eraser: waits until retention has dropped everything appended before a deletion,
sealing the newest segment; then no byte of the subject is left in the log or the state
database (secure_delete, WAL truncated). On SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

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

    consume(setup)
    if isinstance(setup.ingest, SegmentLog):
        # The groups are past, but the newest segment stays: the eraser asked for a seal.
        assert isinstance(eraser.erase(deletion), Progress)
        assert (setup.ingest.directory / ".seal").exists()
        assert find_marker(tmp_path / "log", MARKER)

    clock.advance(60)  # someone else's event, after the deletion, rotates the segment
    run(setup, [batch("after")])
    consume(setup)

    assert eraser.erase(deletion) is None
    if isinstance(setup.ingest, SegmentLog):
        assert not (setup.ingest.directory / ".seal").exists()
    if is_sqlite(setup.engine):
        assert forget_deleted(setup.engine)
        assert find_marker(tmp_path, MARKER) == []
    assert eraser.erase(deletion) is None  # and stays done


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
