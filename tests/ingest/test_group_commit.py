"""Group commit on the event loop: one append per turn of the loop, nothing after stop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from headwater.errors import LogUnavailable
from headwater.ingest.committer import GroupCommitter, Submission
from headwater.store.segments import SegmentLog


class CountingLog(SegmentLog):
    """The real segment log, counting its appends."""

    appends: list[int]

    def append(self, records: Sequence[tuple[str, bytes]]) -> None:
        self.appends.append(len(records))
        super().append(records)


def submission(n: int) -> Submission:
    event = {"type": "track", "userId": f"u{n}", "event": "E", "messageId": f"m-{n}"}
    return Submission("ws", "src", "2024-01-01T00:00:00.000Z", [event], [])


@pytest.fixture
def log(tmp_path: Path) -> CountingLog:
    log = CountingLog(tmp_path / "log", clock=time.time)
    log.appends = []
    return log


def test_requests_of_one_turn_share_one_append(log: CountingLog) -> None:
    committer = GroupCommitter(log)

    async def turns() -> None:
        await asyncio.gather(*(committer.submit(submission(n)) for n in range(50)))
        await committer.submit(submission(50))  # a later turn: a commit of its own

    asyncio.run(turns())
    assert log.appends == [50, 1]
    stored = sum(len(log.read(p, 0, 1000)) for p in log.partitions)
    assert stored == 51
    log.close()


def test_a_group_is_split_at_the_event_cap(log: CountingLog) -> None:
    committer = GroupCommitter(log, max_events_per_commit=20)

    async def burst() -> None:
        await asyncio.gather(*(committer.submit(submission(n)) for n in range(50)))

    asyncio.run(burst())
    assert log.appends == [20, 20, 10]
    log.close()


def test_nothing_is_committed_after_stop(log: CountingLog) -> None:
    committer = GroupCommitter(log)
    committer.stop()
    with pytest.raises(LogUnavailable):
        asyncio.run(committer.submit(submission(1)))
    assert log.appends == []
    log.close()
