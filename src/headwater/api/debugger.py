"""The Source Debugger over HTTP: the newest entries, and a live stream of new ones.

The observer stage writes the entries (the newest 500 per source) to ``debugger_entries``;
these routes only read them. The stream polls the table rather than listening to the observer,
so it works the same when the observer runs in another process, as it does on PostgreSQL.
Each streamed event carries its entry id as the SSE ``id``, so a browser's ``EventSource``
(or ``headwater tail``) resumes after a dropped connection without gaps or repeats.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy.engine import Engine

from headwater.api.auth import require_access
from headwater.api.errors import ApiError
from headwater.api.privacy import masker_for
from headwater.privacy.masking import Masker
from headwater.store import schema

# Paths are relative to the REST API's prefix: ``create_api`` mounts this router under
# ``/api/v1`` (GET /api/v1/sources/{idOrName}/debugger and …/debugger/stream).
router = APIRouter(tags=["debugger"])

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
MAX_ID = 2**63 - 1  # entry ids are 64-bit integer columns
POLL_SECONDS = 0.2
HEARTBEAT_SECONDS = 15.0

_encode = msgspec.json.Encoder().encode

SourceRef = Annotated[str, Path(alias="idOrName", description="The source's id or name.")]


@router.get(
    "/sources/{idOrName}/debugger",
    dependencies=[Depends(require_access)],
    summary="The source's newest debugger entries, newest first",
)
def list_debugger_entries(
    request: Request, source: SourceRef, limit: str | None = None, q: str | None = None
) -> Response:
    """``q`` keeps entries whose raw JSON contains it (any case), like the debugger's search."""
    engine: Engine = request.app.state.engine
    count = _parse_int("limit", limit, DEFAULT_LIMIT, 1, MAX_LIMIT)
    source_id = _find_source(engine, source)
    t = schema.debugger_entries
    query = sa.select(t).where(t.c.source_id == source_id).order_by(t.c.id.desc())
    with engine.connect() as conn:
        rows = conn.execute(query.limit(MAX_LIMIT if q else count)).all()
    masker = masker_for(request)
    entries = [_entry(row, masker) for row in rows]
    if q:
        needle = q.lower()
        entries = [e for e in entries if needle in _encode(e).decode().lower()][:count]
    return Response(_encode({"data": {"events": entries}}), media_type="application/json")


@router.get(
    "/sources/{idOrName}/debugger/stream",
    dependencies=[Depends(require_access)],
    summary="New debugger entries as Server-Sent Events",
    response_class=StreamingResponse,
)
async def stream_debugger_entries(
    request: Request, source: SourceRef, after: str | None = None
) -> StreamingResponse:
    """Entries with an id above ``after`` (or ``Last-Event-ID``); by default only new ones."""
    engine: Engine = request.app.state.engine
    source_id = await asyncio.to_thread(_find_source, engine, source)
    start = _parse_int("after", after or request.headers.get("last-event-id"), -1, 0, MAX_ID)
    if start < 0:
        start = await asyncio.to_thread(_last_id, engine, source_id)
    masker = await asyncio.to_thread(masker_for, request)
    return StreamingResponse(
        _stream(engine, source_id, start, masker),
        media_type="text/event-stream",
        # Proxies must pass each event on at once rather than buffer the response.
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


async def _stream(
    engine: Engine, source_id: str, last_id: int, masker: Masker | None = None
) -> AsyncIterator[bytes]:
    """Poll for entries above the last one sent; Starlette cancels this when the client goes."""
    # Sent at once, so a client knows it is subscribed; `retry` tunes EventSource's reconnect.
    yield b": connected\nretry: 1000\n\n"
    last_sent = time.monotonic()
    while True:
        rows = await asyncio.to_thread(_entries_after, engine, source_id, last_id, masker)
        if rows:
            last_id = rows[-1]["id"]
            yield b"".join(
                b"id: %d\ndata: %s\n\n" % (entry["id"], _encode(entry)) for entry in rows
            )
            last_sent = time.monotonic()
        elif time.monotonic() - last_sent >= HEARTBEAT_SECONDS:
            # Keeps proxies from closing an idle connection and finds clients that went away.
            yield b": heartbeat\n\n"
            last_sent = time.monotonic()
        await asyncio.sleep(POLL_SECONDS)


def _find_source(engine: Engine, id_or_name: str) -> str:
    """The id of the source with this id, else this name, else this slug; 404 when none."""
    s = schema.sources
    with engine.connect() as conn:
        for column in (s.c.id, s.c.name, s.c.slug):
            ids = conn.execute(sa.select(s.c.id).where(column == id_or_name).limit(2)).scalars()
            found = list(ids)
            if len(found) == 1:
                return str(found[0])
            if found:
                raise ApiError(
                    409, "conflict", f"more than one source is named {id_or_name!r}; use its id"
                )
    raise ApiError(404, "not_found", f"no source has the id or name {id_or_name!r}")


def _last_id(engine: Engine, source_id: str) -> int:
    t = schema.debugger_entries
    with engine.connect() as conn:
        value = conn.execute(sa.select(sa.func.max(t.c.id)).where(t.c.source_id == source_id))
        return int(value.scalar() or 0)


def _entries_after(
    engine: Engine, source_id: str, after: int, masker: Masker | None = None
) -> list[dict[str, Any]]:
    t = schema.debugger_entries
    query = (
        sa.select(t)
        .where(t.c.source_id == source_id, t.c.id > after)
        .order_by(t.c.id)
        .limit(MAX_LIMIT)
    )
    with engine.connect() as conn:
        return [_entry(row, masker) for row in conn.execute(query)]


def _entry(row: sa.Row[Any], masker: Masker | None = None) -> dict[str, Any]:
    """An entry as the reader may see it: masked for one without PII Access (§9.8)."""
    stored: dict[str, Any] = row.entry if isinstance(row.entry, dict) else {}
    entry: dict[str, Any] = {"id": row.id, "receivedAt": row.received_at, "status": row.status}
    if row.reason is not None:
        entry["reason"] = row.reason
    if "detail" in stored:
        entry["detail"] = stored["detail"]
    message = stored.get("message")
    entry["message"] = masker.event(message) if masker is not None else message
    return entry


def _parse_int(field: str, value: str | None, default: int, low: int, high: int | None) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if number < low or (high is not None and number > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ApiError(400, "validation", f"{field}: must be a whole number {bounds}", field)
    return number
