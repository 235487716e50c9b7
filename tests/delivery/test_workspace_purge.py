"""A-DS-11: a workspace's purge is not forwarded: a retry waiting in a queue is never sent."""

from __future__ import annotations

from pathlib import Path

from headwater.privacy.workspace_deletion import GRACE_SECONDS, WorkspaceDeletions, WorkspacePurge
from tests.delivery.conftest import Pipeline, track
from tests.support.receiver import Answer, Receiver


def test_a_ds_11_nothing_is_sent_during_the_purge(
    pipeline: Pipeline, hook: Receiver, tmp_path: Path
) -> None:
    dest = pipeline.add("hook", settings={"url": hook.url + "/in"})
    hook.answer(Answer(status=500))
    pipeline.send(track())
    assert pipeline.deliver() == 1
    assert len(hook.requests) == 1
    assert pipeline.delivery.queue.backlog(dest.id) == {"pending": 1, "retrying": 1}

    WorkspaceDeletions(pipeline.engine, clock=pipeline.clock).request("test")
    pipeline.clock.advance(GRACE_SECONDS)
    done = WorkspacePurge(pipeline.engine, tmp_path / "archive", clock=pipeline.clock).run_due()
    assert done is not None and done.status == "PURGED"

    pipeline.clock.advance(3600)  # the retry would be long due
    assert pipeline.deliver() == 0
    assert len(hook.requests) == 1  # only the attempt made before the purge
    assert pipeline.delivery.queue.backlog(dest.id) == {"pending": 0, "retrying": 0}
