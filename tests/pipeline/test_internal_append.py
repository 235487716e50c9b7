"""The internal append path from another process into a running server: normalised like the
Tracking API's messages, deduplicated by the same stage, archived once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from headwater.errors import InvalidError
from headwater.ingest.internal import InternalAppend
from headwater.store.database import database_url, open_engine
from headwater.store.ingest_log import open_ingest_log
from headwater.store.workspace import WorkspaceStore
from tests.support.live import serving
from tests.support.waiting import wait_for


@pytest.mark.live
def test_internal_events_from_another_process_are_archived_once(tmp_path: Path) -> None:
    with serving(tmp_path, role="all") as live:
        engine = open_engine(database_url(live.data_dir, None))
        log = open_ingest_log(engine, live.data_dir, durability="normal", clock=time.time)
        try:
            source = WorkspaceStore(engine).get_source("web")
            assert source is not None
            internal = InternalAppend(log, clock=time.time)
            message = {
                "type": "track",
                "event": "Audience Entered",
                "userId": "u-internal",
                "messageId": "internal-1",
            }
            assert internal.append(source.workspace_id, source.id, [message]) == ["internal-1"]
            internal.append(source.workspace_id, source.id, [message])  # a retry: a duplicate
            with pytest.raises(InvalidError, match="userId"):
                internal.append(source.workspace_id, source.id, [{"type": "track", "event": "E"}])
            wait_for(live.archived, 30, "the internal event in the archive")
            live.wait_processed()  # the retry has been through the dedup stage too
            archived = live.archived()
        finally:
            log.close()
            engine.dispose()
    assert [e["messageId"] for e in archived] == ["internal-1"]
    [event] = archived
    assert event["type"] == "track" and event["receivedAt"] and event["timestamp"]
