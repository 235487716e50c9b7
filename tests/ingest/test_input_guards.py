"""The guards behind the Tracking API's checks, for the input no check foresaw yet.

The hostile battery (test_hostile_input.py) shows that no known input reaches these guards;
here a step is made to fail the way an unforeseen input would make it fail, on real parts
(SQLite state database, group committer, event log), to show what the client then gets.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from sqlalchemy.engine import Engine

from headwater.config.settings import ServerSettings
from headwater.errors import UnstorableSubmission
from headwater.ingest import app as tracking_app
from headwater.ingest.app import TrackingAPI
from headwater.ingest.committer import GroupCommitter, Submission
from headwater.ingest.sources import SourceCache
from headwater.observe.metrics import Metrics
from headwater.store.database import database_url, open_engine
from headwater.store.migrations import migrate
from headwater.store.segments import SegmentLog
from headwater.store.workspace import WorkspaceStore

AUTH = {"Authorization": "Basic " + base64.b64encode(b"WK_guard:").decode()}


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    db = open_engine(database_url(tmp_path, None))
    migrate(db)
    store = WorkspaceStore(db)
    store.ensure_workspace("guards")
    store.create_source("web", write_key="WK_guard")
    yield db
    db.dispose()


@pytest.fixture
def ingest_log(tmp_path: Path) -> Iterator[SegmentLog]:
    log = SegmentLog(tmp_path / "log", clock=time.time)
    yield log
    log.close()


@pytest.fixture
def committer(ingest_log: SegmentLog) -> Iterator[GroupCommitter]:
    committer = GroupCommitter(ingest_log)
    yield committer
    committer.stop()


def post(engine: Engine, committer: GroupCommitter, body: dict[str, Any]) -> httpx.Response:
    """One request to a Tracking API on the real committer, in process."""
    api = TrackingAPI(
        sources=SourceCache(WorkspaceStore(engine)),
        committer=committer,
        settings=ServerSettings(),
        metrics=Metrics(),
    )

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await http.post("/v1/track", json=body, headers=AUTH)

    return asyncio.run(send())


def _stored_user_ids(log: SegmentLog) -> list[str]:
    return [e["userId"] for _, p in log.read(0, 0, 1000) for e in msgspec.json.decode(p)["events"]]


def test_an_input_error_past_the_checks_is_a_400_not_a_500(
    committer: GroupCommitter,
    engine: Engine,
    ingest_log: SegmentLog,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = tracking_app.normalize  # type: ignore[attr-defined]

    def failing(item: Any, *args: Any, **kwargs: Any) -> Any:
        if item.get("userId") == "poison":
            raise RecursionError("maximum recursion depth exceeded")
        return real(item, *args, **kwargs)

    monkeypatch.setattr(tracking_app, "normalize", failing)
    response = post(engine, committer, {"userId": "poison", "event": "E"})
    assert response.status_code == 400
    assert response.json()["code"] == "bad_request"
    assert "RecursionError" in response.json()["message"]
    assert response.headers["access-control-allow-origin"] == "*"
    good = post(engine, committer, {"userId": "good", "event": "E"})
    assert good.status_code == 200
    assert _stored_user_ids(ingest_log) == ["good"]


def test_a_bug_is_a_json_500(
    committer: GroupCommitter, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise KeyError("not the client's fault")

    monkeypatch.setattr(tracking_app, "normalize", broken)
    response = post(engine, committer, {"userId": "u", "event": "E"})
    assert response.status_code == 500
    assert response.json()["code"] == "server_error"


class Unencodable:
    """Nothing a JSON body decodes to, but what a future enrichment step might add."""


def test_one_unstorable_request_does_not_fail_its_commit_group(
    engine: Engine, ingest_log: SegmentLog
) -> None:
    committer = GroupCommitter(ingest_log)
    source = WorkspaceStore(engine).get_source("web")
    assert source is not None

    def submission(user: str, extra: Any = None) -> Submission:
        event: dict[str, Any] = {"userId": user, "messageId": f"m-{user}", "type": "track"}
        if extra is not None:
            event["bad"] = extra
        return Submission(source.workspace_id, source.id, "2024-01-01T00:00:00.000Z", [event], [])

    async def together() -> list[Any]:
        waiting = [
            asyncio.ensure_future(committer.submit(s))
            for s in (submission("a"), submission("poison", Unencodable()), submission("b"))
        ]
        # Submitted in one turn of the loop: one group.
        return await asyncio.gather(*waiting, return_exceptions=True)

    results = asyncio.run(together())
    assert isinstance(results[1], UnstorableSubmission)
    assert results[0] is None and results[2] is None  # acknowledged
    assert committer.healthy
    assert sorted(_stored_user_ids(ingest_log)) == ["a", "b"]
    # Fixed and retried, the poisoned request is stored.
    asyncio.run(committer.submit(submission("poison")))
    assert sorted(_stored_user_ids(ingest_log)) == ["a", "b", "poison"]
