"""The worker's runs of source functions, in process, on the real sandbox and ingest log: a
timeout is retried (§11.2), a request that breaks the runner counts as an attempt and is
dropped after the sixth, a request whose source no longer runs a function is dropped, and what
a failed invocation emitted is not kept (its retry emits it)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from sqlalchemy.engine import Engine

from headwater.functions.logs import FunctionLogs
from headwater.functions.objects import FunctionObjects
from headwater.functions.requests import MAX_ATTEMPTS, FunctionRequests
from headwater.functions.sandbox.runtime import SandboxRuntime
from headwater.functions.store import FunctionStore
from headwater.ingest.internal import InternalAppend
from headwater.ingest.source_function_runs import SourceFunctionRuns
from headwater.store.database import database_url, open_engine
from headwater.store.ingest_log import IngestLog, open_ingest_log
from headwater.store.migrations import migrate
from headwater.store.record import decode_record
from headwater.store.workspace import WorkspaceStore
from tests.support.clock import Clock

JSON = [["content-type", "application/json"]]
runtimes: list[SandboxRuntime] = []  # started by runs_of, closed by drive
URL = "http://127.0.0.1/v1/functions/in"


@pytest.fixture
def sqlite(tmp_path: Path) -> Iterator[Engine]:
    db = open_engine(database_url(tmp_path, None))
    migrate(db)
    yield db
    db.dispose()


@pytest.fixture
def log(sqlite: Engine, tmp_path: Path, clock: Clock) -> Iterator[IngestLog]:
    opened = open_ingest_log(sqlite, tmp_path, durability="normal", clock=clock)
    yield opened
    opened.close()


def appended(log: IngestLog) -> list[dict[str, Any]]:
    return [
        msgspec.json.decode(event)
        for partition in log.partitions
        for _, payload in log.read(partition, 0, 1000)
        for event in decode_record(payload).events
    ]


def runs_of(
    sqlite: Engine, log: IngestLog, clock: Clock, code: str
) -> tuple[SourceFunctionRuns, FunctionRequests, str, str]:
    """A source ``in`` running ``code``: the runner (its runtime closed by ``drive``), the
    requests store, the workspace and source ids."""
    workspace = WorkspaceStore(sqlite)
    source = workspace.create_source("in")
    functions = FunctionStore(workspace)
    functions.create("fn", "source", "javascript", code)
    functions.attach_source("in", "fn", {})
    requests = FunctionRequests(sqlite)
    runtime = SandboxRuntime()
    runtimes.append(runtime)
    runs = SourceFunctionRuns(
        requests,
        functions,
        FunctionLogs(workspace, clock=clock),
        runtime,
        InternalAppend(log, clock=clock),
        FunctionObjects(sqlite),
        clock=clock,
    )
    return runs, requests, source.workspace_id, source.id


def drive(runs: SourceFunctionRuns, passes: int, clock: Clock, step: float = 0.0) -> None:
    """``passes`` of the worker's loop, the clock moved ``step`` seconds after each."""

    async def main() -> None:
        try:
            for _ in range(passes):
                await runs.run_due()
                clock.advance(step)
        finally:
            for runtime in runtimes:
                await runtime.close()
            runtimes.clear()

    asyncio.run(main())


def test_a_timeout_is_retried_and_nothing_it_emitted_is_kept(
    sqlite: Engine, log: IngestLog, clock: Clock
) -> None:
    code = """
    async function onRequest(request) {
      Segment.track({ event: 'Before The Loop', userId: 'u1' })
      for (;;) {}
    }
    """
    runs, requests, workspace_id, source_id = runs_of(sqlite, log, clock, code)
    requests.add(
        workspace_id,
        source_id,
        {"method": "POST", "url": URL, "headers": JSON, "body": "{}"},
        clock(),
    )
    drive(runs, 1, clock)
    (waiting,) = requests.pending()
    assert waiting.attempts == 1
    assert waiting.last_error is not None and waiting.last_error.startswith("Timeout")
    assert waiting.first_gap is not None
    assert waiting.next_attempt_at == pytest.approx(clock() + waiting.first_gap)
    assert appended(log) == []  # the track before the loop waits for a run that ends


def test_a_request_that_breaks_the_runner_is_dropped_after_six_attempts(
    sqlite: Engine, log: IngestLog, clock: Clock
) -> None:
    runs, requests, workspace_id, source_id = runs_of(
        sqlite,
        log,
        clock,
        "async function onRequest() { Segment.track({event: 'E', userId: 'u'}) }",
    )
    # A stored body that cannot be decoded (base64 without its padding): Headwater's fault, not the code's.
    requests.add(
        workspace_id, source_id, {"method": "POST", "url": URL, "body_base64": "abc"}, clock()
    )
    good = requests.add(
        workspace_id,
        source_id,
        {"method": "POST", "url": URL, "headers": JSON, "body": "{}"},
        clock(),
    )
    drive(runs, 1, clock)
    assert [(r.attempts, (r.last_error or "").split(":")[0]) for r in requests.pending()] == [
        (1, "Crashed")
    ]
    assert good not in [r.id for r in requests.pending()]
    assert [e["event"] for e in appended(log)] == ["E"]
    drive(runs, MAX_ATTEMPTS * 2, clock, step=20 * 60)
    assert requests.pending() == []


def test_a_request_of_a_source_without_its_function_is_dropped(
    sqlite: Engine, log: IngestLog, clock: Clock
) -> None:
    runs, requests, workspace_id, source_id = runs_of(
        sqlite,
        log,
        clock,
        "async function onRequest() { Segment.track({event: 'E', userId: 'u'}) }",
    )
    requests.add(
        workspace_id,
        source_id,
        {"method": "POST", "url": URL, "headers": JSON, "body": "{}"},
        clock(),
    )
    FunctionStore(WorkspaceStore(sqlite)).attach_source("in", None)
    drive(runs, 1, clock)
    assert requests.pending() == []
    assert appended(log) == []
