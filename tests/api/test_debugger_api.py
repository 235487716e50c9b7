"""The Source Debugger API: newest entries, the SSE stream, and ``headwater tail``."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest
import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api import debugger
from headwater.api.debugger import router
from headwater.api.errors import ApiError, handle_api_error
from headwater.observe.tail import format_entry, tail
from headwater.pipeline.observer import Observer
from headwater.store import schema
from headwater.store.admin_token import hash_token
from tests.support.ports import free_port
from tests.support.records import log_record
from tests.support.waiting import wait_for

AUTH = {"authorization": "Bearer t"}


@pytest.fixture
def engine(engine: Engine) -> Engine:
    """The shared engine (SQLite, then PostgreSQL) with a workspace and two sources."""
    with engine.begin() as conn:
        conn.execute(
            schema.workspaces.insert().values(
                id="ws_1", name="Test", slug="test", settings={}, created_at=0
            )
        )
        for source_id, name in (("src_web", "Web Site"), ("src_ios", "iOS")):
            conn.execute(
                schema.sources.insert().values(
                    id=source_id,
                    workspace_id="ws_1",
                    name=name,
                    slug=name.lower().replace(" ", "-"),
                    enabled=True,
                    settings={},
                    created_at=0,
                    updated_at=0,
                )
            )
    return engine


@pytest.fixture
def app(engine: Engine) -> FastAPI:
    app = FastAPI()
    app.state.engine = engine
    app.state.admin_token_hash = hash_token("t")
    app.include_router(router, prefix="/api/v1")  # as create_api mounts it
    app.add_exception_handler(ApiError, handle_api_error)
    return app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


_offset = 0


def observe(
    engine: Engine,
    events: list[dict[str, Any]],
    source: str = "src_web",
    dropped: list[dict[str, Any]] | None = None,
) -> None:
    """Write debugger entries the way the pipeline does: through the observer stage."""
    global _offset
    _offset += 1
    payload = log_record(source, "2024-03-05T10:00:00.000Z", events, dropped=dropped or [])
    Observer(engine)([(0, _offset, payload)])


def track(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": f"u{n}",
        "messageId": f"m{n}",
        "receivedAt": "2024-03-05T10:00:00.000Z",
        **extra,
    }


# --- GET .../debugger -------------------------------------------------------------------------


def test_newest_first_with_the_default_limit(engine: Engine, client: TestClient) -> None:
    observe(engine, [track(n) for n in range(120)])
    observe(engine, [track(999)], source="src_ios")
    response = client.get("/api/v1/sources/src_web/debugger", headers=AUTH)
    assert response.status_code == 200
    events = response.json()["data"]["events"]
    assert len(events) == 100
    assert [e["message"]["messageId"] for e in events[:3]] == ["m119", "m118", "m117"]
    first = events[0]
    assert set(first) == {"id", "receivedAt", "status", "message"}
    assert first["status"] == "accepted"
    assert first["receivedAt"] == track(119)["receivedAt"]
    assert first["message"] == track(119)
    assert events[0]["id"] > events[1]["id"]


def test_limit_and_dropped_entries(engine: Engine, client: TestClient) -> None:
    observe(
        engine,
        [track(1)],
        dropped=[
            {"reason": "no_user_anon_id", "detail": "needs an id", "message": {"type": "track"}}
        ],
    )
    response = client.get("/api/v1/sources/src_web/debugger?limit=1", headers=AUTH)
    [entry] = response.json()["data"]["events"]
    assert entry == {
        "id": entry["id"],
        "receivedAt": "2024-03-05T10:00:00.000Z",
        "status": "dropped",
        "reason": "no_user_anon_id",
        "detail": "needs an id",
        "message": {"type": "track"},
    }
    response = client.get("/api/v1/sources/src_web/debugger?limit=500", headers=AUTH)
    assert len(response.json()["data"]["events"]) == 2


@pytest.mark.parametrize("limit", ["0", "501", "ten"])
def test_a_bad_limit_is_a_validation_error(client: TestClient, limit: str) -> None:
    response = client.get(f"/api/v1/sources/src_web/debugger?limit={limit}", headers=AUTH)
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["field"] == "limit"


def test_sources_are_found_by_id_name_or_slug(engine: Engine, client: TestClient) -> None:
    observe(engine, [track(1)], source="src_ios")
    for ref in ("src_ios", "iOS", "ios"):
        response = client.get(f"/api/v1/sources/{ref}/debugger", headers=AUTH)
        assert response.status_code == 200, ref
        assert len(response.json()["data"]["events"]) == 1
    assert client.get("/api/v1/sources/Web Site/debugger", headers=AUTH).status_code == 200


def test_unknown_source_is_404_in_the_error_shape(client: TestClient) -> None:
    for path in ("/api/v1/sources/nope/debugger", "/api/v1/sources/nope/debugger/stream"):
        response = client.get(path, headers=AUTH)
        assert response.status_code == 404
        [error] = response.json()["errors"]
        assert error["type"] == "not_found"
        assert "nope" in error["message"]


@pytest.mark.parametrize(
    "headers", [{}, {"authorization": "Bearer wrong"}, {"authorization": "Basic dDo="}]
)
def test_the_admin_token_is_required(client: TestClient, headers: dict[str, str]) -> None:
    for path in (
        "/api/v1/sources/src_web/debugger",
        "/api/v1/sources/src_web/debugger/stream",
        "/api/v1/sources/nope/debugger",
    ):
        response = client.get(path, headers=headers)
        assert response.status_code == 401
        assert response.json()["errors"][0]["type"] == "unauthorized"


def test_search_matches_raw_payloads(engine: Engine, client: TestClient) -> None:
    observe(engine, [track(1, properties={"plan": "Enterprise"}), track(2), track(3)])
    response = client.get("/api/v1/sources/src_web/debugger?q=enterprise", headers=AUTH)
    assert [e["message"]["messageId"] for e in response.json()["data"]["events"]] == ["m1"]


def test_mounted_in_the_rest_api(engine: Engine) -> None:
    """The REST API mounts this router under its /api/v1 prefix, with its own error handlers."""
    from headwater.api.app import create_api

    observe(engine, [track(1)])
    api = create_api(engine, admin_token_hash=hash_token("t"), extra_routers=[router])
    with TestClient(api) as http:
        response = http.get("/api/v1/sources/Web Site/debugger", headers=AUTH)
        assert response.status_code == 200
        assert response.json()["data"]["events"][0]["message"]["messageId"] == "m1"
        assert http.get("/api/v1/sources/src_web/debugger").status_code == 401
        assert http.get("/api/v1/sources/nope/debugger", headers=AUTH).status_code == 404


# --- the stream -------------------------------------------------------------------------------


@pytest.fixture
def live(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, uvicorn.Server]]:
    """The app on a real loopback server: streaming over TCP, as browsers and tail see it."""
    monkeypatch.setattr(debugger, "POLL_SECONDS", 0.02)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            lifespan="off",
            log_level="warning",
            timeout_graceful_shutdown=1,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 10, "the server to start", interval=0.01)
    yield f"http://127.0.0.1:{port}", server
    server.should_exit = True
    thread.join(timeout=10)


def _sse(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, str]]]:
    """(kind, fields) per SSE block: kind "comment" or "event"."""
    fields: dict[str, str] = {}
    comment = False
    for line in lines:
        if line == "":
            if fields:
                yield "event", fields
            elif comment:
                yield "comment", {}
            fields, comment = {}, False
        elif line.startswith(":"):
            comment = True
        else:
            name, _, value = line.partition(":")
            fields[name] = fields.get(name, "") + value.removeprefix(" ")


def test_the_stream_delivers_new_entries(engine: Engine, live: tuple[str, uvicorn.Server]) -> None:
    base, server = live
    observe(engine, [track(1)])  # before the subscription: not streamed
    url = f"{base}/api/v1/sources/Web Site/debugger/stream"
    with httpx.Client(timeout=5) as http, http.stream("GET", url, headers=AUTH) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        blocks = _sse(response.iter_lines())
        assert next(blocks)[0] == "event"  # the opening `retry:` block: subscribed
        observe(engine, [track(2), track(3)])
        observe(engine, [], dropped=[{"reason": "no_user_anon_id", "message": {"x": 1}}])
        got = [next(blocks)[1] for _ in range(3)]
    entries = [msgspec.json.decode(block["data"]) for block in got]
    assert [e["status"] for e in entries] == ["accepted", "accepted", "dropped"]
    assert [e["message"].get("messageId") for e in entries[:2]] == ["m2", "m3"]
    assert entries[2]["reason"] == "no_user_anon_id"
    assert [int(block["id"]) for block in got] == [e["id"] for e in entries]

    # the handler ends once the client has gone
    wait_for(
        lambda: not server.server_state.tasks,
        5,
        "the stream to end after the client left",
        interval=0.02,
    )


def test_the_stream_resumes_after_an_id(engine: Engine, live: tuple[str, uvicorn.Server]) -> None:
    base, _ = live
    observe(engine, [track(1), track(2), track(3)])
    first = _entry_ids(engine)[0]
    url = f"{base}/api/v1/sources/src_web/debugger/stream"
    for kwargs in (
        {"params": {"after": str(first)}},
        {"headers": {**AUTH, "last-event-id": str(first)}},
    ):
        headers = kwargs.pop("headers", AUTH)
        with (
            httpx.Client(timeout=5) as http,
            http.stream(
                "GET",
                url,
                headers=headers,
                **kwargs,  # type: ignore[arg-type]
            ) as response,
        ):
            blocks = (b for kind, b in _sse(response.iter_lines()) if "data" in b)
            ids = [
                msgspec.json.decode(next(blocks)["data"])["message"]["messageId"] for _ in range(2)
            ]
        assert ids == ["m2", "m3"]


def test_the_stream_sends_heartbeats(
    live: tuple[str, uvicorn.Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    base, _ = live
    monkeypatch.setattr(debugger, "HEARTBEAT_SECONDS", 0.05)
    url = f"{base}/api/v1/sources/src_web/debugger/stream"
    with httpx.Client(timeout=5) as http, http.stream("GET", url, headers=AUTH) as response:
        blocks = _sse(response.iter_lines())
        next(blocks)
        assert next(blocks) == ("comment", {})


def _entry_ids(engine: Engine) -> list[int]:
    t = schema.debugger_entries
    with engine.connect() as conn:
        return list(conn.execute(sa.select(t.c.id).order_by(t.c.id)).scalars())


# --- headwater tail ---------------------------------------------------------------------------


def test_tail_prints_recent_then_follows(engine: Engine, live: tuple[str, uvicorn.Server]) -> None:
    base, _ = live
    observe(engine, [track(1), track(2), track(3)])
    out = io.StringIO()
    thread = threading.Thread(
        target=tail,
        args=(base, "t", "Web Site"),
        kwargs={"out": out, "recent": 2, "count": 2},
        daemon=True,
    )
    thread.start()
    wait_for(
        lambda: out.getvalue().count("\n") >= 2,
        5,
        "tail to print the recent entries",
        interval=0.01,
    )
    observe(
        engine,
        [track(4)],
        dropped=[{"reason": "no_user_anon_id", "message": {"type": "page", "name": "Home"}}],
    )
    thread.join(timeout=5)
    assert not thread.is_alive()
    lines = out.getvalue().splitlines()
    assert [line.split()[-1] for line in lines] == ["m2", "m3", "m4", "-"]
    assert "dropped/no_user_anon_id" in lines[3]


def test_tail_without_follow_and_its_errors(
    engine: Engine, live: tuple[str, uvicorn.Server]
) -> None:
    base, _ = live
    observe(engine, [track(n) for n in range(1, 6)])
    out = io.StringIO()
    tail(base, "t", "src_web", follow=False, out=out)
    assert len(out.getvalue().splitlines()) == 5
    with pytest.raises(SystemExit, match="401"):
        tail(base, "wrong", "src_web", follow=False, out=out)
    with pytest.raises(SystemExit, match="404"):
        tail(base, "t", "nope", follow=False, out=out)


def test_format_entry() -> None:
    line = format_entry(
        {
            "id": 1,
            "receivedAt": "2024-03-05T10:00:01.000Z",
            "status": "accepted",
            "message": track(1),
        }
    )
    assert line.startswith("2024-03-05T10:00:01.000Z accepted ")
    assert line.endswith(' track    "Order Completed" userId=u1 m1')
    anon = format_entry(
        {
            "status": "accepted",
            "receivedAt": "t",
            "message": {"type": "identify", "anonymousId": "a1", "messageId": "x"},
        }
    )
    assert anon.split()[-3:] == ["-", "anonymousId=a1", "x"]
    odd = format_entry(
        {"status": "dropped", "reason": "bad_request", "receivedAt": "t", "message": [1, 2]}
    )
    assert "dropped/bad_request" in odd and odd.endswith("[1,2]")
