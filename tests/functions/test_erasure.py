"""A regulation's deletion reaches the functions' error logs: entries whose input sample is the
subject's, or whose console lines, error message or request URLs name one of its identifiers,
go; everyone else's stay, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.destinations.store import DestinationStore
from headwater.functions.contract import IncomingRequest, Invocation, LogLine, OutgoingRequest
from headwater.functions.erasure import FunctionLogEraser
from headwater.functions.store import FunctionLogs, FunctionStore
from headwater.privacy.erasure import Erasure, Subjects
from headwater.store import schema
from headwater.store.workspace import WorkspaceStore

CODE = "async function onTrack(event) { return event }"


def track(user: str, **properties: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Signed Up", "userId": user, "properties": properties}


def messages(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(sa.select(schema.function_logs.c.message)).scalars().all())


def test_the_subjects_entries_go_and_others_stay(engine: Engine) -> None:
    workspace = WorkspaceStore(engine)
    workspace_id = workspace.ensure_workspace("acme").id
    web = workspace.create_source("web").id
    app = workspace.create_source("app").id
    hook = DestinationStore(workspace).create(
        "hook", "webhook", web, settings={"url": "https://hooks.example.com/x"}
    )
    functions = FunctionStore(workspace)
    functions.create("enrich", "insert", "javascript", CODE)
    logs = FunctionLogs(workspace)

    def record(message: str, payload: Any, instance: str | None = hook.id, **kw: Any) -> None:
        logs.record(
            "enrich", 1, instance, Invocation(error="Error", message=message, **kw), payload
        )

    record("payload", track("u2"))
    record("email", track("u9", friend="u2@example.com"))
    record("console", track("u9"), logs=[LogLine("log", "looking up user u2, then")])
    record("url", track("u9"), requests=[OutgoingRequest("GET", "https://x.io/users/u2", 500)])
    record("in message u2", track("u9"))
    request = IncomingRequest("POST", "https://hw/v1", (), b'{"userId": "u2"}')
    record("request", request, instance=None)  # the test runner's
    # Not u2's: a longer id that contains "u2", a bare value equal to it in someone's event.
    record("other", track("u22", order_id="u2"), logs=[LogLine("log", "user u22")])
    record("other source", track("u2"), instance=app)
    erasure = Erasure(
        "reg_1",
        workspace_id,
        Subjects(user_ids=frozenset({"u2"}), external_ids=frozenset({("email", "u2@example.com")})),
        created_at=0,
        source_ids=frozenset({web}),
    )
    eraser = FunctionLogEraser(engine)
    assert eraser.target.kind == "internal"
    assert eraser.erase(erasure) is None
    assert messages(engine) == ["other", "other source", "request"]
    # A workspace-wide erasure reaches the test runner's entries too; a source function's
    # request body, kept as text, is read as JSON.
    workspace_wide = Erasure("reg_2", workspace_id, erasure.subjects, created_at=0)
    assert eraser.erase(workspace_wide) is None
    assert messages(engine) == ["other"]
    assert eraser.erase(workspace_wide) is None  # idempotent
