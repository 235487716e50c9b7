"""Source functions' usage (§11.1): every run of a stored request is billed, its retries too,
added once per batch of requests the worker ran (real sandbox, in process)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.functions.logs import FunctionLogs
from headwater.functions.objects import FunctionObjects
from headwater.functions.requests import FunctionRequests
from headwater.functions.sandbox.runtime import SandboxRuntime
from headwater.functions.store import FunctionStore
from headwater.functions.usage import FunctionUsage
from headwater.ingest.internal import InternalAppend
from headwater.ingest.source_function_runs import SourceFunctionRuns
from headwater.store.ingest_log import IngestLog
from headwater.store.workspace import WorkspaceStore
from tests.functions.test_source_function_runs import (  # noqa: F401  (fixtures)
    JSON,
    URL,
    appended,
    drive,
    log,
    runtimes,
    sqlite,
)
from tests.support.clock import Clock

CODE = """
async function onRequest(request) {
  const body = await request.json()
  if (body.fail) throw new RetryError('try again')
  Segment.track({event: 'Paid', userId: body.user})
}
"""


def test_each_run_and_retry_is_billed_in_one_write_a_batch(
    sqlite: Engine,  # noqa: F811
    log: IngestLog,  # noqa: F811
    clock: Clock,
) -> None:
    workspace = WorkspaceStore(sqlite, clock=clock)
    source = workspace.create_source("in")
    functions = FunctionStore(workspace)
    function = functions.create("fn", "source", "javascript", CODE)
    functions.attach_source("in", "fn", {})
    requests = FunctionRequests(sqlite)
    usage = FunctionUsage(workspace, clock=clock)

    def runner() -> SourceFunctionRuns:
        """The worker's runner on a runtime of its own (``drive`` closes it)."""
        runtime = SandboxRuntime()
        runtimes.append(runtime)
        return SourceFunctionRuns(
            requests,
            functions,
            FunctionLogs(workspace, clock=clock),
            runtime,
            InternalAppend(log, clock=clock),
            FunctionObjects(sqlite),
            clock=clock,
            usage=usage,
        )

    def add(body: str) -> None:
        request = {"method": "POST", "url": URL, "headers": JSON, "body": body}
        requests.add(source.workspace_id, source.id, request, clock())

    for user in ("u1", "u2", "u3"):
        add(f'{{"user": "{user}"}}')
    add('{"fail": true}')
    writes: list[str] = []

    def listen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "function_usage" in statement and statement.lstrip().upper().startswith("INSERT"):
            writes.append(statement)

    sa.event.listen(sqlite, "before_cursor_execute", listen)
    drive(runner(), 1, clock)
    assert len(writes) == 1  # four requests, one write
    [month] = usage.months(function.id)
    assert (month.invocations, month.errors) == (4, 1)
    assert month.execution_ms >= 4
    assert sorted(e["userId"] for e in appended(log)) == ["u1", "u2", "u3"]

    # The failed request's retry is billed again.
    [waiting] = requests.pending()
    clock.now = waiting.next_attempt_at + 1
    drive(runner(), 1, clock)
    [month] = usage.months(function.id)
    assert (month.invocations, month.errors) == (5, 2)
